"""Video and batch pipelines against the hardware bound, stage by stage.

    nice python -m benchmarks.pipeline_bound --out benchmarks/results/pipeline-cpu-2026-11-30-jobthreads.json

One run of each figure, in one process, on generated inputs, with the shipped
default model on the engine ``load_engine`` picks here (``--backend`` to
change).  For each video size (576p and 1080p):

* **stages**: every step of ``colorize_video`` timed alone, sequentially, on
  the clip's frames, in ms per frame (decode, to-L, resize, engine, scene cut,
  stabilizer, refine (the model's edge-aware upsampling of its grid), compose into 4:2:0
  (into the encoder's frame), encode), with each step's share;
  and the full-resolution RGB route's steps (upsample, compose, to-YUV) that
  the 4:2:0 composer replaces, for comparison;
* **engine only**: ``Engine.predict`` on the clip's network inputs, at the
  engine's preferred batch (the "engine" stage times it at the pipeline's batch);
* **codec only**: decode + re-encode with the pipeline's encoder settings
  (``streamcolor.video.codec_floor``);
* **bound**: ``1 / (1/engine_fps + 1/codec_fps)``: both use every core, so
  a pipeline on this machine cannot beat doing the two one after the other;
* **pipeline**: ``colorize_video`` (the product, at the engine's ``video_batch_size``),
  and its ratio to the bound: best round against best rounds, and the median of
  each round's own ratio (``*_paired``: the parts of one round ran within seconds
  of each other, on a machine whose speed swings from minute to minute); and the same at the engine's ``preferred_batch_size``
  (what engine only uses), taking turns with it;
* **together**: engine only and codec only started at once, one thread each, in one
  process, with none of the pipeline's own work (no L*, no queues, no compose): what
  overlapping the two gets on this machine, and so how much of the gap between the
  pipeline and the bound is the machine's (its cores' caches shared by two workloads)
  and how much the pipeline's own (``pipeline_over_together``);
* **colour encode**: the encoder alone on the clip's gray frames, and on the same frames
  with the chroma of the pipeline's output (its luma kept): a colourized frame is not
  the gray one the codec-only figure re-encodes, and costs the encoder more;
* **naive**: decode, ``colorize_image`` per frame, encode (one frame at a time);
* **threads**: one more codec-only and pipeline run each, their CPU time per frame by
  thread role (encoder, decoder, engine, compose, ...; :class:`ThreadCpu`): where the
  work a pipeline adds to the engine's and the codec's goes.

Engine: ``Engine.predict`` images/s at 256 x 256 for batch 1, 16 and 64, through the
engine class the product calls (a JIT engine compiles each shape in a warm-up call); with
``--engine-variants``, again with other settings of the same engine (the Keras engine's
``copy_threads``, ``transfer``, ``chunk_rows``), each set back afterwards.

Batch: 1-megapixel gray JPEGs through ``colorize_archive`` against the same
bound (engine only on their network inputs; decode + encode only of the same
photos, on as many threads as the archive uses; the two together) and
``colorize_image`` one by one; one more ``colorize_archive`` run's CPU time by thread
role, and each step of the job (decode, prepare, engine, render, encode, write) timed
alone on one thread, per photo (``batch_stages``).  Memory: peak RSS of a fresh process colorizing a 10 s and a 60 s clip
(with the ``--backend`` engine).  The parts run in the order engine, batch, memory, video: video
is the longest, so a time limit cuts it and not the others.

The machine may be shared: the 1-minute load average is recorded around every
measurement; compare ratios measured in this one run, not absolute figures
across runs.  Each part runs :data:`ROUNDS` times, the parts taking turns.  About 11
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import concurrent.futures
import contextlib
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.pipeline_bound")

#: (name, width, height, frames) of the video clips.
CLIPS = [("576p", 768, 576, 96), ("1080p", 1920, 1080, 48)]
#: Alternating rounds of engine only, codec only and the pipeline (the naive loop runs once).
ROUNDS = 5
#: Photos of the batch figure: count, height, width (~1.0 megapixel).  96 (twelve batches of 8): a
#: job of 24 (three batches, until 2026-12-01) spends a larger share of its time starting (listing,
#: manifest, threads) and in its first and last batch (on 2026-12-01, 0.780x of the bound on 24
#: photos against 0.824x on 96, two runs minutes apart); a user's job is rarely that short.
#: ``--photos 24`` measures the short job.
PHOTOS = (96, 864, 1152)
#: Seconds of the short and long clip of the memory figure, and their size.
RSS_SECONDS, RSS_SIZE = (10, 60), (320, 240)
#: Seconds between reads of the threads' CPU times (ThreadCpu).
THREAD_PERIOD = 0.1
#: Engine-only images/s at a fixed square render size for each batch (issue 17's GPU figure: 256, batch 1, 16, 64).
ENGINE_SIZE, ENGINE_BATCHES = 256, (1, 16, 64)
#: Images each round of the engine-only figure runs at least (two calls at least).
ENGINE_IMAGES = 64
#: Other settings to measure the engine-only figure at, each ``{attribute: value}`` of the engine
#: (the Keras engine's ``chunk_rows``, ``transfer``, ``copy_threads``); empty: only its own.
ENGINE_VARIANTS: tuple[dict[str, Any], ...] = ()
RGB_ROUTE = True  # the batch part also runs its job through the RGB route (--no-rgb-route: not)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def _cpu() -> float:
    """CPU seconds of this process so far, every thread (user + system)."""
    t = os.times()
    return t.user + t.system


class Rounds:
    """Wall and CPU seconds of each measured thing over alternating rounds; the best round counts.

    On a shared machine another job's burst slows whatever runs during it; taking turns and
    keeping each thing's best round skews the ratios less.  CPU seconds (this process, all
    threads) barely depend on other jobs: they count the work done, so their ratios say
    how much work besides the engine and the codec a pipeline adds."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        c, t = _cpu(), time.perf_counter()
        res = fn()
        self.wall.setdefault(name, []).append(time.perf_counter() - t)
        self.cpu.setdefault(name, []).append(_cpu() - c)
        return res

    def rate(self, name: str, n: int) -> float:
        """Items/s of the best round (wall clock)."""
        return n / min(self.wall[name])

    def cpu_ms(self, name: str, n: int) -> float:
        """CPU milliseconds per item of the cheapest round."""
        return 1000 * min(self.cpu[name]) / n

    def paired_over_bound(self, name: str, parts: Sequence[str]) -> float:
        """The median over rounds of the bound's time (the ``parts``' times added: their rates'
        harmonic bound) over ``name``'s time in the same round.

        Why: the best rounds of each part may come from different minutes of a shared
        machine's swings; the parts of one round ran within seconds of each other."""
        rounds = range(len(self.wall[name]))
        return statistics.median(sum(self.wall[p][i] for p in parts) / self.wall[name][i] for i in rounds)


def together(*fns: Callable[[], Any]) -> None:
    """Run ``fns`` at once, one thread each, until all end (the first error is raised).

    Why: the bound adds the engine's and the codec's times, as if each had the machine
    alone; run at the same time they share the cores' caches and the memory bus, which
    no pipeline can avoid.  Timing the two together, with nothing else, says how near to
    the bound overlapping them can get here at all."""
    with concurrent.futures.ThreadPoolExecutor(len(fns), thread_name_prefix="bench-together") as pool:
        for f in [pool.submit(fn) for fn in fns]:
            f.result()


def overlap_figures(r: Rounds, product: str) -> dict[str, float]:
    """The "together" round (engine only and codec only at once) against the bound and against the
    product (``product``: the name of its runs in ``r``): best rounds' ratios, each round's own
    (median), and the CPU time of the two at once over their CPU times apart."""
    best = {k: min(v) for k, v in r.wall.items()}
    cpu = {k: min(v) for k, v in r.cpu.items()}
    return {"together_over_bound": round((best["engine"] + best["codec"]) / best["together"], 3),
            "together_over_bound_paired": round(r.paired_over_bound("together", ["engine", "codec"]), 3),
            f"{product}_over_together": round(best["together"] / best[product], 3),
            f"{product}_over_together_paired": round(r.paired_over_bound(product, ["together"]), 3),
            "cpu_together_over_parts": round(cpu["together"] / (cpu["engine"] + cpu["codec"]), 3)}


class ThreadCpu:
    """CPU milliseconds of each thread of this process over a run, summed by role (Linux,
    ``/proc/self/task``; elsewhere nothing is recorded).

    Why: the process's CPU time says how much work besides the engine and the codec a
    pipeline adds, not where; the encoder's and the engine's threads carry no names, so
    they are told apart by when they appear: threads alive before the run (besides the
    caller's) are the engine's pool, threads the run starts are PyAV's decoder (named
    ``av:...``), the pipeline's own (Python threads, by name) or else the encoder's.
    Threads are read every ``period`` s (and at the end); a thread that ends between two
    reads loses its last interval, counted in ``unattributed``."""

    def __init__(self, period: float | None = None) -> None:
        import threading

        self.period = THREAD_PERIOD if period is None else period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-thread-cpu", daemon=True)
        self.roles: dict[str, str] = {}
        self.last: dict[str, float] = {}

    @staticmethod
    def _tasks() -> dict[str, tuple[str, float]]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            out[tid] = (comm, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
        return out

    def _role(self, tid: str, comm: str, names: dict[str, str]) -> str:
        if names.get(tid) == "MainThread":
            return "main (muxer, encoder calls)"
        if tid in self.before:
            return "engine pool (alive before)"
        if tid in names:
            name = names[tid].removeprefix("streamcolor-").split("_")[0]
            return {"read": "reader (decode calls, L*)", "network": "network (engine calls)",
                    "compose": "compose"}.get(name, name)
        return "decoder (FFmpeg threads)" if comm.startswith("av:") else "encoder (x264 threads)"

    def _read(self) -> None:
        import threading

        names = {str(t.native_id): t.name for t in threading.enumerate()}
        mine = str(self._thread.native_id)
        for tid, (comm, cpu) in self._tasks().items():
            if tid != mine:
                if tid in names or tid not in self.roles:  # a Python thread seen before it had its name
                    self.roles[tid] = self._role(tid, comm, names)  # (while starting) is put right by name
                self.last[tid] = cpu

    def _sample(self) -> None:
        while not self._stop.wait(self.period):
            self._read()

    def __enter__(self) -> "ThreadCpu":
        self.enabled = Path("/proc/self/task").is_dir()
        self.before = {tid: cpu for tid, (_, cpu) in self._tasks().items()} if self.enabled else {}
        self.cpu0 = _cpu()
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.total = _cpu() - self.cpu0
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._read()

    def ms_per_item(self, n: int) -> dict[str, float]:
        """{role: CPU ms per item}, largest first, with ``unattributed`` (ended threads' last
        interval, the sampler itself) and ``total`` (the process's CPU time over the run)."""
        if not self.enabled:
            return {}
        by: dict[str, float] = {}
        for tid, cpu in self.last.items():
            by[self.roles[tid]] = by.get(self.roles[tid], 0.0) + cpu - self.before.get(tid, 0.0)
        out = {k: round(1000 * v / n, 1) for k, v in sorted(by.items(), key=lambda kv: -kv[1]) if v > 0}
        out["unattributed"] = round(1000 * (self.total - sum(by.values())) / n, 1)
        out["total"] = round(1000 * self.total / n, 1)
        return out


# --------------------------------------------------------------------------- video


def video_stages(src: Path, engine, options, work: Path) -> dict[str, float]:
    """ms per frame of each pipeline step run alone, in the pipeline's own functions (a gray clip
    into yuv420p: the direct 4:2:0 route); and of the RGB route's steps that it replaces."""
    from streamcolor.colorize import Scratch, compose, to_dtype, upsample_ab
    from streamcolor.video.lightness import frame_network_input, gray_lut, plane_array, rgb_kwargs
    from streamcolor.video.stabilizer import ChromaStabilizer, histogram_distance, l_histogram, on_grid
    from streamcolor.ycbcr import Yuv420Composer, composer

    colour = options.color_options(engine)
    batch = options.batch_size or engine.video_batch_size  # what the pipeline uses
    t: dict[str, float] = {}
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        t["decode"], frames = _timed(lambda: list(inp.decode(vin)))
        rate, tb = vin.average_rate, vin.time_base
    n = len(frames)
    w, h = frames[0].width, frames[0].height

    def to_l():
        out = []
        for f in frames:
            luma, l_full = _frame_l(f)
            out.append((luma, l_full, None if luma is None else Yuv420Composer.half_l(l_full)))
        return out

    gray_lut(frames[0].format.name, rgb_kwargs(frames[0]).get("src_color_range"))  # built once per format
    t["to_L"], ls = _timed(to_l)
    if any(luma is None for luma, _, _ in ls):
        raise ValueError(f"{src}: the stage table is for a gray clip")
    t["resize"], nets = _timed(lambda: [frame_network_input(l, half, colour) for _, l, half in ls])
    net = np.stack(nets)
    engine.predict(net[:batch])  # warm: first-call allocations are not per frame
    t["engine"], abs_ = _timed(lambda: [a for i in range(0, n, batch) for a in engine.predict(net[i:i + batch])])

    def cuts():
        prev = None
        for x in nets:
            hist = l_histogram(x)
            if prev is not None:
                histogram_distance(hist, prev)
            prev = hist

    t["scene_cut"], _ = _timed(cuts)
    stab = ChromaStabilizer(options.stabilize_strength, motion=options.motion)
    t["stabilizer"], abs_ = _timed(lambda: [stab(on_grid(x[..., 0], a.shape[:2]), a) for x, a in zip(nets, abs_)])
    # the model's edge-aware upsampling of its grid to the render size (streamcolor.engines.guided)
    arrays = Scratch().take  # as the product: the thread's work arrays reused from frame to frame
    t["refine"], abs_ = _timed(lambda: [engine.refine(x[None], a[None], work=arrays)[0] for x, a in zip(nets, abs_)])
    hd = h >= 720
    comp = composer(gray_lut(frames[0].format.name, rgb_kwargs(frames[0]).get("src_color_range")), hd=hd,
                    saturation=colour.saturation)

    def compose_yuv():
        out = []
        for (luma, _, half), a in zip(ls, abs_):
            vf = av.VideoFrame(w, h, "yuv420p")
            comp.write(luma, half, a, *(plane_array(vf, i) for i in range(3)))
            out.append(vf)
        return out

    t["compose_yuv"], vfs = _timed(compose_yuv)
    # the full-resolution RGB route it replaces (VideoOptions(rgb_compose=True)), for comparison
    rgb_route: dict[str, float] = {}
    rgb_route["upsample"], ups = _timed(lambda: [upsample_ab(a, h, w, colour.saturation) for a in abs_])
    rgb_route["compose"], rgbs = _timed(lambda: [to_dtype(compose(l, u), np.uint8) for (_, l, _), u in zip(ls, ups)])
    ups = None  # 16 bytes a pixel per frame: not kept for the rest
    rgb_route["to_yuv"], _ = _timed(lambda: [av.VideoFrame.from_ndarray(r, format="rgb24").reformat(
        format=options.pix_fmt, dst_colorspace="ITU709" if hd else "ITU601", dst_color_range="MPEG") for r in rgbs])
    rgbs = None
    t["encode"], _ = _timed(lambda: encode_frames(work / "stages-out.mp4", vfs, [f.pts for f in frames], rate, tb,
                                                  options))
    return ({k: round(1000 * v / n, 2) for k, v in t.items()},
            {k: round(1000 * v / n, 2) for k, v in rgb_route.items()})


def _frame_l(frame) -> tuple[np.ndarray | None, np.ndarray]:
    """(luma codes of a gray frame, else None; full-resolution L*) as the pipeline's reader makes them."""
    import cv2

    from streamcolor.colorize import pixels_to_l
    from streamcolor.video.lightness import gray_luma, gray_lut, rgb_kwargs

    luma = gray_luma(frame)
    if luma is None:
        return None, pixels_to_l(frame.to_ndarray(**rgb_kwargs(frame)))
    return luma, cv2.LUT(luma, gray_lut(frame.format.name, rgb_kwargs(frame).get("src_color_range")))


def _clip_l(src: Path) -> list[np.ndarray]:
    """Full-resolution L* of every frame of a clip (the pipeline's reader path)."""
    with av.open(str(src)) as inp:
        return [_frame_l(f)[1] for f in inp.decode(video=0)]


def encode_frames(dst: Path, frames: Sequence[Any], pts: Sequence[int], rate, time_base, options) -> None:
    """Encode ``frames`` (``av.VideoFrame``, or I420 arrays) into ``dst`` with the pipeline's encoder
    settings alone (:func:`streamcolor.video.plain_encoder`), stamped with ``pts`` in ``time_base``.

    Why the source's timestamps: x264's rate control reads them; frames one tick of a 1/12288 time
    base apart once looked like 12,288 fps to it, and it spent far less on each."""
    from streamcolor.video import pick_codec, plain_encoder

    first = frames[0]
    width, height = (first.width, first.height) if isinstance(first, av.VideoFrame) else (
        first.shape[1], first.shape[0] * 2 // 3)
    with av.open(str(dst), "w") as out:
        vs = plain_encoder(out, pick_codec(options.codec), options, width, height, rate, time_base)
        for x, t in zip(frames, pts):
            vf = x if isinstance(x, av.VideoFrame) else av.VideoFrame.from_ndarray(x, format="yuv420p")
            vf.pts, vf.time_base = t, time_base
            out.mux(vs.encode(vf))
        out.mux(vs.encode())


def _yuv_frames(path: Path) -> tuple[list[np.ndarray], list[int], Any, Any]:
    """Every frame of a yuv420p clip as one I420 array (Y, then Cb, then Cr), their timestamps;
    the clip's rate and time base."""
    with av.open(str(path)) as inp:
        vin = inp.streams.video[0]
        if vin.codec_context.pix_fmt != "yuv420p":
            raise ValueError(f"{path}: colour encode needs a yuv420p clip, not {vin.codec_context.pix_fmt}")
        frames = list(inp.decode(vin))
        return [f.to_ndarray() for f in frames], [f.pts for f in frames], vin.average_rate, vin.time_base


def with_chroma_of(gray: Sequence[np.ndarray], colour: Sequence[np.ndarray]) -> list[np.ndarray]:
    """I420 frames (see :func:`_yuv_frames`) with the luma of ``gray`` and the chroma of ``colour``."""
    if len(colour) != len(gray) or any(c.shape != g.shape for g, c in zip(gray, colour)):
        raise ValueError("the coloured clip is not the same frames as the gray one")
    out = []
    for g, c in zip(gray, colour):
        height = g.shape[0] * 2 // 3
        m = c.copy()
        m[:height] = g[:height]
        out.append(m)
    return out


def colour_encode(src: Path, coloured: Path, options, work: Path, rounds: int = 3) -> dict[str, Any]:
    """CPU ms per frame of the encoder alone (cheapest of ``rounds``, taking turns) on the gray
    frames of ``src`` and on the same frames with the chroma of ``coloured`` (the pipeline's
    output of ``src``) in place of their neutral chroma, luma untouched.

    Why: codec only re-encodes the gray clip, whose flat chroma costs the encoder almost
    nothing; a colorizer's output has colour to code.  Only the chroma planes differ
    between the two runs, so their ratio is the colour's own cost to the encoder.  (The
    chroma comes from the encoded output, so it is a little smoother than what the
    pipeline hands the encoder: if anything, this underestimates it.)"""
    gray, pts, rate, tb = _yuv_frames(src)
    mixed = with_chroma_of(gray, _yuv_frames(coloured)[0])
    dst = work / "colour-encode.mp4"
    r = Rounds()
    for _ in range(rounds):
        r.run("gray", lambda: encode_frames(dst, gray, pts, rate, tb, options))
        r.run("colour", lambda: encode_frames(dst, mixed, pts, rate, tb, options))
    n = len(gray)
    cpu = {k: r.cpu_ms(k, n) for k in r.cpu}
    return {"rounds": rounds, "cpu_ms_per_frame": {k: round(v, 1) for k, v in cpu.items()},
            "colour_over_gray": round(cpu["colour"] / cpu["gray"], 3),
            "colour_over_gray_rounds": [round(c / g, 3) for g, c in zip(r.cpu["gray"], r.cpu["colour"])]}


def colour_floor(src: Path, dst: Path, chroma: Sequence[np.ndarray], options) -> int:
    """Decode + encode only, with the colour: ``src`` decoded and re-encoded as :func:`codec_floor`
    does, each frame's neutral chroma swapped for the chroma of the pipeline's output (``chroma``:
    its I420 frames, decoded beforehand, outside the timing; luma untouched).

    Why: codec only encodes the gray clip, whose flat chroma is almost free to code; a colorizer
    must encode its colour.  Against this floor (bound with colour: 1 / (1 / engine + 1 / this)),
    what separates the product from the bound is the pipeline's own work alone.  Each frame is a
    new one, as the pipeline's are: its luma copied from the decoded frame (a decoded frame is the
    decoder's, which may still reference it), its chroma written from ``chroma``; both floors let
    x264 pick the frame types (``reencode``).  The chroma comes from the encoded output, a little
    smoother than what the pipeline hands the encoder."""
    from streamcolor.video.clips import reencode
    from streamcolor.video.lightness import plane_array

    frames = iter(chroma)

    def coloured(frame: av.VideoFrame) -> av.VideoFrame:
        c = next(frames, None)
        height, width = frame.height, frame.width
        if c is None or c.shape != (height * 3 // 2, width):
            raise ValueError(f"the pipeline's output is not the frames of {src.name}")
        vf = av.VideoFrame(width, height, "yuv420p")
        np.copyto(plane_array(vf, 0), plane_array(frame, 0))
        q = (height // 2) * (width // 2)
        flat = c.reshape(-1)[height * width:]
        np.copyto(plane_array(vf, 1), flat[:q].reshape(height // 2, width // 2))
        np.copyto(plane_array(vf, 2), flat[q:].reshape(height // 2, width // 2))
        vf.pts, vf.time_base = frame.pts, frame.time_base
        return vf

    n = reencode(src, dst, options, each=coloured)
    if next(frames, None) is not None:
        raise ValueError(f"the pipeline's output has more frames than {src.name}")
    return n


def colour_bound_figures(r: "Rounds", product: str, n: int) -> dict[str, float]:
    """The bound with the colour (engine only and ``codec_colour``, the colour floor) and the product
    against it: best rounds' ratio and each round's own (median)."""
    rate = {k: r.rate(k, n) for k in ("engine", "codec", "codec_colour", product)}
    bound = 1 / (1 / rate["engine"] + 1 / rate["codec_colour"])
    return {"codec_colour_fps": round(rate["codec_colour"], 2), "bound_colour_fps": round(bound, 2),
            "codec_colour_over_codec": round(rate["codec_colour"] / rate["codec"], 3),
            f"{product}_over_colour_bound": round(rate[product] / bound, 3),
            f"{product}_over_colour_bound_paired": round(r.paired_over_bound(product, ["engine", "codec_colour"]), 3)}


def naive_video(src: Path, dst: Path, engine, options) -> int:
    """Decode, ``colorize_image`` one frame at a time, encode: what a script around the image API does."""
    from streamcolor.colorize import colorize_image
    from streamcolor.video import reencode

    colour = options.color_options(engine)

    def colorized(frame: av.VideoFrame) -> av.VideoFrame:
        rgb = colorize_image(frame.to_ndarray(format="rgb24"), engine=engine, options=colour)
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vf.pts, vf.time_base = frame.pts, frame.time_base
        return vf

    return reencode(src, dst, options, colorized)


def warm_naive(engine, colour, height: int, width: int) -> None:
    """One untimed ``colorize_image`` of a ``height`` x ``width`` gray image: a JIT engine compiles
    batch 1 at that render shape here, not inside the naive loop's one timed round (on the H200 the
    first such call took seconds, which the naive figure would otherwise count)."""
    from streamcolor.colorize import colorize_image

    colorize_image(np.full((height, width), 128, np.uint8), engine=engine, options=colour)


def video_figures(engine, work: Path) -> Iterator[dict[str, Any]]:
    """One row of figures per clip of :data:`CLIPS`, each as soon as it is measured."""
    from streamcolor.colorize import network_input
    from streamcolor.video import VideoOptions, codec_floor, colorize_video, make_clip, pick_codec

    options = VideoOptions()
    for name, w, h, n in CLIPS:
        src = make_clip(work / f"clip-{name}.mp4", w, h, n)
        row: dict[str, Any] = {"clip": name, "width": w, "height": h, "frames": n, "load_average": {}}
        row["load_average"]["start"] = _load()
        row["stages_ms_per_frame"], row["rgb_route_ms_per_frame"] = stages, _ = video_stages(src, engine, options,
                                                                                             work)
        row["load_average"]["after_stages"] = _load()
        colour = options.color_options(engine)
        batch = engine.preferred_batch_size  # engine only: its fastest batch alone, so the bound is the highest
        net = np.stack([network_input(l, colour.render_size, colour.size_multiple) for l in _clip_l(src)])
        # the pipeline at the engine's preferred batch too, against its video batch (the default)
        at_preferred = dataclasses.replace(options, batch_size=batch)
        both_batches = (options.batch_size or engine.video_batch_size) != batch  # (one and the same on a GPU)
        r = Rounds()
        engine_only = lambda: [engine.predict(net[j:j + batch]) for j in range(0, n, batch)]  # noqa: E731
        codec_only = lambda: codec_floor(src, work / f"floor-{name}.mp4", options)  # noqa: E731
        # the pipeline's output, made and decoded once (untimed) for the colour floor
        colorize_video(src, work / f"pipe-{name}.mp4", engine=engine, options=options, progress=False)
        chroma = _yuv_frames(work / f"pipe-{name}.mp4")[0]
        for i in range(ROUNDS):
            r.run("engine", engine_only)
            r.run("codec", codec_only)
            r.run("codec_colour", lambda: colour_floor(src, work / f"floor-colour-{name}.mp4", chroma, options))
            r.run("together", lambda: together(engine_only, codec_only))
            r.run("pipeline", lambda: colorize_video(src, work / f"pipe-{name}.mp4", engine=engine, options=options,
                                                     progress=False))
            if both_batches:
                r.run("pipeline_preferred_batch", lambda: colorize_video(
                    src, work / f"pipe-b{batch}-{name}.mp4", engine=engine, options=at_preferred, progress=False))
            row["load_average"][f"after_round{i + 1}"] = _load()
        warm_naive(engine, colour, h, w)
        r.run("naive", lambda: naive_video(src, work / f"naive-{name}.mp4", engine, options))
        row["load_average"]["after_naive"] = _load()
        try:
            row["colour_encode"] = colour_encode(src, work / f"pipe-{name}.mp4", options, work)
        except ValueError as exc:  # (a clip it cannot split into planes): recorded, the rest of the part kept
            row["colour_encode"] = {"error": str(exc)}
        row["load_average"]["after_colour_encode"] = _load()
        threads = {}  # one more run of each, for where its CPU time goes
        with ThreadCpu() as tc:
            codec_floor(src, work / f"floor-{name}.mp4", options)
        threads["codec"] = tc.ms_per_item(n)
        with ThreadCpu() as tc:
            colorize_video(src, work / f"pipe-{name}.mp4", engine=engine, options=options, progress=False)
        threads["pipeline"] = tc.ms_per_item(n)
        fps = {k: r.rate(k, n) for k in r.wall}
        cpu = {k: r.cpu_ms(k, n) for k in r.cpu}
        bound = 1 / (1 / fps["engine"] + 1 / fps["codec"])
        row.update(codec=pick_codec(options.codec), rounds=ROUNDS, engine_fps=round(fps["engine"], 2),
                   codec_fps=round(fps["codec"], 2), bound_fps=round(bound, 2), pipeline_fps=round(fps["pipeline"], 2),
                   naive_fps=round(fps["naive"], 2), pipeline_over_bound=round(fps["pipeline"] / bound, 3),
                   pipeline_over_bound_paired=round(r.paired_over_bound("pipeline", ["engine", "codec"]), 3),
                   pipeline_batch=options.batch_size or engine.video_batch_size, engine_batch=batch,
                   pipeline_over_naive=round(fps["pipeline"] / fps["naive"], 3),
                   together_fps=round(fps["together"], 2), **overlap_figures(r, "pipeline"),
                   **colour_bound_figures(r, "pipeline", n),
                   cpu_ms_per_frame={k: round(v, 1) for k, v in cpu.items()},
                   cpu_bound_over_pipeline=round((cpu["engine"] + cpu["codec"]) / cpu["pipeline"], 3),
                   all_rounds_s={k: [round(x, 2) for x in v] for k, v in r.wall.items()},
                   stage_sum_ms=round(sum(stages.values()), 2), thread_cpu_ms_per_frame=threads)
        if both_batches:
            row.update(pipeline_preferred_batch_fps=round(fps["pipeline_preferred_batch"], 2),
                       pipeline_over_preferred_batch=round(fps["pipeline"] / fps["pipeline_preferred_batch"], 3),
                       cpu_pipeline_over_preferred_batch=round(cpu["pipeline"] / cpu["pipeline_preferred_batch"], 3))
        log.info("%s: %s", name, {k: v for k, v in row.items() if k != "stages_ms_per_frame"})
        yield row


# --------------------------------------------------------------------------- engine only


def engine_figures(engine) -> dict[str, Any]:
    """Images/s of ``engine.predict`` on random network inputs of :data:`ENGINE_SIZE` squared, for each
    batch in :data:`ENGINE_BATCHES`: one warm-up call (a JIT engine compiles per shape), then the best of
    :data:`ROUNDS` rounds of at least :data:`ENGINE_IMAGES` images; again with each of :data:`ENGINE_VARIANTS`
    (the engine's own settings are recorded as ``settings``)."""
    row: dict[str, Any] = {"size": ENGINE_SIZE, "batches": list(ENGINE_BATCHES), "on_gpu": bool(engine.on_gpu),
                           "rounds": ROUNDS, "load_average": {"start": _load()}}
    names = sorted({k for v in ENGINE_VARIANTS for k in v} | {"chunk_rows", "transfer", "copy_threads"})
    own = {k: getattr(engine, k) for k in names if hasattr(engine, k)}
    if own:
        row["settings"] = own
    row["images_per_s"] = _engine_rates(engine, row, copies=True)
    for variant in ENGINE_VARIANTS:
        tag = ",".join(f"{k}={v}" for k, v in variant.items())
        try:
            for k, v in variant.items():
                setattr(engine, k, v)
            row.setdefault("images_per_s_variants", {})[tag] = _engine_rates(engine, row, tag=f"_{tag}")
        finally:
            for k, v in own.items():
                setattr(engine, k, v)
    log.info("engine only: %s", row)
    return row


def _variant(text: str) -> dict[str, Any]:
    """``"transfer=bfloat16,copy_threads=8"`` -> ``{"transfer": "bfloat16", "copy_threads": 8}``."""
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not (sep and key.isidentifier() and value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected name=value[,name=value...]")
        out[key] = int(value) if value.isdigit() else value
    return out


def _engine_rates(engine, row: dict[str, Any], copies: bool = False, tag: str = "") -> dict[str, float]:
    rng = np.random.default_rng(0)
    rates = {}
    for b in ENGINE_BATCHES:
        x = rng.uniform(-1.0, 1.0, (b, ENGINE_SIZE, ENGINE_SIZE, 1)).astype(np.float32)
        engine.predict(x)
        calls = max(2, -(-ENGINE_IMAGES // b))
        r = Rounds()
        for _ in range(ROUNDS):
            r.run("engine", lambda: [engine.predict(x) for _ in range(calls)])
        rates[str(b)] = round(r.rate("engine", calls * b), 1)
        row["load_average"][f"after_batch{b}{tag}"] = _load()
        if copies and engine.on_gpu and engine.name.startswith("keras"):
            row.setdefault("copy_ms", {})[str(b)] = _copy_ms(x, engine.predict(x))
    return rates


def _copy_ms(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Milliseconds (best of 5) to copy one call's input to the GPU and its output back, with
    JAX, as the Keras engine's call does: how much of a call is the copies rather than the network."""
    import jax

    def best(fn: Callable[[], Any]) -> float:
        fn()
        return round(1000 * min(_timed(fn)[0] for _ in range(5)), 3)

    on_device = jax.device_put(y)
    return {"to_gpu": best(lambda: jax.device_put(x).block_until_ready()),
            "from_gpu": best(lambda: np.asarray(on_device + 0))}  # (+ 0: a fresh array, no cached host copy)


# --------------------------------------------------------------------------- batch


def batch_stages(files: list[Path], engine, options, work: Path) -> dict[str, float]:
    """ms per photo of each step of ``streamcolor batch`` run alone, sequentially, in the job's own
    functions (one thread; in the job they run at once on the workers and the engine's thread).
    On a thread of its own that keeps its work arrays, as the job's workers do (the caller's
    thread must not start keeping them: a job's threads only)."""
    from streamcolor.colorize import keep_work_arrays

    with concurrent.futures.ThreadPoolExecutor(1, initializer=keep_work_arrays) as pool:
        return pool.submit(_batch_stages, files, engine, options, work).result()


def _batch_stages(files: list[Path], engine, options, work: Path) -> dict[str, float]:
    from streamcolor import image_io, ycbcr
    from streamcolor.colorize import ShapeBatcher, prepare, render_prepared, thread_scratch
    from streamcolor.items import FolderSink

    colour = options.color_options(engine)
    t: dict[str, float] = {}
    t["decode"], decoded = _timed(lambda: [image_io.read_image(f) for f in files])
    t["prepare"], preps = _timed(lambda: [prepare(d, colour) for d in decoded])
    decoded = None
    batcher = ShapeBatcher(options.batch_for(engine))
    for prep in preps:
        batcher.add(prep)
    groups = list(batcher.drain())
    engine.predict(np.stack([p.net_in for p in groups[0]]))  # warm: first-call allocations are not per photo
    t["engine"], abs_ = _timed(lambda: {id(p): a for g in groups
                                        for p, a in zip(g, engine.predict(np.stack([p.net_in for p in g])))})
    by_id = {id(p): p for p in preps}
    arrays = thread_scratch().take  # as the product's batch: the worker's arrays reused from photo to photo
    t["refine"], abs_ = _timed(lambda: {k: engine.refine(by_id[k].net_in[None], a[None], work=arrays)[0]
                                        for k, a in abs_.items()})

    def render_one(p, f):  # the job's own choice of route (streamcolor.items.finish_item)
        if ycbcr.takes_jpeg_planes(p, image_io.format_for(f)):
            return ycbcr.jpeg_planes(p, abs_[id(p)], saturation=colour.saturation)
        return render_prepared(p, abs_[id(p)], saturation=colour.saturation,
                               out=thread_scratch().take("rendered", (*p.shape, 3), p.dtype)).copy()

    def encode_one(r, f, p):
        if isinstance(r, tuple):
            return image_io.encode_jpeg_planes(*r, info=p.info, quality=colour.quality)
        return image_io.encode_image(r, image_io.format_for(f), alpha=p.alpha, info=p.info, quality=colour.quality,
                                     warn=False)

    t["render"], rgbs = _timed(lambda: [render_one(p, f) for p, f in zip(preps, files)])
    t["encode"], datas = _timed(lambda: [encode_one(r, f, p) for r, f, p in zip(rgbs, files, preps)])
    routes = {"jpeg planes" if isinstance(r, tuple) else "rgb" for r in rgbs}
    t["route"] = routes.pop() if len(routes) == 1 else "mixed"
    out = work / "stages-out"
    out.mkdir()
    sink = FolderSink(out, staging=True)
    t["write"], _ = _timed(lambda: [sink.stage(f.name, d).commit() for f, d in zip(files, datas)])
    return {k: v if isinstance(v, str) else round(1000 * v / len(files), 2) for k, v in t.items()}


#: Thread roles of a batch job, as ThreadCpu names them -> as the docs say them.
BATCH_ROLES = {"main (muxer, encoder calls)": "main (engine calls, manifest, outcomes)",
               "engine pool (alive before)": "engine pool (alive before)",
               "io": "workers (decode, L*, render, encode, write)", "reader": "reader (listing, member bytes)"}


@contextlib.contextmanager
def _rgb_route():
    """Every photo of a batch job through the RGB route (full-resolution sRGB, then libjpeg's own
    conversion), as before gray JPEGs were made from their Y'CbCr planes: the reference for them."""
    from streamcolor import ycbcr

    real = ycbcr.takes_jpeg_planes
    ycbcr.takes_jpeg_planes = lambda prep, fmt: False
    try:
        yield
    finally:
        ycbcr.takes_jpeg_planes = real


def batch_figures(engine, work: Path) -> dict[str, Any]:
    from benchmarks import conftest
    from benchmarks.conftest import write_gray_photos
    from streamcolor import image_io
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.colorize import ShapeBatcher, colorize_image, prepare

    n, h, w = PHOTOS
    folder = write_gray_photos(work / "photos", n, h, w)
    files = sorted(folder.rglob("*.jpg"))
    options = BatchOptions()  # the engine's preferred batch, as `streamcolor batch` without -b
    colour = options.color_options(engine)
    workers = options.workers or os.cpu_count() or 1
    row: dict[str, Any] = {"photos": n, "size": f"{w}x{h}", "megapixels": round(w * h / 1e6, 3),
                           "batch_size": options.batch_for(engine), "workers": workers, "load_average": {"start": _load()}}
    preps = [prepare(image_io.read_image(f), colour) for f in files]
    batcher = ShapeBatcher(options.batch_for(engine))
    for p in preps:
        batcher.add(p)
    batches = [np.stack([p.net_in for p in b]) for b in batcher.drain()]
    engine.predict(batches[0])
    out = work / "codec-only"
    out.mkdir()

    def codec_one(f: Path) -> None:  # decode + encode only
        conftest.codec_one(f, out, colour.quality)

    planes: dict[str, tuple[np.ndarray, ...]] = {}  # the job's outputs as Y'CbCr planes, read once, untimed
    out_colour = work / "codec-colour"
    out_colour.mkdir()

    def codec_colour_one(f: Path) -> None:
        """Decode + encode only, with the colour: the gray photo decoded, and the job's own output
        of it encoded from its Y'CbCr planes as the job encodes a gray photo's (read beforehand,
        outside the timing), then written: what any colorizer writing these JPEGs must do."""
        d = image_io.read_image(f)
        image_io.write_atomic(out_colour / f.name, image_io.encode_jpeg_planes(*planes[f.name], info=d.info,
                                                                              quality=colour.quality))

    r, reports = Rounds(), []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        engine_only = lambda: [engine.predict(b) for b in batches]  # noqa: E731
        codec_only = lambda: list(pool.map(codec_one, files))  # noqa: E731
        # the job's outputs, made and read once (untimed) for the colour floor
        first = colorize_archive(folder, work / "archive-first", engine=engine, options=options, progress=False)
        assert first.ok and first.done_now == n, first.summary()
        planes.update((f.name, _jpeg_planes(work / "archive-first" / f.name)) for f in files)
        for i in range(ROUNDS):
            r.run("engine", engine_only)
            r.run("codec", codec_only)
            r.run("codec_colour", lambda: list(pool.map(codec_colour_one, files)))
            r.run("together", lambda: together(engine_only, codec_only))
            reports.append(r.run("archive", lambda: colorize_archive(folder, work / f"archive-out{i}", engine=engine,
                                                                     options=options, progress=False)))
            assert reports[-1].ok and reports[-1].done_now == n, reports[-1].summary()
            if RGB_ROUTE:
                with _rgb_route():  # the same job with every photo through the RGB route, in the same round
                    rgb = r.run("archive_rgb_route", lambda: colorize_archive(
                        folder, work / f"archive-rgb-out{i}", engine=engine, options=options, progress=False))
                assert rgb.ok and rgb.done_now == n, rgb.summary()
            row["load_average"][f"after_round{i + 1}"] = _load()
    threads = ThreadCpu()
    with threads:  # where the job's CPU time goes, thread by thread
        rep = colorize_archive(folder, work / "archive-threads", engine=engine, options=options, progress=False)
    assert rep.ok and rep.done_now == n, rep.summary()
    row["thread_cpu_ms_per_item"] = {BATCH_ROLES.get(k, k): v for k, v in threads.ms_per_item(n).items()}
    row["stages_ms_per_item"] = batch_stages(files, engine, options, work)
    row["render_route"] = row["stages_ms_per_item"].pop("route")
    row["load_average"]["after_stages"] = _load()
    naive_out = work / "naive-out"
    naive_out.mkdir()
    warm_naive(engine, colour, h, w)
    r.run("naive", lambda: [colorize_image(f, naive_out / f.name, engine=engine, options=colour) for f in files])
    row["load_average"]["after_naive"] = _load()
    ips = {k: r.rate(k, n) for k in r.wall}
    cpu = {k: r.cpu_ms(k, n) for k in r.cpu}
    bound = 1 / (1 / ips["engine"] + 1 / ips["codec"])
    row.update(rounds=ROUNDS, engine_items_per_s=round(ips["engine"], 2), codec_items_per_s=round(ips["codec"], 2),
               bound_items_per_s=round(bound, 2), archive_items_per_s=round(ips["archive"], 2),
               naive_items_per_s=round(ips["naive"], 2), archive_over_bound=round(ips["archive"] / bound, 3),
               archive_over_bound_paired=round(r.paired_over_bound("archive", ["engine", "codec"]), 3),
               archive_over_naive=round(ips["archive"] / ips["naive"], 3),
               **({"archive_rgb_route_items_per_s": round(ips["archive_rgb_route"], 2),
                   "archive_over_rgb_route": round(ips["archive"] / ips["archive_rgb_route"], 3),
                   "archive_over_rgb_route_paired": round(r.paired_over_bound("archive", ["archive_rgb_route"]), 3)}
                  if RGB_ROUTE else {"archive_rgb_route": "not measured (--no-rgb-route)"}),
               together_items_per_s=round(ips["together"], 2), **overlap_figures(r, "archive"),
               **{k.replace("_fps", "_items_per_s"): v for k, v in colour_bound_figures(r, "archive", n).items()},
               archive_engine_share=round(max(rep.engine_share for rep in reports), 3),
               cpu_ms_per_item={k: round(v, 1) for k, v in cpu.items()},
               cpu_bound_over_archive=round((cpu["engine"] + cpu["codec"]) / cpu["archive"], 3),
               all_rounds_s={k: [round(x, 2) for x in v] for k, v in r.wall.items()})
    log.info("batch: %s", row)
    return row


def _jpeg_planes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, Cb, Cr (uint8 (H, W) each) of a JPEG as stored: libjpeg's output without its conversion
    to RGB (Pillow's draft mode), chroma upsampled to full size."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("YCbCr", im.size)
        ycc = np.asarray(im.convert("YCbCr"))
    return tuple(np.ascontiguousarray(ycc[..., i]) for i in range(3))  # type: ignore[return-value]


# --------------------------------------------------------------------------- memory

_RSS_CHILD = textwrap.dedent("""
    import json, sys, threading, time
    import psutil
    from streamcolor.engines import load_engine
    from streamcolor.video import colorize_video
    eng = load_engine("default", sys.argv[3])
    proc, peak, done = psutil.Process(), [0], threading.Event()
    before = proc.memory_info().rss
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    t = time.perf_counter()
    colorize_video(sys.argv[1], sys.argv[2], engine=eng, progress=False)
    s = time.perf_counter() - t
    done.set()
    print(json.dumps({"engine": eng.name, "before_mb": before / 2**20, "peak_mb": max(peak[0], proc.memory_info().rss) / 2**20,
                      "seconds": s}))
""")


def rss_figures(work: Path, backend: str = "auto") -> dict[str, Any]:
    """Peak RSS of a fresh process (engine ``backend`` loaded before sampling starts) per clip length."""
    from streamcolor.video import make_clip

    row: dict[str, Any] = {"width": RSS_SIZE[0], "height": RSS_SIZE[1], "seconds": list(RSS_SECONDS),
                           "load_average": {"start": _load()}}
    for secs in RSS_SECONDS:
        src = make_clip(work / f"rss-{secs}s.mp4", *RSS_SIZE, secs * 24)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # (the device's wheels)
        res = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(src), str(work / f"rss-{secs}s-out.mp4"), backend],
                             cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": path})
        r = json.loads(res.stdout.strip().splitlines()[-1])
        row[f"{secs}s"] = {"rss_before_mb": round(r["before_mb"], 1), "peak_rss_mb": round(r["peak_mb"], 1),
                           "growth_mb": round(r["peak_mb"] - r["before_mb"], 1),
                           "fps": round(secs * 24 / r["seconds"], 2), "engine": r["engine"]}
        row["load_average"][f"after_{secs}s"] = _load()
    short, long = (row[f"{s}s"] for s in RSS_SECONDS)
    row["long_over_short_peak"] = round(long["peak_rss_mb"] / short["peak_rss_mb"], 3)
    row["long_minus_short_growth_mb"] = round(long["growth_mb"] - short["growth_mb"], 1)
    return row


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    global CLIPS, PHOTOS, ROUNDS, ENGINE_BATCHES, ENGINE_VARIANTS, RGB_ROUTE
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_bound", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results JSON to write")
    ap.add_argument("--backend", default="auto", help="engine backend (default: what load_engine picks)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["engine", "video", "batch", "rss"],
                    help="parts to leave out")
    ap.add_argument("--quick", action="store_true", help="tiny inputs: checks that the script runs, no figures")
    ap.add_argument("--update", action="store_true",
                    help="keep the parts of an existing --out file that this run skips (each part records its run)")
    ap.add_argument("--clips", nargs="+", choices=[c[0] for c in CLIPS], help="video sizes to measure (default: all)")
    ap.add_argument("--frames", type=_positive, help="frames of each clip (default: 96 at 576p, 48 at 1080p; a GPU "
                    "needs a few of its batches per clip)")
    ap.add_argument("--photos", type=_positive, help=f"photos of the batch figure (default {PHOTOS[0]})")
    ap.add_argument("--rounds", type=_positive, help=f"rounds of each part (default {ROUNDS})")
    ap.add_argument("--engine-batches", type=_positive, nargs="+",
                    help=f"batches of the engine-only figure (default {' '.join(map(str, ENGINE_BATCHES))})")
    ap.add_argument("--engine-variants", type=_variant, nargs="+", default=[], metavar="NAME=VALUE[,...]",
                    help="the engine-only figure again with each of these engine settings, beside its own "
                    "(the Keras engine's chunk_rows, transfer, copy_threads; e.g. transfer=bfloat16,copy_threads=8)")
    ap.add_argument("--cv2-threads", type=_positive,
                    help="OpenCV's threads for the whole run (cv2.setNumThreads; default: OpenCV's own, one a core). "
                    "Why: on the H200's 16 cores a batch job's threads alive before it (OpenCV's pool among them, the "
                    "engine has none there) took 31 CPU ms a photo, and the RGB route 562; whether OpenCV's pool, "
                    "spinning between the many small calls of 16 workers, is the cause is not measured yet")
    ap.add_argument("--no-rgb-route", action="store_true",
                    help="leave the batch part's RGB-route rounds out (the reference for gray JPEGs written from "
                    "their Y'CbCr planes): on the H200 each took 20 s for 128 photos, too long for more photos")
    ap.add_argument("--require-gpu", action="store_true",
                    help="stop (exit 3) unless the engine runs on a GPU: a GPU session's minutes are not spent "
                    "measuring a CPU engine")
    args = ap.parse_args(argv)
    if args.clips:
        CLIPS = [c for name in args.clips for c in CLIPS if c[0] == name]  # in the order asked
    if args.frames:
        CLIPS = [(name, w, h, args.frames) for name, w, h, _ in CLIPS]
    if args.photos:
        PHOTOS = (args.photos, *PHOTOS[1:])
    if args.rounds:
        ROUNDS = args.rounds
    if args.engine_batches:
        ENGINE_BATCHES = tuple(args.engine_batches)
    ENGINE_VARIANTS = tuple(args.engine_variants)
    RGB_ROUTE = not args.no_rgb_route
    if args.quick:
        global RSS_SECONDS, RSS_SIZE, THREAD_PERIOD, ENGINE_SIZE, ENGINE_IMAGES
        CLIPS, PHOTOS, RSS_SECONDS, RSS_SIZE = [("tiny", 160, 96, 12)], (4, 96, 128), (1, 2), (96, 64)
        ENGINE_SIZE, ENGINE_BATCHES, ENGINE_IMAGES = 64, (1, 2), 2
        THREAD_PERIOD = 0.005
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import cv2

    if args.cv2_threads:
        cv2.setNumThreads(args.cv2_threads)
    from streamcolor.colorize import model_options
    from streamcolor.engines import load_engine

    engine = load_engine("default", args.backend)
    log.info("engine: %s (%s)", engine.name, "GPU" if engine.on_gpu else "CPU")
    if args.require_gpu and not engine.on_gpu:
        log.error("--require-gpu: the engine %s runs on the CPU; measuring nothing", engine.name)
        return 3
    if any(not hasattr(engine, k) for v in args.engine_variants for k in v):
        ap.error(f"--engine-variants: {engine.name} has no such setting: {args.engine_variants}")
    colour = model_options(engine)
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "command": "python -m benchmarks.pipeline_bound " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "av": av.__version__,
                    "cv2_threads": cv2.getNumThreads()},
        "engine": engine.name, "model": engine.info.name, "render_size": colour.render_size,
        "batch_size": engine.preferred_batch_size, "load_average_start": list(os.getloadavg()),
    }
    t0 = time.perf_counter()
    run = {"command": result["command"], "started": datetime.datetime.now().isoformat(timespec="seconds"),
           "parts": [p for p in ("engine", "batch", "memory", "video") if p.replace("memory", "rss") not in args.skip],
           "engine": engine.name, "done": []}
    if args.update and args.out.is_file():  # earlier parts stay, with the run that measured them
        try:
            old = json.loads(args.out.read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"--update {args.out}: not a results file to add to ({exc})")
        result = {**old, **{k: v for k, v in result.items() if k not in ("load_average_start", "command", "date")}}
    earlier_runs = result.get("runs", [])
    from streamcolor import tempfiles

    try:  # tried before measuring, so that an unwritable --out fails now, not after minutes of it
        tempfiles.create(args.out).discard()
    except OSError as exc:
        ap.error(f"--out {args.out}: cannot write there ({exc})")

    def save(part: str) -> None:
        """Write the file with what is measured so far, whole or not at all: a run killed later
        (a time limit) keeps every part it finished, and the run's ``done`` says which."""
        run["done"].append(part)
        run["wall_s"] = round(time.perf_counter() - t0, 1)
        if not args.update:
            result["load_average_end"] = list(os.getloadavg())
            result["wall_s"] = run["wall_s"]
        result["runs"] = [*earlier_runs, run]
        staged = tempfiles.create(args.out)
        try:
            staged.path.write_text(json.dumps(result, indent=1) + "\n")
        except BaseException:
            staged.discard()
            raise
        staged.commit()
        log.info("wrote %s (%s) at %.0f s", args.out, part, run["wall_s"])

    with tempfile.TemporaryDirectory(prefix="sc-bound-") as tmp:
        work = Path(tmp)
        if "engine" not in args.skip:
            result["engine_only"] = engine_figures(engine)
            save("engine")
        if "batch" not in args.skip:
            result["batch"] = batch_figures(engine, work)
            save("batch")
        if "rss" not in args.skip:
            result["memory"] = rss_figures(work, args.backend)
            save("memory")
        if "video" not in args.skip:  # (last: the longest part, so a time limit cuts it, not the rest)
            result["video"] = []
            for row in video_figures(engine, work):
                result["video"].append(row)
                save(f"video {row['clip']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
