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
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from streamcolor.archive import BatchOptions
from streamcolor.engines import onnx_backends
from streamcolor.errors import StreamcolorError
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

    # None: $RAY_ADDRESS, else a private local Ray; "auto": the running cluster; "host:6379"; "ray://host:10001"
    address: str | None = None
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


class ClusterError(StreamcolorError):
    """The Ray cluster cannot be reached, or refused the connection (e.g. a
    missing or wrong authentication token).  The message is one line."""


#: Seconds an address may take to answer a TCP connect before the job gives up.
CONNECT_TIMEOUT_S = 15.0
#: Seconds ``ray.init`` may then take (a Ray Client server starts a process for each new client).
INIT_TIMEOUT_S = 60.0


def resolve_address(address: str | None) -> str | None:
    """The address a job connects to: ``address``, else ``$RAY_ADDRESS``; None
    (or ``"local"``) means a private Ray started for this job on this machine."""
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    return None if address in ("", "local") else address


def _probe(address: str, timeout: float) -> None:
    """Fail fast, with one line, for an address nothing answers at: a TCP
    connect with a timeout (Ray itself retries for minutes, or forever behind
    a firewall that drops packets)."""
    if address == "auto":
        return  # the cluster this machine runs, found by Ray from its temp folder
    if address.startswith(("http://", "https://")):
        raise ClusterError(f"{address}: this is a dashboard (job submission) address; connect with the cluster's "
                           "address host:6379 (on a node of it), ray://host:10001 (Ray Client) or auto")
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"{address}: not a Ray address (expected host:port, ray://host:port or auto)")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(f"{address}: cannot reach the Ray cluster ({reason})") from exc


def _one_line(exc: BaseException) -> str:
    """The first meaningful line of a Ray exception (they span many lines)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


#: What Ray's C++ client logs when the cluster refuses its token (or its lack of one).
_AUTH_REFUSED = ("Unauthenticated", "InvalidAuthToken")


def _auth_hint() -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ("the cluster requires a token: set RAY_AUTH_MODE=token and give its token in RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the head prints it)")
    return "the cluster refused this token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 to ``path`` for a while: Ray's C++ client logs a
    line per retry there (twenty lines for a refused token), which the caller
    reads for the reason instead of showing."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to capture (closed): nothing to hide either
        path.touch()
        yield
        return
    try:
        with open(path, "wb") as fh:
            os.dup2(fh.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _init_bounded(ray, timeout: float, **kwargs) -> None:
    """``ray.init(**kwargs)`` for a remote address, given up after ``timeout``
    s or as soon as the cluster refuses the token.  It runs in a daemon thread
    (Ray retries a refused or silent connection for a long time), with the
    process's stderr captured meanwhile so that Ray's retry lines become one
    error line."""
    address = kwargs.get("address")
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            outcome["error"] = exc

    with tempfile.TemporaryDirectory(prefix="streamcolor-ray-") as tmp:
        captured = Path(tmp) / "stderr.log"
        with _stderr_to(captured):
            thread = threading.Thread(target=run, name="streamcolor-ray-init", daemon=True)
            thread.start()
            deadline = time.monotonic() + timeout
            refused = False
            while thread.is_alive() and time.monotonic() < deadline and not refused:
                thread.join(0.25)
                refused = any(w.encode() in captured.read_bytes() for w in _AUTH_REFUSED)
        text = captured.read_text(errors="replace")
    if text.strip():
        log.debug("Ray while connecting: %s", text.strip())
    refused = refused or any(w in text for w in _AUTH_REFUSED)
    if refused:
        raise ClusterError(f"{address}: the Ray cluster refused the connection: {_auth_hint()}")
    # Ray Client (ray://) reports a refused token only as a timeout: say so.
    maybe_token = "; a missing or wrong token looks the same with Ray Client (see docs/ray.md)" \
        if str(address).startswith("ray://") else ""
    if thread.is_alive():
        raise ClusterError(f"{address}: the Ray cluster did not accept the connection within {timeout:g} s"
                           f"{maybe_token}")
    error = outcome["error"]
    if error is not None:
        raise ClusterError(f"{address}: cannot connect to Ray: {_one_line(error)}{maybe_token}") from error


def _describe(ray) -> str:
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    gpus = f", {res['GPU']:g} GPUs" if res.get("GPU") else ""
    return f"{nodes} node{'s' if nodes != 1 else ''}, {res.get('CPU', 0):g} CPUs{gpus}"


@contextmanager
def ray_session(address: str | None = None, *, runtime_env: dict | None = None,
                timeout: float = CONNECT_TIMEOUT_S, init_timeout: float = INIT_TIMEOUT_S) -> Iterator[Any]:
    """Connect to Ray for the duration of a job; yields the ``ray`` module.

    Reuses a session the caller already started (and leaves it running).
    Otherwise, with no ``address`` and no ``$RAY_ADDRESS``, starts a private
    Ray on this machine for this job only (``ray.init(address="local")``: a
    cluster already running here, e.g. from ``ray start``, is not joined);
    with an address (``auto``, ``host:port``, ``ray://host:10001``) joins that
    cluster, failing with a one-line :class:`ClusterError` when nothing
    answers at the address within ``timeout`` seconds, when the cluster
    refuses the token (at its first refusal), or when ``ray.init`` has not
    connected after ``init_timeout`` more seconds.
    Logs which cluster is used; shuts down at the end.
    """
    ray = require_ray()
    if ray.is_initialized():
        # (said once: not again for each job of a session this function started, as the CLI's for its videos)
        (log.debug if id(ray) in _STARTED else log.info)("using the Ray session already started in this "
                                                          "process (%s)", _describe(ray))
        yield ray
        return
    kwargs: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
    if logging.getLogger("streamcolor").getEffectiveLevel() >= logging.ERROR:  # -q: Ray's own lines too
        kwargs.update(logging_level=logging.ERROR, log_to_driver=False)
        logging.getLogger("ray").setLevel(logging.ERROR)
        try:
            from ray.data import DataContext

            DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.ERROR)  # (Ray Data sets its own level on import)
        except (ImportError, AttributeError):  # (Ray without Ray Data, or an older one)
            pass
    target = resolve_address(address)
    on_term = _sigterm_handler()  # ray.init installs its own SIGTERM handler (sys.exit(15)): the caller's is put back
    if target is None:
        try:
            ray.init(address="local", include_dashboard=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- Ray raises bare Exceptions (a node that timed out starting)
            _restore_sigterm(on_term)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"could not start a private local Ray on this machine: {first} (a full /tmp or "
                               "too little shared memory are common causes; see /tmp/ray/session_latest/logs)") from exc
        _PRIVATE.add(id(ray))
        _STARTED.add(id(ray))
        log.info("started a private local Ray for this job (%s); pass an address to use a cluster", _describe(ray))
    else:
        _probe(target, timeout)
        _init_bounded(ray, init_timeout, address=target, **kwargs)
        _STARTED.add(id(ray))
        log.info("joined the Ray cluster at %s (%s)", target, _describe(ray))
    _restore_sigterm(on_term)
    try:
        yield ray
    finally:
        _PRIVATE.discard(id(ray))
        _STARTED.discard(id(ray))
        ray.shutdown()


#: The Ray modules whose session :func:`ray_session` started privately on this machine (which cannot
#: grow: an actor that does not fit now never will).
_PRIVATE: set[int] = set()
#: The Ray modules whose session :func:`ray_session` started or joined (and ends).
_STARTED: set[int] = set()


def _sigterm_handler():
    """The current SIGTERM handler (None off the main thread, where it cannot be changed)."""
    import signal

    return signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None


def _restore_sigterm(handler) -> None:
    """Put ``handler`` back as the SIGTERM handler (the CLI's: a clean stop, exit 143)."""
    import signal

    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def plan_actors(ray, cluster: ClusterOptions, work: int, *, spare_cpus: float = 0.0,
                say_fit: bool = True) -> tuple[int, float]:
    """(number of actors, GPUs per actor) for ``work`` tasks on this cluster;
    by default, CPU actors leave ``spare_cpus`` free (Ray Data's read tasks need some).
    ``say_fit``: warn when more actors are asked for than fit now (not when the caller caps them itself)."""
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
    n = max(1, min(n, max(1, work)))
    fits = int(min(cpus_total // cluster.cpus_per_actor, gpus_total // gpus if gpus else n))
    if fits < 1 and id(ray) in _PRIVATE:  # (a cluster may grow: an autoscaler adds nodes; this Ray cannot)
        raise ValueError(f"each actor asks for {cluster.cpus_per_actor:g} CPUs, but this machine's private Ray "
                         f"has {cpus_total:g}: use cpus_per_actor={max(cpus_total, 1):g} or less")
    if n > fits and say_fit:
        log.warning("%d actors of %g CPU%s each are asked for, but the cluster has %g CPUs%s now: the work goes "
                    "to the actors that start, and the others join when it has room (an autoscaler adding nodes)",
                    n, cluster.cpus_per_actor, f" and {gpus:g} GPU" if gpus else "", cpus_total,
                    f" and {gpus_total:g} GPUs" if gpus else "")
    return n, gpus


def colorize_kwargs(model: "str | os.PathLike", backend: str, options: BatchOptions, out: str | None,
                    cluster: ClusterOptions, gpus: float, **extra) -> dict:
    """Constructor arguments of the :class:`ColorizeBatch` of each actor: the
    model by absolute path when it is a folder; on CPU actors of an ONNX
    Runtime backend, the actor's CPUs as engine threads.  A local ``out`` is
    made absolute here, on the driver: an actor's working folder is not the
    driver's (on a cluster started with ``ray start``, it is the session's)."""
    engine_options: dict[str, Any] = {}
    if out is not None and "://" not in str(out):
        out = os.path.abspath(out)
    if backend in onnx_backends() and not gpus:
        engine_options = {"device": "cpu", "threads": cluster.threads}
    if isinstance(model, os.PathLike) or Path(str(model)).exists():
        model = str(Path(model).resolve())
    return dict(model=model, backend=backend, options=options, out=out, engine_options=engine_options,
                threads=cluster.threads, **extra)


def remote_cause(exc: BaseException) -> BaseException:
    """The exception raised in a Ray task or actor, out of Ray's wrappers (RayTaskError, whose text
    is the remote traceback, and Ray Data's UserCodeException): so that a user reads
    ``error: OUT/sub/p.jpg: cannot write here (Permission denied)``, not 2 KB of traceback."""
    texts = [str(exc)]  # (a RayTaskError's text is the remote traceback, its cause's part included)
    for _ in range(8):
        kind = type(exc)
        if kind.__name__.startswith("RayTaskError") and getattr(exc, "cause", None) is not None:
            exc = exc.cause
        elif (kind.__module__ or "").startswith("ray.") and exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            break
    if (type(exc).__module__ or "").startswith("ray."):
        # Ray Data's UserCodeException comes back without its cause; the remote traceback in its text
        # still ends the cause's part with "streamcolor.errors.OutputError: <message>"
        from streamcolor import errors

        found = re.findall(r"streamcolor\.errors\.(\w+): ([^\n]+)", "\n".join(texts + [str(exc)]))
        if found and isinstance(getattr(errors, found[-1][0], None), type):
            return getattr(errors, found[-1][0])(found[-1][1])
    return exc


class Worker:
    """The actor: one ColorizeBatch (engine loaded once), used for photos and video segments."""

    def __init__(self, colorize_kwargs: dict, threads: int):
        self.threads = threads
        self.load_error: Exception | None = None
        try:
            self.colorize = ColorizeBatch(**colorize_kwargs)
        except Exception as exc:  # noqa: BLE001 -- said by the first call, see _loaded
            # Raised here, Ray would print the traceback of every restart (hundreds of lines) and the
            # driver would see only "actors keep dying"; kept, the first task raises it as it is, and
            # the job ends with its one line (the runtime not installed on that node, say).
            self.load_error = exc

    def _loaded(self) -> ColorizeBatch:
        if self.load_error is not None:
            raise self.load_error
        return self.colorize

    def run(self, batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """ColorizeBatch on one batch -> (result batch, engine seconds it took)."""
        self._loaded()
        before = self.colorize.engine_s
        result = self.colorize(batch)
        return result, self.colorize.engine_s - before

    def segment(self, src: str, dst: str, segment: "Segment", options: "VideoOptions") -> dict:
        """Colorize one video segment into ``dst`` (:func:`streamcolor.video.colorize_segment`)."""
        from streamcolor.video import colorize_segment

        if not options.decode_threads or not options.compose_threads:
            options = dataclasses.replace(options, decode_threads=options.decode_threads or self.threads,
                                          compose_threads=options.compose_threads or self.threads)
        info = colorize_segment(src, dst, segment, engine=self._loaded().engine.wrapped, options=options)
        info["pid"] = os.getpid()
        return info

    def pick_codec(self, codec: str, container: str | None = None) -> str:
        from streamcolor.video import pick_codec

        return pick_codec(codec, container)

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

    :meth:`submit` sends a task to the least busy actor that runs; :meth:`results`
    waits for finished tasks and yields ``(task, result or exception)``.  An
    actor Ray could not bring back (restarts used up) is replaced.

    An actor runs once the cluster has placed it (its CPUs and GPUs free).
    Tasks go only to those: one sent to an actor the cluster has no room for
    would wait as long as that lasts, maybe for ever on a fixed cluster, while
    the actors that run have nothing to do.  Each actor's first call (its pid)
    says when it runs.
    """

    #: Seconds between the warnings while no actor runs yet.
    WAIT_WARN_S = 30.0

    def __init__(self, ray, size: int, *, cluster: ClusterOptions, gpus: float, colorize_kwargs: dict):
        self.ray = ray
        self.cluster = cluster
        self.tag = uuid.uuid4().hex[:8]
        self.remote_options = dict(num_cpus=cluster.cpus_per_actor, num_gpus=gpus, max_restarts=cluster.max_restarts,
                                   max_task_retries=cluster.max_task_retries)
        self.worker_kwargs = {"colorize_kwargs": colorize_kwargs, "threads": cluster.threads}
        self.replaced = 0
        self.running = [False] * size  # placed by the cluster (its first call answered)
        self._pings: dict[Any, int] = {}  # first call of each actor not known to run yet -> its slot
        self.actors = [self._start(i) for i in range(size)]
        self.busy = [0] * size
        self.pending: dict[Any, Task] = {}

    def _start(self, slot: int):
        name = f"streamcolor-{self.tag}-{slot}" + (f"-{self.replaced}" if self.replaced else "")
        actor = _remote_worker().options(name=name, **self.remote_options).remote(**self.worker_kwargs)
        self.running[slot] = False
        self._pings = {ref: s for ref, s in self._pings.items() if s != slot}  # (a replaced actor's)
        self._pings[actor.pid.remote()] = slot
        return actor

    def _running_slots(self, *, wait: bool = False) -> list[int]:
        """The slots whose actor runs; with ``wait``, blocks until at least one does (warning every
        :data:`WAIT_WARN_S` seconds that the cluster has no room yet)."""
        while self._pings:
            blocking = wait and not any(self.running)
            # blocking: back as soon as one actor runs (all of them would wait the whole WAIT_WARN_S
            # for actors the cluster has no room for); else whichever already run, at once
            ready, _ = self.ray.wait(list(self._pings), num_returns=1 if blocking else len(self._pings),
                                     timeout=self.WAIT_WARN_S if blocking else 0)
            for ref in ready:  # (one that fails, an actor dead at its start, runs: its tasks fail and replace it)
                self.running[self._pings.pop(ref)] = True
            if any(self.running) or not wait:
                break
            asks = self.remote_options
            log.warning("no Ray actor has started yet: the cluster has no room for one now (each asks %g CPU%s); "
                        "waiting", asks["num_cpus"], f" and {asks['num_gpus']:g} GPU" if asks["num_gpus"] else "")
        return [i for i, up in enumerate(self.running) if up]

    @property
    def size(self) -> int:
        return len(self.actors)

    def has_room(self) -> bool:
        """Whether another task may be sent: fewer in flight than the running actors take (while
        none runs yet, one task, which :meth:`submit` holds until one does)."""
        return len(self.pending) < max(1, len(self._running_slots())) * self.cluster.tasks_per_actor

    def submit(self, method: str, *args, payload: Any = None, attempt: int = 0) -> None:
        slot = min(self._running_slots(wait=True), key=self.busy.__getitem__)
        ref = getattr(self.actors[slot], method).remote(*args)
        self.pending[ref] = Task(slot, method, args, payload, attempt)
        self.busy[slot] += 1

    def call_one(self, method: str, *args):
        """Run a method on one running actor and wait for its result."""
        return self.ray.get(getattr(self.actors[self._running_slots(wait=True)[0]], method).remote(*args))

    def results(self) -> Iterator[tuple[Task, Any]]:
        """Finished tasks, as they finish (blocks until at least one is done)."""
        from ray.exceptions import (ActorUnavailableError, OutOfMemoryError, RayActorError, RayTaskError,
                                    WorkerCrashedError)

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
            except RayTaskError as exc:  # the actor's own error (e.g. OutputError: the output cannot be
                raise remote_cause(exc) from None  # written), not Ray's copy whose text is the remote traceback

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
            raise ClusterError("Ray actors keep dying; giving up (see the Ray logs for the cause, e.g. out of memory)")
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


__all__ = ["ActorPool", "CONNECT_TIMEOUT_S", "ClusterError", "ClusterOptions", "INIT_TIMEOUT_S", "INSTALL_HINT",
           "Task", "Worker", "colorize_kwargs", "plan_actors", "ray_session", "remote_cause", "require_ray",
           "resolve_address"]
