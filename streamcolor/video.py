"""Colorize a video: PyAV decode -> engine -> PyAV encode, streamed.

The only module that imports ``av``.  Four stages run at once, joined by
small bounded queues, so memory stays flat however long the film is::

    reader (thread)     demux; decode video frames (frame threading on);
                        full-res L* and the network input of each frame;
                        audio / subtitle packets passed on, untouched, in order
    network (thread)    scene cuts, embedding per scene or every N frames,
                        a*b* predicted a batch at a time
    compose (thread)    temporal smoothing of the low-res a*b*, upsampled onto
                        the frame's own full-res L*, RGB -> the encoder's YUV
    writer (caller)     encode video, remux the copied packets, progress bar

Only colour comes from the network: every output frame has its input's size
(one edge-replicated pixel is added to an odd side when the pixel format
subsamples chroma, see :class:`VideoOptions`), lightness and timestamps.
Audio and subtitle packets are copied byte for byte; the output is written
under a temporary name in the destination folder and renamed into place at
the end, so a failed or interrupted run leaves nothing at the output path.

Segments, for splitting one video across workers (``streamcolor.ray.video``
uses these and nothing else of this module): :func:`video_keyframes` and
:func:`plan_segments` cut the video stream into runs of whole GOPs;
:func:`colorize_segment` runs the same pipeline on one run, decoding from an
earlier keyframe so the scene detector and the stabilizer arrive warmed up;
:func:`join_segments` joins the results by stream copy and copies the other
streams from the source once.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import logging
import os
import queue
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import av
import av.error
import cv2
import numpy as np

from streamcolor import image_io, tempfiles, yuv420
from streamcolor.colorize import (ColorOptions, engine_for, keep_work_arrays, network_input, pixels_to_l,
                                  render, thread_scratch)
from streamcolor.engines import lab
from streamcolor.errors import InputError, OutputError
from streamcolor.progress import Progress, progress_bar

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: The encoder used unless another is asked for.
DEFAULT_CODEC = "libx264"
#: Hardware H.264 encoders tried, in order, by ``codec="auto"`` (each must open here).
HARDWARE_CODECS = ("h264_nvenc",)
#: Suffix of the default output name: ``film.mp4`` -> ``film-colour.mp4``.
OUTPUT_SUFFIX = "-colour"
#: Bins of the lightness histogram compared between frames to find scene cuts.
CUT_BINS = 32
#: Decode failures tolerated (each skips one damaged packet, as ffmpeg does) before giving up.
MAX_BAD_PACKETS = 25
#: Container formats that hold still images, not videos.
_IMAGE_FORMATS = {"image2", "image2pipe"}
#: Tags that describe the old file or its old video encoding, not the new one (compared lower-case).
_STALE_TAGS = ("encoder", "major_brand", "minor_version", "compatible_brands", "rotate", "duration", "bps",
               "number_of_frames", "number_of_bytes", "_statistics_")


#: Containers whose video is a sequence of frame slots of 1 / frame rate, without timestamps.
_FRAME_COUNTED = ("avi",)


def _needs_even(pix_fmt: str) -> tuple[bool, bool]:
    """Whether (width, height) must be even for ``pix_fmt`` (chroma subsampled by 2 that way)."""
    probe = 1001
    try:
        fmt = av.VideoFormat(pix_fmt, probe, probe)
    except ValueError as exc:
        raise ValueError(f"unknown pixel format {pix_fmt!r}") from exc
    if sum(1 for c in fmt.components if not c.is_alpha) < 3:
        raise ValueError(f"pixel format {pix_fmt!r} has no colour channels: the colour would be thrown away "
                         "(use yuv420p, yuv444p, yuv420p10le...)")
    return fmt.chroma_width(probe) != probe, fmt.chroma_height(probe) != probe


@dataclass(frozen=True)
class VideoOptions:
    """How a video is colorized and encoded.  Override with ``dataclasses.replace``.

    Odd sizes: yuv420p (and any chroma-subsampled format) needs even sides, so
    an odd width or height gets one extra column or row, a copy of the last
    one.  Every real pixel keeps its lightness; nothing is cropped.
    """

    render_size: int | None = None  # network input, longer side; None: the model's recommendation
    saturation: float | None = None  # gain on predicted a*b*; None: the model's recommendation
    batch_size: int | None = None  # frames per engine call; None: the engine's video_batch_size (2 on CPUs)
    codec: str = "auto"  # a PyAV video encoder; "auto": h264_nvenc when it opens here, else libx264
    pix_fmt: str = "yuv420p"  # output pixel format; yuv420p plays everywhere
    quality: int = 18  # constant quality: crf (x264, x265, VP9), cq (NVENC); lower is better and bigger
    preset: str | None = None  # encoder speed preset ("medium", "p5"...); None: the encoder's default
    encoder_options: Mapping[str, str] = field(default_factory=dict)  # extra encoder options, passed as is
    stabilize: bool = True  # smooth a*b* over time against chroma flicker (reset at scene cuts)
    stabilize_strength: float = 0.6  # weight of the previous frame's colour, 0 (off) .. <1
    motion: bool = True  # warp the previous colour along optical flow; False: per-pixel EMA gated by L
    embed_every: int = 48  # recompute the global embedding at least every N frames (1: every frame)
    scene_cut: float = 0.3  # L-histogram distance (0..1) from the previous frame that starts a scene
    decode_threads: int = 0  # decoder threads; 0: one per core
    compose_threads: int = 0  # threads that build full-res output frames; 0: min(4, cores)
    # gray frames into yuv420p are composed straight into the 4:2:0 planes (streamcolor.yuv420: almost
    # everywhere within one code of the RGB route, a third of its work at 1080p); True: always make
    # full-res sRGB and let FFmpeg convert it, the reference route
    rgb_compose: bool = False

    def __post_init__(self) -> None:
        lab.check_render_size(self.render_size)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.embed_every < 1:
            raise ValueError(f"embed_every must be >= 1, got {self.embed_every}")
        if not 0.0 <= self.stabilize_strength < 1.0:
            raise ValueError(f"stabilize_strength must be in [0, 1), got {self.stabilize_strength}")
        if not 0.0 < self.scene_cut <= 1.0:
            raise ValueError(f"scene_cut must be in (0, 1], got {self.scene_cut}")
        _needs_even(self.pix_fmt)  # raises ValueError for an unknown pixel format

    def color_options(self, engine: "Engine") -> ColorOptions:
        """The per-frame colour options, with the model's recommendations filled in."""
        return ColorOptions(render_size=self.render_size, saturation=self.saturation).for_engine(engine)


def default_output(src: str | os.PathLike) -> Path:
    """``<stem>-colour<ext>`` next to ``src``."""
    src = Path(src)
    return src.with_name(f"{src.stem}{OUTPUT_SUFFIX}{src.suffix}")


def output_path(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """``dst``, or :func:`default_output` when None; OutputError when it is
    ``src`` itself by any spelling (a link, another case: see :mod:`streamcolor.outputs`)."""
    from streamcolor.outputs import plan_outputs

    src = Path(src)
    dst = Path(dst) if dst is not None else default_output(src)
    plan_outputs([(src, dst)])
    return dst


def colorize_video(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                   engine: "Engine | str | None" = None, options: VideoOptions = VideoOptions(),
                   progress: Progress = None, render_size: int | None = None, batch_size: int | None = None,
                   codec: str | None = None, quality: int | None = None,
                   stabilize: bool | None = None) -> Path:
    """Colorize a video file.

    Parameters
    ----------
    src:
        A video file PyAV can read (any gray or colour source; colour is
        reduced to lightness first).
    dst:
        Output file; its extension picks the container.  Default:
        ``<stem>-colour<ext>`` next to ``src``.  Written under a temporary
        name and renamed at the end: nothing is left at ``dst`` on failure.
    engine:
        A loaded engine, or a model name; the shared default model when None.
    options:
        See :class:`VideoOptions`.
    progress:
        None (default): a tqdm bar (frames, frames/s, ETA) on stderr only when it is a terminal; True/False: always/never;
        a callable ``fn(done, total)``: called after each frame instead of a bar
        (see :mod:`streamcolor.progress`).
    render_size, batch_size, codec, quality, stabilize:
        Shortcuts for the :class:`VideoOptions` fields of the same names.

    Returns
    -------
    The output path.  Frame count, timestamps (pts, time base), frame rate,
    duration, lightness, rotation and metadata follow the input; audio and
    subtitle streams are copied packet for packet.

    Raises
    ------
    InputError
        ``src`` is missing, not a video, has no video stream or no decodable frame.
    OutputError
        ``dst`` cannot be written, or its container cannot hold a stream to copy.
    """
    shortcuts = dict(render_size=render_size, batch_size=batch_size, codec=codec, quality=quality,
                     stabilize=stabilize)
    options = dataclasses.replace(options, **{k: v for k, v in shortcuts.items() if v is not None})
    for name, value in (("src", src), ("dst", dst)):
        if not isinstance(value, (str, os.PathLike)) and not (name == "dst" and value is None):
            raise TypeError(f"{name} must be a path (str or os.PathLike){' or None' if name == 'dst' else ''}, "
                            f"got {type(value).__name__}")
    src = Path(src)
    dst = output_path(src, dst)
    _run(src, dst, engine_for(engine), options, progress)
    return dst


def _run(src: Path, dst: Path, engine: "Engine", options: VideoOptions, progress: Progress,
         segment: "Segment | None" = None) -> "_Job":
    """Open ``src``, run the pipeline into a temporary file next to ``dst`` and rename it into place."""
    with _open_input(src) as inp:
        vin = _video_stream(inp, src)
        staged = _temp_path(dst)
        try:
            job = _Job(src, dst, staged.path, inp, vin, engine, options, options.color_options(engine), progress,
                       segment)
            job.run()
            staged.commit()
        except BaseException as exc:
            staged.discard()
            if isinstance(exc, OSError):
                raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from exc
            raise
    return job


# --------------------------------------------------------------------------- input / output


def _open_input(src: Path):
    if not src.exists():
        raise image_io.no_such_file(src)
    if src.is_dir():
        raise InputError(f"{src}: is a folder, not a video file")
    mode = src.stat().st_mode
    if not stat.S_ISREG(mode):  # FFmpeg would block on a FIFO and read a device forever
        raise InputError(f"{src}: not a regular file ({image_io.file_type(mode)}); only files are read")
    try:
        container = av.open(str(src), "r", metadata_errors="replace")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise InputError(f"{src}: cannot be opened as a video: not a video, or damaged or truncated ({exc})") from exc
    if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
        container.close()
        raise InputError(f"{src}: a still image, not a video (`streamcolor image`; colorize_image in Python)")
    return container


def _video_stream(container, src: Path):
    """The first real video stream (cover art excluded)."""
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise InputError(f"{src}: no video stream (streams: {kinds})")
    if len(videos) > 1:
        log.warning("%s: %d video streams; colorizing #%d, dropping the others", src, len(videos), videos[0].index)
    vin = videos[0]
    if not vin.codec_context.width or not vin.codec_context.height:
        raise InputError(f"{src}: video stream #{vin.index} has no frame size (damaged header?)")
    return vin


def _temp_path(dst: Path) -> tempfiles.Staged:
    """A locked, empty temporary file next to ``dst`` with its extension (it
    picks the container), after sweeping the ones a killed run left for ``dst``
    (only this tool's temporaries for this output, and only when their writer
    is gone: see :mod:`streamcolor.tempfiles`)."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)  # as image and batch do
        tempfiles.sweep(dst.parent, [dst.name])
        return tempfiles.create(dst, keep_suffix=True)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write in {dst.parent} ({exc.strerror or exc})") from exc


def _fresh_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Metadata minus the tags that describe the old encoding."""
    return {k: v for k, v in tags.items() if not k.lower().startswith(_STALE_TAGS)}


def _copy_streams(inp, vin, out, src: Path, dst: Path) -> dict[int, tuple[Any, Any]]:
    """Output streams for the input streams copied untouched (every one but video):
    input index -> (input stream, output stream).  Audio and subtitles must fit
    the new container (OutputError otherwise); data and attachments (timecodes,
    fonts) are kept where the container takes them; attachments carry no packets."""
    copied: dict[int, tuple[Any, Any]] = {}
    for s in inp.streams:
        if s is vin or s.type == "video":
            continue
        try:
            ost = out.add_stream_from_template(s)
        except (ValueError, av.error.FFmpegError) as exc:
            if s.type in ("audio", "subtitle"):
                name = s.codec_context.name if s.codec_context else "?"
                raise OutputError(f"{dst}: the {out.format.name} format cannot hold the {name} {s.type} "
                                  f"stream #{s.index} ({exc}); write to a {src.suffix} file instead") from exc
            log.warning("%s: dropping %s stream #%d: %s", src, s.type, s.index, exc)
            continue
        ost.metadata.update(_fresh_tags(s.metadata) if s.type != "attachment" else s.metadata)
        ost.disposition = s.disposition
        if s.type != "attachment":
            copied[s.index] = (s, ost)
    return copied


@functools.lru_cache(maxsize=None)
def _encoder_opens(codec: str) -> bool:
    """Whether ``codec`` exists and opens on this machine (hardware encoders need their device)."""
    if codec not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25)
        ctx.open()
        return True
    except (av.error.FFmpegError, ValueError, RuntimeError) as exc:
        log.debug("encoder %s does not open: %s", codec, exc)
        return False


#: Containers that cannot hold H.264, and what ``codec="auto"`` encodes into them instead.
AUTO_BY_CONTAINER = {"webm": ("libvpx-vp9", "libvpx")}


def pick_codec(codec: str, container: str | None = None) -> str:
    """Resolve ``"auto"`` to a hardware H.264 encoder that opens here, else :data:`DEFAULT_CODEC`
    (the choice and its reason are logged once per process); for a ``container`` that cannot
    hold H.264 (WebM), its own encoder (:data:`AUTO_BY_CONTAINER`)."""
    if codec != "auto":
        return codec
    for name in AUTO_BY_CONTAINER.get(container or "", ()):
        if name in av.codecs_available:
            log.info("codec='auto': encoding with %s (a %s file cannot hold H.264)", name, container)
            return name
    return _pick_auto()


@functools.lru_cache(maxsize=1)
def _pick_auto() -> str:
    for hw in HARDWARE_CODECS:
        if _encoder_opens(hw):
            log.info("codec='auto': encoding with %s on the GPU (NVIDIA NVENC)", hw)
            return hw
    gpu = os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")
    missing = [hw for hw in HARDWARE_CODECS if hw not in av.codecs_available]
    why = (f"this PyAV build has no {', '.join(missing)}" if missing
           else f"{', '.join(HARDWARE_CODECS)} does not open ({'driver or session limit?' if gpu else 'no NVIDIA GPU'})")
    (log.warning if gpu else log.info)("codec='auto': %s; encoding with %s on the CPU", why, DEFAULT_CODEC)
    return DEFAULT_CODEC


def check_codec(codec: str) -> None:
    """ValueError unless ``codec`` is ``"auto"`` or a video encoder of this PyAV
    build (an audio encoder such as aac, or a misspelt name, is refused here
    rather than failing deep inside the encoder)."""
    if codec == "auto":
        return
    try:
        found = av.codec.Codec(codec, "w")
    except Exception as exc:  # UnknownCodecError and friends
        raise ValueError(f"codec {codec!r}: no such encoder in this PyAV build "
                         "(video encoders: libx264, libx265, libvpx-vp9, h264_nvenc...)") from exc
    if found.type != "video":
        raise ValueError(f"codec {codec!r} is an {found.type} encoder, not a video encoder "
                         "(use libx264, libx265, libvpx-vp9, h264_nvenc...)")


def check_pix_fmt(codec: str, pix_fmt: str) -> None:
    """ValueError unless ``codec`` can encode ``pix_fmt`` (what FFmpeg would refuse later
    with a bare "Invalid argument"), naming the formats it takes."""
    try:
        formats = av.codec.Codec(codec, "w").video_formats
    except Exception:  # an unknown codec: check_codec says so
        return
    names = [f.name for f in formats or ()]
    if names and pix_fmt not in names:
        raise ValueError(f"{codec} cannot encode {pix_fmt}; it takes {', '.join(names)}")


def codec_options(codec: str, options: VideoOptions) -> dict[str, str]:
    """Constant-quality and preset options in each encoder family's own words."""
    q = str(options.quality)
    if codec in ("libx264", "libx265", "libsvtav1"):
        opts = {"crf": q}
    elif codec.endswith("_nvenc"):
        opts = {"rc": "vbr", "cq": q, "b": "0"}
    elif codec in ("libvpx-vp9", "libvpx", "libaom-av1"):
        opts = {"crf": q, "b": "0"}
    else:
        log.warning("quality=%s is not applied to %s (set encoder_options instead)", q, codec)
        opts = {}
    if options.preset:
        opts["preset"] = options.preset
    opts.update({str(k): str(v) for k, v in options.encoder_options.items()})
    if codec == "libx265" and "log-level" not in opts.get("x265-params", ""):
        # x265 prints its own log (two dozen lines a file) past FFmpeg's: at streamcolor's level instead
        level = logging.getLogger("streamcolor").getEffectiveLevel()
        x265_level = ("debug" if level <= logging.DEBUG else "info" if level <= logging.INFO
                      else "warning" if level <= logging.WARNING else "error")
        opts["x265-params"] = ":".join(filter(None, [opts.get("x265-params"), f"log-level={x265_level}"]))
    return opts


# --------------------------------------------------------------------------- scene cuts, stability


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


# --------------------------------------------------------------------------- lightness of a frame

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


# --------------------------------------------------------------------------- the pipeline


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


class _Stopped(Exception):
    """Raised inside a stage when another stage failed or the caller gave up."""


_END = object()  # end of stream marker, one per queue


@dataclass
class _Frame:
    """One video frame on its way through the pipeline."""

    index: int
    pts: int  # in the input stream's time base
    duration: int
    l_full: np.ndarray  # float16 (H, W) L* in [0, 100] (steps <= 0.06); or uint8 luma codes when lut is set
    l_net: np.ndarray  # float32 (h, w, 1), network-scaled L at the render size
    ab: np.ndarray | None = None  # float32 (h, w, 2) in [-1, 1], from the network
    cut: bool = False  # first frame of a scene
    lut: np.ndarray | None = None  # float32 (256,): L* of each luma code of a gray frame (see gray_lut)
    l_half: np.ndarray | None = None  # float32 (H/2, W/2) L* of a gray frame composed straight to 4:2:0
    yuv: "yuv420.Yuv420Composer | None" = None  # its composer

    def lightness(self) -> np.ndarray:
        """Full-resolution L* (H, W), float32."""
        if self.lut is not None:
            return cv2.LUT(self.l_full, self.lut)
        return self.l_full.astype(np.float32)


class _Job:
    """One colorize_video or colorize_segment call: streams set up, stages run, output finished.

    With a ``segment``, only its frames are read (from a seek to its warm-up
    keyframe) and written (video alone: other streams are copied when joining);
    the warm-up frames pass through the scene detector and the stabilizer and
    are dropped before the encoder."""

    def __init__(self, src: Path, dst: Path, tmp: Path, inp, vin, engine: "Engine",
                 options: VideoOptions, colour: ColorOptions, progress: Progress, segment: "Segment | None" = None):
        self.src, self.dst, self.tmp = src, dst, tmp
        self.segment = segment
        self.kept: list[int] = []  # pts of the frames written
        self.inp, self.vin, self.engine = inp, vin, engine
        self.options, self.colour, self.progress = options, colour, progress
        self.batch_size = options.batch_size or engine.video_batch_size
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        ctx = vin.codec_context
        self.width, self.height = ctx.width, ctx.height
        self.time_base = vin.time_base or Fraction(1, 90000)
        self.rate = vin.average_rate or vin.guessed_rate or vin.base_rate or Fraction(25)
        even_w, even_h = _needs_even(options.pix_fmt)
        self.pad = (self.height % 2 if even_h else 0, self.width % 2 if even_w else 0)
        if any(self.pad) and (segment is None or segment.index == 0):  # (once per video, not per segment)
            log.warning("%s: %dx%d has an odd side, which %s cannot hold: the output is %dx%d (the last %s "
                        "repeated); --pix-fmt yuv444p keeps the size", src, self.width, self.height,
                        options.pix_fmt, self.width + self.pad[1], self.height + self.pad[0],
                        "row and column" if all(self.pad) else "row" if self.pad[0] else "column")
        # BT.709 for HD, BT.601 for SD: what players assume for untagged video; tagged on the output too.
        self.hd = self.height >= 720
        # gray frames of even size into a yuv420p output skip the full-res RGB frame (streamcolor.yuv420)
        self.direct_yuv = options.pix_fmt in yuv420.FORMATS and not any(self.pad) and not options.rgb_compose
        self.display_matrix: list[int] | None = None  # from the first frame's side data
        self.copy_map: dict[int, Any] = {}  # input stream index -> output stream, for copied packets
        self.copy_map_in: list = []  # the input streams copied
        self.bad_packets = 0
        self.frames_in = 0
        self._size_warned = False

    # ---- plumbing

    def _put(self, q: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drain(self, q: queue.Queue) -> Iterator[Any]:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def _thread(self, name: str, target, *args) -> threading.Thread:
        def run():
            try:
                target(*args)
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the caller's thread
                self.errors.append(exc)
                self.stop.set()

        t = threading.Thread(target=run, name=f"streamcolor-{name}", daemon=True)
        t.start()
        return t

    # ---- stages

    def _read(self, out: queue.Queue) -> None:
        """Demux everything in file order: video decoded to _Frame, other packets passed on
        (with a segment: from its warm-up keyframe to its end, video alone)."""
        keep_work_arrays()  # this thread's L* of each frame: the same memory from frame to frame
        vin, src, seg = self.vin, self.src, self.segment
        vin.codec_context.thread_type = "AUTO"
        vin.codec_context.thread_count = self.options.decode_threads
        if seg is not None and seg.index:
            self.inp.seek(seg.decode_from, stream=vin, backward=True, any_frame=False)
        wanted = [vin, *self.copy_map_in]
        last_pts: int | None = None
        last_dur = 0
        demux = self.inp.demux(wanted)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # damaged or cut short: keep what was read
                log.warning("%s: input ends early at frame %d (%s)", src, self.frames_in, exc)
                packet = None
            if packet is not None and packet.stream.index != vin.index:  # (flush packets all say stream_index 0)
                if packet.size:  # the zero-size flush packets demux adds at the end are not data
                    self._put(out, packet)
                continue
            try:
                frames = vin.decode(packet)
            except av.error.FFmpegError as exc:
                self.bad_packets += 1
                if self.bad_packets > MAX_BAD_PACKETS:
                    raise InputError(f"{src}: too many damaged video packets ({exc})") from exc
                log.warning("%s: skipping a damaged video packet near frame %d: %s", src, self.frames_in, exc)
                continue
            for frame in frames:
                pts = frame.pts
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + max(1, last_dur)
                if last_pts is not None and pts <= last_pts:
                    log.warning("%s: frame %d has pts %d <= previous %d; nudged", src, self.frames_in, pts, last_pts)
                    pts = last_pts + 1
                if seg is not None:
                    if seg.end is not None and pts >= seg.end:
                        self._put(out, _END)
                        return
                    if pts < seg.decode_from:  # before the seek point: decoded on the way, not ours
                        continue
                last_pts, last_dur = pts, frame.duration or last_dur
                self._put(out, self._to_item(frame, pts))
            if packet is None:  # flushed the decoder after an early end
                break
        self._put(out, _END)

    def _to_item(self, frame, pts: int) -> _Frame:
        if frame.width != self.width or frame.height != self.height:
            if not self._size_warned:
                log.warning("%s: frame size changes to %dx%d; scaled back to %dx%d", self.src, frame.width,
                            frame.height, self.width, self.height)
                self._size_warned = True
            frame = frame.reformat(width=self.width, height=self.height)
        if self.frames_in == 0:
            self._first_frame(frame)
        kw = rgb_kwargs(frame)
        luma = gray_luma(frame)
        if luma is not None:  # a gray frame: L* straight from its luma codes, no RGB conversion
            lut = gray_lut(frame.format.name, kw.get("src_color_range"))
            # L* only until its half-res average and the network input are made
            l_full = cv2.LUT(luma, lut, dst=thread_scratch().take("l_frame", luma.shape))
            comp = yuv420.composer(lut, hd=self.hd, saturation=self.colour.saturation) if self.direct_yuv else None
            l_half = comp.half_l(l_full) if comp is not None else None
            item = _Frame(index=self.frames_in, pts=pts, duration=frame.duration or 0, l_full=luma, lut=lut,
                          l_net=frame_network_input(l_full, l_half, self.colour), l_half=l_half, yuv=comp)
        else:
            pixels = frame.to_ndarray(**kw)
            l_full = pixels_to_l(pixels, out=thread_scratch().take("l_frame", pixels.shape[:2]))
            item = _Frame(index=self.frames_in, pts=pts, duration=frame.duration or 0,
                          l_full=l_full.astype(np.float16), l_net=network_input(l_full, self.colour.render_size,
                                                                           self.colour.size_multiple))
            if self.frames_in == 0:
                self._note_colour(pixels)
        self.frames_in += 1
        return item

    def _first_frame(self, frame) -> None:
        sd = frame.side_data.get("DISPLAYMATRIX")
        if sd is not None and len(bytes(sd)) == 36:
            self.display_matrix = [int(v) for v in np.frombuffer(bytes(sd), dtype=np.int32)]

    def _note_colour(self, pixels: np.ndarray) -> None:
        small = cv2.resize(pixels, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        if np.abs(small - small.mean(axis=-1, keepdims=True)).mean() > 0.02 * (65535 if small.max() > 255 else 255):
            log.info("%s: a colour source; only its lightness is used", self.src)

    def _infer(self, inq: queue.Queue, out: queue.Queue) -> None:
        """Scene cuts, embeddings per scene / every N frames, a*b* a batch at a time."""
        opts, engine = self.options, self.engine
        prev_hist: np.ndarray | None = None
        since_key = 0
        embedding: np.ndarray | None = None
        for items in self._batches(inq, self.batch_size):
            frames = [it for it in items if isinstance(it, _Frame)]
            if frames:
                net = np.stack([f.l_net for f in frames])
                keys = []
                for i, f in enumerate(frames):
                    hist = l_histogram(f.l_net)
                    f.cut = prev_hist is None or histogram_distance(hist, prev_hist) > opts.scene_cut
                    prev_hist = hist
                    if f.cut or since_key >= opts.embed_every:
                        keys.append(i)
                        since_key = 0
                    since_key += 1
                if engine.reuses_embedding:
                    fresh = engine.embed(engine.extractor_input(net[keys])) if keys else None
                    rows = []
                    for i in range(len(frames)):
                        if i in keys:
                            embedding = fresh[keys.index(i)]
                        rows.append(embedding)
                    ab = engine.predict(*self._full_batch(net, np.stack(rows)))
                else:  # one-graph model: the embedding comes out of the same pass as the features
                    ab = engine.predict(*self._full_batch(net))
                for f, ab_i in zip(frames, ab):
                    f.ab = ab_i
            self._put(out, items)
        self._put(out, _END)

    def _full_batch(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """On a GPU, a short batch (a video's last) repeated up to the batch size (callers keep the
        rows they sent: ``zip`` stops at the frames).  Why: a JIT engine (Keras on JAX) compiles
        each new batch shape, which takes seconds and keeps its executable in memory, for one call
        whose extra rows cost the GPU next to nothing; this way a video's colorizer runs one batch
        shape, whatever the video's length (a two-graph model's classifier still sees as many key
        frames as a batch has scene cuts).  Other GPU engines run the extra rows at that same small cost."""
        k = len(arrays[0])
        if not self.engine.on_gpu or k >= self.batch_size:
            return arrays
        return tuple(np.concatenate([a, np.repeat(a[-1:], self.batch_size - k, axis=0)]) for a in arrays)

    def _batches(self, q: queue.Queue, n: int) -> Iterator[list]:
        """Items in order, grouped so that each group holds at most ``n`` frames."""
        group: list = []
        count = 0
        for item in self._drain(q):
            group.append(item)
            if isinstance(item, _Frame):
                count += 1
                if count == n:
                    yield group
                    group, count = [], 0
        if group:
            yield group

    def _compose(self, inq: queue.Queue, out: queue.Queue) -> None:
        """Smooth (in order, low-res), then upsample, recombine with full-res L and convert to
        the encoder's pixel format (full-res, a batch spread over a few threads)."""
        opts = self.options
        stab = ChromaStabilizer(opts.stabilize_strength, motion=opts.motion) if opts.stabilize else None
        workers = opts.compose_threads or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="streamcolor-compose",
                                initializer=keep_work_arrays) as pool:
            for items in self._drain(inq):
                frames = [it for it in items if isinstance(it, _Frame)]
                for f in frames:
                    if stab is not None:
                        f.ab = stab(on_grid(f.l_net[..., 0], f.ab.shape[:2]), f.ab, cut=f.cut)
                rendered = iter(pool.map(self._render, frames))
                for it in items:
                    self._put(out, next(rendered) if isinstance(it, _Frame) else it)
        self._put(out, _END)

    def _render(self, f: _Frame):
        """One frame: a*b* upsampled onto its full-res L*, sRGB, padded if odd, as an encoder frame
        (a gray frame into yuv420p: composed straight into its planes, see streamcolor.yuv420)."""
        if f.yuv is not None and f.l_half is not None:
            vf = av.VideoFrame(self.width, self.height, "yuv420p")
            f.yuv.write(f.l_full, f.l_half, f.ab, *(plane_array(vf, i) for i in range(3)))  # into the frame's planes
            vf.pts, vf.time_base, vf.duration = f.pts, self.time_base, f.duration
            return vf
        rgb = render(f.lightness(), f.ab, saturation=self.colour.saturation, dtype=np.uint8)
        ph, pw = self.pad
        if ph or pw:
            rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format=self.options.pix_fmt, dst_colorspace="ITU709" if self.hd else "ITU601", dst_color_range="MPEG")
        vf.pts, vf.time_base, vf.duration = f.pts, self.time_base, f.duration
        return vf

    # ---- the writer (caller's thread)

    def run(self) -> None:
        try:
            out = av.open(str(self.tmp), "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.dst}: cannot write this container ({exc}); use .mp4, .mkv or .mov") from exc
        try:
            self._setup(out)
            self._write(out)
        except BaseException:
            self.stop.set()
            try:
                out.close()
            except Exception:  # already failing; the temp file is removed by the caller
                pass
            raise
        try:
            out.close()  # writes the trailer
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.dst}: cannot finish the file: {exc}") from exc

    def _setup(self, out) -> None:
        opts, vin, inp = self.options, self.vin, self.inp
        codec = pick_codec(opts.codec, out.format.name)
        try:
            check_codec(codec)
            check_pix_fmt(codec, opts.pix_fmt)
        except ValueError as exc:
            raise OutputError(f"{self.dst}: {exc}") from exc
        try:
            vout = out.add_stream(codec, rate=self.rate)
        except ValueError as exc:
            raise OutputError(f"{self.dst}: the {out.format.name} format cannot hold {codec} video "
                              f"({exc}); pick another codec or container") from exc
        ctx = vout.codec_context
        ctx.width, ctx.height = self.width + self.pad[1], self.height + self.pad[0]
        ctx.pix_fmt = opts.pix_fmt
        # AVI has no timestamps, only frame slots of 1 / rate: frames in the source's time base would be
        # read as that many empty slots (600 "fps"); there the frames are counted in 1 / rate instead
        tb = 1 / Fraction(self.rate) if out.format.name in _FRAME_COUNTED else self.time_base
        ctx.time_base = tb
        vout.time_base = tb
        if vin.sample_aspect_ratio:
            ctx.sample_aspect_ratio = vin.sample_aspect_ratio
        ctx.color_range = 1  # limited ("MPEG"), as converted in _compose
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1 if self.hd else 6  # BT.709 / SMPTE 170M
        ctx.options = codec_options(codec, opts)
        if out.format.name in _FRAME_COUNTED and "bf" not in opts.encoder_options:
            ctx.options = {**ctx.options, "bf": "0"}  # no B-frames: frame slots cannot say a display order
        try:  # now, not at the first frame: a bad preset or option is said before any work, and plainly
            ctx.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.dst}: {codec} does not open with {dict(ctx.options)} and pix_fmt "
                              f"{opts.pix_fmt} ({getattr(exc, 'strerror', None) or exc}); check --preset, --crf "
                              "and --pix-fmt") from exc
        vout.metadata.update(_fresh_tags(vin.metadata))
        vout.disposition = vin.disposition
        self.vout, self.codec = vout, codec
        if self.segment is not None:  # video alone: the rest is copied from the source once, when joining
            out.metadata.update(_fresh_tags(inp.metadata))
            return
        for ist, ost in _copy_streams(inp, vin, out, self.src, self.dst).values():
            self.copy_map[ist.index] = ost
            self.copy_map_in.append(ist)
        out.metadata.update(_fresh_tags(inp.metadata))
        try:
            chapters = inp.chapters()
            if chapters:
                out.set_chapters(chapters)
        except (AttributeError, ValueError, av.error.FFmpegError) as exc:
            log.warning("%s: chapters not copied: %s", self.src, exc)

    def _total(self) -> int | None:
        if self.segment is not None:
            return None
        vin = self.vin
        if vin.frames:
            return int(vin.frames)
        if vin.duration and vin.time_base:
            return max(1, round(float(vin.duration * vin.time_base * self.rate)))
        if self.inp.duration:
            return max(1, round(self.inp.duration / 1e6 * float(self.rate)))
        return None

    def _write(self, out) -> None:
        frames_bound = max(4, self.batch_size)
        q_read = queue.Queue(maxsize=frames_bound + 16)  # frames and small packets
        q_net = queue.Queue(maxsize=1)  # whole batches
        q_yuv = queue.Queue(maxsize=frames_bound)
        threads = [self._thread("read", self._read, q_read),
                   self._thread("network", self._infer, q_read, q_net),
                   self._thread("compose", self._compose, q_net, q_yuv)]
        bar = progress_bar(self.progress, total=self._total(), unit="frame", desc=self.src.name, smoothing=0.1,
                           leave=False)
        pending: list = []  # copied packets that arrive before the first video frame
        written = 0
        try:
            for item in self._drain(q_yuv):
                if isinstance(item, av.Packet):
                    if written:
                        self._mux_copy(out, item)
                    else:
                        pending.append(item)
                    continue
                if not written and self.display_matrix is not None:
                    self.vout.set_display_matrix(self.display_matrix)
                elif not written and self.vin.metadata.get("rotate"):
                    self.vout.set_display_rotation(-float(self.vin.metadata["rotate"]))
                self._mux(out, item)
                written += 1
                for packet in pending:
                    self._mux_copy(out, packet)
                pending.clear()
                bar.update()
        except _Stopped:
            pass
        except BaseException:
            self.stop.set()
            raise
        finally:
            for t in threads:
                t.join()
            bar.close()
        if self.errors:
            raise self.errors[0]
        if not written:
            raise InputError(f"{self.src}: no video frame could be decoded")
        self._mux(out, None)
        if self.bad_packets:
            log.warning("%s: %d damaged video packets skipped", self.src, self.bad_packets)
        total = self._total()
        if total and written < 0.9 * total:
            log.warning("%s: %d frames decoded where the header announces about %d (damaged or truncated input?)",
                        self.src, written, total)

    def _mux(self, out, frame) -> None:
        """Encode one frame (None: flush the encoder) and mux what comes out."""
        if frame is not None:
            if self.segment is not None and frame.pts < self.segment.start:
                return  # warm-up frame: it only primed the scene detector and the stabilizer
            self.kept.append(int(frame.pts))
        try:
            out.mux(self.vout.encode(frame))
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.dst}: cannot encode/write video: {exc}") from exc

    def _mux_copy(self, out, packet) -> None:
        packet.stream = self.copy_map[packet.stream.index]
        try:
            out.mux(packet)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.dst}: cannot write a copied {packet.stream.type} packet: {exc}") from exc


# --------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segment:
    """A run of whole GOPs of the source's video stream (pts in the stream's time base).

    Frames with ``start <= pts < end`` are kept (``end`` None: to the end).
    Decoding starts at the keyframe ``decode_from <= start``: the frames before
    ``start`` only warm up the scene-cut detector and the chroma stabilizer
    and are dropped.
    """

    index: int
    start: int
    end: int | None
    decode_from: int


def video_keyframes(src: str | os.PathLike) -> tuple[list[int], Fraction, int]:
    """(keyframe pts, time base, packet count) of the video stream, from its packets (nothing decoded)."""
    src = Path(src)
    with _open_input(src) as inp:
        vin = _video_stream(inp, src)
        keyframes, count = [], 0
        for packet in inp.demux(vin):
            if not packet.size:
                continue
            count += 1
            if packet.is_keyframe and packet.pts is not None:
                keyframes.append(int(packet.pts))
        return keyframes, vin.time_base or Fraction(1, 90000), count


def plan_segments(keyframes: Sequence[int], time_base: Fraction, *, segment_s: float = 30.0,
                  warmup_s: float = 1.0) -> list[Segment]:
    """Cut a video into segments of whole GOPs, each at least ``segment_s`` long
    (the last may be shorter), each warmed up from the latest keyframe at least
    ``warmup_s`` before its start.  ``keyframes``: pts of the keyframes."""
    kf = sorted(set(keyframes))
    if not kf:
        return []
    min_ticks = segment_s / float(time_base)
    warm_ticks = warmup_s / float(time_base)
    starts = [kf[0]]
    for k in kf[1:]:
        if k - starts[-1] >= min_ticks:
            starts.append(k)
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        if i == 0 or warmup_s <= 0:
            decode_from = start
        else:
            earlier = [k for k in kf if k <= start - warm_ticks]
            decode_from = earlier[-1] if earlier else kf[0]
        segments.append(Segment(i, start, end, decode_from))
    return segments


def colorize_segment(src: str | os.PathLike, dst: str | os.PathLike, segment: Segment, *,
                     engine: "Engine | str | None" = None, options: VideoOptions = VideoOptions()) -> dict[str, int]:
    """Colorize the frames of one segment of ``src`` into the video file ``dst``:
    video only, with the source's time base and pts, through the same pipeline
    as :func:`colorize_video` (decoding from ``segment.decode_from`` and
    dropping the warm-up frames before ``segment.start``).

    Returns ``{"frames", "first_pts", "last_pts"}`` of the frames written.
    Raises InputError when the segment holds no frame, and as :func:`colorize_video`.
    """
    src, dst = Path(src), Path(dst)
    job = _run(src, dst, engine_for(engine), options, False, segment)
    if not job.kept:
        raise InputError(f"{src}: segment {segment.index} (pts {segment.start}..{segment.end}) has no frame")
    return {"frames": len(job.kept), "first_pts": job.kept[0], "last_pts": job.kept[-1]}


def join_segments(src: str | os.PathLike, segments: Sequence[str | os.PathLike], dst: str | os.PathLike) -> Path:
    """Join colorized segment files (from :func:`colorize_segment`) into ``dst``
    by stream copy (no re-encoding): their video packets in order, with the
    source's audio, subtitle and data packets copied from the source once,
    interleaved by time.  Timestamps are the segments' own (the source's), so
    they run on across the joins.  Written under a temporary name and renamed.

    Raises OutputError when a segment does not start with a keyframe, its
    timestamps go back, or its encoder settings differ from the first one's
    (the result would not play)."""
    src, dst = Path(src), Path(dst)
    if not segments:
        raise ValueError("no segments to join")
    staged = _temp_path(dst)
    tmp = staged.path
    try:
        with _open_input(src) as inp, av.open(str(segments[0])) as first, av.open(str(tmp), "w") as out:
            vin = _video_stream(inp, src)
            template = first.streams.video[0]
            extradata = bytes(template.codec_context.extradata or b"")
            vout = out.add_stream_from_template(template)
            vout.time_base = vin.time_base or template.time_base
            vout.metadata.update(_fresh_tags(vin.metadata))
            vout.disposition = vin.disposition
            copy_map = _copy_streams(inp, vin, out, src, dst)
            out.metadata.update(_fresh_tags(inp.metadata))

            def copied() -> Iterator[tuple[float, int, int, Any]]:
                if not copy_map:
                    return
                for n, packet in enumerate(inp.demux([s for s, _ in copy_map.values()])):
                    if packet.size and packet.stream.index in copy_map:
                        yield _packet_time(packet), 1, n, packet

            def frames() -> Iterator[tuple[float, int, int, Any]]:
                last_dts = None
                n = 0
                for path in segments:
                    with av.open(str(path)) as seg:
                        vs = seg.streams.video[0]
                        if bytes(vs.codec_context.extradata or b"") != extradata:
                            raise OutputError(f"{path}: encoder settings differ from the first segment's; "
                                              "cannot join by stream copy")
                        first_packet = True
                        for packet in seg.demux(vs):
                            if not packet.size:
                                continue
                            if first_packet and not packet.is_keyframe:
                                raise OutputError(f"{path}: does not start with a keyframe")
                            first_packet = False
                            if packet.dts is not None:
                                t = packet.dts * packet.time_base
                                if last_dts is not None and t <= last_dts:
                                    raise OutputError(f"{path}: timestamps go back at the join ({float(t):.3f} s)")
                                last_dts = t
                            n += 1
                            yield _packet_time(packet), 0, n, packet

            for _, kind, _, packet in heapq.merge(frames(), copied(), key=lambda e: (e[0], e[1], e[2])):
                packet.stream = vout if kind == 0 else copy_map[packet.stream.index][1]
                try:
                    out.mux(packet)
                except av.error.FFmpegError as exc:
                    raise OutputError(f"{dst}: cannot write a packet: {exc}") from exc
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    return dst


def _packet_time(packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0


# --------------------------------------------------------------------------- benchmark helpers


def make_clip(path: str | Path, width: int, height: int, frames: int, *, rate: int = 24, seed: int = 0) -> Path:
    """Write a gray H.264 test clip: two shots of smooth shapes panning, a moving
    square, film grain.  Throughput does not depend on the content, but codecs
    do, so the clip is not flat."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    pan = 2
    span = frames * pan + 1
    y, x = np.mgrid[0:height, 0:width + span].astype(np.float32)
    shots = []
    for s in range(2):
        img = 120 + 60 * np.sin(x / (23.0 + 11 * s)) * np.cos(y / (31.0 - 7 * s)) + 40 * (x / (width + span) - 0.5)
        for _ in range(6):
            cy, cx, r = rng.integers(0, height), rng.integers(0, width + span), rng.integers(height // 12 + 2,
                                                                                            height // 4 + 3)
            img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(20, 235)
        shots.append(img)
    grain = [rng.normal(0, 4, (height, width)).astype(np.float32) for _ in range(5)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "18"}
        for i in range(frames):
            shot, k = divmod(i, -(-frames // 2))
            g = shots[min(shot, 1)][:, k * pan: k * pan + width] + grain[i % 5]
            sq = max(2, height // 6)
            y0, x0 = (height // 3 + 2 * k) % (height - sq), (5 * k) % (width - sq)
            g[y0:y0 + sq, x0:x0 + sq] = 235
            gray = np.clip(g, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, -1), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    return path


def plain_encoder(out, codec: str, options: VideoOptions, width: int, height: int, rate, time_base):
    """A video stream in ``out`` with the pipeline's encoder settings and nothing else (no colour
    tags, no copied streams): for the codec floor and the benchmarks' reference loops."""
    vout = out.add_stream(codec, rate=rate)
    vout.width, vout.height, vout.pix_fmt = width, height, options.pix_fmt
    vout.time_base = vout.codec_context.time_base = time_base
    vout.options = codec_options(codec, options)
    return vout


def codec_floor(src: str | Path, dst: str | Path, options: "VideoOptions | None" = None) -> int:
    """Decode ``src`` and re-encode it to ``dst`` with the pipeline's encoder
    settings (:class:`~streamcolor.video.VideoOptions`), threads on, no colour
    work: the frames/s no colorizer can beat.  Returns the frame count."""
    options = options or VideoOptions()
    codec = pick_codec(options.codec)
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = plain_encoder(out, codec, options, vin.width, vin.height, vin.average_rate, vin.time_base)
        for frame in inp.decode(vin):
            out.mux(vout.encode(frame))
            n += 1
        out.mux(vout.encode())
    return n


def video_size(src: str | Path) -> tuple[int, int]:
    """(width, height) of the first video stream of ``src``."""
    with av.open(str(src)) as c:
        return c.streams.video[0].width, c.streams.video[0].height


__all__ = ["ChromaStabilizer", "Segment", "VideoOptions", "check_codec", "check_pix_fmt", "codec_floor", "colorize_segment",
           "colorize_video", "default_output", "histogram_distance", "join_segments", "l_histogram", "make_clip",
           "output_path", "pick_codec", "plain_encoder", "plan_segments", "video_keyframes", "video_size"]
