"""The Ray actor pool (`streamcolor batch --ray`) against plain `batch`, same photos, same machine.

Figures (in the benchmark's ``extra_info``, and printed with ``-s``), all
measured in one run on one local Ray (as many CPUs as the machine has):

* ``plain_items_per_s``: :func:`colorize_archive` (threads, one engine);
* ``ray1_items_per_s`` / ``ray2_items_per_s``: :func:`colorize_archive_ray`
  with 1 and 2 actors (1 CPU and one engine thread each);
* ``scaling_2_over_1``: ray2 / ray1 (2.0 would be perfect on 2 free cores);
* ``ray_startup_s``: a Ray job of 2 photos on 2 actors (actor start and
  engine load, paid once per job);
* ``overhead_ms_per_item``: (ray2 wall - plain wall) / photos, and
  ``overhead_ms_per_item_after_startup``: the same less the startup;
* ``machine_2proc_speedup``: what two busy processes get done over one on
  this machine (pure Python, no Ray): the ceiling for ``scaling_2_over_1``
  (2.0 on two free physical cores; less with hyper-threads or a shared VM).

Smoke mode (the normal suite, benchmarks disabled): 4 small photos, one run.
Full mode, on this machine::

    STREAMCOLOR_BENCH_FULL=1 python -m pytest benchmarks/bench_cluster.py \\
        --benchmark-enable -s --benchmark-json=bench-cluster.json
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from streamcolor.archive import BatchOptions, colorize_archive  # noqa: E402
from streamcolor.ray import ClusterOptions, colorize_archive_ray  # noqa: E402
from benchmarks.conftest import write_gray_photos  # noqa: E402

FULL = os.environ.get("STREAMCOLOR_BENCH_FULL") == "1"
#: (photos, height, width, batch size)
N, H, W, BATCH = (32, 864, 1152, 4) if FULL else (4, 216, 288, 2)


def machine_2proc_speedup(loops: int) -> float:
    """Work done by two busy processes in the time of one, on this machine."""
    code = f"x = 0\nfor i in range({loops}): x += i * i"

    def wall(k: int) -> float:
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(k)]
        for p in procs:
            p.wait()
        return time.perf_counter() - t

    return round(2 * wall(1) / wall(2), 3)


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray (``address="local"``): never a cluster this machine knows of from ``ray start``."""
    ray.init(address="local", num_cpus=os.cpu_count() or 2, object_store_memory=200 * 1024 * 1024,
             include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """N gray JPEGs of H x W with film-like grain."""
    return write_gray_photos(tmp_path_factory.mktemp("photos"), N, H, W)


def test_ray_actor_pool_throughput(benchmark, local_ray, photo_folder, tmp_path):
    from streamcolor.engines import load_engine

    options = BatchOptions(batch_size=BATCH)
    engine = load_engine("default", "onnx", device="cpu")
    load_before = os.getloadavg()[0]

    def ray_run(out: Path, actors: int, src: Path = photo_folder):
        t = time.perf_counter()
        report = colorize_archive_ray(src, out, backend="onnx", options=options,
                                      cluster=ClusterOptions(actors=actors), progress=False)
        return report, time.perf_counter() - t

    t = time.perf_counter()
    plain = colorize_archive(photo_folder, tmp_path / "plain", engine=engine, options=options, progress=False)
    plain_s = time.perf_counter() - t
    one, one_s = ray_run(tmp_path / "ray1", 1)
    two, two_s = benchmark.pedantic(ray_run, args=(tmp_path / "ray2", 2), rounds=1, iterations=1)
    startup_dir = tmp_path / "two-photos"
    startup_dir.mkdir()
    for p in sorted(photo_folder.glob("*.jpg"))[:2]:
        (startup_dir / p.name).write_bytes(p.read_bytes())
    _, startup_s = ray_run(tmp_path / "startup", 2, startup_dir)
    assert plain.ok and one.ok and two.ok and plain.done_now == one.done_now == two.done_now == N

    info = {
        "photos": N,
        "size": f"{W}x{H}",
        "batch_size": BATCH,
        "cpu_count": os.cpu_count(),
        "engine": engine.name,
        "plain_items_per_s": round(N / plain_s, 3),
        "ray1_items_per_s": round(N / one_s, 3),
        "ray2_items_per_s": round(N / two_s, 3),
        "scaling_2_over_1": round(one_s / two_s, 3),
        "ray_startup_s": round(startup_s, 2),
        "overhead_ms_per_item": round(1000 * (two_s - plain_s) / N, 1),
        "overhead_ms_per_item_after_startup": round(1000 * (two_s - startup_s - plain_s) / N, 1),
        "machine_2proc_speedup": machine_2proc_speedup(20_000_000 if FULL else 1_000_000),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: others' work
    }
    benchmark.extra_info.update(info)
    print("\nray actor pool:", info)
