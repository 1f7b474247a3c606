"""How a video is colorized and encoded (:class:`VideoOptions`), and where the output goes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from streamcolor.colorize import ColorOptions
from streamcolor.engines.lab import check_saturation
from streamcolor.engines import lab
from streamcolor.video.codecs import needs_even

if TYPE_CHECKING:
    from streamcolor import tempfiles
    from streamcolor.engines import Engine


#: Suffix of the default output name: ``film.mp4`` -> ``film-colour.mp4``.
OUTPUT_SUFFIX = "-colour"


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
    # gray frames into yuv420p are composed straight into the 4:2:0 planes (streamcolor.ycbcr: almost
    # everywhere within one code of the RGB route, a third of its work at 1080p); True: always make
    # full-res sRGB and let FFmpeg convert it, the reference route
    rgb_compose: bool = False
    max_pixels: int | None = None  # refuse videos whose frames have more pixels (a server's guard); None: no limit
    # a video of two parts or more is colorized in parts of at least this many seconds (whole GOPs), each
    # kept next to the output until all are joined, so that a killed run, run again, redoes only the part
    # it was in (streamcolor.video.job); 0: in one pass, nothing kept
    checkpoint_s: float = 60.0

    def __post_init__(self) -> None:
        lab.check_render_size(self.render_size)
        check_saturation(self.saturation)
        if not 0 <= self.quality <= 63:  # x264/x265 crf 0-51, VP9/AV1 0-63, NVENC cq 0-51 (warned past a codec's range)
            raise ValueError(f"quality must be 0-63 (crf or cq), got {self.quality}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.embed_every < 1:
            raise ValueError(f"embed_every must be >= 1, got {self.embed_every}")
        if not 0.0 <= self.stabilize_strength < 1.0:
            raise ValueError(f"stabilize_strength must be in [0, 1), got {self.stabilize_strength}")
        if not 0.0 < self.scene_cut <= 1.0:
            raise ValueError(f"scene_cut must be in (0, 1], got {self.scene_cut}")
        needs_even(self.pix_fmt)  # raises ValueError for an unknown pixel format
        if not 0.0 <= self.checkpoint_s < float("inf"):
            raise ValueError(f"checkpoint_s must be >= 0 seconds (0: one pass), got {self.checkpoint_s}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")

    def color_options(self, engine: "Engine") -> ColorOptions:
        """The per-frame colour options, with the model's recommendations filled in."""
        return ColorOptions(render_size=self.render_size, saturation=self.saturation).for_engine(engine)


#: Video suffixes whose containers hold only their own codec (DV: dvvideo), not the encoder's: a
#: colorized tape goes into an MP4.
OWN_CODEC_ONLY = (".dv",)


def default_output(src: str | os.PathLike) -> Path:
    """``<stem>-colour<ext>`` next to ``src``; where ``src``'s name is not a video's (a film saved
    as ``.jpg`` or with no extension: its own extension would pick an image writer), or names a
    container that holds only its own codec (:data:`OWN_CODEC_ONLY`), ``.mkv`` for a Matroska
    file and ``.mp4`` for any other.
    The stem is shortened where the name would pass the filesystem's limit (a film named with
    250 bytes must not fail at its rename, once colorized)."""
    from streamcolor.image_io import VIDEO_SUFFIXES
    from streamcolor.outputs import fitted

    src = Path(src)
    if src.suffix.lower() in VIDEO_SUFFIXES and src.suffix.lower() not in OWN_CODEC_ONLY:
        suffix = src.suffix
    else:  # a Matroska file under another name stays Matroska: it may hold what MP4 cannot (subtitles, fonts)
        suffix = ".mkv" if _starts_with(src, b"\x1a\x45\xdf\xa3") else ".mp4"
    return src.with_name(fitted(f"{src.stem}{suffix}", OUTPUT_SUFFIX))


def output_replace(src: str | os.PathLike, dst_given: bool, replace: "tempfiles.Replace | None") -> "tempfiles.Replace":
    """What a video's output may replace (:func:`streamcolor.tempfiles.move_into_place`): ``replace``
    when given; None: anything at a ``dst`` the caller named, but at the default name (which the
    caller never gave) only the file streamcolor wrote from this ``src``; any other file there is
    kept and the output goes beside it as ``name~2``, as the command line does."""
    if replace is not None:
        return replace
    if dst_given:
        return True
    from streamcolor.outputs import replace_policy

    return replace_policy("keep", src)


def remembers(dst_given: bool, remember: bool | None) -> bool:
    """Whether an output is noted as streamcolor's (:func:`remember_output`): as asked, or when
    not asked, only at the default name (a ``dst`` you give is yours)."""
    return (not dst_given) if remember is None else remember


def remember_output(src: str | os.PathLike, written: Path, remember: bool) -> None:
    """Note an output as streamcolor's when ``remember`` (:func:`remembers`), so that a rerun from
    ``src`` replaces it (:func:`output_replace`) instead of writing ``~2`` beside it."""
    if remember:
        from streamcolor.outputs import remember_written

        remember_written(written, src)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        if not path.is_file():  # (a FIFO: opening it would wait for a writer forever)
            return False
        with open(path, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def output_path(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """``dst``, or :func:`default_output` when None; OutputError when it is
    ``src`` itself by any spelling (a link, another case: see :mod:`streamcolor.outputs`)."""
    from streamcolor.outputs import plan_outputs

    from streamcolor.errors import InputError
    from streamcolor.image_io import check_file_path

    try:
        folder = Path(src).is_dir()
    except OSError as exc:  # a name longer than the system takes
        raise InputError(f"{src}: {exc.strerror or exc}") from exc
    if folder:  # (said as such: "." gave "PosixPath('.') has an empty name")
        raise InputError(f"{src}: a folder, not a video (give a video file; `streamcolor batch` is for photos)")
    src = Path(src)
    dst = Path(dst) if dst is not None else default_output(src)
    check_file_path(dst)  # a folder as the output: said so, not "cannot write this container"
    plan_outputs([(src, dst)])
    return dst
