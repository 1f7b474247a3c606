"""Benchmark figures as tables (markdown, HTML) and a self-contained HTML report
with before/after images (``streamcolor report``).

Readers of results files:

* pytest-benchmark JSON from ``benchmarks/`` (``--benchmark-json``): one
  headline table (each figure next to the reference it was measured against
  in the same run, and their ratio) and one detail table per benchmark;
* the JSON of ``streamcolor bench --json``;
* any other JSON object (e.g. the GPU figures in ``benchmarks/results/``):
  its numbers, flattened, labelled with the file name.

The HTML report embeds every image (downscaled JPEG, base64), so the file
can be mailed or attached as is.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: Longest side of the images embedded in the report and the gallery, pixels.
THUMB_SIZE = 256
#: Photos with a mean chroma (CIE units) below this have no colour truth (as in streamcolor.trainer.evaluate).
GRAY_CHROMA = 3.0
#: The B&W photo shipped with the package, shown when no held-out photos are at hand.
SAMPLE_PHOTO = Path(__file__).parent / "samples" / "chenonceau-bw.jpg"


@dataclass
class Table:
    """One table of figures: a title, column headers, rows of cells (already text), a note."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


# --------------------------------------------------------------------------- number formatting


def _num(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (thousands kept whole); '-' for missing."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if x == 0 or abs(x) >= 10 ** digits:
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:g}"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def _ratio(a: Any, b: Any) -> str:
    try:
        return f"{a / b:.2f}x" if a is not None and b else "-"
    except TypeError:
        return "-"


def _get(d: Any, path: str, default: Any = None) -> Any:
    """``d["a"]["b"]`` for ``path`` "a.b"; ``default`` when any step is missing."""
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


# --------------------------------------------------------------------------- pytest-benchmark JSON


def _by_test(data: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for b in data.get("benchmarks", []):
        out.setdefault(b["name"].split("[")[0], []).append(b)
    return out


def machine_line(data: dict) -> str:
    """One line: CPU, cores, date, commit, load average range (pytest-benchmark JSON)."""
    mi = data.get("machine_info", {})
    cpu = _get(mi, "cpu.brand_raw") or mi.get("processor") or "?"
    cores = _get(mi, "cpu.count")
    date = (data.get("datetime") or "")[:10]
    commit = (_get(data, "commit_info.id") or "")[:7]
    loads = load_averages(data)
    load = f"; load average (1 min) during the run {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    return (f"{cpu}, {cores} cores; Python {mi.get('python_version', '?')}; {date}"
            + (f"; commit {commit}" if commit else "") + load)


def load_averages(data: dict) -> list[float]:
    """Every 1-minute load average recorded in the benchmarks' extra_info."""
    found: list[float] = []

    def walk(key: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k, x)
        elif "load_average" in key:
            vals = v if isinstance(v, list) else [v]
            found.extend(float(x) for x in vals if isinstance(x, (int, float)))

    for b in data.get("benchmarks", []):
        walk("", b.get("extra_info", {}))
    return found


def headline(data: dict) -> Table:
    """Each figure, the reference it was measured against in the same run, and the ratio."""
    t = _by_test(data)
    rows: list[list[str]] = []

    def row(figure: str, value: Any, ref: str, ref_value: Any, ratio: str | None = None, unit: str = "") -> None:
        rows.append([figure, _num(value) + unit, ref, _num(ref_value) + unit if ref_value is not None else "-",
                     ratio if ratio is not None else _ratio(value, ref_value)])

    for b in sorted(t.get("test_engine_images_per_second", []), key=lambda b: (b["extra_info"].get("render", 0),
                                                                              b["extra_info"].get("batch", 0))):
        e = b["extra_info"]
        rb = f"render {e.get('render')}, batch {e.get('batch')}"
        ref = _get(e, "engines.onnx-cpu-fp32", {})
        for label, fig in (e.get("engines") or {}).items():
            if label == "onnx-cpu-fp32":
                continue
            row(f"{label} images/s ({rb})", fig.get("images_per_s"), "ONNX Runtime fp32", ref.get("images_per_s"))
        row(f"ONNX fp32 achieved GFLOP/s ({rb}; {_num(e.get('gflop_per_image'))} GFLOP/image)", ref.get("gflops"),
            "NumPy float32 matmul peak", e.get("matmul_peak_gflops"))
    for b in t.get("test_precision_images_per_second", []):
        e = b["extra_info"]
        if "int8" in e:
            row(f"ONNX int8 images/s (render {e['render']}, batch {e['batch']})", _get(e, "int8.images_per_s"),
                "ONNX fp32", _get(e, "fp32.images_per_s"))
            if _get(e, "int8.mse_ab") is not None:
                row(f"int8 a*b* MSE, held-out (render {e['render']})", _get(e, "int8.mse_ab"), "fp32",
                    _get(e, "fp32.mse_ab"))
    for b in t.get("test_peer_images_per_second", []):
        e = b["extra_info"]
        row(f"ours images/s (render {e.get('render')}, batch {e.get('batch')})", _get(e, "ours.images_per_s"),
            f"{e.get('peer')} (same engine path)", _get(e, "peer_figures.images_per_s"))
    for b in t.get("test_video_pipeline_vs_floor_and_naive", []):
        e = b["extra_info"]
        clip = f"{e.get('clip')} {e.get('width')}x{e.get('height')}"
        row(f"video pipeline fps ({clip})", e.get("pipeline_fps"), "decode+encode only", e.get("floor_fps"))
        row(f"video pipeline fps ({clip})", e.get("pipeline_fps"), "naive DeOldify-style loop", e.get("naive_fps"))
    for b in t.get("test_video_peak_rss_is_flat", []):
        e = b["extra_info"]
        s = e.get("seconds") or ["?", "?"]
        row(f"peak RSS growth, {s[1]} s clip", e.get("growth_mb_long"), f"{s[0]} s clip", e.get("growth_mb_short"),
            unit=" MB")
        row(f"peak RSS growth, {s[0]} s clip", e.get("growth_mb_short"), "naive loop, same clip",
            e.get("naive_growth_mb_short"), unit=" MB")
    for b in t.get("test_batch_folder_throughput", []):
        e = b["extra_info"]
        row(f"archive items/s ({e.get('photos')} photos {e.get('size')})", e.get("items_per_s"),
            "colorize_image one by one", e.get("sequential_items_per_s"))
        row("archive engine busy share", e.get("engine_share"), "1 = engine never waits", 1.0)
    for b in t.get("test_ray_actor_pool_throughput", []):
        e = b["extra_info"]
        row("Ray 2 actors items/s", e.get("ray2_items_per_s"), "Ray 1 actor", e.get("ray1_items_per_s"))
        row("Ray scaling 2 over 1", e.get("scaling_2_over_1"), "machine ceiling (2 busy processes)",
            e.get("machine_2proc_speedup"))
    for b in t.get("test_quality_on_held_out_photos", []):
        e = b["extra_info"]
        n = f"{e.get('images')} held-out photos"
        row(f"a*b* MSE ({n})", _get(e, "model.mse_ab"), "gray baseline (a*b* = 0)", _get(e, "gray.mse_ab"))
        row(f"PSNR, dB ({n})", _get(e, "model.psnr"), "gray baseline", _get(e, "gray.psnr"),
            ratio=f"{e['psnr_gain_db']:+.2f} dB" if e.get("psnr_gain_db") is not None else "-")
        row(f"colorfulness ({n})", _get(e, "model.colorfulness"), "truth", _get(e, "truth.colorfulness"))
    for b in t.get("test_video_flicker_with_and_without_stabilization", []):
        e = b["extra_info"]
        gain = e.get("saturation_gain")
        tag = "" if gain in (None, 1.0) else f", saturation x{gain}"
        for m, label in (("warp_ab_rms", "warp error a*b* RMS"), ("cdc", "CDC")):
            row(f"flicker {label}, flow stabilization{tag}", _get(e, f"flow.{m}"), "no stabilization",
                _get(e, f"off.{m}"))
    for b in t.get("test_video_embedding_reuse", []):
        e = b["extra_info"]
        row("video fps, embedding reused per scene", _get(e, "reuse.fps"), "embedding every frame",
            _get(e, "per_frame.fps"))
    train = {b["name"]: b["extra_info"] for b in t.get("test_train_examples_per_second", [])}
    loader = {b["name"]: b["extra_info"] for b in t.get("test_loader_examples_per_second", [])}
    for (name, e), le in zip(train.items(), loader.values()):  # the loader must outrun the training steps
        row(f"shard loader examples/s (batch {e.get('batch')}, {e.get('size')} px)", le.get("examples_per_s"),
            f"training steps ({e.get('backend')}, this CPU)", e.get("examples_per_s"))
    return Table("Figures against their references (same run)",
                 ["figure", "value", "reference (same run)", "reference value", "ratio"], rows,
                 "Ratios are value / reference; each pair was measured in one test, taking turns where possible.")


def detail_tables(data: dict) -> list[Table]:
    """One table per benchmark, with every figure it recorded."""
    t = _by_test(data)
    out: list[Table] = []
    rows = []
    for b in sorted(t.get("test_engine_images_per_second", []),
                    key=lambda b: (b["extra_info"].get("render", 0), b["extra_info"].get("batch", 0))):
        e = b["extra_info"]
        for label, fig in (e.get("engines") or {}).items():
            share = None if "int8" in label else fig.get("share_of_peak")  # int8 ops vs a float32 peak: no
            rows.append([e.get("render"), e.get("batch"), label, fig.get("images_per_s"), fig.get("ratio_to_fp32"),
                         fig.get("gflops"), _pct(share), e.get("matmul_peak_gflops"), e.get("load_average_1min")])
    if rows:
        nm = next(iter(t["test_engine_images_per_second"]))["extra_info"].get("not_measured") or {}
        out.append(_table("Engines: images/s (extractor + colorizer), CPU", rows,
                          ["render", "batch", "engine", "images/s", "x ONNX fp32", "GFLOP/s", "% of matmul peak",
                           "matmul peak GFLOP/s", "load avg"],
                          "GFLOP/s = network flops (float32 graphs, extractor included) x images/s; for int8 "
                          "these are int8 operations, not compared with the float32 matmul peak. Not measured: "
                          + "; ".join(f"{k}: {v}" for k, v in nm.items())))
    rows = []
    for b in t.get("test_precision_images_per_second", []):
        e = b["extra_info"]
        for p in ("fp32", "int8", "fp16"):
            if p in e:
                f = e[p]
                rows.append([e.get("render"), e.get("batch"), p, f.get("images_per_s"), f.get("ratio_to_fp32"),
                             f.get("mse_ab"), f.get("mse_rel"), f.get("auto")])
    if rows:
        out.append(_table("Precision variants (ONNX Runtime)", rows,
                          ["render", "batch", "precision", "images/s", "x fp32", "a*b* MSE held-out",
                           "MSE drift vs fp32", "auto picks it"]))
    rows = []
    for b in t.get("test_peer_images_per_second", []):
        e = b["extra_info"]
        o, p = e.get("ours") or {}, e.get("peer_figures") or {}
        rows.append([e.get("render"), e.get("batch"), o.get("images_per_s"), p.get("images_per_s"),
                     e.get("ours_over_peer"), o.get("gflop_per_image"), p.get("gflop_per_image"), o.get("gflops"),
                     p.get("gflops")])
    if rows:
        out.append(_table("Peer network: Zhang et al. ECCV16 (random weights), same ONNX engine path", rows,
                          ["render", "batch", "ours images/s", "ECCV16 images/s", "ours / ECCV16",
                           "ours GFLOP/image", "ECCV16 GFLOP/image", "ours GFLOP/s", "ECCV16 GFLOP/s"]))
    rows = [[e.get("clip"), f"{e.get('width')}x{e.get('height')}", e.get("frames"), e.get("render_size"),
             e.get("pipeline_fps"), e.get("floor_fps"), e.get("naive_fps"), e.get("pipeline_over_floor"),
             e.get("pipeline_over_naive"), e.get("load_average")]
            for e in (b["extra_info"] for b in t.get("test_video_pipeline_vs_floor_and_naive", []))]
    if rows:
        out.append(_table("Video throughput (best of alternating rounds)", rows,
                          ["clip", "size", "frames", "render", "pipeline fps", "decode+encode fps", "naive fps",
                           "pipeline / floor", "pipeline / naive", "load avg"]))
    rows = [[f"{e.get('width')}x{e.get('height')}", e.get("seconds"), e.get("rss_before_mb"),
             e.get("peak_rss_mb_short"), e.get("peak_rss_mb_long"), e.get("growth_mb_short"), e.get("growth_mb_long"),
             e.get("naive_growth_mb_short")]
            for e in (b["extra_info"] for b in t.get("test_video_peak_rss_is_flat", []))]
    if rows:
        out.append(_table("Video memory: peak RSS (MB) against clip length", rows,
                          ["size", "seconds (short, long)", "RSS engine loaded", "peak short", "peak long",
                           "growth short", "growth long", "naive growth short"]))
    for b in t.get("test_video_flicker_with_and_without_stabilization", []):
        e = b["extra_info"]
        rows = []
        for v in ("source", "off", "flow", "flow_0.8", "ema"):
            f = e.get(v)
            if isinstance(f, dict):  # (variant names may hold dots: index, not _get)
                red = e.get(f"{v}_reduction") or {}
                rows.append([v, f.get("cdc"), f.get("warp_error"), f.get("warp_ab_rms"), _pct(red.get("warp_ab_rms")),
                             (e.get("fps") or {}).get(v)])
        out.append(_table(f"Flicker ({e.get('frames')} frames {e.get('width')}x{e.get('height')}, "
                          f"saturation gain {e.get('saturation_gain')}; lower is steadier)", rows,
                          ["variant", "CDC", "warp error RGB", "warp a*b* RMS", "a*b* RMS reduction %", "fps"],
                          "source = the gray input itself; flow = optical-flow-warped stabilizer (default)"))
    for b in t.get("test_video_embedding_reuse", []):
        e = b["extra_info"]
        out.append(_table("Embedding reuse (video)", [[
            _get(e, "per_frame.fps"), _get(e, "reuse.fps"), e.get("speedup"), e.get("network_speedup_expected"),
            _get(e, "per_frame.embeddings"), _get(e, "reuse.embeddings"), _get(e, "colour_change.mean_abs_dab")]],
            ["fps per-frame embedding", "fps reused", "speed-up", "network-only expected", "embeddings per-frame",
             "embeddings reused", "mean |d a*b*|"]))
    rows = [[e.get("photos"), e.get("size"), e.get("batch_size"), e.get("items_per_s"), e.get("engine_share"),
             e.get("sequential_items_per_s")]
            for e in (b["extra_info"] for b in t.get("test_batch_folder_throughput", []))]
    if rows:
        out.append(_table("Archive (streamcolor batch)", rows,
                          ["photos", "size", "batch", "items/s", "engine busy share", "one by one items/s"]))
    rows = [[e.get("photos"), e.get("size"), e.get("plain_items_per_s"), e.get("ray1_items_per_s"),
             e.get("ray2_items_per_s"), e.get("scaling_2_over_1"), e.get("machine_2proc_speedup"),
             e.get("ray_startup_s"), e.get("load_average_1min")]
            for e in (b["extra_info"] for b in t.get("test_ray_actor_pool_throughput", []))]
    if rows:
        out.append(_table("Ray actor pool", rows,
                          ["photos", "size", "plain items/s", "1 actor", "2 actors", "2 / 1", "machine ceiling",
                           "startup s", "load avg"]))
    for b in t.get("test_quality_on_held_out_photos", []):
        e = b["extra_info"]
        out.append(_table(f"Quality on {e.get('images')} held-out photos (render {e.get('render_size')}, "
                          f"{e.get('engine')})", [
                              ["a*b* MSE ([-1, 1] scaling), lower is better", _get(e, "model.mse_ab"),
                               _get(e, "gray.mse_ab"), 0],
                              ["PSNR of RGB, dB", _get(e, "model.psnr"), _get(e, "gray.psnr"), "-"],
                              ["colorfulness (Hasler-Suesstrunk)", _get(e, "model.colorfulness"),
                               _get(e, "gray.colorfulness"), _get(e, "truth.colorfulness")]],
                          ["metric", "model", "gray baseline", "truth"],
                          f"skipped: {', '.join(e.get('skipped') or []) or 'none'}"))
    rows = []
    for name in ("test_train_examples_per_second", "test_loader_examples_per_second"):
        for b in t.get(name, []):
            e = b["extra_info"]
            rows.append([name.removeprefix("test_").removesuffix("_examples_per_second"), e.get("backend", "-"),
                         e.get("batch"), e.get("size"), e.get("examples_per_s")])
    if rows:
        out.append(_table("Training (this machine)", rows, ["what", "backend", "batch", "size", "examples/s"]))
    rows = [[b["name"], b["stats"]["mean"], b["stats"]["min"], b["stats"]["rounds"]]
            for b in data.get("benchmarks", []) if b.get("stats")]
    if rows:
        out.append(_table("pytest-benchmark timings (seconds per timed call)", rows,
                          ["benchmark", "mean s", "min s", "rounds"]))
    return out


def _pct(x: Any) -> Any:
    return round(100 * x, 2) if isinstance(x, (int, float)) else x


def _table(title: str, rows: Iterable[Sequence[Any]], headers: list[str], note: str = "") -> Table:
    return Table(title, headers, [[_num(c) for c in r] for r in rows], note)


# --------------------------------------------------------------------------- other results files


def bench_tables(data: dict) -> list[Table]:
    """Tables of a ``streamcolor bench --json`` file."""
    m = data.get("machine", {})
    out = [_table(f"streamcolor bench: engines ({m.get('cpu', '?')}; {m.get('date', '')})",
                  [[r.get("engine"), r.get("precision"), r.get("render"), r.get("batch"), r.get("images_per_s"),
                    r.get("ratio_to_fp32"), r.get("gflops"), _pct(r.get("share_of_peak"))]
                   for r in data.get("engines", [])],
                  ["engine", "precision", "render", "batch", "images/s", "x fp32", "GFLOP/s", "% of matmul peak"],
                  f"matmul peak {data.get('peak_gflops')} GFLOP/s; load average (1, 5, 15 min) "
                  f"{' '.join(map(str, m.get('load_average') or []))}")]
    if data.get("videos"):
        out.append(_table("streamcolor bench: video",
                          [[v.get("clip"), f"{v.get('width')}x{v.get('height')}", v.get("frames"), v.get("render_size"),
                            v.get("pipeline_fps"), v.get("floor_fps"), v.get("pipeline_over_floor")]
                           for v in data["videos"]],
                          ["clip", "size", "frames", "render", "pipeline fps", "decode+encode fps",
                           "pipeline / floor"]))
    notes = list(data.get("notes") or [])
    rec = data.get("recommendation") or {}
    if rec.get("options"):
        notes.append(f"recommended on that machine: {rec['options']} ({rec.get('why', '')})")
    if notes:
        out[-1].note = (out[-1].note + "; " if out[-1].note else "") + "; ".join(notes)
    return out


def flat_table(title: str, data: Any, note: str = "") -> Table:
    """Numbers and short strings of any JSON value, one row per key path (a list of
    records contributes its last record)."""
    rows: list[list[str]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            walk(f"{prefix}[last of {len(v)}]", v[-1])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append([prefix, _num(v)])
        elif isinstance(v, str) and len(v) <= 120:
            rows.append([prefix, v])

    walk("", data)
    return Table(title, ["figure", "value"], rows, note)


def read_results(path: str | Path) -> Any:
    """A results file's JSON; ValueError naming the file when it is not JSON
    (a typo'd --results), so that nothing is colorized before the error."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a JSON results file ({exc})") from exc


def load_results(paths: Sequence[str | Path]) -> tuple[list[Table], list[str]]:
    """Tables from results files of any of the kinds in the module docstring,
    and one machine line per pytest-benchmark file."""
    tables: list[Table] = []
    machines: list[str] = []
    for p in map(Path, paths):
        data = read_results(p)
        if isinstance(data, dict) and "benchmarks" in data and "machine_info" in data:
            try:
                line, found = machine_line(data), [headline(data), *detail_tables(data)]
            except (AttributeError, KeyError, TypeError, ValueError, IndexError, StopIteration) as exc:
                raise ValueError(f"{p}: has pytest-benchmark's keys but not its layout ({type(exc).__name__}: "
                                 f"{exc}); give the JSON that `pytest --benchmark-json` wrote") from exc
            machines.append(f"{p.name}: {line}")
            tables += found
        elif isinstance(data, dict) and str(data.get("format", "")).startswith("streamcolor-bench/"):
            tables += bench_tables(data)
        else:
            gpu = f" ({data['device']})" if isinstance(data, dict) and data.get("device") else ""
            table = flat_table(f"{p.name}{gpu}", data)
            if not table.rows:  # (e.g. [1, 2, 3]: the page would show nothing of it, and say nothing)
                raise ValueError(f"{p}: holds no figures the report can show (a JSON object of named numbers "
                                 "or short texts, `streamcolor bench --json` output or pytest-benchmark JSON)")
            tables.append(table)
    return tables, machines


# --------------------------------------------------------------------------- rendering


def to_markdown(tables: Sequence[Table]) -> str:
    out = []
    for t in tables:
        if not t.rows:
            continue
        esc = [[c.replace("|", "\\|").replace("*", "\\*") for c in r] for r in [t.headers, *t.rows]]
        out.append(f"### {t.title}\n")
        out.append("| " + " | ".join(esc[0]) + " |")
        out.append("|" + "---|" * len(t.headers))
        out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        if t.note:
            out.append(f"\n{t.note}")
        out.append("")
    return "\n".join(out)


def to_html(tables: Sequence[Table]) -> str:
    out = []
    for t in tables:
        if not t.rows:
            continue
        head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.rows)
        note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
        out.append(f"<h3>{html.escape(t.title)}</h3><table><thead><tr>{head}</tr></thead>"
                   f"<tbody>{body}</tbody></table>{note}")
    return "\n".join(out)


# --------------------------------------------------------------------------- before / after


@dataclass
class BeforeAfter:
    """One photo three ways: ``gray`` input, ``colour`` (ours) and ``truth``
    (None for a black-and-white original); uint8 RGB, same size."""

    name: str
    gray: np.ndarray
    colour: np.ndarray
    truth: np.ndarray | None
    credit: str = ""  # source and licence of the photo
    metrics: dict[str, float] = field(default_factory=dict)  # see photo_metrics(); empty without truth
    size: tuple[int, int] = (0, 0)  # the photo's full size (width, height)
    seconds: float = 0.0  # colorizing it at full size, decode and metrics excluded


def held_out_photos(folder: str | Path, n: int = 4) -> list[tuple[Path, dict]]:
    """``n`` photos of the ``val`` split of a ``manifest.json`` folder (as
    written by ``streamcolor.trainer.collect_photos``), or of its ``holdout`` split where it has no
    val (such a folder was shown as having no photos), evenly spaced over the list in
    manifest order (not chosen by result), skipping near-gray ones."""
    from streamcolor.engines import lab

    folder = Path(folder)
    listed = [e for e in collector_photos(folder) or [] if (folder / e["file"]).is_file()]
    entries = ([e for e in listed if e.get("split") == "val"]
               or [e for e in listed if e.get("split") == "holdout"])
    picked: list[tuple[Path, dict]] = []
    if not entries or n <= 0:
        return picked
    step = len(entries) / n
    for i in range(n):
        for e in entries[int(i * step):] + entries[:int(i * step)]:  # next photo with colour, wrapping
            path = folder / e["file"]
            if any(p == path for p, _ in picked):
                continue
            try:  # (a small draft of it: only its colour is measured)
                with Image.open(path) as im:
                    im.draft("RGB", (64, 64))
                    rgb = np.asarray(im.convert("RGB").resize((64, 64)))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                log.warning("%s: passed over (%s)", path, exc)
                continue
            ab = lab.rgb_to_lab(rgb)[..., 1:]
            if float(np.hypot(ab[..., 0], ab[..., 1]).mean()) >= GRAY_CHROMA:
                picked.append((path, e))
                break
    return picked


def before_after(engine: "Engine", path: str | Path, *, render_size: int | None = None,
                 max_side: int = THUMB_SIZE, credit: str = "") -> BeforeAfter:
    """Gray version of a photo, our colorization of that gray image, and the
    original (the truth when it has colour), each at most ``max_side`` pixels."""
    from streamcolor import image_io
    from streamcolor.colorize import colorize_image, pixels_to_l, render

    pixels = image_io.read_image(path).pixels
    if pixels.dtype != np.uint8:
        pixels = image_io.to_uint8(pixels)
    truth = _downscale(pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, -1), max_side)
    l = pixels_to_l(truth)
    gray = render(l, np.zeros(l.shape + (2,), np.float32), dtype=np.uint8)  # lightness only
    colour = colorize_image(gray, engine=engine, render_size=render_size)
    has_colour = pixels.ndim == 3 and float(np.abs(truth.astype(int) - gray).mean()) > 1.0
    return BeforeAfter(Path(path).name, gray, colour, truth if has_colour else None, credit)


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    k = max_side / max(h, w)
    if k >= 1:
        return np.ascontiguousarray(rgb)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS))


def strip(item: BeforeAfter, gap: int = 4) -> np.ndarray:
    """The images of ``item`` side by side (gray | ours | truth) on white, uint8 RGB."""
    parts = [item.gray, item.colour] + ([item.truth] if item.truth is not None else [])
    h = max(p.shape[0] for p in parts)
    w = sum(p.shape[1] for p in parts) + gap * (len(parts) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for p in parts:
        out[:p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def _data_uri(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=85)
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


#: The mark of a page this module wrote, for its readers (whether a page may be replaced is the
#: record's to say: :func:`check_replaceable`).
GENERATOR_META = "<meta name='generator' content='streamcolor report'>"
#: The first line of a gallery's README (see :func:`write_gallery`).
GALLERY_TITLE = "# Before / after gallery"


def check_replaceable(out: Path) -> None:
    """OutputError when ``out`` holds a file that is not a report streamcolor wrote, unchanged
    since (:func:`streamcolor.outputs.written_by_streamcolor`): a page of the user's by that name,
    or a report they annotated, is kept.  Said before any photo is colorized; the rename at the
    end checks again (a page that appears meanwhile is kept too)."""
    from streamcolor.errors import OutputError
    from streamcolor.outputs import written_by_streamcolor

    if os.path.lexists(out) and not written_by_streamcolor(out):
        raise OutputError(f"{out} exists and is not a report streamcolor wrote (or it changed since); it is kept: "
                          "give another -o, or move it away")


def _gallery_readme(path: Path) -> bool:
    """Whether ``path`` is a gallery's README (a plain file that starts with :data:`GALLERY_TITLE`)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(len(GALLERY_TITLE)) == GALLERY_TITLE
    except OSError:
        return False


def check_gallery_folder(folder: Path) -> None:
    """OutputError when ``folder`` is a file, or holds a ``README.md`` that is not a gallery's:
    a user's README is never written over.  Said before any photo is colorized.  Strips never
    replace a file streamcolor did not write (see :func:`write_gallery`)."""
    from streamcolor.errors import OutputError

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--gallery {folder}: a file, not a folder")
    readme = folder / "README.md"
    if os.path.lexists(readme) and not _gallery_readme(readme):
        raise OutputError(f"--gallery {folder}: its README.md is not a gallery's; it is kept: choose another folder")


def write_gallery(items: Sequence[BeforeAfter], folder: str | Path, *, model: str = "streamcolor's default model",
                  held_out: bool = True) -> list[Path]:
    """One PNG strip (gray | ours | truth) per item in ``folder``, plus a README
    crediting each photo.  Returns the PNG paths.  ``model``: what made the middle column;
    ``held_out``: the photos are a collection's held-out ones (else a folder's, evenly spaced).

    A strip replaces only a file streamcolor wrote there and nobody changed since (an earlier
    gallery's); a file of the user's at its name, or a link, is kept and the strip is written
    beside it as ``name~2.png`` (the README names what was written)."""
    from streamcolor import image_io, tempfiles
    from streamcolor.outputs import remember_written, written_by_streamcolor

    folder = Path(folder)
    check_gallery_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    which = ("Held-out photos (never seen in training), evenly spaced over the held-out list" if held_out else
             "Photos of the folder given, evenly spaced over its files in name order")
    paths, lines = [], [GALLERY_TITLE, "",
                        f"Each image: the gray input (lightness only) | {model} | the original colour photo. "
                        f"{which}, not chosen by result; downscaled. Made with `streamcolor report --gallery`.", "",
                        "| file | photo | credit |", "|---|---|---|"]
    for i, it in enumerate(items, start=1):
        stem = Path(it.name).stem.split("__")[-1]
        buf = io.BytesIO()
        Image.fromarray(strip(it)).save(buf, format="PNG", optimize=True)
        p = image_io.write_atomic(folder / f"{i:02d}-{stem}.png", buf.getvalue(),
                                  replace=tempfiles.Beside(written_by_streamcolor))
        remember_written(p)
        paths.append(p)
        cells = (p.name, it.name, it.credit or "-")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    image_io.write_atomic(folder / "README.md", ("\n".join(lines) + "\n").encode("utf-8"), replace=_gallery_readme)
    return paths


# --------------------------------------------------------------------------- the user's own photos


#: Longest side of each image shown in ``streamcolor report`` (a size a person can judge colour at).
REPORT_IMAGE_SIZE = 640
#: File suffixes ``streamcolor report FOLDER`` looks at.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")  # (an animated one: a note)


def collector_photos(folder: str | Path) -> list[dict] | None:
    """The photo entries of ``folder/manifest.json`` when it is the photo collector's
    (``streamcolor.trainer.collect_photos``: an object whose ``photos`` are objects with a
    ``file`` and a ``split``), else None: a folder of yours may hold a ``manifest.json`` of
    something else (a web app's, a camera tool's), and its photos are shown all the same."""
    path = Path(folder) / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    photos = data.get("photos") if isinstance(data, dict) else None
    if not (isinstance(photos, list) and photos and all(
            isinstance(e, dict) and isinstance(e.get("file"), str) and "split" in e for e in photos)):
        log.debug("%s: not a photo collector's manifest; the folder's photos are shown", path)
        return None
    return photos


def find_photos(folder: str | Path, n: int, spares: int = 0) -> list[tuple[Path, str]]:
    """Up to ``n`` photos of ``folder`` with a credit line each, then up to
    ``spares`` more to take the place of any that cannot be read.

    A folder with a ``manifest.json`` (``streamcolor.trainer.collect_photos``)
    gives its held-out photos (:func:`held_out_photos`); any other folder its
    image files (searched recursively, in name order), evenly spaced over the
    list when there are more than ``n`` -- never chosen by result.  The spares
    are evenly spaced over the files not picked, so that a run of broken files
    in one place of the list cannot leave the report without photos."""
    folder = Path(folder)
    if collector_photos(folder) is not None:
        return [(path, ", ".join(x for x in (e.get("package"), e.get("licence"), e.get("copyright")) if x)[:300])
                for path, e in held_out_photos(folder, n)]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    inside = Path(os.path.realpath(folder))
    kept, outside, seen = [], [], set()
    for p in files:
        real = os.path.realpath(p)
        if not Path(real).is_relative_to(inside):  # as batch: a link out of the folder is not followed
            outside.append(p)
        elif real not in seen:  # a link to another photo of the folder: that photo once (the first name)
            seen.add(real)
            kept.append(p)
    if outside:
        log.warning("%d photo(s) left out: links that lead out of %s (not followed), e.g. %s", len(outside), folder,
                    outside[0])
    if n <= 0 or not kept:
        return []
    picked = _evenly_spaced(len(kept), n)
    taken = set(picked)
    rest = [p for i, p in enumerate(kept) if i not in taken]
    return [(kept[i], "") for i in picked] + [(rest[i], "") for i in _evenly_spaced(len(rest), max(spares, 0))]


def _evenly_spaced(total: int, n: int) -> list[int]:
    """The indices of ``n`` of ``total`` list items evenly spaced over the list (all when there are no more)."""
    return list(range(total)) if total <= n else [int(i * total / n) for i in range(n)]


def photo_metrics(colour: np.ndarray, gray: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """a*b* MSE ([-1, 1] scaling, as the model cards), PSNR (dB) and colourfulness
    of our colorization and of the gray baseline against the colour original."""
    from streamcolor.engines import lab

    ab_true = lab.rgb_to_lab(truth)[..., 1:] / lab.AB_SCALE
    out: dict[str, float] = {}
    for tag, rgb in (("", colour), ("gray_", gray)):
        ab = lab.rgb_to_lab(rgb)[..., 1:] / lab.AB_SCALE
        out[f"{tag}mse_ab"] = float(np.mean((ab.astype(np.float64) - ab_true) ** 2))
        mse = float(np.mean((rgb.astype(np.float64) - truth.astype(np.float64)) ** 2))
        out[f"{tag}psnr"] = 60.0 if mse == 0 else min(60.0, 10.0 * float(np.log10(255.0 ** 2 / mse)))
        out[f"{tag}colorfulness"] = lab.colorfulness(rgb)
    out["truth_colorfulness"] = lab.colorfulness(truth)
    return out


def judge_photo(engine: "Engine", path: str | Path, *, options: Any = None, max_side: int = REPORT_IMAGE_SIZE,
                credit: str = "") -> BeforeAfter:
    """A photo as a user gets it: its lightness colorized at full resolution
    (what ``streamcolor image`` writes), compared with the original when that
    has colour; the three images are then downscaled to ``max_side`` for the page."""
    import time

    from streamcolor import image_io
    from streamcolor.colorize import ColorOptions, colorize_image, pixels_to_l, render

    options = options or ColorOptions()
    pixels = image_io.read_image(path, max_pixels=options.max_pixels).pixels
    if pixels.dtype != np.uint8:
        pixels = image_io.to_uint8(pixels)
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, -1)
    l = pixels_to_l(rgb)
    gray = render(l, np.zeros(l.shape + (2,), np.float32), dtype=np.uint8)
    t = time.perf_counter()
    colour = colorize_image(gray, engine=engine, options=options)
    seconds = time.perf_counter() - t
    has_colour = pixels.ndim == 3 and float(np.abs(rgb.astype(int) - gray).mean()) > 1.0
    chroma = 0.0
    if has_colour:
        from streamcolor.engines import lab

        small = _downscale(rgb, 128)
        ab = lab.rgb_to_lab(small)[..., 1:]
        chroma = float(np.hypot(ab[..., 0], ab[..., 1]).mean())
    has_colour = has_colour and chroma >= GRAY_CHROMA  # a sepia or toned print has no colour truth
    metrics = photo_metrics(colour, gray, rgb) if has_colour else {}
    return BeforeAfter(Path(path).name, _downscale(gray, max_side), _downscale(colour, max_side),
                       _downscale(rgb, max_side) if has_colour else None, credit, metrics,
                       (rgb.shape[1], rgb.shape[0]), seconds)


def photo_table(items: Sequence[BeforeAfter]) -> Table | None:
    """Per-photo metrics of the photos with colour truth, and their mean."""
    rows = [it for it in items if it.metrics]
    if not rows:
        return None
    keys = ("mse_ab", "gray_mse_ab", "psnr", "gray_psnr", "colorfulness", "truth_colorfulness")
    mean = {k: float(np.mean([it.metrics[k] for it in rows])) for k in keys}
    body = [[it.name, it.metrics["mse_ab"], it.metrics["gray_mse_ab"],
             _ratio(it.metrics["mse_ab"], it.metrics["gray_mse_ab"]), it.metrics["psnr"], it.metrics["gray_psnr"],
             it.metrics["colorfulness"], it.metrics["truth_colorfulness"]] for it in rows]
    body.append([f"mean of {len(rows)}", mean["mse_ab"], mean["gray_mse_ab"],
                 _ratio(mean["mse_ab"], mean["gray_mse_ab"]), mean["psnr"], mean["gray_psnr"],
                 mean["colorfulness"], mean["truth_colorfulness"]])
    return _table("Your colour photos: streamcolor against the gray baseline", body,
                  ["photo", "a*b* MSE", "gray a*b* MSE", "x gray", "PSNR dB", "gray PSNR dB", "colourfulness",
                   "original colourfulness"],
                  "Each photo reduced to its lightness, colorized at full size, compared with the original. "
                  "a*b* MSE in [-1, 1] scaling (lower is better; 'x gray' below 1.00x beats leaving it gray).")


# --------------------------------------------------------------------------- charts (inline SVG)


def _svg_bars(title: str, bars: Sequence[tuple[str, float, str]], *, unit: str, ref: float | None = None,
              ref_label: str = "", width: int = 760) -> str:
    """A horizontal bar chart: (label, value, colour) per bar, an optional reference line."""
    if not bars:
        return ""
    label_w, row_h, top = 250, 22, 28
    plot_w = width - label_w - 120
    vmax = max([v for _, v, _ in bars] + ([ref] if ref else [])) or 1.0
    h = top + row_h * len(bars) + 24
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h}' role='img' "
           f"aria-label='{html.escape(title)}' class='chart'>",
           f"<text x='0' y='16' font-weight='bold' font-size='14'>{html.escape(title)}</text>"]
    for i, (label, v, colour) in enumerate(bars):
        y = top + i * row_h
        w = max(1.0, plot_w * v / vmax)
        out.append(f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end' font-size='12'>{html.escape(label)}</text>")
        out.append(f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row_h - 6}' fill='{colour}'/>")
        out.append(f"<text x='{label_w + w + 5:.1f}' y='{y + 15}' font-size='12'>{_num(v)} {html.escape(unit)}</text>")
    if ref:
        x = label_w + plot_w * ref / vmax
        out.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{h - 18}' stroke='#333' "
                   f"stroke-dasharray='4 3'/>")
        out.append(f"<text x='{x:.1f}' y='{h - 4}' text-anchor='middle' font-size='11'>{html.escape(ref_label)}</text>")
    out.append("</svg>")
    return "".join(out)


def quality_chart(items: Sequence[BeforeAfter]) -> str:
    """a*b* MSE of each colour photo as a multiple of the gray baseline's (the line at 1.0)."""
    rows = [it for it in items if it.metrics and it.metrics["gray_mse_ab"] > 0]
    bars = [(it.name[:36], it.metrics["mse_ab"] / it.metrics["gray_mse_ab"],
             "#3a8f4b" if it.metrics["mse_ab"] < it.metrics["gray_mse_ab"] else "#c0503a") for it in rows]
    if len(rows) > 1:
        mean = float(np.mean([it.metrics["mse_ab"] for it in rows]) / np.mean([it.metrics["gray_mse_ab"] for it in rows]))
        bars.append((f"all {len(rows)} (mean MSE / mean gray)", mean, "#555555"))
    return _svg_bars("Colour error against the gray baseline (a*b* MSE / gray's; lower is better)", bars,
                     unit="x gray", ref=1.0, ref_label="1.0 = gray")


def speed_chart(rows: Sequence[dict[str, Any]], note: str = "") -> str:
    """Images/s by engine and batch (``streamcolor bench`` rows), one bar per (engine, render, batch)."""
    palette = ["#4269b0", "#e08a2c", "#3a8f4b", "#8c5bb0", "#c0503a"]
    labels = list(dict.fromkeys(r.get("label") or r.get("engine") for r in rows))
    renders = {r["render"] for r in rows}
    bars = [(f"{r.get('label') or r.get('engine')}, batch {r['batch']}"
             + (f", render {r['render']}" if len(renders) > 1 else ""), float(r["images_per_s"]),
             palette[labels.index(r.get("label") or r.get("engine")) % len(palette)])
            for r in sorted(rows, key=lambda r: (r["render"], labels.index(r.get("label") or r.get("engine")),
                                                 r["batch"]))]
    render = f" at render {next(iter(renders))}" if len(renders) == 1 else ""
    return _svg_bars(f"Images/s by engine and batch{render} (higher is better){note}", bars,
                     unit="img/s", width=900)


def bench_rows(results: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The engine rows of every ``streamcolor bench --json`` file among ``results``."""
    rows: list[dict[str, Any]] = []
    for p in map(Path, results):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and str(data.get("format", "")).startswith("streamcolor-bench/"):
            rows += data.get("engines", [])
    return rows


# --------------------------------------------------------------------------- the report


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.85em; margin-top: 0; }
.notes { background: #fff6dd; border: 1px solid #e8d48a; padding: 0.5em 1em; font-size: 0.9em; }
.photo { margin: 1em 0 2em; } .row { display: flex; flex-wrap: wrap; gap: 6px; }
.row figure { flex: 1 1 0; margin: 0; min-width: 200px; cursor: zoom-in; }
.row figure.big { flex: 0 0 100%; cursor: zoom-out; }
.row img { display: block; width: 100%; height: auto; }
.row figcaption { font-size: 0.85em; color: #444; text-align: center; }
.metrics { font-size: 0.9em; color: #333; margin: 0.2em 0 0.4em; }
.credit { font-size: 0.8em; color: #777; } .chart { display: block; margin: 0.5em 0 1.2em; }
"""


def _photo_html(it: BeforeAfter) -> str:
    figs = [("gray input (lightness only)", it.gray), ("streamcolor", it.colour)]
    if it.truth is not None:
        figs.append(("original colour", it.truth))
    cells = "".join(f"<figure onclick=\"this.classList.toggle('big')\"><img src='{_data_uri(im)}' "
                    f"width='{im.shape[1]}' height='{im.shape[0]}' alt='{html.escape(cap)}'>"
                    f"<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, im in figs)
    facts = []
    if it.size[0]:
        facts.append(f"{it.size[0]}x{it.size[1]} px, colorized in {it.seconds:.2f} s")
    m = it.metrics
    if m:
        facts.append(f"a*b* MSE {m['mse_ab']:.4f} against gray's {m['gray_mse_ab']:.4f} "
                     f"({_ratio(m['mse_ab'], m['gray_mse_ab'])} gray); PSNR {m['psnr']:.2f} dB against gray's "
                     f"{m['gray_psnr']:.2f} dB")
    elif it.size[0]:
        facts.append("black and white (or toned): no colour truth to measure against")
    credit = f"<div class='credit'>{html.escape(it.credit)}</div>" if it.credit else ""
    metrics = f"<div class='metrics'>{html.escape('; '.join(facts))}</div>" if facts else ""
    return f"<div class='photo'><b>{html.escape(it.name)}</b>{metrics}<div class='row'>{cells}</div>{credit}</div>"


def render_html(items: Sequence[BeforeAfter], tables: Sequence[Table], *, title: str = "streamcolor report",
                subtitle: str = "", machines: Sequence[str] = (), charts: Sequence[str] = (),
                notes: Sequence[str] = ()) -> str:
    """The whole report as one HTML string (images and charts embedded; nothing loaded from elsewhere)."""
    photos = "".join(_photo_html(it) for it in items)
    mach = "".join(f"<li>{html.escape(m)}</li>" for m in machines)
    note_html = ("<div class='notes'><b>Notes</b><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                 + "</ul></div>") if notes else ""
    hint = "<p class='note'>Click an image to see it full width.</p>" if items else ""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR_META}"
            f"<title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='sub'>{html.escape(subtitle)}</p>{note_html}"
            f"{'<h2>At a glance</h2>' + ''.join(charts) if charts else ''}"
            f"<h2>Before / after</h2>{hint}{photos or '<p>no photos</p>'}"
            f"<h2>Figures</h2>{'<ul>' + mach + '</ul>' if mach else ''}{to_html(tables)}"
            f"</body></html>\n")


def model_card_table(engine: "Engine") -> Table | None:
    """The evaluation stored in the model's ``model.json``, if any: on the photos from sources
    that training never saw (the ``holdout`` split) when the model has it, since the ``val``
    split (its ``eval``) is where its checkpoint was chosen, and says less about new photos."""
    meta = engine.info.meta
    splits = meta.get("eval_splits") if isinstance(meta.get("eval_splits"), dict) else {}
    ev = splits.get("holdout") or meta.get("eval")
    if not isinstance(ev, dict) or "model" not in ev:
        return None
    if splits.get("holdout"):
        what = f"{ev.get('images', '?')} photos from sources training never saw (holdout split)"
    elif splits.get("val") == ev:
        what = f"{ev.get('images', '?')} validation photos (the checkpoint was chosen on them)"
    else:
        what = f"{ev.get('images', '?')} held-out photos ({ev.get('source', '')})"
    runtime = str(ev.get("engine", "?")).split(":")[0]  # (the runtime; what follows is a training run's name)
    return _table(f"Model card: {engine.info.name} on {what}",
                  [["a*b* MSE", _get(ev, "model.mse_ab"), _get(ev, "gray.mse_ab"), 0],
                   ["PSNR, dB", _get(ev, "model.psnr"), _get(ev, "gray.psnr"), "-"],
                   ["colorfulness", _get(ev, "model.colorfulness"), _get(ev, "gray.colorfulness"),
                    _get(ev, "truth.colorfulness")]],
                  ["metric", "model", "gray baseline", "truth"], f"measured with {runtime}")


def measure_speed(engine: "Engine", render: int, batches: Sequence[int], *, rounds: int = 3,
                  notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Images/s of this model's engines here (ONNX fp32, and int8 or fp16 when the
    bundle has them, and ``engine``, the one the photos were colorized with, when it
    is none of those) at ``render`` and each batch size, the engines taking turns.

    An engine timed although its colours are wrong on this CPU (int8 kernels that
    disagree with fp32, as ``streamcolor bench`` finds) is labelled so, since a
    chart would otherwise show it as simply the fastest; ``notes`` gets the reasons."""
    from streamcolor.bench import UNTRUSTED, engine_rows, load_engines, untrusted_labels

    engines, said = load_engines(engine.info.path, "auto")
    if notes is not None:  # (the other notes say what is not timed here, and why: not the page's business)
        notes.extend(n for n in said if n.startswith(UNTRUSTED))
    untrusted = untrusted_labels(said)
    ours = {id(e) for e in engines.values()}  # closed here; ``engine`` is the caller's
    if all(e.name != engine.name for e in engines.values()):  # (--backend keras, tensorrt...): timed beside them
        engines[engine.name.split(":")[0]] = engine
    try:
        rows = engine_rows(engines, [render], batches, rounds=rounds)
    finally:
        for e in engines.values():
            if id(e) in ours:
                e.close()
    for r in rows:
        if r.get("label") in untrusted:
            r["label"] = f"{r['label']} (wrong colours here)"
    return rows


def check_page_name(out: str | Path) -> Path:
    """``out`` as a Path; ValueError unless it ends in .html/.htm, so that the page can
    never be written over a photo of the folder, or any other file of the user's."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{out}: the report is an HTML page; give a name ending in .html")
    return out


def write_report(out: str | Path, *, engine: "Engine", results: Sequence[str | Path] = (),
                 photos: str | Path | None = None, max_photos: int = 6, gallery: str | Path | None = None,
                 progress: Callable[[str], Any] | None = None, options: Any = None,
                 image_size: int = REPORT_IMAGE_SIZE, speed_batches: Sequence[int] = (),
                 notes: list[str] | None = None) -> Path:
    """Write a self-contained HTML report.

    Parameters
    ----------
    out:
        The HTML file to write.
    engine:
        The engine that colorizes the photos.
    results:
        Results JSON files (see the module docstring) whose figures to show
        (``streamcolor bench --json`` files are also charted).
    photos:
        A folder of photos (gray or colour; searched recursively), or one with
        a ``manifest.json`` of held-out photos; None, missing or empty: the
        bundled black-and-white sample.
    max_photos:
        How many photos to show (evenly spaced over the folder's list).
    gallery:
        Also write up to 4 PNG strips (gray | ours | truth) into this folder
        (of photos with colour truth; ignored, with a note, when none has).
    options:
        :class:`~streamcolor.colorize.ColorOptions` for the photos (render size, saturation).
    image_size:
        Longest side, pixels, of each image shown.
    speed_batches:
        Measure images/s of the model's engines here at these batch sizes
        (at the photos' render size) and chart it; empty: no measurement.
    notes:
        Lines shown at the top of the page (e.g. options that were ignored);
        this function appends its own.
    """
    from streamcolor import image_io
    from streamcolor.colorize import ColorOptions
    from streamcolor.errors import InputError

    out = check_page_name(out)
    check_replaceable(out)  # both before any photo is colorized
    if gallery is not None:
        check_gallery_folder(Path(gallery))
    say = progress or (lambda msg: None)
    notes = notes if notes is not None else []
    options = (options or ColorOptions()).for_engine(engine)
    tables, machines = load_results(results)  # before any photo: a bad results file fails at once
    wanted = max(max_photos, 4 if gallery else 0)
    # as many spares as photos wanted: a broken photo's place goes to another (the work stays bounded)
    found = find_photos(photos, wanted, spares=wanted) if photos and Path(photos).is_dir() else []
    items: list[BeforeAfter] = []
    tried = 0
    twice = {name for name, n in Counter(p.name for p, _ in found).items() if n > 1}
    for path, credit in found:
        if len(items) == wanted:
            break
        tried += 1  # (a photo that fails gives its place to a spare: the count is of photos done)
        say(f"colorizing {path.name} ({len(items)} of {min(wanted, len(found))} done)")
        try:
            item = judge_photo(engine, path, options=options, max_side=image_size, credit=credit)
            if path.name in twice and path.is_relative_to(photos):  # (a/IMG_0001.jpg and b/IMG_0001.jpg)
                item = replace(item, name=path.relative_to(photos).as_posix())
            items.append(item)
        except InputError as exc:  # one bad file is a note on the page (and on stderr), not the end of the report
            notes.append(f"skipped: {exc}")
    if gallery is not None:
        with_truth = [it for it in items if it.truth is not None][:4]
        if with_truth:
            write_gallery(with_truth, gallery, model=f"streamcolor, model {engine.info.name}",
                          held_out=collector_photos(Path(photos)) is not None)
        else:
            notes.append("--gallery ignored: no photo with colour truth (the gallery shows gray | ours | original)")
    items = items[:max_photos]
    if not items:
        if found:  # (each one's reason is a note above)
            notes.append(f"none of the {tried} photo(s) tried in {photos} could be colorized: showing the "
                         "bundled black-and-white sample")
        elif photos:
            notes.append(f"no photos found in {photos}: showing the bundled black-and-white sample")
        # (the sample is ours, not a bomb: the user's --max-pixels, which may be what refused their photos, is not
        # applied to it)
        sample_options = replace(options, max_pixels=max(options.max_pixels, image_io.DEFAULT_MAX_PIXELS))
        items.append(judge_photo(engine, SAMPLE_PHOTO, options=sample_options, max_side=image_size,
                                 credit="bundled sample (black and white: no colour truth)"))
    charts = []
    photo_tab = photo_table(items)
    if photo_tab is not None:
        charts.append(quality_chart(items))
        tables.insert(0, photo_tab)
    elif items:
        notes.append("no photo has colour: the page shows before/after only (with colour photos it also measures "
                     "streamcolor against the gray baseline)")
    card = model_card_table(engine)
    if card is not None:
        tables.insert(1 if photo_tab is not None else 0, card)
    if speed_batches:
        say(f"measuring images/s at render {options.render_size}, batches {list(speed_batches)}...")

        rows = measure_speed(engine, options.render_size, speed_batches, notes=notes)
        load = f"; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
        charts.append(speed_chart(rows, note=f" - measured here{load}"))
    rows = bench_rows(results)
    if rows:
        charts.append(speed_chart(rows, note=" - from --results"))
    now = datetime.datetime.now().isoformat(timespec="seconds")
    subtitle = (f"{engine.name}; render size {options.render_size}, saturation {options.saturation:g}; "
                f"{len([i for i in items if i.size[0]])} photo(s); written {now}")
    html_text = render_html(items, tables, subtitle=subtitle, machines=machines, charts=charts, notes=notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    from streamcolor.outputs import remember_written, written_by_streamcolor

    # a file name that is not UTF-8 (its bytes kept as surrogates) is shown as \xNN, as `batch` shows it
    page = html_text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode("utf-8")
    written = image_io.write_atomic(out, page, replace=written_by_streamcolor)
    remember_written(written)
    return written


__all__ = ["BeforeAfter", "REPORT_IMAGE_SIZE", "Table", "before_after", "bench_rows", "bench_tables",
           "check_page_name", "detail_tables", "find_photos", "flat_table", "headline", "held_out_photos",
           "judge_photo", "load_results", "machine_line", "measure_speed", "photo_metrics", "photo_table",
           "quality_chart", "render_html", "speed_chart", "strip", "to_html", "to_markdown", "write_gallery",
           "write_report"]
