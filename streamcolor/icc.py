"""Pixels read as sRGB, whatever ICC profile their file carries (LittleCMS, through Pillow's ImageCms).

Why: streamcolor takes lightness from pixel codes as sRGB, and its output is sRGB.  A gray scan
saved by Photoshop carries its gray working space ("Dot Gain 20%", "Gray Gamma 2.2"), a phone's
photo of a print "Display P3", a scan in colour mode "Adobe RGB (1998)".  Every colour-managed
viewer (browsers, Photoshop, macOS Preview) shows those codes through their profile: a gray 128
under "Gray Gamma 1.8" shows as sRGB 146.  Read as sRGB codes, the colorized output came out
darker or lighter than the original beside it, and an RGB profile kept on the output described
sRGB pixels as Adobe RGB or P3 (more saturated than meant).  Here the pixels are converted to sRGB
as those viewers do (relative colorimetric, black point compensation), once, on decode; the
profile, which no longer describes them, is left off the output.

A profile that maps (almost) every code to itself, as the many "sRGB IEC61966-2.1" profiles do,
leaves the pixels as they are and is kept on the output.  A profile LittleCMS cannot read, or one
for other pixels than the file's (a gray profile on RGB pixels), is ignored (the first with a
warning): the pixels are read as sRGB, as before.  Gray pixels (and gray stored as RGB) go through a table of
their 256 or 65,536 codes; colour pixels through LittleCMS a strip of rows at a time, so memory
stays the image and a strip.  16-bit colour is left as it is (Pillow's LittleCMS has no 16-bit
RGB), with a warning.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms

log = logging.getLogger(__name__)

#: Pixels converted by LittleCMS at once (a strip of rows of a colour image).
_STRIP_PIXELS = 1 << 20
#: Largest change of any code, over a probe of the profile's codes, for which a profile is taken for sRGB.
_SAME = 1
_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION


@dataclass(frozen=True)
class Conversion:
    """How one profile's pixels become sRGB: ``neutral`` maps each 8-bit code of a gray pixel (or
    of R = G = B) to its sRGB code, ``transform`` converts colour pixels (None for a gray profile)."""

    name: str
    neutral: np.ndarray
    transform: ImageCms.ImageCmsTransform | None

    def neutral16(self) -> np.ndarray:
        """``neutral`` for 16-bit codes (interpolated between the 8-bit codes' results)."""
        return _neutral16(self.neutral.tobytes())


class ProfileError(ValueError):
    """A profile that LittleCMS cannot read or use (``said``: whether a warning named it already)."""

    said = False


def to_srgb(pixels: np.ndarray, icc: bytes | None, label: str) -> tuple[np.ndarray, bool]:
    """``pixels`` (gray (H, W) or RGB (H, W, 3), uint8 or uint16, as decoded) as sRGB codes, by
    the file's ICC profile ``icc``.  Returns the pixels (the same array when nothing changed; gray
    stored as RGB comes back as RGB) and whether they changed, i.e. whether ``icc`` still
    describes them (False: keep it on the output; True: leave it off)."""
    if not icc or pixels.size == 0:
        return pixels, False
    space = bytes(icc[16:20]) if len(icc) >= 128 else b""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if (space, channels) not in ((b"GRAY", 1), (b"RGB ", 3)):
        # (a profile for other pixels than the file's, as some programs put an sRGB profile on a gray
        # JPEG: viewers ignore it too; a CMYK or Lab one belongs to pixels Pillow converted itself)
        log.debug("%s: its ICC profile (%s) is not for its pixels; read as sRGB", label, space.decode("latin-1"))
        return pixels, False
    conv = conversion(bytes(icc), space.decode().strip())
    if isinstance(conv, ProfileError):
        # (said once per profile: a camera's broken profile on every photo of a batch is one problem)
        level = logging.DEBUG if conv.said else logging.WARNING
        conv.said = True
        log.log(level, "%s: its ICC profile cannot be used (%s); read as sRGB", label, conv)
        return pixels, False
    if conv is None:
        return pixels, False
    if channels == 3 and not is_gray(pixels):
        if pixels.dtype != np.uint8:
            log.warning("%s: its ICC profile (%s) is not applied to 16-bit colour; read as sRGB", label, conv.name)
            return pixels, False
        return _convert_colour(pixels, conv.transform), True
    table = conv.neutral if pixels.dtype == np.uint8 else conv.neutral16()
    out = np.take(table, pixels if channels == 1 else pixels[..., 0])
    return (out if channels == 1 else np.repeat(out[..., None], 3, axis=2)), True


@functools.lru_cache(maxsize=16)
def conversion(icc: bytes, space: str) -> Conversion | ProfileError | None:
    """The :class:`Conversion` of profile ``icc`` (``space``: "GRAY" or "RGB"), None when it takes
    every code to within one of itself (an sRGB profile), or the :class:`ProfileError` that says
    why it cannot be used.  Made once per profile and kept."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = (ImageCms.getProfileDescription(profile) or "").strip() or "unnamed"
        srgb = ImageCms.createProfile("sRGB")
        ramp = np.arange(256, dtype=np.uint8)
        if space == "GRAY":
            gray = ImageCms.buildTransform(profile, srgb, "L", "RGB", _INTENT, _FLAGS)
            neutral = _apply(gray, Image.fromarray(ramp[None], "L"))[0, :, 1]
            transform, same = None, _near(neutral, ramp)
        else:
            transform = ImageCms.buildTransform(profile, srgb, "RGB", "RGB", _INTENT, _FLAGS)
            neutral = _apply(transform, Image.fromarray(np.repeat(ramp[None, :, None], 3, axis=2), "RGB"))[0, :, 1]
            grid = np.linspace(0, 255, 9).astype(np.uint8)
            probe = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(1, -1, 3)
            same = _near(neutral, ramp) and _near(_apply(transform, Image.fromarray(probe, "RGB")), probe)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        return ProfileError(str(exc) or type(exc).__name__)
    if same:
        return None
    return Conversion(name=name, neutral=np.ascontiguousarray(neutral, dtype=np.uint8), transform=transform)


def _apply(transform: ImageCms.ImageCmsTransform, im: Image.Image) -> np.ndarray:
    return np.asarray(ImageCms.applyTransform(im, transform))


def _near(a: np.ndarray, b: np.ndarray) -> bool:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) <= _SAME


@functools.lru_cache(maxsize=4)
def _neutral16(neutral8: bytes) -> np.ndarray:
    table8 = np.frombuffer(neutral8, np.uint8).astype(np.float64) * 257.0
    codes = np.arange(65536, dtype=np.float64)
    return np.rint(np.interp(codes, np.arange(256) * 257.0, table8)).astype(np.uint16)


def is_gray(rgb: np.ndarray) -> bool:
    """True when all three channels are equal (a gray image stored as RGB)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def _convert_colour(rgb: np.ndarray, transform: ImageCms.ImageCmsTransform) -> np.ndarray:
    """8-bit RGB pixels through ``transform``, a strip of rows at a time, into a new array."""
    height, width = rgb.shape[:2]
    out = np.empty_like(rgb)
    step = max(1, _STRIP_PIXELS // max(1, width))
    for a in range(0, height, step):
        strip = Image.fromarray(np.ascontiguousarray(rgb[a:a + step]), "RGB")
        out[a:a + step] = np.asarray(ImageCms.applyTransform(strip, transform))
    return out
