"""The lightness of a decoded frame, and its network input.

A gray 8-bit frame's L* comes from its luma codes through a table (:func:`gray_luma`,
:func:`gray_lut`); anything else goes through RGB, as a photo does.
"""

from __future__ import annotations

import functools
from typing import Any

import av
import cv2
import numpy as np

from streamcolor.colorize import ColorOptions, network_input, pixels_to_l
from streamcolor.engines import lab


#: 8-bit planar YUV formats whose gray frames take the luma shortcut (:func:`gray_luma`).
_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}
#: Largest distance of a chroma code from neutral (128) that still counts as a gray frame: grain
#: and encoder noise in a scanned B&W film, worth well under 0.5 L* of colour, which is discarded anyway.
GRAY_CHROMA_TOLERANCE = 2


def rgb_kwargs(frame) -> dict[str, Any]:
    """How a frame converts to RGB: 8 or 16 bits, and its colour range when the format does not say it."""
    deep = max(c.bits for c in frame.format.components) > 8
    kw: dict[str, Any] = {"format": "rgb48le" if deep else "rgb24"}
    if frame.color_range == 2 and not frame.format.name.startswith("yuvj"):
        kw["src_color_range"] = "JPEG"
    return kw


def plane_array(frame, i: int) -> np.ndarray:
    """Plane ``i`` of an 8-bit planar frame as an (h, w) uint8 view (line padding cut off; writable)."""
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]


def gray_luma(frame) -> np.ndarray | None:
    """The luma plane (a uint8 copy) of an 8-bit YUV frame whose chroma is neutral,
    else None (colour, or another format: those go through RGB).

    A B&W film is stored as YUV with neutral chroma: its lightness is a function
    of the luma code alone (:func:`gray_lut`), which skips the full-resolution
    YUV -> RGB -> L*a*b* conversions, the costliest step of reading a frame.
    """
    if frame.format.name not in _LUMA_FORMATS:
        return None
    lo, hi = 128 - GRAY_CHROMA_TOLERANCE, 128 + GRAY_CHROMA_TOLERANCE
    for i in (1, 2):
        cmin, cmax, _, _ = cv2.minMaxLoc(plane_array(frame, i))
        if cmin < lo or cmax > hi:
            return None
    return np.ascontiguousarray(plane_array(frame, 0))


@functools.lru_cache(maxsize=16)
def gray_lut(pix_fmt: str, src_color_range: str | None = None) -> np.ndarray:
    """L* (float32, 256 entries) of each luma code of a gray ``pix_fmt`` frame, by the
    same conversion as a colour frame (FFmpeg's YUV -> RGB, then :func:`pixels_to_l`),
    so both routes give one pixel the same L*."""
    ramp = av.VideoFrame(256, 2, pix_fmt)
    for i, plane in enumerate(ramp.planes):
        rows = np.full((plane.height, plane.line_size), 128, np.uint8)
        if i == 0:
            rows[:, :256] = np.arange(256, dtype=np.uint8)
        plane.update(rows.tobytes())
    kw: dict[str, Any] = {"format": "rgb24"}
    if src_color_range:
        kw["src_color_range"] = src_color_range
    rgb = ramp.to_ndarray(**kw)[0]
    return np.ascontiguousarray(pixels_to_l(rgb[None])[0], dtype=np.float32)


def frame_network_input(l_full: np.ndarray, l_half: np.ndarray | None, colour: ColorOptions) -> np.ndarray:
    """A frame's network input (h, w, 1), as :func:`~streamcolor.colorize.network_input` makes it
    from full-res L*; shrunk from ``l_half`` (its 2x2 blocks' average, which the 4:2:0 route has
    anyway) when that is at least twice the render size: a quarter of the pixels read (0.8
    against 4.8 ms a 1080p frame), the same areas averaged within OpenCV's area weights at a
    fractional scale (0.2 L* on average at 1080p; nearer 1x the two part more, so not there)."""
    h, w = lab.render_shape(*l_full.shape[:2], colour.render_size, colour.size_multiple)
    if l_half is None or 2 * h > l_half.shape[0] or 2 * w > l_half.shape[1]:
        return network_input(l_full, colour.render_size, colour.size_multiple)
    return lab.scale_l(lab.resize(l_half, h, w))[..., None]
