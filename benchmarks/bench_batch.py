"""Throughput of `colorize_archive` on a folder of 1-megapixel B&W photos.

Figures (in the benchmark's ``extra_info``, and printed with ``-s``):

* ``items_per_s``: photos colorized per second of wall time (median of rounds);
* ``engine_share``: time inside engine calls / wall time -- how well decoding,
  composing, encoding and writing hide behind the network (1.0: the engine
  never waits for I/O);
* ``sequential_items_per_s`` (full mode): the same photos through
  ``colorize_image`` one by one, for comparison.

Smoke mode (the normal suite, benchmarks disabled): 4 small photos, one run.
Full mode, on this machine::

    STREAMCOLOR_BENCH_FULL=1 python -m pytest benchmarks/bench_batch.py \\
        --benchmark-enable -s --benchmark-json=bench-batch.json
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from pathlib import Path

import pytest

from streamcolor.archive import BatchOptions, colorize_archive
from benchmarks.conftest import write_gray_photos

FULL = os.environ.get("STREAMCOLOR_BENCH_FULL") == "1"
#: (photos, height, width, rounds)
N, H, W, ROUNDS = (40, 864, 1152, 3) if FULL else (4, 216, 288, 1)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """N gray JPEGs of H x W with film-like grain, in two sub-folders."""
    return write_gray_photos(tmp_path_factory.mktemp("photos"), N, H, W, subfolders=2)


def test_batch_folder_throughput(benchmark, engine, photo_folder, tmp_path):
    options = BatchOptions()
    reports = []
    runs = itertools.count()

    def setup():  # a fresh output folder per round: a finished one would be skipped (resume)
        return (photo_folder, tmp_path / f"out{next(runs)}"), {}

    def run(src, out):
        report = colorize_archive(src, out, engine=engine, options=options, progress=False)
        reports.append(report)
        return report

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert all(r.ok and r.done_now == N for r in reports)
    info = {
        "photos": N,
        "size": f"{W}x{H}",
        "engine": engine.name,
        "cpu_count": os.cpu_count(),
        "batch_size": options.batch_size,
        "items_per_s": round(statistics.median(r.items_per_s for r in reports), 3),
        "engine_share": round(statistics.median(r.engine_share for r in reports), 3),
    }
    if FULL:
        import streamcolor

        files = sorted(photo_folder.rglob("*.jpg"))
        seq_out = tmp_path / "sequential"
        seq_out.mkdir()
        t = time.perf_counter()
        for f in files:
            streamcolor.colorize_image(f, seq_out / f.name, engine=engine,
                                       options=options.color_options(engine))
        info["sequential_items_per_s"] = round(len(files) / (time.perf_counter() - t), 3)
    benchmark.extra_info.update(info)
    print("\nbatch throughput:", info)
