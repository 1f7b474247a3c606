"""The array-level core and the one per-item path.

Data flow (one way), the same for every image whoever asks (``colorize_image``,
folders and archives, the Ray actors, the Ray Data job)::

    pixels -> L* (full res) -> network input at the render size       prepare()
           -> engine, a batch of one render shape at a time           ShapeBatcher, predict()
           -> a*b* upsampled onto the full-res L*, composed, dtype    render(), render_prepared()
           -> encoded / written                                       image_io; streamcolor.items for jobs

Memory: a prepared image keeps only its decoded pixels (1 to 6 bytes a
pixel); the full-resolution L*, a*b* and float RGB are made a strip of rows
at a time (:data:`STRIP_PIXELS`), so an image's working memory is its pixels,
its output and a few strips, not ~60 bytes a pixel of float images.

The output therefore has exactly the input's size and lightness; only colour
comes from the network, so render size trades speed for colour detail, never
for sharpness (like DeOldify's render_factor).  Video frames take the same
steps (``network_input``, ``engine.predict``, ``render``) in their own order.

The model's recommended render size and saturation are applied in one place,
:meth:`ColorOptions.for_engine`, for the API and the CLI alike.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import numbers
from pathlib import Path
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

import cv2
import numpy as np
from PIL import Image

from streamcolor.engines import lab
from streamcolor.engines.lab import check_saturation
from streamcolor import image_io, memory, tempfiles
from streamcolor.errors import InputError, refuse_empty_path

if TYPE_CHECKING:
    from streamcolor.engines import Engine, ModelInfo

log = logging.getLogger(__name__)

#: Default network input size (longer side, pixels).
DEFAULT_RENDER_SIZE = 256

#: Chroma halvings tried on out-of-gamut colours before falling back to gray.
_GAMUT_STEPS = 5
#: RGB overshoot tolerated as rounding (a tenth of an 8-bit level).
_GAMUT_EPS = 4e-4
#: L* drift accepted from the colour conversion itself; 8-bit output rounding adds at most ~0.3.
_L_TOLERANCE = 0.5
#: Pixels converted at a time (a strip of whole rows) when L* is computed and
#: when the full-resolution output is composed: bounds the float working
#: memory to ~60 MB whatever the image size.
STRIP_PIXELS = 1 << 20

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


@dataclass(frozen=True)
class ColorOptions:
    """How colour is produced.  Override fields with ``dataclasses.replace``.

    ``None`` fields take the model's own value: :meth:`for_engine` fills them
    in, and every public function calls it, so ``colorize_image(x)`` and the
    CLI colorize alike."""

    render_size: int | None = None  # longer side fed to the network (rounded to size_multiple); None: the model's
    saturation: float | None = None  # gain on predicted a*b* (MSE training greys colours; >1 counters it); None: the model's
    size_multiple: int | None = None  # input sides' multiple, of 8 (8 seed, 32 U-Net; an engine pads to its own); None: the engine's
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS  # decompression-bomb guard for image files and arrays
    quality: int = 95  # JPEG/WebP quality of written files
    memory_budget: int = memory.DEFAULT_MEMORY_BUDGET  # bytes of images in flight at once in jobs (one item may exceed it)

    def __post_init__(self) -> None:
        lab.check_render_size(self.render_size)
        check_saturation(self.saturation)
        for name in ("size_multiple", "max_pixels", "quality", "memory_budget"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if self.max_pixels < 1 or self.memory_budget < 1:
            raise ValueError("max_pixels and memory_budget must be at least 1")
        if self.size_multiple is not None and (self.size_multiple < 8 or self.size_multiple % 8):
            # (every model takes sides in multiples of 8; an engine pads those of another multiple it needs)
            raise ValueError(f"size_multiple must be a multiple of 8 (8, 16, 32...), got {self.size_multiple}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1-100 (JPEG/WebP), got {self.quality}")

    @property
    def resolved(self) -> bool:
        """Whether no field is left to the model (what the per-item steps need)."""
        return None not in (self.render_size, self.saturation, self.size_multiple)

    def for_engine(self, engine: "Engine") -> "ColorOptions":
        """These options with every None taken from ``engine``'s model (:meth:`for_model`)."""
        return self.for_model(engine.info)

    def for_model(self, info: "ModelInfo") -> "ColorOptions":
        """These options with every None taken from the model: ``model.json``
        ``render_size`` (else :data:`DEFAULT_RENDER_SIZE`) and ``saturation`` (else 1),
        and its ``size_multiple``.  The one place the model's recommendations are
        applied (also where no engine is loaded: a Ray driver)."""
        meta = info.meta
        resolved = dataclasses.replace(
            self,
            render_size=self.render_size or int(meta.get("render_size", DEFAULT_RENDER_SIZE)),
            saturation=float(meta.get("saturation", 1.0)) if self.saturation is None else self.saturation,
            size_multiple=self.size_multiple or info.size_multiple,
        )
        if resolved.render_size % resolved.size_multiple:
            _say_rounded(resolved.render_size, resolved.size_multiple, info.name)
        return resolved


@functools.lru_cache(maxsize=16)
def _say_rounded(render_size: int, multiple: int, model: str) -> None:
    """Say once per process that a render size is not what the network runs at: its sides are
    rounded to the model's multiple (``-r 8`` runs the U-Net at 32, ``-r 300`` at 288 or 320)."""
    runs_at = lab.round_to_multiple(render_size, multiple)
    log.log(logging.WARNING if render_size < multiple else logging.INFO,  # (below it: a size far from the one asked)
            "render size %d is not a multiple of %d, which model %s takes: the longer side runs at %d",
            render_size, multiple, model, runs_at)


def engine_for(engine: "Engine | str | os.PathLike | None") -> "Engine":
    """The engine a public function runs: ``engine`` itself, or for None the
    shared default model, or for a model name / bundle folder that model
    (loaded once per process, see :func:`default_engine`).  TypeError for
    anything else, so a wrong argument is named, not an AttributeError later."""
    from streamcolor.engines import Engine

    if engine is None:
        return default_engine()
    if isinstance(engine, Engine):
        return engine
    if isinstance(engine, (str, os.PathLike)):
        return default_engine(os.fspath(engine))
    raise TypeError(f"engine must be an Engine (streamcolor.load_engine), a model name or None, "
                    f"got {type(engine).__name__}")


def default_engine(model: str = "default", backend: str = "auto") -> "Engine":
    """The shared engine used when a call passes none: loaded once per process
    (building an ONNX Runtime session costs far more than one image), also when the first calls
    come from several threads at once: they wait for the one load (each loading its own would
    hold as many sessions in memory)."""
    with _DEFAULT_ENGINE_LOCK:
        return _default_engine(model, backend)


_DEFAULT_ENGINE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _default_engine(model: str, backend: str) -> "Engine":
    from streamcolor.engines import load_engine

    return load_engine(model, backend)


default_engine.cache_clear = _default_engine.cache_clear  # type: ignore[attr-defined]  # (as lru_cache had it)


def model_options(engine: "Engine", *, render_size: int | None = None, saturation: float | None = None,
                  **fields) -> ColorOptions:
    """``ColorOptions(render_size=..., saturation=..., **fields).for_engine(engine)``:
    the model's recommendations where the caller gives no value."""
    return ColorOptions(render_size=render_size, saturation=saturation, **fields).for_engine(engine)


def pixels_to_l(pixels: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """L* (float32 (H, W), [0, 100]) of gray (H, W) or RGB (H, W, 3) pixels,
    uint8, uint16 or float in [0, 1]; written into ``out`` (float32 (H, W)) when given.

    Converted a strip of rows at a time into the result, so the float RGB and
    Lab intermediates (28 bytes a pixel) never exist for the whole image."""
    if pixels.ndim == 2:
        convert = lab.gray_to_l
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        convert = lab.rgb_to_l
    else:
        raise InputError(f"expected a (H, W) gray or (H, W, 3) RGB image, got shape {pixels.shape}")
    height, width = pixels.shape[:2]
    if out is None:
        out = np.empty((height, width), dtype=np.float32)
    elif out.shape != (height, width) or out.dtype != np.float32:
        raise ValueError(f"out of shape {out.shape} and type {out.dtype} for L* of shape {(height, width)}")
    step = max(1, STRIP_PIXELS // max(1, width))
    for start in range(0, height, step):
        convert(pixels[start:start + step], out=out[start:start + step])
    return out


def network_input(l_full: np.ndarray, render_size: int, multiple: int = lab.SIZE_MULTIPLE) -> np.ndarray:
    """Full-res L* (H, W) -> network input (h, w, 1) in [-1, 1] at the render size,
    sides rounded to ``multiple`` (the model's; see ``ColorOptions.size_multiple``)."""
    h, w = lab.render_shape(*l_full.shape[:2], render_size, multiple)
    return lab.scale_l(lab.resize(l_full, h, w))[..., None]


def upsample_ab(ab_scaled: np.ndarray, height: int, width: int, saturation: float = 1.0) -> np.ndarray:
    """Network a*b* (h, w, 2) in [-1, 1] -> a*b* (height, width, 2) in Lab units.

    Bilinear: chroma varies smoothly, and cubic overshoot would add halos.
    This is the whole image at once (8 bytes a pixel); :func:`render` goes
    strip by strip through :class:`StripUpsampler` instead."""
    return StripUpsampler(ab_scaled, height, width, saturation).rows(0, height)


#: Outputs up to this many pixels get their a*b* upsampled whole (8 bytes a pixel: 32 MB at most);
#: larger ones strip by strip, so that memory stays bounded for any image.
WHOLE_UPSAMPLE_PIXELS = 1 << 22


class StripUpsampler:
    """Bilinear a*b* upsampling onto (height, width), handed out in row strips,
    so that the full-resolution a*b* never exists at once.

    The horizontal pass is OpenCV's (``cv2.resize`` INTER_LINEAR, to the full
    width but only the a*b*'s own rows: the render size's, a few hundred at most); the vertical pass uses the same
    sample positions and border rule as ``cv2.resize`` (pixel centres, edge
    rows clamped), so the result equals a full ``cv2.resize`` within float
    rounding (an 8-bit output within one level).  ``scratch``: where the whole-image
    upsample is written (then valid until that Scratch's next upsample)."""

    def __init__(self, ab_scaled: np.ndarray, height: int, width: int, saturation: float = 1.0, *,
                 whole_pixels: int = WHOLE_UPSAMPLE_PIXELS, scratch: Scratch | None = None, raw: bool = False,
                 name: str = "ab_up"):
        # raw: ``ab_scaled`` is any float32 (h, w) or (h, w, c) array, upsampled as it is (no unscaling,
        # no saturation); ``name``: the scratch array the whole-image upsample is written into
        if raw:
            ab = np.asarray(ab_scaled, dtype=np.float32)
        else:
            ab = lab.unscale_ab(ab_scaled)
            if saturation != 1.0:
                ab *= saturation
        h, w = ab.shape[:2]
        self.height = height
        if height * width <= whole_pixels and (h, w) != (height, width):
            # small enough to hold whole (a video frame, a photo of a few Mpx): one OpenCV call,
            # ~10x faster than the strip-wise vertical pass below, same values within float rounding
            dst = None if scratch is None else scratch.take(name, (height, width, *ab.shape[2:]))
            self._rows = cv2.resize(ab, (width, height), dst=dst, interpolation=cv2.INTER_LINEAR)
            self._same = True
            return
        self._rows = ab if w == width else cv2.resize(ab, (width, h), interpolation=cv2.INTER_LINEAR)
        self._same = h == height
        if not self._same:
            fy = ((np.arange(height, dtype=np.float64) + 0.5) * (h / height) - 0.5).astype(np.float32)
            sy = np.floor(fy)
            fy -= sy
            sy = sy.astype(np.intp)
            low, high = sy < 0, sy >= h - 1
            fy[low | high] = 0.0
            sy[low] = 0
            sy[high] = h - 1
            self._y0, self._y1, self._fy = sy, np.minimum(sy + 1, h - 1), fy

    def rows(self, start: int, stop: int) -> np.ndarray:
        """a*b* float32 (stop - start, width, 2) of output rows [start, stop)."""
        if self._same:
            return self._rows[start:stop]
        f = self._fy[start:stop].reshape(-1, *([1] * (self._rows.ndim - 1)))
        out = self._rows[self._y0[start:stop]] * (1.0 - f)
        out += self._rows[self._y1[start:stop]] * f
        return out


#: Bytes of work arrays that a thread which keeps them (:func:`keep_work_arrays`) keeps in all: a 1 MP
#: photo's or a 1080p frame's fit (about 45 and 25 MB); beyond it arrays are made fresh for each use.
SCRATCH_KEEP_BYTES = 64 << 20


class Scratch:
    """Float work arrays reused from one strip of rows, frame or image to the next.

    Why: each fresh multi-megabyte NumPy/OpenCV result is new memory that the
    kernel maps and zeroes page by page (on this project's 2-core VM, 6-9 ms of
    a 1 MP photo's or a 1080p frame's ~25 ms of composing); arrays of one size
    written into the same memory again cost none of that.  One per call, or
    one per thread for a job's threads (:func:`thread_scratch`): the arrays
    are handed out, not locked.

    ``keep_bytes``: the most bytes kept in all; an array that would take the
    total over it is made fresh for that use and not kept."""

    def __init__(self, keep_bytes: int | None = None) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self.keep_bytes = keep_bytes

    def take(self, name: str, shape: tuple[int, ...], dtype: np.dtype = np.float32) -> np.ndarray:
        """A C-contiguous array ``shape`` of ``dtype`` (contents undefined), the same memory on every call
        that fits in it (the previous array of that name is overwritten: one user at a time)."""
        dtype = np.dtype(dtype)
        n = math.prod(int(d) for d in shape)  # (np.prod: ~3 us of Python holding the GIL, dozens of calls a photo)
        flat = self._arrays.get(name)
        if flat is None or flat.dtype != dtype or flat.size < n:
            old = 0 if flat is None else flat.nbytes
            if self.keep_bytes is not None and self.nbytes - old + n * dtype.itemsize > self.keep_bytes:
                return np.empty(shape, dtype=dtype)  # over what this Scratch may keep: fresh, not kept
            self._arrays.pop(name, None)  # (the old one freed before the new one is made)
            flat = self._arrays[name] = np.empty(n, dtype=dtype)
        return flat[:n].reshape(shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays kept."""
        return sum(a.nbytes for a in self._arrays.values())


_THREAD = threading.local()


def keep_work_arrays() -> None:
    """Make the calling thread keep its work arrays from one image or frame to
    the next (:data:`SCRATCH_KEEP_BYTES` at most), until the thread ends.

    For the threads of one job, which end with it: the batch pipeline's
    workers and the video pipeline's stages (a ``ThreadPoolExecutor``
    ``initializer``).  Other threads (a server's, a caller's) keep nothing
    between calls, so an idle process holds no work arrays."""
    if getattr(_THREAD, "scratch", None) is None:
        _THREAD.scratch = Scratch(SCRATCH_KEEP_BYTES)


def thread_scratch() -> Scratch:
    """The work arrays of the calling thread when it keeps them (:func:`keep_work_arrays`), else a
    new :class:`Scratch` for the caller alone.  Each name belongs to one step of the per-item
    path, which runs start to end on one thread, so the steps never hand out each other's arrays."""
    scratch = getattr(_THREAD, "scratch", None)
    return scratch if scratch is not None else Scratch()


def compose(l_full: np.ndarray, ab_full: np.ndarray, *, scratch: Scratch | None = None) -> np.ndarray:
    """Recombine L* (H, W) with a*b* (H, W, 2) -> sRGB float32 (H, W, 3) in [0, 1].

    A colour outside the sRGB gamut cannot keep its lightness (OpenCV clips
    it, e.g. any chroma on pure black turns into a lighter red), so such
    pixels are detected by converting back and comparing L*, and their chroma
    is halved until they fit, ending at gray, which always fits.  The output
    thus keeps the input's L* within rounding.

    ``scratch``: work arrays to reuse (see :class:`Scratch`); the result then
    lives in it, valid until its next use."""
    # cv2.merge, cv2.inRange and cv2.convertScaleAbs below: one SIMD pass each where the NumPy
    # equivalents on interleaved channels took 3-10x longer (see docs/benchmarks.md, stage table)
    scratch = scratch or Scratch()
    l_full = np.asarray(l_full, dtype=np.float32)
    shape = (*l_full.shape[:2], 3)
    lab_img = cv2.merge([l_full, np.asarray(ab_full, dtype=np.float32)], dst=scratch.take("lab", shape))
    rgb = cv2.cvtColor(lab_img, cv2.COLOR_Lab2RGB, dst=scratch.take("rgb", shape))
    idx = _off_lightness(rgb, l_full, scratch)
    if idx.size:
        _fit_gamut(lab_img.reshape(-1, 3), rgb.reshape(-1, 3), idx)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def _fit_gamut(flat_lab: np.ndarray, flat_rgb: np.ndarray, idx: np.ndarray) -> None:
    """Halve the chroma of the pixels ``idx`` (flat indices) until each keeps
    its L*, ending at gray, and write their sRGB into ``flat_rgb``.

    The pixels are gathered once into a compact copy that shrinks as they
    fit, and each written once: indexing the whole image at every halving
    cost more than the conversions on a saturated photo."""
    lab_off = np.take(flat_lab, idx, axis=0)
    for step in range(_GAMUT_STEPS + 1):
        lab_off[:, 1:] *= 0.5 if step < _GAMUT_STEPS else 0.0
        fixed = cv2.cvtColor(lab_off[None], cv2.COLOR_Lab2RGB)[0]
        bad = _off_lightness(fixed[None], lab_off[:, 0]) if step < _GAMUT_STEPS else idx[:0]
        if bad.size == idx.size:
            continue
        fits = np.ones(idx.size, dtype=bool)
        fits[bad] = False
        flat_rgb[idx[fits]] = fixed[fits]
        if not bad.size:
            return
        idx, lab_off = idx[bad], lab_off[bad]


def _off_lightness(rgb: np.ndarray, l_target: np.ndarray, scratch: Scratch | None = None) -> np.ndarray:
    """Flat indices of the pixels whose RGB is outside [0, 1] or whose L*
    drifted from the target.

    Only a pixel on or beyond the gamut's edge (a channel at 0 or 1 within
    rounding: where OpenCV clips) can have lost its lightness; one strictly
    inside converts back within the conversion's own error.  So the RGB -> L*
    round trip, the costliest step of composing, runs on the edge pixels alone
    (a few percent of a typical frame)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    e = _GAMUT_EPS
    mask = None if scratch is None else scratch.take("inside", rgb.shape[:-1], np.uint8)
    edge = np.flatnonzero(cv2.inRange(rgb, (e, e, e), (1.0 - e, 1.0 - e, 1.0 - e), dst=mask) == 0)
    if not edge.size:
        return edge
    # np.take and cv2.inRange, not fancy indexing and min/max over the 3-long axis: on a photo
    # with blown highlights (a fifth of its pixels on the edge) those took 3x as long as the rest
    px = np.take(rgb.reshape(-1, 3), edge, axis=0)[None]  # pixels outside [0, 1] are on the edge too
    outside = cv2.inRange(px, (-e, -e, -e), (1.0 + e, 1.0 + e, 1.0 + e))[0] == 0
    l_back = cv2.cvtColor(np.clip(px, 0.0, 1.0, out=px), cv2.COLOR_RGB2Lab)[0, :, 0]
    l_edge = np.take(np.asarray(l_target, dtype=np.float32).reshape(-1), edge)
    return edge[outside | (np.abs(l_back - l_edge) > _L_TOLERANCE)]


def to_dtype(rgb01: np.ndarray, dtype: np.dtype, *, out: np.ndarray | None = None) -> np.ndarray:
    """float [0, 1] -> uint8 / uint16 with rounding (or float32 unchanged);
    written into ``out`` when given (its shape and ``dtype``)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8 and rgb01.dtype == np.float32 and rgb01.ndim == 3 and rgb01.shape[2] in (1, 3, 4):
        # rounds to nearest and saturates, in one pass (its absolute value is moot on [0, 1])
        res = cv2.convertScaleAbs(rgb01, dst=out, alpha=255.0)
    elif dtype == np.uint8:
        res = (rgb01 * 255.0 + 0.5).astype(np.uint8)
    elif dtype == np.uint16:
        res = (rgb01 * 65535.0 + 0.5).astype(np.uint16)
    else:  # float: into ``out`` by the copy below, else a copy of its own
        res = rgb01 if out is not None else rgb01.astype(dtype)
    if out is None:
        return res
    if res is not out:
        out[...] = res
    return out


def render(l_full: np.ndarray, ab_scaled: np.ndarray, *, saturation: float = 1.0,
           dtype: np.dtype = np.float32, strip_pixels: int | None = None) -> np.ndarray:
    """Network a*b* (h, w, 2) in [-1, 1] upsampled onto full-res L* (H, W) and
    composed: sRGB (H, W, 3) as ``dtype`` (uint8/uint16 rounded, float in [0, 1])."""
    return render_rows(l_full.shape[:2], lambda a, b: l_full[a:b], ab_scaled, saturation=saturation, dtype=dtype,
                       strip_pixels=strip_pixels)


def render_rows(shape: tuple[int, int], l_rows: Callable[[int, int], np.ndarray], ab_scaled: np.ndarray, *,
                saturation: float = 1.0, dtype: np.dtype = np.float32,
                strip_pixels: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`render` for an image whose L* is produced a strip of rows at a
    time by ``l_rows(start, stop)``.

    Upsampling, composing and the dtype conversion run on strips of about
    ``strip_pixels`` pixels (:data:`STRIP_PIXELS`), each written into the
    output through the calling thread's work arrays (:func:`thread_scratch`),
    so the working memory is the output plus a few strips, whatever
    the image's size (the whole-image float path took ~60 bytes a pixel).
    ``l_rows`` may write into ``thread_scratch().take("l_rows", ...)``.  ``out``: an array
    (height, width, 3) of ``dtype`` to write the result into, else a new one.
    Every step is per pixel; the strip size changes only which pixels
    OpenCV's vector code leaves to its scalar tail, a float rounding apart
    (an 8-bit output within one level on a few pixels, tests/test_memory.py)."""
    height, width = shape
    dtype = np.dtype(dtype)
    scratch = thread_scratch()
    up = StripUpsampler(ab_scaled, height, width, saturation, scratch=scratch)
    if out is None:
        out = np.empty((height, width, 3), dtype=dtype)
    elif out.shape != (height, width, 3) or out.dtype != dtype:
        raise ValueError(f"out of shape {out.shape} and type {out.dtype} for a {width}x{height} {dtype} render")
    step = max(1, (strip_pixels or STRIP_PIXELS) // max(1, width))
    for start in range(0, height, step):
        stop = min(height, start + step)
        l_strip = np.ascontiguousarray(l_rows(start, stop), dtype=np.float32)
        to_dtype(compose(l_strip, up.rows(start, stop), scratch=scratch), dtype, out=out[start:stop])
    return out


# --------------------------------------------------------------------------- the per-item path


@dataclass
class Prepared:
    """One image decoded and ready for the engine.

    ``source``: the full-resolution image as decoded, gray (H, W) or RGB
    (H, W, 3) uint8/uint16 (1 to 6 bytes a pixel), or float32 L* (H, W) in
    [0, 100] when ``is_l``.  L* is derived from it a strip at a time
    (:meth:`l_rows`) rather than kept whole (4 bytes a pixel more).
    ``net_in``: float32 (h, w, 1), L in [-1, 1] at the render shape.
    ``dtype``: the source pixels' (uint8, uint16, or float32 for bare L*), kept for the output.
    ``item``: the caller's handle for it (an archive item, a row), passed through.
    """

    source: np.ndarray
    net_in: np.ndarray
    dtype: np.dtype
    alpha: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # ICC profile, EXIF, DPI to carry over
    format: str | None = None  # the source's format name, e.g. "JPEG"
    item: Any = None
    is_l: bool = False  # ``source`` is L* itself

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the full-resolution image."""
        return self.source.shape[0], self.source.shape[1]

    def l_rows(self, start: int, stop: int, *, out: np.ndarray | None = None) -> np.ndarray:
        """L* float32 (stop - start, W) of rows [start, stop) (written into ``out`` when given and
        derived from pixels; bare L* is handed out as it is)."""
        rows = self.source[start:stop]
        return rows if self.is_l else pixels_to_l(rows, out=out)

    @property
    def l_full(self) -> np.ndarray:
        """The whole image's L* float32 (H, W) (4 bytes a pixel: the render path does not need it)."""
        return self.source if self.is_l else pixels_to_l(self.source)


def prepare(decoded: image_io.Decoded, options: ColorOptions, item: Any = None) -> Prepared:
    """The network input of one decoded image (``options`` resolved, see
    :meth:`ColorOptions.for_engine`); the decoded pixels are kept as they
    are, and L* is made from them a strip at a time."""
    _check_resolved(options)
    # 4 bytes a pixel, only until the network input is made: the thread's work array when it is not huge
    l_full = pixels_to_l(decoded.pixels, out=thread_scratch().take("l_prepare", decoded.pixels.shape[:2]))
    net_in = network_input(l_full, options.render_size, options.size_multiple)
    del l_full
    return Prepared(decoded.pixels, net_in, decoded.pixels.dtype, item=item, alpha=decoded.alpha,
                    info=decoded.info, format=decoded.format)


def prepare_l(l_full: np.ndarray, options: ColorOptions, dtype: np.dtype = np.float32, **fields) -> Prepared:
    """A :class:`Prepared` from full-res L* (H, W) in [0, 100]."""
    _check_resolved(options)
    return Prepared(l_full, network_input(l_full, options.render_size, options.size_multiple), np.dtype(dtype),
                    is_l=True, **fields)


def _check_resolved(options: ColorOptions) -> None:
    if not options.resolved:
        raise ValueError("options leave values to the model: pass options.for_engine(engine)")


def render_prepared(prep: Prepared, ab_scaled: np.ndarray, *, saturation: float = 1.0,
                    strip_pixels: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`render` for a prepared image, L* made strip by strip from its
    source: sRGB (H, W, 3) in the source's dtype (written into ``out`` when given)."""
    width = prep.shape[1]
    scratch = thread_scratch()

    def l_rows(start: int, stop: int) -> np.ndarray:
        return prep.l_rows(start, stop, out=None if prep.is_l else scratch.take("l_rows", (stop - start, width)))

    return render_rows(prep.shape, l_rows, ab_scaled, saturation=saturation, dtype=prep.dtype,
                       strip_pixels=strip_pixels, out=out)


class ShapeBatcher:
    """Prepared images grouped by render shape and handed out in batches of at
    most ``batch_size`` of one shape, so each engine call gets a full batch.

    >>> batcher = ShapeBatcher(8)
    >>> batcher.add(prep)                 # as images arrive
    >>> batch = batcher.take()            # a full batch, or None
    >>> for batch in batcher.drain(): ... # at the end: what is left
    """

    def __init__(self, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self._groups: dict[tuple, list[Prepared]] = {}
        self.held = 0  # images waiting

    def add(self, prep: Prepared) -> None:
        self._groups.setdefault(prep.net_in.shape, []).append(prep)
        self.held += 1

    def take(self, *, flush: bool = False) -> list[Prepared] | None:
        """A full batch of one shape if there is one; when flushing, the biggest
        group's first batch; else None."""
        if not self._groups:
            return None
        shape = max(self._groups, key=lambda s: len(self._groups[s]))
        group = self._groups[shape]
        if len(group) < self.batch_size and not flush:
            return None
        batch, rest = group[:self.batch_size], group[self.batch_size:]
        if rest:
            self._groups[shape] = rest
        else:
            del self._groups[shape]
        self.held -= len(batch)
        return batch

    def drain(self) -> Iterator[list[Prepared]]:
        """Every image still held, batch by batch."""
        while (batch := self.take(flush=True)) is not None:
            yield batch


def predict(batch: Sequence[Prepared], engine: "Engine", *,
            work: Callable[[str, tuple[int, ...]], np.ndarray] | None = None,
            refine: bool = True) -> list[np.ndarray | Exception]:
    """a*b* (h, w, 2) in [-1, 1] for each image of a batch of one render shape: one
    engine call, then the model's edge-aware upsampling of its grid to the render
    size where its bundle names one (``Engine.refine``; ``work``: where its work
    arrays come from, default the calling thread's :func:`thread_scratch`; ``refine=False``:
    the grid as the network gave it, for a caller that upsamples it elsewhere).  If the
    engine fails on the batch, its images are retried one by one so that only the
    one that causes it fails; that image's entry is then the exception."""
    try:
        net_in = np.stack([p.net_in for p in batch])
        ab = engine.predict(net_in)
        return list(engine.refine(net_in, ab, work=work or thread_scratch().take) if refine else ab)
    except Exception as exc:
        if len(batch) == 1:
            return [exc]
        return [r for p in batch for r in predict([p], engine, work=work, refine=refine)]


def colorize_prepared(preps: Sequence[Prepared], *, engine: "Engine", saturation: float = 1.0,
                      batch_size: int = 16) -> list[np.ndarray]:
    """Engine and render steps for prepared images, batched by render shape:
    sRGB (H, W, 3) in each one's dtype, in input order.  Raises the first
    engine error."""
    out: dict[int, np.ndarray] = {}
    batcher = ShapeBatcher(batch_size)
    index = {id(p): i for i, p in enumerate(preps)}
    for p in preps:
        batcher.add(p)
    for batch in batcher.drain():
        for p, ab in zip(batch, predict(batch, engine)):
            if isinstance(ab, Exception):
                raise ab
            out[index[id(p)]] = render_prepared(p, ab, saturation=saturation)
    return [out[i] for i in range(len(preps))]


def colorize_l(l_fulls: Sequence[np.ndarray], *, engine: "Engine",
               options: ColorOptions = ColorOptions(), batch_size: int = 16) -> list[np.ndarray]:
    """Colorize several full-resolution L* images (each (H, W), [0, 100]).

    Images are grouped by render shape so each engine call gets a full batch.
    Returns sRGB float32 (H, W, 3) in [0, 1], in input order.
    """
    options = options.for_engine(engine)
    preps = [prepare_l(l, options) for l in l_fulls]
    return colorize_prepared(preps, engine=engine, saturation=options.saturation, batch_size=batch_size)


def colorize_batch(decoded: Sequence[image_io.Decoded], *, engine: "Engine",
                   options: ColorOptions = ColorOptions(), batch_size: int = 16) -> list[np.ndarray]:
    """Colorize decoded images -> RGB (H, W, 3) of each source's dtype (uint8/uint16).

    Pure arrays in, arrays out (no files); batched by render shape.
    """
    options = options.for_engine(engine)
    preps = [prepare(d, options) for d in decoded]
    return colorize_prepared(preps, engine=engine, saturation=options.saturation, batch_size=batch_size)


def encode_colorized(decoded: image_io.Decoded, fmt: str, engine: "Engine", options: ColorOptions, *,
                     label: str | None = None) -> bytes:
    """One decoded image colorized and encoded as ``fmt``, as a batch job writes its items
    (:func:`streamcolor.items.encode_prepared`: a gray 8-bit photo into a JPEG straight from its
    Y'CbCr planes).  Why one function: a file, the bytes API, stdout and ``serve`` each encoded on
    their own, and one photo came out as two slightly different JPEGs (up to 14 codes apart).
    ``label``: the output's name for warnings (a JPEG that drops transparency, metadata that does not fit)."""
    from streamcolor.items import encode_prepared  # (it builds on this module)

    options = options.for_engine(engine)
    prep = prepare(decoded, options)
    ab = predict([prep], engine)[0]
    if isinstance(ab, Exception):
        raise ab
    return encode_prepared(prep, ab, fmt, options, label=label)


def _write_output(decoded: image_io.Decoded, dst: str | os.PathLike, engine: "Engine",
                  options: ColorOptions, replace: tempfiles.Replace = True) -> Path:
    """Colorize one decoded image into the file ``dst`` (:func:`encode_colorized`), so that `image`
    and `batch` give one photo the same picture."""
    image_io.check_file_path(dst)
    with image_io.said_of(dst):
        data = encode_colorized(decoded, image_io.format_for(dst), engine, options, label=str(dst))
    return image_io.write_atomic(dst, data, replace=replace)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return image_io.to_uint8(x)


def _check_array_pixels(arr: np.ndarray, max_pixels: int) -> None:
    """The same pixel limit as for image files: an array is colorized with a
    few bytes a pixel of working memory, so a huge one is refused before any
    work, with the option that raises the limit."""
    if arr.ndim >= 2 and arr.shape[0] * arr.shape[1] > max_pixels:
        h, w = arr.shape[:2]
        raise InputError(f"image array of {h}x{w} = {h * w:,} pixels is over the limit of {max_pixels:,} "
                         "(raise ColorOptions.max_pixels if intended)")


def _array_to_decoded(arr: np.ndarray) -> tuple[image_io.Decoded, np.dtype]:
    """An array input as a Decoded image and the dtype the result is given back in.

    Any byte order is accepted (big-endian data is converted); every float
    width is computed in float32 (float16 cannot hold 65535); NaN or infinite
    values, and dtypes other than uint8, uint16 and float, are refused with
    InputError."""
    arr = np.asarray(arr)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    dtype = arr.dtype
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32) if arr.dtype.itemsize < 4 else arr
        if arr.size and not np.isfinite(arr).all():
            raise InputError("the image array holds NaN or infinite values")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise InputError("float image arrays must hold values in [0, 1]")
        arr = (np.clip(arr, 0, 1).astype(np.float32) * 65535 + 0.5).astype(np.uint16)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"unsupported image array dtype {arr.dtype} (use uint8, uint16 or float in [0, 1])")
    alpha = None
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr, alpha = arr[..., :3], arr[..., 3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3) or 0 in arr.shape:
        raise InputError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {np.shape(arr)}")
    return image_io.Decoded(pixels=np.ascontiguousarray(arr), alpha=alpha), dtype


def colorize_image(src: ImageLike, dst: str | os.PathLike | None = None, *,
                   engine: "Engine | str | None" = None, render_size: int | None = None,
                   options: ColorOptions = ColorOptions(), replace: tempfiles.Replace = True,
                   saturation: float | None = None):
    """Colorize one image.

    Parameters
    ----------
    src:
        A file path, encoded bytes, a PIL image, or an array: (H, W) gray,
        (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float in [0, 1].
        Colour inputs are reduced to their L* first.
    dst:
        Optional output path; the format follows its extension.  Written
        atomically (nothing half-written on failure).  OutputError when it is
        the input file itself (by any path: links, another case).
    engine:
        A loaded engine (see :func:`streamcolor.load_engine`), or a model
        name (loaded once per process); the shared default model on the
        best runtime when None.
    render_size:
        Shortcut for ``options.render_size`` (network input, longer side).
    saturation:
        Shortcut for ``options.saturation`` (gain on the predicted colour).
    options:
        See :class:`ColorOptions`; fields left None (render size,
        saturation) take the model's recommendation, as the CLI does.
    replace:
        What the finished output may replace at ``dst``: True, any file
        there (like ``PIL.Image.save``); False, none (OutputError, the file
        there kept, when one is there by the time the output is complete:
        checked atomically); or a function of the path that says whether
        the file found there may go (the CLI's: only a file streamcolor
        wrote and nobody changed since).

    Returns
    -------
    The same kind as ``src``: an array (same dtype; RGB, or RGBA when the
    input had alpha) for an array or path input, bytes (same format) for
    bytes, a PIL image (8 bits a channel: Pillow holds no 16-bit colour) for
    a PIL image -- or the output ``Path`` when ``dst`` is given.  Output size
    and lightness equal the input's as displayed: an EXIF orientation tag is
    applied to the pixels (a phone photo tagged "rotate 90" comes back upright,
    its width and height swapped against the stored ones, the tag reset).
    """
    if render_size is not None:
        options = dataclasses.replace(options, render_size=render_size)
    if saturation is not None:
        options = dataclasses.replace(options, saturation=saturation)
    if not isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)):
        raise InputError(f"cannot colorize a {type(src).__name__}: give a file path, encoded bytes, "
                         "a PIL image or a NumPy array")
    refuse_empty_path(dst, "output")
    if dst is not None and isinstance(src, (str, os.PathLike)):
        from streamcolor.outputs import plan_outputs

        plan_outputs([(src, dst)])  # OutputError when dst is the input file by any spelling
    engine = engine_for(engine)
    if isinstance(src, np.ndarray):
        _check_array_pixels(src, options.max_pixels)
        decoded, dtype = _array_to_decoded(src)
    else:
        decoded = image_io.read_image(src, max_pixels=options.max_pixels)
        dtype = decoded.pixels.dtype
    if dst is not None:
        return _write_output(decoded, dst, engine, options, replace)
    if isinstance(src, (bytes, bytearray, memoryview)):
        # (its own format where Pillow writes it, even ICO or 1-bit XBM, which then says it holds no colour;
        # XPM and others that Pillow only reads: PNG, where a KeyError came out)
        fmt = decoded.format if decoded.format in Image.SAVE else "PNG"
        return encode_colorized(decoded, fmt, engine, options)
    rgb = colorize_batch([decoded], engine=engine, options=options)[0]
    if isinstance(src, Image.Image):
        out = Image.fromarray(_to_uint8(rgb), "RGB")
        if decoded.alpha is not None:
            out.putalpha(Image.fromarray(_to_uint8(decoded.alpha), "L"))
        # what out.save() would carry, as the bytes and file routes do (an RGB profile only)
        if "dpi" in decoded.info:
            out.info["dpi"] = decoded.info["dpi"]
        if image_io.profile_fits(decoded.info.get("icc_profile") or b"", "RGB"):
            out.info["icc_profile"] = decoded.info["icc_profile"]
        return out
    if decoded.alpha is not None:  # alpha joins before any float scaling, so both come back on one scale
        alpha = decoded.alpha
        if alpha.dtype != rgb.dtype:
            alpha = alpha.astype(rgb.dtype)
        rgb = np.dstack([rgb, alpha])
    if dtype.kind == "f":  # in place: one float copy of the output, not three
        scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
        rgb = rgb.astype(np.float32)
        rgb /= scale
        rgb = rgb.astype(dtype, copy=False)
    return rgb
