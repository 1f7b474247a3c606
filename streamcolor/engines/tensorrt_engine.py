"""TensorRT engine (NVIDIA GPUs).  UNTESTED on the project's machines:
TensorRT's Python wheels are served by NVIDIA's own index, which the machines
this project is built on cannot reach.  The code follows TensorRT 10's Python
API (``tensorrt`` + ``cuda-python``-free execution through PyTorch or CuPy
buffers is avoided: we use TensorRT's own ``execute_async_v3`` with device
buffers from ``cupy``).  Everything around it (cache keys, import checks,
errors) is tested; the build and run paths need a machine with TensorRT.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from streamcolor.engines.base import Engine, EngineError, ModelInfo

log = logging.getLogger(__name__)

INSTALL_HINT = ("the TensorRT engine needs NVIDIA TensorRT 10 and CuPy: "
                "pip install tensorrt cupy-cuda12x (from NVIDIA's package index)")


def require_tensorrt():
    """Import and return (tensorrt, cupy), or raise ImportError with an install hint."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
        import cupy  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return trt, cupy


def cache_key(onnx_path: Path, gpu_name: str, trt_version: str, precision: str = "fp16") -> str:
    """Name of the serialized engine for one ONNX file on one GPU model with one
    TensorRT version: plans are not portable across either."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    safe_gpu = "".join(c if c.isalnum() else "-" for c in gpu_name).strip("-").lower()
    return f"{Path(onnx_path).stem}-{digest}-{safe_gpu}-trt{trt_version}-{precision}.plan"


def build_plan(onnx_path: Path, plan_path: Path, *, fp16: bool = True,
               min_shape=(1, 64, 64), opt_shape=(8, 256, 256), max_shape=(64, 1088, 1920)) -> Path:
    """Parse ``onnx_path``, build a (fp16) engine with a dynamic-shape profile
    for every input, and serialize it to ``plan_path``."""
    trt, _ = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = tuple(inp.shape)
        if len(shape) == 4:  # (N, H, W, 1): L at render size or extractor size
            if shape[1] > 0:  # fixed spatial size (the extractor)
                mn, op, mx = ((min_shape[0],) + shape[1:], (opt_shape[0],) + shape[1:],
                              (max_shape[0],) + shape[1:])
            else:
                mn, op, mx = (min_shape + (1,), opt_shape + (1,), max_shape + (1,))
        else:  # (N, E): the embedding
            mn, op, mx = ((min_shape[0], shape[1]), (opt_shape[0], shape[1]), (max_shape[0], shape[1]))
        profile.set_shape(inp.name, mn, op, mx)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(plan))
    tmp.replace(plan_path)
    return plan_path


class _TrtRunner:
    """One deserialized TensorRT engine with its execution context."""

    def __init__(self, plan_path: Path):
        trt, cupy = require_tensorrt()
        self._trt, self._cp = trt, cupy
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT cannot deserialize {plan_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        cp = self._cp
        keep = []
        for name in self.inputs:
            arr = cp.asarray(np.ascontiguousarray(feeds[name], dtype=np.float32))
            keep.append(arr)
            self.context.set_input_shape(name, arr.shape)
            self.context.set_tensor_address(name, arr.data.ptr)
        out_name = self.outputs[0]
        out = cp.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=cp.float32)
        self.context.set_tensor_address(out_name, out.data.ptr)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise EngineError("TensorRT execution failed")
        self.stream.synchronize()
        return cp.asnumpy(out)


class TensorRTEngine(Engine):
    """Builds (once, cached) and runs fp16 TensorRT plans of a bundle's ONNX files."""

    backend = "tensorrt"

    def __init__(self, info: ModelInfo, *, cache_dir: str | Path | None = None, fp16: bool = True):
        super().__init__(info)
        trt, cupy = require_tensorrt()
        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "streamcolor" / "tensorrt"
        precision = "fp16" if fp16 else "fp32"
        runners = {}
        for part in (("extractor", "colorizer") if info.two_stage else ("colorizer",)):
            onnx_path = info.file(f"{part}.onnx")
            plan = cache / cache_key(onnx_path, gpu, trt.__version__, precision)
            if not plan.exists():
                log.info("building TensorRT %s plan for %s on %s (one time)", precision, part, gpu)
                build_plan(onnx_path, plan, fp16=fp16)
            runners[part] = _TrtRunner(plan)
        self._extractor, self._colorizer = runners.get("extractor"), runners["colorizer"]

    def forward(self, l: np.ndarray) -> np.ndarray:
        if self.info.two_stage:
            return super().forward(l)
        return self._colorizer({self._colorizer.inputs[0]: l})

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        if self._extractor is None:
            return super().embed(l_ext)
        return self._extractor({self._extractor.inputs[0]: l_ext})

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        names = sorted(self._colorizer.inputs, key=lambda n: len(self._colorizer.engine.get_tensor_shape(n)))
        return self._colorizer({names[0]: embedding, names[-1]: l})
