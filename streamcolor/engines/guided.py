"""Edge-aware upsampling of a coarse a*b* grid onto the lightness that produced it.

The U-Net predicts a*b* at a quarter of its input size (80x64 for a 320x256
render).  Bilinear upsampling of that grid lets colour bleed a few pixels
across every edge of the picture: a red roof tints the sky next to it, a face
tints the wall.  The lightness the network saw is known at full render size,
and colour edges in photos nearly always sit on lightness edges, so the grid
is brought up with He and Sun's *fast guided filter* (He, Sun and Tang,
"Guided Image Filtering", TPAMI 2013; He and Sun, "Fast Guided Filter", 2015):

* on the coarse grid, each window of ``(2 radius + 1)^2`` cells fits a*b* as a
  linear function of L (``ab = A * L + B``; ``eps`` keeps ``A`` small where L
  is nearly flat, so flat areas just take the local mean);
* the coefficients ``A`` and ``B`` are averaged, upsampled bilinearly to the
  render size, and applied to the render-size L.

The colour follows L's edges at render size.  Where L is flat the result is
the grid's local mean (two passes of the window), so a small patch of colour
whose lightness matches its surroundings fades (a patch of 2x2 grid cells
keeps about a seventh of its colour, 6x6 cells about 70%): the price of the
filter, seen as a lower colourfulness in the evaluation.  Each pixel stays
within the range of the grid's colours in its window, so a thin line of other
lightness beside a colour edge cannot overshoot into a colour the model never
predicted there.

Cost: box filters and a few morphology passes on the coarse grid, and a few
bilinear resizes at render size: under a millisecond a frame with reused work
arrays (``benchmarks/bench_guided.py``), so it is done at the render size, not
at the photo's full resolution, where the product's bilinear upsampling takes
over as before.

Which models use it, and with what ``radius`` and ``eps``, is part of the
model bundle (``model.json`` ``"guided_upsampling"``), chosen on the model's
validation split.  OpenCV's own ``cv2.ximgproc.guidedFilter`` (opencv-contrib)
filters at one resolution; the upsampling form needs the coefficients on the
coarse grid, so it is written here from ``cv2.boxFilter`` and ``cv2.resize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np


@dataclass(frozen=True)
class GuidedUpsampling:
    """Parameters of :func:`guided_upsample`: ``radius`` in cells of the model's output
    grid, ``eps`` the regulariser on L in [0, 1] (the filter's variance floor)."""

    radius: int = 2
    eps: float = 1e-3

    def __post_init__(self) -> None:
        if isinstance(self.radius, bool) or not isinstance(self.radius, int) or self.radius < 1:
            raise ValueError(f"guided upsampling radius must be a positive integer, got {self.radius!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"guided upsampling eps must be a positive number, got {self.eps!r}")

    @classmethod
    def from_json(cls, data: Any) -> "GuidedUpsampling | None":
        """``model.json``'s ``"guided_upsampling"`` entry (absent or null: None)."""
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"guided_upsampling must be an object, got {data!r}")
        return cls(radius=data.get("radius", cls.radius), eps=float(data.get("eps", cls.eps)))


#: ``work(name, shape)``: a float32 C-contiguous array of that shape whose contents may be
#: overwritten, e.g. ``streamcolor.colorize.Scratch.take``; where the render-size intermediates go.
WorkArrays = Callable[[str, tuple[int, ...]], np.ndarray]


def _fresh(name: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float32)


def guided_upsample(l_scaled: np.ndarray, ab: np.ndarray, spec: GuidedUpsampling, *,
                    out: np.ndarray | None = None, work: WorkArrays | None = None) -> np.ndarray:
    """a*b* on the model's grid -> a*b* at the size of the lightness it was predicted from.

    l_scaled: (H, W) or (H, W, 1) L in [-1, 1] (the network's input);
    ab: (h, w, 2) a*b* in [-1, 1], h <= H and w <= W.
    Returns float32 (H, W, 2) in [-1, 1], written into ``out`` when given.  A grid
    already at L's size is filtered at that size (the guided filter proper).

    ``work`` hands out the five render-size work arrays (fresh ones by default): on
    this project's VMs the pages of fresh arrays can cost more than the arithmetic (up
    to about 3 ms against 0.7 a 320x240 frame, with the process's memory state), so
    the product passes a thread's reused ones.
    """
    l2 = np.asarray(l_scaled, dtype=np.float32)
    if l2.ndim == 3:
        l2 = l2[..., 0]
    ab = np.asarray(ab, dtype=np.float32)
    if l2.ndim != 2 or ab.ndim != 3 or ab.shape[-1] != 2:
        raise ValueError(f"guided_upsample wants L (H, W) and a*b* (h, w, 2), got {l2.shape} and {ab.shape}")
    big_h, big_w = l2.shape
    h, w = ab.shape[:2]
    if h > big_h or w > big_w:
        raise ValueError(f"a*b* grid {ab.shape[:2]} is larger than its lightness {l2.shape}")
    work = work or _fresh
    guide = np.multiply(l2, 0.5, dtype=np.float32, out=work("guided_l", (big_h, big_w)))
    guide += 0.5  # L in [0, 1]
    coarse = guide if (h, w) == (big_h, big_w) else cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
    ksize = (2 * spec.radius + 1, 2 * spec.radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    # the window means of I, I^2, a*, b*, a* I and b* I in one pass over the (small) grid
    ab0, ab1 = ab[..., 0], ab[..., 1]
    means = box(cv2.merge([coarse, coarse * coarse, ab0, ab1, ab0 * coarse, ab1 * coarse]))
    mean_i, mean_ii, mean_a, mean_b, mean_ai, mean_bi = cv2.split(means)
    denom = mean_ii - mean_i * mean_i + np.float32(spec.eps)
    slope_a = (mean_ai - mean_i * mean_a) / denom
    slope_b = (mean_bi - mean_i * mean_b) / denom
    coef = cv2.split(box(cv2.merge([slope_a, slope_b, mean_a - slope_a * mean_i, mean_b - slope_b * mean_i])))
    # each plane brought up on its own (splitting a render-size 4-channel array costs more), then
    # slope * L + offset a plane at a time (OpenCV's per-plane arithmetic: several times NumPy's
    # broadcast over a trailing axis of 2 at these sizes)
    sa, sb, oa, ob = (cv2.resize(c, (big_w, big_h), dst=work(f"guided_{i}", (big_h, big_w)),
                                 interpolation=cv2.INTER_LINEAR) for i, c in enumerate(coef))
    cv2.add(cv2.multiply(sa, guide, dst=sa), oa, dst=sa)
    cv2.add(cv2.multiply(sb, guide, dst=sb), ob, dst=sb)
    if out is None:
        out = np.empty((big_h, big_w, 2), np.float32)
    elif out.shape != (big_h, big_w, 2) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be float32 C-contiguous {(big_h, big_w, 2)}, got {out.dtype} {out.shape}")
    res = cv2.merge([sa, sb], dst=out)
    if res is not out:  # (OpenCV wrote elsewhere: not expected for a contiguous float32 array of this shape)
        np.copyto(out, res)
    # a linear fit can overshoot on a thin line of other lightness beside a colour edge (a 1-pixel
    # bright line next to a red roof coming out cyan): each pixel is kept within the range of the
    # grid's own colours in its window, brought up like the coefficients
    window = np.ones(ksize, np.uint8)
    for bound, limit in ((cv2.erode, cv2.max), (cv2.dilate, cv2.min)):
        edge = bound(ab, window, borderType=cv2.BORDER_REPLICATE)
        if (h, w) != (big_h, big_w):
            edge = cv2.resize(edge, (big_w, big_h), dst=work("guided_bound", (big_h, big_w, 2)),
                              interpolation=cv2.INTER_LINEAR)
        limit(out, edge, dst=out)
    return np.clip(out, -1.0, 1.0, out=out)


def refine_batch(l_batch: np.ndarray, ab_batch: np.ndarray, spec: GuidedUpsampling | None, *,
                 work: WorkArrays | None = None) -> np.ndarray:
    """:func:`guided_upsample` over a batch: (N, H, W, 1) L and (N, h, w, 2) a*b* ->
    (N, H, W, 2), one new array; with no ``spec`` (a model without it), ``ab_batch`` unchanged."""
    if spec is None:
        return ab_batch
    l_batch = np.asarray(l_batch, dtype=np.float32)
    if l_batch.ndim != 4 or len(l_batch) != len(ab_batch):
        raise ValueError(f"refine wants (N, H, W, 1) L and N a*b* grids, got {l_batch.shape} and {len(ab_batch)}")
    out = np.empty((*l_batch.shape[:3], 2), np.float32)
    for i, (l, ab) in enumerate(zip(l_batch, ab_batch)):
        guided_upsample(l, ab, spec, out=out[i], work=work)
    return out


__all__ = ["GuidedUpsampling", "guided_upsample", "refine_batch"]
