"""``colorize_archive_ray``: the plain batch job with the colorizing done by Ray actors.

The job is :class:`streamcolor.archive.BatchJob` (listing, resume manifest,
report, packing), so a run of either resumes the other's.  The driver reads
members (archives stay on the driver's disk), streams chunks to the actors of
an :class:`~streamcolor.ray.pool.ActorPool` with back-pressure, and records
every outcome.  Actors write outputs atomically into OUT, which must be on
storage every node sees (one machine, NFS...).  If an actor keeps dying, the
chunk it held is resubmitted item by item, so an item that kills its worker
every time (a decoder crash) ends up FAILED in the report instead of
stopping the job.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence


from streamcolor import tempfiles
from streamcolor.archive import BatchJob, BatchOptions, Item
from streamcolor.errors import InputError, OutputError
from streamcolor.items import JobReport, Outcome, outcome_of
from streamcolor.manifest import DONE, FAILED
from streamcolor.progress import Progress, progress_bar
from streamcolor.ray.batch import objects
from streamcolor.ray.pool import ActorPool, ClusterOptions, colorize_kwargs, plan_actors, ray_session, require_ray

if TYPE_CHECKING:
    from streamcolor.engines import ModelInfo

log = logging.getLogger(__name__)


def colorize_archive_ray(src: str | os.PathLike | Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                         model: "str | os.PathLike" = "default", backend: str = "auto",
                         options: BatchOptions = BatchOptions(), cluster: ClusterOptions = ClusterOptions(),
                         progress: Progress = None) -> JobReport:
    """:func:`streamcolor.colorize_archive` with the colorizing done by Ray actors.

    Same sources, output layout, resume manifest, report and packing as the
    plain job (a run of either resumes the other).  The driver lists and
    reads the sources; chunks of ``options.batch_for()`` items go to the
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
        Address, actor count and resources: :class:`~streamcolor.ray.ClusterOptions`.
    progress:
        None (default): a tqdm bar on stderr only when it is a terminal; True/False: always/never;
        a callable ``fn(done, total)``: called after each item instead of a bar
        (see :mod:`streamcolor.progress`).

    Returns
    -------
    A :class:`~streamcolor.items.JobReport`.  ``engine_s`` is the mean over
    actors of the time spent in engine calls.

    Raises
    ------
    ImportError: Ray is not installed.
    InputError, OutputError, ValueError: as :func:`streamcolor.colorize_archive`.
    """
    require_ray()  # (before the job makes OUT and its state: without Ray, nothing is left behind)
    with BatchJob(src, dst, options=options) as job:
        info = _model_info(model)
        if info is not None:
            job.note_settings(info)
        todo = list(job.todo)
        if not todo:
            return job.finish()
        with ray_session(cluster.address, runtime_env=cluster.runtime_env) as ray:
            chunks = -(-len(todo) // options.batch_for())
            n, gpus = plan_actors(ray, cluster, chunks)
            log.info("colorizing %d items on %d Ray actors (%g GPU each)", len(todo), n, gpus)
            pool = ActorPool(ray, n, cluster=cluster, gpus=gpus,
                             colorize_kwargs=colorize_kwargs(model, backend, options, str(job.out_dir), cluster, gpus,
                                                             staging=True))
            try:
                with progress_bar(progress, total=len(job.items), initial=job.settled, unit="img",
                                  desc="colorize (ray)") as bar:
                    engine_s = _run_items(job, pool, todo, options.batch_for(), bar)
            finally:
                pool.close()
        return job.finish(engine_s=engine_s / max(1, n))


def _model_info(model: "str | os.PathLike | None") -> "ModelInfo | None":
    """The model's ``model.json`` (what a plain run records its outputs with), read here without
    loading the model; None for a folder only the actors' nodes have (they say so when they load it)."""
    from streamcolor.engines import DEFAULT_MODEL, EngineError, resolve_model

    try:
        return resolve_model(model or DEFAULT_MODEL)
    except EngineError:
        return None


def _run_items(job: BatchJob, pool: ActorPool, todo: list[Item], batch_size: int, bar) -> float:
    """Stream ``todo`` through the pool in chunks, resubmitting lost work; record every outcome."""
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
                datas.append(job.read(item))
            except InputError as exc:
                record(outcome_of(item, exc))
                continue
            batch_items.append(item)
        if batch_items:
            # (what an output may replace is checked here, when the staged output is renamed: job.record)
            batch = {"key": objects([it.key for it in batch_items]), "bytes": objects(datas)}
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
            for key, state, error, output, dropped, temp in zip(batch["key"], batch["state"], batch["error"],
                                                                batch["output"], batch["dropped_alpha"],
                                                                batch["staged"]):
                # the actor left the output as its complete temporary file: recorded, then renamed here
                final = job.out_dir / key
                staged = tempfiles.Staged(final.parent / temp, final) if temp else None
                outcome = Outcome(by_key[key], state, error or None, output or None, dropped_alpha=bool(dropped),
                                  staged=staged)
                if state == DONE and not checked:
                    _check_visible(job.out_dir, (staged.path if staged else final).relative_to(job.out_dir))
                    checked = True
                record(outcome)
    return engine_s


def _check_visible(out_dir: Path, key: str | Path) -> None:
    if not (out_dir / key).is_file():
        raise OutputError(f"{out_dir}: an actor wrote {key}, but it is not there on this machine; the output "
                          "folder must be on storage shared by the driver and every Ray node (NFS, a shared volume)")


__all__ = ["colorize_archive_ray"]
