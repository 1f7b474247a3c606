"""Make the bundled samples in ``streamcolor/samples/`` from two held-out
training-set photos (public domain, from Debian's gcompris-qt-data; see
``streamcolor/samples/README.md`` for the credits).

    python docs/make_samples.py data/photos/gcompris-qt-data

* ``chenonceau-bw.jpg``: a black-and-white version of a 1024x768 photo.
* ``giraffe-bw.mp4``: 4 s, 24 fps, 640x360 H.264: a slow pan across a photo,
  with a 440 Hz AAC tone, so demos and tests see a real audio stream.

Both are made from the photo's CIE L* (so the gray is perceptual lightness).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamcolor.engines import lab

OUT = Path(__file__).resolve().parent.parent / "streamcolor" / "samples"


def to_gray(bgr: np.ndarray) -> np.ndarray:
    """uint8 gray whose value reproduces the photo's L* (via the sRGB curve)."""
    l = lab.rgb_to_l(bgr[..., ::-1])
    return np.clip(lab.lab_to_rgb(np.dstack([l, np.zeros_like(l), np.zeros_like(l)]))[..., 0] * 255 + 0.5,
                   0, 255).astype(np.uint8)


def make_image(src: Path) -> None:
    gray = to_gray(cv2.imread(str(src)))
    cv2.imwrite(str(OUT / "chenonceau-bw.jpg"), gray, [cv2.IMWRITE_JPEG_QUALITY, 90])


def make_video(src: Path, seconds: int = 4, fps: int = 24, size: tuple[int, int] = (640, 360)) -> None:
    gray = to_gray(cv2.imread(str(src)))
    h, w = gray.shape
    crop_w, crop_h = int(w * 0.7), int(h * 0.7)
    n = seconds * fps
    with av.open(str(OUT / "giraffe-bw.mp4"), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"crf": "23", "preset": "slow"}
        rate = 44100
        aus = out.add_stream("aac", rate=rate)
        aus.layout = "mono"
        for i in range(n):
            x = int((w - crop_w) * i / (n - 1))
            y = int((h - crop_h) * 0.3)
            frame = cv2.resize(gray[y : y + crop_h, x : x + crop_w], size, interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(np.repeat(frame[..., None], 3, axis=-1), format="rgb24")
            for p in vs.encode(vf):
                out.mux(p)
        t = np.arange(seconds * rate) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            af = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, start, Fraction(1, rate)
            for p in aus.encode(af):
                out.mux(p)
        for s in (vs, aus):
            for p in s.encode(None):
                out.mux(p)


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "data/photos/gcompris-qt-data")
    OUT.mkdir(parents=True, exist_ok=True)
    make_image(folder / "explore_monuments__france__chateaudeChenonceau.png")
    make_video(folder / "erase__giraffe.png")
