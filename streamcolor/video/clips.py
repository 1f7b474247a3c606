"""Test and benchmark helpers: a generated gray clip, the codec floor (decode + encode
with the pipeline's encoder settings and nothing else), a video's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import av
from av.video.frame import PictureType
import numpy as np

from streamcolor.video.codecs import pick_codec, plain_encoder
from streamcolor.video.containers import frame_rate
from streamcolor.video.options import VideoOptions


def make_clip(path: str | Path, width: int, height: int, frames: int, *, rate: int = 24, seed: int = 0) -> Path:
    """Write a gray H.264 test clip: two shots of smooth shapes panning, a moving
    square, film grain.  Throughput does not depend on the content, but codecs
    do, so the clip is not flat."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    pan = 2
    span = frames * pan + 1
    y, x = np.mgrid[0:height, 0:width + span].astype(np.float32)
    shots = []
    for s in range(2):
        img = 120 + 60 * np.sin(x / (23.0 + 11 * s)) * np.cos(y / (31.0 - 7 * s)) + 40 * (x / (width + span) - 0.5)
        for _ in range(6):
            cy, cx, r = rng.integers(0, height), rng.integers(0, width + span), rng.integers(height // 12 + 2,
                                                                                            height // 4 + 3)
            img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(20, 235)
        shots.append(img)
    grain = [rng.normal(0, 4, (height, width)).astype(np.float32) for _ in range(5)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "18"}
        for i in range(frames):
            shot, k = divmod(i, -(-frames // 2))
            g = shots[min(shot, 1)][:, k * pan: k * pan + width] + grain[i % 5]
            sq = max(2, height // 6)
            y0, x0 = (height // 3 + 2 * k) % (height - sq), (5 * k) % (width - sq)
            g[y0:y0 + sq, x0:x0 + sq] = 235
            gray = np.clip(g, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, -1), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    return path


def codec_floor(src: str | Path, dst: str | Path, options: "VideoOptions | None" = None) -> int:
    """Decode ``src`` and re-encode it to ``dst`` with the pipeline's encoder
    settings (:class:`~streamcolor.video.VideoOptions`), threads on, no colour
    work: the frames/s no colorizer can beat.  Returns the frame count."""
    return reencode(src, dst, options)


def reencode(src: str | Path, dst: str | Path, options: "VideoOptions | None" = None,
             each: Callable[[av.VideoFrame], av.VideoFrame] | None = None) -> int:
    """:func:`codec_floor`, with ``each`` (when given) applied to every decoded frame before it is
    encoded: the loop of the benchmarks' reference scripts (a naive colorizer around the image
    API).  Returns the frame count."""
    options = options or VideoOptions()
    codec = pick_codec(options.codec)
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = plain_encoder(out, codec, options, vin.width, vin.height, frame_rate(vin), vin.time_base)
        for frame in inp.decode(vin):
            frame = frame if each is None else each(frame)
            # x264 picks each frame's type itself, as for the pipeline's frames: a decoded frame still
            # carries its source's I/P/B, which the encoder would take as forced (less work for it)
            frame.pict_type = PictureType.NONE
            out.mux(vout.encode(frame))
            n += 1
        out.mux(vout.encode())
    return n


def video_size(src: str | Path) -> tuple[int, int]:
    """(width, height) of the first video stream of ``src``."""
    with av.open(str(src)) as c:
        return c.streams.video[0].width, c.streams.video[0].height
