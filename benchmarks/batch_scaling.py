"""A batch job on many cores: what its throughput depends on, one setting at a time.

    python -m benchmarks.batch_scaling --out benchmarks/results/batch-scaling.json \\
        --variant default --variant cv2=1 --variant cv2=1,workers=8

Why: on the H200's 16 cores a batch job of 1-megapixel photos ran at a third of the bound of
its own engine and decode + encode (103 photos/s against 315, 2026-12-04), using about six of
the cores, while on 2 cores it runs at 0.8-0.9 of it.  The job is the same code; what does not
scale is the question: OpenCV's own thread pool beside the job's 16 workers (with
``cv2.setNumThreads(1)`` the RGB route went from 562 CPU ms a photo to 46), the GIL, or the
kernel's page faults on fresh arrays (glibc maps and unmaps each array of a megapixel or more).

Each variant runs in its own process (OpenCV's threads and glibc's settings are the process's):
the engine loaded once, a first job untimed (the compiles), then ``--rounds`` rounds of the
same photos through decode + encode only (the job's worker count, as the bound's) and through
the job (``colorize_archive``), each round timed with the process's CPU time (user and
system apart: page faults are system time) and its context switches (a thread waiting for the
GIL or a lock switches voluntarily).  A variant is ``NAME=VALUE`` pairs: ``cv2`` (OpenCV's
threads), ``workers`` (the job's), ``malloc`` (``big``: glibc keeps freed arrays for reuse,
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set high), ``switch`` (Python's
switch interval, seconds), ``processes`` (``BatchOptions.processes``: the job's worker
processes, and decode + encode only on as many processes instead of threads; the CPU time
and context switches then include the worker processes'; each job starts its own, about
0.4 s on a 2-core machine, inside its timing as a user's job does); ``default`` is the job as
a user runs it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"cv2": int, "workers": int, "malloc": str, "switch": float, "processes": int}
BIG_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31),
              "MALLOC_TOP_PAD_": str(64 << 20)}


def parse_variant(text: str) -> dict[str, Any]:
    """``default`` or ``cv2=1,workers=8,...`` as a dict (argparse type)."""
    if text == "default":
        return {}
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in KEYS:
            raise argparse.ArgumentTypeError(f"{part!r}: expected NAME=VALUE with NAME one of {', '.join(KEYS)}")
        out[key] = KEYS[key](value)
    if out.get("malloc", "big") != "big":
        raise argparse.ArgumentTypeError("malloc=big is the only malloc variant")
    return out


def cpu_usage() -> tuple[float, float, int, int]:
    """CPU seconds (user, system) and context switches (voluntary, involuntary) of this process
    and its child processes: those that ended (a job's worker processes, reaped as it ends) and
    those alive (a process pool of decode + encode only, kept from round to round)."""
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = [own.ru_utime + ended.ru_utime, own.ru_stime + ended.ru_stime, own.ru_nvcsw + ended.ru_nvcsw,
             own.ru_nivcsw + ended.ru_nivcsw]
    import psutil

    for proc in psutil.Process().children(recursive=True):
        try:
            times, switches = proc.cpu_times(), proc.num_ctx_switches()
        except psutil.Error:  # ended meanwhile: counted with the ended ones at the next look
            continue
        for k, v in enumerate((times.user, times.system, switches.voluntary, switches.involuntary)):
            usage[k] += v
    return usage[0], usage[1], usage[2], usage[3]


def _timed(fn) -> dict[str, float]:
    u0, s0, v0, i0 = cpu_usage()
    t = time.perf_counter()
    fn()
    wall = time.perf_counter() - t
    u1, s1, v1, i1 = cpu_usage()
    return {"wall": wall, "user": u1 - u0, "sys": s1 - s0, "vcsw": v1 - v0, "ivcsw": i1 - i0}


def child(args: argparse.Namespace) -> int:
    """One variant, in this process: prints its row as JSON on the last line."""
    variant = json.loads(args.child)
    import cv2

    if "cv2" in variant:
        cv2.setNumThreads(variant["cv2"])
    if "switch" in variant:
        sys.setswitchinterval(variant["switch"])

    from benchmarks.conftest import codec_one
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.engines import load_engine

    engine = load_engine("default", args.backend)
    folder = Path(args.photos_dir)
    files = sorted(folder.rglob("*.jpg"))
    n = len(files)
    options = BatchOptions(workers=variant.get("workers", 0), processes=variant.get("processes", 0))
    workers = options.processes or options.workers or os.cpu_count() or 1
    colour = options.color_options(engine)
    work = Path(args.work)

    def job(out: Path) -> None:
        rep = colorize_archive(folder, out, engine=engine, options=options, progress=False)
        assert rep.ok and rep.done_now == n, rep.summary()

    job(work / "first")  # the compiles, untimed
    rounds: dict[str, list[dict[str, float]]] = {"codec": [], "job": []}
    if options.processes:  # decode + encode only on as many worker processes, started before the rounds
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    else:
        pool = concurrent.futures.ThreadPoolExecutor(workers)
    with pool:
        warm = work / "codec-warm"  # (each worker's imports and first arrays, untimed)
        warm.mkdir()
        list(pool.map(codec_one, files[:2 * workers], [warm] * (2 * workers), [colour.quality] * (2 * workers)))
        for i in range(args.rounds):
            out = work / f"codec{i}"
            out.mkdir()
            rounds["codec"].append(_timed(lambda: list(pool.map(codec_one, files, [out] * n, [colour.quality] * n))))
            rounds["job"].append(_timed(lambda: job(work / f"job{i}")))
    engine.close()

    def figures(rs: list[dict[str, float]]) -> dict[str, Any]:
        wall = sum(r["wall"] for r in rs)
        return {"items_per_s": round(n * len(rs) / wall, 2),
                "cpu_ms_per_item": {k: round(1000 * sum(r[k] for r in rs) / (n * len(rs)), 2) for k in ("user", "sys")},
                "cores_busy": round(sum(r["user"] + r["sys"] for r in rs) / wall, 2),
                "context_switches_per_item": {k: round(sum(r[k] for r in rs) / (n * len(rs)), 1)
                                              for k in ("vcsw", "ivcsw")},
                "rounds_s": [round(r["wall"], 2) for r in rs]}

    row = {"variant": variant, "workers": workers, "cv2_threads": cv2.getNumThreads(),
           "switch_interval_s": sys.getswitchinterval(), "engine": engine.name,
           "codec": figures(rounds["codec"]), "job": figures(rounds["job"])}
    row["job_over_codec"] = round(row["job"]["items_per_s"] / row["codec"]["items_per_s"], 3)
    print(json.dumps(row))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batch_scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="results JSON to write")
    ap.add_argument("--variant", type=parse_variant, action="append",
                    help="a setting to run the job with (repeatable; default: 'default' and 'cv2=1')")
    ap.add_argument("--photos", type=int, default=512, help="1-megapixel gray photos (default 512)")
    ap.add_argument("--size", type=int, nargs=2, default=(864, 1152), metavar=("H", "W"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backend", default="auto", help="engine backend (default: what load_engine picks)")
    ap.add_argument("--limit-s", type=float, default=600, help="time limit of each variant's process")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--photos-dir", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if args.out is None:
        ap.error("--out is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log = logging.getLogger("batch_scaling")
    from benchmarks.conftest import write_gray_photos

    variants = args.variant or [{}, {"cv2": 1}]
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": "python -m benchmarks.batch_scaling " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "photos": args.photos, "size": f"{args.size[1]}x{args.size[0]}", "rounds": args.rounds, "variants": []}
    with tempfile.TemporaryDirectory(prefix="sc-scaling-") as tmp:
        photos = write_gray_photos(Path(tmp) / "photos", args.photos, *args.size)
        for k, variant in enumerate(variants):
            env = {**os.environ, **(BIG_MALLOC if variant.get("malloc") == "big" else {})}
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
            work = Path(tmp) / f"v{k}"
            work.mkdir()
            t = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, "-m", "benchmarks.batch_scaling", "--child", json.dumps(variant),
                                       "--photos-dir", str(photos), "--work", str(work), "--rounds", str(args.rounds),
                                       "--backend", args.backend], cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=args.limit_s)
            except subprocess.TimeoutExpired:
                log.error("variant %s: over %.0f s, left out", variant, args.limit_s)
                continue
            if proc.returncode:
                log.error("variant %s failed (exit %d): %s", variant, proc.returncode, proc.stderr[-2000:])
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["process_s"] = round(time.perf_counter() - t, 1)
            result["variants"].append(row)
            log.info("%s: job %.1f/s, codec %.1f/s (%.3fx), job %.1f cores, %s", variant or "default",
                     row["job"]["items_per_s"], row["codec"]["items_per_s"], row["job_over_codec"],
                     row["job"]["cores_busy"], row["job"]["cpu_ms_per_item"])
            subprocess.run(["rm", "-rf", str(work)])
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # after each: a time limit keeps the rest
    return 0 if result["variants"] else 1


if __name__ == "__main__":
    sys.exit(main())
