"""ONNX Runtime's spinning pool threads, on and off, in one run.

    nice python -m benchmarks.spin --out benchmarks/results/spin-cpu-2026-11-30.json

ONNX Runtime's intra-op threads spin-wait for work between operators by
default.  ``OnnxEngine`` turns that off (``spin=False``) because in a video or
batch job the engine shares the cores with the decoder, the encoder and the
compose threads.  This measures both settings alternately in one process, on
the shipped default model:

* **engine only**: images/s at render 320x256, batch 1 and 8 (best of rounds);
* **video**: ``colorize_video`` fps on a generated 576p clip, against the same
  bound as ``benchmarks.pipeline_bound`` (engine only at the preferred batch,
  decode + encode only), each engine setting in turn.

Compare the ratios within this one run; about 3 minutes on 2 cores.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import one_run

log = logging.getLogger("benchmarks.spin")
ROUNDS = 3


def main(argv: list[str] | None = None) -> int:
    args = one_run.parse("spin", __doc__, argv, "tiny inputs: checks that the script runs, no figures")
    from streamcolor.colorize import network_input
    from streamcolor.engines import load_engine
    from streamcolor.engines.onnx_engine import OnnxEngine
    from streamcolor.video import VideoOptions, codec_floor, colorize_video, make_clip

    base = load_engine("default", "onnx", device="cpu")
    engines = {"spin": OnnxEngine(base.info, device="cpu", spin=True),
               "no_spin": OnnxEngine(base.info, device="cpu", spin=False)}
    options = VideoOptions()
    colour = options.color_options(base)
    w, h, n = (160, 96, 8) if args.quick else (768, 576, 96)
    reps = 1 if args.quick else ROUNDS
    result = one_run.record("spin", argv, model=base.info.name, rounds=reps)
    # engine only
    engine_rows: dict[str, dict[str, list[float]]] = {k: {} for k in engines}
    for batch in (1, 8):
        x = np.random.default_rng(0).random((batch, 256, 320, 1), dtype=np.float32) * 2 - 1
        calls = 2 if args.quick else max(4, 32 // batch)
        for _ in range(reps):
            for name, eng in engines.items():
                engine_rows[name].setdefault(f"batch{batch}", []).append(one_run.images_per_s(eng, x, calls))
    result["engine_images_per_s"] = {name: {k: round(max(v), 2) for k, v in rows.items()}
                                     for name, rows in engine_rows.items()}
    result["engine_all_rounds"] = {name: {k: [round(x, 2) for x in v] for k, v in rows.items()}
                                   for name, rows in engine_rows.items()}
    result["load_average"]["after_engine"] = round(os.getloadavg()[0], 2)
    # the video pipeline against its bound, per setting
    with tempfile.TemporaryDirectory(prefix="sc-spin-") as tmp:
        work = Path(tmp)
        src = make_clip(work / "clip.mp4", w, h, n)
        from benchmarks.pipeline_bound import _clip_l

        net = np.stack([network_input(l, colour.render_size, colour.size_multiple) for l in _clip_l(src)])
        batch = base.preferred_batch_size
        walls: dict[str, list[float]] = {}

        def timed(key: str, fn) -> None:
            t = time.perf_counter()
            fn()
            walls.setdefault(key, []).append(time.perf_counter() - t)

        for _ in range(reps):
            timed("codec", lambda: codec_floor(src, work / "floor.mp4", options))
            for name, eng in engines.items():
                timed(f"engine_{name}", lambda: [eng.predict(net[j:j + batch]) for j in range(0, n, batch)])
                timed(f"video_{name}", lambda: colorize_video(src, work / "out.mp4", engine=eng, options=options,
                                                               progress=False))
        fps = {k: n / min(v) for k, v in walls.items()}
        video: dict[str, Any] = {"clip": f"{w}x{h}", "frames": n, "codec_fps": round(fps["codec"], 2)}
        for name in engines:
            bound = 1 / (1 / fps[f"engine_{name}"] + 1 / fps["codec"])
            video[name] = {"engine_fps": round(fps[f"engine_{name}"], 2), "bound_fps": round(bound, 2),
                           "video_fps": round(fps[f"video_{name}"], 2),
                           "video_over_bound": round(fps[f"video_{name}"] / bound, 3)}
        video["all_rounds_s"] = {k: [round(x, 2) for x in v] for k, v in walls.items()}
        result["video"] = video
    log.info("%s", {k: result[k] for k in ("engine_images_per_s", "video")})
    one_run.write(args.out, result, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
