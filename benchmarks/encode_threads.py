"""Encoding on several threads: into an in-memory file descriptor, and into a BytesIO, in one run.

    nice python -m benchmarks.encode_threads --out benchmarks/results/encode-threads-cpu-<date>.json

Pillow holds the GIL while it encodes a JPEG into a Python buffer (a BytesIO) and releases it
while it encodes into a file descriptor.  ``streamcolor.image_io`` now encodes a JPEG into an
anonymous in-memory file (``memfd_create``) where Linux has one, so a batch job's workers encode
at once.  This measures, alternately in one process:

* **encodes/s** of one 1-megapixel colour photo as JPEG (quality 95, 4:4:4, the batch job's
  default) and as PNG, through ``image_io.encode_image`` (for a JPEG the memfd; a PNG keeps the
  BytesIO, so its two rows are the same code: a control) and through Pillow into a BytesIO (what
  ``image_io`` did before), on 1 thread and on as many threads as the machine has cores (at least
  2): the scaling of each, (N-thread encodes/s) / (1-thread encodes/s), best rounds' and each
  round's own (median);
* **the batch job** (``colorize_archive`` on gray 1 MP JPEGs, the default engine) with each
  buffer, rounds alternating: photos/s and CPU ms a photo.

On 2 cores the job is CPU-bound either way (its threads keep both cores busy), so the job's
figure shows what the change does there, and the encode scaling what it frees on more cores.
About 2 minutes on 2 cores.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from benchmarks import one_run

log = logging.getLogger("benchmarks.encode_threads")
ROUNDS = 3
#: Gray photos of the batch job part, and their size (height, width).
PHOTOS = (96, 864, 1152)


@contextlib.contextmanager
def bytesio_buffers() -> Iterator[None]:
    """Every encode of ``streamcolor.image_io`` into a BytesIO, as before it used a memfd (the
    fallback it takes where there is none)."""
    from streamcolor import image_io

    real = getattr(image_io.os, "memfd_create", None)

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise OSError(38, "memfd switched off by benchmarks.encode_threads")

    image_io.os.memfd_create = refuse  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if real is None:
            del image_io.os.memfd_create  # type: ignore[attr-defined]
        else:
            image_io.os.memfd_create = real  # type: ignore[attr-defined]


def _rate(fn: Callable[[], Any], threads: int, per_thread: int) -> float:
    """Calls/s of ``fn`` run ``per_thread`` times on each of ``threads`` threads at once."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pool.submit(fn).result()  # warm
        t = time.perf_counter()
        for f in [pool.submit(lambda: [fn() for _ in range(per_thread)]) for _ in range(threads)]:
            f.result()
        return threads * per_thread / (time.perf_counter() - t)


def encode_figures(photo: np.ndarray, threads: int, calls: int, reps: int) -> dict[str, Any]:
    from PIL import Image

    from streamcolor import image_io

    def into_bytesio(fmt: str) -> Callable[[], bytes]:
        params = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}

        def encode() -> bytes:
            buf = io.BytesIO()
            Image.fromarray(photo, "RGB").save(buf, format=fmt, **params)
            return buf.getvalue()
        return encode

    rows: dict[str, dict[str, list[float]]] = {}
    for fmt in ("JPEG", "PNG"):
        ways = {"image_io": lambda fmt=fmt: image_io.encode_image(photo, fmt, quality=95, warn=False),
                "bytesio": into_bytesio(fmt)}
        if ways["image_io"]() != ways["bytesio"]():
            raise AssertionError(f"{fmt}: the two buffers gave different bytes")
        n = calls if fmt == "JPEG" else max(2, calls // 4)
        for _ in range(reps):
            for way, fn in ways.items():
                for t in sorted({1, threads}):
                    rows.setdefault(f"{fmt.lower()}_{way}_threads{t}", []).append(_rate(fn, t, n))
    best = {k: round(max(v), 2) for k, v in rows.items()}
    scaling = {f"{fmt}_{way}": round(best[f"{fmt}_{way}_threads{threads}"] / best[f"{fmt}_{way}_threads1"], 3)
               for fmt in ("jpeg", "png") for way in ("image_io", "bytesio")}
    # each round's own ratio (its two measurements seconds apart), the median over the rounds
    paired = {key: round(float(np.median([m / o for o, m in zip(rows[f"{key}_threads1"], rows[f"{key}_threads{threads}"])])), 3)
              for key in scaling}
    return {"threads": threads, "encodes_per_s": best, "scaling": scaling, "scaling_paired": paired,
            "all_rounds": {k: [round(x, 2) for x in v] for k, v in rows.items()}}


def job_figures(work: Path, photos: tuple[int, int, int], reps: int) -> dict[str, Any]:
    from benchmarks.conftest import write_gray_photos
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.engines import load_engine

    n, h, w = photos
    folder = write_gray_photos(work / "photos", n, h, w)
    engine = load_engine("default")
    options = BatchOptions()
    colorize_archive(folder, work / "warm", engine=engine, options=options, progress=False)
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for i in range(reps):
        for way in ("memfd", "bytesio"):
            out = work / f"out-{way}"
            shutil.rmtree(out, ignore_errors=True)
            with contextlib.ExitStack() as stack:
                if way == "bytesio":
                    stack.enter_context(bytesio_buffers())
                c, t = time.process_time(), time.perf_counter()
                rep = colorize_archive(folder, out, engine=engine, options=options, progress=False)
                wall.setdefault(way, []).append(time.perf_counter() - t)
                cpu.setdefault(way, []).append(time.process_time() - c)
            if not (rep.ok and rep.done_now == n):
                raise AssertionError(rep.summary())
    rate = {k: n / min(v) for k, v in wall.items()}
    paired = sorted(b / a for a, b in zip(wall["memfd"], wall["bytesio"]))
    return {"engine": engine.name, "photos": n, "size": f"{w}x{h}", "batch_size": options.batch_for(engine),
            "workers": options.workers or os.cpu_count(),
            "photos_per_s": {k: round(v, 2) for k, v in rate.items()},
            "cpu_ms_per_photo": {k: round(1000 * float(np.median(v)) / n, 1) for k, v in cpu.items()},
            "memfd_over_bytesio": round(rate["memfd"] / rate["bytesio"], 3),
            "memfd_over_bytesio_paired": round(paired[len(paired) // 2], 3),
            "all_rounds_s": {k: [round(x, 2) for x in v] for k, v in wall.items()}}


def main(argv: list[str] | None = None) -> int:
    args = one_run.parse("encode_threads", __doc__, argv, "tiny inputs: checks that the script runs, no figures")
    from benchmarks.conftest import make_photo

    threads = max(2, os.cpu_count() or 1)
    reps = 1 if args.quick else ROUNDS
    size, calls, photos = ((96, 128), 2, (4, 96, 128)) if args.quick else ((864, 1152), 24, PHOTOS)
    result = one_run.record("encode_threads", argv, rounds=reps, memfd=hasattr(os, "memfd_create"))
    photo = make_photo(*size, seed=1)
    result["encode"] = encode_figures(photo, threads, calls, reps)
    result["load_average"]["after_encode"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="sc-encode-") as tmp:
        result["job"] = job_figures(Path(tmp), photos, reps)
    log.info("%s", {k: result[k] for k in ("encode", "job")})
    one_run.write(args.out, result, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
