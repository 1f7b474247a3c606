"""The default model's edge-aware upsampling (streamcolor.engines.guided) against the bilinear
upsampling it replaced, on the same grid, in one run.

Both bring the U-Net's quarter-size a*b* grid up to the render size (320x240: an 80x60 grid);
the guided filter then goes on to full resolution bilinearly like the bilinear grid did, so
this is the whole extra cost a frame or a photo pays.  With the thread's work arrays reused
(as the product does) and with fresh ones (as a caller without a ``work`` does).

    STREAMCOLOR_BENCH_FULL=1 python -m pytest benchmarks/bench_guided.py --benchmark-enable \\
        --benchmark-json benchmarks/results/guided-cpu-DATE.json
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from benchmarks.conftest import FULL

SIZES = [(240, 320), (180, 320)] if FULL else [(64, 96)]
CALLS = 500 if FULL else 5


def _per_call_ms(fn, calls: int) -> float:
    best = float("inf")
    for _ in range(5 if FULL else 1):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1e3


def test_guided_upsampling_against_bilinear(benchmark, engine):
    from streamcolor.colorize import Scratch
    from streamcolor.engines.guided import guided_upsample

    spec = engine.info.guided
    assert spec is not None, "the default model names its guided upsampling"
    rng = np.random.default_rng(0)
    rows = {}
    for h, w in SIZES:
        l = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), 2)
        ab = rng.uniform(-0.5, 0.5, (h // 4, w // 4, 2)).astype(np.float32)
        work = Scratch().take
        out = np.empty((h, w, 2), np.float32)
        times = {}
        # rounds taking turns, so that a swing of the machine's speed hits all three alike
        for _ in range(3 if FULL else 1):
            for name, fn in (("bilinear", lambda: cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)),
                             ("guided_reused_arrays", lambda: guided_upsample(l, ab, spec, out=out, work=work)),
                             ("guided_fresh_arrays", lambda: guided_upsample(l, ab, spec))):
                times[name] = min(times.get(name, float("inf")), _per_call_ms(fn, CALLS))
        rows[f"{w}x{h}"] = {**{f"{k}_ms": round(v, 3) for k, v in times.items()},
                            "guided_reused_over_bilinear": round(times["guided_reused_arrays"] / times["bilinear"], 1)}
    benchmark.pedantic(guided_upsample, args=(l, ab, spec), kwargs={"out": out, "work": work}, rounds=1, iterations=1)
    benchmark.group = "guided"
    benchmark.extra_info.update(radius=spec.radius, eps=spec.eps, calls=CALLS, sizes=rows)
    for row in rows.values():
        assert row["guided_reused_arrays_ms"] > 0 and row["bilinear_ms"] > 0
