"""How much memory an image takes while it is colorized, and a budget that
keeps a job's images in flight under a byte count.

A job decodes, renders and encodes several images at once (threads, a batch
for the engine).  Most photos are small, but one that decodes to ~100
megapixels from a small file takes about a gigabyte while it is worked on,
and several of them at once would add up.  So a job estimates each item's
working memory from its pixel count before decoding it (the header says the
size; nothing is decoded to learn it) and takes that many bytes from a
:class:`MemoryBudget`; big items then wait for each other instead of running
together.  One item bigger than the whole budget still runs, alone.
Besides the items counted, each of a job's worker threads keeps its work
arrays from one item to the next until the job ends
(:func:`streamcolor.colorize.keep_work_arrays`, 64 MB at most a thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import threading
import warnings
from typing import AsyncIterator

from PIL import Image

from streamcolor.image_io import DEFAULT_MAX_PIXELS, allow_pixels, is_16bit_colour

log = logging.getLogger(__name__)

#: Bytes of images in flight at once in a job, by default (``--memory-budget``).
DEFAULT_MEMORY_BUDGET = 2 << 30

#: Working memory of one image, bytes a pixel (decoded pixels, Pillow's copy
#: while decoding, the L* made for the network input, the output array,
#: Pillow's copy while encoding): measured at about 8 for 8-bit gray and 13
#: for 8-bit RGB (benchmarks/bench_memory.py); rounded up, as what is
#: counted must not be less than what is used.
BYTES_PER_PIXEL = 16
#: Extra bytes a pixel for 16-bit or float sources (twice the pixels and output).
BYTES_PER_PIXEL_16 = 12
#: What an item of unknown size (its header unreadable: it will fail to decode) is counted as.
UNKNOWN_BYTES = 1 << 20
_WIDE_MODES = ("I", "F")


#: Working memory of colorizing a video, bytes per pixel of one frame: the frames in flight
#: between decoder, network, composer and encoder (queues sized by the batch, x264's lookahead)
#: -- measured at 306 to 328 (`streamcolor video` on 720p, 1080p and 4K clips, peak RSS over that
#: of a clip of tiny frames: ``benchmarks/bench_memory.py --video``), rounded up.
VIDEO_BYTES_PER_FRAME_PIXEL = 384


def video_bytes(width: int, height: int) -> int:
    """Estimated working memory of colorizing a video of ``width`` x ``height`` frames (its
    length does not matter: memory stays flat, see benchmarks/pipeline_bound.py)."""
    return max(1, width * height) * VIDEO_BYTES_PER_FRAME_PIXEL


def image_bytes(width: int, height: int, *, wide: bool = False) -> int:
    """Estimated working memory of colorizing one ``width`` x ``height`` image
    (``wide``: 16-bit or float samples)."""
    per_pixel = BYTES_PER_PIXEL + (BYTES_PER_PIXEL_16 if wide else 0)
    return max(1, width * height) * per_pixel


#: The engine's working memory for one image of a batch, bytes a pixel of the network input: ONNX
#: Runtime's activations for the default U-Net measured at 199 (fp32, CPU, rows 8 -> 32 and 8 -> 64
#: at 256x320), rounded up.  Why it counts: with a large ``-b`` a batch of 100+ photos took as much
#: memory in the engine as the photos themselves, and a job went to 1.8x its budget.
ENGINE_BYTES_PER_INPUT_PIXEL = 256


def engine_bytes(width: int, height: int, render_size: int) -> int:
    """Estimated engine memory for one ``width`` x ``height`` image at ``render_size`` (the
    longer side of the network input; the aspect ratio kept)."""
    longer, shorter = max(1, width, height), max(1, min(width, height))
    return render_size * max(1, render_size * shorter // longer) * ENGINE_BYTES_PER_INPUT_PIXEL


def encoded_bytes(data: bytes, render_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Estimated working memory of colorizing the encoded image ``data``, from
    its header alone (Pillow reads the size without decoding; a cheap call);
    with ``render_size``, the engine's share for it in a batch too (:func:`engine_bytes`).
    ``max_pixels``: the largest image the job decodes; Pillow's own guard is raised to it first
    (:func:`~streamcolor.image_io.allow_pixels`), or a photo of 179-268 Mpx, which its guard
    refuses at its default, was estimated as an unknown file of 1 MB before the first decode raised it."""
    allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                wide = im.mode.startswith(_WIDE_MODES) or is_16bit_colour(im)  # a 16-bit colour PNG says "RGB"
    except Exception:  # not an image, or over Pillow's limit: decoding will say why
        return UNKNOWN_BYTES + len(data)
    engine = engine_bytes(width, height, render_size) if render_size else 0
    return image_bytes(width, height, wide=wide) + engine + len(data)


class MemoryBudget:
    """A byte count shared by the threads of a job.

    ``acquire(n)`` waits until ``n`` more bytes fit under the budget -- or
    until nothing else is held, so one item bigger than the budget runs
    alone rather than never.  :attr:`waiting` tells the thread that gathers
    batches that an item is held back, so it should run what it holds now
    instead of waiting for a full batch (which could never come)."""

    def __init__(self, total: int):
        if total < 1:
            raise ValueError(f"memory budget must be at least 1 byte, got {total}")
        self.total = total
        self.used = 0
        self.peak = 0  # most bytes held at once, for tests and logs
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def waiting(self) -> bool:
        """Whether some thread is waiting in :meth:`acquire`."""
        return self._waiting > 0

    def acquire(self, nbytes: int, timeout: float | None = None) -> bool:
        """Take ``nbytes``; False if ``timeout`` passed first (nothing taken)."""
        with self._cond:
            self._waiting += 1
            try:
                ok = self._cond.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.total, timeout)
            finally:
                self._waiting -= 1
            if ok:
                self.used += nbytes
                self.peak = max(self.peak, self.used)
            return ok

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` taken by :meth:`acquire`."""
        with self._cond:
            self.used = max(0, self.used - nbytes)
            self._cond.notify_all()


class AsyncMemoryBudget:
    """:class:`MemoryBudget` for the requests of one asyncio loop (a server):
    ``async with budget.hold(n)`` waits, without a thread, until ``n`` more
    bytes fit -- or nothing else is held, so one request bigger than the
    budget still runs, alone.  Requests are let in first come, first served:
    a big one waiting for room is not overtaken by a stream of small ones
    (which would keep the budget from ever emptying for it)."""

    def __init__(self, total: int):
        if total < 1:
            raise ValueError(f"memory budget must be at least 1 byte, got {total}")
        self.total = total
        self.used = 0
        self.peak = 0
        self._line: collections.deque[object] = collections.deque()  # tickets of the waiting, in arrival order
        self._cond: asyncio.Condition | None = None  # made on first use, inside the loop
        self._wakers: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak ones)

    @property
    def waiting(self) -> int:
        """How many requests wait for room."""
        return len(self._line)

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator["Share"]:
        """Wait for room for ``nbytes``, hold it for the ``async with`` block; the :class:`Share`
        it gives can :meth:`~Share.shrink` the bytes held once less is needed."""
        if self._cond is None:
            self._cond = asyncio.Condition()
        cond, ticket = self._cond, object()
        self._line.append(ticket)
        try:
            async with cond:
                await cond.wait_for(lambda: self._line[0] is ticket
                                    and (self.used == 0 or self.used + nbytes <= self.total))
                self.used += nbytes
                self.peak = max(self.peak, self.used)
        finally:
            first = self._line and self._line[0] is ticket
            self._line.remove(ticket)
            if first:  # the next in line may fit now too (or, if this one gave up, instead)
                self._wake(cond)
        share = Share(self, nbytes)
        try:
            yield share
        finally:  # given back without awaiting the lock, so a cancelled request cannot keep its bytes
            self.used = max(0, self.used - share.nbytes)
            self._wake(cond)

    def _shrink(self, share: "Share", nbytes: int) -> None:
        if 0 <= nbytes < share.nbytes:
            self.used = max(0, self.used - (share.nbytes - nbytes))
            share.nbytes = nbytes
            if self._cond is not None:
                self._wake(self._cond)

    def _wake(self, cond: asyncio.Condition) -> None:
        async def wake() -> None:
            async with cond:
                cond.notify_all()

        task = asyncio.get_running_loop().create_task(wake())
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)


class Share:
    """The bytes one holder of an :class:`AsyncMemoryBudget` holds."""

    def __init__(self, budget: AsyncMemoryBudget, nbytes: int):
        self._budget = budget
        self.nbytes = nbytes

    def shrink(self, nbytes: int) -> None:
        """Hold only ``nbytes`` from now on (e.g. an answer's encoded bytes, once the image's
        working memory is freed); the rest goes back to the budget at once."""
        self._budget._shrink(self, nbytes)


__all__ = ["BYTES_PER_PIXEL", "DEFAULT_MEMORY_BUDGET", "ENGINE_BYTES_PER_INPUT_PIXEL", "AsyncMemoryBudget",
           "MemoryBudget", "encoded_bytes", "engine_bytes", "image_bytes"]
