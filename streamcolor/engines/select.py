"""Which precision to run a bundle in: the fastest variant that keeps the quality.

Besides its float32 graphs (``colorizer.onnx``, ``extractor.onnx``) a bundle
may hold lower-precision variants, each described in ``model.json`` under
``"variants"`` by ``python -m streamcolor.trainer.quantize`` (which measures them)::

    "variants": {
      "int8": {"colorizer": "colorizer-int8.onnx", "extractor": "extractor-int8.onnx",
               "device": "cpu", "mse_rel": 0.006, "mse_vs_fp32": 1.1e-05,
               "speedup_224_b16": 3.4, "made_from": {"colorizer.onnx": "<sha256>"},
               "quantization": {...}, "calibration_set": {...}, ...},
      "fp16": {"colorizer": "colorizer-fp16.onnx", "extractor": "extractor-fp16.onnx",
               "device": "cuda", "mse_rel": 0.0002, ...}
    }

* ``int8``: static QDQ quantization (ONNX Runtime), for CPUs; on CPUs with
  VNNI or AMX it runs the convolutions as int8 kernels.
* ``fp16``: a true-float16 graph (float32 inputs and outputs), for the CUDA
  provider.  ONNX Runtime's CPU provider has no float16 (nor bfloat16)
  convolution kernels on x86: it casts back to float32 there, so this variant
  is never chosen on a CPU.  When the bundle does not carry the fp16 files
  (the shipped default leaves them out to stay small) they are converted from
  the float32 graphs at load time and cached (needs ``onnx`` and
  ``onnxconverter-common``).

Quality guard: ``mse_rel`` = |MSE(variant) - MSE(fp32)| / MSE(fp32), the a*b*
MSE against the truth on held-out photos.  ``precision="auto"`` only takes a
variant whose ``mse_rel`` is measured and at most :data:`MAX_DRIFT`, and that
was made from the float32 graphs the bundle holds now (``made_from``, checked
against the sha256 in ``files``, so a re-exported model never runs a stale
variant); any
variant it passes over is logged with the reason.  A forced precision always
loads (with a warning when it fails the guard).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from streamcolor.engines.base import EngineError, ModelInfo, interrupted

if TYPE_CHECKING:
    from streamcolor.engines.onnx_engine import OnnxEngine

log = logging.getLogger(__name__)

#: Precisions of the ONNX engine; "fp32" is the bundle's own graphs, the reference.
PRECISIONS = ("fp32", "int8", "fp16")
#: Largest relative drift of the a*b* MSE that "auto" accepts.
MAX_DRIFT = 0.05
#: Largest disagreement (mean |a*b*| difference over mean |a*b*|) of a CPU variant with
#: fp32 on the probe photo, *as run by this machine's kernels*, before "auto" stops
#: trusting the variant here.  The quality guard above is measured where the variant
#: was made; this catches CPUs whose int8 kernels compute something else: ONNX Runtime's
#: u8s8 kernels saturate on AVX2 CPUs without VNNI (onnxruntime#6004; its quantization
#: guide advises reduce_range there): 0.72 on the default model on an AMD EPYC with AVX2
#: only, where a correct int8 evaluation of the same graph gives 0.11.
MAX_KERNEL_DISAGREEMENT = 0.3
#: The probe: a 256 x 256 gray photo shipped with the engines (a crop of the bundled sample).
PROBE = Path(__file__).with_name("probe.png")
#: Default file names of each variant: (colorizer, extractor).
VARIANT_FILES = {"fp32": ("colorizer.onnx", "extractor.onnx"),
                 "int8": ("colorizer-int8.onnx", "extractor-int8.onnx"),
                 "fp16": ("colorizer-fp16.onnx", "extractor-fp16.onnx")}
#: Where each variant is meant to run.
VARIANT_DEVICE = {"fp32": "any", "int8": "cpu", "fp16": "cuda"}
#: Where fp16 graphs converted at load time are cached.
CACHE_DIR = Path(os.environ.get("STREAMCOLOR_CACHE", Path.home() / ".cache" / "streamcolor"))


@dataclass(frozen=True)
class Choice:
    """What "auto" picked and why."""

    precision: str  # one of PRECISIONS
    device: str  # "cpu" or "cuda"
    reason: str  # one line, for the log


def variants(info: ModelInfo) -> dict[str, dict[str, Any]]:
    """The variants described in ``model.json`` (name -> record); {} when none."""
    v = info.meta.get("variants") or {}
    return {k: dict(r) for k, r in v.items() if isinstance(r, dict)}


def guard(info: ModelInfo, precision: str, *, max_drift: float = MAX_DRIFT) -> tuple[bool, str]:
    """Whether ``precision`` passes the quality guard, and a one-line reason."""
    if precision == "fp32":
        return True, "the reference"
    rec = variants(info).get(precision)
    if rec is None:
        return False, f"the bundle has no {precision} variant (make one: python -m streamcolor.trainer.quantize {info.path})"
    made_from = rec.get("made_from") or {}
    for name, sha in made_from.items():
        if info.files.get(name) and info.files[name] != sha:
            return False, f"it was made from another {name} than the bundle's (re-run python -m streamcolor.trainer.quantize)"
    drift = rec.get("mse_rel")
    if drift is None:
        return False, f"its quality was never measured (no mse_rel in {info.path.name}/model.json)"
    if not np.isfinite(drift) or drift > max_drift:
        return False, (f"its a*b* MSE drifts {100 * drift:.1f}% from fp32 on held-out photos "
                       f"(limit {100 * max_drift:.0f}%)")
    return True, f"a*b* MSE within {100 * drift:.2f}% of fp32 (limit {100 * max_drift:.0f}%)"


def cuda_available() -> bool:
    """Whether ONNX Runtime offers the CUDA provider here."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def auto_runtime(*, ort_cuda: bool, nvidia_gpu: bool, jax_gpu: "Callable[[], bool]") -> str:
    """The backend ``backend="auto"`` loads: ONNX Runtime, except on an NVIDIA GPU whose
    ONNX Runtime has no CUDA provider but whose JAX does: there the Keras engine on JAX
    keeps the network on the GPU.  ``jax_gpu`` is only called on such a machine (it imports JAX)."""
    if ort_cuda or not nvidia_gpu:
        return "onnx"
    if jax_gpu():
        log.info("an NVIDIA GPU without ONNX Runtime CUDA: running the model with Keras 3 on JAX (GPU)")
        return "keras"
    return "onnx"  # OnnxEngine warns that the GPU goes unused


def has_nvidia_gpu() -> bool:
    """Whether this machine has an NVIDIA GPU with its driver loaded (device files; imports nothing)."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")


def jax_on_gpu() -> bool:
    """Whether JAX is installed and computes on a GPU here."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        return False
    try:
        import jax

        return jax.default_backend() == "gpu"
    except Exception:  # a broken CUDA install: JAX cannot start on the GPU
        return False


def choose(info: ModelInfo, *, device: str = "auto", max_drift: float = MAX_DRIFT) -> Choice:
    """Pick the precision "auto" runs ``info`` in on ``device`` ("auto", "cpu", "cuda").

    CUDA (when present and not excluded): fp16 if it passes the guard, else fp32.
    CPU: the variant with the largest measured speed-up over fp32 among those
    that pass the guard, else fp32.  Every variant passed over is logged with
    its reason.
    """
    dev = "cuda" if device == "cuda" or (device == "auto" and cuda_available()) else "cpu"
    recs = variants(info)
    best = Choice("fp32", dev, "no faster variant passes the quality guard")
    best_speed = 1.0
    for name in PRECISIONS[1:]:
        if name not in recs:
            continue
        want = VARIANT_DEVICE[name]
        if want != dev:
            log.info("%s: %s variant not considered: it is meant for %s, running on %s", info.name, name, want, dev)
            continue
        ok, why = guard(info, name, max_drift=max_drift)
        if not ok:
            log.warning("%s: not using the %s variant: %s; running fp32", info.name, name, why)
            continue
        # fp16 on a GPU is taken on trust (tensor cores); CPU variants need a measured gain.
        speed = float(recs[name].get("speedup_224_b16") or (2.0 if dev == "cuda" else 0.0))
        if speed <= best_speed:
            log.info("%s: %s variant not faster than fp32 here (speed-up %.2f)", info.name, name, speed)
            continue
        best, best_speed = Choice(name, dev, f"{why}; {speed:.1f}x fp32 images/s"), speed
    log.info("%s: by the bundle's records, %s on %s (%s)%s", info.name, best.precision, best.device, best.reason,
             "; this CPU's kernels are checked before it is used" if best.device == "cpu" and best.precision != "fp32"
             else "")
    return best


def load_onnx(info: ModelInfo, *, precision: str | None = None, device: str = "auto", threads: int = 0,
              max_drift: float = MAX_DRIFT, **kw) -> "OnnxEngine":
    """An ONNX engine for ``info`` in ``precision``.

    Parameters
    ----------
    precision:
        None or "fp32": the float32 graphs (what ``backend="onnx"`` always
        loaded); "int8" or "fp16": that variant, forced (a warning when it
        fails the guard); "auto": :func:`choose`.
    device:
        "auto", "cpu" or "cuda", as for :class:`~streamcolor.engines.onnx_engine.OnnxEngine`.
        A forced int8 variant runs on the CPU unless "cuda" is asked for.
    kw:
        ``colorizer_file``/``extractor_file`` override the variant's files.
    """
    precision = precision or "fp32"
    if precision == "auto":
        if "colorizer_file" in kw or "extractor_file" in kw:
            precision = "fp32"  # explicit files: the caller knows what to load
        else:
            choice = choose(info, device=device, max_drift=max_drift)
            precision, device = choice.precision, choice.device
            known = cached_kernel_check(info, precision) if precision != "fp32" and device == "cpu" else None
            if known is not None and not known.ok:  # measured before on this machine: no session to build
                log.info("%s: not using the %s variant on this CPU: %s; running fp32", info.name, precision,
                         known.why)
                precision = "fp32"
            if precision != "fp32":
                try:
                    engine = _load(info, precision, device, threads, kw)
                except (ImportError, EngineError) as exc:
                    if interrupted(exc):  # a Ctrl-C as the runtime loaded, not a variant that cannot load
                        raise
                    log.warning("%s: cannot load the %s variant (%s); running fp32", info.name, precision, exc)
                    precision = "fp32"
                else:
                    if device != "cpu":
                        return engine
                    check = kernel_check(info, precision, engine)
                    if check.ok:
                        return engine
                    engine.close()
                    # info, not a warning: auto chose, and chose right (fp32 gives the same colours,
                    # a little slower); a first run on a new machine must not look like a failure (-v shows it)
                    log.info("%s: not using the %s variant on this CPU: %s; running fp32", info.name, precision,
                             check.why)
                    precision = "fp32"
    elif precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {['auto', *PRECISIONS]}")
    elif precision != "fp32":
        if precision == "fp16" and not (_fp16_convertible() or (info.path / variant_files_named(info, "fp16")[0]
                                                                 ).is_file()):
            raise EngineError(f"model bundle {info.path} has no float16 graphs here: " + fp16_advice(info.path))
        if precision == "int8" and precision not in variants(info):
            raise EngineError(f"model bundle {info.path} has no int8 variant; make one with "
                              f"`streamcolor train quantize {info.path} --calib PHOTOS` (needs streamcolor[train])")
        ok, why = guard(info, precision, max_drift=max_drift)
        if not ok:
            log.warning("%s: running %s as asked, but %s", info.name, precision, why)
        if precision == "int8" and device == "auto":
            device = "cpu"
        if precision == "int8" and device == "cpu":
            engine = _load(info, precision, device, threads, kw)
            check = kernel_check(info, precision, engine)
            if not check.ok:
                log.warning("%s: running int8 as asked, but on this CPU %s", info.name, check.why)
            return engine
        if precision == "fp16" and (device == "cpu" or (device == "auto" and not cuda_available())):
            log.warning("%s: fp16 on the CPU is not faster: ONNX Runtime has no float16 convolutions on x86 "
                        "and casts them back to float32", info.name)
    return _load(info, precision, device, threads, kw)


class KernelCheck(NamedTuple):
    """What :func:`kernel_check` found: ``ok``, a one-line ``why``, and whether the
    answer came from the cache (measured earlier on this machine)."""

    ok: bool
    why: str
    cached: bool


def kernel_check(info: ModelInfo, precision: str, engine: "OnnxEngine", *,
                 limit: float | None = None) -> KernelCheck:
    """Whether ``engine`` (a CPU variant of ``info``) agrees with fp32 on this machine.

    Runs the probe photo through ``engine`` and through the float32 graphs and
    compares their a*b*.  The answer depends on the CPU and the ONNX Runtime
    build, not on the photos, so it is cached per (variant files, ONNX Runtime
    version, CPU) in ``CACHE_DIR/kernel-checks.json``: a machine pays the check
    (one fp32 load and two small runs) once per model.
    """
    import onnxruntime as ort

    key, known = _kernel_checks(info, precision)
    cache = CACHE_DIR / "kernel-checks.json"
    disagreement = _known_disagreement(known, key)
    cached = disagreement is not None
    if disagreement is None:  # (never measured here, or an entry damaged by hand: measured again)
        disagreement = probe_disagreement(info, engine)
        known[key] = {"model": info.name, "precision": precision, "onnxruntime": ort.__version__,
                      "disagreement": disagreement}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1))
            os.replace(tmp, cache)
        except OSError as exc:  # a read-only home costs a re-check next time, nothing else
            log.debug("kernel check not cached: %s", exc)
    return _verdict(disagreement, limit, cached)


def cached_kernel_check(info: ModelInfo, precision: str, *, limit: float | None = None) -> KernelCheck | None:
    """:func:`kernel_check`'s answer when this machine measured it before, else None
    (so that a variant known to fail here is not even loaded)."""
    try:
        key, known = _kernel_checks(info, precision)
    except (OSError, ImportError, KeyError, TypeError, ValueError):
        return None
    disagreement = _known_disagreement(known, key)
    return None if disagreement is None else _verdict(disagreement, limit, True)


def _known_disagreement(known: dict[str, Any], key: str) -> float | None:
    """The disagreement cached under ``key``; None when there is none, or the entry
    is not one (``{}``, ``5``, ``{"disagreement": null}``: the file is the user's to edit)."""
    entry = known.get(key)
    value = entry.get("disagreement") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _kernel_checks(info: ModelInfo, precision: str) -> tuple[str, dict[str, Any]]:
    """(this machine's cache key for the variant, the cache's contents)."""
    import onnxruntime as ort

    files = VARIANT_FILES[precision]
    key = hashlib.sha256(repr((ort.__version__, cpu_description(), precision,
                               [info.files.get(f) or str(info.file(f).stat().st_mtime_ns)
                                for f in files if (info.path / f).is_file()])).encode()).hexdigest()[:24]
    try:
        known = json.loads((CACHE_DIR / "kernel-checks.json").read_text())
    except (OSError, ValueError):
        known = {}
    return key, known if isinstance(known, dict) else {}


def _verdict(d: float, limit: float | None, cached: bool) -> KernelCheck:
    limit = MAX_KERNEL_DISAGREEMENT if limit is None else limit
    if not np.isfinite(d) or d > limit:
        return KernelCheck(False, f"its kernels disagree with fp32 by {100 * d:.0f}% of the colour on the probe "
                           f"photo (limit {100 * limit:.0f}%; a known ONNX Runtime int8 problem on some CPUs: "
                           "u8s8 saturation on AVX2 CPUs without VNNI)", cached)
    return KernelCheck(True, f"agrees with fp32 within {100 * d:.0f}% of the colour on the probe photo", cached)


def probe_disagreement(info: ModelInfo, engine: "OnnxEngine") -> float:
    """mean |a*b* of ``engine`` - a*b* of fp32| / mean |a*b* of fp32| on the probe photo."""
    from PIL import Image

    from streamcolor.engines import lab
    from streamcolor.engines.onnx_engine import OnnxEngine

    gray = np.asarray(Image.open(PROBE).convert("L"))
    l = lab.scale_l(lab.gray_to_l(gray))[None, :, :, None].astype(np.float32)
    ref = OnnxEngine(info, device="cpu")
    try:
        want = ref.predict(l)
    finally:
        ref.close()
    got = engine.predict(l)
    return float(np.abs(got - want).mean() / max(float(np.abs(want).mean()), 1e-6))


def _load(info: ModelInfo, precision: str, device: str, threads: int, kw: dict[str, Any]) -> "OnnxEngine":
    from streamcolor.engines.onnx_engine import OnnxEngine

    colorizer, extractor = variant_files(info, precision)
    kw = {"colorizer_file": colorizer, "extractor_file": extractor, **kw}
    return OnnxEngine(info, device=device, threads=threads, **kw)


def fp16_advice(bundle: str | Path) -> str:
    """What to install or run for an fp16 engine: one answer wherever it is said."""
    return ("the fp16 engine converts the float32 graphs when it loads: pip install onnx onnxconverter-common "
            f"(or write the float16 files into the bundle once: streamcolor train quantize {bundle} --calib PHOTOS "
            "--fp16, with streamcolor[train])")


def variant_files_named(info: ModelInfo, precision: str) -> tuple[str, str]:
    """(colorizer, extractor) file names of a variant as ``model.json`` names them (or the defaults)."""
    rec = variants(info).get(precision, {})
    default_c, default_e = VARIANT_FILES[precision]
    return rec.get("colorizer", default_c), rec.get("extractor", default_e)


def variant_files(info: ModelInfo, precision: str) -> tuple[str, str]:
    """(colorizer, extractor) file names of a variant, converting fp16 graphs when the bundle lacks them."""
    colorizer, extractor = variant_files_named(info, precision)
    if precision == "fp16":
        colorizer = _fp16_file(info, colorizer, "colorizer.onnx")
        if info.two_stage:
            extractor = _fp16_file(info, extractor, "extractor.onnx")
    return colorizer, extractor  # a one-graph model's engine ignores the extractor name


def _fp16_convertible() -> bool:
    try:
        import onnx  # noqa: F401
        from onnxconverter_common import float16  # noqa: F401
    except ImportError:
        return False
    return True


def _fp16_file(info: ModelInfo, name: str, source: str) -> str:
    """``name`` if the bundle has it, else the path of a cached float16 conversion of ``source``."""
    if (info.path / name).is_file():
        return name
    src = info.file(source)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = CACHE_DIR / "fp16" / digest / name
    if not out.is_file():
        log.info("converting %s to float16 (cached in %s)", src, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(to_fp16(src.read_bytes()))
        os.replace(tmp, out)
    return str(out)  # absolute: OnnxEngine joins it onto the bundle folder, which keeps it as is


def to_fp16(model: bytes) -> bytes:
    """A float32 ONNX graph (serialized) -> a float16-compute graph with float32
    inputs and outputs (onnxconverter-common, ``keep_io_types=True``).
    Weights stored as float16 behind a Cast (ship bundles) are folded first."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ImportError(fp16_advice("BUNDLE")) from exc
    proto = unfold_fp16_weights(onnx.load_from_string(model))
    return float16.convert_float_to_float16(proto, keep_io_types=True).SerializeToString()


def unfold_fp16_weights(proto):
    """Undo ``streamcolor.trainer.export.store_weights_fp16``: every Cast-to-float32 of a
    float16 initializer becomes a float32 initializer again, so that tools that
    look for constant weights (quantization, fp16 conversion) find them.
    Returns the same ModelProto, changed."""
    from onnx import TensorProto, numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    folded, keep_nodes = {}, []
    for node in g.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if src is not None and src.data_type == TensorProto.FLOAT16 and to == TensorProto.FLOAT:
            folded[node.output[0]] = numpy_helper.from_array(
                numpy_helper.to_array(src).astype(np.float32), name=node.output[0])
        else:
            keep_nodes.append(node)
    if not folded:
        return proto
    sources = {node.input[0] for node in g.node if node.output and node.output[0] in folded}
    used = {n for node in keep_nodes for n in node.input}
    new_inits = [i for i in g.initializer if i.name not in sources or i.name in used]
    del g.node[:]
    g.node.extend(keep_nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits + list(folded.values()))
    return proto


# --------------------------------------------------------------------------- comparison


def cpu_description() -> str:
    """CPU model and the instruction sets that matter for int8/bf16 speed, e.g.
    "Intel(R) Xeon(R) Processor, 2 cores (avx512_vnni, amx_int8, avx512_bf16)"."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16",
                          "avx512_fp16") if f in flags]
    return f"{name}, {os.cpu_count()} cores" + (f" ({', '.join(wanted)})" if wanted else "")


def compare_engines(model: str | Path, sizes: Sequence[int] = (224, 256), batches: Sequence[int] = (1, 16), *,
                    device: str = "cpu", precisions: Sequence[str] | None = None, rounds: int = 3,
                    threads: int = 0, max_drift: float = MAX_DRIFT) -> list[dict[str, Any]]:
    """Images/s of every precision of ``model`` present, measured side by side.

    Parameters
    ----------
    model:
        A shipped model name or a bundle folder.
    sizes, batches:
        Square render sizes (pixels, multiples of 8) and batch sizes to time.
    device:
        "cpu" or "cuda" (fp16 is only timed on "cuda").
    precisions:
        Default: fp32 and every variant meant for ``device``.
    rounds:
        Timed runs per engine and shape; the engines take turns, and the
        median is reported, so load from other processes hits all alike.

    Returns
    -------
    list of dict
        One row per (precision, size, batch): ``precision``, ``engine``,
        ``size``, ``batch``, ``images_per_s``, ``ratio_to_fp32`` (same run),
        the stored quality figures ``mse_rel`` and ``mse_vs_fp32`` (None when
        unmeasured), ``guard`` ("pass" or the reason it fails), ``auto``
        (whether ``precision="auto"`` picks it here), ``kernels`` ("agree", or why this
        CPU's kernels for the variant are not trusted: :func:`kernel_check`) and ``cpu``.
    """
    from streamcolor.engines import resolve_model

    info = resolve_model(model)
    recs = variants(info)
    if precisions is None:
        precisions = ["fp32"] + [p for p in PRECISIONS[1:] if p in recs and VARIANT_DEVICE[p] == device]
    picked = choose(info, device=device, max_drift=max_drift).precision
    loaded = {p: load_onnx(info, precision=p, device=device, threads=threads) for p in precisions}
    kernels = {p: kernel_check(info, p, eng) if device == "cpu" and p != "fp32" else KernelCheck(True, "", True)
               for p, eng in loaded.items()}
    if picked != "fp32" and not kernels.get(picked, (True, ""))[0]:
        picked = "fp32"  # what load_engine(backend="auto") runs here after the kernel check
    rows = []
    try:
        for size in sizes:
            for batch in batches:
                l = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 1)).astype(np.float32)
                times: dict[str, list[float]] = {p: [] for p in loaded}
                for eng in loaded.values():
                    eng.predict(l)  # warm-up: allocation, kernel choice
                for _ in range(max(1, rounds)):
                    for p, eng in loaded.items():
                        t = time.perf_counter()
                        eng.predict(l)
                        times[p].append(time.perf_counter() - t)
                ips = {p: batch / float(np.median(t)) for p, t in times.items()}
                for p, eng in loaded.items():
                    ok, why = guard(info, p, max_drift=max_drift)
                    rec = recs.get(p, {})
                    rows.append({"model": info.name, "precision": p, "engine": eng.name, "size": size,
                                 "batch": batch, "images_per_s": ips[p],
                                 "ratio_to_fp32": ips[p] / ips["fp32"] if "fp32" in ips else None,
                                 "mse_rel": 0.0 if p == "fp32" else rec.get("mse_rel"),
                                 "mse_vs_fp32": 0.0 if p == "fp32" else rec.get("mse_vs_fp32"),
                                 "guard": "pass" if ok else why, "auto": p == picked, "device": device,
                                 "kernels": "agree" if kernels[p].ok else kernels[p].why,
                                 "cpu": cpu_description()})
    finally:
        for eng in loaded.values():
            eng.close()
    return rows


__all__ = ["Choice", "MAX_DRIFT", "MAX_KERNEL_DISAGREEMENT", "KernelCheck", "kernel_check", "probe_disagreement", "PRECISIONS", "VARIANT_FILES", "auto_runtime", "choose", "compare_engines", "cpu_description",
           "guard", "load_onnx", "to_fp16", "unfold_fp16_weights", "variants"]
