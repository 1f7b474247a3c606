"""What colorizing a long video in resumable parts costs, against one pass, in one run.

    nice python -m benchmarks.video_parts --out benchmarks/results/video-parts-cpu-<date>.json

``streamcolor video`` colorizes a video of two parts or more a part at a time
(``VideoOptions.checkpoint_s``, 60 s by default) so that a stopped run resumes
(``streamcolor.video.job``).  Each part after the first decodes from the keyframe
before its warm-up second and colorizes that second unwritten, and each part's
pipeline fills and drains on its own.  This measures, on one generated gray clip
(x264's default keyframe interval, 250 frames) with the shipped default model,
rounds alternating:

* **one pass** (``checkpoint_s=0``) and **in parts** (``--part-s``, 24 s by
  default: a shorter part than the default's 60 s, so that the per-part cost
  shows above the machine's noise);
* wall seconds, fps and the process's CPU seconds of each, and their ratios
  (parts / one pass): the best rounds' and each round's own (median).

The per-part cost in seconds (extra wall time over the joins) is what a part of
60 s pays too, spread over 2.5 times as many frames.  About 8 minutes on 2 cores.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import one_run

log = logging.getLogger("benchmarks.video_parts")
ROUNDS = 2
#: The clip: width, height, seconds at 24 fps; and the part length measured.
CLIP = (320, 240, 72)
PART_S = 24.0


def run_figures(src: Path, out_dir: Path, part_s: float, rounds: int) -> dict[str, Any]:
    """Alternating rounds of one pass and parts on ``src``: seconds, fps, CPU seconds, ratios."""
    from streamcolor.engines import load_engine
    from streamcolor.video import VideoOptions, colorize_video, plan_segments, video_keyframes
    from streamcolor.video.job import WARMUP_S

    keyframes, tb, frames = video_keyframes(src)
    parts = plan_segments(keyframes, tb, segment_s=part_s, warmup_s=WARMUP_S)
    engine = load_engine("default", "auto")
    modes = {"one pass": 0.0, "parts": part_s}
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode, checkpoint in modes.items():
            t0, c0 = time.perf_counter(), time.process_time()
            colorize_video(src, out_dir / f"{mode.replace(' ', '-')}-{r}.mp4", engine=engine,
                           options=VideoOptions(checkpoint_s=checkpoint), progress=False)
            wall[mode].append(time.perf_counter() - t0)
            cpu[mode].append(time.process_time() - c0)
            log.info("round %d, %s: %.1f s (%.1f s CPU)", r + 1, mode, wall[mode][-1], cpu[mode][-1])
    best = {m: min(v) for m, v in wall.items()}
    joins = max(1, len(parts) - 1)
    return {
        "engine": engine.name, "frames": frames, "parts": len(parts), "part_s": part_s, "warmup_s": WARMUP_S,
        "wall_s": {m: [round(x, 2) for x in v] for m, v in wall.items()},
        "cpu_s": {m: [round(x, 2) for x in v] for m, v in cpu.items()},
        "fps": {m: round(frames / b, 2) for m, b in best.items()},
        "parts_over_one_pass_wall": round(best["parts"] / best["one pass"], 3),
        "parts_over_one_pass_wall_paired": round(statistics.median(
            p / o for p, o in zip(wall["parts"], wall["one pass"])), 3),
        "parts_over_one_pass_cpu": round(min(cpu["parts"]) / min(cpu["one pass"]), 3),
        "extra_s_per_join": round((best["parts"] - best["one pass"]) / joins, 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = one_run.parse("video_parts", __doc__, argv, "a tiny clip: checks that the script runs, no figures")
    from streamcolor.video import make_clip

    width, height, seconds = (96, 64, 4) if args.quick else CLIP
    part_s = 1.0 if args.quick else PART_S
    rounds = 1 if args.quick else ROUNDS
    result = one_run.record("video_parts", argv, rounds=rounds,
                            clip={"width": width, "height": height, "seconds": seconds, "fps": 24})
    with tempfile.TemporaryDirectory(prefix="sc-parts-") as tmp:
        src = make_clip(Path(tmp) / "clip.mp4", width, height, seconds * 24)
        if args.quick:  # (x264's keyframe every 250 frames would make one part of a 4 s clip)
            from streamcolor.video import VideoOptions, reencode
            reencode(src, Path(tmp) / "gop.mp4", VideoOptions(encoder_options={"g": "12"}))
            src = Path(tmp) / "gop.mp4"
        result["video"] = run_figures(src, Path(tmp), part_s, rounds)
    log.info("%s", result["video"])
    one_run.write(args.out, result, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

