"""One video cut into parts: runs of whole GOPs, each colorized by the same pipeline,
kept in a work folder next to the output, and joined by stream copy.

:func:`video_keyframes` and :func:`plan_segments` cut the video stream into runs of
whole GOPs; :func:`colorize_segment` runs the pipeline on one run, decoding from an
earlier keyframe so the scene detector and the stabilizer arrive warmed up;
:func:`segment_folder` holds the finished parts (``.<output name>.segments``, locked
while a run uses it), so that a rerun of the same job redoes only the missing ones;
:func:`join_segments` joins the results by stream copy and copies the other
streams from the source once.  ``streamcolor.video.job`` runs the parts one after
the other (a long video on one machine, resumable), ``streamcolor.ray.video`` across
actors; both use these and nothing else of this module.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import math
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import av
import av.error

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two runs for one output are then not kept apart
    fcntl = None  # type: ignore[assignment]

from streamcolor import image_io, tempfiles
from streamcolor.colorize import engine_for
from streamcolor.errors import InputError, ItemOutputError, OutputError
from streamcolor.video.containers import (copy_chapters, copy_streams, frame_rate, fresh_tags, mux_options,
                                          open_input, packet_time, reason, temp_path, video_stream)
from streamcolor.video.options import VideoOptions, remember_output
from streamcolor.video.pipeline import run

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: Work folder of a video's parts, next to its output: ``.<name>.segments``.
SEGMENTS_SUFFIX = ".segments"
#: Container of part files: MP4 keeps the stream's time base and every pts/dts exactly (Matroska rounds to ms).
SEGMENT_CONTAINER = ".mp4"
#: What the job was (source, model, options, cut points); parts of another plan are not reused.
PLAN_FILE = "plan.json"
#: Held (``flock``) by the run using the folder, so two runs cannot write one output's parts.
LOCK_FILE = "lock"
#: The plan's entry for what :meth:`PartsFolder.pin` recorded (not part of the plan's identity).
PINNED = "pinned"
_PART_NAME = re.compile(r"^segment-\d{5}" + re.escape(SEGMENT_CONTAINER) + "$")


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
    # frames from decode_from up to here are only decoded (a GOP can be 10 s long; the warm-up needs a
    # second or so of frames, not the whole GOP through the network); None: from decode_from
    warm_from: int | None = None

    def warm_up(self, pts: int) -> bool:
        """Whether the frame at ``pts`` is decoded only to warm up this segment (not written).
        The first segment has no warm-up and no lower bound: any frame before the first keyframe
        (a stream cut in the middle of a GOP) is its own, as in one pass."""
        return self.index > 0 and pts < self.start

    def before(self, pts: int) -> bool:
        """Whether the frame at ``pts`` comes before this segment's warm-up (decoded on the way, as
        frames after a keyframe need it, and dropped)."""
        return self.index > 0 and pts < (self.decode_from if self.warm_from is None else self.warm_from)


def video_keyframes(src: str | os.PathLike) -> tuple[list[int], Fraction, int]:
    """(keyframe pts, time base, packet count) of the video stream, from its packets (nothing decoded)."""
    src = Path(src)
    with open_input(src) as inp:
        vin = video_stream(inp, src)
        keyframes, count = [], 0
        for packet in inp.demux(vin):
            if not packet.size:
                continue
            count += 1
            if packet.is_keyframe and packet.pts is not None:
                keyframes.append(int(packet.pts))
        return keyframes, vin.time_base or Fraction(1, 90000), count


def plan_segments(keyframes: Sequence[int], time_base: Fraction, *, segment_s: float = 30.0,
                  warmup_s: float = 1.0, count: int | None = None) -> list[Segment]:
    """Cut a video into segments of whole GOPs, each at least ``segment_s`` long
    (the last may be shorter), each warmed up by the ``warmup_s`` before its start, decoded
    from the latest keyframe before that.  ``keyframes``: pts of the keyframes.

    ``count``: instead, at most that many segments of about equal length: each cut
    at the keyframe nearest to its share of the video (the video's end estimated
    from the keyframes, as one mean GOP after the last), so 100 frames with a
    keyframe every 12 make 3 segments of 36, 36 and 28 frames, not 48, 48 and 4."""
    kf = sorted(set(keyframes))
    if not kf:
        return []
    warm_ticks = warmup_s / float(time_base)
    if count is not None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        end = kf[-1] + (kf[-1] - kf[0]) / (len(kf) - 1) if len(kf) > 1 else kf[0]
        starts = [kf[0]]
        for i in range(1, count):
            target = kf[0] + (end - kf[0]) * i / count
            later = [k for k in kf if k > starts[-1]]
            if later:
                nearest = min(later, key=lambda k: abs(k - target))
                if nearest - target < (end - kf[0]) / count / 2:  # (not past the middle of the next share)
                    starts.append(nearest)
    else:
        min_ticks = segment_s / float(time_base)
        starts = [kf[0]]
        for k in kf[1:]:
            if k - starts[-1] >= min_ticks:
                starts.append(k)
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        if i == 0 or warmup_s <= 0:
            decode_from = warm_from = start
        else:
            earlier = [k for k in kf if k <= start - warm_ticks]
            decode_from = earlier[-1] if earlier else kf[0]
            warm_from = max(decode_from, math.floor(start - warm_ticks))
        segments.append(Segment(i, start, end, decode_from, warm_from))
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
    job = run(src, dst, engine_for(engine), options, False, segment)
    if not job.kept:
        raise InputError(f"{src}: segment {segment.index} (pts {segment.start}..{segment.end}) has no frame")
    return {"frames": len(job.kept), "first_pts": job.kept[0], "last_pts": job.kept[-1]}


#: Longest file name (bytes) most filesystems take.
_NAME_MAX = 255


def segment_folder_path(dst: str | os.PathLike) -> Path:
    """Where the parts of the output ``dst`` are kept: ``.<dst name>.segments`` beside it, or
    ``.streamcolor-<hash of the name>.segments`` where that name would be too long for the filesystem."""
    dst = Path(dst)
    name = f".{dst.name}{SEGMENTS_SUFFIX}"
    if len(os.fsencode(name)) > _NAME_MAX:
        name = f"{tempfiles.PREFIX}{tempfiles.name_tag(dst.name)}{SEGMENTS_SUFFIX}"
    return dst.parent / name


def _ours(name: str) -> bool:
    return name in (PLAN_FILE, LOCK_FILE) or bool(_PART_NAME.match(name)) or tempfiles.is_temp_name(name)


def _read_plan(work: Path) -> dict[str, Any] | None:
    """A work folder's plan, or None when it has none; ItemOutputError when its plan file is
    not one streamcolor wrote (then the folder is not ours to empty)."""
    try:
        text = (work / PLAN_FILE).read_text()
    except FileNotFoundError:
        return None
    try:
        plan = json.loads(text)
    except ValueError:
        plan = None
    if not isinstance(plan, dict) or "segments" not in plan or "src" not in plan:
        raise ItemOutputError(f"{work / PLAN_FILE}: not a plan streamcolor wrote; {work} is where the parts of a "
                              "video are kept: move it away")
    return plan


def _say_other_folders(src: Path, work: Path) -> None:
    """Name the work folders of earlier runs of ``src`` into other outputs in the same folder (a run
    stopped, then started again with another -o): their parts are kept until removed."""
    mine = str(src.resolve())
    for other in sorted(work.parent.glob(f".*{SEGMENTS_SUFFIX}")):
        if other == work or not other.is_dir():
            continue
        try:
            plan = _read_plan(other)
        except (ItemOutputError, OSError):
            continue
        if plan is not None and plan.get("src") == mine:
            log.warning("%s: the parts of an earlier, unfinished run of this video into another output are kept "
                        "in %s (run that command again to finish it, or remove the folder)", src, other)


@dataclass
class PartsFolder:
    """The work folder of one output's parts (:func:`segment_folder`)."""

    work: Path
    paths: list[Path]  # each segment's part file, in order
    joined: bool = False  # set by the caller once the output is in place: the folder is then removed

    def pin(self, name: str, value: str) -> bool:
        """Record in the plan something decided only once the work has begun, such as the encoder
        that ``codec="auto"`` picks on the Ray actors that encode the parts (NVENC on a GPU node,
        x264 elsewhere).  Parts finished under another value are removed and True is returned, so
        the caller redoes them all: parts of two encoders cannot be joined by stream copy."""
        stamp = self.work / PLAN_FILE
        try:
            plan = _read_plan(self.work) or {}
            pinned = plan.setdefault(PINNED, {})
            if pinned.get(name) == value:
                return False
            changed = name in pinned
            if changed:
                log.info("%s: parts made with %s %s removed (this run's is %s)", self.work, name, pinned[name], value)
                for path in self.paths:
                    path.unlink(missing_ok=True)
            pinned[name] = value
            image_io.write_atomic(stamp, json.dumps(plan, sort_keys=True).encode())
        except OSError as exc:
            raise OutputError(f"{self.work}: cannot keep the video's parts here ({exc.strerror or exc})") from exc
        return changed


@contextmanager
def segment_folder(src: str | os.PathLike, dst: str | os.PathLike, job: dict[str, Any],
                   segments: Sequence[Segment]) -> Iterator[PartsFolder]:
    """The work folder of ``dst``'s parts (:func:`segment_folder_path`), locked for as long as
    the ``with`` block runs; removed after it when the caller set ``joined``.

    Parts that an earlier run of the same plan finished stay, so the caller redoes only the
    missing ones; the plan is ``src`` (its path, size and modification time), ``job`` (what
    else decides the pixels: :func:`part_job`) and the cut points.  Another plan's parts are
    removed first.  Only files streamcolor names this way are ever removed: a folder of that
    name that holds anything else refuses the run (ItemOutputError), as does a second run for
    the same output while the first holds the lock.  (Windows has no ``flock``: there two
    runs for one output are not kept apart.)"""
    src, work = Path(src), segment_folder_path(dst)
    st = src.stat()
    plan = json.dumps({"src": str(src.resolve()), "stamp": [st.st_size, st.st_mtime_ns], **job,
                       "segments": [dataclasses.astuple(s) for s in segments]}, sort_keys=True, default=str)
    try:
        if work.is_symlink() or (work.exists() and not work.is_dir()):
            raise ItemOutputError(f"{work}: is in the way of {Path(dst).name}'s work folder; move it away")
        work.mkdir(exist_ok=True)
        foreign = sorted(n for n in os.listdir(work) if not _ours(n))
        if foreign:
            raise ItemOutputError(f"{work}: holds files streamcolor did not write ({', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); it is where the parts of "
                                  f"{Path(dst).name} are kept: move them away")
        lock = _lock(work, dst)
        _say_other_folders(src, work)
    except OSError as exc:
        raise OutputError(f"{work}: cannot keep the video's parts here ({exc.strerror or exc})") from exc
    folder = PartsFolder(work, [work / f"segment-{s.index:05d}{SEGMENT_CONTAINER}" for s in segments])
    try:
        try:
            stamp = work / PLAN_FILE
            earlier = _read_plan(work)
            if earlier is not None:
                earlier.pop(PINNED, None)
            if earlier != json.loads(plan):
                stale = [n for n in os.listdir(work) if n != LOCK_FILE and (work / n).is_file()]
                if any(_PART_NAME.match(n) for n in stale):
                    log.info("%s: parts of another job (another source, model or options) removed", work)
                for name in stale:
                    (work / name).unlink()
                image_io.write_atomic(stamp, plan.encode())
            else:
                tempfiles.sweep(work, [p.name for p in folder.paths])
        except OSError as exc:
            raise OutputError(f"{work}: cannot keep the video's parts here ({exc.strerror or exc})") from exc
        yield folder
        if folder.joined:  # everything but the lock while it is held, so no other run sees half a folder
            _remove_ours(work, keep=LOCK_FILE)
    finally:
        lock.close()
    if folder.joined:  # (Windows cannot unlink a file that is open)
        _remove_ours(work)


def discard_parts(dst: str | os.PathLike) -> None:
    """Remove the work folder of ``dst``'s parts that an earlier, unfinished run in parts left, once
    ``dst`` has been written in one pass (the rerun took one pass: ``--checkpoint-every 0``, or
    another length of part): those parts will never be joined, and a film's are gigabytes, hidden.
    Only a folder of streamcolor's own files that no run holds is removed."""
    work = segment_folder_path(dst)
    try:
        if work.is_symlink() or not work.is_dir() or not all(_ours(n) for n in os.listdir(work)):
            return
        _read_plan(work)
        lock = _lock(work, dst)
    except (OSError, ItemOutputError):  # (not ours, or in use: left as it is)
        return
    try:
        log.info("%s: the parts of an earlier, unfinished run into %s removed (it is written now)", work,
                 Path(dst).name)
        _remove_ours(work, keep=LOCK_FILE)
    finally:
        lock.close()
    _remove_ours(work)


def refuse_if_written(dst: str | os.PathLike) -> None:
    """ItemOutputError when another run is writing the video ``dst`` now: one holds a temporary file
    for it (a single pass, a join), or the lock of its parts' work folder (a run in parts).  Why:
    both would finish, and the last to rename its file into place would win."""
    busy = tempfiles.being_written(dst)
    lock_path = segment_folder_path(dst) / LOCK_FILE
    if not busy and fcntl is not None:
        try:
            with open(lock_path, "r") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    busy = True
        except OSError:  # (none there, or unreadable: the run into it will say so)
            pass
    if busy:
        raise ItemOutputError(f"{dst}: another streamcolor run is writing this video; let it finish, or choose "
                              "another output")


def _lock(work: Path, dst: str | os.PathLike):
    """The work folder's lock file, open and locked (``flock``).  A run that finished removes the
    folder, lock file included: one that opened the lock file just before then holds a lock on
    a file no longer there, so it checks and tries again on the folder's own."""
    for _ in range(3):
        work.mkdir(exist_ok=True)
        lock = open(work / LOCK_FILE, "a+")
        if fcntl is None:
            return lock
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise ItemOutputError(f"{dst}: another streamcolor run is writing this video (its work folder "
                                  f"{work} is locked); let it finish, or choose another output") from exc
        try:
            if os.stat(work / LOCK_FILE).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except OSError:
            pass
        lock.close()
    raise ItemOutputError(f"{work}: the work folder keeps being removed by another run; try again")


def _remove_ours(work: Path, keep: str | None = None) -> None:
    """The files streamcolor wrote in a work folder (but ``keep``), then the folder if that emptied it."""
    try:
        for name in os.listdir(work):
            if name != keep and _ours(name) and (work / name).is_file():
                (work / name).unlink()
        if keep is None:
            work.rmdir()
    except OSError as exc:
        log.warning("%s: could not remove the work folder of the parts (%s)", work, exc.strerror or exc)


def part_job(model: str, bundle: str | os.PathLike | None, options: Any) -> dict[str, Any]:
    """What besides the source and the cut points decides a part's pixels, for
    :func:`segment_folder`'s plan: the model as named (with its runtime and precision where
    known), its bundle's files by size and modification time (a retrained bundle of the same
    name is another model), and the options."""
    files: dict[str, list[int]] = {}
    if bundle is not None and Path(bundle).is_dir():
        for f in sorted(Path(bundle).iterdir()):
            if f.is_file():
                fs = f.stat()
                files[f.name] = [fs.st_size, fs.st_mtime_ns]
    return {"model": model, "bundle": str(bundle), "files": files, "options": repr(options)}


def keyframes_in_order(keyframes: Sequence[int]) -> bool:
    """Whether a video's keyframe times (in file order) only go forward: a video whose
    timestamps start again (clips joined byte for byte) cannot be cut and found again by time."""
    return all(b > a for a, b in zip(keyframes, keyframes[1:]))


#: Packets of each copied stream that :func:`check_joinable` writes before it finishes its trial file.
_TRIAL_PACKETS = 3
#: Source packets it reads at most to find them (a stream that starts late is not waited for).
_TRIAL_SCAN = 500


def check_joinable(src: str | os.PathLike, dst: str | os.PathLike, codec: str, pix_fmt: str, *,
                   header: bool = True) -> None:
    """Raise (ItemOutputError, naming the streams) when ``dst``'s container cannot hold the
    encoder's video with ``src``'s other streams copied: what a single pass finds at its
    first packets, or only when it finishes the file, after all the work (PCM audio in MP4:
    "Invalid argument" from the trailer).  A trial file of the same kind (a header, the first
    few packets of each copied stream, the trailer) is written to a temporary folder, then
    removed.  ``header=False``: only a failure to finish the file raises (a single pass says
    itself, at its first packet, what the header refuses)."""
    src, dst = Path(src), Path(dst)
    quiet = _quiet(logging.getLogger(copy_streams.__module__))
    with tempfile.TemporaryDirectory(prefix=tempfiles.PREFIX) as work, quiet:
        trial = Path(work) / f"trial{dst.suffix}"
        with open_input(src) as inp:
            vin = video_stream(inp, src)
            try:
                out = av.open(str(trial), "w")
            except (ValueError, av.error.FFmpegError):
                return  # (no muxer for that name: the run says so)
            try:
                try:
                    vout = out.add_stream(codec, rate=frame_rate(vin))
                    width, height = vin.codec_context.width, vin.codec_context.height
                    vout.width, vout.height, vout.pix_fmt = width + width % 2, height + height % 2, pix_fmt
                    vout.time_base = vin.time_base
                    copy_map = copy_streams(inp, vin, out, src, dst)
                    out.start_encoding()
                except (ValueError, av.error.FFmpegError, ItemOutputError) as exc:
                    if not header:
                        return
                    if isinstance(exc, ItemOutputError):
                        raise
                    held = [f"{codec} video"] + [f"{s.codec_context.name if s.codec_context else '?'} {s.type}"
                                                 for s in out.streams if s is not vout]
                    raise ItemOutputError(f"{dst}: the {out.format.name} format may not hold {', '.join(held)}: "
                                          f"write .mkv (it holds nearly any codec), or choose the encoder with "
                                          f"--codec ({reason(exc)})") from exc
                try:
                    _trial_packets(inp, out, copy_map)
                    out.close()
                except av.error.FFmpegError as exc:
                    held = ", ".join(f"{o.codec_context.name if o.codec_context else '?'} {o.type}"
                                     for _, o in copy_map.values())
                    raise ItemOutputError(f"{dst}: the {out.format.name} format cannot finish a file that holds the "
                                          f"copied {held or 'streams'} ({reason(exc)}); write .mkv, which holds "
                                          "nearly any codec, or the source's own kind") from exc
            finally:
                try:
                    out.close()
                except av.error.FFmpegError:
                    pass


def _trial_packets(inp, out, copy_map: dict[int, tuple[Any, Any]]) -> None:
    """The first :data:`_TRIAL_PACKETS` packets of each copied stream into the trial file (time-ordered
    within each stream, as the source has them)."""
    if not copy_map:
        return
    left = {i: _TRIAL_PACKETS for i in copy_map}
    for n, packet in enumerate(inp.demux([s for s, _ in copy_map.values()])):
        if n >= _TRIAL_SCAN or not any(left.values()):
            break
        i = packet.stream.index
        if packet.size and left.get(i):
            left[i] -= 1
            packet.stream = copy_map[i][1]
            out.mux(packet)


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """The logger's records of this thread left out (a trial says again what the run will say)."""
    me = threading.get_ident()

    def other_threads(record: logging.LogRecord) -> bool:
        return record.thread != me

    logger.addFilter(other_threads)
    try:
        yield
    finally:
        logger.removeFilter(other_threads)


def join_parts(src: str | os.PathLike, folder: PartsFolder, dst: str | os.PathLike,
               replace: tempfiles.Replace = True, remember: bool = False) -> Path:
    """:func:`join_segments` of a work folder's parts into ``dst``, the folder marked for removal;
    a failed join says where the parts stay.  With ``remember`` the output is noted as streamcolor's
    at once (:func:`~streamcolor.video.options.remember_output`), before the folder is removed: a run killed
    in between left a whole output that the rerun took for a file of the user's, colorized the
    video again into ``~2`` and left the work folder behind."""
    try:
        written = join_segments(src, folder.paths, dst, replace=replace)
        remember_output(src, written, remember)
    except ItemOutputError as exc:  # (this video's streams: joining again would fail again)
        raise ItemOutputError(f"{exc} (the colorized parts stay in {folder.work}; `--checkpoint-every 0` "
                              "colorizes the video in one pass, then remove that folder)") from exc
    except OutputError as exc:
        raise OutputError(f"{exc} (the colorized parts stay in {folder.work}: a rerun joins them again; "
                          "remove that folder to start from the first part)") from exc
    folder.joined = True
    return written


def part_frames(path: str | os.PathLike) -> int:
    """Frames of a finished part file (its header's count), 0 when it cannot be read."""
    try:
        with av.open(str(path)) as c:
            return int(c.streams.video[0].frames or 0)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


def _decode_after(packet, last_dts: Fraction, path: Path) -> None:
    """Move a packet's decode time (dts) just past ``last_dts``, the previous packet's.

    Why: each segment is encoded on its own, and x264 puts its first decode times
    before its first frame by the B-frame delay, in time measured from that
    segment's first frames.  Where the frame rate varies, a segment's first dts
    can then fall at or before the last dts of the segment before, although its
    frames come after them (checked by pts).  The decode order is the files'
    order, so only the dts changes, in steps of one tick of the time base, and
    never past the packet's own presentation time (pts)."""
    tb = packet.time_base
    ticks = math.floor(last_dts / tb) + 1
    if packet.pts is not None and ticks > packet.pts:
        raise ItemOutputError(f"{path}: its decode times cannot follow the previous segment's at the join "
                          f"({float(packet.pts * tb):.3f} s)")
    packet.dts = ticks


def join_segments(src: str | os.PathLike, segments: Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                  replace: tempfiles.Replace = True) -> Path:
    """Join colorized segment files (from :func:`colorize_segment`) into ``dst``
    by stream copy (no re-encoding): their video packets in order, with the
    source's audio, subtitle and data packets copied from the source once,
    interleaved by time.  Timestamps are the segments' own (the source's), so
    they run on across the joins.  Written under a temporary name and renamed.

    Raises ItemOutputError when a segment does not start with a keyframe, its
    timestamps go back, or its encoder settings differ from the first one's
    (the result would not play), or a packet cannot be written (the container
    refuses this video's streams): another video of the run is still done."""
    src, dst = Path(src), Path(dst)
    if not segments:
        raise ValueError("no segments to join")
    staged = temp_path(dst)
    tmp = staged.path
    try:
        with open_input(src) as inp, av.open(str(segments[0])) as first:
            vin = video_stream(inp, src)
            with av.open(str(tmp), "w", options=mux_options(Path(tmp), vin.time_base)) as out:
                template = first.streams.video[0]
                extradata = bytes(template.codec_context.extradata or b"")
                vout = out.add_stream_from_template(template)
                vout.time_base = vin.time_base or template.time_base
                # the source's frame rate, not the segment's stream's (x264's VUI gives its time base there:
                vout.codec_context.framerate = frame_rate(vin)  # 1000 "fps" in Matroska)
                vout.metadata.update(fresh_tags(vin.metadata))
                vout.disposition = vin.disposition
                copy_map = copy_streams(inp, vin, out, src, dst)
                out.metadata.update(fresh_tags(inp.metadata))
                copy_chapters(inp, out, src)  # (the Ray path lost them: copy_streams leaves their text track out)

                def copied() -> Iterator[tuple[float, int, int, Any]]:
                    if not copy_map:
                        return
                    for n, packet in enumerate(inp.demux([s for s, _ in copy_map.values()])):
                        if packet.size and packet.stream.index in copy_map:
                            yield packet_time(packet), 1, n, packet

                def frames() -> Iterator[tuple[float, int, int, Any]]:
                    last_dts = None  # seconds (Fraction) of the last video packet's decode time
                    last_pts = None  # ... and the latest presentation time so far
                    n = 0
                    for path in segments:
                        with av.open(str(path)) as seg:
                            vs = seg.streams.video[0]
                            if bytes(vs.codec_context.extradata or b"") != extradata:
                                raise ItemOutputError(f"{path}: encoder settings differ from the first segment's; "
                                                  "cannot join by stream copy")
                            first_packet = True
                            for packet in seg.demux(vs):
                                if not packet.size:
                                    continue
                                if first_packet and not packet.is_keyframe:
                                    raise ItemOutputError(f"{path}: does not start with a keyframe")
                                if first_packet and last_pts is not None and packet.pts is not None \
                                        and packet.pts * packet.time_base <= last_pts:
                                    raise ItemOutputError(f"{path}: timestamps go back at the join "
                                                      f"({float(packet.pts * packet.time_base):.3f} s)")
                                first_packet = False
                                if packet.dts is not None:
                                    if last_dts is not None and packet.dts * packet.time_base <= last_dts:
                                        _decode_after(packet, last_dts, path)
                                    last_dts = packet.dts * packet.time_base
                                if packet.pts is not None:
                                    t = packet.pts * packet.time_base
                                    last_pts = t if last_pts is None else max(last_pts, t)
                                n += 1
                                yield packet_time(packet), 0, n, packet

                for _, kind, _, packet in heapq.merge(frames(), copied(), key=lambda e: (e[0], e[1], e[2])):
                    packet.stream = vout if kind == 0 else copy_map[packet.stream.index][1]
                    try:
                        out.mux(packet)
                    except av.error.FFmpegError as exc:
                        raise ItemOutputError(f"{dst}: cannot write a packet: {reason(exc)}") from exc
        try:
            dst = staged.commit(replace)
        except OSError as exc:
            raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        staged.discard()
        raise
    return dst
