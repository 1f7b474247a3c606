"""The files around the video stream: the input opened (with a clear error for what
is not a video), the output staged under a temporary name, and the other streams
(audio, subtitles, data, attachments) copied untouched.
"""

from __future__ import annotations

import logging
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import av
import av.error

from streamcolor import image_io, tempfiles
from streamcolor.errors import InputError, ItemOutputError, OutputError

log = logging.getLogger(__name__)


#: Container formats that hold still images, not videos.
_IMAGE_FORMATS = {"image2", "image2pipe"}
#: Tags that describe the old file or its old video encoding, not the new one (compared lower-case).
_STALE_TAGS = ("encoder", "major_brand", "minor_version", "compatible_brands", "rotate", "duration", "bps",
               "number_of_frames", "number_of_bytes", "_statistics_")


def reason(exc: BaseException) -> str:
    """What went wrong, in FFmpeg's words (an ``av.error.FFmpegError``'s ``strerror``), without the
    error number and the file name that its ``str`` adds: the message around it names the file
    as the user gave it, not the temporary name being written."""
    return getattr(exc, "strerror", None) or str(exc)


def open_input(src: Path, max_pixels: int | None = None):
    """``src`` opened for reading as a video (InputError naming it otherwise); ``max_pixels``
    bounds the frames of an animation decoded before the pipeline (:func:`_animation_as_video`)."""
    if not src.exists():
        raise image_io.no_such_file(src)
    if src.is_dir():
        raise InputError(f"{src}: is a folder, not a video file")
    st = src.stat()
    if not stat.S_ISREG(st.st_mode):  # FFmpeg would block on a FIFO and read a device forever
        raise InputError(f"{src}: not a regular file ({image_io.file_type(st.st_mode)}); only files are read")
    if not st.st_size:
        raise InputError(f"{src}: empty (0 bytes)")
    document = image_io.document_kind(src)
    if document is not None:
        raise InputError(f"{src}: {document}")
    try:
        container = av.open(str(src), "r", metadata_errors="replace")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise InputError(f"{src}: cannot be opened as a video: not a video, or damaged or truncated "
                         f"({reason(exc)})") from exc
    if _still_image_reader(container):
        name = container.format.name
        container.close()
        kind = image_io.image_kind(src)
        if kind == "animation":  # (an animated WebP: FFmpeg reads its file but decodes no frame of it)
            return _animation_as_video(src, max_pixels)
        if kind is not None:
            raise InputError(f"{src}: a still image, not a video (`streamcolor image`; colorize_image in Python)")
        # FFmpeg picks an image reader by the name alone; Pillow could not read it either
        raise InputError(f"{src}: cannot be opened as a video or as an image: damaged, truncated, or neither "
                         f"(FFmpeg's {name} reader took it by its name)")
    return container


#: Pixels of all its frames together an animation FFmpeg cannot decode may have: they pass through a
#: lossless temporary file (up to about 4 bytes a pixel on disk), written before any other limit applies.
MAX_ANIMATION_PIXELS = 1 << 30


def _animation_as_video(src: Path, max_pixels: int | None = None):
    """An animation that FFmpeg cannot decode (animated WebP), opened as a video: Pillow decodes its
    frames into a lossless temporary Matroska file (FFV1; each frame's time from the durations the
    animation gives, in milliseconds), which is opened and at once unlinked, so that nothing is
    left behind whatever happens next.  Why: such a file was refused by `image` (it has frames in
    time) and by `video` (FFmpeg took it for a still image), with no way to colorize it.

    Its frame size is checked against ``max_pixels`` and all its frames against
    :data:`MAX_ANIMATION_PIXELS` before anything is decoded (a small file can hold many frames)."""
    import os
    import tempfile

    import numpy as np
    from PIL import Image, ImageSequence

    try:
        with Image.open(src) as im:  # (frames counted only up to one over the limit: a count walks them all)
            width, height = im.width, im.height
            frames = image_io.count_frames(im, cap=MAX_ANIMATION_PIXELS // max(1, width * height) + 1)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(f"{src}: an animation whose frames cannot be read ({reason(exc)})") from exc
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(f"{src}: frames of {width}x{height} = {width * height:,} pixels are over the limit of "
                         f"{max_pixels:,}")
    if width * height * frames > MAX_ANIMATION_PIXELS:
        raise InputError(f"{src}: {frames:,} frames or more of {width}x{height} are over the "
                         f"{MAX_ANIMATION_PIXELS:,} pixels in all that an animated WebP may have here (its frames are "
                         "decoded into a temporary file first); cut it into shorter clips")
    fd, tmp = tempfile.mkstemp(prefix="streamcolor-animation-", suffix=".mkv")
    os.close(fd)
    try:
        try:
            with Image.open(src) as im, av.open(tmp, "w") as out:
                stream = out.add_stream("ffv1")
                stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
                stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
                t = 0
                for frame in ImageSequence.Iterator(im):
                    vf = av.VideoFrame.from_ndarray(np.asarray(frame.convert("RGB")), format="rgb24")
                    vf = vf.reformat(format="bgr0")
                    vf.pts, vf.time_base = t, Fraction(1, 1000)
                    t += max(1, int(frame.info.get("duration") or 100))
                    out.mux(stream.encode(vf))
                out.mux(stream.encode())
            return av.open(tmp, "r", metadata_errors="replace")
        except (OSError, ValueError, SyntaxError, EOFError, av.error.FFmpegError, Image.DecompressionBombError) as exc:
            raise InputError(f"{src}: an animation whose frames cannot be read ({reason(exc)})") from exc
    finally:
        try:
            os.unlink(tmp)  # (open, it stays readable until closed: POSIX)
        except OSError:  # Windows keeps an open file: removed when the process ends
            import atexit

            atexit.register(_remove_quietly, tmp)


def _remove_quietly(path: str) -> None:
    import os

    try:
        os.unlink(path)
    except OSError:
        pass


def _still_image_reader(container) -> bool:
    """Whether FFmpeg opened the file with one of its still-image readers (it picks those by name)."""
    return container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe")


def _video_streams(container) -> list:
    """The container's video streams, cover art excluded."""
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def is_video_file(path: Path) -> bool:
    """Whether FFmpeg opens the regular file ``path`` as a video: a container with a video stream
    (cover art aside), not one of FFmpeg's still-image readers."""
    try:
        if not stat.S_ISREG(path.stat().st_mode) or image_io.document_kind(path):  # (FFmpeg would block on a
            return False  # FIFO; it calls a PDF holding a JPEG a video)
        with av.open(str(path), "r", metadata_errors="replace") as container:
            return not _still_image_reader(container) and bool(_video_streams(container))
    except (av.error.FFmpegError, ValueError, OSError):
        return False


def frame_size(source: "Path | BinaryIO") -> tuple[int, int] | None:
    """(width, height) of the first real video stream of a file (or a file object: an upload in
    memory), from its header (nothing is decoded); None when FFmpeg cannot open it as a video."""
    try:
        with av.open(source if hasattr(source, "read") else str(source), "r",
                     metadata_errors="replace") as container:
            videos = _video_streams(container)
            if not videos:
                return None
            ctx = videos[0].codec_context
            return (ctx.width, ctx.height) if ctx.width and ctx.height else None
    except (av.error.FFmpegError, ValueError, OSError):
        return None


def video_packet_count(path: Path, limit: int) -> int:
    """The first real video stream's packets in ``path`` (a frame each), counted by demuxing
    alone, nothing decoded; it stops past ``limit`` (returning ``limit + 1``), and returns 0 when
    FFmpeg cannot read the file (the pipeline then says why).  Why count: a container's own
    frame count or duration can lie (20,000 frames 1 ms apart in a stream declared at 1 fps said
    "about 21"), and demuxing a file of a few MB takes milliseconds, while colorizing it to find
    out took minutes."""
    n = 0
    try:
        with av.open(str(path), "r", metadata_errors="replace") as container:
            videos = _video_streams(container)
            if not videos:
                return 0
            for packet in container.demux(videos[0]):
                if packet.size:  # (not the empty flush packet at the end)
                    n += 1
                    if n > limit:
                        break
    except (av.error.FFmpegError, ValueError, OSError):
        pass
    return n


#: Frame rates past this are a demuxer's placeholder (FFmpeg's DV reader says 60000 for 25 fps), not a
#: camera's: muxers refuse them when the file is finished ("fps too large").
MAX_FRAME_RATE = 1000


def frame_rate(vin) -> Fraction:
    """The frame rate of a video stream to encode with: its average, else FFmpeg's guess, else its
    base rate, the first that is plausible (positive, at most :data:`MAX_FRAME_RATE`); 25 if none is."""
    for rate in (vin.average_rate, vin.guessed_rate, vin.base_rate):
        if rate and 0 < rate <= MAX_FRAME_RATE:
            return Fraction(rate)
    return Fraction(25)


def video_stream(container, src: Path):
    """The first real video stream (cover art excluded)."""
    videos = _video_streams(container)
    if not videos:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise InputError(f"{src}: no video stream (streams: {kinds})")
    if len(videos) > 1:
        log.warning("%s: %d video streams; colorizing #%d, dropping the others", src, len(videos), videos[0].index)
    vin = videos[0]
    if not vin.codec_context.width or not vin.codec_context.height:
        raise InputError(f"{src}: video stream #{vin.index} has no frame size (damaged header?)")
    return vin


def temp_path(dst: Path) -> tempfiles.Staged:
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


#: Suffixes of the QuickTime family, whose edit lists count in the movie's own timescale.
_MOVIE_TIMESCALE_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp", ".3g2")


def mux_options(dst: Path, time_base: Fraction | None) -> dict[str, str]:
    """Options of the output container: for MP4 and MOV, the movie's timescale set to the video's
    time base.  Why: a video that does not start at 0 (a part of a long video, a clip cut from a
    broadcast) gets an edit list, which FFmpeg writes in a 1/1000 s movie timescale by default, so
    a start of 1.916667 s came back as 1.916 s, and every frame's time with it."""
    if time_base and dst.suffix.lower() in _MOVIE_TIMESCALE_SUFFIXES and 0 < time_base.denominator < 2**31:
        return {"movie_timescale": str(time_base.denominator)}
    return {}


def fresh_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Metadata minus the tags that describe the old encoding."""
    return {k: v for k, v in tags.items() if not k.lower().startswith(_STALE_TAGS)}


def copy_streams(inp, vin, out, src: Path, dst: Path) -> dict[int, tuple[Any, Any]]:
    """Output streams for the input streams copied untouched (every one but video):
    input index -> (input stream, output stream).  Audio and subtitles must fit
    the new container (OutputError otherwise); data and attachments (timecodes,
    fonts) are kept where the container takes them; attachments carry no packets."""
    copied: dict[int, tuple[Any, Any]] = {}
    for s in inp.streams:
        cover = s.type == "video" and bool(s.disposition & av.stream.Disposition.attached_pic)
        if s is vin or (s.type == "video" and not cover):  # (other videos: video_stream says they are left)
            continue
        if cover and not _keeps_cover_stream(out):
            _attach_cover(s, out, src)
            continue
        if s.type == "data" and getattr(s, "name", None) is None:
            # no codec FFmpeg knows (a camera's timecode track, tmcd): no muxer takes its packets, and
            # the whole file failed at the first one; a timecode lives on as the video's tag (the
            # QuickTime and MP4 muxers write a timecode track from it)
            if s.metadata.get("timecode"):
                log.info("%s: timecode track #%d not copied; the video keeps its timecode %s", src, s.index,
                         s.metadata["timecode"])
            else:
                log.warning("%s: dropping data stream #%d: FFmpeg knows no codec for it", src, s.index)
            continue
        if s.type == "data" and getattr(s, "name", None) == "bin_data" and _chapter_track(inp, s):
            # an MP4's chapter titles as a text track (HandBrake, yt-dlp --embed-chapters, FFmpeg): the MP4
            # muxer refused its first packet, failing the file; the chapters are copied as chapters
            log.info("%s: chapter text track #%d not copied as a stream; the output keeps the chapters", src,
                     s.index)
            continue
        if s.type == "data" and out.format.name not in inp.format.name.split(","):  # (demuxers: "mov,mp4,...")
            # a data track (KLV in a drone's MPEG-TS) is taken by the muxer it came from; others accept it
            # when the stream is added and refuse its first packet, failing the whole file
            log.warning("%s: dropping data stream #%d (%s): the %s format is not the %s it came in; keep it "
                        "with an output of the input's own kind (%s)", src, s.index, s.name, out.format.name,
                        inp.format.name, src.suffix or "the same container")
            continue
        try:
            ost = out.add_stream_from_template(s)
        except (ValueError, av.error.FFmpegError) as exc:
            if s.type in ("audio", "subtitle"):
                codec = s.codec_context.codec if s.codec_context else None  # (its canonical name: mp3, not mp3float)
                name = getattr(codec, "canonical_name", None) or (s.codec_context.name if s.codec_context else "?")
                instead = src.suffix if src.suffix and src.suffix.lower() != dst.suffix.lower() else ".mkv"
                raise ItemOutputError(f"{dst}: the {out.format.name} format cannot hold the {name} {s.type} "
                                      f"stream #{s.index} ({reason(exc)}); write to a {instead} file instead") from exc
            log.warning("%s: dropping %s stream #%d: %s", src, "the cover picture" if cover else s.type, s.index,
                        reason(exc))
            continue
        ost.metadata.update(fresh_tags(s.metadata) if s.type != "attachment" else s.metadata)
        ost.disposition = s.disposition
        if s.type != "attachment":
            copied[s.index] = (s, ost)
    return copied


def copy_chapters(inp, out, src: Path) -> None:
    """The input's chapters into the output (MP4 and MOV write them as a chapter track, Matroska as
    its own chapters); a failure is said, not the run's."""
    try:
        chapters = inp.chapters()
        if chapters:
            out.set_chapters(chapters)
    except (AttributeError, ValueError, av.error.FFmpegError) as exc:
        log.warning("%s: chapters not copied: %s", src, exc)


def _chapter_track(inp, s) -> bool:
    """Whether data stream ``s`` is a QuickTime/MP4 chapter track: binary data (FFmpeg knows no codec
    for its text samples) in a file that has chapters, at most one sample for each of them (a
    muxer leaves out the chapters that start after the end of the file's media)."""
    try:
        chapters = inp.chapters()
    except (AttributeError, av.error.FFmpegError):  # (a PyAV without chapters)
        return False
    return bool(chapters) and "mov" in inp.format.name.split(",") and s.frames <= len(chapters)


#: Output formats whose muxer writes a cover picture stream (attached picture) as cover art.
_COVER_STREAM_FORMATS = ("mp4", "ipod")
#: Output formats that hold a cover picture as an attachment (what Matroska readers show as cover art).
_COVER_ATTACHMENT_FORMATS = ("matroska",)
_COVER_MIMETYPES = {"mjpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "bmp": "image/bmp"}


def _keeps_cover_stream(out) -> bool:
    return out.format.name in _COVER_STREAM_FORMATS


def _attach_cover(s, out, src: Path) -> None:
    """A cover picture (an attached-picture stream) into an output whose muxer does not take it as a
    stream: Matroska gets it as an attachment (the container's own way; as a stream it would become
    a second, one-frame video track); elsewhere it is left out, and said so."""
    codec = s.codec_context.name if s.codec_context else ""
    mimetype = s.metadata.get("mimetype") or _COVER_MIMETYPES.get(codec)
    if out.format.name in _COVER_ATTACHMENT_FORMATS and mimetype:
        with av.open(str(src), "r", metadata_errors="replace") as again:  # (its one packet: the picture)
            data = next((bytes(p) for p in again.demux(again.streams[s.index]) if p.size), None)
        if data:
            name = s.metadata.get("filename") or f"cover.{mimetype.split('/')[-1].replace('jpeg', 'jpg')}"
            out.add_attachment(name, mimetype, data)
            return
    log.warning("%s: the cover picture (stream #%d) is left out: the %s format has no place for it (.mp4 and "
                ".mkv keep it)", src, s.index, out.format.name)


def packet_time(packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0
