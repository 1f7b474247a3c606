"""Scene cuts (lightness histograms) and the temporal smoothing of a*b* against chroma flicker.

Both work on the network's small inputs and outputs, so their cost does not grow
with the video's resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamcolor.engines import lab


#: Bins of the lightness histogram compared between frames to find scene cuts.
CUT_BINS = 32


def l_histogram(l_scaled: np.ndarray) -> np.ndarray:
    """Normalised :data:`CUT_BINS`-bin histogram of network-scaled L ([-1, 1])."""
    hist, _ = np.histogram(l_scaled, bins=CUT_BINS, range=(-1.0, 1.0))
    return hist.astype(np.float32) / max(1, l_scaled.size)


def histogram_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Total-variation distance of two normalised histograms: 0 identical, 1 disjoint."""
    return 0.5 * float(np.abs(h1 - h2).sum())


class ChromaStabilizer:
    """Temporal smoothing of low-resolution a*b* against chroma flicker.

    Each frame's predicted a*b* is blended with the previous *output* a*b*,
    warped onto the current frame by dense optical flow (Farneback, on the
    low-res L).  The blend weight is ``strength`` times a per-pixel confidence
    ``exp(-(dL / tolerance)^2)``, where dL is the L* difference between the
    current frame and the warped previous one: where the flow is wrong
    (occlusion, new content, a lighting change) dL is large and the current
    prediction wins, so colour does not smear.  With ``motion=False`` the
    previous colour is not warped (a per-pixel EMA gated by L change; cheaper,
    fine for static shots).  :meth:`reset` at scene cuts.

    Works on the network's output (h, w, 2) before upsampling, so its cost
    does not grow with the video's resolution.
    """

    def __init__(self, strength: float = 0.6, *, motion: bool = True, tolerance: float = 6.0):
        self.strength = float(strength)
        self.motion = motion
        self.tolerance = float(tolerance)  # L* units
        self.reset()

    def reset(self) -> None:
        self._prev_l: np.ndarray | None = None
        self._prev_ab: np.ndarray | None = None
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, l_scaled: np.ndarray, ab: np.ndarray, *, cut: bool = False) -> np.ndarray:
        """l_scaled: (h, w) L in [-1, 1]; ab: (h, w, 2) a*b* (any scaling) -> smoothed (h, w, 2)."""
        l_star = lab.unscale_l(l_scaled)
        ab = np.asarray(ab, dtype=np.float32)
        prev_l, prev_ab = self._prev_l, self._prev_ab
        if cut or prev_l is None or prev_l.shape != l_star.shape or self.strength <= 0:
            self._prev_l, self._prev_ab = l_star, ab
            return ab
        if self.motion:
            map_x, map_y = self._flow_map(l_star, prev_l)
            warped_ab = cv2.remap(prev_ab, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            warped_l = cv2.remap(prev_l, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            h, w = l_star.shape
            inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        else:
            warped_ab, warped_l, inside = prev_ab, prev_l, True
        err = cv2.blur(np.abs(l_star - warped_l), (3, 3))
        weight = self.strength * np.exp(-np.square(err / self.tolerance)) * inside
        out = ab + weight[..., None] * (warped_ab - ab)
        self._prev_l, self._prev_ab = l_star, out
        return out

    def _flow_map(self, cur_l: np.ndarray, prev_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each current pixel was in the previous frame (absolute remap coordinates)."""
        to8 = lambda x: np.clip(x * 2.55, 0, 255).astype(np.uint8)  # noqa: E731
        flow = cv2.calcOpticalFlowFarneback(to8(cur_l), to8(prev_l), None, pyr_scale=0.5, levels=3,
                                            winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        h, w = cur_l.shape
        if self._grid is None or self._grid[0].shape != (h, w):
            gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grid = (gx, gy)
        return self._grid[0] + flow[..., 0], self._grid[1] + flow[..., 1]


def on_grid(l_scaled: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """L at the network input size -> the model's a*b* grid (area average), where the
    stabilizer compares frames: the U-Net predicts at a quarter of the input size."""
    if l_scaled.shape[:2] == tuple(shape):
        return l_scaled
    return cv2.resize(np.ascontiguousarray(l_scaled, dtype=np.float32), (shape[1], shape[0]),
                      interpolation=cv2.INTER_AREA)
