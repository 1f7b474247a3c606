"""Keras 3 engine: the reference runtime, on whatever backend Keras uses
(TensorFlow on CPU here, JAX on GPUs).  Slower than ONNX Runtime on CPU; it
exists to check exports against and to run a model straight from training."""

from __future__ import annotations

import logging

import numpy as np

from streamcolor.engines.base import Engine, EngineError, ModelInfo

log = logging.getLogger(__name__)


class KerasEngine(Engine):
    """Runs ``extractor.keras`` and ``colorizer.keras`` of a bundle (``colorizer.keras``
    alone for a one-graph model)."""

    backend = "keras"

    def __init__(self, info: ModelInfo, *, colorizer_file: str = "colorizer.keras",
                 extractor_file: str = "extractor.keras"):
        super().__init__(info)
        try:
            import keras
        except ImportError as exc:
            raise ImportError("the Keras engine needs Keras 3: pip install 'streamcolor[train]'") from exc
        import streamcolor.engines.keras_layers  # noqa: F401  (registers the fusion layer for loading)
        try:
            self._extractor = (keras.saving.load_model(info.file(extractor_file), compile=False)
                               if info.two_stage else None)
            self._colorizer = keras.saving.load_model(info.file(colorizer_file), compile=False)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"{info.path}: Keras cannot load the model: {exc}") from exc
        log.info("Keras engine %s on backend %s", info.name, keras.backend.backend())

    def forward(self, l: np.ndarray) -> np.ndarray:
        if self.info.two_stage:
            return super().forward(l)
        return np.asarray(self._colorizer(np.ascontiguousarray(l, dtype=np.float32), training=False),
                          dtype=np.float32)

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        if self._extractor is None:
            return super().embed(l_ext)
        out = self._extractor(np.ascontiguousarray(l_ext, dtype=np.float32), training=False)
        return np.asarray(out, dtype=np.float32)

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        if not self.info.two_stage:
            return super().colorize(l, embedding)
        out = self._colorizer([np.ascontiguousarray(l, dtype=np.float32),
                               np.ascontiguousarray(embedding, dtype=np.float32)], training=False)
        return np.asarray(out, dtype=np.float32)
