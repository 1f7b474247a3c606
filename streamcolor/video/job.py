"""``colorize_video``: one pass over a short video; a long one a part at a time, resumable.

Why parts: a film takes hours on a CPU, and one pass keeps nothing of a run that
is killed (the output is written under a temporary name, so nothing half-made is
left either).  A video of two parts or more (``VideoOptions.checkpoint_s``, 60 s
of whole GOPs each) is therefore cut at its keyframes (:mod:`.segments`), each
part colorized by the same pipeline into ``.<output name>.segments/`` next to the
output, and the parts joined by stream copy at the end, audio and subtitles
copied from the source once.  A rerun of the same job (source, model, options)
finds the finished parts and redoes only the rest; the work folder is removed
once the output is in place.

What it costs: each part colorizes half a second of warm-up before its start,
unwritten (the scene detector and the chroma stabilizer enter it as a single pass
would), decoded from the keyframe before it, and each part's pipeline fills and
drains on its own (``benchmarks/video_parts.py`` measures it); each part starts
with a keyframe of the encoder's.  An AVI (frame slots, no timestamps), a source
that is not a regular file, one whose packets cannot be listed or whose timestamps
start again, and an encoder that an MP4 part cannot hold take the single pass.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av.error

from streamcolor import tempfiles
from streamcolor.colorize import engine_for
from streamcolor.errors import InputError, refuse_empty_path
from streamcolor.progress import Progress, progress_bar
from streamcolor.video.codecs import pick_codec
from streamcolor.video.options import VideoOptions, output_path, output_replace, remember_output, remembers
from streamcolor.video.pipeline import run
from streamcolor.video.segments import (Segment, check_joinable, discard_parts, join_parts, keyframes_in_order,
                                        part_frames, part_job, plan_segments, refuse_if_written, segment_folder,
                                        video_keyframes)

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: Seconds decoded and colorized before each part's start (not written), so the scene detector (one
#: frame back) and the stabilizer (each frame keeps 0.6 of the last one's colour: 0.6**12 = 0.2% after 12
#: frames) enter the part as one pass would.
WARMUP_S = 0.5
#: Outputs colorized in parts: containers that take the MP4 parts' video by stream copy and keep timestamps.
PART_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
#: Encoders whose streams the MP4 parts hold.
PART_CODECS = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc", "libvpx-vp9", "libaom-av1", "libsvtav1")


@dataclass(frozen=True)
class Parts:
    """How a video is cut (:func:`plan_parts`)."""

    segments: list[Segment]
    frames: int  # video packets: the progress bar's total
    codec: str  # the encoder, chosen once for all parts (their streams must match to be joined)


def plan_parts(src: Path, dst: Path, options: VideoOptions) -> Parts | None:
    """The parts ``src`` is colorized in, or None for a single pass: ``checkpoint_s`` is 0, the
    video is shorter than two parts, or it cannot be cut (see the module docstring; a video
    whose timestamps start again, clips joined byte for byte, is one too)."""
    if not options.checkpoint_s or dst.suffix.lower() not in PART_CONTAINERS or not src.is_file():
        return None
    codec = pick_codec(options.codec, dst.suffix.lower().lstrip("."))
    if codec not in PART_CODECS:
        return None
    try:
        keyframes, time_base, frames = video_keyframes(src)
    except (InputError, av.error.FFmpegError, OSError):  # the single pass says what is wrong, and keeps what decodes
        return None
    if not keyframes_in_order(keyframes):
        log.info("%s: its timestamps start again; colorized in one pass", src)
        return None
    segments = plan_segments(keyframes, time_base, segment_s=options.checkpoint_s, warmup_s=WARMUP_S)
    return Parts(segments, frames, codec) if len(segments) > 1 else None


def colorize_video(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                   engine: "Engine | str | None" = None, options: VideoOptions = VideoOptions(),
                   progress: Progress = None, render_size: int | None = None, batch_size: int | None = None,
                   codec: str | None = None, quality: int | None = None,
                   stabilize: bool | None = None, replace: tempfiles.Replace | None = None,
                   remember: bool | None = None) -> Path:
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
        A video of two parts or more (``options.checkpoint_s``, 60 s) is
        colorized a part at a time into ``.<dst name>.segments/`` beside
        ``dst``, joined at the end and the folder removed; a run that was
        killed or failed, called again the same way, redoes only the parts
        that were not finished.
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
    replace:
        What the finished output may replace at ``dst``: True, any file;
        False, none (OutputError, the file kept); or a function of the path
        (see :func:`streamcolor.colorize_image`).  Default: any file at a
        ``dst`` you give; at the default name, only the output an earlier call
        wrote from this ``src`` (any other file there is kept, and the output
        goes beside it as ``<stem>-colour~2<ext>``).
    remember:
        Note the output as streamcolor's, so that a later call from ``src``
        at the default name may replace it.  Default: only an output at the
        default name (a ``dst`` you give is yours).  In parts it is noted as
        soon as it is in place, before the parts are removed.

    Returns
    -------
    The output path (``~2`` when the default name held another file).  Frame
    count, timestamps (pts, time base), frame rate, duration, lightness,
    rotation and metadata follow the input; audio and subtitle streams are
    copied packet for packet.

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
        refuse_empty_path(value, "source" if name == "src" else "output")
    src = Path(src)
    given = dst is not None
    dst = output_path(src, dst)
    engine = engine_for(engine)
    replace = output_replace(src, given, replace)
    refuse_if_written(dst)
    parts = plan_parts(src, dst, options)
    if parts is None:
        if src.is_file():  # (a FIFO would be read up by the trial)
            check_joinable(src, dst, pick_codec(options.codec, dst.suffix.lower().lstrip(".")), options.pix_fmt,
                           header=False)  # (what fails only when the file is finished: before the work, not after)
        written = run(src, dst, engine, options, progress, replace=replace).final
        discard_parts(written)
    else:
        written = _colorize_in_parts(src, dst, engine, dataclasses.replace(options, codec=parts.codec), parts,
                                     progress, replace, remembers(given, remember))
    remember_output(src, written, remembers(given, remember))
    return written


def _colorize_in_parts(src: Path, dst: Path, engine: "Engine", options: VideoOptions, parts: Parts,
                       progress: Progress, replace: tempfiles.Replace, remember: bool) -> Path:
    with segment_folder(src, dst, part_job(engine.name, engine.info.path, options), parts.segments) as folder:
        done = [part_frames(p) if p.is_file() else 0 for p in folder.paths]
        if any(done):
            log.info("%s: resuming: %d of %d parts were done (%d frames)", src, sum(1 for n in done if n),
                     len(done), sum(done))
        else:
            log.info("%s: in %d parts, kept in %s until they are joined", src, len(done), folder.work)
        check_joinable(src, dst, options.codec, options.pix_fmt)  # (before hours of work, not after)
        with progress_bar(progress, total=parts.frames, initial=sum(done), unit="frame", desc=src.name,
                          smoothing=0.1) as bar:
            for segment, path, frames in zip(parts.segments, folder.paths, done):
                if frames:
                    continue
                counted = [0]

                def step(n: int, _total: int | None, counted: list[int] = counted) -> None:
                    bar.update(n - counted[0])
                    counted[0] = n

                kept = run(src, path, engine, options, step, segment).kept
                if segment.index and (not kept or kept[0] != segment.start):
                    path.unlink()
                    raise InputError(f"{src}: part {segment.index + 1} does not start at its keyframe (pts "
                                     f"{kept[0] if kept else None} for {segment.start}): the video cannot be cut "
                                     "here; colorize it in one pass (--checkpoint-every 0)")
        written = join_parts(src, folder, dst, replace, remember)
    return written


__all__ = ["PART_CODECS", "PART_CONTAINERS", "Parts", "WARMUP_S", "colorize_video", "plan_parts"]
