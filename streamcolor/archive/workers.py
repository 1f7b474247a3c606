"""The batch job's workers: threads, or worker processes that keep each photo where it was decoded.

:class:`~streamcolor.archive.pipeline._Pipeline` hands every photo to its workers twice: to
decode it and make its network input, then, after the engine, to render, encode and stage it.
Both kinds of worker offer the same three calls (:meth:`Threads.decode`, :meth:`Threads.finish`,
:meth:`Threads.drop`), so the pipeline does not know which it has.

Why processes, and why each photo stays in one: the threads of one process share Python's GIL,
and a job of 1-megapixel photos holds it about 5 ms a photo (``benchmarks/gil_profile.py``), so
threads bound a job near 200 photos/s however many cores and however fast the GPU.  Worker
processes each have their own GIL.  A process pool that takes any task on any process has to
send each photo's decoded pixels back to the job's process and out again to whichever process
renders it: in a first version that pickling held the job's GIL 2.4 ms a photo of the 3.4 left
(``gil-processes-cpu-2026-12-05.json``).  Here each worker process keeps the photos it decoded
until it finishes them, so only the network's input and its a*b* grid cross between processes;
and the worker, not the job's process, brings the grid up to the render size (the model's
edge-aware upsampling, ``Engine.refine``): the job's process then only reads, batches, runs
the engine and records.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcolor.colorize import ColorOptions, Prepared, keep_work_arrays, thread_scratch
from streamcolor.engines.guided import GuidedUpsampling, refine_batch
from streamcolor.errors import StreamcolorError
from streamcolor.items import FolderSink, Outcome, decode_item, engine_failure, finish_item

if TYPE_CHECKING:
    from streamcolor.archive.listing import Item


class Threads:
    """Worker threads of the job's process: the decoded photo itself comes back to the pipeline."""

    refines = False  # the pipeline's engine calls bring a*b* up to the render size (Engine.refine)

    def __init__(self, count: int):
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="streamcolor-io", initializer=keep_work_arrays)

    def decode(self, item: "Item", data: bytes, color: ColorOptions) -> Future:
        """Future of the item's :class:`~streamcolor.colorize.Prepared` (or its InputError)."""
        return self._pool.submit(decode_item, item, data, color)

    def finish(self, prep: Prepared, ab: np.ndarray, color: ColorOptions, sink: FolderSink) -> Future:
        """Future of the item's :class:`~streamcolor.items.Outcome` (render, encode, stage)."""
        return self._pool.submit(finish_item, prep, ab, color, sink)

    def drop(self, prep: Prepared) -> None:
        """A decoded photo that will not be finished (the engine failed on it): nothing to do here."""

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Kept:
    """A photo decoded in a worker process, which keeps its pixels: what the job's process needs
    of it (the engine's input), and which worker has the rest."""

    item: Any
    net_in: np.ndarray
    worker: int


class Processes:
    """``count`` spawned worker processes, one single-process pool each, so that a photo's
    finishing goes to the process that decoded it (a fork would copy the engine's threads and
    locks mid-use).  Each new photo goes to the worker with the fewest tasks in hand.  The a*b*
    they are given is the network's grid: they bring it up to the render size themselves, with
    ``guided`` (the model's ``ModelInfo.guided``).

    The workers ignore Ctrl-C and SIGTERM (the job's process stops the job and lets each finish
    the photo it is on) and end when the job's process is gone, even killed with SIGKILL.  One that dies
    breaks its pool: the job's next result from it raises ``BrokenProcessPool``
    (:func:`pool_died` says it to the user)."""

    refines = True

    def __init__(self, count: int, guided: GuidedUpsampling | None):
        import multiprocessing

        self.guided = guided
        context = multiprocessing.get_context("spawn")
        self.count = count
        self._pools = [ProcessPoolExecutor(1, mp_context=context, initializer=_start_process, initargs=(i,))
                       for i in range(count)]
        self._busy = [0] * count  # tasks submitted and not done, per worker
        self._lock = threading.Lock()  # decode is called from the reader thread, the rest from the pipeline's
        self._start_all()

    def _start_all(self) -> None:
        """Start every worker now, with Ctrl-C and SIGTERM ignored while they start (a started
        process inherits that, and keeps it: :func:`_start_process`).  Why: a Ctrl-C in a terminal
        reaches the whole process group, workers included; one that killed a worker while its
        Python was still starting left the pool's queue feeding a dead process, and the job's
        process, on its way out, waited for that queue for good (5 runs of 8 with the signal
        0.7-1.0 s after the start; found by a user's test).  The job's process itself still stops
        at once (the signals are only ignored across the starts, on the main thread, where they
        can be set).  Then it waits for them (they start at once, in parallel), so that workers that
        cannot start, as those of a script without the ``__main__`` guard, are said as such, not as
        a worker that died mid-job."""
        import signal

        saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                saved[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            started = [pool.submit(int) for pool in self._pools]  # (spawn starts the process within submit)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        try:
            for fut in started:  # each worker up (about a second, all at once) before the first photo
                fut.result()
        except BrokenProcessPool as exc:
            self.shutdown()
            raise StreamcolorError(f"the job's worker processes could not start ({exc}; the worker's own error, "
                                   f"if any, is printed above). When the job is started from a script: "
                                   f"{MAIN_GUARD}") from None
        except BaseException:  # (Ctrl-C as they start: the workers stop too)
            self.shutdown()
            raise

    def _submit(self, worker: int, fn, *args) -> Future:
        with self._lock:
            self._busy[worker] += 1
        try:
            fut = self._pools[worker].submit(fn, *args)
        except BaseException:
            self._done(worker)
            raise
        fut.add_done_callback(lambda _: self._done(worker))
        return fut

    def _done(self, worker: int) -> None:
        with self._lock:
            self._busy[worker] -= 1

    def decode(self, item: "Item", data: bytes, color: ColorOptions) -> Future:
        """Future of a :class:`Kept` (or the item's InputError), on the least busy worker."""
        with self._lock:
            worker = min(range(self.count), key=self._busy.__getitem__)
        return self._submit(worker, _decode_kept, item, data, color)

    def finish(self, kept: Kept, ab: np.ndarray, color: ColorOptions, sink: FolderSink) -> Future:
        """Future of the item's :class:`~streamcolor.items.Outcome`, on the worker that holds it
        (``ab``: the network's grid)."""
        # a copy (the grid is small): the pool pickles it later, from its own thread, and an engine may
        # hand out rows of an output array it reuses on its next call
        return self._submit(kept.worker, _finish_kept, kept.item.key, np.array(ab), self.guided, color, sink)

    def drop(self, kept: Kept) -> None:
        """Free a kept photo that will not be finished (the engine failed on it)."""
        self._submit(kept.worker, _drop_kept, kept.item.key)

    def shutdown(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)


MAIN_GUARD = ("worker processes start Python anew and import the calling script first (multiprocessing's "
              "'spawn'), so a script that asks for processes must make its call under "
              "`if __name__ == \"__main__\":`")


def refuse_in_worker_start() -> None:
    """Refuse a job with worker processes asked for while this process is itself a worker that is
    still starting: a script that calls ``colorize_archive(..., processes=N)`` at its top level,
    without the ``__main__`` guard, is run again by each worker it starts.  Why here, before the
    engine or the output: the worker would otherwise run the whole job again on the same output
    (its manifest busy, the model loaded for nothing) and die with a message about that instead."""
    from multiprocessing import process

    if getattr(process.current_process(), "_inheriting", False):
        raise StreamcolorError(f"this process is a batch worker that is still starting: {MAIN_GUARD}")


def pool_died(exc: BaseException) -> StreamcolorError:
    """What the user is told when a worker process died mid-job."""
    return StreamcolorError(f"a worker process of the job died ({exc}); the outputs finished before it are kept: "
                            "run the same command again to resume")


# --------------------------------------------------------------------------- in a worker process

_KEPT: dict[str, Prepared] = {}  # this worker's decoded photos by item key, until finished or dropped
_WORKER = -1  # this worker's index among the job's


def _start_process(index: int) -> None:
    """A worker process's set-up: Ctrl-C and SIGTERM are the calling process's to handle; OpenCV on one thread
    (the processes already keep the cores busy, one photo each); work arrays kept from photo to
    photo; and a watch that ends the process when the job's process is gone (killed with SIGKILL:
    its workers would otherwise wait on their task queue for good)."""
    import signal

    import cv2

    global _WORKER
    _WORKER = index
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM stays ignored (from Processes._start_all): a `kill` of the process group stops the job's
    # process, which stops its workers after their photo, as with Ctrl-C; a worker killed by it instead
    # broke the pool as the job shut it down, and the job's exit hung in concurrent.futures
    cv2.setNumThreads(1)
    keep_work_arrays()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="streamcolor-parent-watch", daemon=True).start()


def _decode_kept(item: "Item", data: bytes, color: ColorOptions) -> Kept:
    prep = decode_item(item, data, color)
    _KEPT[item.key] = prep
    return Kept(item, prep.net_in, _WORKER)


def _finish_kept(key: str, ab: np.ndarray, guided: GuidedUpsampling | None, color: ColorOptions,
                 sink: FolderSink) -> Outcome:
    """:func:`finish_item` of a kept photo, its a*b* grid first brought up to the render size: the
    staged output, complete, is unlocked here and handed to the job's process, which records it
    and then renames it into place (as a Ray actor's)."""
    prep = _KEPT.pop(key)
    try:
        ab = refine_batch(prep.net_in[None], ab[None], guided, work=thread_scratch().take)[0]
    except Exception as exc:  # as the engine's own step (colorize.predict): this photo fails, the job goes on
        return engine_failure(prep.item, exc)
    outcome = finish_item(prep, ab, color, sink)
    if outcome.staged is not None:
        outcome.staged.release()
    return outcome


def _drop_kept(key: str) -> None:
    _KEPT.pop(key, None)


__all__ = ["Kept", "Processes", "Threads", "pool_died"]
