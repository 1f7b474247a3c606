"""Measure the engines and the video pipeline on this machine (``streamcolor bench``).

Every figure comes with the reference it should be read against, measured in
the same call, so a ratio holds on a busy machine even when the absolute
numbers do not:

* engine images/s, by engine and precision, batch size and render size; the
  engines of one shape take turns (median of the rounds), ratio to ONNX fp32;
* achieved GFLOP/s of the network (:func:`network_flops`: 2 x multiply-adds of
  every convolution and matrix product, extractor included, read from ONNX
  Runtime's own profile of the float32 graphs) against a measured matrix
  multiply peak (:func:`matmul_peak`: NumPy float32, same machine, same
  threads);
* video: frames/s of :func:`~streamcolor.video.colorize_video` against
  decode + encode alone (:func:`streamcolor.video.codec_floor`: same file, same encoder
  settings, what no colorizer can beat), alternating, best round of each.

The benchmark suite (``benchmarks/``) uses the same functions with larger
sizes and more rounds.  PyAV is imported inside the video helpers only.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from streamcolor.engines.flops import graph_flops, network_flops

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: Format tag of the JSON that ``streamcolor bench --json`` writes.
JSON_FORMAT = "streamcolor-bench/1"


@dataclass(frozen=True)
class BenchOptions:
    """What :func:`run_bench` measures.  :data:`QUICK` and :data:`FULL` are the presets."""

    model: str = "default"  # shipped model name or bundle folder
    device: str = "auto"  # "auto", "cpu" or "cuda"
    renders: tuple[int, ...] = (256,)  # square render sizes, pixels (multiples of 8)
    batches: tuple[int, ...] = (1, 8)  # images per engine call
    rounds: int = 3  # timed calls per engine and shape (the median counts)
    keras: bool = False  # also time the Keras engine (.keras files, or a model Keras can rebuild: the U-Net)
    videos: tuple[tuple[str, int, int, int], ...] = (("360p", 640, 360, 48),)  # (name, width, height, frames)
    video_rounds: int = 2  # alternating pipeline / floor rounds (the best of each counts)
    peak_size: int = 2048  # side of the square float32 matrices of the matmul peak


QUICK = BenchOptions()
FULL = BenchOptions(renders=(224, 256, 512), batches=(1, 16), rounds=5, keras=True,
                    videos=(("360p", 640, 360, 96), ("1080p", 1920, 1080, 48)))


@dataclass
class BenchResult:
    """What :func:`run_bench` measured; :meth:`to_json` and :meth:`to_text` render it."""

    machine: dict[str, Any]
    peak_gflops: float | None  # NumPy float32 matmul, this machine (None: not measured)
    engines: list[dict[str, Any]] = field(default_factory=list)  # one row per engine, render, batch
    videos: list[dict[str, Any]] = field(default_factory=list)  # one row per clip
    notes: list[str] = field(default_factory=list)  # what was not measured, and why
    recommendation: dict[str, Any] = field(default_factory=dict)  # see recommend()

    def to_json(self) -> str:
        return json.dumps({"format": JSON_FORMAT, **dataclasses.asdict(self)}, indent=1)

    def to_text(self) -> str:
        """Plain-text tables for a terminal."""
        m = self.machine
        out = [f"streamcolor bench - {m.get('date', '')} - {m.get('cpu', '')}",
               f"load average (1, 5, 15 min): {load_text(m)}; "
               f"ONNX Runtime {m.get('onnxruntime', '?')}, providers {', '.join(m.get('providers', []))}"]
        if m.get("gpu"):
            out.append(f"GPU: {m['gpu']}")
        if self.peak_gflops:
            out.append(f"matmul peak (NumPy float32, {m.get('blas_threads', '?')} threads): "
                       f"{self.peak_gflops:.1f} GFLOP/s")
        if self.engines:
            out += ["", _text_table(["engine", "precision", "render", "batch", "images/s", "x onnx fp32",
                                     "GFLOP/s", "% of peak"],
                                    [[r["engine"], r["precision"], r["render"], r["batch"],
                                      f"{r['images_per_s']:.2f}", _fmt(r.get("ratio_to_fp32"), 2),
                                      _fmt(r.get("gflops"), 1), _fmt(_pct(r.get("share_of_peak")), 1)]
                                     for r in self.engines])]
        if self.videos:
            out += ["", _text_table(["video", "frames", "render", "pipeline fps", "decode+encode fps",
                                     "pipeline / floor"],
                                    [[f"{v['clip']} ({v['width']}x{v['height']})", v["frames"], v["render_size"],
                                      f"{v['pipeline_fps']:.2f}", f"{v['floor_fps']:.2f}",
                                      f"{v['pipeline_over_floor']:.3f}"] for v in self.videos])]
        out += [f"note: {n}" for n in self.notes]
        if self.recommendation:
            import textwrap

            out += ["", f"recommended here: {self.recommendation['options']}",
                    textwrap.fill(self.recommendation["why"], width=100, initial_indent="  ", subsequent_indent="  "),
                    f"  e.g. {self.recommendation['example']}"]
        return "\n".join(out) + "\n"


def load_text(machine: Mapping[str, Any]) -> str:
    """The load averages of a bench run, labelled: "before 1.02 0.98 0.91, after 1.40 1.05 0.94"."""
    parts = []
    for when, key in (("before", "load_average"), ("after", "load_average_after")):
        vals = machine.get(key)
        if vals:
            parts.append(f"{when} {' '.join(f'{x:.2f}' for x in vals)}")
    return ", ".join(parts) or "not available"


#: Engine label in bench rows -> the `--backend` that runs it.
BACKEND_OF_LABEL = {"onnx-cpu-fp32": "onnx", "onnx-cuda-fp32": "onnx", "onnx-cpu-int8": "onnx-int8",
                    "onnx-cuda-fp16": "onnx-fp16", "tensorrt-fp16": "tensorrt", "keras-fp32": "keras"}


#: How a note of :func:`load_engines` starts when an engine is timed but gives wrong colours here.
UNTRUSTED = "not recommended:"


def untrusted_labels(notes: Sequence[str]) -> set[str]:
    """The engine labels that ``notes`` (from :func:`load_engines`) mark as timed but not to be
    trusted here (``"not recommended: onnx-cpu-int8: ..."``)."""
    return {n.split()[2].rstrip(":") for n in notes if n.startswith(UNTRUSTED) and len(n.split()) > 2}


def recommend(rows: Sequence[Mapping[str, Any]], model_render: int, notes: Sequence[str] = (), *,
              model_names_render: bool = True, model: str = "default", size_multiple: int = 8) -> dict[str, Any]:
    """Engine, batch and render size for this machine from the measured rows.

    Engine: the fastest at the measured render nearest the model's, by ratio (512 is nearer 384
    than 256 is; the larger of two as near).
    Batch: the smallest
    within 5% of that engine's best (bigger batches only add latency and
    memory then).  Render: the model's recommended size (its quality was
    measured there); images/s there is measured, or estimated from the nearest measured
    render by pixel count (the network's cost is about proportional to it), counting the
    pixels each side is padded to, a multiple of ``size_multiple`` (the U-Net's 32: timed at
    -r 40, it ran at 64).  Measured only at
    renders under half or over twice the model's, the engines may rank otherwise there (int8's
    gain grows with the size): the backend is then left to ``auto`` and the text says to measure
    at the model's render.  ``model``: the model benchmarked (named in the command unless the
    default)."""
    import math

    untrusted = untrusted_labels(notes)
    rows = [r for r in rows if r["label"] not in untrusted]  # fast but wrong colours on this CPU
    if not rows:
        return {}
    render = min({r["render"] for r in rows}, key=lambda r: (abs(math.log(r / model_render)), -r))
    at = [r for r in rows if r["render"] == render]
    best = max(at, key=lambda r: r["images_per_s"])
    same = [r for r in at if r["label"] == best["label"]]
    batch = min((r for r in same if r["images_per_s"] >= 0.95 * best["images_per_s"]), key=lambda r: r["batch"])
    far = not 0.5 <= render / model_render <= 2.0
    backend = "auto" if far else BACKEND_OF_LABEL.get(best["label"], "auto")
    def padded(side: int) -> int:
        return -(-side // size_multiple) * size_multiple

    est = batch["images_per_s"] * (padded(render) / padded(model_render)) ** 2
    by_batch = {r["batch"]: r["images_per_s"] for r in same}
    if len(by_batch) == 1:
        batch_note = f"only batch {batch['batch']} was timed"
    elif batch["batch"] != min(by_batch):
        gain = batch["images_per_s"] / by_batch[min(by_batch)]
        batch_note = f"batch {batch['batch']} gives {gain:.2f}x batch {min(by_batch)}"
    else:
        batch_note = ("larger batches were not faster here "
                      f"({', '.join(f'{b}: {v:.2f}' for b, v in sorted(by_batch.items()))} images/s)")
    whose = "the model's recommended size" if model_names_render else "streamcolor's default (the model names none)"
    ref = [r for r in at if r["batch"] == batch["batch"] and r["label"] != best["label"]]
    engine_note = "; ".join(f"{r['label']} {r['images_per_s']:.2f}" for r in ref)
    from streamcolor.engines import ALIASES, DEFAULT_MODEL

    named = "" if str(model) in (DEFAULT_MODEL, ALIASES[DEFAULT_MODEL]) else f"-m {model} "
    options = f"{named}--backend {backend} -b {batch['batch']} -r {model_render}"
    why = (f"{best['label']} was the fastest engine ({batch['images_per_s']:.2f} images/s at render {render}, batch "
           f"{batch['batch']}{'; ' + engine_note if engine_note else ''}); {batch_note}; render {model_render} is "
           f"{whose}: " + (f"{est:.1f} images/s there, as measured" if render == model_render else
                           f"about {est:.1f} images/s there (estimated from render {render}"
                           + (f", run at {padded(render)}," if padded(render) != render else "")
                           + " by pixel count)"))
    if far:
        why += (f". Render {render} is far from {model_render}, where the engines may rank otherwise: the backend "
                f"is left to auto; `streamcolor bench {named}-r {model_render}` measures it there")
    return {"model": str(model), "backend": backend, "batch": batch["batch"], "render_size": model_render,
            "images_per_s_estimate": round(est, 2), "options": options, "why": why,
            "example": f"streamcolor batch photos/ -o colour/ {options}"}


def _fmt(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU (with the instruction sets that matter), cores, GPU, runtime versions, date, load."""
    from streamcolor.engines import runtime_info
    from streamcolor.engines.select import cpu_description

    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_description(),
            "cpu_count": os.cpu_count(), "blas_threads": blas_threads(), "python": platform.python_version(),
            "numpy": np.__version__, **runtime_info(), "load_average": _load()}
    gpu = gpu_name()
    if gpu:
        info["gpu"] = gpu
    return info


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def blas_threads() -> int:
    """Threads NumPy's matrix multiply uses (threadpoolctl when installed, else the CPU count)."""
    try:
        from threadpoolctl import threadpool_info

        n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        if n:
            return int(n[0])
    except ImportError:
        pass
    env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return int(env) if env and env.isdigit() else (os.cpu_count() or 1)


def gpu_name() -> str | None:
    """The NVIDIA GPU's name from the driver, or None."""
    root = Path("/proc/driver/nvidia/gpus")
    try:
        for d in sorted(root.iterdir()):
            for line in (d / "information").read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- arithmetic


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 (n x n) @ (n x n) NumPy product on this machine
    (2 n^3 flops a product; NumPy's BLAS threads, see :func:`blas_threads`)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # warm-up: threads, pages
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


# --------------------------------------------------------------------------- engines


def time_engines(engines: Mapping[str, "Engine"], l: np.ndarray, rounds: int = 3,
                 before_each: Callable[[], Any] | None = None) -> dict[str, list[float]]:
    """Seconds per ``predict(l)`` of each engine, the engines taking turns
    (one warm-up call each first), so that load from other processes hits all
    alike.  ``before_each``: called (untimed) before every timed call.
    Returns label -> list of ``rounds`` durations."""
    for eng in engines.values():
        eng.predict(l)
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(max(1, rounds)):
        for k, eng in engines.items():
            if before_each:
                before_each()
            t = time.perf_counter()
            eng.predict(l)
            times[k].append(time.perf_counter() - t)
    return times


def engine_rows(engines: Mapping[str, "Engine"], renders: Iterable[int], batches: Iterable[int], *,
                rounds: int = 3, peak: float | None = None, reference: str | None = None,
                flops_model: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per (engine, render, batch): images/s (median of ``rounds``), ratio
    to the ``reference`` engine (default: the first), GFLOP/s and its share of
    ``peak`` (GFLOP/s).  ``flops_model``: label -> bundle whose graphs to count
    (default: each engine's own)."""
    reference = reference or next(iter(engines))
    rows = []
    for render in renders:
        for batch in batches:
            l = np.random.default_rng(0).uniform(-1, 1, (batch, render, render, 1)).astype(np.float32)
            times = time_engines(engines, l, rounds)
            ips = {k: batch / float(np.median(v)) for k, v in times.items()}
            for k, eng in engines.items():
                row = {"engine": eng.name, "label": k, "precision": _precision(k, eng), "render": render,
                       "batch": batch, "images_per_s": round(ips[k], 3),
                       "ratio_to_fp32": round(ips[k] / ips[reference], 3),
                       "rounds_s": [round(t, 4) for t in times[k]]}
                try:
                    fl = network_flops((flops_model or {}).get(k, eng), render, render)["total"]
                except Exception as exc:  # counting is a bonus: never lose the timing for it
                    log.info("no flop count for %s: %s", k, exc)
                else:
                    row["gflop_per_image"] = round(fl / 1e9, 3)
                    row["gflops"] = round(ips[k] * fl / 1e9, 2)
                    if peak:
                        row["share_of_peak"] = round(ips[k] * fl / 1e9 / peak, 4)
                rows.append(row)
    return rows


def with_share_of_peak(rows: list[dict[str, Any]], peak: float) -> list[dict[str, Any]]:
    """Set each float row's ``share_of_peak`` = its GFLOP/s / ``peak`` (a float32
    GFLOP/s); returns ``rows``.  int8 rows get none: their operations per second
    are not comparable with a float32 peak."""
    for r in rows:
        if r.get("gflops") is not None and peak and "int8" not in str(r.get("label", r.get("precision", ""))):
            r["share_of_peak"] = round(r["gflops"] / peak, 4)
    return rows


def _precision(label: str, eng: "Engine") -> str:
    from streamcolor.engines.select import PRECISIONS

    return next((p for p in PRECISIONS if p in label), "fp32")


class _DropLogLines(logging.Filter):
    """Drops the log lines that contain ``text`` (said elsewhere already)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def load_engines(model: str | Path, device: str = "auto", *, keras: bool = False
                 ) -> tuple[dict[str, "Engine"], list[str]]:
    """The engines worth timing for ``model`` here, by label, and notes on the
    ones left out.  CPU: ONNX fp32, int8 (when the bundle has it), Keras (when
    asked and it can run the bundle: .keras files, or the U-Net it rebuilds).  CUDA: ONNX fp32 and fp16, TensorRT
    when installed.  The first engine is the reference (ONNX fp32)."""
    from streamcolor.engines import load_engine, resolve_model
    from streamcolor.engines.select import cuda_available, kernel_check, variants

    info = resolve_model(model)
    dev = "cuda" if device == "cuda" or (device == "auto" and cuda_available()) else "cpu"
    engines: dict[str, Engine] = {f"onnx-{dev}-fp32": load_engine(info.path, "onnx", device=dev)}
    notes: list[str] = []
    recs = variants(info)
    if dev == "cpu":
        if "int8" in recs:
            # load_engine warns that int8 is asked for on a CPU that gets its colours wrong; the bench
            # asks on purpose, to time it, and says so once in its own notes (UNTRUSTED) below.
            quiet = _DropLogLines("running int8 as asked, but on this CPU")  # (the kernel check's line only)
            logging.getLogger("streamcolor.engines.select").addFilter(quiet)
            try:
                engines["onnx-cpu-int8"] = load_engine(info.path, "onnx", precision="int8", device="cpu")
            finally:
                logging.getLogger("streamcolor.engines.select").removeFilter(quiet)
            check = kernel_check(info, "int8", engines["onnx-cpu-int8"])
            if not check.ok:
                notes.append(f"{UNTRUSTED} onnx-cpu-int8: timed, but on this CPU {check.why}")
        else:
            notes.append(f"int8: the bundle {info.name} has no int8 variant "
                         f"(make one: streamcolor train quantize {info.path} --calib PHOTOS/)")
        notes.append("fp16/bf16: ONNX Runtime's CPU provider has no float16/bfloat16 convolution kernels on x86")
    else:
        try:
            engines["onnx-cuda-fp16"] = load_engine(info.path, "onnx", precision="fp16", device="cuda")
        except Exception as exc:
            notes.append(f"fp16: not loaded ({exc})")
        try:
            engines["tensorrt-fp16"] = load_engine(info.path, "tensorrt")
        except Exception as exc:
            notes.append(f"TensorRT: not available ({str(exc).splitlines()[0]})")
    if keras:
        from streamcolor.engines.keras_engine import can_run

        if can_run(info):  # (.keras files, or a one-graph model its registered builder rebuilds: the U-Net)
            try:
                engines["keras-fp32"] = load_engine(info.path, "keras")
            except Exception as exc:
                notes.append(f"Keras: not loaded ({exc})")
        else:
            notes.append(f"Keras: the bundle {info.name} has no .keras files and Keras cannot rebuild it (ONNX only)")
    if dev == "cpu":
        notes.append("TensorRT: needs an NVIDIA GPU")
    return engines, notes


# --------------------------------------------------------------------------- video


def video_row(engine: "Engine", src: str | Path, folder: str | Path, *, name: str = "clip", rounds: int = 2,
              options: Any = None) -> dict[str, Any]:
    """Frames/s of the pipeline and of the codec floor on one clip, alternating,
    best round of each; ``pipeline_over_floor`` is their ratio."""
    from streamcolor.video import VideoOptions, codec_floor, colorize_video, video_size

    options = options or VideoOptions()
    folder = Path(folder)
    fps: dict[str, list[float]] = {"floor": [], "pipeline": []}
    frames = width = height = 0
    load = [_load()[:1]]
    for r in range(max(1, rounds)):
        t = time.perf_counter()
        frames = codec_floor(src, folder / f"floor-{name}.mp4", options)
        fps["floor"].append(frames / (time.perf_counter() - t))
        t = time.perf_counter()
        colorize_video(src, folder / f"pipeline-{name}.mp4", engine=engine, options=options, progress=False)
        fps["pipeline"].append(frames / (time.perf_counter() - t))
    load.append(_load()[:1])
    width, height = video_size(src)
    best = {k: max(v) for k, v in fps.items()}
    return {"clip": name, "width": width, "height": height, "frames": frames, "engine": engine.name,
            "render_size": options.color_options(engine).render_size,
            "pipeline_fps": round(best["pipeline"], 2), "floor_fps": round(best["floor"], 2),
            "pipeline_over_floor": round(best["pipeline"] / best["floor"], 3),
            "all_rounds_fps": {k: [round(x, 2) for x in v] for k, v in fps.items()},
            "load_average_1min": [x[0] for x in load if x]}


# --------------------------------------------------------------------------- all


def run_bench(options: BenchOptions = QUICK, *, progress: Callable[[str], Any] | None = None) -> BenchResult:
    """Measure this machine with ``options``.

    Parameters
    ----------
    options:
        :data:`QUICK` (about a minute on 2 cores), :data:`FULL`, or a variant
        made with ``dataclasses.replace``.
    progress:
        Called with a one-line message before each step (e.g. ``click.echo``).

    Returns
    -------
    BenchResult
        Engine rows (images/s, ratio to ONNX fp32, GFLOP/s, share of the
        matmul peak) and video rows (pipeline fps against decode + encode).
    """
    say = progress or (lambda msg: None)
    machine = machine_info()
    engines, notes = load_engines(options.model, options.device, keras=options.keras)  # (first: a bad name says so now)
    say("matmul peak (NumPy float32), measured before and after the engines...")
    peak = matmul_peak(options.peak_size)
    on_gpu = any("cuda" in k or "tensorrt" in k for k in engines)
    result = BenchResult(machine=machine, peak_gflops=round(peak, 1), notes=notes)
    if on_gpu:
        result.notes.append("% of peak is against the CPU's matmul peak only; no GPU reference is measured")
    try:
        say(f"engines: {', '.join(engines)}; renders {list(options.renders)}, batches {list(options.batches)}...")
        rows = engine_rows(engines, options.renders, options.batches, rounds=options.rounds)
        peak = max(peak, matmul_peak(options.peak_size))  # before and after: the better of two samples
        result.peak_gflops = round(peak, 1)
        result.engines = rows if on_gpu else with_share_of_peak(rows, peak)
        if options.videos:
            from streamcolor.video import VideoOptions, make_clip

            video_engine = next(iter(engines.values()))
            with tempfile.TemporaryDirectory(prefix="streamcolor-bench-") as tmp:
                for name, w, h, n in options.videos:
                    say(f"video {name} ({w}x{h}, {n} frames)...")
                    clip = make_clip(Path(tmp) / f"{name}.mp4", w, h, n)
                    result.videos.append(video_row(video_engine, clip, tmp, name=name, rounds=options.video_rounds,
                                                   options=VideoOptions()))
    finally:
        for eng in engines.values():
            eng.close()
    machine["load_average_after"] = _load()
    from streamcolor.engines import resolve_model

    from streamcolor.colorize import DEFAULT_RENDER_SIZE

    info = resolve_model(options.model)
    model_render = int(info.meta.get("render_size", DEFAULT_RENDER_SIZE))  # what colorizing with it will use
    result.recommendation = recommend(result.engines, model_render, result.notes, model=options.model,
                                      model_names_render="render_size" in info.meta, size_multiple=info.size_multiple)
    return result


__all__ = ["BenchOptions", "BenchResult", "FULL", "QUICK", "engine_rows", "graph_flops",
           "load_engines", "load_text", "machine_info", "matmul_peak", "network_flops", "recommend", "run_bench",
           "time_engines", "video_row", "with_share_of_peak"]
