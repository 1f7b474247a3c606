"""TensorRT engine (NVIDIA GPUs).  UNTESTED on the project's machines:
TensorRT's Python wheels are served by NVIDIA's own index, which the machines
this project is built on cannot reach.  The code follows the TensorRT 10.x and
11.x Python API (named I/O tensors, ``set_input_shape``, ``execute_async_v3``)
with device buffers from CuPy; everything around the build and run calls
(profile sizes, shape checks, plan cache keys, atomic and locked plan writes,
the import check) is tested without a GPU.

Choices, against the API:

* **Precision.**  TensorRT 11 removed the weak-typing builder flags
  (``BuilderFlag.FP16`` and friends): a network runs in the types its graph
  says.  So fp16 builds from a float16-compute ONNX graph with float32 inputs
  and outputs (the bundle's ``colorizer-fp16.onnx`` or the cached conversion
  from :func:`streamcolor.engines.select.variant_files`), as a strongly typed network
  (TensorRT 10.x: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; 11.x: always).
* **One CUDA stream.**  Host-to-device copies, the inference and the
  device-to-host copy are all queued on the runner's own stream, then one
  synchronize: no copy on the legacy default stream racing a non-blocking one.
* **Profile.**  One optimization profile sized to the render sizes used
  (:func:`profile_shapes`): the longer side up to the largest render size,
  the shorter down to one size multiple, batch 1 to ``max_batch``.  Larger
  batches are split; a shape outside the profile raises an EngineError that
  names the profile, instead of TensorRT's log line and a garbage result.
* **Plans** are cached per ONNX file, GPU, TensorRT version, precision and
  profile; when several actors start at once, one builds under a file lock,
  writes to a temporary name and renames, the others wait and load its plan.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from streamcolor.engines import lab
from streamcolor.engines.base import Engine, EngineError, ModelInfo

log = logging.getLogger(__name__)

INSTALL_HINT = ("the TensorRT engine needs NVIDIA TensorRT 10 or 11 and CuPy: "
                "pip install tensorrt cupy-cuda12x (tensorrt from NVIDIA's package index)")
#: Largest batch a plan is built for (bigger batches are split).
MAX_BATCH = 64
#: Batch the kernels are tuned for.
OPT_BATCH = 16
#: Render sizes a plan covers when none are given (besides the model's recommendation).
DEFAULT_RENDER_SIZES = (256,)


def require_tensorrt():
    """Import and return (tensorrt, cupy), or raise ImportError with an install hint."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
        import cupy  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return trt, cupy


@dataclass(frozen=True)
class Profile:
    """min / opt / max (N, H, W) of the L input of one optimization profile."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def covers(self, shape: Sequence[int]) -> bool:
        """Whether an (N, H, W[, C]) shape lies inside the profile (N is split, so not checked)."""
        _, h, w = shape[:3]
        return self.min[1] <= h <= self.max[1] and self.min[2] <= w <= self.max[2]

    def tag(self) -> str:
        """Short text for file names: max batch and max sides."""
        return f"b{self.max[0]}-{self.max[1]}x{self.max[2]}"


def profile_shapes(render_sizes: Sequence[int], multiple: int, *, max_batch: int = MAX_BATCH,
                   opt_batch: int = OPT_BATCH, opt_aspect: tuple[int, int] = (9, 16)) -> Profile:
    """The profile for the render sizes a job uses.

    A render size R gives inputs whose longer side is R rounded to ``multiple``
    and whose shorter side is anything from one multiple up (portrait or
    landscape), so the profile spans [multiple, max side] on both axes; kernels
    are tuned for the largest render size at ``opt_aspect`` (height : width,
    16:9 video by default) and ``opt_batch``.
    """
    if not render_sizes:
        raise ValueError("no render sizes to build a TensorRT profile for")
    side = max(_ceil_to(lab.round_to_multiple(r, multiple), multiple) for r in render_sizes)
    opt_h, opt_w = lab.render_shape(opt_aspect[0] * 100, opt_aspect[1] * 100, side, multiple)
    opt_b = max(1, min(opt_batch, max_batch))
    return Profile((1, multiple, multiple), (opt_b, min(opt_h, side), min(opt_w, side)), (max_batch, side, side))


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def cache_key(onnx_path: Path, gpu_name: str, trt_version: str, precision: str = "fp16",
              profile: Profile | None = None) -> str:
    """Name of the serialized engine for one ONNX file on one GPU model with one
    TensorRT version and profile: plans are not portable across any of them."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    safe_gpu = "".join(c if c.isalnum() else "-" for c in gpu_name).strip("-").lower()
    tag = f"-{profile.tag()}" if profile is not None else ""
    return f"{Path(onnx_path).stem}-{digest}-{safe_gpu}-trt{trt_version}{tag}-{precision}.plan"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing), across processes on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a unique temporary file in the same folder and
    ``os.replace``: a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def cached_plan(plan_path: Path, build: Callable[[], bytes]) -> Path:
    """``plan_path``, built by ``build()`` if it is not there yet.  Several processes
    (Ray actors on one node) may ask at once: one builds under a lock file next to
    the plan and writes it atomically; the others wait for the lock and find it."""
    if plan_path.is_file():
        return plan_path
    with _file_lock(plan_path.with_name(plan_path.name + ".lock")):
        if not plan_path.is_file():  # someone else may have built it while we waited
            write_atomic(plan_path, build())
    return plan_path


def build_plan(onnx_path: Path, profile: Profile) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network (its own types decide the
    precision) and build a serialized engine with one profile for its inputs."""
    trt, _ = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # 10.x: opt in; 11.x: accepted and always on
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    trt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = tuple(inp.shape)
        if len(shape) == 4 and shape[1] > 0:  # fixed spatial size (the seed's extractor)
            mn, op, mx = ((b,) + shape[1:] for b in (profile.min[0], profile.opt[0], profile.max[0]))
        elif len(shape) == 4:  # (N, H, W, 1): L at the render size
            mn, op, mx = (profile.min + (1,), profile.opt + (1,), profile.max + (1,))
        else:  # (N, E): the embedding
            mn, op, mx = ((b, shape[1]) for b in (profile.min[0], profile.opt[0], profile.max[0]))
        trt_profile.set_shape(inp.name, mn, op, mx)
    config.add_optimization_profile(trt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(plan)


class _TrtRunner:
    """One deserialized TensorRT engine with its execution context and CUDA stream."""

    def __init__(self, plan_path: Path, profile: Profile):
        trt, cupy = require_tensorrt()
        self._trt, self._cp = trt, cupy
        self.profile = profile
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT cannot deserialize {plan_path} (built by another TensorRT? delete it)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def rank(self, name: str) -> int:
        return len(self.engine.get_tensor_shape(name))

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        if n > self.profile.max[0]:  # split what the profile cannot take at once
            step = self.profile.max[0]
            return np.concatenate([self({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)])
        cp, ctx = self._cp, self.context
        with self.stream:  # every copy and the inference on this one stream
            keep = []
            for name in self.inputs:
                host = np.ascontiguousarray(feeds[name], dtype=np.float32)
                if host.ndim == 4 and not self.profile.covers(host.shape):
                    raise EngineError(profile_error(host.shape, self.profile))
                dev = cp.asarray(host)  # queued on self.stream
                keep.append(dev)
                if not ctx.set_input_shape(name, tuple(dev.shape)):
                    raise EngineError(profile_error(dev.shape, self.profile))
                ctx.set_tensor_address(name, dev.data.ptr)
            out_name = self.outputs[0]
            out = cp.empty(tuple(ctx.get_tensor_shape(out_name)), dtype=cp.float32)
            ctx.set_tensor_address(out_name, out.data.ptr)
            if not ctx.execute_async_v3(self.stream.ptr):
                raise EngineError("TensorRT execution failed")
            result = cp.asnumpy(out, stream=self.stream)
        self.stream.synchronize()
        return result


def profile_error(shape: Sequence[int], profile: Profile) -> str:
    return (f"input shape {tuple(shape)} is outside the TensorRT profile (sides {profile.min[1]}..{profile.max[1]} "
            f"x {profile.min[2]}..{profile.max[2]}); load the engine with render_sizes= covering this render size")


class TensorRTEngine(Engine):
    """Builds (once per GPU, TensorRT version and profile; cached) and runs TensorRT
    plans of a bundle's ONNX graphs, fp16 by default.

    ``render_sizes``: the render sizes the plan must take (the model's recommended
    one is always added); ``max_batch``: the largest batch per call (bigger ones are split).
    """

    backend = "tensorrt"

    def __init__(self, info: ModelInfo, *, cache_dir: str | Path | None = None, fp16: bool = True,
                 render_sizes: Sequence[int] = DEFAULT_RENDER_SIZES, max_batch: int = MAX_BATCH):
        super().__init__(info)
        trt, cupy = require_tensorrt()
        from streamcolor.engines.select import variant_files

        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "streamcolor" / "tensorrt"
        self.precision = "fp16" if fp16 else "fp32"
        sizes = sorted({*render_sizes, int(info.meta.get("render_size", 256))})
        self.profile = profile_shapes(sizes, info.size_multiple, max_batch=max_batch)
        colorizer, extractor = variant_files(info, self.precision)
        runners = {}
        for part, name in (("extractor", extractor), ("colorizer", colorizer)):
            if part == "extractor" and not info.two_stage:
                continue
            onnx_path = Path(name) if Path(name).is_absolute() else info.file(name)
            plan = cache / cache_key(onnx_path, gpu, trt.__version__, self.precision, self.profile)
            if not plan.is_file():
                log.info("building the TensorRT %s plan of %s on %s for render sizes %s (one time, cached in %s)",
                         self.precision, part, gpu, sizes, plan.parent)
            cached_plan(plan, lambda p=onnx_path: build_plan(p, self.profile))
            runners[part] = _TrtRunner(plan, self.profile)
        self._extractor, self._colorizer = runners.get("extractor"), runners["colorizer"]
        log.info("TensorRT engine %s (%s) on %s, profile %s", info.name, self.precision, gpu, self.profile)

    @property
    def name(self) -> str:
        return f"tensorrt-{self.precision}:{self.info.name}"

    @property
    def preferred_batch_size(self) -> int:
        return min(OPT_BATCH * 2, self.profile.max[0])

    @property
    def on_gpu(self) -> bool:
        return True

    def forward(self, l: np.ndarray) -> np.ndarray:
        self._check_open()
        if self.info.two_stage:
            return super().forward(l)
        return self._colorizer({self._colorizer.inputs[0]: l})

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        self._check_open()
        if self._extractor is None:
            return super().embed(l_ext)
        return self._extractor({self._extractor.inputs[0]: l_ext})

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        self._check_open()
        if not self.info.two_stage:
            return super().colorize(l, embedding)
        names = sorted(self._colorizer.inputs, key=self._colorizer.rank)
        return self._colorizer({names[0]: embedding, names[-1]: l})

    def close(self) -> None:
        self.closed = True
        self._extractor = self._colorizer = None
