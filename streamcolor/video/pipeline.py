"""The streamed pipeline: PyAV decode -> engine -> PyAV encode, four stages at once.

Four stages run at once, joined by small bounded queues, so memory stays flat
however long the film is::

    reader (thread)     demux; decode video frames (frame threading on);
                        full-res L* and the network input of each frame;
                        audio / subtitle packets passed on, untouched, in order
    network (thread)    scene cuts, embedding per scene or every N frames,
                        a*b* predicted a batch at a time
    compose (threads)   temporal smoothing of the low-res a*b*, upsampled onto
                        the frame's own full-res L*, into the encoder's YUV
    writer (caller)     encode video, remux the copied packets, progress bar

:func:`run` is one pass over a video, or over one segment of it
(``streamcolor.video.job`` and ``streamcolor.video.segments`` call it).  The output is written under a temporary name in the destination folder and
renamed into place at the end, so a failed or interrupted run leaves nothing at
the output path.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import av
import av.error
import cv2
import numpy as np

from streamcolor.colorize import (ColorOptions, keep_work_arrays, network_input, pixels_to_l,
                                  render, thread_scratch)
from streamcolor.errors import InputError, ItemOutputError, OutputError
from streamcolor.progress import Progress, progress_bar
from streamcolor import tempfiles, ycbcr
from streamcolor.video.codecs import (HARDWARE_CODECS, check_codec, check_pix_fmt, codec_options, encoder_error,
                                     needs_even, open_probe, pick_codec)
from streamcolor.video.containers import (copy_chapters, copy_streams, frame_rate, fresh_tags, mux_options,
                                          open_input, reason, temp_path, video_stream)
from streamcolor.video.lightness import frame_network_input, gray_luma, gray_lut, plane_array, rgb_kwargs
from streamcolor.video.options import VideoOptions
from streamcolor.video.stabilizer import ChromaStabilizer, histogram_distance, l_histogram, on_grid

if TYPE_CHECKING:
    from streamcolor.engines import Engine
    from streamcolor.video.segments import Segment

log = logging.getLogger(__name__)


#: Decode failures tolerated (each skips one damaged packet, as ffmpeg does) before giving up.
MAX_BAD_PACKETS = 25


#: Frames per second above which a stream's announced rate is taken as no rate at all (a variable
#: rate in a 1/1000 time base reads as 1000).
_MAX_PLAUSIBLE_FPS = 240

#: Containers whose video is a sequence of frame slots of 1 / frame rate, without timestamps.
_FRAME_COUNTED = ("avi",)
#: Muxers that write a stream's display matrix (a phone video's rotation).
_KEEPS_ROTATION = frozenset({"mov", "mp4", "ipod", "ismv", "3gp", "3g2", "matroska", "webm"})


def run(src: Path, dst: Path, engine: "Engine", options: VideoOptions, progress: Progress,
         segment: "Segment | None" = None, replace: tempfiles.Replace = True) -> "_Job":
    """Open ``src``, run the pipeline into a temporary file next to ``dst`` and rename it into place
    (``replace``: what it may replace there, :func:`streamcolor.tempfiles.move_into_place`)."""
    with open_input(src, options.max_pixels) as inp:
        vin = video_stream(inp, src)
        staged = temp_path(dst)
        try:
            job = _Job(src, dst, staged.path, inp, vin, engine, options, options.color_options(engine), progress,
                       segment)
            job.run()
            job.final = staged.commit(replace)
        except BaseException as exc:
            staged.discard()
            if isinstance(exc, OSError):
                raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from exc
            raise
    return job


def _opens_for_a_plain_frame(codec: str, options: dict[str, str], pix_fmt: str) -> bool:
    """Whether encoder ``codec`` opens with these settings for a plain 64x64 video at 25 fps: when
    it does, what it refused was the input's own size or time base, not the settings."""
    return open_probe(codec, pix_fmt=pix_fmt, options=options, size=64) is None


def _pix_fmts(codec: str) -> list[str]:
    """The pixel formats encoder ``codec`` takes (mjpeg: yuvj420p..., not yuv420p), or [] if unknown."""
    try:
        return [f.name for f in (av.codec.Codec(codec, "w").video_formats or ())]
    except (av.error.FFmpegError, ValueError, AttributeError):
        return []


def _tag_seconds(value: str | None) -> float | None:
    """Seconds of a ``HH:MM:SS.fraction`` duration tag (what Matroska muxers write per stream), else None."""
    m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", value or "")
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


#: Bytes of copied packets (audio, subtitles) held while no video frame is out yet: the output's
#: header needs the video encoder's first frame, so what comes before is muxed after it.  Past
#: this, the video stream is taken as damaged: a clear error rather than memory without end.
PENDING_LIMIT_BYTES = 64 * 2**20


class BestEffortPts:
    """A decoded frame's presentation time as FFmpeg's ``best_effort_timestamp`` gives it (libavcodec's
    ``guess_correct_pts``, which PyAV does not expose): the frame's pts, unless more of the pts so far
    than of the decode times (dts) failed to go forward, then its dts (and None where it has none,
    as the frames flushed from the decoder at the end, for the caller to count on).  Why: an AVI has no
    timestamps, only frame slots in decode order, so with B-frames the pts of frames in display order
    go back and forth (1, 3, 2, 6, 5, 7, 4, ...) while their dts go forward; taken as they were, each
    step back read as a restart of the timestamps and the output lasted twice the source."""

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if self.faulty_pts > self.faulty_dts and dts is None:
            return None  # (the decoder's last frames, flushed, have no dts: the caller counts on from the last)
        return pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts


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
    yuv: "ycbcr.Yuv420Composer | None" = None  # its composer

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
        self.final = dst  # where the output went (name~N beside a file that appeared there: tempfiles.Beside)
        self.segment = segment
        self.kept: list[int] = []  # pts of the frames written
        self.last_duration = 0  # the last one's duration (time base ticks)
        self.inp, self.vin, self.engine = inp, vin, engine
        self.options, self.colour, self.progress = options, colour, progress
        self.batch_size = options.batch_size or engine.video_batch_size
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        ctx = vin.codec_context
        self.width, self.height = ctx.width, ctx.height
        if options.max_pixels is not None and self.width * self.height > options.max_pixels:
            raise InputError(f"{src}: frames of {self.width}x{self.height} = {self.width * self.height:,} pixels are "
                             f"over the limit of {options.max_pixels:,}")
        self.time_base = vin.time_base or Fraction(1, 90000)
        self.rate = frame_rate(vin)
        even_w, even_h = needs_even(options.pix_fmt)
        self.pad = (self.height % 2 if even_h else 0, self.width % 2 if even_w else 0)
        if any(self.pad) and (segment is None or segment.index == 0):  # (once per video, not per segment)
            log.warning("%s: %dx%d has an odd side, which %s cannot hold: the output is %dx%d (the last %s "
                        "repeated); --pix-fmt yuv444p keeps the size", src, self.width, self.height,
                        options.pix_fmt, self.width + self.pad[1], self.height + self.pad[0],
                        "row and column" if all(self.pad) else "row" if self.pad[0] else "column")
        # BT.709 for HD, BT.601 for SD: what players assume for untagged video; tagged on the output too.
        self.hd = self.height >= 720
        # gray frames of even size into a yuv420p output skip the full-res RGB frame (streamcolor.ycbcr)
        self.direct_yuv = options.pix_fmt in ycbcr.FORMATS and not any(self.pad) and not options.rgb_compose
        self.display_matrix: list[int] | None = None  # from the first frame's side data
        self.copy_map: dict[int, Any] = {}  # input stream index -> output stream, for copied packets
        self.muxed = False  # whether a packet is in the output yet (its header is written with the first)
        self.copy_map_in: list = []  # the input streams copied
        self.bad_packets = 0
        self.frames_in = 0
        self.nudged = 0  # frames whose pts were at or before the previous frame's
        self.pts_shift = 0  # added to every frame's pts after its timestamps started again (a discontinuity)
        self.restarts = 0  # how often they did
        self.copy_clock: dict[int, list[int]] = {}  # copied stream -> [shift, last dts + duration] (its own ticks)
        self.threads: list[threading.Thread] = []  # the stage threads started (_thread), joined by _join
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
        self.threads.append(t)  # (before it starts: an interruption right after still finds it to join)
        t.start()
        return t

    def _join(self) -> None:
        """Wait for the stage threads, whatever happens meanwhile.  Why: they read the input and
        feed the encoder, which the caller closes next; a SIGTERM (or a second Ctrl-C) that
        landed while they were still running made the caller close the input under the reader's
        demuxing: a segmentation fault (1 run in 15 of `video` stopped at the start of a part).
        They stop within a tenth of a second once told; an interruption during the wait is
        raised after it.  A thread whose ``start()`` the interruption cut is running (or about to) but
        cannot be joined until it says it has started: it is waited for."""
        interrupted: BaseException | None = None
        give_up = time.monotonic() + 5
        while True:
            try:
                for t in self.threads:
                    t.join()
                break
            except KeyboardInterrupt as exc:
                self.stop.set()
                interrupted = exc
            except RuntimeError:  # "cannot join thread before it is started": interrupted in its start()
                if time.monotonic() > give_up:  # (it never started)
                    break
                time.sleep(0.01)
        if interrupted is not None:
            raise interrupted

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
        best_effort = BestEffortPts()
        demux = self.inp.demux(wanted)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # damaged or cut short: keep what was read
                log.warning("%s: input ends early at frame %d (%s)", src, self.frames_in, reason(exc))
                packet = None
            if packet is not None and packet.stream.index != vin.index:  # (flush packets all say stream_index 0)
                if packet.size:  # the zero-size flush packets demux adds at the end are not data
                    self._put(out, self._follow_on(packet))
                continue
            try:
                frames = vin.decode(packet)
            except av.error.FFmpegError as exc:
                self.bad_packets += 1
                if self.bad_packets > MAX_BAD_PACKETS:
                    raise InputError(f"{src}: too many damaged video packets ({reason(exc)})") from exc
                log.warning("%s: skipping a damaged video packet near frame %d: %s", src, self.frames_in, reason(exc))
                continue
            for frame in frames:
                pts = best_effort(frame.pts, frame.dts)
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + max(1, last_dur)
                else:
                    pts += self.pts_shift
                if last_pts is not None and seg is None and last_pts - pts >= max(1, last_dur):
                    # back by a frame or more: the timestamps start again (clips joined byte for byte, an
                    # MPEG-TS discontinuity); the frames from here follow the earlier ones, a frame apart.
                    # (Nudged one tick, they all played in a fraction of a millisecond.)
                    step = max(1, last_dur)
                    self.restarts += 1
                    if self.restarts == 1:  # (said once; a file that restarts often would say it every time)
                        log.warning("%s: the timestamps start again at frame %d (pts %d after %d: clips joined?); "
                                    "the frames from there are placed after the earlier ones", src, self.frames_in,
                                    frame.pts, last_pts - self.pts_shift)
                    self.pts_shift += last_pts + step - pts
                    pts = last_pts + step
                if last_pts is not None and pts <= last_pts:
                    self.nudged += 1
                    if self.nudged == 1:  # (one line, not one a frame: a file whose pts are all 0 said it 1,000 times)
                        log.warning("%s: frame %d has pts %d <= previous %d; nudged (any more such frames are "
                                    "counted, and said at the end)", src, self.frames_in, pts, last_pts)
                    pts = last_pts + 1
                if seg is not None:
                    if seg.end is not None and pts >= seg.end:
                        self._put(out, _END)
                        return
                    if seg.before(pts):  # before the seek point: decoded on the way, not ours
                        continue
                last_pts, last_dur = pts, frame.duration or last_dur
                self._put(out, self._to_item(frame, pts))
            if packet is None:  # flushed the decoder after an early end
                break
        self._put(out, _END)

    def _follow_on(self, packet):
        """A copied packet, placed after the stream's earlier ones where its timestamps start again
        (MPEG-TS clips joined byte for byte: the audio goes back to 0 with the video), as the
        video's frames are: its decode time going back, the muxer refused it ("Invalid argument")
        and the whole video failed."""
        t = packet.dts if packet.dts is not None else packet.pts
        if t is None:
            return packet
        clock = self.copy_clock.setdefault(packet.stream.index, [0, t])
        if t + clock[0] < clock[1] - int(packet.duration or 0):  # (back by more than the packet: not jitter)
            if not any(c[0] for c in self.copy_clock.values()):
                log.warning("%s: the timestamps of the copied %s start again too; its packets from there are "
                            "placed after the earlier ones", self.src, packet.stream.type)
            clock[0] = clock[1] - t
        if clock[0]:
            packet.dts = None if packet.dts is None else packet.dts + clock[0]
            packet.pts = None if packet.pts is None else packet.pts + clock[0]
        clock[1] = max(clock[1], t + clock[0] + int(packet.duration or 0))
        return packet

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
            comp = ycbcr.composer(lut, hd=self.hd, saturation=self.colour.saturation) if self.direct_yuv else None
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
        (a gray frame into yuv420p: composed straight into its planes, see streamcolor.ycbcr)."""
        # the grid's edge-aware upsampling to the render size, after the stabilizer (cheaper on the grid)
        f.ab = self.engine.refine(f.l_net[None], f.ab[None], work=thread_scratch().take)[0]
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
            out = av.open(str(self.tmp), "w", options=mux_options(self.tmp, self.time_base))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ItemOutputError(f"{self.dst}: cannot write this container ({reason(exc)}); "
                              "use .mp4, .mkv or .mov") from exc
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
            raise ItemOutputError(f"{self.dst}: cannot finish the file: {reason(exc)}") from exc

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
            raise ItemOutputError(f"{self.dst}: the {out.format.name} format cannot hold {codec} video "
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
            # the device, not the settings, is what is missing where the encoder does not open even for a
            # plain frame (why: in FFmpeg's own words, "Cannot load libcuda.so.1"); else the settings
            why = encoder_error(codec) if codec in HARDWARE_CODECS else None
            if why is not None:
                raise OutputError(f"{self.dst}: {codec} does not open here ({why}): it needs an NVIDIA "
                                  "GPU with NVENC and its driver (--codec auto takes it where it opens, else libx264)") from exc
            if _opens_for_a_plain_frame(codec, dict(ctx.options), opts.pix_fmt):
                # the settings are fine: this video's size or time base is what the encoder refuses (x264 at
                # 20000 wide, x265 at 2x2, mpeg4 with MPEG-TS's 1/90000): this input fails, not the run
                raise ItemOutputError(f"{self.dst}: {codec} does not take this video ({ctx.width}x{ctx.height}, "
                                      f"time base {tb}; {reason(exc)}); another codec may") from exc
            takes, full_range = _pix_fmts(codec), opts.pix_fmt.replace("yuv", "yuvj", 1)
            if takes and opts.pix_fmt not in takes:
                hint = f"{codec} takes --pix-fmt {', '.join(takes[:6])}"
            elif full_range != opts.pix_fmt and full_range in takes:  # (mjpeg lists yuv420p, opens with yuvj420p)
                hint = f"try --pix-fmt {full_range}"
            else:
                hint = "check --preset, --crf and --pix-fmt"
            raise OutputError(f"{self.dst}: {codec} does not open with {dict(ctx.options)} and pix_fmt "
                              f"{opts.pix_fmt} ({reason(exc)}); {hint}") from exc
        vout.metadata.update(fresh_tags(vin.metadata))
        vout.disposition = vin.disposition
        self.vout, self.codec = vout, codec
        if self.segment is not None:  # video alone: the rest is copied from the source once, when joining
            out.metadata.update(fresh_tags(inp.metadata))
            return
        for ist, ost in copy_streams(inp, vin, out, self.src, self.dst).values():
            self.copy_map[ist.index] = ost
            self.copy_map_in.append(ist)
        out.metadata.update(fresh_tags(inp.metadata))
        copy_chapters(inp, out, self.src)

    def _total(self) -> int | None:
        """About how many frames the video has, for the progress bar: the video stream's frame
        count, else its span (:meth:`_span`) times its frame rate, else the container's duration
        (which also spans audio and subtitles that run on past the picture).  None when the frame
        rate is not one a video has (a variable rate in a millisecond time base reads as 1000)."""
        if self.segment is not None:
            return None
        if self.vin.frames:
            return int(self.vin.frames)
        if not 0 < float(self.rate) <= _MAX_PLAUSIBLE_FPS:
            return None
        span = self._span()
        if span is not None:
            return max(1, round(float(span[1] - span[0]) * float(self.rate)))
        if self.inp.duration:
            return max(1, round(self.inp.duration / 1e6 * float(self.rate)))
        return None

    def _span(self) -> tuple[Fraction, Fraction] | None:
        """(start, end) in seconds of the video stream as its header announces it: its start
        time, and its duration, or Matroska's ``DURATION`` tag, which FFmpeg's muxer writes as
        the stream's end time (a tag shorter than the start is a length, as other muxers write it)."""
        vin = self.vin
        tb = vin.time_base
        if not tb:
            return None
        start = Fraction(vin.start_time or 0) * tb
        if vin.duration:
            return start, start + vin.duration * tb
        tagged = _tag_seconds(vin.metadata.get("DURATION") or vin.metadata.get("duration"))
        if tagged:
            tag = Fraction(tagged).limit_denominator(10**9)
            return start, tag if tag > start else start + tag
        return None

    def _warn_if_short(self, written: int) -> None:
        """A warning when fewer frames were decoded than the header announces (by its frame count,
        else by time: what the frames cover against the stream's announced span, which a variable
        frame rate does not upset)."""
        if self.segment is not None:
            return
        if self.vin.frames:
            if written < 0.9 * self.vin.frames:
                log.warning("%s: %d frames decoded where the header announces %d (damaged or truncated input?)",
                            self.src, written, self.vin.frames)
            return
        span = self._span()
        if span is None or not self.kept or not self.time_base:
            return
        start, end = span
        kept = self.kept
        step = self.last_duration or ((kept[-1] - kept[0]) // (len(kept) - 1) if len(kept) > 1 else 0)
        covered = (kept[-1] + step) * self.time_base
        if covered - start < Fraction(9, 10) * (end - start):
            log.warning("%s: the frames decoded end at %.2f s where the header announces %.2f s (damaged or "
                        "truncated input?)", self.src, float(covered), float(end))

    def _write(self, out) -> None:
        frames_bound = max(4, self.batch_size)
        q_read = queue.Queue(maxsize=frames_bound + 16)  # frames and small packets
        q_net = queue.Queue(maxsize=1)  # whole batches
        q_yuv = queue.Queue(maxsize=frames_bound)
        bar = None
        pending: list = []  # copied packets that arrive before the first video frame
        pending_bytes = 0
        written = 0
        try:  # (the threads start inside it: an interruption between two starts still joins the first)
            self._thread("read", self._read, q_read)
            self._thread("network", self._infer, q_read, q_net)
            self._thread("compose", self._compose, q_net, q_yuv)
            bar = progress_bar(self.progress, total=self._total(), unit="frame", desc=self.src.name, smoothing=0.1,
                               leave=False)
            for item in self._drain(q_yuv):
                if isinstance(item, av.Packet):
                    if written:
                        self._mux_copy(out, item)
                    else:
                        pending.append(item)
                        pending_bytes += item.size
                        if pending_bytes > PENDING_LIMIT_BYTES:
                            raise InputError(
                                f"{self.src}: no video frame could be decoded before {pending_bytes / 2**20:.0f} MiB "
                                "of its other streams (audio, subtitles) had to be held for the output; the video "
                                "stream is damaged or starts far later than the others (remux it, or cut the start "
                                "with ffmpeg)")
                    continue
                if not written and self.display_matrix is not None:
                    self.vout.set_display_matrix(self.display_matrix)
                    self._warn_if_rotation_lost(out)
                elif not written and self.vin.metadata.get("rotate"):
                    self.vout.set_display_rotation(-float(self.vin.metadata["rotate"]))
                    self._warn_if_rotation_lost(out)
                self._mux(out, item)
                written += 1
                for packet in pending:
                    self._mux_copy(out, packet)
                pending.clear()
                if self.segment is None or not self.segment.warm_up(item.pts):
                    bar.update()
        except _Stopped:
            pass
        except BaseException:
            self.stop.set()
            raise
        finally:
            self._join()
            if bar is not None:
                bar.close()
        if self.errors:
            raise self.errors[0]
        if not written:
            raise InputError(f"{self.src}: no video frame could be decoded")
        self._mux(out, None)
        if self.bad_packets:
            log.warning("%s: %d damaged video packets skipped", self.src, self.bad_packets)
        self._warn_if_short(written)
        if self.nudged > 1:
            log.warning("%s: %d frames in all had a timestamp at or before the previous frame's; each was nudged "
                        "one tick later", self.src, self.nudged)

    def _warn_if_rotation_lost(self, out) -> None:
        """A phone video's rotation lives in a display matrix that only some muxers write (MP4, MOV,
        Matroska, WebM); AVI, MPEG-TS and FLV drop it without a word, and the output plays sideways."""
        identity = [65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]
        if self.display_matrix == identity or out.format.name.split(",")[0] in _KEEPS_ROTATION:
            return
        log.warning("%s: the %s format keeps no rotation: the output plays as the frames are stored (sideways, "
                    "upside down); write .mp4, .mov or .mkv to keep it", self.dst, out.format.name)

    def _mux(self, out, frame) -> None:
        """Encode one frame (None: flush the encoder) and mux what comes out."""
        if frame is not None:
            if self.segment is not None and self.segment.warm_up(frame.pts):
                return  # warm-up frame: it only primed the scene detector and the stabilizer
            self.kept.append(int(frame.pts))
            self.last_duration = int(frame.duration or 0)
        try:
            packets = self.vout.encode(frame)
            out.mux(packets)
        except av.error.FFmpegError as exc:
            raise ItemOutputError(f"{self.dst}: cannot encode/write video: {reason(exc)}{self._refused(out)}") from exc
        self.muxed = self.muxed or bool(packets)

    def _mux_copy(self, out, packet) -> None:
        packet.stream = self.copy_map[packet.stream.index]
        try:
            out.mux(packet)
        except av.error.FFmpegError as exc:
            raise ItemOutputError(f"{self.dst}: cannot write a copied {packet.stream.type} packet: {reason(exc)}"
                              f"{self._refused(out)}") from exc
        self.muxed = True

    def _refused(self, out) -> str:
        """What to say when the output's first packets fail: its format refused what it was
        given (FFmpeg writes the header then, and says only "Invalid argument"), naming the
        streams so the user can pick a container that holds them."""
        if self.muxed:
            return ""
        held = [f"{self.vout.codec_context.name} video"] + [
            f"{ost.codec_context.name if ost.codec_context else '?'} {ost.type}" for ost in self.copy_map.values()]
        return (f"; the {out.format.name} format may not hold {', '.join(held)}: write .mkv (it holds nearly any "
                "codec), or choose the encoder with --codec")
