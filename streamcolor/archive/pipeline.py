"""``colorize_archive``: a batch job run through a streaming, threaded pipeline.

A reader thread reads members one at a time, in listing order, straight from
the archive into memory (nothing is extracted to disk first) and hands the
bytes to a thread pool that decodes them and prepares the network input.
The calling thread gathers prepared images into batches of one render shape
and runs the engine; the same pool composes, encodes and writes the results.
OpenCV, Pillow, zlib and ONNX Runtime release the GIL, so the stages overlap
and use every core.  Queues are bounded, so memory stays flat however big the
archive, and each item's working memory, estimated from its header before it
is decoded, is taken from a :class:`~streamcolor.memory.MemoryBudget`
(``BatchOptions.memory_budget``) until it is written, so a few huge images
wait for each other instead of being decoded together.  The steps themselves are the per-item path of
:mod:`streamcolor.items` and :mod:`streamcolor.colorize`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Iterator, Sequence


from streamcolor import memory
from streamcolor.archive.job import BatchJob
from streamcolor.archive.listing import BatchOptions, Item
from streamcolor.archive.workers import Processes, Threads, pool_died, refuse_in_worker_start
from streamcolor.colorize import SCRATCH_KEEP_BYTES, ColorOptions, Scratch, ShapeBatcher, engine_for, predict
from streamcolor.errors import InputError
from streamcolor.progress import Progress, progress_bar
from streamcolor.items import FolderSink, JobReport, Outcome, colorize_items, engine_failure, outcome_of

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)


def colorize_archive(src: str | os.PathLike | Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                     engine: "Engine | str | None" = None, options: BatchOptions = BatchOptions(),
                     progress: Progress = None) -> JobReport:
    """Colorize every image of a folder, zip or tar archive into a folder tree.

    Resumable: run the same call again after an interruption (even SIGKILL)
    and it finishes what is left; finished outputs are not redone.

    Parameters
    ----------
    src:
        A folder (searched recursively), a ``.zip``, or a ``.tar``/``.tar.gz``/
        ``.tgz``/``.tar.xz``/``.tar.bz2`` -- or a list of them.
    dst:
        The output folder, mirroring the source tree (``dst/<source name>/...``
        for several sources).  It also holds the resume manifest
        (``.streamcolor/manifest.sqlite``) and the report
        (``streamcolor-report.csv``).  A name ending in an archive suffix
        (``album-colour.zip``) means: fill the folder ``album-colour/``, then
        pack it into ``album-colour.zip``.
    engine:
        A loaded engine; the shared default model when None.
    options:
        Output format, batching, threads and safety limits: :class:`BatchOptions`.
    progress:
        None (default): a tqdm bar on stderr only when it is a terminal; True/False: always/never;
        a callable ``fn(done, total)``: called after each item instead of a bar
        (see :mod:`streamcolor.progress`).

    Returns
    -------
    A :class:`~streamcolor.items.JobReport`.  Bad items (corrupt, truncated,
    empty, not an image, unsafe, over a limit) are skipped and listed, never fatal.

    Raises
    ------
    InputError: a source is missing or is not a folder or a readable archive.
    OutputError: the output location cannot be written (read-only, full);
        every item finished before that is kept and recorded.
    ValueError: the output would overlap a source.
    """
    if options.processes:
        refuse_in_worker_start()  # (a script without the __main__ guard: see the function)
    engine = engine_for(engine)  # (first: an unknown model name leaves no job folder behind)
    with BatchJob(src, dst, options=options) as job:
        job.note_settings(engine.info)
        color = options.color_options(engine)
        with progress_bar(progress, total=len(job.items), initial=job.settled, unit="img", desc="colorize") as bar:
            pipeline = _Pipeline(job, engine, color, bar)
            pipeline.run()
        return job.finish(engine_s=pipeline.engine_s)


def process_items(items: Sequence[tuple[Item, bytes]], *, engine: "Engine", out_dir: str | os.PathLike,
                  options: ColorOptions, batch_size: int = 8) -> list[Outcome]:
    """Decode, colorize, encode and write several items of a job, one after
    another (the steps of :func:`colorize_archive` without its threads).
    Items refused at listing come back with their refusal.  Returns one outcome
    per item, in order.  Raises OutputError when the output location cannot
    be written."""
    options = options.for_engine(engine)
    todo = [(i, pair) for i, pair in enumerate(items) if not pair[0].refusal]
    done = colorize_items([pair for _, pair in todo], engine=engine, options=options,
                          sink=FolderSink(out_dir, keep_others=True), batch_size=batch_size)
    outcomes = {i: o for (i, _), o in zip(todo, done)}
    return [outcomes.get(i) or Outcome(item, item.refusal_state, item.refusal) for i, (item, _) in enumerate(items)]


_NOTHING = object()  # no entry from the reader yet

_cv2_lock = threading.Lock()
_cv2_jobs = 0  # batch jobs running in this process with OpenCV held to one thread
_cv2_threads_before = 0  # OpenCV's threads before the first of them


@contextlib.contextmanager
def opencv_one_thread(enabled: bool = True) -> Iterator[None]:
    """OpenCV's own thread pool held to one thread while a batch job's workers run, then put back.

    Why: the job's workers already keep every core busy, one photo each; OpenCV's pool (one
    thread a core) beside them only spins and switches. On the H200's 16 cores a job of
    1-megapixel photos took 76 CPU ms a photo with it (21 of them system time, 12,600
    involuntary context switches a photo) and 55 without it, and ran 7% faster; the RGB
    route took 562 CPU ms a photo with it and 46 without
    (``benchmarks/results/batch-scaling-gpu-h200-2026-12-04.json``, ``pipeline-gpu-h200-2026-12-04b.json``).
    ``cv2.setNumThreads`` is the process's: the first of several concurrent jobs sets it, the
    last one to end restores what it was."""
    global _cv2_jobs, _cv2_threads_before
    if not enabled:
        yield
        return
    import cv2

    with _cv2_lock:
        if _cv2_jobs == 0:
            _cv2_threads_before = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _cv2_jobs += 1
    try:
        yield
    finally:
        with _cv2_lock:
            _cv2_jobs -= 1
            if _cv2_jobs == 0:
                cv2.setNumThreads(_cv2_threads_before)


class _Pipeline:
    """reader thread -> pool (decode) -> calling thread (engine) -> pool (compose, encode, write).

    The manifest and the progress bar are touched only from the calling thread.
    """

    def __init__(self, job: BatchJob, engine: "Engine", color: ColorOptions, bar):
        self.job, self.engine, self.color, self.bar = job, engine, color, bar
        self.options = job.options
        # the job renames each output as it records it, replacing only the item's own earlier one
        self.sink = FolderSink(job.out_dir, staging=True, keep_others=True)
        self.processes = self.options.processes
        self.workers = self.processes or self.options.workers or os.cpu_count() or 1
        self.batch_size = self.options.batch_for(engine)
        self.depth = 2 * self.batch_size + self.workers  # decoded items waiting for the engine, at most
        self.engine_s = 0.0
        # the engine calls' thread is the caller's, which must not keep work arrays for good (a job's
        # threads only): the model's upsampling step reuses this job's own instead of fresh ones
        self.work = Scratch(SCRATCH_KEEP_BYTES)
        self.budget = memory.MemoryBudget(color.memory_budget)
        # item key -> bytes it holds of the budget, until its outcome (the key: an item that comes back
        # from a worker process is a copy of the one sent)
        self._held: dict[str, int] = {}
        self._stop = threading.Event()

    # -- the reader thread ---------------------------------------------------------------------

    def _read_all(self, todo: Sequence[Item], workers: Threads | Processes, q: queue.Queue) -> None:
        try:
            for item in todo:
                if self._stop.is_set():
                    return
                try:
                    data = self.job.read(item)
                except InputError as exc:
                    fut: Future = Future()
                    fut.set_exception(exc)
                else:
                    cost = memory.encoded_bytes(data, self.color.render_size, self.color.max_pixels)  # (engine too)
                    while not self.budget.acquire(cost, timeout=0.1):
                        if self._stop.is_set():
                            return
                    self._held[item.key] = cost
                    fut = workers.decode(item, data, self.color)
                    del data
                if not self._put(q, (item, fut)):
                    return
        except BaseException as exc:  # a bug: hand it to the calling thread rather than hang
            self._put(q, exc)
        finally:
            self._put(q, None)

    def _put(self, q: queue.Queue, entry) -> bool:
        while not self._stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- the calling thread --------------------------------------------------------------------

    def run(self) -> None:
        todo = self.job.todo
        if not todo:
            return
        with opencv_one_thread(self.workers > 1):
            self._run(todo)

    def _run(self, todo: Sequence[Item]) -> None:
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        workers = self._workers()
        reader = threading.Thread(target=self._read_all, args=(todo, workers, q), name="streamcolor-reader",
                                  daemon=True)
        batcher = ShapeBatcher(self.batch_size)  # items waiting for the engine, by render shape
        writing: set[Future] = set()
        try:
            reader.start()  # (in the try: an interruption as it starts still stops and waits for it)
            ended = False
            while True:
                self._collect(writing, block=False)
                if not ended:
                    try:
                        entry = q.get(timeout=0.05)
                    except queue.Empty:
                        entry = _NOTHING
                    if entry is _NOTHING:
                        pass
                    elif entry is None:
                        ended = True
                    elif isinstance(entry, BaseException):
                        raise entry
                    else:
                        item, fut = entry
                        try:
                            batcher.add(fut.result())
                        except BrokenProcessPool:  # not the item's fault: the job stops (below), a rerun resumes
                            raise
                        except Exception as exc:  # each item on its own: record and go on
                            self._record(outcome_of(item, exc))
                # A full batch; or what is held, when the reader waits for memory that only the held
                # items can give back (they would otherwise wait for a batch that never fills): nothing
                # decoded is on its way and nothing is being written. Not sooner: items still on their
                # way fill the batch, and a batch cut short is a slower engine call (and on a GPU a
                # compile of one more batch size: a 128-photo job ran batches of 1, 58, 47 and 16).
                starved = self.budget.waiting and q.empty() and not writing
                batch = batcher.take(flush=ended or batcher.held >= self.depth or starved)
                if batch:
                    while len(writing) >= self.depth:
                        self._collect(writing, block=True)
                    t = time.perf_counter()
                    results = predict(batch, self.engine, work=self.work.take, refine=not workers.refines)
                    self.engine_s += time.perf_counter() - t
                    for prep, ab in zip(batch, results):
                        if isinstance(ab, Exception):
                            workers.drop(prep)
                            self._record(engine_failure(prep.item, ab))
                        else:
                            writing.add(workers.finish(prep, ab, self.color, self.sink))
                elif ended and not batcher.held:
                    break
            while writing:
                self._collect(writing, block=True)
        except BrokenProcessPool as exc:  # a worker process died: its result, or a submit (reader's too) to the pool
            self._stop.set()
            self._settle(writing)
            raise pool_died(exc) from exc
        except BaseException:
            self._stop.set()
            self._settle(writing)  # keep what was written before the failure
            raise
        finally:
            self._stop.set()
            while True:  # unblock the reader and drop queued work
                try:
                    entry = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(entry, tuple):
                    entry[1].cancel()
            try:
                reader.join(timeout=30)
            except RuntimeError:  # its start() was interrupted: it stops at its first look at _stop
                pass
            workers.shutdown()

    def _collect(self, writing: set[Future], *, block: bool) -> None:
        if not writing:
            return
        finished, _ = wait(writing, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in finished:
            writing.discard(fut)
            self._record(fut.result())  # OutputError from a write propagates: stop the batch

    def _workers(self) -> Threads | Processes:
        """Threads, or with ``BatchOptions.processes`` worker processes, each of which keeps the photos
        it decoded until it finishes them (:mod:`streamcolor.archive.workers`)."""
        return Processes(self.processes, self.engine.info.guided) if self.processes else Threads(self.workers)

    def _settle(self, writing: set[Future]) -> None:
        """After a fatal error: wait for writes in flight, record the ones that succeeded."""
        outcomes = []
        for fut in list(writing):
            try:
                outcomes.append(fut.result())
            except BaseException:
                continue
        writing.clear()
        for i, outcome in enumerate(outcomes):
            try:
                self._record(outcome)
            except BaseException:
                for rest in outcomes[i + 1:]:  # not recorded: their temporary files go
                    if rest.staged is not None:
                        rest.staged.discard()
                return

    def _record(self, outcome: Outcome) -> None:
        self.budget.release(self._held.pop(outcome.item.key, 0))
        self.job.record(outcome)
        self.bar.update(1)


__all__ = ["colorize_archive", "opencv_one_thread", "process_items"]
