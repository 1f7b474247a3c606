"""CIE L*a*b* colour core shared by every side of streamcolor.

The network sees the L channel and predicts a*b*, each scaled to [-1, 1]
(method.md): ``L/50 - 1`` and ``ab/128``.  These constants live here because
both ``trainer`` and ``streamcolor`` need them and ``engines`` is the one
package both may import.

Conversions use OpenCV's float32 path (sRGB with D65 white, gamma-correct).
OpenCV approximates the sRGB curve with splines, within 0.2 of the exact CIE
values (``tests/test_lab.py`` checks published reference values), which is
about 0.002 in the network's [-1, 1] scaling: far below what the model resolves.
"""

from __future__ import annotations

import functools
import math
import numbers

import cv2
import numpy as np

#: L* spans [0, 100]; the network sees L / L_SCALE - 1.
L_SCALE: float = 50.0
#: a*, b* span about [-128, 128]; the network sees ab / AB_SCALE.
AB_SCALE: float = 128.0
#: The encoder downsamples three times by 2, so spatial sizes are multiples of this.
SIZE_MULTIPLE: int = 8
#: Largest render size (network input, longer side) accepted anywhere.  The models are trained at
#: 224-320 px and gain nothing far above; a 1024 px image already takes ~0.3 GB of activations on a CPU,
#: and an unchecked value (a typo: -r 100000) would ask for tens of GB before failing.
MAX_RENDER_SIZE: int = 1024


def check_render_size(value: object) -> None:
    """TypeError / ValueError unless ``value`` is None or an int in
    [:data:`SIZE_MULTIPLE`, :data:`MAX_RENDER_SIZE`]: one check for every
    options class, so the API and the CLI refuse alike."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"render_size must be an int, got {type(value).__name__} {value!r}")
    if not SIZE_MULTIPLE <= value <= MAX_RENDER_SIZE:
        raise ValueError(f"render_size must be in [{SIZE_MULTIPLE}, {MAX_RENDER_SIZE}], got {value}")


#: Largest gain on predicted a*b*: at 4 the model's strongest colours already leave the sRGB gamut
#: (and are pulled back in); far beyond it the Lab values overflow and every pixel turns white.
MAX_SATURATION = 4.0


def check_saturation(value: object) -> None:
    """TypeError / ValueError unless ``value`` is None or a number from 0 to
    :data:`MAX_SATURATION`: one check for every options class and verb (NaN,
    infinity or a gain like 1e39 would paint every pixel white)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"saturation must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= MAX_SATURATION):
        raise ValueError(f"saturation must be a number from 0 to {MAX_SATURATION:g}, got {value}")


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB -> CIE L*a*b* (D65).

    rgb: float32 in [0, 1] or uint8, shape (..., H, W, 3).
    Returns float32 (..., H, W, 3): L in [0, 100], a*, b* in about [-128, 127].
    """
    rgb = _as_unit_float(rgb)
    return _per_image(rgb, cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) -> sRGB float32 in [0, 1], clipped; shape (..., H, W, 3)."""
    rgb = _per_image(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def rgb_to_l(rgb: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """L* channel (float32, [0, 100]) of sRGB input; shape (..., H, W); copied into ``out`` when given."""
    l_star = rgb_to_lab(rgb)[..., 0]
    if out is None:
        return l_star
    out[...] = l_star
    return out


def gray_to_l(gray: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """L* (float32 (..., H, W), [0, 100]) of gray pixels (float in [0, 1], uint8 or uint16);
    written into ``out`` (float32, the shape of ``gray``) when given.

    Goes through the same OpenCV path as colour input, so a gray pixel and the
    RGB pixel (g, g, g) get the same L* (and a gray image colorized and
    measured again keeps its lightness).
    """
    gray = np.asarray(gray)
    # written straight into ``out`` when it is what the step would make (float32, rows contiguous)
    direct = out if out is not None and out.dtype == np.float32 and out.flags.c_contiguous else None
    if gray.dtype in (np.uint8, np.uint16):  # a table of every code: same values, no per-pixel colour conversion
        table = _gray_table(gray.dtype.itemsize)
        if gray.dtype == np.uint8 and gray.ndim == 2:
            res = cv2.LUT(gray, table, dst=direct)
        else:
            res = np.take(table, gray, out=direct)
    else:
        res = _gray_to_l(_as_unit_float(gray))
    if out is not None and res is not out:
        out[...] = res
        return out
    return res


def _gray_to_l(g: np.ndarray) -> np.ndarray:
    return rgb_to_l(np.repeat(g[..., None], 3, axis=-1))


@functools.lru_cache(maxsize=2)
def _gray_table(itemsize: int) -> np.ndarray:
    """L* of every uint8 (itemsize 1) or uint16 (2) gray code, by the per-pixel path."""
    dtype = np.uint8 if itemsize == 1 else np.uint16
    codes = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)[None]
    return np.ascontiguousarray(_gray_to_l(_as_unit_float(codes))[0], dtype=np.float32)


def scale_l(l: np.ndarray) -> np.ndarray:
    """L* in [0, 100] -> network input in [-1, 1] (float32)."""
    return (np.asarray(l, dtype=np.float32) / L_SCALE - 1.0).astype(np.float32)


def unscale_l(l_scaled: np.ndarray) -> np.ndarray:
    """Network-scaled L in [-1, 1] -> L* in [0, 100]."""
    return ((np.asarray(l_scaled, dtype=np.float32) + 1.0) * L_SCALE).astype(np.float32)


def scale_ab(ab: np.ndarray) -> np.ndarray:
    """a*b* in about [-128, 128] -> network target in [-1, 1] (float32)."""
    return (np.asarray(ab, dtype=np.float32) / AB_SCALE).astype(np.float32)


def unscale_ab(ab_scaled: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1] -> a*b* in [-128, 128]."""
    return (np.asarray(ab_scaled, dtype=np.float32) * AB_SCALE).astype(np.float32)


def round_to_multiple(value: float, multiple: int = SIZE_MULTIPLE) -> int:
    """Nearest positive multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, int(round(value / multiple)) * multiple)


def render_shape(height: int, width: int, render_size: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """Network input (h, w) for an image of (height, width).

    The longer side becomes ``render_size`` and the aspect ratio is kept, both
    sides rounded to multiples of ``multiple`` (the encoder's total stride:
    8 for the seed model, 32 for the U-Net).  The network is fully
    convolutional, so no padding is needed; the rounding changes the aspect
    by a few percent at most, which the a*b* upsampling to the full-resolution
    image undoes.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = render_size / max(height, width)
    return round_to_multiple(height * scale, multiple), round_to_multiple(width * scale, multiple)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) float32 image with area averaging when
    shrinking (no aliasing) and bicubic when enlarging."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    interp = cv2.INTER_AREA if height * width < h * w else cv2.INTER_CUBIC
    out = cv2.resize(image, (width, height), interpolation=interp)
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def letterbox(l_scaled: np.ndarray, size: int) -> np.ndarray:
    """Fit a scaled L image (H, W) into a size x size square, aspect kept.

    The extractor needs a fixed square input; method.md keeps the aspect ratio
    by padding.  Padding is 0 in the [-1, 1] scaling, i.e. mid gray (L* = 50).
    Returns float32 (size, size).
    """
    h, w = l_scaled.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    small = resize(np.asarray(l_scaled, dtype=np.float32), nh, nw)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003) colourfulness M of one sRGB image.

    rgb: uint8 or float in [0, 1], (H, W, 3).  Computed on 0..255 values.
    """
    x = _as_unit_float(rgb).astype(np.float64) * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def _as_unit_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0
    return np.ascontiguousarray(x, dtype=np.float32)


def _per_image(x: np.ndarray, code: int) -> np.ndarray:
    if x.ndim == 3:
        return cv2.cvtColor(x, code)
    if x.ndim < 3:
        raise ValueError(f"expected (..., H, W, 3), got shape {x.shape}")
    flat = x.reshape((-1,) + x.shape[-3:])
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        out[i] = cv2.cvtColor(flat[i], code)
    return out.reshape(x.shape)
