"""Runtimes for exported streamcolor models: one interface, several backends.

``load_engine(model, backend)`` resolves a shipped model name or a bundle
folder and returns an :class:`~streamcolor.engines.base.Engine`.  This package imports
neither ``streamcolor`` nor ``trainer``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from streamcolor.engines.base import Engine, EngineError, ModelInfo, interrupted

log = logging.getLogger(__name__)

#: Folder of the models shipped inside the package.
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The model used when none is named: an alias of one shipped model folder.
DEFAULT_MODEL = "default"
#: Names that stand for a shipped model folder.
ALIASES = {DEFAULT_MODEL: "unet"}


def _onnx(info: ModelInfo, **kw) -> Engine:
    from streamcolor.engines.select import load_onnx
    return load_onnx(info, **kw)


def _onnx_int8(info: ModelInfo, **kw) -> Engine:
    return _onnx(info, **{**kw, "precision": "int8"})


def _onnx_fp16(info: ModelInfo, **kw) -> Engine:
    return _onnx(info, **{**kw, "precision": "fp16"})


def _keras(info: ModelInfo, **kw) -> Engine:
    from streamcolor.engines.keras_engine import KerasEngine
    return KerasEngine(info, **kw)


def _tensorrt(info: ModelInfo, **kw) -> Engine:
    from streamcolor.engines.tensorrt_engine import TensorRTEngine
    return TensorRTEngine(info, **kw)


#: Backend name -> constructor.  Runtimes are imported only when chosen.
#: "onnx" runs the float32 graphs unless ``precision=`` says otherwise; "onnx-int8" and
#: "onnx-fp16" force a variant (streamcolor/engines/select.py).
BACKENDS: dict[str, Callable[..., Engine]] = {"onnx": _onnx, "onnx-int8": _onnx_int8, "onnx-fp16": _onnx_fp16,
                                               "keras": _keras, "tensorrt": _tensorrt}


def available_models() -> list[str]:
    """Names of the models shipped with the package (folders with a model.json), and their aliases."""
    shipped = sorted(p.parent.name for p in WEIGHTS_DIR.glob("*/model.json"))
    return [*[a for a, target in ALIASES.items() if target in shipped], *shipped]


def available_backends() -> list[str]:
    """Backend names accepted by :func:`load_engine` (besides "auto")."""
    return list(BACKENDS)


def onnx_backends() -> list[str]:
    """The backends ONNX Runtime runs, "auto" among them: they take ``device=`` and ``threads=``."""
    return ["auto", *(b for b in BACKENDS if b == "onnx" or b.startswith("onnx-"))]


def runtime_info() -> dict[str, Any]:
    """Facts about the runtimes here, for ``streamcolor models`` and benchmarks:
    ONNX Runtime's ``onnxruntime`` version and its available execution ``providers``."""
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}


def resolve_model(model: str | Path | None = DEFAULT_MODEL) -> ModelInfo:
    """A shipped model name or a path to a bundle folder (None: the default model) -> its ModelInfo."""
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a shipped model's name or a bundle folder, got {type(model).__name__}")
    if not os.fspath(model):
        raise ValueError(f"model is empty: give a shipped model's name ({available_models() or 'none'}) "
                         "or a bundle folder")
    # a plain name ("default", "seed") is a shipped model even where a folder of that name happens to
    # be in the working directory (a user's "default/" broke every call); a bundle there is "./default"
    name = str(model)
    if isinstance(model, str) and "/" not in name and os.sep not in name and name not in (".", ".."):
        shipped = WEIGHTS_DIR / ALIASES.get(name, name)
        if (shipped / "model.json").is_file():
            return ModelInfo.load(shipped)
    path = Path(model)
    if path.exists():
        return ModelInfo.load(path)
    if "/" in name or os.sep in name:  # (a path, mistyped or moved: say so, not only "unknown")
        raise ValueError(f"unknown model {name!r}: no such folder (a model is a bundle folder or a shipped "
                         f"model's name: {available_models() or 'none'})")
    raise ValueError(f"unknown model {str(model)!r}: not a bundle folder, and the shipped models are "
                     f"{available_models() or 'none'}")


def load_engine(model: str | Path | None = DEFAULT_MODEL, backend: str = "auto", **options) -> Engine:
    """Load ``model`` on ``backend``.

    Parameters
    ----------
    model:
        A shipped model name (see :func:`available_models`) or a bundle folder;
        None: the default model.
    backend:
        "auto": ONNX Runtime, on CUDA when available, else CPU, in the
        fastest precision of the bundle that passes its quality guard
        (``streamcolor.engines.select.choose``: fp16 on CUDA, int8 on CPU, else fp32);
        on an NVIDIA GPU whose ONNX Runtime lacks CUDA but whose JAX has it, the
        Keras engine on JAX in bf16 (``select.auto_runtime``);
        or one of :func:`available_backends`.
    options:
        Passed to the backend, e.g. ``device="cpu"`` or ``threads=2`` for ONNX;
        ``precision="fp32"|"int8"|"fp16"|"auto"`` for "onnx" (default fp32).
    """
    info = resolve_model(model)
    if backend == "auto":
        from streamcolor.engines.select import auto_runtime, cuda_available, has_nvidia_gpu, jax_on_gpu

        gpu_ok = options.get("device", "auto") != "cpu"
        backend = auto_runtime(ort_cuda=cuda_available(), nvidia_gpu=gpu_ok and has_nvidia_gpu(), jax_gpu=jax_on_gpu)
        options.setdefault("precision", "auto")
        if backend == "keras":  # ONNX Runtime's knobs mean nothing to it
            options.pop("device", None)
            options.pop("threads", None)
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; choose from {['auto', *BACKENDS]}") from None
    return factory(info, **options)


__all__ = ["ALIASES", "Engine", "EngineError", "ModelInfo", "available_backends", "available_models",
           "interrupted", "load_engine", "onnx_backends", "resolve_model", "runtime_info", "WEIGHTS_DIR",
           "DEFAULT_MODEL"]
