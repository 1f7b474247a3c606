"""The engine calls a batch job makes: how many photos each call gets.

    python -m benchmarks.batch_sizes --out benchmarks/results/batch-sizes-2026-12-04.json --label after

Why: on a GPU each new batch size is a compile (about 20 s on the H200, where a 128-photo job's
rounds took 40 s and 1.6 s), and on any machine a batch cut short is a slower call.  The job runs
on generated 1-megapixel gray JPEGs at the batch and worker count of a 16-core GPU machine
(64 and 16, whatever this machine has), with the default memory budget, and the sizes of its
engine calls are recorded, run by run.  ``--label`` names the entry; an existing file gets the
new entry added (the same script run from two commits into one file).  The engine is the one
``load_engine`` picks here: the sizes depend on the job, not on the engine's speed alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batch_sizes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results JSON (an entry is added to an existing one)")
    ap.add_argument("--label", required=True, help="name of this entry, e.g. before / after")
    ap.add_argument("--photos", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from benchmarks.conftest import write_gray_photos
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.engines import load_engine
    from streamcolor.engines.keras_engine import batch_bucket

    engine = load_engine("default", "auto")
    sizes: list[int] = []
    real = engine.predict

    def counted(x, *a, **k):
        sizes.append(len(x))
        return real(x, *a, **k)

    engine.predict = counted  # (the real engine, its calls counted)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sc-sizes-") as tmp:
        folder = write_gray_photos(Path(tmp) / "photos", args.photos, 864, 1152)
        for i in range(args.runs):
            sizes.clear()
            report = colorize_archive(folder, Path(tmp) / f"out{i}", engine=engine,
                                      options=BatchOptions(batch_size=args.batch, workers=args.workers), progress=False)
            assert report.ok and report.done_now == args.photos, report.summary()
            runs.append({"sizes": list(sizes), "sizes_text": ", ".join(map(str, sizes)), "calls": len(sizes),
                         "gpu_buckets": sorted({batch_bucket(min(s, args.batch), args.batch) for s in sizes})})
    engine.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(sys.modules["streamcolor"].__file__).parent,
                            capture_output=True, text=True).stdout.strip()
    entry = {"date": datetime.date.today().isoformat(), "commit": commit, "engine": engine.name,
             "photos": args.photos, "size": "1152x864", "batch": args.batch, "workers": args.workers, "runs": runs}
    data = json.loads(args.out.read_text()) if args.out.is_file() else {"command": "python -m benchmarks.batch_sizes"}
    data[args.label] = entry
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps({args.label: [r["sizes"] for r in runs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
