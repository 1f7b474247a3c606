"""Scale-out on Ray: the only module that imports ``ray``.

Three ways to use a Ray cluster, all built on one callable class,
:class:`ColorizeBatch` (``__init__`` loads the engine once; ``__call__`` maps
a ``dict[str, np.ndarray]`` batch to one with the result added):

* :func:`colorize_archive_ray` -- ``streamcolor batch SRC -o OUT --ray``: the
  plain batch job (:class:`streamcolor.archive.BatchJob`: listing, resume
  manifest, report, packing) with the colorizing done by a pool of actors,
  each holding a ``ColorizeBatch``.  The driver reads members (archives stay
  on the driver's disk), streams chunks to the actors with back-pressure, and
  records every outcome in the same SQLite manifest as plain ``batch``, so
  either can resume the other's run.  Actors write outputs atomically into
  OUT, which must be on storage every node sees (one machine, NFS...).
* :func:`colorize_collection` -- ``python -m streamcolor.cluster_job SRC OUT``:
  a Ray Data pipeline for large photo collections on any filesystem pyarrow
  understands (local, ``s3://``, ``gs://``...): ``read_binary_files`` ->
  ``map_batches(ColorizeBatch, compute=ActorPoolStrategy(...))``, outputs
  written by the actors straight to the output URI.
* :func:`colorize_video_ray` -- a long video split at keyframes into segments
  colorized on different actors and joined by stream copy, audio copied once.

Failure handling.  A killed actor loses no work: actors are created with
``max_restarts`` and ``max_task_retries``, so Ray restarts the actor (the
engine is loaded again) and re-runs its unfinished tasks.  If an actor keeps
dying, the driver replaces it and resubmits the work itself, item by item, so
an item that kills its worker every time (a decoder crash) ends up FAILED in
the report instead of stopping the job.  Outputs are written under a temporary
name and renamed, so an item redone after a crash is still written once.

Ray is an extra (``pip install streamcolor[ray]``), imported on first use.
``ActorPool`` (a DeveloperAPI) is not used: the small scheduler here bounds
tasks in flight and handles retries itself.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import heapq
import io
import json
import logging
import math
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from streamcolor import image_io
from streamcolor.archive import (REPORT_FILENAME, BatchJob, BatchOptions, BatchReport, Item, MemberRefused, Outcome,
                                 Prepared, decode_item, finish_item, output_name, predict_batch, safe_member_path,
                                 unique_name)
from streamcolor.colorize import ColorOptions, compose, to_dtype, upsample_ab
from streamcolor.errors import InputError, OutputError
from streamcolor.manifest import DONE, FAILED, SKIPPED

if TYPE_CHECKING:
    from streamcolor.engines import Engine
    from streamcolor.video import VideoOptions

log = logging.getLogger(__name__)

#: What to install when Ray is missing.
INSTALL_HINT = "Ray is not installed: pip install 'streamcolor[ray]'"
#: Backends that take ONNX Runtime's ``device=`` and ``threads=`` options.
_ONNX_BACKENDS = ("auto", "onnx", "onnx-int8", "onnx-fp16")
#: Columns ColorizeBatch adds to a batch.
RESULT_COLUMNS = ("key", "state", "error", "output")
#: Work folder of a video on Ray, next to its output: ``.<name>.segments``.
_SEGMENTS_SUFFIX = ".segments"
#: Container of segment files: MP4 keeps the stream's time base and every pts/dts exactly (Matroska rounds to ms).
_SEGMENT_CONTAINER = ".mp4"


def _ray():
    """The ``ray`` module, or ImportError with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401  (the cluster job needs it; fail early and clearly)
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return ray


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide a job runs on Ray.  Override with ``dataclasses.replace``."""

    address: str | None = None  # None: $RAY_ADDRESS, else a new local Ray; "auto": the running cluster; "ray://h:10001"
    actors: int | None = None  # None: one per GPU (GPU cluster), else one per cpus_per_actor CPUs
    gpus_per_actor: float | None = None  # None: 1 where the cluster has GPUs, else 0 (CPU actors)
    cpus_per_actor: float = 1.0  # CPUs reserved per actor; also its engine/decoder threads (rounded up)
    tasks_per_actor: int = 2  # tasks in flight per actor: one running, one queued (back-pressure)
    max_restarts: int = 3  # Ray restarts a dead actor this often (the engine is loaded again)
    max_task_retries: int = 2  # Ray re-runs a dead actor's task this often on the restarted actor
    resubmits: int = 2  # after Ray gives up: the driver resubmits (item by item for photos) this often
    runtime_env: dict | None = None  # Ray runtime env, e.g. {"pip": ["streamcolor[ray]"]} for a bare cluster

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be at least 1, got {self.actors}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ValueError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor}")
        if self.cpus_per_actor <= 0:
            raise ValueError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        if self.tasks_per_actor < 1:
            raise ValueError(f"tasks_per_actor must be at least 1, got {self.tasks_per_actor}")
        for name in ("max_restarts", "max_task_retries", "resubmits"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def threads(self) -> int:
        """Engine and codec threads inside one CPU actor."""
        return max(1, math.ceil(self.cpus_per_actor))


@contextmanager
def ray_session(address: str | None = None, *, runtime_env: dict | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of a job; yields the ``ray`` module.

    Reuses a session the caller already started (and leaves it running);
    otherwise connects to ``address`` (None: ``$RAY_ADDRESS`` or a new local
    Ray on this machine, without the dashboard) and shuts down at the end.
    """
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
    if not address and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    elif address:
        kwargs["address"] = address
    log.info("starting Ray (%s)", address or os.environ.get("RAY_ADDRESS") or "local")
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def _plan_actors(ray, cluster: ClusterOptions, work: int, *, spare_cpus: float = 0.0) -> tuple[int, float]:
    """(number of actors, GPUs per actor) for ``work`` tasks on this cluster;
    by default, CPU actors leave ``spare_cpus`` free (Ray Data's read tasks need some)."""
    res = ray.cluster_resources()
    gpus_total, cpus_total = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    gpus = cluster.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if gpus_total >= 1 else 0.0
    if gpus and gpus_total < gpus:
        raise ValueError(f"each actor asks for {gpus:g} GPU, but the cluster has {gpus_total:g}")
    if cluster.actors is not None:
        n = cluster.actors
    elif gpus:
        n = int(gpus_total // gpus)
    else:
        n = int(max(cluster.cpus_per_actor, cpus_total - spare_cpus) // cluster.cpus_per_actor)
    if gpus_total and not gpus:
        log.warning("the cluster has %g GPUs but actors run on CPU (gpus_per_actor=0)", gpus_total)
    return max(1, min(n, max(1, work))), gpus


# ---------------------------------------------------------------------------------------------
# The callable class
# ---------------------------------------------------------------------------------------------


def _filesystem(uri: str | os.PathLike):
    """(pyarrow filesystem, path in it) for a local path or a URI such as ``s3://bucket/prefix``."""
    from pyarrow import fs as pafs

    uri = str(uri)
    if "://" in uri and not uri.startswith("file://"):
        filesystem, path = pafs.FileSystem.from_uri(uri)
        return filesystem, path.rstrip("/")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _is_local(filesystem) -> bool:
    return type(filesystem).__name__ == "LocalFileSystem"


def item_key(path: str, root: str, output_format: str = "same") -> tuple[str | None, str | None]:
    """Output key (path relative to OUT) of the file ``path`` under ``root``:
    ``(key, None)``, or ``(None, reason)`` for a name that is unsafe to write."""
    rel = path[len(root):].lstrip("/") if path.startswith(root.rstrip("/") + "/") else PurePosixPath(path).name
    safe, unsafe = safe_member_path(rel)
    if safe is None:
        return None, unsafe
    return output_name(safe, output_format), None


class _TimedEngine:
    """An engine whose calls are timed (``seconds``); everything else passes through."""

    def __init__(self, engine: "Engine"):
        self._engine = engine
        self.seconds = 0.0

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    @property
    def wrapped(self) -> "Engine":
        return self._engine

    def _timed(self, method: str, *args):
        t = time.perf_counter()
        try:
            return getattr(self._engine, method)(*args)
        finally:
            self.seconds += time.perf_counter() - t

    def embed(self, l_ext):
        return self._timed("embed", l_ext)

    def colorize(self, l, embedding):
        return self._timed("colorize", l, embedding)

    def predict(self, l, embedding=None):
        return self._timed("predict", l, embedding)


class ColorizeBatch:
    """Colorize a batch of encoded images: the unit of work of every Ray path.

    ``__init__`` loads the engine once (per actor); ``__call__`` takes a batch
    ``dict[str, np.ndarray]`` with the columns

    * ``bytes``: the encoded images (object array of bytes), and
    * ``key``: each output path relative to the output (object array of str),
      or ``path`` (what ``ray.data.read_binary_files(include_paths=True)``
      gives), from which the key is made relative to ``root``;

    and returns the batch without ``bytes``, with the columns added:
    ``key``, ``state`` ("done", "failed" or "skipped"), ``error`` (the reason,
    "" when done), ``output`` (the written path relative to the output, "" if
    none) and, when no output location is set, ``image`` (the encoded result,
    b"" if none).  A bad item is reported in its row and never raises; only a
    location that cannot be written (read-only, full) raises OutputError.

    Parameters
    ----------
    model:
        A shipped model name, a bundle folder, or a loaded engine (for use
        without Ray; an engine cannot be sent to an actor).
    backend:
        See :func:`streamcolor.load_engine`.
    options:
        Output format, quality, render size, batching and limits:
        :class:`~streamcolor.archive.BatchOptions` (its thread and archive
        fields are not used here).
    out:
        Where outputs go: a local folder (written atomically, as plain
        ``batch`` does), a URI pyarrow understands (``s3://bucket/prefix``;
        one object PUT per output), or None to return them in ``image``.
    root:
        The source root that ``path`` values are relative to.
    engine_options:
        Passed to :func:`streamcolor.load_engine` (e.g. ``threads``, ``device``).
    renames:
        ``path -> key`` for the few paths whose default key is taken by another
        file (``a.gif`` and ``a.png`` both becoming ``a.png``).
    threads:
        Cap OpenCV's threads in this process (the Ray paths set it to the
        actor's CPUs so that actors sharing a node do not oversubscribe it);
        None leaves the process alone.
    """

    def __init__(self, model: "str | os.PathLike | Engine" = "default", backend: str = "auto", *,
                 options: BatchOptions = BatchOptions(), out: str | os.PathLike | None = None,
                 root: str | None = None, engine_options: dict | None = None,
                 renames: dict[str, str] | None = None, threads: int | None = None):
        from streamcolor.engines import Engine, load_engine

        if threads is not None:
            import cv2

            cv2.setNumThreads(threads)
        engine = model if isinstance(model, Engine) else load_engine(model, backend, **(engine_options or {}))
        self.engine = _TimedEngine(engine)
        self.options = options
        self.color: ColorOptions = options.color_options(engine)
        self.root = root
        self.renames = renames or {}
        self._fs, self._out = _filesystem(out) if out is not None else (None, None)
        self._local = self._fs is not None and _is_local(self._fs)
        self._dirs: set[str] = set()

    @property
    def engine_s(self) -> float:
        """Seconds spent inside engine calls so far."""
        return self.engine.seconds

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        datas = list(batch["bytes"])
        n = len(datas)
        keys, refused = self._keys(batch, n)
        states, errors, outputs = [FAILED] * n, [""] * n, [""] * n
        images: list[bytes] = [b""] * n
        groups: dict[tuple, list[tuple[int, Prepared]]] = {}
        for i, data in enumerate(datas):
            if refused[i]:
                states[i], errors[i] = SKIPPED, refused[i]
                continue
            item = Item(key=keys[i], source="batch", member=keys[i], size=len(data), stamp="", kind="bytes")
            try:
                prep = decode_item(item, bytes(data), self.color)
            except MemberRefused as exc:
                states[i], errors[i] = SKIPPED, _reason(exc, item)
                continue
            except Exception as exc:  # each item on its own
                errors[i] = _reason(exc, item) if isinstance(exc, InputError) else \
                    f"cannot decode ({type(exc).__name__}: {exc})"
                continue
            groups.setdefault(prep.net_in.shape, []).append((i, prep))
        for group in groups.values():
            for start in range(0, len(group), self.options.batch_size):
                chunk = group[start:start + self.options.batch_size]
                for (i, prep), ab in zip(chunk, self._predict([p for _, p in chunk], errors, [i for i, _ in chunk])):
                    if ab is None:
                        continue
                    states[i], errors[i], outputs[i], images[i] = self._finish(prep, ab)
        result = {k: v for k, v in batch.items() if k != "bytes"}
        result.update(key=_objects(keys), state=_objects(states), error=_objects(errors), output=_objects(outputs))
        if self._fs is None:
            result["image"] = _objects(images)
        return result

    def _keys(self, batch: dict[str, np.ndarray], n: int) -> tuple[list[str], list[str]]:
        """Output keys, and for each row the reason it is refused ("" if not)."""
        if "key" in batch:
            keys = [str(k) for k in batch["key"]]
            refused = []
            for k in keys:
                safe, unsafe = safe_member_path(k)
                refused.append("" if safe == k else (unsafe or f"key {k!r} is not a normalised relative path"))
            return keys, refused
        if "path" not in batch:
            raise ValueError(f"a batch needs a 'key' or a 'path' column besides 'bytes', got {sorted(batch)}")
        keys, refused = [], []
        for p in batch["path"]:
            p = str(p)
            key, unsafe = (self.renames[p], None) if p in self.renames else \
                item_key(p, self.root or "", self.options.output_format)
            keys.append(key or p)
            refused.append(unsafe or "")
        return keys, refused

    def _predict(self, preps: list[Prepared], errors: list[str], rows: list[int]) -> list[np.ndarray | None]:
        """a*b* per item; an engine failure on a batch is retried item by item (only the cause fails)."""
        try:
            return predict_batch(preps, self.engine)
        except Exception as exc:
            if len(preps) == 1:
                errors[rows[0]] = f"engine error ({type(exc).__name__}: {exc})"
                return [None]
            return [r for p, i in zip(preps, rows) for r in self._predict([p], errors, [i])]

    def _finish(self, prep: Prepared, ab: np.ndarray) -> tuple[str, str, str, bytes]:
        """(state, error, output, image bytes) of one item: composed, encoded, written if asked."""
        key = prep.item.key
        if self._local:
            outcome = finish_item(prep, ab, self._out, self.color)  # OutputError (location) propagates
            return outcome.state, outcome.reason or "", outcome.output or "", b""
        try:
            data = _encode(prep, ab, self.color)
        except Exception as exc:
            return FAILED, f"cannot encode the output {key} ({type(exc).__name__}: {exc})", "", b""
        if self._fs is None:
            return DONE, "", "", data
        path = f"{self._out}/{key}"
        try:
            folder = path.rsplit("/", 1)[0]
            if folder not in self._dirs:  # object stores need none, but HDFS and others do: once per folder
                self._fs.create_dir(folder, recursive=True)
                self._dirs.add(folder)
            with self._fs.open_output_stream(path) as fh:  # one PUT: the object appears whole or not at all
                fh.write(data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc})") from exc
        return DONE, "", key, b""


def _encode(prep: Prepared, ab: np.ndarray, color: ColorOptions) -> bytes:
    """Compose full-res L* with upsampled a*b* and encode in the key's format (as finish_item, unwritten)."""
    h, w = prep.l_full.shape
    rgb = to_dtype(compose(prep.l_full, upsample_ab(ab, h, w, color.saturation)), prep.dtype)
    return image_io.encode_image(rgb, image_io.format_for(prep.item.key), alpha=prep.alpha, info=prep.info,
                                 quality=color.quality)


def _reason(exc: Exception, item: Item) -> str:
    msg = str(exc)
    return msg[len(item.label) + 2:] if msg.startswith(item.label + ": ") else msg


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


# ---------------------------------------------------------------------------------------------
# The actor pool
# ---------------------------------------------------------------------------------------------


class _Worker:
    """The actor: one ColorizeBatch (engine loaded once), used for photos and video segments."""

    def __init__(self, colorize_kwargs: dict, threads: int):
        self.colorize = ColorizeBatch(**colorize_kwargs)
        self.threads = threads

    def run(self, batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """ColorizeBatch on one batch -> (result batch, engine seconds it took)."""
        before = self.colorize.engine_s
        result = self.colorize(batch)
        return result, self.colorize.engine_s - before

    def segment(self, src: str, dst: str, segment: "Segment", options: "VideoOptions") -> dict:
        """Colorize one video segment into ``dst`` (see :func:`colorize_segment`)."""
        if not options.decode_threads or not options.compose_threads:
            options = dataclasses.replace(options, decode_threads=options.decode_threads or self.threads,
                                          compose_threads=options.compose_threads or self.threads)
        info = colorize_segment(src, dst, segment, engine=self.colorize.engine.wrapped, options=options)
        info["pid"] = os.getpid()
        return info

    def pick_codec(self, codec: str) -> str:
        from streamcolor.video import pick_codec

        return pick_codec(codec)

    def pid(self) -> int:
        return os.getpid()


@functools.lru_cache(maxsize=1)
def _remote_worker():
    return _ray().remote(_Worker)


@dataclass
class _Task:
    slot: int  # actor slot it was sent to
    method: str
    args: tuple
    payload: Any  # what the caller needs to handle the result
    attempt: int = 0


class _Pool:
    """A fixed set of actors with at most ``tasks_per_actor`` tasks in flight each.

    :meth:`submit` sends a task to the least busy actor; :meth:`results`
    waits for finished tasks and yields ``(task, result or exception)``.  An
    actor Ray could not bring back (restarts used up) is replaced.
    """

    def __init__(self, ray, size: int, *, cluster: ClusterOptions, gpus: float, worker_kwargs: dict):
        self.ray = ray
        self.cluster = cluster
        self.tag = uuid.uuid4().hex[:8]
        self.remote_options = dict(num_cpus=cluster.cpus_per_actor, num_gpus=gpus, max_restarts=cluster.max_restarts,
                                   max_task_retries=cluster.max_task_retries)
        self.worker_kwargs = worker_kwargs
        self.replaced = 0
        self.actors = [self._start(i) for i in range(size)]
        self.busy = [0] * size
        self.pending: dict[Any, _Task] = {}

    def _start(self, slot: int):
        name = f"streamcolor-{self.tag}-{slot}" + (f"-{self.replaced}" if self.replaced else "")
        return _remote_worker().options(name=name, **self.remote_options).remote(**self.worker_kwargs)

    @property
    def size(self) -> int:
        return len(self.actors)

    def has_room(self) -> bool:
        return len(self.pending) < self.size * self.cluster.tasks_per_actor

    def submit(self, method: str, *args, payload: Any = None, attempt: int = 0) -> None:
        slot = min(range(self.size), key=self.busy.__getitem__)
        ref = getattr(self.actors[slot], method).remote(*args)
        self.pending[ref] = _Task(slot, method, args, payload, attempt)
        self.busy[slot] += 1

    def call_one(self, method: str, *args):
        """Run a method on one actor and wait for its result."""
        return self.ray.get(getattr(self.actors[0], method).remote(*args))

    def results(self) -> Iterator[tuple[_Task, Any]]:
        """Finished tasks, as they finish (blocks until at least one is done)."""
        from ray.exceptions import ActorUnavailableError, OutOfMemoryError, RayActorError, WorkerCrashedError

        lost = (RayActorError, ActorUnavailableError, WorkerCrashedError, OutOfMemoryError)
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        for ref in ready:
            task = self.pending.pop(ref)
            self.busy[task.slot] -= 1
            try:
                yield task, self.ray.get(ref)
            except lost as exc:
                log.warning("actor %d lost its task (attempt %d): %s", task.slot, task.attempt + 1,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._replace(task.slot)
                yield task, exc

    def _replace(self, slot: int) -> None:
        """Start a fresh actor in ``slot`` if Ray has given up on the old one.

        A call to a dead actor fails at once; one to a live actor (busy, or
        being restarted by Ray) waits in its queue: a short wait tells them apart."""
        probe = self.actors[slot].pid.remote()
        ready, _ = self.ray.wait([probe], timeout=2.0)
        if not ready:
            return  # alive (busy or restarting): keep it
        try:
            self.ray.get(probe)
            return
        except Exception:  # noqa: BLE001 -- dead for good
            pass
        if self.replaced >= 3 * self.size:
            raise RuntimeError("Ray actors keep dying; giving up (see the Ray logs for the cause, e.g. out of memory)")
        self.replaced += 1
        try:
            self.ray.kill(self.actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 -- already gone
            pass
        log.warning("replacing actor %d", slot)
        self.actors[slot] = self._start(slot)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 -- already gone
                pass


def _worker_kwargs(model: "str | os.PathLike", backend: str, options: BatchOptions, out: str | None,
                   cluster: ClusterOptions, gpus: float, **extra) -> dict:
    engine_options: dict[str, Any] = {}
    if backend in _ONNX_BACKENDS and not gpus:
        engine_options = {"device": "cpu", "threads": cluster.threads}
    if isinstance(model, os.PathLike) or Path(str(model)).exists():
        model = str(Path(model).resolve())
    kwargs = dict(model=model, backend=backend, options=options, out=out, engine_options=engine_options,
                  threads=cluster.threads, **extra)
    return {"colorize_kwargs": kwargs, "threads": cluster.threads}


def colorize_archive_ray(src: str | os.PathLike | Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                         model: "str | os.PathLike" = "default", backend: str = "auto",
                         options: BatchOptions = BatchOptions(), cluster: ClusterOptions = ClusterOptions(),
                         progress: bool = True) -> BatchReport:
    """:func:`streamcolor.colorize_archive` with the colorizing done by Ray actors.

    Same sources, output layout, resume manifest, report and packing as the
    plain job (a run of either resumes the other).  The driver lists and
    reads the sources; chunks of ``options.batch_size`` items go to the
    actors, at most ``cluster.tasks_per_actor`` per actor at a time, so memory
    stays bounded however big the job.  Actors decode, colorize, encode and
    write each output atomically into ``dst``.

    Parameters
    ----------
    src, dst, options:
        As for :func:`streamcolor.colorize_archive`.  ``dst`` must be on
        storage the driver and every actor's node see (checked on the first
        output).
    model, backend:
        Loaded once in every actor (a model folder must exist on every node).
    cluster:
        Address, actor count and resources: :class:`ClusterOptions`.
    progress:
        Show a tqdm bar over items.

    Returns
    -------
    A :class:`~streamcolor.archive.BatchReport`.  ``engine_s`` is the mean over
    actors of the time spent in engine calls.

    Raises
    ------
    ImportError: Ray is not installed.
    InputError, OutputError, ValueError: as :func:`streamcolor.colorize_archive`.
    """
    with BatchJob(src, dst, options=options) as job:
        todo = list(job.todo)
        if not todo:
            return job.finish()
        with ray_session(cluster.address, runtime_env=cluster.runtime_env) as ray:
            chunks = -(-len(todo) // options.batch_size)
            n, gpus = _plan_actors(ray, cluster, chunks)
            log.info("colorizing %d items on %d Ray actors (%g GPU each)", len(todo), n, gpus)
            pool = _Pool(ray, n, cluster=cluster, gpus=gpus,
                         worker_kwargs=_worker_kwargs(model, backend, options, str(job.out_dir), cluster, gpus))
            try:
                with tqdm(total=len(job.items), initial=job.settled, unit="img", desc="colorize (ray)",
                          disable=not progress, dynamic_ncols=True) as bar:
                    engine_s = _run_items(job, pool, todo, options.batch_size, bar)
            finally:
                pool.close()
        return job.finish(engine_s=engine_s / max(1, n))


def _run_items(job: BatchJob, pool: _Pool, todo: list[Item], batch_size: int, bar) -> float:
    """Stream ``todo`` through the pool in chunks, resubmitting lost work; record every outcome."""
    sources = job.source_by_path
    retry: list[tuple[list[Item], int]] = []  # (items, attempt) lost with their worker, to send again
    feed = iter(range(0, len(todo), batch_size))
    engine_s = 0.0
    checked = False

    def record(outcome: Outcome) -> None:
        job.record(outcome)
        bar.update(1)

    def send(items: list[Item], attempt: int) -> None:
        batch_items, datas = [], []
        for item in items:
            try:
                datas.append(sources[item.source].read(item))
            except InputError as exc:
                record(Outcome(item, SKIPPED if isinstance(exc, MemberRefused) else FAILED, _reason(exc, item)))
                continue
            batch_items.append(item)
        if batch_items:
            batch = {"key": _objects([it.key for it in batch_items]), "bytes": _objects(datas)}
            pool.submit("run", batch, payload=batch_items, attempt=attempt)

    while True:
        while pool.has_room():
            if retry:
                send(*retry.pop(0))
                continue
            start = next(feed, None)
            if start is None:
                break
            send(todo[start:start + batch_size], 0)
        if not pool.pending:
            break
        for task, result in pool.results():
            items: list[Item] = task.payload
            if isinstance(result, BaseException):
                if len(items) > 1:  # find the item that kills its worker, if one does: one by one
                    retry.extend(([it], task.attempt + 1) for it in items)
                elif task.attempt < pool.cluster.resubmits:
                    retry.append((items, task.attempt + 1))
                else:
                    record(Outcome(items[0], FAILED, f"the worker process died on this item {task.attempt + 1} "
                                                     f"times ({type(result).__name__})"))
                continue
            batch, seconds = result
            engine_s += seconds
            by_key = {it.key: it for it in items}
            for key, state, error, output in zip(batch["key"], batch["state"], batch["error"], batch["output"]):
                outcome = Outcome(by_key[key], state, error or None, output or None)
                if state == DONE and not checked:
                    _check_visible(job.out_dir, outcome.output or key)
                    checked = True
                record(outcome)
    return engine_s


def _check_visible(out_dir: Path, key: str) -> None:
    if not (out_dir / key).is_file():
        raise OutputError(f"{out_dir}: an actor wrote {key}, but it is not there on this machine; the output "
                          "folder must be on storage shared by the driver and every Ray node (NFS, a shared volume)")


# ---------------------------------------------------------------------------------------------
# The Ray Data job: large collections on any pyarrow filesystem
# ---------------------------------------------------------------------------------------------


@dataclass
class CollectionReport:
    """The result of :func:`colorize_collection`."""

    source: str
    output: str
    total: int  # files listed
    done: int  # colorized by this run
    existing: int  # skipped because their output already exists (earlier runs)
    failed: int
    skipped: int
    elapsed_s: float
    report: str  # the CSV of failed and skipped files, inside the output
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (state, path, reason)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.skipped == 0

    @property
    def items_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        lines = [f"{self.done + self.existing} ok ({self.existing} from earlier runs), {self.skipped} skipped, "
                 f"{self.failed} failed, of {self.total} files",
                 f"{self.done} colorized in {self.elapsed_s:.1f} s: {self.items_per_s:.2f} files/s",
                 f"output: {self.output}"]
        if self.problems:
            lines.append(f"failed and skipped files, with reasons: {self.report}")
        return "\n".join(lines)


def _list_files(filesystem, root: str) -> list[str]:
    from pyarrow import fs as pafs

    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{root}: no such file or folder")
    if info.type == pafs.FileType.File:
        return [root]
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    names = [i.path for i in infos if i.type == pafs.FileType.File]
    return sorted(p for p in names if not _is_junk(p) and not _is_ours(p[len(root):]))


def _is_junk(path: str) -> bool:
    parts = path.split("/")
    return parts[-1] in {".DS_Store", "Thumbs.db", "desktop.ini"} or parts[-1].startswith("._") or \
        "__MACOSX" in parts[:-1]


def _is_ours(rel: str) -> bool:
    """Files a job leaves in its output (report, manifest, temporary names)."""
    name = rel.rsplit("/", 1)[-1]
    return name == REPORT_FILENAME or name.startswith(".streamcolor") or (name.startswith(".") and ".part" in name)


def colorize_collection(src: str | os.PathLike, dst: str | os.PathLike, *, model: "str | os.PathLike" = "default",
                        backend: str = "auto", options: BatchOptions = BatchOptions(),
                        cluster: ClusterOptions = ClusterOptions(), overwrite: bool = False) -> CollectionReport:
    """Colorize every image under a folder or bucket prefix with a Ray Data pipeline.

    ``read_binary_files`` -> ``map_batches(ColorizeBatch)`` on a fixed pool of
    actors (GPU actors with ``num_gpus`` each where the cluster has GPUs),
    each writing its outputs straight to ``dst``; the driver only collects
    the small per-file result rows.

    Parameters
    ----------
    src:
        A local folder or a URI pyarrow understands (``s3://bucket/photos``,
        ``gs://...``), searched recursively; every file is an item (non-images
        are reported as failed, as plain ``batch`` does).
    dst:
        Local folder or URI; mirrors the source tree.  Resumable: files whose
        output exists are skipped (outputs appear whole: a temporary name and
        a rename locally, one object PUT on object stores).
    model, backend, options, cluster:
        As for :func:`colorize_archive_ray`; ``options.batch_size`` is the
        ``map_batches`` batch size.
    overwrite:
        Redo files whose output exists.

    Returns
    -------
    A :class:`CollectionReport`; ``streamcolor-report.csv`` in ``dst`` lists the
    failed and skipped files with reasons.
    """
    started = time.perf_counter()
    src_fs, src_root = _filesystem(src)
    out_fs, out_root = _filesystem(dst)
    if _is_local(src_fs) and _is_local(out_fs):
        s, o = Path(src_root), Path(out_root)
        if s == o or o.is_relative_to(s) or s.is_relative_to(o):
            raise ValueError(f"the output {dst} and the source {src} overlap; choose an output outside the source")
    files = _list_files(src_fs, src_root)
    existing = set() if overwrite else _existing(out_fs, out_root)
    todo, renames, problems = [], {}, []
    taken: set[str] = set()
    done_before = 0
    for path in files:
        key, unsafe = item_key(path, src_root, options.output_format)
        if key is None:
            problems.append((SKIPPED, path, unsafe or "unsafe name"))
            continue
        unique = unique_name(key, taken)
        if unique != key:
            renames[path] = unique
        if unique in existing:
            done_before += 1
            continue
        todo.append(path)
    done = failed = 0
    if todo:
        ray = _ray()
        with ray_session(cluster.address, runtime_env=cluster.runtime_env):
            n, gpus = _plan_actors(ray, cluster, -(-len(todo) // options.batch_size), spare_cpus=1.0)
            log.info("colorizing %d files with Ray Data on %d actors (%g GPU each)", len(todo), n, gpus)
            kwargs = _worker_kwargs(model, backend, options, str(dst) if "://" in str(dst) else out_root, cluster,
                                    gpus, root=src_root, renames=renames)["colorize_kwargs"]
            ds = ray.data.read_binary_files(todo, include_paths=True, filesystem=src_fs)
            ds = ds.map_batches(ColorizeBatch, batch_size=options.batch_size, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cluster.cpus_per_actor,
                                num_gpus=gpus or None, fn_constructor_kwargs=kwargs)
            for row in ds.select_columns(["path", "state", "error"]).iter_rows():
                if row["state"] == DONE:
                    done += 1
                else:
                    failed += row["state"] == FAILED
                    problems.append((row["state"], row["path"], row["error"]))
    skipped = sum(1 for p in problems if p[0] == SKIPPED)
    problems.sort(key=lambda p: p[1])
    report = _write_report(out_fs, out_root, problems, str(src))
    return CollectionReport(source=str(src), output=str(dst), total=len(files), done=done, existing=done_before,
                            failed=failed, skipped=skipped, elapsed_s=time.perf_counter() - started, report=report,
                            problems=problems)


def _existing(filesystem, root: str) -> set[str]:
    from pyarrow import fs as pafs

    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return set()
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return {i.path[len(root):].lstrip("/") for i in infos if i.type == pafs.FileType.File}


def _write_report(filesystem, root: str, problems: Sequence[tuple[str, str, str]], source: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["state", "source", "member", "reason"])
    for state, path, reason in problems:
        writer.writerow([state, source, path, reason])
    data = buf.getvalue().encode("utf-8")
    path = f"{root}/{REPORT_FILENAME}"
    if _is_local(filesystem):
        image_io.write_atomic(path, data)
    else:
        try:
            filesystem.create_dir(root, recursive=True)
            with filesystem.open_output_stream(path) as fh:
                fh.write(data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the report ({exc})") from exc
    return path


# ---------------------------------------------------------------------------------------------
# Long videos: segments at keyframes, colorized on different actors, joined by stream copy
# ---------------------------------------------------------------------------------------------


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


def plan_segments(keyframes: Sequence[int], time_base: Fraction, *, segment_s: float = 30.0,
                  warmup_s: float = 1.0) -> list[Segment]:
    """Cut a video into segments of whole GOPs, each at least ``segment_s`` long
    (the last may be shorter), each warmed up from the latest keyframe at least
    ``warmup_s`` before its start.  ``keyframes``: pts of the keyframes."""
    kf = sorted(set(keyframes))
    if not kf:
        return []
    min_ticks = segment_s / float(time_base)
    warm_ticks = warmup_s / float(time_base)
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


def video_keyframes(src: str | os.PathLike) -> tuple[list[int], Fraction, int]:
    """(keyframe pts, time base, packet count) of the video stream, from its packets (nothing decoded)."""
    from streamcolor import video

    src = Path(src)
    with video._open_input(src) as inp:
        vin = video._video_stream(inp, src)
        keyframes, count = [], 0
        for packet in inp.demux(vin):
            if not packet.size:
                continue
            count += 1
            if packet.is_keyframe and packet.pts is not None:
                keyframes.append(int(packet.pts))
        return keyframes, vin.time_base or Fraction(1, 90000), count


class _VideoOnly:
    """The source as a segment's encoder setup sees it: its video stream alone
    (audio and subtitles are copied once, from the source, when joining)."""

    def __init__(self, container, vin):
        self.streams = [vin]
        self.metadata = container.metadata
        self.duration = container.duration

    def chapters(self) -> list:
        return []


@functools.lru_cache(maxsize=1)
def _segment_job_class():
    """streamcolor.video's pipeline, reading one segment (seek, pts range) and dropping the warm-up frames."""
    import av.error

    from streamcolor import video

    class SegmentJob(video._Job):
        def __init__(self, container, segment: Segment, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.container, self.segment = container, segment
            self.kept: list[int] = []

        def _total(self) -> int | None:
            return None

        def _read(self, out) -> None:
            vin, seg = self.vin, self.segment
            vin.codec_context.thread_type = "AUTO"
            vin.codec_context.thread_count = self.options.decode_threads
            if seg.index:
                self.container.seek(seg.decode_from, stream=vin, backward=True, any_frame=False)
            last_pts: int | None = None
            for packet in self.container.demux(vin):
                try:
                    frames = vin.decode(packet)
                except av.error.FFmpegError as exc:
                    self.bad_packets += 1
                    if self.bad_packets > video.MAX_BAD_PACKETS:
                        raise InputError(f"{self.src}: too many damaged video packets ({exc})") from exc
                    continue
                for frame in frames:
                    pts = frame.pts if frame.pts is not None else (0 if last_pts is None else last_pts + 1)
                    if seg.end is not None and pts >= seg.end:
                        self._put(out, video._END)
                        return
                    if pts < seg.decode_from or (last_pts is not None and pts <= last_pts):
                        continue
                    last_pts = pts
                    self._put(out, self._to_item(frame, pts))
            self._put(out, video._END)

        def _mux(self, out, frame) -> None:
            if frame is not None:
                if frame.pts < self.segment.start:
                    return  # warm-up frame: it only primed the scene detector and stabilizer
                self.kept.append(int(frame.pts))
            super()._mux(out, frame)

    return SegmentJob


def colorize_segment(src: str | os.PathLike, dst: str | os.PathLike, segment: Segment, *, engine: "Engine",
                     options: "VideoOptions") -> dict:
    """Colorize the frames of one segment of ``src`` into the video file ``dst``
    (video only, the source's time base and pts), with streamcolor.video's
    pipeline.  Returns ``{"frames", "first_pts", "last_pts"}``."""
    from streamcolor import video
    from streamcolor.colorize import model_options

    src, dst = Path(src), Path(dst)
    colour = model_options(engine, render_size=options.render_size, saturation=options.saturation)
    with video._open_input(src) as inp:
        vin = video._video_stream(inp, src)
        tmp = video._temp_path(dst)
        try:
            job = _segment_job_class()(inp, segment, src, dst, tmp, _VideoOnly(inp, vin), vin, engine, options,
                                       colour, False)
            job.run()
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if not job.kept:
        raise InputError(f"{src}: segment {segment.index} (pts {segment.start}..{segment.end}) has no frame")
    return {"frames": len(job.kept), "first_pts": job.kept[0], "last_pts": job.kept[-1]}


def join_segments(src: str | os.PathLike, segments: Sequence[str | os.PathLike], dst: str | os.PathLike) -> Path:
    """Join colorized segment files into ``dst`` by stream copy (no re-encoding):
    their video packets in order, with the source's audio, subtitle and data
    packets copied from the source once, interleaved by time.  Timestamps are
    the segments' own (the source's), so they run on across the joins.

    Raises OutputError when a segment does not start with a keyframe, its
    timestamps go back, or its encoder settings differ from the first one's
    (the result would not play)."""
    import av
    import av.error

    from streamcolor import video

    src, dst = Path(src), Path(dst)
    if not segments:
        raise ValueError("no segments to join")
    tmp = video._temp_path(dst)
    try:
        with video._open_input(src) as inp, av.open(str(segments[0])) as first, av.open(str(tmp), "w") as out:
            vin = video._video_stream(inp, src)
            template = first.streams.video[0]
            extradata = bytes(template.codec_context.extradata or b"")
            vout = out.add_stream_from_template(template)
            vout.time_base = vin.time_base or template.time_base
            vout.metadata.update(video._fresh_tags(vin.metadata))
            vout.disposition = vin.disposition
            copy_map = {}
            for s in inp.streams:
                if s is vin or s.type == "video":
                    continue
                try:
                    ost = out.add_stream_from_template(s)
                except (ValueError, av.error.FFmpegError) as exc:
                    if s.type in ("audio", "subtitle"):
                        raise OutputError(f"{dst}: the {out.format.name} format cannot hold {s.type} stream "
                                          f"#{s.index} ({exc}); write to a {src.suffix} file instead") from exc
                    log.warning("%s: dropping %s stream #%d: %s", src, s.type, s.index, exc)
                    continue
                ost.metadata.update(video._fresh_tags(s.metadata) if s.type != "attachment" else s.metadata)
                ost.disposition = s.disposition
                if s.type != "attachment":
                    copy_map[s.index] = (s, ost)
            out.metadata.update(video._fresh_tags(inp.metadata))

            def copied() -> Iterator[tuple[float, int, Any]]:
                if not copy_map:
                    return
                for n, packet in enumerate(inp.demux([s for s, _ in copy_map.values()])):
                    if packet.size and packet.stream.index in copy_map:
                        yield _packet_time(packet), 1, n, packet

            def frames() -> Iterator[tuple[float, int, Any]]:
                last_dts = None
                n = 0
                for i, path in enumerate(segments):
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
                            first_packet = False
                            if packet.dts is not None:
                                t = packet.dts * packet.time_base
                                if last_dts is not None and t <= last_dts:
                                    raise OutputError(f"{path}: timestamps go back at the join ({float(t):.3f} s)")
                                last_dts = t
                            n += 1
                            yield _packet_time(packet), 0, n, packet

            for _, kind, _, packet in heapq.merge(frames(), copied(), key=lambda e: (e[0], e[1], e[2])):
                if kind == 0:
                    packet.stream = vout
                else:
                    packet.stream = copy_map[packet.stream.index][1]
                try:
                    out.mux(packet)
                except av.error.FFmpegError as exc:
                    raise OutputError(f"{dst}: cannot write a packet: {exc}") from exc
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def _packet_time(packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0


def colorize_video_ray(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                       model: "str | os.PathLike" = "default", backend: str = "auto",
                       options: "VideoOptions | None" = None, cluster: ClusterOptions = ClusterOptions(),
                       segment_s: float = 30.0, warmup_s: float = 1.0, progress: bool = True) -> Path:
    """:func:`streamcolor.colorize_video` with the video split across Ray actors.

    The video stream is cut at keyframes into segments of whole GOPs (at least
    ``segment_s`` seconds each).  Each actor seeks to its segment in the
    source, colorizes it with streamcolor.video's pipeline and encodes a
    segment file; the driver joins them by stream copy and copies audio and
    subtitles from the source once.  Borders: each segment starts decoding
    at a keyframe at least ``warmup_s`` earlier, so scene-cut detection and
    the chroma stabilizer enter the border already warmed up; those frames are
    dropped.  (The embedding is recomputed at the warm-up start, as it is
    every ``embed_every`` frames in a single run.)

    ``src`` and the folder of ``dst`` must be on storage every node sees.
    Segments go to ``.<dst name>.segments/`` next to ``dst``: a rerun after
    a failure reuses the finished ones; the folder is removed on success.

    Returns the output path.  Raises as :func:`streamcolor.colorize_video`.
    """
    from streamcolor.video import VideoOptions, default_output

    options = options or VideoOptions()
    src = Path(src)
    dst = Path(dst) if dst is not None else default_output(src)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: output would overwrite the input")
    keyframes, time_base, packets = video_keyframes(src)
    segments = plan_segments(keyframes, time_base, segment_s=segment_s, warmup_s=warmup_s)
    if not segments:
        raise InputError(f"{src}: no keyframe with a timestamp in the video stream; use colorize_video")
    if not dst.parent.is_dir():
        raise OutputError(f"{dst}: folder {dst.parent} does not exist")
    work = _segment_folder(src, dst, model, backend, options, segments)
    paths = [work / f"segment-{s.index:05d}{_SEGMENT_CONTAINER}" for s in segments]
    todo = [s for s, p in zip(segments, paths) if not p.is_file()]
    if todo:
        with ray_session(cluster.address, runtime_env=cluster.runtime_env) as ray:
            n, gpus = _plan_actors(ray, cluster, len(todo))
            log.info("%s: %d segments (%d to do) on %d Ray actors", src, len(segments), len(todo), n)
            pool = _Pool(ray, n, cluster=cluster, gpus=gpus,
                         worker_kwargs=_worker_kwargs(model, backend, BatchOptions(), None, cluster, gpus))
            try:
                if options.codec == "auto":  # one encoder for all segments, chosen where they are encoded
                    options = dataclasses.replace(options, codec=pool.call_one("pick_codec", "auto"))
                _run_segments(pool, src.resolve(), todo, paths, options, progress)
            finally:
                pool.close()
    join_segments(src, paths, dst)
    shutil.rmtree(work, ignore_errors=True)
    return dst


def _run_segments(pool: _Pool, src: Path, todo: list[Segment], paths: list[Path], options: "VideoOptions",
                  progress: bool) -> None:
    waiting = list(todo)
    with tqdm(total=len(todo), unit="segment", desc=src.name, disable=not progress, dynamic_ncols=True) as bar:
        while waiting or pool.pending:
            while waiting and pool.has_room():
                seg = waiting.pop(0)
                pool.submit("segment", str(src), str(paths[seg.index]), seg, options, payload=seg)
            for task, result in pool.results():
                seg = task.payload
                if isinstance(result, BaseException):
                    if task.attempt >= pool.cluster.resubmits:
                        raise RuntimeError(f"{src}: segment {seg.index} lost {task.attempt + 1} times with its "
                                           f"worker ({type(result).__name__})") from result
                    pool.submit("segment", *task.args, payload=seg, attempt=task.attempt + 1)
                    continue
                log.info("segment %d: %d frames (pts %d..%d) on actor %d, pid %d", seg.index, result["frames"],
                         result["first_pts"], result["last_pts"], task.slot, result["pid"])
                bar.update(1)


def _segment_folder(src: Path, dst: Path, model, backend: str, options: "VideoOptions",
                    segments: list[Segment]) -> Path:
    """The work folder for ``dst``'s segments, emptied if it holds another plan's."""
    st = src.stat()
    plan = json.dumps({"src": str(src.resolve()), "stamp": [st.st_size, st.st_mtime_ns], "model": str(model),
                       "backend": backend, "options": repr(options),
                       "segments": [dataclasses.astuple(s) for s in segments]}, sort_keys=True)
    work = dst.parent / f".{dst.name}{_SEGMENTS_SUFFIX}"
    stamp = work / "plan.json"
    if work.is_dir() and (not stamp.is_file() or stamp.read_text() != plan):
        shutil.rmtree(work)
    try:
        work.mkdir(exist_ok=True)
        if not stamp.is_file():
            image_io.write_atomic(stamp, plan.encode())
    except OSError as exc:
        raise OutputError(f"{work}: cannot write segments here ({exc.strerror or exc})") from exc
    return work


__all__ = ["ClusterOptions", "CollectionReport", "ColorizeBatch", "Segment", "colorize_archive_ray",
           "colorize_collection", "colorize_segment", "colorize_video_ray", "item_key", "join_segments",
           "plan_segments", "ray_session", "video_keyframes"]
