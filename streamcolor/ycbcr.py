"""Compose a gray image straight into Y'CbCr planes: a video frame into the
encoder's 4:2:0 planes, a photo into a JPEG's.

Why: a ``yuv420p`` video keeps its chroma at half resolution, and a*b* come
out of the network at the render size, well under it (the U-Net's quarter-size
grid brought up edge-aware by ``Engine.refine``), so making a full-resolution sRGB
frame (Lab -> RGB with the gamut check on every pixel) only for swscale to
average its chroma down again spends most of a frame's non-codec time on
pixels nobody sees.  Here the colour work runs once per 2x2 block:

    half-res L* (area average)  + a*b* upsampled to half res
        -> compose (the image path's own Lab -> sRGB with the gamut check)
        -> Y'CbCr (limited range, BT.601 or BT.709)       -> Cb, Cr planes as they are
    full res: the frame's luma code -> the output's gray luma code (a table)
        + dY, the luma change the colour brings (half-res Y' minus half-res gray Y'),
          bilinearly upsampled                              -> Y plane

So the full-resolution work is a table lookup, one upsample and one add on
one channel.  The frame's own luma carries all of its detail, exactly as in
the RGB route; only dY, mostly smooth because a*b* are, is interpolated.
On a 1080p photo frame with the network's colour this gives the RGB route's
planes within 3 luma codes (PSNR ~55 dB; 99.99% of pixels within one code)
at about a third of its cost.  Larger differences (up to ~10 codes) sit at
sharp edges in strong colour, where the RGB route reduces chroma pixel by
pixel to fit the gamut and this route per 2x2 block; decoded as a player
shows it, the output is no further from the full-resolution composition
than the RGB route's (``tests/test_yuv420.py``; ``docs/benchmarks.md`` has
the stage times).

Used by :mod:`streamcolor.video` for gray 8-bit frames of even size when the
output is ``yuv420p`` (the default); anything else takes the RGB route.

The same holds for a photo written as JPEG (by a batch job, or ``colorize_image``
into a file), which stores Y'CbCr (full range,
BT.601: JFIF) whatever it is given: :func:`jpeg_planes` makes a gray 8-bit
photo's Y, Cb and Cr at full resolution (its chroma upsampled from the half-res
colour work, the JPEG's 4:4:4 at quality 90 and up) for Pillow to encode as
they are, in place of the full-resolution sRGB render that libjpeg would turn
into Y'CbCr again.  Its full-resolution work runs a strip of rows at a time,
so memory stays the planes and a strip whatever the photo's size.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamcolor.colorize import StripUpsampler, compose, pixels_to_l, thread_scratch

if TYPE_CHECKING:
    from streamcolor.colorize import Prepared

#: Output pixel formats this module writes.
FORMATS = ("yuv420p",)
#: Steps of the table of gray Y' over L* in [0, 100].
_FINE_STEPS = 4096
#: Half-res pixels composed at once (a strip of rows: 32k pixels, 384 KB per 3-channel float intermediate).
_STRIP_PIXELS = 1 << 15
#: The same for a photo (:meth:`Yuv420Composer.full_planes`): no encoder's threads share the cache
#: with it, and each strip's few dozen NumPy and OpenCV calls hold the GIL between them, so fewer,
#: longer strips (64k pixels: the half-res colour of a 1 MP photo in 4, not 8; 4.97 against 5.41 ms
#: alone, timed by hand).
_PHOTO_STRIP_PIXELS = 1 << 16
#: Full-res pixels brought to full resolution at once by :meth:`Yuv420Composer.full_planes` (4 bytes each
#: of float work a strip).
_FULL_STRIP_PIXELS = 1 << 20


def ycbcr_matrix(hd: bool, full_range: bool = False) -> np.ndarray:
    """3 x 4 float32 matrix: sRGB in [0, 1] (and a 1) -> 8-bit Y'CbCr codes, BT.709 when ``hd``
    else BT.601 (what a video output is tagged with, see ``streamcolor.video``); limited range
    (video), or with ``full_range`` the full 0-255 of JFIF (a JPEG)."""
    kr, kb = (0.2126, 0.0722) if hd else (0.299, 0.114)
    kg = 1.0 - kr - kb
    ys, cs, y0 = (255.0, 127.5, 0.0) if full_range else (219.0, 112.0, 16.0)
    return np.array([[ys * kr, ys * kg, ys * kb, y0],
                     [-cs * kr / (1 - kb), -cs * kg / (1 - kb), cs, 128.0],
                     [cs, -cs * kg / (1 - kr), -cs * kb / (1 - kr), 128.0]], dtype=np.float32)


class Yuv420Composer:
    """Builds I420 frames (Y, then Cb, then Cr, as one (H * 3 / 2, W) uint8 array,
    what ``av.VideoFrame.from_ndarray(..., format="yuv420p")`` takes) from a gray
    frame's luma codes and the network's a*b*.

    ``l_table``: L* (float32, 256) of each luma code of the input frames (from
    ``streamcolor.video.lightness.gray_lut``, so L* is the one the RGB route would give);
    ``hd``: BT.709 output, else BT.601; ``saturation``: a*b* gain, as in ``render``;
    ``full_range``: JFIF's full-range codes (a JPEG), else video's limited range.
    """

    def __init__(self, l_table: np.ndarray, *, hd: bool, saturation: float = 1.0, full_range: bool = False):
        self.l_table = np.ascontiguousarray(l_table, dtype=np.float32).reshape(256)
        self.matrix = ycbcr_matrix(hd, full_range)
        self.saturation = saturation
        # the output's Y' of each input code's gray (a* = b* = 0), through the same compose and matrix
        gray = compose(self.l_table[None], np.zeros((1, 256, 2), np.float32))
        self.gray_y = np.ascontiguousarray(cv2.transform(gray, self.matrix[:1]).reshape(256), dtype=np.float32)
        # the gray Y' of L* in [0, 100] in fine steps (0.024 L*: within 0.1 code of the exact curve)
        ramp = np.linspace(0.0, 100.0, _FINE_STEPS + 1, dtype=np.float32)[None]
        gray_fine = cv2.cvtColor(cv2.merge([ramp, np.zeros_like(ramp), np.zeros_like(ramp)]), cv2.COLOR_Lab2RGB)
        self._gray_fine = np.ascontiguousarray(cv2.transform(gray_fine, self.matrix[:1]).reshape(-1), np.float32)
        self._gray_fine_row = self._gray_fine[None]  # (1, _FINE_STEPS + 1): the image cv2.remap looks up

    @staticmethod
    def half_l(l_full: np.ndarray) -> np.ndarray:
        """L* (float32 (H/2, W/2)) of each 2x2 block of a frame's full-res L* (H, W), H and W even:
        the blocks' average (``cv2.resize`` INTER_AREA)."""
        h, w = l_full.shape[:2]
        if h % 2 or w % 2:
            raise ValueError(f"4:2:0 composing needs an even frame size, got {w}x{h}")
        return cv2.resize(l_full, (w // 2, h // 2), interpolation=cv2.INTER_AREA)

    def frame(self, luma: np.ndarray, l_half: np.ndarray, ab_scaled: np.ndarray) -> np.ndarray:
        """The I420 frame (uint8 (H * 3 / 2, W)) of one gray frame: ``luma`` its codes (H, W),
        ``l_half`` its :meth:`half_l` (of ``l_table[luma]``), ``ab_scaled`` the network's a*b* (h, w, 2) in [-1, 1]."""
        height, width = luma.shape
        h2, w2, q = height // 2, width // 2, (height // 2) * (width // 2)
        out = np.empty((height * 3 // 2, width), dtype=np.uint8)
        flat = out.reshape(-1)
        self.write(luma, l_half, ab_scaled, flat[:height * width].reshape(height, width),
                   flat[height * width:height * width + q].reshape(h2, w2), flat[height * width + q:].reshape(h2, w2))
        return out

    def write(self, luma: np.ndarray, l_half: np.ndarray, ab_scaled: np.ndarray,
              y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> None:
        """:meth:`frame`, written into three uint8 planes, (H, W) and twice (H/2, W/2): e.g. an
        ``av.VideoFrame``'s own planes, so that the frame is not copied once more."""
        height, width = luma.shape
        h2, w2 = height // 2, width // 2
        if l_half.shape != (h2, w2):
            raise ValueError(f"half-res L* of shape {l_half.shape} for a {width}x{height} frame")
        if y.shape != (height, width) or cb.shape != (h2, w2) or cr.shape != (h2, w2):
            raise ValueError(f"planes of shapes {y.shape}, {cb.shape}, {cr.shape} for a {width}x{height} frame")
        # the float work arrays are the thread's own, the same memory from frame to frame (fresh
        # multi-megabyte arrays are pages that the kernel maps and zeroes each time: ~9 of ~30 ms a 1080p frame)
        scratch = thread_scratch()
        dy = self._half_colour(l_half, ab_scaled, cb, cr, scratch)
        gray = cv2.LUT(luma, self.gray_y, dst=scratch.take("gray_y", (height, width)))
        delta = cv2.resize(dy, (width, height), dst=scratch.take("dy_full", (height, width)),
                           interpolation=cv2.INTER_LINEAR)
        res = cv2.add(gray, delta, dst=y, dtype=cv2.CV_8U)
        if res is not y:  # (OpenCV wrote elsewhere: not expected for a uint8 plane of this shape)
            np.copyto(y, res)

    def _half_colour(self, l_half: np.ndarray, ab_scaled: np.ndarray, cb: np.ndarray, cr: np.ndarray,
                     scratch, strip_pixels: int = _STRIP_PIXELS) -> np.ndarray:
        """The colour work at half resolution: Cb and Cr written into ``cb`` and ``cr`` (uint8
        (h2, w2)); returns dY (float32 (h2, w2), a scratch array), the luma the colour adds to
        each block's gray."""
        h2, w2 = l_half.shape
        up = StripUpsampler(ab_scaled, h2, w2, self.saturation, scratch=scratch)
        dy = scratch.take("dy_half", (h2, w2))
        # the half-res colour work a strip of rows at a time, so that its float intermediates (12
        # bytes a pixel each) stay in the cache that the encoder's threads share, not the frame's
        step = max(1, strip_pixels // max(1, w2))
        for a in range(0, h2, step):
            b = min(h2, a + step)
            ycc = cv2.transform(compose(l_half[a:b], up.rows(a, b), scratch=scratch), self.matrix)  # float codes
            # dY against the gray Y' of the same half-res L* (not the blocks' mean gray Y', which differs
            # from it at edges, Y' being a curve of L*), so that it is the colour's effect alone
            # (OpenCV throughout, which releases the GIL: NumPy's take, rint and channel copies here held
            # it ~0.8 ms a megapixel photo, time that a batch job's other threads waited)
            rows = (b - a, w2)
            fine = cv2.multiply(l_half[a:b], _FINE_STEPS / 100.0, dst=scratch.take("fine", rows))
            # the gray Y' of each fine step, looked up by remap (nearest: rounded half to even, as np.rint;
            # clamped at the table's ends)
            gray = cv2.remap(self._gray_fine_row, fine, self._zero_map(scratch, rows), cv2.INTER_NEAREST,
                             dst=scratch.take("gray_half", rows), borderMode=cv2.BORDER_REPLICATE)
            cv2.subtract(cv2.extractChannel(ycc, 0, dst=scratch.take("y_half", rows)), gray, dst=dy[a:b])
            codes = cv2.convertScaleAbs(ycc, dst=scratch.take("codes", (*rows, 3), np.uint8))
            cv2.extractChannel(codes, 1, dst=cb[a:b])
            cv2.extractChannel(codes, 2, dst=cr[a:b])
        return dy

    @staticmethod
    def _zero_map(scratch, rows: tuple[int, int]) -> np.ndarray:
        """Zeros (float32 ``rows``): the row coordinate of :meth:`_half_colour`'s lookups."""
        zeros = scratch.take("zero_map", rows)
        zeros.fill(0.0)
        return zeros

    def full_planes(self, luma: np.ndarray, ab_scaled: np.ndarray, *,
                    strip_pixels: int = _FULL_STRIP_PIXELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, Cb and Cr (uint8 (H, W) each) of a gray image of any size, its codes ``luma`` (H, W):
        the colour work at half resolution, then the luma and the chroma brought to full resolution
        a strip of about ``strip_pixels`` at a time (bilinear, as the video's dY).  An odd side
        is worked on with its last row or column repeated, and cut back at the end."""
        height, width = luma.shape
        if height % 2 or width % 2:
            even = cv2.copyMakeBorder(luma, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
            return tuple(p[:height, :width] for p in self.full_planes(even, ab_scaled, strip_pixels=strip_pixels))
        scratch = thread_scratch()
        if height * width <= strip_pixels:  # (L* into a work array: a fresh 4 MB a photo was ~1 ms of page faults)
            l_half = self.half_l(cv2.LUT(luma, self.l_table, dst=scratch.take("l_full", (height, width))))
        else:  # a big photo: its L* halved a strip of whole 2x2 blocks at a time
            l_half = np.empty((height // 2, width // 2), np.float32)
            step = 2 * max(1, strip_pixels // (2 * width))
            for a in range(0, height, step):
                l_half[a // 2:(a + step) // 2] = self.half_l(cv2.LUT(luma[a:a + step], self.l_table))
        h2, w2 = l_half.shape
        cb_half = np.empty((h2, w2), np.uint8)
        cr_half = np.empty((h2, w2), np.uint8)
        dy = self._half_colour(l_half, ab_scaled, cb_half, cr_half, scratch, _PHOTO_STRIP_PIXELS)
        y = np.empty((height, width), np.uint8)
        cb = cv2.resize(cb_half, (width, height), interpolation=cv2.INTER_LINEAR)
        cr = cv2.resize(cr_half, (width, height), interpolation=cv2.INTER_LINEAR)
        up = StripUpsampler(dy, height, width, scratch=scratch, raw=True, name="dy_full")
        step = max(1, strip_pixels // max(1, width))
        for a in range(0, height, step):
            b = min(height, a + step)
            gray = cv2.LUT(luma[a:b], self.gray_y, dst=scratch.take("gray_y", (b - a, width)))
            dst = y[a:b]
            res = cv2.add(gray, up.rows(a, b), dst=dst, dtype=cv2.CV_8U)
            if res is not dst:  # (OpenCV wrote elsewhere: not expected for rows of a uint8 plane)
                np.copyto(dst, res)
        return y, cb, cr


@functools.lru_cache(maxsize=8)
def _cached(l_table: bytes, hd: bool, saturation: float, full_range: bool = False) -> Yuv420Composer:
    return Yuv420Composer(np.frombuffer(l_table, np.float32), hd=hd, saturation=saturation, full_range=full_range)


def composer(l_table: np.ndarray, *, hd: bool, saturation: float = 1.0, full_range: bool = False) -> Yuv420Composer:
    """A :class:`Yuv420Composer`, made once per (table, matrix, saturation) and reused."""
    return _cached(np.ascontiguousarray(l_table, dtype=np.float32).tobytes(), hd, float(saturation), full_range)


def takes_jpeg_planes(prep: "Prepared", fmt: str) -> bool:
    """Whether a prepared image is written as JPEG through :func:`jpeg_planes`: an 8-bit gray
    photo (its codes give L* by a table) at least twice the network's input on each side, so that
    its half-res colour work still holds every detail of the network's colour (a photo nearer the
    render size takes the RGB route: there the half-res chroma would lose some of it, ~0.1 mean
    CIE76 at saturation 1.5); colour, 16-bit and bare-L* sources take the RGB route."""
    net_h, net_w = prep.net_in.shape[:2]
    return (fmt.upper() == "JPEG" and not prep.is_l and prep.dtype == np.uint8 and prep.source.ndim == 2
            and prep.shape[0] >= 2 * net_h and prep.shape[1] >= 2 * net_w and not _bilevel(prep.source))


#: Share of pixels within :data:`_NEAR_EXTREME` codes of black or white above which a photo is a
#: bilevel (1-bit, dithered) scan.
_BILEVEL_SHARE = 0.5
_NEAR_EXTREME = 8


def _bilevel(gray: np.ndarray) -> bool:
    """Whether a gray photo is (almost) black and white pixels only: a 1-bit or dithered scan.  Such
    a photo takes the RGB route, whose gamut fit is per pixel: in 2x2 blocks of black and white the
    half-res colour belongs to neither, and the JPEG came out twice as far from the render (RMSE
    4.4 against 1.8 on a 1-bit dither of the sample photo; a blurred dither or halftone is as close
    either way)."""
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    return float(hist[:_NEAR_EXTREME].sum() + hist[256 - _NEAR_EXTREME:].sum()) > _BILEVEL_SHARE * gray.size


def jpeg_planes(prep: "Prepared", ab_scaled: np.ndarray, *, saturation: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, Cb, Cr (uint8 (H, W) each; JFIF's full-range BT.601) of a gray 8-bit photo
    (:func:`takes_jpeg_planes`) with the network's a*b*: what libjpeg would make of the RGB
    route's sRGB, without it (see the module's docstring)."""
    return composer(_gray_l_table(), hd=False, saturation=saturation, full_range=True).full_planes(
        prep.source, ab_scaled)


@functools.lru_cache(maxsize=1)
def _gray_l_table() -> np.ndarray:
    """L* of each 8-bit gray code, by the image path's own conversion (:func:`pixels_to_l`)."""
    return pixels_to_l(np.arange(256, dtype=np.uint8)[None])[0]
