"""ONNX Runtime engine: the default runtime, on CPU (all cores) or CUDA."""

from __future__ import annotations

import logging
import os

import numpy as np

from streamcolor.engines.base import Engine, EngineError, ModelInfo

log = logging.getLogger(__name__)

#: Providers in priority order; CPU always last (explicit since ORT 1.10).
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def default_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` ("auto", "cpu" or "cuda")."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):  # ("gpu" ran on the CPU without a word)
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise EngineError(f"device='cuda' asked for, but ONNX Runtime offers only {available} "
                          "(install onnxruntime-gpu)")
    return [p for p in wanted if p in available]


class OnnxEngine(Engine):
    """Runs a bundle's graphs with ONNX Runtime: ``extractor.onnx`` and
    ``colorizer.onnx`` for the two-graph seed model, ``colorizer.onnx`` alone
    for a one-graph model (``extractor_file`` is then ignored).

    Input and output names are read from the model files.  ``threads=0``
    lets ONNX Runtime use every physical core.

    ``spin``: whether ONNX Runtime's pool threads spin-wait for work between
    operators (its default).  Off here: in a video or batch job the engine
    shares the cores with the decoder, the encoder and the compose threads,
    and a spinning thread takes their CPU time while waiting.  Measured on
    2 cores in one run (``python -m benchmarks.spin``): engine-only images/s
    the same either way, a 576p video 12.78 fps without spinning against
    11.67 with it.
    """

    backend = "onnx"

    def __init__(self, info: ModelInfo, *, device: str = "auto", threads: int = 0,
                 colorizer_file: str = "colorizer.onnx", extractor_file: str = "extractor.onnx",
                 as_written: bool = False, spin: bool = False):
        super().__init__(info)
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
            raise ImportError("the ONNX engine needs ONNX Runtime: pip install 'streamcolor[cpu]' (or 'streamcolor[gpu]' on NVIDIA GPUs)") from exc
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be 0 (every physical core) or more, got {threads!r}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # as_written: only basic graph rewrites, so an int8 (QDQ) graph is evaluated as its
        # quantize/dequantize arithmetic in float instead of by fused int8 kernels: what the
        # graph computes on any CPU (the quantizer measures quality this way), not the speed.
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if as_written
                                         else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        providers = default_providers(device)
        if device == "auto" and "CUDAExecutionProvider" not in providers and _has_nvidia_gpu():
            log.warning("an NVIDIA GPU is present but onnxruntime has no CUDA provider: running on CPU "
                        "(pip install 'streamcolor[gpu]')")
        self.colorizer_file = colorizer_file
        self._extractor = None
        try:
            if info.two_stage:
                self._extractor = ort.InferenceSession(str(info.file(extractor_file)), opts, providers=providers)
            self._colorizer = ort.InferenceSession(str(info.file(colorizer_file)), opts, providers=providers)
        except EngineError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"{info.path}: ONNX Runtime cannot load the model: {exc}") from exc
        self.providers = self._colorizer.get_providers()
        self._ext_in = self._extractor.get_inputs()[0].name if self._extractor is not None else None
        by_rank = sorted(self._colorizer.get_inputs(), key=lambda i: len(i.shape))
        self._emb_in, self._l_in = by_rank[0].name, by_rank[-1].name
        self._precision = "fp16" if "float16" in self._colorizer.get_inputs()[0].type else "fp32"
        log.info("ONNX engine %s on %s", info.name, self.providers[0])

    @property
    def name(self) -> str:
        dev = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        variant = os.path.basename(self.colorizer_file).removeprefix("colorizer").removesuffix(".onnx").strip(".-_")
        return f"onnx-{dev}{'-' + variant if variant else ''}:{self.info.name}"

    @property
    def preferred_batch_size(self) -> int:
        return 32 if self.on_gpu else super().preferred_batch_size

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] == "CUDAExecutionProvider"

    def forward(self, l: np.ndarray) -> np.ndarray:
        self._check_open()
        if self.info.two_stage:
            return super().forward(l)
        feeds = {self._l_in: np.ascontiguousarray(l, dtype=np.float32)}
        return self._colorizer.run(None, feeds)[0].astype(np.float32, copy=False)

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        self._check_open()
        if self._extractor is None:
            return super().embed(l_ext)
        l_ext = np.ascontiguousarray(l_ext, dtype=np.float32)
        return self._extractor.run(None, {self._ext_in: l_ext})[0].astype(np.float32, copy=False)

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        self._check_open()
        if not self.info.two_stage:
            return super().colorize(l, embedding)
        feeds = {self._l_in: np.ascontiguousarray(l, dtype=np.float32),
                 self._emb_in: np.ascontiguousarray(embedding, dtype=np.float32)}
        return self._colorizer.run(None, feeds)[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self.closed = True
        self._extractor = self._colorizer = None


def _has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")
