"""Connecting to Ray, and a small pool of actors: the only module that imports ``ray``.

:func:`ray_session` joins or starts Ray for a job; :func:`plan_actors` sizes
the pool from the cluster's resources; :class:`ActorPool` keeps a fixed set
of :class:`Worker` actors (each holding one
:class:`~streamcolor.ray.batch.ColorizeBatch`, so the engine loads once per
actor) with at most ``tasks_per_actor`` tasks in flight each, and replaces an
actor Ray could not bring back.

Failure handling.  Actors are created with ``max_restarts`` and
``max_task_retries``, so Ray restarts a killed actor (the engine is loaded
again) and re-runs its unfinished tasks; when Ray gives up, the pool hands the
task back as lost and the caller resubmits it.  ``ray.util.ActorPool`` (a
DeveloperAPI) is not used: this small scheduler bounds tasks in flight and
handles retries itself.  Ray is an extra (``pip install streamcolor[ray]``),
imported on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from streamcolor.archive import BatchOptions
from streamcolor.engines import onnx_backends
from streamcolor.ray.batch import ColorizeBatch

if TYPE_CHECKING:
    from streamcolor.video import Segment, VideoOptions

log = logging.getLogger(__name__)

#: What to install when Ray is missing.
INSTALL_HINT = "Ray is not installed: pip install 'streamcolor[ray]'"


def require_ray():
    """The ``ray`` module (with ``ray.data``), or ImportError with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401  (the collection job needs it; fail early and clearly)
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return ray


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
    ray = require_ray()
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


def plan_actors(ray, cluster: ClusterOptions, work: int, *, spare_cpus: float = 0.0) -> tuple[int, float]:
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


def colorize_kwargs(model: "str | os.PathLike", backend: str, options: BatchOptions, out: str | None,
                    cluster: ClusterOptions, gpus: float, **extra) -> dict:
    """Constructor arguments of the :class:`ColorizeBatch` of each actor: the
    model by absolute path when it is a folder; on CPU actors of an ONNX
    Runtime backend, the actor's CPUs as engine threads."""
    engine_options: dict[str, Any] = {}
    if backend in onnx_backends() and not gpus:
        engine_options = {"device": "cpu", "threads": cluster.threads}
    if isinstance(model, os.PathLike) or Path(str(model)).exists():
        model = str(Path(model).resolve())
    return dict(model=model, backend=backend, options=options, out=out, engine_options=engine_options,
                threads=cluster.threads, **extra)


class Worker:
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
        """Colorize one video segment into ``dst`` (:func:`streamcolor.video.colorize_segment`)."""
        from streamcolor.video import colorize_segment

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
    return require_ray().remote(Worker)


@dataclass
class Task:
    """A call sent to an actor of the pool."""

    slot: int  # actor slot it was sent to
    method: str
    args: tuple
    payload: Any  # what the caller needs to handle the result
    attempt: int = 0


class ActorPool:
    """A fixed set of :class:`Worker` actors with at most ``tasks_per_actor`` tasks in flight each.

    :meth:`submit` sends a task to the least busy actor; :meth:`results`
    waits for finished tasks and yields ``(task, result or exception)``.  An
    actor Ray could not bring back (restarts used up) is replaced.
    """

    def __init__(self, ray, size: int, *, cluster: ClusterOptions, gpus: float, colorize_kwargs: dict):
        self.ray = ray
        self.cluster = cluster
        self.tag = uuid.uuid4().hex[:8]
        self.remote_options = dict(num_cpus=cluster.cpus_per_actor, num_gpus=gpus, max_restarts=cluster.max_restarts,
                                   max_task_retries=cluster.max_task_retries)
        self.worker_kwargs = {"colorize_kwargs": colorize_kwargs, "threads": cluster.threads}
        self.replaced = 0
        self.actors = [self._start(i) for i in range(size)]
        self.busy = [0] * size
        self.pending: dict[Any, Task] = {}

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
        self.pending[ref] = Task(slot, method, args, payload, attempt)
        self.busy[slot] += 1

    def call_one(self, method: str, *args):
        """Run a method on one actor and wait for its result."""
        return self.ray.get(getattr(self.actors[0], method).remote(*args))

    def results(self) -> Iterator[tuple[Task, Any]]:
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


__all__ = ["ActorPool", "ClusterOptions", "INSTALL_HINT", "Task", "Worker", "colorize_kwargs", "plan_actors",
           "ray_session", "require_ray"]
