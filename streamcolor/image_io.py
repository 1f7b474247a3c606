"""Reading and writing image files: the only module that decodes images.

Decoding goes through Pillow (formats, EXIF orientation, 16-bit, alpha);
pixels come out as NumPy arrays.  Every failure is re-raised as
:class:`~streamcolor.errors.InputError` naming the file.  Writing is atomic:
a temporary file in the destination folder, renamed into place, so a killed
run never leaves a half-written image at the output path.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import mimetypes
import os
import re
import stat
import struct
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from streamcolor import icc, tempfiles
from streamcolor.errors import InputError, OutputError

log = logging.getLogger(__name__)

#: Refuse images with more pixels than this by default (a decompression-bomb
#: guard; about 16k x 16k).  Override per call with ``max_pixels``.
DEFAULT_MAX_PIXELS = 268_000_000

#: The process umask (see :data:`streamcolor.tempfiles.UMASK`).
UMASK = tempfiles.UMASK

#: Pillow format name for an output file extension.
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF",
            ".tiff": "TIFF", ".bmp": "BMP"}


@dataclass
class Decoded:
    """One decoded image.

    ``pixels``: (H, W) gray or (H, W, 3) RGB, uint8 or uint16, orientation
    already applied.  ``alpha``: (H, W) of the same dtype or None.
    ``format``: the source format name (e.g. "JPEG").  ``info``: what is worth
    carrying to the output (ICC profile, EXIF with orientation reset, DPI).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def max_value(self) -> int:
        return 65535 if self.pixels.dtype == np.uint16 else 255


def supported_suffixes() -> set[str]:
    """File extensions this module writes (and reads)."""
    return set(_FORMATS)


#: File suffixes of videos (what `streamcolor video` takes): never images; a file given to the wrong verb,
#: or met in a batch, is pointed to `streamcolor video`.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
                  ".flv", ".3gp", ".ogv", ".vob", ".mxf", ".dv")
#: Suffixes that name no image, beyond what :mod:`mimetypes`' own table knows (its ``text/``, ``video/``,
#: ``audio/`` and ``application/`` types): videos, photo tools' sidecars, sound, programs' state files.
NOT_IMAGE_SUFFIXES = frozenset({
    *VIDEO_SUFFIXES, ".xmp", ".aae", ".pp3", ".dop", ".on1", ".m4a", ".flac", ".ogg", ".sqlite", ".db", ".lock",
    ".log", ".ini", ".md", ".nfo", ".gz", ".7z", ".rar", ".xz", ".bz2", ".url", ".lnk"})
_MIME = mimetypes.MimeTypes()  # the built-in table only: the same answer on every machine


def not_an_image_name(name: str) -> bool:
    """Whether a file's name says it is no image at all (``README.txt``, ``clip.mp4``,
    ``IMG_1.xmp``), by its suffix.  Why: a folder of photos holds such files beside them, and a
    batch job leaves them out rather than failing them on every run.  A name without a suffix, or
    with one that Pillow reads, or one nobody knows, is not judged: it is tried and fails if it
    is no image."""
    suffix = os.path.splitext(name)[1].lower()
    if not suffix or suffix in _readable_suffixes():
        return False
    if suffix in NOT_IMAGE_SUFFIXES:
        return True
    kind = _MIME.guess_type("x" + suffix, strict=False)[0]
    return kind is not None and not kind.startswith("image/")


_READABLE: set[str] = set()


def _readable_suffixes() -> set[str]:
    """The file suffixes that Pillow (with its plugins) opens."""
    if not _READABLE:
        Image.init()
        _READABLE.update(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
    return _READABLE


def read_image(src: str | os.PathLike | bytes | BinaryIO | Image.Image, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Decoded:
    """Decode ``src`` (a path, encoded bytes, a seekable binary file object, or a PIL image).

    Raises InputError for a missing file, a directory, a zero-byte or truncated
    file, a non-image, or more than ``max_pixels`` pixels.
    """
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "<image>")
    previous = getattr(_DECODING, "label", None)
    _DECODING.label = label
    try:
        return _read_image(src, label, max_pixels)
    finally:
        _DECODING.label = previous


def decoding() -> str | None:
    """The name of the image this thread is decoding, or None: a library's warning while decoding
    ("Corrupt EXIF data") is about that file, and the CLI's log line names it."""
    return getattr(_DECODING, "label", None)


_DECODING = threading.local()


def _read_image(src: str | os.PathLike | bytes | BinaryIO | Image.Image, label: str, max_pixels: int) -> Decoded:
    if isinstance(src, Image.Image):
        return _from_pil(src, label, max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise InputError(f"{label}: empty (0 bytes)")
        return _open(io.BytesIO(data), label, max_pixels)
    if hasattr(src, "read"):
        if src.seek(0, os.SEEK_END) == 0:
            raise InputError(f"{label}: empty (0 bytes)")
        src.seek(0)
        return _open(src, label, max_pixels)
    if not os.fspath(src):
        raise InputError("the image path is empty")
    path = Path(src)
    try:
        found = path.exists()
    except OSError as exc:  # a name longer than the system takes (pathlib lets ENAMETOOLONG through)
        raise InputError(f"{label}: {exc.strerror or exc}") from exc
    if not found:
        raise no_such_file(path, label)
    if path.is_dir():
        raise InputError(f"{label}: is a directory, not an image (use `streamcolor batch` for folders)")
    with open_regular(path, label) as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise InputError(f"{label}: empty (0 bytes)")
        document = document_kind(path)
        if document is not None:
            raise InputError(f"{label}: {document}")
        return _open(fh, label, max_pixels)


def no_such_file(path: Path, label: str | None = None) -> InputError:
    """The error for a path that leads to no file, naming a broken link or a
    link loop as what it is (``exists()`` is False for both)."""
    from streamcolor.engines.archives import dead_link

    return InputError(f"{label or path}: {dead_link(path) or 'no such file'}")


def open_regular(path: str | os.PathLike, label: str | None = None):
    """Open ``path`` for binary reading if it is a regular file; InputError at
    once for a device, FIFO or socket (``/dev/zero`` would be read forever,
    a FIFO would block the open until a writer comes).

    The file is opened non-blocking and checked with fstat on the open
    descriptor, so a path swapped after a check cannot slip through."""
    label = label or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{label}: cannot open ({exc.strerror or exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{label}: not a regular file ({file_type(mode)}); only files are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_type(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def allow_pixels(max_pixels: int) -> None:
    """Let Pillow open images up to ``max_pixels`` pixels.

    Pillow has its own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``,
    ~89 Mpx: a warning above, an error above twice that), which would refuse
    images that our limit allows.  Our limit is checked on the header right
    after opening, before any pixel is decoded, so Pillow's is raised to ours
    (never lowered: other code in the process may rely on a higher one)."""
    with _PILLOW_LIMIT_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


_PILLOW_LIMIT_LOCK = threading.Lock()


#: What Pillow's readers raise on damaged data besides OSError: a truncated multi-page TIFF or
#: animated GIF gave TypeError ("Missing dimensions"), KeyError, IndexError or struct.error while its
#: frames were counted, and the whole `image` run ended in a traceback before any input was done.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, KeyError, IndexError, struct.error)


def _open(fh, label: str, max_pixels: int) -> Decoded:
    allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh) as im:
                _check_size(im.size, label, max_pixels)
                _check_single_frame(im, label)
                if is_16bit_colour(im):
                    return _decode16_colour(fh, im, label)
                if im.format == "JPEG" and im.mode == "L":
                    gray = gray_jpeg(fh, im, label)
                    if gray is not None:
                        return gray
                lossless = im.format == "WEBP" and _webp_lossless(fh)
                im.load()
                return _from_pil(im, label, max_pixels, lossless)
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(f"{label}: {_document_in(fh) or 'not an image file (format not recognised)'}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's guard is at or above ours (allow_pixels), so this image is over ours too.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels is" if found else "it is"
        raise InputError(f"{label}: {size} over the limit of {max_pixels:,}, a possible decompression bomb "
                         "(raise max_pixels / --max-pixels if the file is trusted)") from exc
    except DECODE_ERRORS as exc:  # truncated/corrupt data
        what = _document_in(fh)  # (an EPS without Ghostscript: "Unable to locate Ghostscript" is no corruption)
        raise InputError(f"{label}: {what or f'corrupt or truncated image ({exc})'}") from exc


def _document_in(fh) -> str | None:
    """What document (PDF, PostScript) the open file ``fh`` holds by its first bytes, and how to make
    images of it; None for anything else or a file that cannot be read again."""
    try:
        fh.seek(0)
        head = fh.read(8)
    except (OSError, ValueError, AttributeError):
        return None
    return _document_of(head)


def _document_of(head: bytes) -> str | None:
    """The :data:`_DOCUMENTS` line for a file that starts with ``head``; None for anything else."""
    return next((what for magic, what in _DOCUMENTS if head.startswith(magic)), None)


def _check_size(size: tuple[int, int], label: str, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise InputError(f"{label}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise InputError(f"{label}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                         "(raise max_pixels / --max-pixels if the file is trusted)")


#: Formats whose extra frames are content (pages, animation), not previews (MPO keeps its first picture).
_MULTI_FRAME_FORMATS = frozenset({"TIFF", "GIF", "PNG", "WEBP"})
#: EXIF orientation -> (transpose?, quarter turns counter-clockwise, flip left-right after) on a NumPy image.
_ORIENT = {2: (False, 0, True), 3: (False, 2, False), 4: (False, 2, True), 5: (True, 0, False),
           6: (False, 3, False), 7: (True, 2, False), 8: (False, 1, False)}


#: Frames or pages counted at most where only "one" or "several" matters, and in messages.
FRAMES_COUNTED = 1000


#: A TIFF page's NewSubfileType bits (tag 254) that make it no picture of its own: a reduced-resolution
#: copy of another page (the preview that scanners and cameras store after the image) or a transparency mask.
_TIFF_NOT_A_PAGE = 0b101


def _tiff_aside(im: Image.Image) -> bool:
    """Whether the TIFF page ``im`` is at is a preview or a mask of another page (:data:`_TIFF_NOT_A_PAGE`)."""
    try:
        return bool(int(im.tag_v2.get(254, 0)) & _TIFF_NOT_A_PAGE)
    except (AttributeError, TypeError, ValueError):
        return False


def count_frames(im: Image.Image, cap: int = FRAMES_COUNTED) -> int:
    """Frames (or pages) of an open image, counted up to ``cap`` (then ``cap``: that many or more),
    back at the first after.  Why not Pillow's ``n_frames``: it walks every frame in Python, and for
    a TIFF ever more slowly (40,000 pages of 1x1, a 4 MB file, took 16 s), where ``is_animated``
    looks at the second frame alone.  A TIFF's later pages that are a preview or a mask of another
    (NewSubfileType) are not counted: a full image first and its preview is one photo, the first."""
    if im.format not in _MULTI_FRAME_FORMATS:
        return 1
    try:
        if not getattr(im, "is_animated", False):
            return 1
    except DECODE_ERRORS:  # (something after the first frame, damaged: a second frame, cut short)
        return 2
    tiff_full_first = im.format == "TIFF" and not _tiff_aside(im)
    seen = counted = 1
    try:
        while seen < cap:
            im.seek(seen)
            seen += 1
            if not (tiff_full_first and _tiff_aside(im)):
                counted += 1
    except EOFError:  # (the end)
        pass
    except DECODE_ERRORS:  # (frame n is there, damaged: a file cut short in it)
        counted += 1
    try:
        im.seek(0)
    except DECODE_ERRORS:
        pass
    return min(counted, cap)


def _check_single_frame(im: Image.Image, label: str) -> None:
    """Refuse multi-page TIFFs and animated GIF/PNG/WebP: colorizing only the first
    frame would silently drop the rest."""
    frames = count_frames(im)
    if frames > 1:
        what = "pages" if im.format == "TIFF" else "frames (animated)"
        many = f"{frames:,} or more" if frames >= FRAMES_COUNTED else f"{frames}"
        raise InputError(f"{label}: has {many} {what}; only single-frame images are colorized "
                         "(split it into one file per page or frame; use `streamcolor video` for animations)")


def is_16bit_colour(im: Image.Image) -> bool:
    """Whether the file holds 16 bits per colour channel (Pillow would read it as 8-bit RGB)."""
    if im.mode not in ("RGB", "RGBA") or not im.tile:
        return False
    args = im.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _decode16_colour(fh, im: Image.Image, label: str) -> Decoded:
    """16-bit colour (PNG, TIFF) through OpenCV, which keeps the 16 bits; EXIF
    orientation applied as Pillow would; ICC profile and DPI carried in ``info``."""
    import cv2

    fh.seek(0)
    buf = np.frombuffer(fh.read(), dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"{label}: corrupt or truncated 16-bit image")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257
    rgb = arr[..., 2::-1]
    alpha = arr[..., 3] if arr.shape[2] == 4 else None
    # (OpenCV's TIFF reader turns the pixels by the Orientation tag itself, IMREAD_UNCHANGED or not:
    # turned again here, a TIFF came out as stored or upside down)
    orientation = im.getexif().get(0x0112) if im.format != "TIFF" else None
    if orientation in _ORIENT:
        transpose, turns, flip = _ORIENT[orientation]
        rgb = _orient(rgb, transpose, turns, flip)
        alpha = _orient(alpha, transpose, turns, flip) if alpha is not None else None
    info = _carried(im)
    exif = _carried_exif(im, _exif_of(im), (rgb.shape[1], rgb.shape[0]))
    if exif:
        info["exif"] = exif
    pixels = _as_srgb(np.ascontiguousarray(rgb), info, label)
    if icc.is_gray(pixels):
        pixels = np.ascontiguousarray(pixels[..., 0])
    return Decoded(pixels=pixels, alpha=None if alpha is None else np.ascontiguousarray(alpha), format=im.format,
                   info=info)


def gray_jpeg(fh, im: Image.Image, label: str) -> Decoded | None:
    """A gray JPEG (the photos this tool is for) decoded by OpenCV: with the GIL released and
    straight into a NumPy array, where Pillow's decode and its copy into NumPy held the GIL ~1.2 ms
    a megapixel, which capped a batch job's threads (``benchmarks/gil_profile.py``).  The same
    libjpeg-turbo decode, the same pixels; EXIF orientation, ICC profile and DPI as
    :func:`_from_pil` takes them.  None, for Pillow to decode it, when the file does not end with
    the end-of-image marker (cut short: Pillow says so, where libjpeg fills in the rest in gray
    with a warning) or OpenCV reads it otherwise than Pillow's header said."""
    import cv2

    fh.seek(0)
    data = fh.read()
    if not data.endswith(b"\xff\xd9"):
        return None
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    if pixels is None or pixels.shape != (im.height, im.width) or pixels.dtype != np.uint8:
        return None
    del data
    info = _carried(im)
    exif = _exif_of(im)
    orientation = exif.get(0x0112)
    if orientation in _ORIENT:
        pixels = np.ascontiguousarray(_orient(pixels, *_ORIENT[orientation]))
    if carried := _carried_exif(im, exif, (pixels.shape[1], pixels.shape[0])):
        info["exif"] = carried
    return Decoded(pixels=np.ascontiguousarray(_as_srgb(pixels, info, label)), format="JPEG", info=info)


def _carried(im: Image.Image) -> dict[str, Any]:
    """What of an image's file is carried to its output as it is (:func:`_save` writes it where the
    output's format has a place for it): its ICC profile and DPI, and what describes the photo, which
    an archive's photos often carry and which was lost with the gray: XMP (a caption, keywords,
    rights; its orientation taken out, as the pixels come out upright), a JPEG's or GIF's comment,
    IPTC (a JPEG's Photoshop block, a TIFF's tag 33723), a PNG's text chunks, and a TIFF's
    descriptive tags (:data:`DESCRIPTIVE_TAGS`).  EXIF is taken apart (:func:`_carried_exif`)."""
    info: dict[str, Any] = {}
    if im.info.get("icc_profile"):
        info["icc_profile"] = im.info["icc_profile"]
    if "dpi" in im.info:
        info["dpi"] = im.info["dpi"]
    xmp = im.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if isinstance(xmp, bytes) and xmp.strip(b"\x00 "):
        for pattern in _XMP_ORIENTATION:
            xmp = re.sub(pattern, b"", xmp)
        info["xmp"] = xmp
    comment = im.info.get("comment")
    if isinstance(comment, str):
        comment = comment.encode("utf-8")
    if isinstance(comment, bytes) and comment:
        info["comment"] = comment
    iptc = _iptc(im)
    if iptc:
        info["iptc"] = iptc
    if im.format == "PNG":  # (tEXt, zTXt, iTXt: str values in info; XMP and profiles are carried apart)
        text = [(key, str(value), getattr(value, "lang", None), getattr(value, "tkey", None))
                for key, value in im.info.items()
                if isinstance(value, str) and key != "XML:com.adobe.xmp" and not key.startswith("Raw profile type")]
        if text:
            info["text"] = text
    return info


#: The tags of a TIFF's first directory, and of EXIF's (which has the same), that describe the photo
#: rather than how its pixels are stored: its caption, the scanner or camera (make, model), when, who,
#: whose rights.  A TIFF output gets them as its own tags; any other output as EXIF.
DESCRIPTIVE_TAGS = (0x010E, 0x010F, 0x0110, 0x0132, 0x013B, 0x8298)

#: The orientation in an XMP packet (as Pillow's ``exif_transpose`` finds and takes it out).
_XMP_ORIENTATION = (rb'tiff:Orientation="[0-9]"', rb"<tiff:Orientation>[0-9]</tiff:Orientation>")


def _iptc(im: Image.Image) -> bytes | None:
    """A photo's IPTC-IIM record (the caption, keywords and credit of press and archive tools), as
    bytes: from a JPEG's Photoshop block (resource 0x0404) or a TIFF's tag 33723."""
    if im.format == "JPEG":
        value = (im.info.get("photoshop") or {}).get(0x0404)
    elif im.format == "TIFF":
        # the entry's bytes as in the file, where Pillow keeps them (typed LONG, as exiftool writes it,
        # Pillow reads the first of its numbers only), else its value
        value = getattr(getattr(im, "tag_v2", None), "_tagdata", {}).get(33723)
        if value is None:
            value = getattr(im, "tag_v2", {}).get(33723)
    else:
        return None
    if isinstance(value, tuple):  # (the same bytes, read as numbers)
        try:
            value = struct.pack(f"{im.tag_v2._endian}{len(value)}L", *value)
        except (AttributeError, struct.error):
            return None
    return bytes(value) if isinstance(value, (bytes, bytearray)) and value else None


def _exif_of(im: Image.Image) -> Image.Exif:
    """``im``'s EXIF with its EXIF and GPS directories read now, while its file is open (Pillow
    reads them when asked, from the file, which it closes once the pixels are loaded)."""
    exif = im.getexif()
    for tag in (0x8769, 0x8825):
        if tag in exif:
            try:
                exif.get_ifd(tag)
            except (KeyError, OSError, ValueError, struct.error):  # (a damaged directory: left out)
                del exif[tag]
    return exif


def _carried_exif(im: Image.Image, exif: Image.Exif, size: tuple[int, int]) -> bytes | None:
    """The EXIF an output carries, as bytes, or None: the source's, without its orientation (turned
    into the pixels) and with its pixel dimensions those of the upright output; for a TIFF, whose
    "EXIF" is its whole first directory (strips, sizes), only its :data:`DESCRIPTIVE_TAGS` and its
    EXIF and GPS directories.  Text is written back as the bytes that were read: Pillow reads EXIF text as
    Latin-1 and writes it as ASCII, which turned a caption's "é" (UTF-8, as most tools write it)
    into "??"."""
    try:
        if im.format == "TIFF":
            for tag in list(exif):
                if tag not in DESCRIPTIVE_TAGS and tag not in (0x8769, 0x8825):
                    del exif[tag]
        exif.pop(0x0112, None)
        if not exif:
            return None
        ifds = [exif] + [exif.get_ifd(tag) for tag in (0x8769, 0x8825) if tag in exif]  # (IFD0, EXIF, GPS)
        pixel = exif.get_ifd(0x8769) if 0x8769 in exif else {}
        if 0xA002 in pixel and 0xA003 in pixel:  # PixelXDimension, PixelYDimension: stale once the photo is turned
            pixel[0xA002], pixel[0xA003] = size
        for ifd in ifds:
            for tag, value in list(ifd.items()):
                if isinstance(value, str) and not value.isascii():  # (ASCII text stays typed as text)
                    ifd[tag] = value.encode("latin-1", "replace")
        return exif.tobytes()
    except (struct.error, TypeError, ValueError, KeyError, OSError) as exc:  # (a directory Pillow cannot write back)
        log.warning("%s: its EXIF is not carried to the output (%s)", getattr(im, "filename", "") or "an image", exc)
        return None


def _orient(x: np.ndarray, transpose: bool, turns: int, flip: bool) -> np.ndarray:
    if transpose:
        x = np.swapaxes(x, 0, 1)
    if turns:
        x = np.rot90(x, turns)
    return x[:, ::-1] if flip else x


def _webp_lossless(fh) -> bool:
    """Whether the WebP file ``fh`` holds a lossless picture (a ``VP8L`` chunk, not ``VP8 ``), by its
    RIFF chunks: Pillow does not say, and the output was written lossy."""
    try:
        where = fh.tell()
        fh.seek(12)  # (past "RIFF", the size and "WEBP")
        for _ in range(8):  # (VP8X, ICCP, ANIM... come first)
            head = fh.read(8)
            if len(head) < 8 or head[:4] in (b"VP8 ", b"ANMF"):
                break
            if head[:4] == b"VP8L":
                return True
            fh.seek(int.from_bytes(head[4:], "little") + (head[4] & 1), os.SEEK_CUR)
        return False
    except (AttributeError, OSError, ValueError):
        return False
    finally:
        try:
            fh.seek(where)
        except (AttributeError, OSError, ValueError, UnboundLocalError):
            pass


def _from_pil(im: Image.Image, label: str, max_pixels: int, lossless: bool = False) -> Decoded:
    _check_size(im.size, label, max_pixels)
    fmt = im.format
    source = im
    exif = _exif_of(im)
    # one colour marked transparent (a PNG's tRNS chunk for gray or RGB): made an alpha channel below
    trns = im.info.get("transparency") if im.mode in _TRNS_MODES else None
    im = ImageOps.exif_transpose(im)  # apply the orientation tag to the pixels
    info = _carried(source)  # (once loaded: a PNG's text chunks after its pixels are read with them)
    if lossless:
        info["lossless"] = True
    if carried := _carried_exif(source, exif, im.size):
        info["exif"] = carried
    alpha = None
    if im.mode in ("La", "RGBa"):  # premultiplied alpha (made in memory, never read from a file): un-premultiply
        im = im.convert("LA" if im.mode == "La" else "RGBA")
    mode = im.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA") if mode != "LA" else im
        alpha = np.asarray(rgba.getchannel("A"))
        im = rgba.convert("RGB") if mode != "LA" else im.convert("L")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(im, dtype=np.int32)
        lo, hi = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if lo < 0 or hi > 65535:  # (a 32-bit integer TIFF): never silently clipped to white or black
            raise InputError(f"{label}: a 32-bit integer image with values in [{lo}, {hi}]; streamcolor reads "
                             "integer images as 16-bit, [0, 65535] (scale it, or save it as 8- or 16-bit)")
        pixels = pixels.astype(np.uint16)
    elif im.mode == "L":
        pixels = np.asarray(im)
    elif im.mode == "1":
        pixels = np.asarray(im.convert("L"))
    elif im.mode == "F":  # 32-bit float (TIFF): read as [0, 1], like float arrays, never silently clipped
        values = np.asarray(im)
        if values.size and not np.isfinite(values).all():
            raise InputError(f"{label}: a float image with NaN or infinite values")
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"{label}: a float image with values in [{lo:g}, {hi:g}]; streamcolor reads float "
                             "images as [0, 1] (scale it, or save it as 8- or 16-bit)")
        pixels = np.rint(values * 65535).astype(np.uint16)
    elif im.mode == "RGB":
        pixels = np.asarray(im)
    else:  # CMYK, YCbCr, P without alpha, LAB...
        pixels = np.asarray(im.convert("RGB"))
    if alpha is None and trns is not None and im.mode in _TRNS_MODES:
        alpha = _trns_alpha(pixels, trns)
    pixels = _as_srgb(pixels, info, label)
    if pixels.ndim == 3 and icc.is_gray(pixels):
        pixels = np.ascontiguousarray(pixels[..., 0])
    return Decoded(pixels=np.ascontiguousarray(pixels), alpha=alpha, format=fmt, info=info)


#: Modes whose transparency, when the file has one, is a single colour value (PNG's tRNS chunk).
_TRNS_MODES = ("L", "I;16", "I;16B", "I;16L", "I", "RGB")


def _as_srgb(pixels: np.ndarray, info: dict[str, Any], label: str) -> np.ndarray:
    """``pixels`` as sRGB by their file's ICC profile (:mod:`streamcolor.icc`); a profile that no
    longer describes them is taken out of ``info``, so that no output carries it."""
    pixels, converted = icc.to_srgb(pixels, info.get("icc_profile"), label)
    if converted:
        del info["icc_profile"]
    return pixels


def _trns_alpha(pixels: np.ndarray, value: Any) -> np.ndarray | None:
    """An alpha channel (of ``pixels``' dtype: 0 or its maximum) that hides the pixels equal to
    ``value``, the one transparent colour of a gray or RGB PNG (an int, or an (r, g, b) tuple).
    Why: without it such a PNG came back opaque, the transparent colour painted in, and with no
    warning (palette PNGs and alpha channels were kept)."""
    try:
        if pixels.ndim == 3:
            target = np.asarray(value, dtype=np.int64).reshape(-1)
            if target.size != pixels.shape[2]:
                return None
            hidden = np.all(pixels == target.astype(pixels.dtype), axis=2)
        else:
            hidden = pixels == np.asarray(value).astype(pixels.dtype)
    except (TypeError, ValueError):  # a value Pillow left as bytes, or out of range: nothing to hide
        return None
    if not hidden.any():
        return None
    top = np.iinfo(pixels.dtype).max
    return np.where(hidden, 0, top).astype(pixels.dtype)


#: Output formats without transparency: JPEG has none, and a BMP's fourth byte is padding to the
#: programs that read one (Pillow among them), so it is written as 24-bit RGB.
NO_ALPHA = ("JPEG", "BMP")


def drops_transparency(alpha: np.ndarray | None, fmt: str) -> bool:
    """Whether writing ``fmt`` throws away transparency that ``alpha`` has (:data:`NO_ALPHA`)."""
    return alpha is not None and fmt.upper() in NO_ALPHA and int(alpha.min()) < int(np.iinfo(alpha.dtype).max)


def encode_image(rgb: np.ndarray, fmt: str, *, alpha: np.ndarray | None = None,
                 info: dict[str, Any] | None = None, quality: int = 95, label: str | None = None,
                 warn: bool = True) -> bytes:
    """Encode (H, W, 3) uint8/uint16 RGB (+ optional alpha) as ``fmt`` bytes.

    16-bit data is kept for PNG and TIFF and reduced to 8 bits elsewhere.
    The ICC profile, DPI, EXIF and the rest of ``info`` (:func:`_carried`) are written where the
    format has a place for them (not into 16-bit outputs).
    Transparency that JPEG or BMP cannot hold is dropped, with a warning naming ``label``
    (unless ``warn`` is False: a batch job says it once, with the count).
    """
    fmt = fmt.upper()
    info = info or {}
    if warn and drops_transparency(alpha, fmt):
        log.warning("%s: its transparency is dropped: %s has none (PNG, WebP and TIFF keep it)",
                    label or "the output", fmt)
    if rgb.dtype == np.uint16 and fmt not in ("PNG", "TIFF"):
        rgb = to_uint8(rgb)
        if alpha is not None:
            alpha = to_uint8(alpha)
    if rgb.dtype == np.uint16:
        return _encode16(rgb, alpha, fmt)
    im = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt not in NO_ALPHA:  # (there the colours are kept as they are)
        im.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    return _save(im, fmt, info, quality, label)


def encode_jpeg_planes(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, *, info: dict[str, Any] | None = None,
                       quality: int = 95, label: str | None = None) -> bytes:
    """Encode full-range Y'CbCr planes (uint8 (H, W) each, JFIF's BT.601) as a JPEG, with the same
    settings and metadata as :func:`encode_image` gives an RGB image: libjpeg stores them as they are
    instead of converting RGB (see :mod:`streamcolor.ycbcr`)."""
    return _save(_ycbcr_image(y, cb, cr), "JPEG", info or {}, quality, label)


def _ycbcr_image(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> Image.Image:
    """A Pillow ``YCbCr`` image of three planes, interleaved by OpenCV into the 4-byte pixels that
    Pillow keeps (the fourth byte unused) and lent to Pillow as they are (``map_buffer``, as
    ``Image.frombuffer`` lends 4-byte RGBX pixels).

    Why not ``Image.merge``: it interleaves holding the GIL (0.6 ms a megapixel here, where
    OpenCV's merge releases it and lending copies nothing), and on 16 cores a batch job's
    worker threads are bound by the GIL-held time of each photo
    (``python -m benchmarks.gil_profile``).  The encoded bytes are the same; a Pillow without
    these internals gets ``Image.merge``."""
    import cv2

    height, width = y.shape
    pixels = cv2.merge([y, cb, cr, cr])
    try:
        core = Image.core.map_buffer(pixels, (width, height), "raw", 0, ("YCbCr", 0, 1))
        im = Image.new("YCbCr", (0, 0))._new(core)
    except (AttributeError, TypeError, ValueError):  # (another Pillow's internals)
        return Image.merge("YCbCr", [Image.fromarray(p) for p in (y, cb, cr)])
    im.readonly = 1  # (Pillow holds a view of the pixels for as long as the image lives)
    return im


#: The longest side each format holds (libjpeg's and libwebp's limits): said before the encoder
#: is called, which would print its own complaint on stderr (past -q) and fail with "broken data stream".
MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}


def _save(im: Image.Image, fmt: str, info: dict[str, Any], quality: int, label: str | None = None) -> bytes:
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(im.size) > limit:
        message = (f"{im.size[0]}x{im.size[1]} is over what {fmt} holds ({limit:,} pixels a side); "
                   "write PNG or TIFF (--format png)")
        raise OutputError(message) from OSError(errno.EFBIG, message)
    params: dict[str, Any] = {}
    for key in ("icc_profile", "exif", "dpi"):
        # Pillow would write EXIF into a TIFF as a second copy of its own tags: not carried there.
        if key in info and fmt in ("JPEG", "PNG", "WEBP", "TIFF") and not (key == "exif" and fmt == "TIFF"):
            params[key] = info[key]
    if "icc_profile" in params and not profile_fits(params["icc_profile"], im.mode):
        del params["icc_profile"]
    if fmt == "JPEG" and len(params.get("exif", b"")) > _JPEG_SEGMENT:  # (Pillow refuses it: the photo failed)
        log.warning("%s: its EXIF (%d bytes) is over what a JPEG segment holds: not carried (PNG, WebP carry it)",
                    label or "the output", len(params.pop("exif")))
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
    if fmt == "WEBP" and info.get("lossless"):  # (a lossless WebP stays lossless: its L* within 1, not 3)
        params["lossless"] = True
    if fmt == "JPEG":
        params["subsampling"] = 0 if quality >= 90 else 2
    if fmt == "TIFF":  # lossless and compressed, as the 16-bit TIFFs (OpenCV's LZW): Pillow's default is raw,
        params["compression"] = "tiff_lzw"  # 3 bytes a pixel, several times a scan's own file
    if fmt == "ICO":  # (Pillow's default: its standard icon sizes up to the image's, 16x11 of a 32x21 image)
        params["sizes"] = [im.size]
    params.update(_described(fmt, info, label or "the output"))
    with _encoding_buffer(fmt, im.width * im.height) as buf:
        try:
            im.save(buf, format=fmt, **params)
        except OSError as exc:
            if "cannot write mode" not in str(exc):
                raise
            # a format with no colour (XBM, MSP: 1-bit): said as the output's, not Pillow's raw error
            raise OutputError(f"{fmt} holds no colour ({exc}); write PNG, JPEG, WebP or TIFF") from exc
        if isinstance(buf, io.BytesIO):
            return buf.getvalue()
        buf.flush()  # the file's own size, whoever wrote into it
        size = os.fstat(buf.fileno()).st_size
        buf.seek(0)
        return buf.read(size)


#: The largest XMP packet and comment one JPEG segment holds (what Pillow refuses past).
_JPEG_SEGMENT_XMP, _JPEG_SEGMENT = 65533 - 29, 65533


def _described(fmt: str, info: dict[str, Any], label: str) -> dict[str, Any]:
    """Pillow's save parameters that write what describes the photo (:func:`_carried`) into a
    ``fmt`` file, where it has a place: XMP into JPEG, WebP, PNG (an iTXt chunk) and TIFF (tag 700);
    the comment into JPEG (and a PNG's "Comment"); IPTC into JPEG (a Photoshop block) and TIFF; a
    PNG's text chunks into PNG; EXIF's descriptive tags into a TIFF's own.  What does not fit is
    left out with a warning: metadata never costs the photo its output."""
    params: dict[str, Any] = {}
    xmp, comment, iptc = info.get("xmp"), info.get("comment"), info.get("iptc")
    if fmt == "JPEG":
        if xmp and len(xmp) <= _JPEG_SEGMENT_XMP:
            params["xmp"] = xmp
        elif xmp:
            log.warning("%s: its XMP (%d bytes) is over what a JPEG segment holds: not carried (PNG and TIFF "
                        "carry it)", label, len(xmp))
        if comment and len(comment) <= _JPEG_SEGMENT:
            params["comment"] = comment
        elif comment:
            log.warning("%s: its comment (%d bytes) is over what a JPEG segment holds: not carried (PNG carries "
                        "it)", label, len(comment))
        if iptc:  # (Photoshop's APP13: one 8BIM resource, 0x0404, IPTC-NAA; its name empty, its data padded even)
            block = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc + b"\x00" * (len(iptc) % 2)
            data = b"Photoshop 3.0\x00" + block
            if len(data) <= _JPEG_SEGMENT:
                params["extra"] = b"\xff\xed" + struct.pack(">H", len(data) + 2) + data
            else:
                log.warning("%s: its IPTC (%d bytes) is over what a JPEG segment holds: not carried (TIFF carries "
                            "it)", label, len(iptc))
    elif fmt == "WEBP" and xmp:
        params["xmp"] = xmp
    elif fmt == "PNG" and (xmp or comment or info.get("text")):
        from PIL.PngImagePlugin import PngInfo

        chunks = PngInfo()
        text = list(info.get("text") or [])
        if comment and not any(key == "Comment" for key, *_ in text):
            try:
                said = comment.decode("utf-8")
            except UnicodeDecodeError:  # (an older tool's Latin-1)
                said = comment.decode("latin-1")
            text.append(("Comment", said, None, None))
        for key, value, lang, tkey in text:
            try:
                if not 1 <= len(key.encode("latin-1")) <= 79:  # (PNG's keywords; Pillow writes any)
                    raise ValueError(key)
                if lang is None and tkey is None:
                    chunks.add_text(key, value)
                else:
                    chunks.add_itxt(key, value, lang or "", tkey or "")
            except (UnicodeError, ValueError, TypeError):  # (a keyword PNG cannot hold)
                log.warning("%s: its text %r is not carried: PNG cannot hold that keyword", label, key)
        if xmp:
            chunks.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"), "", "")
        params["pnginfo"] = chunks
    elif fmt == "TIFF":
        tags: dict[int, Any] = {}
        if info.get("exif"):
            exif = Image.Exif()
            exif.load(info["exif"])
            for tag in DESCRIPTIVE_TAGS:
                value = exif.get(tag)
                if isinstance(value, str):  # (as read: Latin-1 of the bytes written)
                    tags[tag] = value.encode("latin-1", "replace")
        if xmp:
            tags[700] = xmp
        if iptc:
            tags[33723] = iptc
        if tags:
            params["tiffinfo"] = tags
    return params


def profile_fits(icc: bytes, mode: str) -> bool:
    """Whether an ICC profile describes pixels of Pillow ``mode``: its header's colour space (bytes
    16-20) is RGB for an RGB(A) or Y'CbCr image (a JPEG's Y'CbCr decodes to RGB), gray for a gray one.
    A scan's "Gray Gamma 2.2" or "Dot Gain 20%" profile on the colorized RGB output made a file that
    colour-managed programs refuse ("cannot build transform"); it is dropped, and the output is
    read as sRGB, as streamcolor read the gray pixels."""
    space = bytes(icc[16:20]) if len(icc) >= 128 else b""
    if mode in ("RGB", "RGBA", "RGBX", "YCbCr"):
        return space == b"RGB "
    if mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return space == b"GRAY"
    return False


#: Largest output (pixels) encoded through an in-memory file (:func:`_encoding_buffer`): its pages are
#: shared memory, not counted in the process's RSS, and live beside the bytes read back from them
#: until the encode returns, so a huge image keeps the BytesIO (whose encode takes long enough that
#: the GIL it holds matters less).  32 MP: a JPEG of at most a few tens of MB.
MEMFD_MAX_PIXELS = 32 << 20


@contextlib.contextmanager
def _encoding_buffer(fmt: str, pixels: int) -> Iterator[BinaryIO]:
    """Where Pillow encodes an image: for a JPEG of at most :data:`MEMFD_MAX_PIXELS`, an anonymous
    in-memory file (``memfd_create``, Linux) where there is one; else a BytesIO.

    Why: Pillow holds the GIL while it encodes a JPEG into a Python buffer such as a BytesIO, and
    releases it while it encodes into a file descriptor (its ``encode_to_file``).  A batch job
    encodes on several worker threads beside the engine's thread, so into a BytesIO its JPEG
    encodes ran one at a time and held up the other threads' Python; into a memfd they run at once
    (``python -m benchmarks.encode_threads``, 2 cores, two runs: two threads ran 1.97-1.99x the
    JPEGs/s of one into the memfd, 1.03-1.04x into a BytesIO).  The bytes are the same.  On one
    thread it costs a little (about 5% of a 1 MP encode: the write and the read back).  Other formats keep the
    BytesIO: Pillow's PNG encoder already releases the GIL, and its WebP encoder writes its bytes
    in one call, so a descriptor would only add a copy there."""
    fd = None
    if fmt == "JPEG" and pixels <= MEMFD_MAX_PIXELS:
        try:
            fd = os.memfd_create("streamcolor-encode", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # not Linux, or no memfd allowed here: the BytesIO
            fd = None
    if fd is None:
        yield io.BytesIO()
        return
    try:
        fh = os.fdopen(fd, "w+b")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _encode16(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str) -> bytes:
    """16-bit RGB(A) PNG/TIFF through OpenCV: Pillow cannot write 16-bit colour.
    (ICC and EXIF are not carried on this path.)"""
    import cv2

    bgr = rgb[..., ::-1] if alpha is None else np.dstack([rgb[..., ::-1], alpha.astype(np.uint16)])
    ok, data = cv2.imencode(".png" if fmt == "PNG" else ".tiff", np.ascontiguousarray(bgr))
    if not ok:
        raise OutputError(f"cannot encode a 16-bit {fmt} image")
    return data.tobytes()


def _header(source: str | os.PathLike | BinaryIO, cap: int = FRAMES_COUNTED) -> tuple[str | None, int] | None:
    """(Pillow's format name, frames or pages up to ``cap``: :func:`count_frames`) from the file's
    header alone, nothing decoded; None when Pillow cannot read it.  A file over Pillow's pixel limit
    is an image of unknown format.  A path that is no regular file (a FIFO: opening it waits for a
    writer forever) is not opened."""
    if isinstance(source, (str, os.PathLike)) and not _is_file(Path(source)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as im:
                return im.format, count_frames(im, cap)
    except Image.DecompressionBombError:  # an image, and a huge one: read_image says so
        return None, 1
    except (UnidentifiedImageError, *DECODE_ERRORS):
        return None


def frame_count(source: str | os.PathLike | BinaryIO, cap: int = FRAMES_COUNTED) -> int:
    """Frames (or pages) of an image file up to ``cap``, from its header; 1 when Pillow cannot tell."""
    return (_header(source, cap) or (None, 1))[1]


def image_kind(path: str | os.PathLike) -> str | None:
    """What Pillow makes of the file from its header (nothing is decoded): "image", "animation"
    (an animated GIF, WebP, PNG: frames in time, a video's job), "pages" (a multi-page TIFF:
    pictures of their own, to split), "huge" (over Pillow's pixel limit: a still image or an
    animation, which the verb's own size check says), or None when it cannot read it.  For telling a photo from
    a video whose name says otherwise."""
    header = _header(path, cap=2)
    if header is None:
        return None
    # (an MPO, a JPEG holding a preview or a gain map, has frames too: it is one photo)
    if header[1] > 1 and header[0] in _MULTI_FRAME_FORMATS:
        return "pages" if header[0] == "TIFF" else "animation"
    return "image" if header[0] is not None else "huge"


#: Documents that image and video readers take for pictures or streams (FFmpeg finds the JPEG
#: inside a PDF and calls it a video; Pillow opens an EPS and needs Ghostscript to draw it).
_DOCUMENTS = ((b"%PDF-", "a PDF document: export its pages as images (pdftoppm -png, or any PDF viewer)"),
              (b"%!PS", "a PostScript document: export it as an image (Ghostscript: gs -sDEVICE=png16m)"),
              (b"\xc5\xd0\xd3\xc6", "an EPS document: export it as an image (Ghostscript: gs -sDEVICE=png16m)"))


def document_kind(path: str | os.PathLike) -> str | None:
    """What a document file is and how to make images of it, by its first bytes; None for anything
    else (an unreadable file included), and for PostScript where Ghostscript is installed, with
    which Pillow reads it as an image."""
    if not _is_file(Path(path)):  # (a FIFO would be waited on forever)
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    what = _document_of(head)
    if what is not None and not head.startswith(b"%PDF-"):
        from PIL import EpsImagePlugin

        if EpsImagePlugin.has_ghostscript():  # (Pillow draws PostScript with it: read as an image)
            return None
    return what


def output_suffix(path: str | os.PathLike) -> str:
    """The suffix of the colorized file of the photo ``path``: its own where it is a format
    written here; else, for a photo under another name (``photo.mp4``, ``scan.dat``), the
    suffix of what its header says it is (nothing is decoded); else ``.png`` (a GIF, an
    unreadable header)."""
    suffix = Path(path).suffix
    if suffix.lower() in _FORMATS:
        return suffix
    fmt = (_header(path) or (None, 1))[0]
    return next((s for s, f in _FORMATS.items() if f == fmt), ".png")


def check_file_path(path: str | os.PathLike) -> None:
    """OutputError when an output path names a folder (``out/``, or one that exists, whatever its
    name): said before any work is spent on what would be written there."""
    if str(path).endswith(("/", os.sep)):
        raise _a_folder(path)
    try:
        folder = Path(path).is_dir()
    except OSError as exc:  # a name longer than the system takes
        raise OutputError(f"{path}: {exc.strerror or exc}") from exc
    if folder:
        raise _a_folder(path)


def _a_folder(path: str | os.PathLike) -> OutputError:
    return OutputError(f"{path}: a folder; give the output file's name (its extension picks the format)")


def format_for(path: str | os.PathLike, default: str | None = None) -> str:
    """Pillow format name for an output path's extension (``default`` when it has none we write)."""
    suffix = Path(path).suffix.lower()
    if suffix in _FORMATS:
        return _FORMATS[suffix]
    if default:
        return default
    if str(path).endswith(("/", os.sep)):
        raise _a_folder(path)
    if not suffix:
        raise OutputError(f"{path}: no extension to pick the output format from; use one of {sorted(_FORMATS)}")
    raise OutputError(f"{path}: unsupported output format {suffix!r}; use one of {sorted(_FORMATS)}")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """16-bit values as 8-bit ones, rounded to the nearest (x / 257): taken down, as before, every
    16-bit output came out about 0.2 L* darker than the same photo's 8-bit one."""
    if x.dtype == np.uint8:
        return x
    return ((x.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def written_format(fmt: str | None) -> str:
    """The format an output in the input's own format is written in: that one where it is one this
    module writes, a phone's MPO (a JPEG holding a second picture or a gain map) as JPEG, anything
    else (GIF, XPM, PPM...) as PNG, as a batch job does."""
    fmt = (fmt or "").upper()
    if fmt == "MPO":
        return "JPEG"
    return fmt if fmt in _FORMATS.values() else "PNG"


def _is_file(path: Path) -> bool:
    """``path.is_file()`` (a regular file, links followed), False where the system cannot even say
    (a name too long, a loop, a NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _staged(path: Path, what: str) -> Iterator[tempfiles.Staged]:
    """A locked temporary file next to ``path`` (:mod:`streamcolor.tempfiles`),
    removed on any failure inside the block; OSErrors become OutputError naming ``path``."""
    try:
        staged = tempfiles.create(path)
    except OSError as exc:
        above = next((p for p in Path(path).parents if _is_file(p)), None)  # (mkdir says only "File exists")
        why = f"{above} is a file, not a folder" if above is not None else exc.strerror or exc
        raise OutputError(f"{path}: cannot write here ({why})") from exc
    try:
        yield staged
    except BaseException as exc:
        staged.discard()
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: {what} failed ({exc.strerror or exc})") from exc
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, what: str = "write",
                  replace: tempfiles.Replace = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same folder, usual permissions;
    a fixed-length name of :mod:`streamcolor.tempfiles`, locked while written);
    on success it is renamed onto ``path``, on any failure removed.  So
    ``path`` holds either nothing (or its old content) or the whole new file.

    OSErrors become :class:`OutputError` naming ``path``; ``what`` words it.
    ``replace``: what may be replaced at ``path`` (:func:`streamcolor.tempfiles.move_into_place`;
    a file there that may not be is kept, and OutputError says so)."""
    with _staged(Path(path), what) as staged:
        yield staged.path
        staged.commit(replace)


def stage_bytes(path: str | os.PathLike, data: bytes) -> tempfiles.Staged:
    """Write ``data`` completely (flushed to disk) under a locked temporary
    name next to ``path``, without renaming it yet: the caller records it, then
    calls ``commit()``.  OutputError when it cannot be written."""
    with _staged(Path(path), "write") as staged:
        with open(staged.path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return staged


def write_atomic(path: str | os.PathLike, data: bytes, *, replace: tempfiles.Replace = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder
    and an atomic rename, so the path holds either nothing or the whole file
    (``replace``: as :func:`atomic_output`).  Returns the path written: ``path``, or
    ``name~N`` beside it where a :class:`~streamcolor.tempfiles.Beside` policy sent it."""
    staged = stage_bytes(path, data)
    try:
        return staged.commit(replace)
    except OSError as exc:
        raise OutputError(f"{path}: write failed ({exc.strerror or exc})") from exc


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, alpha: np.ndarray | None = None,
                info: dict[str, Any] | None = None, quality: int = 95, fmt: str | None = None,
                replace: tempfiles.Replace = True) -> Path:
    """Encode and atomically write an RGB image; the format follows the extension.  A folder
    (``out/``, or one that exists, whatever its name) is said to be one before any encoding.
    ``replace``: as :func:`atomic_output`."""
    check_file_path(path)
    with said_of(path):
        data = encode_image(rgb, fmt or format_for(path), alpha=alpha, info=info, quality=quality, label=str(path))
    return write_atomic(path, data, replace=replace)


@contextlib.contextmanager
def said_of(path: str | os.PathLike) -> Iterator[None]:
    """An OutputError of encoding (a format's size limit, :data:`MAX_SIDE`) said of the file
    ``path``, its cause kept (the errno that makes it the item's failure, not the run's)."""
    try:
        yield
    except OutputError as exc:
        if str(exc).startswith(f"{path}: "):  # (already said of it)
            raise
        raise OutputError(f"{path}: {exc}") from exc.__cause__
