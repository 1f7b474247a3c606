"""The shipped models side by side: images/s of every model in fp32 and int8,
through the engine class users get from ``load_engine``, measured in one run.

Full mode (``STREAMCOLOR_BENCH_FULL=1``): render 256, batches 1 and 8 (the
figures issue #13 asks for).  Smoke mode: render 32, batch 1, one round.

The engines take turns round by round and the median is kept, so load from
other processes hits every model alike; ``extra_info`` holds each row's
images/s and its ratio to the seed model's fp32 engine in the same test.
pytest-benchmark itself times the default model's auto-chosen engine.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from benchmarks.conftest import FULL
from streamcolor.engines import ALIASES, DEFAULT_MODEL, available_models, load_engine, resolve_model
from streamcolor.engines.select import cpu_description, kernel_check, variants

RENDER = 256 if FULL else 32
BATCH = [1, 8] if FULL else [1]
ROUNDS = {1: 20, 8: 6} if FULL else {1: 1}


def _shipped() -> list[str]:
    """Shipped model folders (aliases left out), the default one first."""
    names = [m for m in available_models() if m not in ALIASES]
    default = ALIASES.get(DEFAULT_MODEL)
    return sorted(names, key=lambda m: (m != default, m))


@pytest.fixture(scope="module")
def engines():
    """(model, precision) -> engine, for every shipped model and its CPU precisions."""
    out = {}
    for model in _shipped():
        info = resolve_model(model)
        for precision in ["fp32", *[p for p, r in variants(info).items() if r.get("device") == "cpu"]]:
            out[(model, precision)] = load_engine(model, "onnx", precision=precision, device="cpu")
    yield out
    for eng in out.values():
        eng.close()


@pytest.mark.parametrize("batch", BATCH)
def test_models_images_per_second(benchmark, engines, batch):
    l = np.random.default_rng(0).uniform(-1, 1, (batch, RENDER, RENDER, 1)).astype(np.float32)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in engines}
    for eng in engines.values():
        eng.predict(l)  # warm-up
    for _ in range(ROUNDS[batch]):
        for key, eng in engines.items():
            t = time.perf_counter()
            eng.predict(l)
            times[key].append(time.perf_counter() - t)
    ips = {k: batch / float(np.median(v)) for k, v in times.items()}
    ref = ips.get(("seed", "fp32"))
    rows = {f"{m}-{p}": {"engine": engines[(m, p)].name, "model": resolve_model(m).name,
                         "images_per_s": round(v, 2),
                         "ratio_to_seed_fp32": round(v / ref, 2) if ref else None,
                         # whether this CPU's kernels compute the variant's graph (int8: see engines.select)
                         "kernels_agree_here": True if p == "fp32" else
                         kernel_check(resolve_model(m), p, engines[(m, p)]).ok}
            for (m, p), v in ips.items()}
    benchmark.group = f"models render={RENDER} batch={batch}"
    benchmark.extra_info.update(render=RENDER, batch=batch, rounds=ROUNDS[batch], cpu=cpu_description(),
                                load_average=round(os.getloadavg()[0], 2), rows=rows)
    subject = load_engine(DEFAULT_MODEL, "auto", device="cpu")
    out = benchmark.pedantic(subject.predict, args=(l,), rounds=ROUNDS[batch], iterations=1)
    subject.close()
    assert out.shape[0] == batch and out.shape[-1] == 2
    assert all(v > 0 for v in ips.values())
