"""One video split across workers: cut into runs of whole GOPs, each colorized by the
same pipeline, joined by stream copy.

:func:`video_keyframes` and :func:`plan_segments` cut the video stream into runs of
whole GOPs; :func:`colorize_segment` runs the pipeline on one run, decoding from an
earlier keyframe so the scene detector and the stabilizer arrive warmed up;
:func:`join_segments` joins the results by stream copy and copies the other
streams from the source once (``streamcolor.ray.video`` uses these and nothing
else of the package).
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import av
import av.error

from streamcolor import tempfiles
from streamcolor.colorize import engine_for
from streamcolor.errors import InputError, OutputError
from streamcolor.video.containers import (copy_chapters, copy_streams, frame_rate, fresh_tags, open_input,
                                          packet_time, reason, temp_path, video_stream)
from streamcolor.video.options import VideoOptions
from streamcolor.video.pipeline import run

if TYPE_CHECKING:
    from streamcolor.engines import Engine


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
    (the last may be shorter), each warmed up from the latest keyframe at least
    ``warmup_s`` before its start.  ``keyframes``: pts of the keyframes.

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
    job = run(src, dst, engine_for(engine), options, False, segment)
    if not job.kept:
        raise InputError(f"{src}: segment {segment.index} (pts {segment.start}..{segment.end}) has no frame")
    return {"frames": len(job.kept), "first_pts": job.kept[0], "last_pts": job.kept[-1]}


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
        raise OutputError(f"{path}: its decode times cannot follow the previous segment's at the join "
                          f"({float(packet.pts * tb):.3f} s)")
    packet.dts = ticks


def join_segments(src: str | os.PathLike, segments: Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                  replace: tempfiles.Replace = True) -> Path:
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
    staged = temp_path(dst)
    tmp = staged.path
    try:
        with open_input(src) as inp, av.open(str(segments[0])) as first, av.open(str(tmp), "w") as out:
            vin = video_stream(inp, src)
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
                            raise OutputError(f"{path}: encoder settings differ from the first segment's; "
                                              "cannot join by stream copy")
                        first_packet = True
                        for packet in seg.demux(vs):
                            if not packet.size:
                                continue
                            if first_packet and not packet.is_keyframe:
                                raise OutputError(f"{path}: does not start with a keyframe")
                            if first_packet and last_pts is not None and packet.pts is not None \
                                    and packet.pts * packet.time_base <= last_pts:
                                raise OutputError(f"{path}: timestamps go back at the join "
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
                    raise OutputError(f"{dst}: cannot write a packet: {reason(exc)}") from exc
        try:
            dst = staged.commit(replace)
        except OSError as exc:
            raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        staged.discard()
        raise
    return dst
