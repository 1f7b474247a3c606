"""Dynamic batching: ``predict`` calls from many threads merged into few engine calls.

A web server colorizes each request in its own worker thread; calling the
engine from each of them would run one image per network call (slow on a
CPU, wasteful on a GPU) and make the calls fight over the same cores.
:class:`BatchingEngine` stands in for the engine in those threads: every
``predict(l)`` is queued, one engine thread takes the first queued request,
waits at most ``max_wait_ms`` (counted from when that request arrived) for
others, stacks what it has into calls of at most ``max_batch`` images and
hands each thread its own rows back.  While a call runs, new requests queue
up, so under load batches fill without waiting at all.

Only inputs of the same shape can share a call (a network input's shape
follows the image's aspect ratio and the render size); a window holding
several shapes makes one call per shape.  With ``max_batch=1`` every request
is its own call, in arrival order: batching off, for comparison.

It is used through the public colorize functions, which only need
``predict``, ``info`` and ``size_multiple``::

    batcher = BatchingEngine(load_engine("default"), BatchingOptions(max_batch=16, max_wait_ms=5))
    rgb = colorize_batch([decoded], engine=batcher, options=options)[0]   # from any thread
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from streamcolor.engines import EngineError

if TYPE_CHECKING:
    from streamcolor.engines import Engine, ModelInfo

log = logging.getLogger(__name__)

_STOP = object()  # tells the engine thread to end


@dataclass(frozen=True)
class BatchingOptions:
    """How requests are merged.  Override fields with ``dataclasses.replace``."""

    max_batch: int = 16  # most images in one engine call; 1 turns batching off
    max_wait_ms: float = 5.0  # longest a request waits for others to join its call, milliseconds

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


@dataclass
class BatchStats:
    """Counters since the batcher started (a snapshot; see :meth:`BatchingEngine.stats`)."""

    requests: int = 0  # predict() calls served
    images: int = 0  # rows (images) served
    calls: int = 0  # engine calls made
    failed_calls: int = 0  # engine calls that raised
    engine_s: float = 0.0  # seconds spent inside the engine
    sizes: Counter = field(default_factory=Counter)  # images per call -> number of calls

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the counters, mean and largest call, and the size histogram."""
        return {
            "requests": self.requests, "images": self.images, "engine_calls": self.calls,
            "failed_calls": self.failed_calls, "engine_seconds": round(self.engine_s, 4),
            "mean_batch": round(self.images / self.calls, 3) if self.calls else 0.0,
            "max_batch_seen": max(self.sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }


@dataclass
class _Item:
    l: np.ndarray  # (n, h, w, 1) float32
    embedding: np.ndarray | None  # (n, E) or None
    arrived: float  # time.monotonic() at submit
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        """Items with equal keys can be stacked into one call."""
        emb = None if self.embedding is None else self.embedding.shape[1:]
        return self.l.shape[1:], emb


class BatchingEngine:
    """An engine wrapper whose ``predict`` merges concurrent calls (thread-safe).

    Parameters
    ----------
    engine:
        The loaded engine every call goes to (one per process).  It is not
        closed by :meth:`close`; its owner closes it.
    options:
        ``max_batch`` and ``max_wait_ms``, see :class:`BatchingOptions`.
    on_batch:
        Optional hook called in the engine thread after each engine call with
        ``(images, seconds)``; for counting calls or metrics.
    """

    def __init__(self, engine: "Engine", options: BatchingOptions = BatchingOptions(), *,
                 on_batch: Callable[[int, float], None] | None = None):
        self.engine = engine
        self.options = options
        self._on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="streamcolor-batcher", daemon=True)
        self._thread.start()

    # ---- what the colorize functions read from an engine
    @property
    def info(self) -> "ModelInfo":
        return self.engine.info

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def size_multiple(self) -> int:
        return self.engine.size_multiple

    @property
    def reuses_embedding(self) -> bool:
        return self.engine.reuses_embedding

    def refine(self, l: np.ndarray, ab: np.ndarray, *, work=None) -> np.ndarray:
        """``Engine.refine``, in the caller's thread (it needs no runtime)."""
        return self.engine.refine(l, ab, work=work)

    @property
    def last_batch_size(self) -> int:
        """Images in the engine call that served this thread's last ``predict`` (0 before any)."""
        return getattr(self._local, "batch", 0)

    def predict(self, l: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        """Like ``Engine.predict``: (N, H, W, 1) L in [-1, 1] -> (N, h, w, 2) a*b* in [-1, 1].

        Blocks until the engine call holding these rows has run; raises what
        the engine raised, or EngineError when the batcher is closed.
        """
        if self._closed:
            raise EngineError("the batching engine is closed")
        l = np.ascontiguousarray(l, dtype=np.float32)
        if l.ndim != 4:
            raise ValueError(f"L batch must be (N, H, W, 1), got {l.shape}")
        item = _Item(l, None if embedding is None else np.asarray(embedding, dtype=np.float32), time.monotonic())
        self._queue.put(item)
        ab, size = item.future.result()
        self._local.batch = size
        return ab

    def stats(self) -> BatchStats:
        """A copy of the counters."""
        with self._stats_lock:
            s = self._stats
            return BatchStats(s.requests, s.images, s.calls, s.failed_calls, s.engine_s, Counter(s.sizes))

    def close(self, timeout: float = 10.0) -> None:
        """Finish the calls already queued, then stop the engine thread.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> "BatchingEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        o = self.options
        return f"<BatchingEngine max_batch={o.max_batch} max_wait_ms={o.max_wait_ms} over {self.engine!r}>"

    # ---- the engine thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            window, stopping = self._collect(first)
            self._serve(window)
        # fail whatever is still queued (nothing should be: close() comes after the requests)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item.future.set_exception(EngineError("the batching engine is closed"))

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        """``first`` plus what arrives until its wait is over or a call is full."""
        window, rows = [first], len(first.l)
        deadline = first.arrived + self.options.max_wait_ms / 1000.0
        while rows < self.options.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return window, True
            window.append(item)
            rows += len(item.l)
        return window, False

    def _serve(self, window: list[_Item]) -> None:
        """One engine call per shape and per ``max_batch`` images; results to each item."""
        groups: dict[tuple, list[_Item]] = {}
        for item in window:
            groups.setdefault(item.key, []).append(item)
        for items in groups.values():
            call: list[_Item] = []
            rows = 0
            for item in items:
                if call and rows + len(item.l) > self.options.max_batch:
                    self._call(call)
                    call, rows = [], 0
                call.append(item)
                rows += len(item.l)
            if call:
                self._call(call)

    def _call(self, items: list[_Item]) -> None:
        l = items[0].l if len(items) == 1 else np.concatenate([it.l for it in items])
        emb = None
        if items[0].embedding is not None:
            emb = items[0].embedding if len(items) == 1 else np.concatenate([it.embedding for it in items])
        n = len(l)
        t0 = time.perf_counter()
        try:
            ab = self.engine.predict(l, emb)
        except BaseException as exc:  # every waiting request gets the error; the thread lives on
            with self._stats_lock:
                self._stats.failed_calls += 1
            log.error("engine call of %d image(s) failed: %s", n, exc)
            for it in items:
                it.future.set_exception(exc)
            return
        seconds = time.perf_counter() - t0
        with self._stats_lock:
            s = self._stats
            s.requests += len(items)
            s.images += n
            s.calls += 1
            s.engine_s += seconds
            s.sizes[n] += 1
        log.debug("engine call: %d image(s) from %d request(s) in %.1f ms", n, len(items), seconds * 1e3)
        start = 0
        for it in items:
            k = len(it.l)
            it.future.set_result((ab[start:start + k], n))
            start += k
        if self._on_batch is not None:
            try:
                self._on_batch(n, seconds)
            except Exception:  # a faulty hook must not stop the engine thread
                log.exception("on_batch hook failed")
