"""Peak memory of the CLI on huge-but-small image files (issue 14).

A PNG of 11000 x 8000 mostly flat pixels is ~120 KB on disk and 88 megapixels
decoded.  Each case runs ``streamcolor image`` or ``streamcolor batch`` at
default settings in a child process, under a small wrapper process whose only
child it is, so the wrapper's ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is that
run's peak resident memory (the whole process: Python, the model, ONNX
Runtime, the images).

Before the strip render and the batch memory budget, the review measured
6.2 GB for one such image in ``image`` and 12.8 GB for three in ``batch``;
the goal is under 2 GB each.

Smoke mode (the normal suite): a 1000 x 800 image, to keep the machinery
working.  Full mode writes ``benchmarks/results/memory-<date>.json``::

    python benchmarks/bench_memory.py                       # this tree
    python benchmarks/bench_memory.py --baseline-tree /path/to/old/checkout   # + the old code, `image` only
    python benchmarks/bench_memory.py --video   # `streamcolor video` by frame size -> memory-video-<date>.json

``--video``: peak RSS of ``streamcolor video`` on clips of several frame sizes, less that of a
clip of tiny frames (the program, the model, its runtime), per pixel of one frame: the figure
``streamcolor serve`` counts a video upload by (``streamcolor.memory.VIDEO_BYTES_PER_FRAME_PIXEL``
must not be below it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Goal of issue 14, per run.
GOAL_MB = 2048
#: What the review measured before (MB).
BEFORE_MB = {"image 1x88Mpx": 6.2 * 1024, "batch 3x88Mpx": 12.8 * 1024}

#: Runs ``argv[1:]`` and prints its exit status, peak RSS and wall time as JSON.
_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors="replace")
print(json.dumps({"rc": p.returncode, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "wall_s": time.perf_counter() - t, "stderr_tail": p.stderr[-600:], "stdout_tail": p.stdout[-600:],
                  "traceback": "Traceback (most recent call last)" in p.stderr + p.stdout,
                  "first_error": next((ln for ln in p.stderr.splitlines() if ln.lower().startswith("error")), "")}))
"""


def make_flat_png(path: Path, width: int, height: int, mode: str = "L") -> Path:
    """A mostly flat image with a few shapes: tiny on disk, huge decoded."""
    light, dark, mid = (200, 40, 120) if mode == "L" else ((200, 200, 200), (40, 60, 90), (120, 30, 30))
    im = Image.new(mode, (width, height), light)
    draw = ImageDraw.Draw(im)
    step = max(1, width // 11)
    for x in range(0, width, step):
        draw.rectangle([x, height // 8, x + step * 2 // 5, height * 7 // 8], fill=dark)
    draw.ellipse([width * 3 // 11, height // 4, width * 8 // 11, height * 3 // 4], fill=mid)
    im.save(path, compress_level=9)
    return path


def peak_rss(args: list[str], *, pythonpath: Path = ROOT) -> dict:
    """Run ``python -m streamcolor ARGS`` in a child; its exit status, peak RSS (MB) and wall time."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "streamcolor", *args]
    # cwd too: `python -m` puts the working folder ahead of PYTHONPATH.
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=pythonpath).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_cases(work: Path, width: int, height: int, *, baseline: Path | None = None) -> list[dict]:
    """The cases of the issue: one image in `image` (gray and RGB), three in `batch`."""
    gray = make_flat_png(work / "gray.png", width, height, "L")
    rgb = make_flat_png(work / "rgb.png", width, height, "RGB")
    three = work / "three"
    three.mkdir()
    for i in range(3):
        (three / f"big{i}.png").write_bytes(gray.read_bytes())
    mpx = f"{width * height / 1e6:.0f}Mpx"
    cases = [
        (f"image 1x{mpx}", "gray", ["image", str(gray), "-o", str(work / "out-image") + "/"], ROOT),
        (f"image 1x{mpx}", "rgb", ["image", str(rgb), "-o", str(work / "out-image-rgb") + "/"], ROOT),
        (f"batch 3x{mpx}", "gray", ["batch", str(three), "-o", str(work / "out-batch"), "--no-progress"], ROOT),
    ]
    if baseline is not None:
        cases.append((f"image 1x{mpx}", "gray, baseline tree",
                      ["image", str(gray), "-o", str(work / "out-baseline") + "/"], baseline))
    rows = []
    for name, kind, args, tree in cases:
        log.info("running %s (%s)", name, kind)
        r = peak_rss(args, pythonpath=tree)
        r.update(case=name, source=kind, tree="this tree" if tree == ROOT else f"baseline: {tree}", file_bytes=(rgb if kind == "rgb" else gray).stat().st_size,
                 pixels=width * height)
        if r["rc"] == 0:
            r.pop("stderr_tail")
            r.pop("stdout_tail")
            r.pop("first_error")
        rows.append(r)
        log.info("  rc %d, peak %.0f MB, %.1f s", r["rc"], r["peak_rss_mb"], r["wall_s"])
    return rows


#: Frame sizes of ``--video`` (the tiny one is the baseline), and frames a clip (enough to fill
#: every queue and the encoder's lookahead: memory is flat past them).
VIDEO_SIZES = ((64, 48), (1280, 720), (1920, 1080), (3840, 2160))
VIDEO_FRAMES = 90


def video_cases(work: Path, sizes=VIDEO_SIZES, frames: int = VIDEO_FRAMES) -> list[dict]:
    """Peak RSS of `streamcolor video` (defaults) at each frame size, and the bytes a frame pixel
    above the first (tiny) size's peak."""
    from streamcolor.video import make_clip

    rows = []
    for w, h in sizes:
        clip = make_clip(work / f"clip-{w}x{h}.mp4", w, h, frames)
        log.info("running video %dx%d, %d frames", w, h, frames)
        r = peak_rss(["video", str(clip), "-o", str(work / f"out-{w}x{h}.mp4"), "--no-progress"])
        r.update(case=f"video {w}x{h}", width=w, height=h, frames=frames)
        if rows and r["rc"] == 0:
            r["bytes_per_frame_pixel"] = round((r["peak_rss_mb"] - rows[0]["peak_rss_mb"]) * 2**20 / (w * h), 1)
        rows.append(r)
        log.info("  rc %d, peak %.0f MB, %s B/px", r["rc"], r["peak_rss_mb"], r.get("bytes_per_frame_pixel"))
    return rows


def test_memory_smoke(tmp_path):
    """Smoke: the machinery works and a small run stays far under the goal."""
    rows = run_cases(tmp_path, 1000, 800)
    assert [r["rc"] for r in rows] == [0, 0, 0], rows
    assert all(0 < r["peak_rss_mb"] < GOAL_MB for r in rows), rows


def test_video_memory_smoke(tmp_path):
    """Smoke: the video cases run and give a per-pixel figure."""
    rows = video_cases(tmp_path, sizes=((32, 24), (192, 128)), frames=8)
    assert [r["rc"] for r in rows] == [0, 0], rows
    assert "bytes_per_frame_pixel" in rows[1] and 0 < rows[0]["peak_rss_mb"] < GOAL_MB, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=11000)
    ap.add_argument("--height", type=int, default=8000)
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="a checkout of the code before the change, also measured (`image` only)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--video", action="store_true", help="measure `streamcolor video` by frame size instead")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.video:
        return main_video(args.out)
    with tempfile.TemporaryDirectory(prefix="streamcolor-mem-") as tmp:
        rows = run_cases(Path(tmp), args.width, args.height, baseline=args.baseline_tree)
    today = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = {"date": today, "commit": commit, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": "defaults (model, render size, batch size, workers, memory budget)",
              "goal_mb": GOAL_MB, "before_mb_from_review": BEFORE_MB, "runs": rows,
              "under_goal": all(r["rc"] == 0 and r["peak_rss_mb"] < GOAL_MB for r in rows
                                if "baseline" not in r["source"])}
    out = args.out or RESULTS / f"memory-{today}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("wrote %s", out)


def main_video(out: Path | None) -> None:
    from streamcolor.memory import VIDEO_BYTES_PER_FRAME_PIXEL

    with tempfile.TemporaryDirectory(prefix="streamcolor-mem-") as tmp:
        rows = video_cases(Path(tmp))
    today = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    measured = [r["bytes_per_frame_pixel"] for r in rows if "bytes_per_frame_pixel" in r]
    result = {"date": today, "commit": commit, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": "streamcolor video, defaults (model, render size, batch size, codec)", "runs": rows,
              "max_bytes_per_frame_pixel": max(measured) if measured else None,
              "counted_bytes_per_frame_pixel": VIDEO_BYTES_PER_FRAME_PIXEL,
              "counted_covers_measured": bool(measured) and VIDEO_BYTES_PER_FRAME_PIXEL >= max(measured)}
    out = out or RESULTS / f"memory-video-{today}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
