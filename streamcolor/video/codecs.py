"""Which video encoder, and its options in each encoder family's own words.

``codec="auto"`` is resolved here (NVENC when it opens on this machine, else
libx264; VP9 for WebM), and encoder names, pixel formats and options are
checked before any frame is decoded, so that a typo is said plainly.
"""

from __future__ import annotations

import functools
import logging
import os
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import av.error

if TYPE_CHECKING:
    from streamcolor.video.options import VideoOptions

log = logging.getLogger(__name__)


#: The encoder used unless another is asked for.
DEFAULT_CODEC = "libx264"
#: Hardware H.264 encoders tried, in order, by ``codec="auto"`` (each must open here).
HARDWARE_CODECS = ("h264_nvenc",)


def needs_even(pix_fmt: str) -> tuple[bool, bool]:
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


def open_probe(codec: str, *, pix_fmt: str = "yuv420p", options: dict[str, str] | None = None,
               size: int = 256) -> BaseException | None:
    """None where ``codec`` opens here for a plain ``size`` x ``size`` video at 25 fps with these
    settings, else the exception."""
    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = size, size, pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25)
        if options:
            ctx.options = options
        ctx.open()
        return None
    except (av.error.FFmpegError, ValueError, TypeError, RuntimeError) as exc:
        return exc


def nvidia_gpu() -> bool:
    """Whether this machine shows an NVIDIA driver's device."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")


#: The probe run in a child process by :func:`ffmpeg_says`: FFmpeg's errors while ``argv[1]`` opens.
_SAYS = """import sys
from fractions import Fraction
import av, av.logging
av.logging.set_level(av.logging.ERROR)
with av.logging.Capture() as logged:
    try:
        ctx = av.CodecContext.create(sys.argv[1], "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25)
        ctx.open()
    except Exception:
        pass
said = [m.strip() for lvl, _, m in logged if lvl <= av.logging.ERROR and m.strip()]
print("; ".join(dict.fromkeys(said)))
"""


def ffmpeg_says(codec: str, timeout: float = 30.0) -> str | None:
    """What FFmpeg logs while ``codec`` fails to open ("Cannot load libnvidia-encode.so.1"), or
    None where it says nothing (or the probe itself fails).

    Why a child process: FFmpeg says why a hardware encoder fails only in its log, which PyAV
    passes on only while a log level is set, and that setting is the whole process's: turning it
    on here would reroute other threads' FFmpeg messages meanwhile, and PyAV's log callback has
    hung a hardware encoder's open before (PyAV issue 751). The child costs a fraction of a
    second, paid only when an NVIDIA encoder fails on a machine with an NVIDIA GPU."""
    import subprocess
    import sys

    try:
        res = subprocess.run([sys.executable, "-c", _SAYS, codec], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return (res.stdout.strip() or None) if res.returncode == 0 else None


def encoder_error(codec: str) -> str | None:
    """None where ``codec`` exists and opens on this machine; else why not: for NVIDIA's encoders
    on a machine with an NVIDIA GPU, in FFmpeg's own words (:func:`ffmpeg_says`) with what they
    mean (:func:`explain_open_failure`); otherwise the error PyAV raised. Not cached: a session
    limit or a busy GPU may pass (:func:`encoder_opens` is)."""
    if codec not in av.codecs_available:
        return f"this PyAV build has no {codec}"
    exc = open_probe(codec)
    if exc is None:
        return None
    if codec.endswith("_nvenc"):
        if not nvidia_gpu():
            return "no NVIDIA GPU here"
        said = ffmpeg_says(codec)
        if said:
            return explain_open_failure(codec, said)
    return explain_open_failure(codec, getattr(exc, "strerror", None) or str(exc))


@functools.lru_cache(maxsize=None)
def encoder_opens(codec: str) -> bool:
    """Whether ``codec`` exists and opens on this machine (hardware encoders need their device)."""
    return codec in av.codecs_available and open_probe(codec) is None


#: What FFmpeg's NVENC says when it cannot start, and what that means for a user.
_NVENC_HINTS = (
    ("libcuda", "no NVIDIA driver here"),
    ("libnvidia-encode", "the NVIDIA driver's video encoder library is not installed here (in a container, "
                         "NVIDIA_DRIVER_CAPABILITIES must include 'video', e.g. docker run --gpus all "
                         "-e NVIDIA_DRIVER_CAPABILITIES=compute,utility,video)"),
    ("no capable devices", "this GPU has no video encoder (NVENC): NVIDIA's A100, H100 and H200, for example, have "
                           "none, and encoding runs on the CPU there"),
    ("nvenc API version", "the NVIDIA driver is older than this FFmpeg's NVENC needs: update the driver"),
    ("incompatible client key", "the NVIDIA driver refused the session (a consumer GPU's limit of "
                                "concurrent NVENC sessions?)"),
    ("out of memory", "no free NVENC session or GPU memory"),
)


def explain_open_failure(codec: str, said: str) -> str:
    """``said`` (FFmpeg's words) with, for an NVENC encoder, what they mean (:data:`_NVENC_HINTS`)."""
    if codec.endswith("_nvenc"):
        low = said.lower()
        for needle, meaning in _NVENC_HINTS:
            if needle.lower() in low:
                return f"{said}: {meaning}"
    return said


#: Containers that cannot hold H.264, and what ``codec="auto"`` encodes into them instead
#: (Ogg: Theora, where this PyAV build has it, else VP8, which FFmpeg's Ogg muxer holds too).
AUTO_BY_CONTAINER = {"webm": ("libvpx-vp9", "libvpx"), "ogv": ("libtheora", "libvpx"), "ogg": ("libtheora", "libvpx")}


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
    whys = []
    for hw in HARDWARE_CODECS:
        error = None if encoder_opens(hw) else encoder_error(hw)
        if error is None:
            log.info("codec='auto': encoding with %s on the GPU (NVIDIA NVENC)", hw)
            return hw
        whys.append(error if error.startswith("this PyAV build") else f"{hw} does not open ({error})")
    # on a machine with an NVIDIA GPU the user likely expected NVENC: warned, with FFmpeg's reason,
    # unless the GPU has no encoder at all (nothing to fix: said once, as the choice it is)
    gpu = nvidia_gpu()
    fixable = gpu and not any("has no video encoder" in why for why in whys)
    (log.warning if fixable else log.info)("codec='auto': %s; encoding with %s on the CPU", "; ".join(whys),
                                       DEFAULT_CODEC)
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


def check_container(path: str | os.PathLike) -> None:
    """ValueError unless FFmpeg can pick a container for ``path`` by its name (``film.txt``: it
    cannot; found out after the engine and the input were opened, as an item failure, before).
    A probe file of that suffix is opened for writing in a temporary folder and removed."""
    import tempfile

    suffix = os.path.splitext(os.fspath(path))[1]
    with tempfile.TemporaryDirectory(prefix="streamcolor-probe-") as tmp:
        try:
            probe = av.open(os.path.join(tmp, f"probe{suffix}"), "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: FFmpeg knows no video container by the name "
                             f"{suffix or '(no extension)'!r}; use .mp4, .mkv or .mov") from exc
        with probe:
            # a sound file (.wav: no video codec; .mp3: only a cover picture) or an animated picture
            if getattr(probe, "default_video_codec", None) in _NO_VIDEO:
                raise ValueError(f"{os.fspath(path)}: the {probe.format.long_name or probe.format.name} format "
                                 "holds no video; use .mp4, .mkv or .mov")


#: What FFmpeg names as a container's default "video" codec where it holds no video stream of frames.
_NO_VIDEO = frozenset({"none", "png", "apng", "gif", "webp"})


def codec_options(codec: str, options: VideoOptions) -> dict[str, str]:
    """Constant-quality and preset options in each encoder family's own words."""
    q = str(options.quality)
    if codec in ("libx264", "libx265", "libsvtav1"):
        # x264's scale grows by 12 with 10-bit pixels; x265's stays 0-51 (and it refuses more, where
        # x264 takes its top without a word), SVT-AV1's is 0-63
        top = {"libx264": 51 + (12 if "10" in options.pix_fmt else 0), "libx265": 51}.get(codec, 63)
        if options.quality > top:
            log.warning("crf %s is past %s's lowest quality, %d, for %s: %d is used", q, codec, top,
                        options.pix_fmt, top)
        opts = {"crf": str(min(options.quality, top))}
    elif codec.endswith("_nvenc"):
        opts = {"rc": "vbr", "cq": q, "b": "0"}
    elif codec in ("libvpx-vp9", "libvpx", "libaom-av1"):
        opts = {"crf": q, "b": "0"}
    else:
        # (said only where the user asked for a quality: the default's 18 is no choice of theirs)
        log.log(logging.WARNING if options.quality != type(options).quality else logging.DEBUG,
                "--crf %s is not applied to %s (it has no constant-quality setting here); its own default "
                "quality is used", q, codec)
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


def plain_encoder(out, codec: str, options: VideoOptions, width: int, height: int, rate, time_base):
    """A video stream in ``out`` with the pipeline's encoder settings and nothing else (no colour
    tags, no copied streams): for the codec floor and the benchmarks' reference loops."""
    vout = out.add_stream(codec, rate=rate)
    vout.width, vout.height, vout.pix_fmt = width, height, options.pix_fmt
    vout.time_base = vout.codec_context.time_base = time_base
    vout.options = codec_options(codec, options)
    return vout
