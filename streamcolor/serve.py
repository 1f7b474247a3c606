"""The web page and HTTP API behind ``streamcolor serve`` (aiohttp).

One engine per process.  Each request is decoded, colorized and encoded in a
worker thread; the network calls of requests that arrive together are merged
by a :class:`~streamcolor.batching.BatchingEngine` (dynamic batching), so
concurrent clients share engine calls.

Routes
------
``GET /``
    The page (``streamcolor/web/index.html``): drop photos or short videos,
    compare before and after with a slider, download the results.
``GET /static/<name>``
    Files of the page's own folder, looked up by exact name in a list made at
    start-up; no other file is ever served.
``POST /api/colorize``
    An image (or a short video) as the multipart form field ``file`` or as the
    raw request body -> the colorized image, same format and size (video:
    MP4).  Parameters, in the query string or as form fields: ``render_size``
    (8-1024), ``saturation`` (0-4), ``format`` (same, png, jpg, webp, tiff,
    bmp), ``quality`` (1-100, JPEG/WebP).  Response header
    ``X-Streamcolor-Batch``: images in the engine call that served it.
``GET /api/health``, ``GET /api/models``, ``GET /api/stats``
    JSON: liveness and limits; the loaded model; batching counters.

Every error is JSON ``{"error": "<reason>", "status": <code>}`` with a 4xx
code for what the client can fix (400 bad image or parameter, 404, 405, 408
an upload that stalled, 413 over a size limit, 415 video turned off, 422
cannot encode) and 503 when busy or shutting down.

Memory: each request's image is counted before it is decoded (from its
header: :func:`streamcolor.memory.encoded_bytes`) against ``memory_budget``;
big images wait for each other.  Uploads themselves are held until read, so
the bodies in memory are bounded by ``max_pending`` x ``max_upload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import ipaddress
import logging
import math
import mimetypes
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import unicodedata
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Mapping

try:
    from aiohttp import BodyPartReader, web
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam
    from aiohttp.web_protocol import RequestPayloadError
except ImportError as exc:  # pragma: no cover - the serve extra is missing
    raise ImportError("`streamcolor serve` needs aiohttp: pip install 'streamcolor[serve]'") from exc

from streamcolor import __version__, image_io, memory
from streamcolor.batching import BatchingEngine, BatchingOptions
# MAX_SATURATION: the largest gain a request may ask for is the library's own limit
from streamcolor.colorize import ColorOptions, encode_colorized, model_options
from streamcolor.engines.lab import MAX_SATURATION
from streamcolor.engines import lab
from streamcolor.errors import InputError, OutputError, one_line

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)
#: One line per request (method, path, status, bytes, milliseconds).
access_log = logging.getLogger(__name__ + ".access")

#: The page's folder: the only files the server hands out.
STATIC_DIR = Path(__file__).parent / "web"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7070
#: Largest render size a request may ask for (network input, longer side): the library's own limit.
MAX_RENDER_SIZE = lab.MAX_RENDER_SIZE
#: Uploads with one of these suffixes or a video/* type go to the video pipeline.
VIDEO_SUFFIXES = image_io.VIDEO_SUFFIXES  # (the same list as the command line's)
#: ``format`` parameter -> Pillow format.  "same" keeps the upload's format where it can be written.
OUTPUT_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF",
                  "bmp": "BMP"}
_EXTENSION = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp"}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff", "BMP": "image/bmp"}
#: Bytes a multipart body may carry besides the file (boundaries, headers, small fields).
_MULTIPART_SLACK = 64 * 1024
_FIELD_LIMIT = 256  # bytes of one small form field
_CHUNK = 256 * 1024
#: The page's security policy: nothing but this server (and the page's own blob: URLs) is contacted.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
        "media-src 'self' blob:; connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens and what it accepts.  Override with ``dataclasses.replace``."""

    host: str = DEFAULT_HOST  # interface to listen on; "0.0.0.0" opens it to the network (no authentication!)
    port: int = DEFAULT_PORT  # TCP port; 0 picks a free one (logged, and in Server.url)
    batching: BatchingOptions = BatchingOptions()  # max_batch (1: batching off) and max_wait_ms
    max_upload: int = 64 * 1024 ** 2  # largest upload, bytes (413 above); videos included
    max_pixels: int = 40_000_000  # largest image, pixels (pixel-bomb guard; 400 above)
    max_pending: int = 64  # requests being colorized at once; more get 503 with Retry-After
    workers: int = 0  # threads that decode, compose and encode; 0: max_batch + CPU cores
    video: bool = True  # accept short videos (one at a time, bounded by max_upload and max_video_frames)
    max_video_frames: int = 18_000  # longest video, frames (413 past it: 10 minutes at 30 fps); a small
    # upload can hold a long film (50,000 tiny frames in 700 KB), and one video at a time runs
    shutdown_timeout: float = 30.0  # seconds in-flight requests get to finish on SIGINT/SIGTERM
    upload_timeout: float = 30.0  # an upload silent this long, or slower than MIN_UPLOAD_RATE past it, gets 408;
    # an answer whose client takes under 64 KiB of it in this long is dropped
    memory_budget: int = memory.DEFAULT_MEMORY_BUDGET  # working bytes of images colorized at once (the rest wait)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        for name in ("max_upload", "max_pixels", "max_pending", "memory_budget", "max_video_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("upload_timeout", "shutdown_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")


class _CutOff(Exception):
    """A video request stopped by the server's shutdown (its client gets no answer)."""


class _Reject(Exception):
    """A request the client can fix: becomes a JSON error with ``status``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


# --------------------------------------------------------------------------- request parameters

def _int_param(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise _Reject(400, f"{name} must be an integer from {lo} to {hi}, got {value[:40]!r}") from None
        if not lo <= n <= hi:
            raise _Reject(400, f"{name} must be from {lo} to {hi}, got {n}")
        return n
    return parse


def _saturation(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not 0.0 <= x <= MAX_SATURATION:  # also refuses nan and inf
        raise _Reject(400, f"saturation must be a number from 0 to {MAX_SATURATION:g}, got {value[:40]!r}")
    return x


def _format(value: str) -> str:
    v = value.lower().lstrip(".")
    if v != "same" and v not in OUTPUT_FORMATS:
        raise _Reject(400, f"format must be one of same, {', '.join(OUTPUT_FORMATS)}; got {value[:40]!r}")
    return v


#: Accepted parameters (query string or form fields) and their parsers.
PARAMETERS: dict[str, Callable[[str], Any]] = {
    "render_size": _int_param("render_size", 8, MAX_RENDER_SIZE),
    "saturation": _saturation,
    "format": _format,
    "quality": _int_param("quality", 1, 100),
}


def parse_parameters(raw: Mapping[str, str]) -> dict[str, Any]:
    """Validate request parameters; unknown names and bad values raise a 400 with the reason."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in PARAMETERS:
            raise _Reject(400, f"unknown parameter {key[:40]!r}; accepted: {', '.join(PARAMETERS)}")
        if value != "":
            out[key] = PARAMETERS[key](value)
    return out


# --------------------------------------------------------------------------- uploads

@dataclass
class _Upload:
    data: bytes
    name: str  # client's file name, only used in messages and the download name
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)  # small form fields (parameters)

    @property
    def is_video(self) -> bool:
        """Known by its first bytes when they are a video container's or an image format's
        (a clip sent as ``image/jpeg``, a photo named ``.mp4``: what it is wins over what it is
        called); else said by the type or the name.  An animated GIF, WebP or PNG is a video
        (frames in time: the answer is an MP4), as `streamcolor video` takes it."""
        if looks_like_video(self.data):
            return True
        if looks_like_image(self.data):
            return self.animated
        return self.content_type.startswith("video/") or PurePath(self.name).suffix.lower() in VIDEO_SUFFIXES

    @functools.cached_property
    def animated(self) -> bool:
        """Whether the upload is an animated image, from its header (nothing is decoded)."""
        return image_io.image_kind(io.BytesIO(self.data)) == "animation"


#: ISO-BMFF brands of still images (HEIF, AVIF): an ``ftyp`` box alone does not make a video.
_STILL_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


#: The GUID an ASF file (WMV, WMA) starts with.
_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def looks_like_video(data: bytes) -> bool:
    """Whether ``data`` starts like a video container: MP4/MOV (an ``ftyp`` box of a
    brand that is not a still image), Matroska/WebM, AVI, ASF/WMV, FLV, DV, MPEG-TS (also as
    M2TS/MTS, with 4-byte time codes before each packet) or MPEG-PS."""
    if data[4:8] == b"ftyp":
        return data[8:12] not in _STILL_BRANDS
    return (data.startswith(b"\x1a\x45\xdf\xa3") or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
            or data.startswith(b"\x00\x00\x01\xba") or data.startswith(_ASF_HEADER) or data.startswith(b"FLV\x01")
            or data.startswith(b"\x1f\x07\x00")  # DV: its first DIF block, a header
            # MPEG-TS: sync bytes at four packet starts, 188 bytes apart (M2TS: 192, after a time code);
            # never over an image's own header (a BMP's or TIFF's size field can hold 0x47)
            or (not looks_like_image(data) and any(
                len(data) > start + 3 * step and all(data[start + k * step] == 0x47 for k in range(4))
                for start, step in ((0, 188), (4, 192)))))


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like an image file the server reads: JPEG, PNG, GIF, WebP, TIFF, BMP, HEIF/AVIF."""
    return (data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM"))
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or (data[4:8] == b"ftyp" and data[8:12] in _STILL_BRANDS))


#: Bytes of an answer written at a time; a client must take each within --upload-timeout.
_SEND_CHUNK = 64 << 10
#: Slowest upload accepted, bytes/s on average once its first ``upload_timeout`` seconds are over:
#: a client trickling a byte at a time would otherwise hold a --max-pending slot for good.
MIN_UPLOAD_RATE = 16 * 1024


class _Pace:
    """Watches one upload arrive: a 408 when nothing comes for ``timeout`` s, or when,
    past its first ``timeout`` s, it has averaged under :data:`MIN_UPLOAD_RATE`."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.start = time.monotonic()
        self.received = 0

    async def step(self, step: Awaitable[Any]) -> Any:
        try:
            got = await asyncio.wait_for(step, self.timeout)
        except asyncio.TimeoutError:
            raise _Reject(408, f"upload stalled: nothing arrived for {self.timeout:g} s; send it again",
                          {"Connection": "close"}) from None
        if isinstance(got, (bytes, bytearray)):
            self.received += len(got)
        elapsed = time.monotonic() - self.start
        if elapsed > self.timeout and self.received < MIN_UPLOAD_RATE * elapsed:
            raise _Reject(408, f"upload too slow: {self.received:,} bytes in {elapsed:.0f} s (under "
                               f"{MIN_UPLOAD_RATE // 1024} KiB/s); send it again", {"Connection": "close"})
        return got


async def _read_limited(read: Callable[[int], Any], limit: int, pace: _Pace, what: str = "upload") -> bytes:
    """Read chunks until the end; more than ``limit`` bytes is a 413, a stalled or trickling upload a 408."""
    chunks, total = [], 0
    while True:
        chunk = await pace.step(read(_CHUNK))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            hint = "streamcolor serve --max-upload" if what == "upload" else "parameters are short values"
            raise _Reject(413, f"{what} is over the limit of {limit:,} bytes ({hint})")
        chunks.append(chunk)


async def _read_upload(request: web.Request, limit: int, timeout: float = 30.0) -> _Upload:
    """The file of a multipart form (field ``file``), or else the raw body; 408 when the
    client stalls for ``timeout`` s or trickles (:class:`_Pace`)."""
    pace = _Pace(timeout)
    length = request.content_length
    if request.content_type == "multipart/form-data":
        if length is not None and length > limit + _MULTIPART_SLACK:
            raise _Reject(413, f"upload of {length:,} bytes is over the limit of {limit:,} bytes "
                               "(streamcolor serve --max-upload)")
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError) as exc:
            raise _Reject(400, f"malformed multipart body: {exc}") from None
        upload: _Upload | None = None
        fields: dict[str, str] = {}
        try:
            while (part := await pace.step(reader.next())) is not None:
                if request.content.total_bytes > limit + _MULTIPART_SLACK:  # (chunked: no length said up front)
                    raise _Reject(413, f"upload is over the limit of {limit:,} bytes "
                                       "(streamcolor serve --max-upload)")
                if not isinstance(part, BodyPartReader):
                    raise _Reject(400, "nested multipart bodies are not accepted: send the file as 'file'")
                if part.filename is not None or part.name == "file":
                    if upload is not None:
                        raise _Reject(400, "one file per request: send each file in its own request")
                    data = await _read_limited(part.read_chunk, limit, pace)
                    upload = _Upload(data, part.filename or "upload", part.headers.get("Content-Type", ""))
                elif part.name in PARAMETERS:
                    if part.name in fields:
                        raise _Reject(400, f"the form field {part.name!r} is given twice")
                    fields[part.name] = (await _read_limited(part.read_chunk, _FIELD_LIMIT, pace,
                                                             part.name)).decode(
                        "utf-8", "replace").strip()
                else:
                    raise _Reject(400, f"unknown form field {str(part.name)[:40]!r}: send the file as 'file' "
                                       f"and parameters among {', '.join(PARAMETERS)}")
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError, RequestPayloadError) as exc:
            raise _Reject(400, f"malformed multipart body: {exc}", {"Connection": "close"}) from None
        if upload is None:
            raise _Reject(400, "no file in the form: send it as the field 'file' (curl -F file=@photo.jpg)")
        upload.fields = fields
    else:
        if length is not None and length > limit:
            raise _Reject(413, f"upload of {length:,} bytes is over the limit of {limit:,} bytes "
                               "(streamcolor serve --max-upload)")
        try:
            data = await _read_limited(request.content.read, limit, pace)
        except RequestPayloadError as exc:  # (a body its Content-Encoding does not decode)
            raise _Reject(400, f"malformed body: {exc}", {"Connection": "close"}) from None
        ctype = request.content_type
        ext = (mimetypes.guess_extension(ctype) or "") if ctype.startswith(("image/", "video/")) else ""
        upload = _Upload(data, f"upload{ext}", ctype)
    if not upload.data:
        raise _Reject(400, f"{upload.name}: empty upload (0 bytes); send an image file "
                           "(curl -F file=@photo.jpg or --data-binary @photo.jpg)")
    return upload


def _download_name(name: str, ext: str) -> str:
    """A safe ASCII file name for Content-Disposition: ``<stem>-colour.<ext>``."""
    stem = unicodedata.normalize("NFKD", PurePath(name.replace("\\", "/")).stem)  # été -> e + accent: ete
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.encode("ascii", "ignore").decode()).strip("._") or "image"
    return f"{stem[:80]}-colour.{ext}"


def content_disposition(name: str, ext: str) -> str:
    """``inline`` with the ASCII name of :func:`_download_name` for old clients, and the upload's
    own name (``<stem>-colour.<ext>``, any script) as RFC 6266's ``filename*``, which browsers
    prefer: a photo called ``été à Nice.jpg`` downloads as ``été à Nice-colour.jpg``."""
    stem = PurePath(name.replace("\\", "/")).stem
    stem = "".join(c for c in stem if c.isprintable() and c not in '/\\"')[:120].strip(". ") or "image"
    return (f'inline; filename="{_download_name(name, ext)}"; '
            f"filename*=UTF-8''{urllib.parse.quote(f'{stem}-colour.{ext}', safe='')}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- the application

class _State:
    """What the handlers share: the engine, its batcher, the worker threads, counters."""

    def __init__(self, engine: "Engine", options: ServeOptions, colour: ColorOptions):
        self.engine = engine
        self.options = options
        self.colour = dataclasses.replace(colour, max_pixels=options.max_pixels)
        self.batcher = BatchingEngine(engine, options.batching)
        workers = options.workers or options.batching.max_batch + (os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="streamcolor-serve")
        self.video_slot = asyncio.Semaphore(1)
        self.budget = memory.AsyncMemoryBudget(options.memory_budget)  # big images wait for each other
        self.in_flight = 0
        self.idle = asyncio.Event()  # set while no request is in progress (what shutdown waits for)
        self.idle.set()
        self.closing = False  # set on shutdown: requests still arriving on open connections get 503
        self.cut_off = threading.Event()  # set when shutdown stops waiting: a video in progress stops at its next frame
        self.started = time.time()
        self.responses: dict[str, int] = {"2xx": 0, "4xx": 0, "5xx": 0}
        self.static = _static_files(STATIC_DIR)

    def options_for(self, params: Mapping[str, Any]) -> ColorOptions:
        changes = {k: params[k] for k in ("render_size", "saturation", "quality") if k in params}
        return dataclasses.replace(self.colour, **changes) if changes else self.colour

    def colorize_image(self, upload: _Upload, colour: ColorOptions, fmt: str) -> tuple[bytes, str, int]:
        """Worker thread: decode, colorize (batched), encode -> (bytes, Pillow format, batch size)."""
        decoded = image_io.read_image(upload.data, max_pixels=colour.max_pixels, name=upload.name)
        out_fmt = OUTPUT_FORMATS[fmt] if fmt != "same" else image_io.written_format(decoded.format)  # (GIF: PNG)
        try:  # (as `streamcolor image` writes it: the same picture, byte for byte)
            data = encode_colorized(decoded, out_fmt, self.batcher, colour)
        except (OutputError, OSError, ValueError) as exc:
            raise _Reject(422, f"{upload.name}: cannot encode the result as {out_fmt} ({exc}); "
                               "try format=png") from None
        return data, out_fmt, self.batcher.last_batch_size

    def colorize_video(self, upload: _Upload, params: Mapping[str, Any], tmp: Path,
                       gone: Callable[[], bool] = lambda: False) -> tuple[Path, str]:
        """Worker thread: a short video through the video pipeline -> (the output file, extension).

        It works in the folder ``tmp``, which the caller made and removes once the answer is sent,
        whatever happened (:func:`_remove_folder`): a colorized video can be many times its upload
        (a low-bitrate clip comes back at CRF 18), so it is sent from the file, a chunk at a time,
        never held whole in memory."""
        from streamcolor.video import VideoOptions, colorize_video

        suffix = PurePath(upload.name).suffix.lower()
        # (FFmpeg goes by the content; the name only helps it)
        suffix = suffix if suffix in VIDEO_SUFFIXES else ".gif" if upload.animated else ".mp4"
        options = VideoOptions(render_size=params.get("render_size", self.colour.render_size),
                               saturation=params.get("saturation", self.colour.saturation),
                               max_pixels=self.colour.max_pixels)  # the same pixel-bomb guard as images
        limit = self.options.max_video_frames

        def too_long(frames: str) -> _Reject:
            return _Reject(413, f"{upload.name}: {frames} frames, over this server's limit of {limit:,} "
                                "(--max-video-frames); cut it, or run `streamcolor video` on it")

        if upload.animated:  # (counted from its header, before its frames are decoded into a temporary file)
            frames = image_io.frame_count(io.BytesIO(upload.data), cap=limit + 1)  # (more are not counted)
            if frames > limit:
                raise too_long(f"more than {limit:,}")

        def each_frame(done: int, total: int | None) -> None:  # (in this thread, after each frame)
            if self.cut_off.is_set():
                raise _CutOff(f"{upload.name}: cut off by the server's shutdown")
            if gone():  # nobody is waiting for the answer any more: the video slot goes to the next upload
                raise _CutOff(f"{upload.name}: its client left; stopped")
            if done > limit:  # (a backstop: its packets or its header were counted before any work)
                raise too_long(f"over {limit:,}")

        src = tmp / f"input{suffix}"
        src.write_bytes(upload.data)
        if not upload.animated:  # counted packet by packet, before any work (a container's own count can lie)
            from streamcolor.video.containers import video_packet_count

            if video_packet_count(src, limit) > limit:
                raise too_long(f"more than {limit:,}")
        for ext in ("mp4", "mkv"):  # MP4 plays in browsers; MKV holds any audio codec the source has
            dst = tmp / f"colour.{ext}"
            try:
                with _naming(tmp, upload.name):
                    colorize_video(src, dst, engine=self.engine, options=options, progress=each_frame)
            except InputError as exc:  # said of the upload, not of the server's temporary file
                raise InputError(_for_client(str(exc), str(tmp), upload.name)) from None
            except OutputError as exc:
                if ext == "mkv":
                    raise _Reject(422, _for_client(str(exc), str(tmp), upload.name)) from None
                log.info("%s: MP4 cannot hold it (%s); writing MKV", upload.name, _for_client(str(exc), str(tmp),
                                                                                           upload.name))
                continue
            src.unlink()  # (the disk holds the answer alone while it is sent)
            return dst, ext
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.cut_off.set()  # (a video still running would hold the worker pool's shutdown until its end)
        self.batcher.close()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _remove_folder(path: str | os.PathLike) -> None:
    """Remove a video request's working folder; one that cannot be removed is logged (the next
    start's :func:`sweep_abandoned_folders` takes it), never raised over the request's answer."""
    try:
        shutil.rmtree(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


def _video_bytes(upload: _Upload, budget: int) -> int:
    """The memory a video upload is counted as: its frames in flight by their size
    (:func:`streamcolor.memory.video_bytes`) and the upload itself (held, written to a file,
    and an answer of about its size).  One over the budget runs alone, as a big image does
    (a 4K video needs about 3 GiB); a 413 when its frames alone need more than
    :data:`VIDEO_OVER_BUDGET` times the budget: a 6000x6000 video would need 13 GiB whatever
    its length."""
    from streamcolor.video.containers import frame_size

    size = frame_size(io.BytesIO(upload.data))
    frames = memory.video_bytes(*size) if size else memory.UNKNOWN_BYTES  # (unreadable: it fails at once)
    if frames > VIDEO_OVER_BUDGET * budget:
        raise _Reject(413, f"{upload.name}: frames of {size[0]}x{size[1]} need about {frames / 2**30:.1f} GiB to "
                           f"colorize, over {VIDEO_OVER_BUDGET} times this server's memory budget of "
                           f"{budget / 2**30:.1f} GiB; send a smaller video (or raise --memory-budget)")
    return frames + 3 * len(upload.data)


#: How many times the memory budget a video's frames may need and still run (alone).
VIDEO_OVER_BUDGET = 4


#: Start of the names of the temporary folders a video request works in (then the server's pid).
TEMP_PREFIX = "streamcolor-serve-"


def sweep_abandoned_folders(root: str | os.PathLike | None = None) -> int:
    """Remove the temporary folders of video requests that a server killed outright (SIGKILL,
    a power cut) left in ``root`` (the system's temporary folder): those named with the pid of a
    process that is gone and owned by this user.  Why: each holds a whole upload and its
    colorized video, and nothing else would ever remove them.  Returns the number removed."""
    root = Path(root or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        m = re.fullmatch(re.escape(TEMP_PREFIX) + r"(\d+)-[^/]+", entry.name)
        if m is None or int(m[1]) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(m[1]), 0)
            continue  # its server is running
        except ProcessLookupError:
            pass
        except OSError:  # another user's process (EPERM), or the entry went away
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        log.info("removed %s, left by a server that was killed", entry.path)
        removed += 1
    return removed


#: (the server's temporary folder, the upload's name) of the video the current thread colorizes
_UPLOAD = threading.local()


def upload_names_in_logs() -> None:
    """Log lines said while a video upload is colorized name the upload, not the server's temporary
    file (``clip.mp4: 641x481 has an odd side ...``, not ``/tmp/streamcolor-...-x/input.mp4: ...``):
    a log-record factory (once a process) rewrites streamcolor's records made in a thread that
    :func:`_naming` marks.  Why a factory: the lines come from the video modules' own loggers, whose
    records a filter on one logger never sees."""
    made = logging.getLogRecordFactory()
    if getattr(made, "streamcolor_uploads", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = made(*args, **kwargs)
        pair = getattr(_UPLOAD, "pair", None)
        if pair is not None and record.name.startswith("streamcolor"):
            text = record.getMessage()
            if pair[0] in text:
                record.msg, record.args = _for_client(text, *pair), ()
        return record

    factory.streamcolor_uploads = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


@contextlib.contextmanager
def _naming(tmp: Path, name: str) -> Iterator[None]:
    """While in this block, this thread's log lines name ``name`` for the paths under ``tmp``."""
    _UPLOAD.pair = (str(tmp), name)
    try:
        yield
    finally:
        _UPLOAD.pair = None


def _for_client(message: str, tmp: str, name: str) -> str:
    """An error message as the client should read it: the server's temporary
    paths replaced by the upload's name, and no advice meant for the command line."""
    message = re.sub(re.escape(tmp) + r"[^\s:]*", name, message)
    return re.sub(r" \(`streamcolor [^)]*\)", "", message)


_STATE = web.AppKey("streamcolor_state", _State)


def _static_files(root: Path) -> dict[str, tuple[bytes, str]]:
    """Name -> (content, type) of the regular files directly in ``root``, read once.

    Serving from this table rather than from the file system means no request
    path, however encoded, can reach another file."""
    files = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and not p.is_symlink() and not p.name.startswith("."):
            ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            files[p.name] = (p.read_bytes(), ctype)
    return files


@web.middleware
async def _errors_and_log(request: web.Request, handler) -> web.StreamResponse:
    """Every error as JSON with a reason; one access-log line per request."""
    state = request.app[_STATE]
    t0 = time.perf_counter()
    try:
        response = await handler(request)
    except _Reject as exc:
        headers = dict(exc.headers or {})
        close = headers.pop("Connection", "").lower() == "close"
        response = _error(exc.status, exc.message, headers)
        if close:  # the rest of the body never came: the connection cannot carry another request
            response.force_close()
    except InputError as exc:
        response = _error(400, str(exc))
    except _CutOff as exc:
        log.warning("%s", exc)
        response = _error(503, f"{exc}; send it again once the server is back", {"Retry-After": "5"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {}
        if exc.status == 405:
            allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
            headers["Allow"] = ", ".join(allowed)
            message = f"method {request.method} is not allowed on {request.path[:200]}; use {' or '.join(allowed)}"
        elif exc.status == 404:
            message = f"not found: {request.path[:200]} (the API is under /api/, the page at /)"
        else:
            message = exc.text or exc.reason
        response = _error(exc.status, message, headers)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:  # the client went away mid-request: this answer goes nowhere
        response = _error(400, "the client closed the connection before the request was complete")
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path[:200])
        response = _error(500, "internal server error; the server log has the details")
    status = response.status
    state.responses[f"{status // 100}xx"] = state.responses.get(f"{status // 100}xx", 0) + 1
    access_log.info("%s %s %d %s %.0f ms", request.method, request.path_qs[:200], status,
                    response.content_length if response.content_length is not None else "-",
                    (time.perf_counter() - t0) * 1e3)
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")


async def _page(request: web.Request) -> web.Response:
    body, ctype = request.app[_STATE].static["index.html"]
    return web.Response(body=body, content_type=ctype, charset="utf-8",
                        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})


async def _static(request: web.Request) -> web.Response:
    entry = request.app[_STATE].static.get(request.match_info["name"])
    if entry is None:
        raise web.HTTPNotFound()
    body, ctype = entry
    headers = {"Cache-Control": "no-cache"}
    if ctype == "text/html":  # (the page under its own name: framed and scripted as the page at / is)
        headers["Content-Security-Policy"] = _CSP
    return web.Response(body=body, content_type=ctype, charset="utf-8" if ctype.startswith("text/") else None,
                        headers=headers)


async def _health(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    o = state.options
    return web.json_response({
        "status": "ok", "version": __version__, "engine": state.engine.name, "model": state.engine.info.name,
        "batching": {"max_batch": o.batching.max_batch, "max_wait_ms": o.batching.max_wait_ms},
        "defaults": {"render_size": state.colour.render_size, "saturation": state.colour.saturation,
                     "quality": state.colour.quality},
        "limits": {"max_upload": o.max_upload, "max_pixels": o.max_pixels, "max_pending": o.max_pending,
                   "max_render_size": MAX_RENDER_SIZE, "memory_budget": o.memory_budget,
                   "upload_timeout_s": o.upload_timeout},
        "video": o.video, "in_flight": state.in_flight, "uptime_s": round(time.time() - state.started, 1),
    })


async def _models(request: web.Request) -> web.Response:
    from streamcolor.engines import available_backends, available_models

    state = request.app[_STATE]
    info = state.engine.info
    meta = info.meta
    return web.json_response({
        "loaded": {"name": info.name, "engine": state.engine.name, "architecture": info.architecture,
                   "extractor": info.extractor, "description": meta.get("description", ""),
                   "render_size": meta.get("render_size"), "saturation": meta.get("saturation"),
                   "licence": meta.get("licence")},
        "shipped": available_models(), "backends": available_backends(),
        "note": "one model per process: start another `streamcolor serve -m NAME --port N` for another model",
    })


async def _stats(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return web.json_response({"batching": state.batcher.stats().as_dict(), "responses": state.responses,
                              "in_flight": state.in_flight, "memory": _memory_stats(state),
                              "uptime_s": round(time.time() - state.started, 1)})


def _memory_stats(state: _State) -> dict[str, int]:
    b = state.budget
    return {"budget": b.total, "used": b.used, "peak": b.peak, "waiting": b.waiting}


async def _send(request: web.Request, body: bytes | Path, ctype: str, headers: Mapping[str, str],
                timeout: float, name: str) -> web.StreamResponse:
    """Write the answer here, in the handler, so that its request keeps its --max-pending slot and
    its share of the memory budget until the bytes are out; a client that takes less than
    ``_SEND_CHUNK`` bytes of it in ``timeout`` s is cut off (its buffered answer dropped), not
    kept in memory without end.  A client that goes away mid-answer is a note, not an error.
    ``body`` is the answer's bytes, or a file read a chunk at a time (a video's answer)."""
    response = web.StreamResponse(headers=headers)
    response.content_type = ctype
    loop = asyncio.get_running_loop()
    with contextlib.ExitStack() as stack:
        if isinstance(body, Path):
            f = stack.enter_context(open(body, "rb"))
            response.content_length = os.fstat(f.fileno()).st_size

            async def chunks():
                while chunk := await loop.run_in_executor(None, f.read, _SEND_CHUNK):
                    yield chunk
        else:
            response.content_length = len(body)
            view = memoryview(body)

            async def chunks():
                for start in range(0, len(view), _SEND_CHUNK):
                    yield view[start:start + _SEND_CHUNK]
        await response.prepare(request)
        try:
            async for chunk in chunks():
                await asyncio.wait_for(response.write(chunk), timeout)
            await asyncio.wait_for(response.write_eof(), timeout)  # it waits for the last bytes to drain too
        except asyncio.TimeoutError:
            log.warning("%s: the client took under %d KiB of its answer in %g s; connection dropped", name,
                        _SEND_CHUNK >> 10, timeout)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:
            log.info("%s: the client went away before its whole answer was sent", name)
    return response


async def _colorize(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    if state.closing:
        raise _Reject(503, "the server is shutting down; send it again once it is back",
                      {"Retry-After": "5", "Connection": "close"})
    if state.in_flight >= state.options.max_pending:
        raise _Reject(503, f"busy: {state.in_flight} requests in progress (--max-pending); retry shortly",
                      {"Retry-After": "1"})
    state.in_flight += 1
    state.idle.clear()
    try:
        params = parse_parameters(request.query)  # refuse bad parameters before reading the body
        upload = await _read_upload(request, state.options.max_upload, state.options.upload_timeout)
        params.update(parse_parameters(upload.fields))
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        # (Pillow reads headers in Python: off the event loop, which a 4 MB TIFF of 40,000 pages held for 15 s)
        video = await loop.run_in_executor(None, lambda: upload.is_video)
        if video and not state.options.video:
            raise _Reject(415, f"{upload.name}: videos are turned off on this server (--no-video)")
        # an upload is counted from its header alone, and stays counted until its answer is sent: an
        # answer its client does not read is memory too (videos also run one at a time); a photo's
        # count has the engine's share for it at its render size (16 photos at 1024 took 1.6 GB past it)
        need = await (loop.run_in_executor(None, _video_bytes, upload, state.options.memory_budget) if video
                      else loop.run_in_executor(None, functools.partial(
                          memory.encoded_bytes, upload.data, params.get("render_size", state.colour.render_size),
                          max_pixels=state.options.max_pixels)))
        async with state.budget.hold(need) as share:
            folder = None
            try:
                if video:
                    async with state.video_slot:  # one video at a time; photos keep flowing meanwhile
                        # (made here, so that it is removed below whatever happens to the worker or to this task)
                        folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
                        # (read from the worker thread: a flag the event loop sets when the client goes)
                        transport = request.transport
                        answer, ext = await loop.run_in_executor(
                            state.pool, state.colorize_video, upload, params, folder,
                            lambda: transport is None or transport.is_closing())
                    ctype = "video/mp4" if ext == "mp4" else "video/x-matroska"
                    batch = 0
                    share.shrink(len(upload.data) + _SEND_CHUNK)  # sent from its file, a chunk at a time
                else:
                    answer, fmt, batch = await loop.run_in_executor(
                        state.pool, state.colorize_image, upload, state.options_for(params),
                        params.get("format", "same"))
                    ext, ctype = _EXTENSION[fmt], _MIME[fmt]
                    share.shrink(len(answer))  # while it is sent, only the answer's bytes are in memory
                ms = (time.perf_counter() - t0) * 1e3
                return await _send(request, answer, ctype, {
                    "Content-Disposition": content_disposition(upload.name, ext),
                    "X-Streamcolor-Batch": str(batch), "Server-Timing": f"colorize;dur={ms:.1f}",
                    "Cache-Control": "no-store"}, state.options.upload_timeout, upload.name)
            finally:
                if folder is not None:
                    await loop.run_in_executor(None, _remove_folder, folder)
    finally:
        state.in_flight -= 1
        if not state.in_flight:
            state.idle.set()


def create_app(engine: "Engine", options: ServeOptions = ServeOptions(), *,
               colour: ColorOptions | None = None) -> web.Application:
    """The aiohttp application (routes in the module docstring).

    Parameters
    ----------
    engine:
        The one loaded engine every request uses; the caller keeps it (the
        app does not close it).
    options:
        Limits and batching, see :class:`ServeOptions`.
    colour:
        Default render size, saturation and JPEG/WebP quality (requests may
        override them); the model's recommendations when None.
        ``max_pixels`` comes from ``options``.
    """
    # A malformed Content-Disposition parameter (a client's file name) makes aiohttp warn with the
    # client's text on stderr, once per distinct text: not for the server's output.  The upload is
    # then named "upload", as one without a name.
    warnings.filterwarnings("ignore", category=BadContentDispositionParam)
    warnings.filterwarnings("ignore", category=BadContentDispositionHeader)  # ("ignore" keeps no registry entry)
    one_line_protocol_errors()
    upload_names_in_logs()
    sweep_abandoned_folders()
    state = _State(engine, options, colour or model_options(engine))
    # client_max_size only guards body readers we do not use; uploads are limited while streaming.
    app = web.Application(middlewares=[_errors_and_log], client_max_size=options.max_upload + _MULTIPART_SLACK)
    app[_STATE] = state
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/health", _health)
    app.router.add_get("/api/models", _models)
    app.router.add_get("/api/stats", _stats)
    app.router.add_post("/api/colorize", _colorize)
    app.on_response_prepare.append(_security_headers)

    async def close_state(app: web.Application) -> None:  # after in-flight requests finished
        await asyncio.get_running_loop().run_in_executor(None, state.close)

    app.on_cleanup.append(close_state)
    return app


class ProtocolErrorLine(logging.Filter):
    """A request that is not HTTP (a negative Content-Length, TLS bytes on the plain port) logged by
    aiohttp as an error with its parser's traceback: one warning line instead, naming the client and
    the reason.  The client still gets aiohttp's 400; a real error's traceback stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            text = str(getattr(exc, "message", "") or exc)  # (its lines: the reason, the bytes, a caret under them)
            reason = " ".join(ln.strip() for ln in text.splitlines() if ln.strip().strip("^"))
            said = record.getMessage().replace("Error handling request", "a request that is not valid HTTP", 1)
            record.msg, record.args, record.exc_info, record.exc_text = "%s (answered 400): %s", (
                said, one_line(reason)), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def one_line_protocol_errors() -> None:
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ProtocolErrorLine) for f in server.filters):
        server.addFilter(ProtocolErrorLine())


def app_stats(app: web.Application) -> dict[str, Any]:
    """The same counters as ``GET /api/stats`` (batching, responses, requests in progress, memory),
    from Python."""
    state = app[_STATE]
    return {"batching": state.batcher.stats().as_dict(), "responses": dict(state.responses),
            "in_flight": state.in_flight, "memory": _memory_stats(state)}


# --------------------------------------------------------------------------- running it

def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _start(app: web.Application, options: ServeOptions) -> tuple[web.AppRunner, str]:
    # keepalive_timeout also closes a connection that has not sent a whole request's headers by then
    # (aiohttp arms it at connect): slow or idle clients hold no file descriptor for long
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_RUNNER_GRACE,
                           keepalive_timeout=options.upload_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, options.host, options.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(exc.errno, f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from exc
    host, port = runner.addresses[0][:2]
    url = _url(host, port)
    if not _is_loopback(host):
        log.warning("listening on %s: other machines can reach it and it has no authentication", host)
    return runner, url


#: Seconds aiohttp's own shutdown gives handlers after :func:`_stop` has waited for them.
_RUNNER_GRACE = 2.0


async def _stop(runner: web.AppRunner, app: web.Application, timeout: float,
                hurry: asyncio.Event | None = None) -> None:
    """Stop listening, let the requests in progress finish (``timeout`` s at most, or until
    ``hurry`` is set: a second Ctrl-C), then close.

    The requests are waited for here, before ``runner.cleanup()``: aiohttp's own
    graceful shutdown stops reading from open connections at once, so an upload
    still arriving would never complete (its client got no answer)."""
    state = app[_STATE]
    state.closing = True
    for site in list(runner.sites):
        await site.stop()
    if state.in_flight:
        log.info("shutting down: no new connections; waiting for %d request(s) in progress", state.in_flight)
        waits = [asyncio.ensure_future(state.idle.wait())]
        if hurry is not None:
            waits.append(asyncio.ensure_future(hurry.wait()))
        done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if state.in_flight:
            log.warning("shutting down: %d request(s) still in progress %s are cut off", state.in_flight,
                        "at the second signal" if hurry is not None and hurry.is_set() else f"after {timeout:g} s")
            state.cut_off.set()  # a video stops at its next frame, so the worker threads can be joined
    else:
        log.info("shutting down")
    await runner.cleanup()
    log.info("stopped")


def run(engine: "Engine", options: ServeOptions = ServeOptions(), *, colour: ColorOptions | None = None,
        on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then shut down gracefully.

    The listening socket closes first; requests in progress get up to
    ``options.shutdown_timeout`` seconds to finish; then the batcher and the
    worker threads stop.  A second Ctrl-C or SIGTERM cuts off what is in
    progress and raises KeyboardInterrupt once closed.  ``on_ready`` gets
    the URL once the socket listens.  The engine stays open (its owner closes it).
    """
    async def main() -> None:
        app = create_app(engine, options, colour=colour)
        runner, url = await _start(app, options)
        log.info("listening on %s (%s; batches of up to %d, %g ms wait) - Ctrl-C to stop",
                 url, engine.name, options.batching.max_batch, options.batching.max_wait_ms)
        if on_ready is not None:
            on_ready(url)
        stop, hurry = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.getsignal(sig) for sig in signals}

        def restore() -> None:
            for sig in signals:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])  # (remove_signal_handler would leave SIGTERM's default: death)

        def on_signal() -> None:
            if not stop.is_set():
                stop.set()  # the first: graceful
            else:
                hurry.set()  # the second: cut off what is in progress; a third is the previous handler's
                restore()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
        try:
            await stop.wait()
            await _stop(runner, app, options.shutdown_timeout, hurry)
        finally:
            if not hurry.is_set():
                restore()
        if hurry.is_set():
            raise KeyboardInterrupt

    asyncio.run(main())


class Server:
    """A server running in a background thread: for tests, benchmarks and notebooks.

    >>> with Server(engine, ServeOptions(port=0)) as server:
    ...     requests.post(server.url + "/api/colorize", files={"file": open("old.jpg", "rb")})

    ``stop()`` shuts down gracefully, as ``run`` does on SIGTERM.
    """

    def __init__(self, engine: "Engine", options: ServeOptions = ServeOptions(), *,
                 colour: ColorOptions | None = None):
        self.engine, self.options, self.colour = engine, options, colour
        self.url = ""
        self.app: web.Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="streamcolor-server", daemon=True)

    def start(self, timeout: float = 30.0) -> "Server":
        """Start listening; returns when the socket is open (raises what start-up raised)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"server did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stats(self) -> dict[str, Any]:
        """Batching and response counters (as ``GET /api/stats``)."""
        assert self.app is not None
        return app_stats(self.app)

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown: refuse new connections, let requests finish, stop the threads."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout if timeout is not None else self.options.shutdown_timeout + 10)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.app = create_app(self.engine, self.options, colour=self.colour)
                runner, self.url = await _start(self.app, self.options)
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await _stop(runner, self.app, self.options.shutdown_timeout)

        asyncio.run(main())
