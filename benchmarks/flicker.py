"""Temporal consistency of a colorized video: how much its colour flickers.

Two published measures, both lower-is-better:

* **CDC**, colour distribution consistency (Lei and Chen, "Fully automatic
  video colorization with self-regularization and diversity", CVPR 2019; the
  evaluation code of DVP / TCVC / the NTIRE 2023 video colorization
  challenge): for each frame, a 256-bin histogram per RGB channel, normalised;
  the Jensen-Shannon divergence (natural log) between frames ``gap`` apart,
  averaged over channels and frames; the mean over gaps 1, 2 and 4.  It needs
  no reference and ignores where colours are, so it is blind to motion but
  also to flicker that keeps the global histogram.
* **Warping error** (Lai et al., "Learning blind video temporal consistency",
  ECCV 2018): each output frame is compared with the previous output frame
  warped onto it by optical flow, over pixels that are not occluded; the mean
  squared difference of RGB in [0, 1].  The flow is computed on the *source*
  (the gray input), here with OpenCV's Farneback instead of the paper's
  FlowNet2, and occlusions found by forward-backward consistency.  Also
  reported on a*b* alone (``warp_ab_rms``, CIE units): every colorization
  keeps the source's lightness, so that residual is colour flicker only,
  while the RGB one also carries the flow's errors on L, common to all.

Both stream frames: memory does not grow with the clip's length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

#: Frame distances averaged by CDC (as in the reference evaluation code).
CDC_GAPS = (1, 2, 4)


def channel_histograms(rgb: np.ndarray) -> np.ndarray:
    """(3, 256) per-channel histograms of a uint8 RGB frame, each summing to 1."""
    n = rgb.shape[0] * rgb.shape[1]
    return np.stack([np.bincount(rgb[..., c].ravel(), minlength=256)[:256] / n for c in range(3)])


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (natural log) of two distributions, 0 .. ln 2."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def cdc(frames: Iterable[np.ndarray], gaps: tuple[int, ...] = CDC_GAPS) -> float:
    """Colour distribution consistency of uint8 RGB frames (lower: steadier colour)."""
    hists = [channel_histograms(f) for f in frames]  # 3 KB a frame
    per_gap = []
    for gap in gaps:
        if len(hists) <= gap:
            continue
        js = [np.mean([js_divergence(hists[t][c], hists[t + gap][c]) for c in range(3)])
              for t in range(len(hists) - gap)]
        per_gap.append(float(np.mean(js)))
    return float(np.mean(per_gap)) if per_gap else float("nan")


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from gray uint8 ``a`` to ``b``: a(x) ~ b(x + flow(x))."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.2, 0)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_error(frames: Iterable[np.ndarray], guide: Iterable[np.ndarray]) -> dict[str, float]:
    """Lai et al. warping error of uint8 RGB ``frames``, flow taken from ``guide`` (the gray source).

    Returns ``rgb``: the mean over frame pairs of the masked mean squared RGB
    difference (values in [0, 1]) between frame t and frame t-1 warped onto
    it, as in the paper; and ``ab_rms``: the same residual on a*b* only, as
    a root mean square in CIE units.  Lightness is the source's in every
    colorization, so ``ab_rms`` isolates colour flicker (``rgb`` also carries
    the flow's own errors on L, common to all colorizations of a clip).
    """
    rgb_err, ab_err = [], []
    prev_out = prev_ab = prev_g = None
    for out, g in zip(frames, guide):
        g = g if g.ndim == 2 else cv2.cvtColor(g, cv2.COLOR_RGB2GRAY)
        out = out.astype(np.float32) / 255.0
        ab = cv2.cvtColor(out, cv2.COLOR_RGB2Lab)[..., 1:].copy()
        if prev_out is not None:
            back = _flow(g, prev_g)  # where each pixel of t was in t-1
            fwd_at = _warp(_flow(prev_g, g), back)
            # forward-backward consistency (Sundaram et al. 2010), the occlusion test Lai et al. use
            mag = np.sum(back ** 2 + fwd_at ** 2, -1)
            mask = np.sum((back + fwd_at) ** 2, -1) < 0.01 * mag + 0.5
            if mask.any():
                rgb_err.append(float(np.sum((out - _warp(prev_out, back)) ** 2, -1)[mask].mean()))
                ab_err.append(float(np.sum((ab - _warp(prev_ab, back)) ** 2, -1)[mask].mean()))
        prev_out, prev_ab, prev_g = out, ab, g
    if not rgb_err:
        return {"rgb": float("nan"), "ab_rms": float("nan")}
    return {"rgb": float(np.mean(rgb_err)), "ab_rms": float(np.sqrt(np.mean(ab_err)))}


def read_rgb(path: str | Path) -> Iterator[np.ndarray]:
    """Decoded uint8 RGB frames of a video file, one at a time."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in c.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def video_flicker(path: str | Path, source: str | Path | None = None) -> dict[str, float]:
    """``cdc``, and with the source given ``warp_error`` (RGB) and ``warp_ab_rms``, of a video file."""
    res = {"cdc": cdc(read_rgb(path))}
    if source is not None:
        w = warp_error(read_rgb(path), read_rgb(source))
        res.update(warp_error=w["rgb"], warp_ab_rms=w["ab_rms"])
    return res


def mean_ab_difference(a: str | Path, b: str | Path) -> dict[str, float]:
    """Mean |a*b* difference| between two colorizations of one clip (CIE units), and their mean chroma."""
    diffs, chroma = [], []
    for fa, fb in zip(read_rgb(a), read_rgb(b)):
        lab_a = cv2.cvtColor(fa.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        lab_b = cv2.cvtColor(fb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        diffs.append(float(np.abs(lab_a[..., 1:] - lab_b[..., 1:]).mean()))
        chroma.append(float(np.hypot(lab_a[..., 1], lab_a[..., 2]).mean()))
    return {"mean_abs_dab": float(np.mean(diffs)), "max_frame_dab": float(np.max(diffs)),
            "mean_chroma": float(np.mean(chroma))}
