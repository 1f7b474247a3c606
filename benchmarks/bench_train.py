"""Training throughput (examples/s) of the colorizer on this machine's Keras
backend, and the shard loader's own rate (it must outrun the GPU).

Full mode: batch 16 at 224 x 224, as ``fit`` runs it (``train_on_batch`` on
batches read ahead from memory-mapped shards).  Smoke mode: batch 2 at
64 x 64, two steps.  The shards here are synthetic (random L, a*b* and
embeddings): throughput does not depend on the content.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import FULL

keras = pytest.importorskip("keras")

from streamcolor.trainer.data import ShardBatches, ShardSet, batch_stream  # noqa: E402
from streamcolor.trainer.train import build_model  # noqa: E402

SIZE = 224 if FULL else 64
BATCH = 16 if FULL else 2
STEPS = 5 if FULL else 2
EMBED = 1000


def write_synthetic_shards(root: Path, n: int, size: int, embed_dim: int = EMBED) -> Path:
    """A shard folder in ``streamcolor.trainer.data``'s layout with random content."""
    rng = np.random.default_rng(0)
    d = root / "train-00000"
    d.mkdir(parents=True)
    np.save(d / "l.npy", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
    np.save(d / "ab.npy", rng.integers(-60, 60, (n, size, size, 2), dtype=np.int8))
    np.save(d / "emb.npy", rng.normal(0, 2, (n, embed_dim)).astype(np.float16))
    (d / "info.json").write_text(json.dumps({"photos": [], "examples": n, "gray": [], "unreadable": []}))
    (root / "meta.json").write_text(json.dumps({
        "format": 1, "complete": True, "size": size, "embed_dim": embed_dim, "extractor": "synthetic",
        "extractor_size": 224, "counts": {"train": {"examples": n}}}))
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> ShardSet:
    root = write_synthetic_shards(tmp_path_factory.mktemp("bench-shards"), max(4 * BATCH, 8), SIZE)
    return ShardSet(root, "train")


@pytest.fixture(scope="module")
def model():
    m = build_model(EMBED)
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return m


def test_train_examples_per_second(benchmark, shards, model):
    """Optimizer steps fed by the read-ahead loader, as in ``streamcolor.trainer.train.fit``."""
    batches = ShardBatches(shards, BATCH, seed=0)
    stream = batch_stream(batches, 0, prefetch=6, workers=3)
    _, (x, y) = next(stream)
    model.train_on_batch(x, y)  # warm-up: compiles the step

    def steps():
        loss = 0.0
        for _ in range(STEPS):
            _, (x, y) = next(stream)
            loss = float(model.train_on_batch(x, y))
        return loss

    benchmark.group = f"train size={SIZE}"
    benchmark.extra_info.update(backend=keras.backend.backend(), batch=BATCH, size=SIZE, steps=STEPS)
    loss = benchmark.pedantic(steps, rounds=3 if FULL else 1, iterations=1)
    stream.close()
    assert np.isfinite(loss)
    if benchmark.stats:
        benchmark.extra_info["examples_per_s"] = STEPS * BATCH / benchmark.stats.stats.mean


def test_loader_examples_per_second(benchmark, shards):
    """The shard loader alone (memory map -> float32 batches with flips)."""
    batches = ShardBatches(shards, BATCH, seed=0)
    n = 4 * len(batches)

    def read():
        t = time.perf_counter()
        stream = batch_stream(batches, 0, prefetch=6, workers=3)
        for _ in range(n):
            next(stream)
        stream.close()
        return time.perf_counter() - t

    benchmark.group = f"train size={SIZE}"
    benchmark.extra_info.update(batch=BATCH, size=SIZE, batches=n)
    benchmark.pedantic(read, rounds=3 if FULL else 1, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["examples_per_s"] = n * BATCH / benchmark.stats.stats.mean
