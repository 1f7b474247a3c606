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
from dataclasses import dataclass, field
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


def load_results(paths: Sequence[str | Path]) -> tuple[list[Table], list[str]]:
    """Tables from results files of any of the kinds in the module docstring,
    and one machine line per pytest-benchmark file."""
    tables: list[Table] = []
    machines: list[str] = []
    for p in map(Path, paths):
        data = json.loads(p.read_text())
        if isinstance(data, dict) and "benchmarks" in data and "machine_info" in data:
            machines.append(f"{p.name}: {machine_line(data)}")
            tables.append(headline(data))
            tables += detail_tables(data)
        elif isinstance(data, dict) and str(data.get("format", "")).startswith("streamcolor-bench/"):
            tables += bench_tables(data)
        else:
            gpu = f" ({data['device']})" if isinstance(data, dict) and data.get("device") else ""
            tables.append(flat_table(f"{p.name}{gpu}", data))
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


def held_out_photos(folder: str | Path, n: int = 4) -> list[tuple[Path, dict]]:
    """``n`` photos of the ``val`` split of a ``manifest.json`` folder (as
    written by ``streamcolor.trainer.collect_photos``), evenly spaced over the list in
    manifest order (not chosen by result), skipping near-gray ones."""
    from streamcolor.engines import lab

    folder = Path(folder)
    entries = [e for e in json.loads((folder / "manifest.json").read_text()).get("photos", [])
               if e.get("split") == "val" and (folder / e["file"]).is_file()]
    picked: list[tuple[Path, dict]] = []
    if not entries or n <= 0:
        return picked
    step = len(entries) / n
    for i in range(n):
        for e in entries[int(i * step):] + entries[:int(i * step)]:  # next photo with colour, wrapping
            path = folder / e["file"]
            if any(p == path for p, _ in picked):
                continue
            rgb = np.asarray(Image.open(path).convert("RGB").resize((64, 64)))
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
        pixels = (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)
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


def write_gallery(items: Sequence[BeforeAfter], folder: str | Path) -> list[Path]:
    """One PNG strip (gray | ours | truth) per item in ``folder``, plus a README
    crediting each photo.  Returns the PNG paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, lines = [], ["# Before / after gallery", "",
                        "Each image: the gray input (lightness only) | streamcolor's default model | the original "
                        "colour photo. Held-out photos (never seen in training), evenly spaced over the held-out "
                        "list, not chosen by result; downscaled. Made with `streamcolor report --gallery`.", "",
                        "| file | photo | credit |", "|---|---|---|"]
    for i, it in enumerate(items, start=1):
        stem = Path(it.name).stem.split("__")[-1]
        p = folder / f"{i:02d}-{stem}.png"
        Image.fromarray(strip(it)).save(p, optimize=True)
        paths.append(p)
        lines.append(f"| {p.name} | {it.name} | {it.credit or '-'} |")
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    return paths


# --------------------------------------------------------------------------- the report


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.85em; margin-top: 0; }
.photo { margin: 1em 0 1.5em; } .photo figure { display: inline-block; margin: 0 6px 0 0; vertical-align: top; }
.photo figcaption { font-size: 0.85em; color: #444; text-align: center; } .photo img { display: block; }
.credit { font-size: 0.8em; color: #777; }
"""


def render_html(items: Sequence[BeforeAfter], tables: Sequence[Table], *, title: str = "streamcolor report",
                subtitle: str = "", machines: Sequence[str] = ()) -> str:
    """The whole report as one HTML string (images embedded)."""
    photos = []
    for it in items:
        figs = [("gray input", it.gray), ("streamcolor", it.colour)]
        if it.truth is not None:
            figs.append(("original colour", it.truth))
        cells = "".join(f"<figure><img src='{_data_uri(im)}' width='{im.shape[1]}' height='{im.shape[0]}' "
                        f"alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption></figure>"
                        for cap, im in figs)
        credit = f"<div class='credit'>{html.escape(it.credit)}</div>" if it.credit else ""
        photos.append(f"<div class='photo'><b>{html.escape(it.name)}</b><br>{cells}{credit}</div>")
    mach = "".join(f"<li>{html.escape(m)}</li>" for m in machines)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='sub'>{html.escape(subtitle)}</p>"
            f"<h2>Before / after</h2>{''.join(photos) or '<p>no photos</p>'}"
            f"<h2>Figures</h2>{'<ul>' + mach + '</ul>' if mach else ''}{to_html(tables)}</body></html>\n")


def model_card_table(engine: "Engine") -> Table | None:
    """The evaluation stored in the model's ``model.json``, if any."""
    ev = engine.info.meta.get("eval")
    if not isinstance(ev, dict) or "model" not in ev:
        return None
    return _table(f"Model card: {engine.info.name} on {ev.get('images', '?')} held-out photos ({ev.get('source', '')})",
                  [["a*b* MSE", _get(ev, "model.mse_ab"), _get(ev, "gray.mse_ab"), 0],
                   ["PSNR, dB", _get(ev, "model.psnr"), _get(ev, "gray.psnr"), "-"],
                   ["colorfulness", _get(ev, "model.colorfulness"), _get(ev, "gray.colorfulness"),
                    _get(ev, "truth.colorfulness")]],
                  ["metric", "model", "gray baseline", "truth"], f"engine: {ev.get('engine', '?')}")


def write_report(out: str | Path, *, engine: "Engine", results: Sequence[str | Path] = (),
                 photos: str | Path | None = None, max_photos: int = 6, gallery: str | Path | None = None,
                 progress: Callable[[str], Any] | None = None) -> Path:
    """Write a self-contained HTML report.

    Parameters
    ----------
    out:
        The HTML file to write.
    engine:
        The engine that colorizes the before/after photos.
    results:
        Results JSON files (see the module docstring) whose figures to show;
        none: the evaluation stored in the model's ``model.json`` only.
    photos:
        A folder with a ``manifest.json`` of held-out (``val``) photos; None
        or missing: the bundled black-and-white sample only.
    max_photos:
        How many held-out photos to show (evenly spaced over the list).
    gallery:
        Also write up to 4 PNG strips (gray | ours | truth) into this folder.
    """
    say = progress or (lambda msg: None)
    have_photos = photos is not None and (Path(photos) / "manifest.json").is_file()

    def colorize(n: int) -> list[BeforeAfter]:
        made = []
        for path, e in held_out_photos(photos, n):
            say(f"colorizing {path.name}")
            credit = ", ".join(x for x in (e.get("package"), e.get("licence"), e.get("copyright")) if x)
            made.append(before_after(engine, path, credit=credit[:300]))
        return made

    if gallery is not None:
        if not have_photos:
            raise ValueError("a gallery needs held-out photos with colour truth (a folder with manifest.json)")
        write_gallery(colorize(4), gallery)
    items = colorize(max_photos) if have_photos else []
    items.append(before_after(engine, SAMPLE_PHOTO, credit="bundled sample (black and white: no colour truth)"))
    tables, machines = load_results(results)
    card = model_card_table(engine)
    if card is not None:
        tables.insert(0, card)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    html_text = render_html(items, tables, subtitle=f"{engine.name}, written {now}", machines=machines)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_text)
    return out


__all__ = ["BeforeAfter", "Table", "before_after", "bench_tables", "detail_tables", "flat_table", "headline",
           "held_out_photos", "load_results", "machine_line", "render_html", "strip", "to_html", "to_markdown",
           "write_gallery", "write_report"]
