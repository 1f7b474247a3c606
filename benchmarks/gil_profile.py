"""How long a batch job holds the GIL per photo, and where: what bounds it on many cores.

    pip install py-spy   # (a profiler from PyPI; not one of streamcolor's dependencies)
    python -m benchmarks.gil_profile --out benchmarks/results/gil-cpu-2026-12-04.json

Why: on the H200's 16 cores a batch job of 1-megapixel photos kept only about five cores busy,
and ran as fast with 8 workers as with 16 (``batch-scaling-gpu-h200-2026-12-04.json``): something
serial bounds it.  Threads of one process share one GIL, so the time a photo holds it bounds the
job at ``1000 / (GIL ms a photo)`` photos/s however many cores there are.  That time does not
depend on the core count, so this machine can measure it: py-spy samples, ``--rate`` times a
second, the thread that holds the GIL and its Python stack; the samples a photo, over the rate,
are its GIL time.  The job (``colorize_archive``) and decode + encode only (as
``pipeline_bound``'s bound) are sampled apart, after a first job that is not (the engine's warm-up).
The stacks are summed by their innermost streamcolor function and by their innermost frame (the
call that held the GIL).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _frame_names(stack: str) -> list[str]:
    return [f.strip() for f in stack.split(";") if f.strip()]


def summarize(raw: str, photos: int, rate: float, top: int = 15) -> dict[str, Any]:
    """GIL time a photo from py-spy's raw output (``frame;frame;... count`` lines)."""
    total = 0
    by_step: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    by_path: collections.Counter[str] = collections.Counter()  # outermost > ... > innermost streamcolor function
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frame_names(stack)
        total += n
        ours = [f for f in frames if "streamcolor/" in f or "(streamcolor" in f]
        by_step[ours[-1] if ours else "(outside streamcolor) " + (frames[-1] if frames else "?")] += n
        by_leaf[frames[-1] if frames else "?"] += n
        names = [re.sub(r" \(.*", "", f) for f in ours]
        by_path[" > ".join(names[:1] + names[-2:] if len(names) > 3 else names) or "(outside streamcolor)"] += n
    ms = lambda n: round(1000 * n / rate / photos, 3)  # noqa: E731
    return {"gil_ms_per_photo": ms(total), "gil_bound_photos_per_s": round(1000 / ms(total), 1) if total else None,
            "samples": total,
            "by_streamcolor_path_ms": {k: ms(v) for k, v in by_path.most_common(top)},
            "by_streamcolor_function_ms": {k: ms(v) for k, v in by_step.most_common(top)},
            "by_innermost_frame_ms": {k: ms(v) for k, v in by_leaf.most_common(top)}}


def means(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per label: the mean GIL ms a photo of decode + encode only, of the job, and of the job's
    JPEG encode step (its paths through ``encode_jpeg_planes`` among the 15 largest), and the job's photos/s."""
    out: dict[str, dict[str, float]] = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        rs = [r for r in runs if r["label"] == label]
        mean = lambda xs: round(sum(xs) / len(xs), 2)  # noqa: E731
        out[label] = {"runs": len(rs), "codec_gil_ms": mean([r["codec"]["gil_ms_per_photo"] for r in rs]),
                      "job_gil_ms": mean([r["job"]["gil_ms_per_photo"] for r in rs]),
                      "job_encode_gil_ms": mean([sum(v for k, v in r["job"]["by_streamcolor_path_ms"].items()
                                                     if "encode_jpeg_planes" in k) for r in rs]),
                      "job_photos_per_s": mean([r["job"]["photos_per_s"] for r in rs])}
    return out


class Sampler:
    """py-spy attached to this process for the length of a ``with`` block."""

    def __init__(self, out: Path, rate: int):
        self.out, self.rate = out, rate

    def __enter__(self) -> "Sampler":
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.proc = subprocess.Popen([exe, "record", "--pid", str(os.getpid()), "--gil", "--nonblocking", "--format",
                                      "raw", "--rate", str(self.rate), "--output", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.5)  # attached
        if self.proc.poll() is not None:
            raise RuntimeError(f"py-spy did not start: {self.proc.stderr.read().decode()[-500:]}")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        self.proc.wait(60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gil_profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results JSON (a run is added to an existing one)")
    ap.add_argument("--photos", type=int, default=96, help="1-megapixel gray photos (default 96)")
    ap.add_argument("--size", type=int, nargs=2, default=(864, 1152), metavar=("H", "W"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="the job's workers (default: one a core)")
    ap.add_argument("--processes", type=int, default=0,
                    help="the job's worker processes (BatchOptions.processes; default 0: threads). py-spy samples "
                         "the job's own process: the GIL the worker processes hold is each their own")
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples a second")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--label", default="", help="a name for this run, kept in the file")
    args = ap.parse_args(argv)
    import cv2

    from benchmarks.conftest import codec_one as conftest_codec_one, write_gray_photos
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.engines import load_engine

    engine = load_engine("default", args.backend)
    options = BatchOptions(workers=args.workers, processes=args.processes)
    workers = options.workers or os.cpu_count() or 1
    colour = options.color_options(engine)
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "label": args.label,
        "command": "python -m benchmarks.gil_profile " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cv2_threads": cv2.getNumThreads()},
        "engine": engine.name, "photos": args.photos, "size": f"{args.size[1]}x{args.size[0]}",
        "rounds": args.rounds, "workers": workers, "processes": args.processes, "rate": args.rate}
    with tempfile.TemporaryDirectory(prefix="sc-gil-") as tmp:
        work = Path(tmp)
        folder = write_gray_photos(work / "photos", args.photos, *args.size)
        files = sorted(folder.glob("*.jpg"))

        def codec_one(f: Path, out: Path) -> None:
            conftest_codec_one(f, out, colour.quality)

        def job(out: Path) -> None:
            rep = colorize_archive(folder, out, engine=engine, options=options, progress=False)
            assert rep.ok and rep.done_now == args.photos, rep.summary()

        job(work / "warm")
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda f: codec_one(f, work), files[:workers]))  # (warm)
            for part in ("codec", "job"):
                raw = work / f"{part}.txt"
                t = time.perf_counter()
                with Sampler(raw, args.rate):
                    t = time.perf_counter()
                    for i in range(args.rounds):
                        if part == "job":
                            job(work / f"job{i}")
                        else:
                            out = work / f"codec{i}"
                            out.mkdir()
                            list(pool.map(lambda f: codec_one(f, out), files))
                    wall = time.perf_counter() - t
                n = args.photos * args.rounds
                row = summarize(raw.read_text(), n, args.rate)
                row.update(wall_s=round(wall, 2), photos_per_s=round(n / wall, 2))
                result[part] = row
                print(part, json.dumps({k: row[k] for k in ("gil_ms_per_photo", "gil_bound_photos_per_s",
                                                             "photos_per_s")}), flush=True)
    engine.close()
    result["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                      text=True).stdout.strip()
    # an existing file gets this run added (the same script run from two commits into one file)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    data["runs"].append(result)
    data["means"] = means(data["runs"])
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
