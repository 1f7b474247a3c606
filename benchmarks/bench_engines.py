"""Engine throughput: images/s by backend, batch size and render size."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.conftest import FULL
from engines import load_engine

RENDER = [224, 256] if FULL else [64]
BATCH = [1, 16] if FULL else [1, 2]


@pytest.fixture(scope="module")
def onnx_engine():
    eng = load_engine("default", "onnx", device="cpu")
    yield eng
    eng.close()


@pytest.mark.parametrize("render", RENDER)
@pytest.mark.parametrize("batch", BATCH)
def test_onnx_images_per_second(benchmark, onnx_engine, render, batch):
    """Full predict (extractor + colorizer) on a square render-size batch."""
    rng = np.random.default_rng(0)
    l = rng.uniform(-1, 1, (batch, render, render, 1)).astype(np.float32)
    onnx_engine.predict(l)  # warm-up: first run allocates and picks kernels
    benchmark.group = f"engine render={render}"
    benchmark.extra_info.update(engine=onnx_engine.name, batch=batch, render=render)
    out = benchmark.pedantic(onnx_engine.predict, args=(l,), rounds=5 if FULL else 1, iterations=1)
    assert out.shape == (batch, render, render, 2)
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.mean
