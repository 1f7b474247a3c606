"""``colorize_collection``: a Ray Data job for large photo collections on any pyarrow filesystem.

``read_binary_files`` -> ``map_batches(ColorizeBatch, compute=ActorPoolStrategy(...))``,
outputs written by the actors straight to the output (a local folder, or a URI:
``s3://``, ``gs://``...).  Resumable: files whose output exists are skipped.
The command that runs it for ``ray job submit`` is ``streamcolor.commands.collection``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import unicodedata
from pathlib import Path

from streamcolor import image_io
from streamcolor.archive import BatchOptions, unique_name
from streamcolor.archive.job import exclusive_output
from streamcolor.archive.listing import warn_left_out
from streamcolor.engines.archives import is_junk, kind_by_name, name_key
from streamcolor.errors import InputError, OutputError, StreamcolorError, refuse_empty_path
from streamcolor.outputs import claimants, numbered
from streamcolor.items import REPORT_FILENAME, JobReport, Problem, is_job_file, problems_csv
from streamcolor.manifest import DONE, FAILED, SKIPPED
from streamcolor.progress import Progress, progress_bar
from streamcolor.ray.batch import ColorizeBatch, filesystem, is_local, item_key, sink_for
from streamcolor.ray.pool import ClusterOptions, colorize_kwargs, plan_actors, ray_session, remote_cause, require_ray

log = logging.getLogger(__name__)

#: CPUs the read step keeps at least (reading files is I/O: a share of one CPU does).
MIN_READ_CPUS = 0.25


def colorize_collection(src: str | os.PathLike, dst: str | os.PathLike, *, model: "str | os.PathLike" = "default",
                        backend: str = "auto", options: BatchOptions = BatchOptions(),
                        cluster: ClusterOptions = ClusterOptions(), overwrite: bool = False,
                        progress: Progress = None) -> JobReport:
    """Colorize every image under a folder or bucket prefix with a Ray Data pipeline.

    ``read_binary_files`` -> ``map_batches(ColorizeBatch)`` on a fixed pool of
    actors (GPU actors with ``num_gpus`` each where the cluster has GPUs),
    each writing its outputs straight to ``dst``; the driver only collects
    the small per-file result rows.

    Parameters
    ----------
    src:
        A local folder or a URI pyarrow understands (``s3://bucket/photos``,
        ``gs://...``), searched recursively; every file is an item, except those
        that are not images by their names (``notes.txt``, ``clip.mp4``: left out
        with one warning, as ``batch`` does); files that fail to decode are
        reported as failed.
    dst:
        Local folder or URI; mirrors the source tree.  Resumable: files whose
        output exists are skipped (outputs appear whole: a temporary name and
        a rename locally, one object PUT on object stores).
    model, backend, options, cluster:
        As for :func:`~streamcolor.ray.colorize_archive_ray`; ``options.batch_for()``
        is the ``map_batches`` batch size.
    overwrite:
        Redo files whose output exists.
    progress:
        As for :func:`~streamcolor.ray.colorize_archive_ray`: None (default) a bar on a terminal,
        True/False always/never, or a callable ``fn(done, total)`` called as files finish.

    Returns
    -------
    A :class:`~streamcolor.items.JobReport` (``done_now``: colorized by this
    run; ``existing``: by earlier ones); ``streamcolor-report.csv`` in ``dst``
    lists the failed and skipped files with reasons.
    """
    started = time.perf_counter()
    refuse_empty_path(src, "source")
    refuse_empty_path(dst, "output")
    require_ray()  # (first: pyarrow comes with Ray; without it the job would say "No module named 'pyarrow'")
    src_fs, src_root = filesystem(src)
    out_fs, out_root = filesystem(dst)
    local_out = is_local(out_fs)
    if is_local(src_fs) and local_out:
        # (real paths: a link to the source given as the source or as the output, or as a folder above
        # the output, is the same folder, and writing there would put outputs among the inputs)
        s, o = Path(os.path.realpath(src_root)), Path(os.path.realpath(out_root))
        if s == o or o.is_relative_to(s) or s.is_relative_to(o):
            raise ValueError(f"the output {dst} and the source {src} overlap; choose an output outside the source")
        if o.exists() and not o.is_dir():  # said now, not after the whole job ran
            raise ValueError(f"the output {dst} is a file; OUTPUT is a folder (it mirrors the source's tree)")
        above = next((p for p in o.parents if os.path.lexists(p)), None)
        if above is not None and not above.is_dir():
            raise ValueError(f"the output {dst} cannot be made: {above} is a file, not a folder")
    files, links, refused = _list_files(src_fs, src_root, options.max_member_bytes)  # (first: a source that is
    if len(files) == 1 and files[0] == src_root and kind_by_name(src_root):  # missing leaves no output folder made)
        raise ValueError(f"{src} is an archive; a collection is a folder (or bucket prefix) of image files: "
                         "`streamcolor batch` reads zip and tar archives")
    if not files and not links and not refused:
        log.warning("no files to colorize in %s", src)
    lock = contextlib.ExitStack()  # (a local output is locked against a second job writing there, as batch does)
    if local_out:
        _check_writable(out_root, dst)
        lock.enter_context(exclusive_output(Path(out_root)))
    with lock:
        existing = set() if overwrite else _existing(out_fs, out_root)
        todo, renames, problems = [], {}, []
        taken: set[str] = set()
        done_before = 0
        left_out = {p for p in files if image_io.not_an_image_name(p)}  # as `batch` does: README.txt is no failure
        warn_left_out(sorted(left_out))
        files = [p for p in files if p not in left_out]
        unreadable = [p for p in files if _unreadable_name(p)]
        problems += [Problem(SKIPPED, str(src), p, "Ray Data cannot read a name that is not UTF-8 or holds a "
                             "control character (tab, newline); `streamcolor batch` can") for p in unreadable]
        files = [p for p in files if not _unreadable_name(p)]
        keyed = [(path, *item_key(path, src_root, options.output_format)) for path in files]
        own = [key is not None and key == item_key(path, src_root)[0] for path, key, _ in keyed]
        keeps = claimants([(key and name_key(key), mine) for (_, key, _), mine in zip(keyed, own)])  # as `batch` does
        reserved = {name_key(key) for _, key, _ in keyed if key is not None}
        problems += [Problem(SKIPPED, str(src), path, "a symbolic link (not followed)") for path in links]
        problems += [Problem(SKIPPED, str(src), path, why) for path, why in refused]
        for i, (path, key, unsafe) in enumerate(keyed):
            if key is None:
                problems.append(Problem(SKIPPED, str(src), path, unsafe or "unsafe name"))
                continue
            unique = unique_name(key, taken, reserved, claimed=i in keeps)
            if unique != key:
                renames[path] = unique
            if local_out and (link := _link_on_the_way(out_root, unique)):
                problems.append(Problem(SKIPPED, str(src), path, f"its output {link} is a symbolic link "
                                                                 "(not written through)"))
                continue
            if unique in existing:
                done_before += 1
                continue
            todo.append(path)
        done = failed = 0
        if todo:
            with ray_session(cluster.address, runtime_env=cluster.runtime_env) as ray:
                n, gpus = plan_actors(ray, cluster, -(-len(todo) // options.batch_for()), spare_cpus=1.0,
                                      say_fit=False)  # (fit_reading says what fits, once)
                n, read_cpus = fit_reading(float(ray.cluster_resources().get("CPU", 0)), n, cluster.cpus_per_actor)
                log.info("colorizing %d files with Ray Data on %d actors (%g CPU, %g GPU each; %g CPU kept for "
                         "reading)", len(todo), n, cluster.cpus_per_actor, gpus, read_cpus)
                kwargs = colorize_kwargs(model, backend, options, str(dst) if "://" in str(dst) else out_root, cluster,
                                         gpus, root=src_root, renames=renames, keep_others=not overwrite)
                ds = ray.data.read_binary_files(todo, include_paths=True, filesystem=src_fs, num_cpus=read_cpus)
                ds = ds.map_batches(ColorizeBatch, batch_size=options.batch_for(), batch_format="numpy",
                                    compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cluster.cpus_per_actor,
                                    num_gpus=gpus or None, fn_constructor_kwargs=kwargs)
                try:
                    with progress_bar(progress, total=len(todo), unit="img", desc="collection") as bar:
                        for row in ds.select_columns(["path", "state", "error"]).iter_rows():
                            bar.update()
                            if row["state"] == DONE:
                                done += 1
                            else:
                                failed += row["state"] == FAILED
                                problems.append(Problem(row["state"], str(src), row["path"], row["error"]))
                except Exception as exc:  # an actor's OutputError (the output cannot be written), a file gone: as
                    cause = remote_cause(exc)  # raised there, not Ray's wrapper whose text is a remote traceback
                    if isinstance(cause, (StreamcolorError, OSError)):
                        raise cause from None
                    raise
        skipped = sum(1 for p in problems if p.state == SKIPPED)
        problems.sort(key=lambda p: p.member)
        report_name = _report_name(out_fs, out_root)
        sink_for(dst).write(report_name, problems_csv(problems))
        return JobReport(output=str(dst), report=f"{out_root}/{report_name}",
                         total=len(files) + len(links) + len(refused) + len(unreadable), done=done + done_before,
                         skipped=skipped,
                         failed=failed, done_now=done, elapsed_s=time.perf_counter() - started, problems=problems)


def fit_reading(cpus_total: float, actors: int, cpus_per_actor: float) -> tuple[int, float]:
    """(actors, CPUs per read task) such that the actors leave the read step a CPU share.

    The actors hold their CPUs for the whole job; if they held every CPU, the
    read tasks would wait for one forever (a deadlock Ray Data does not detect)
    as soon as there are more batches than actors.  So the actors are capped at
    what leaves at least :data:`MIN_READ_CPUS` free, with a warning, and the
    read tasks ask for what is left (at most one CPU, Ray Data's default).
    On an autoscaling cluster, start the nodes first: the cap uses the CPUs
    the cluster has when the job starts.  ValueError if not even one actor fits.
    """
    fit = math.floor((cpus_total - MIN_READ_CPUS) / cpus_per_actor + 1e-9)
    if fit < 1:
        raise ValueError(f"each actor asks for {cpus_per_actor:g} CPUs, but the cluster has {cpus_total:g} and "
                         f"reading needs {MIN_READ_CPUS:g}: use --cpus-per-actor "
                         f"{max(cpus_total - MIN_READ_CPUS, 0):g} or less")
    if actors > fit:
        log.warning("%d actors of %g CPU each would leave the cluster's %g CPUs no share for reading the files "
                    "(the job would wait forever): using %d actor%s", actors, cpus_per_actor, cpus_total, fit,
                    "s" if fit > 1 else "")
        actors = fit
    return actors, round(min(1.0, cpus_total - actors * cpus_per_actor), 4)


def _list_files(fs, root: str, max_bytes: int) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(files, symbolic links, refused) under ``root``; refused: (path, reason) of the files that are
    not to be read: a FIFO, socket or device (reading one waits forever or fails the whole read
    step), or one bigger than ``max_bytes`` (Ray Data reads a file whole into memory).  On this
    machine links are listed, not followed, as ``batch`` does: a link may lead out of the folder,
    back into it (a loop that pyarrow's listing follows without end), or into the output."""
    import stat

    from pyarrow import fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{root}: no such file or folder")
    links: list[str] = []
    sizes: dict[str, int] = {}
    refused: list[tuple[str, str]] = []
    if info.type == pafs.FileType.File:
        sizes[root] = info.size or 0
    elif is_local(fs):
        for folder, dirs, files in os.walk(root):  # (followlinks=False: a link to a folder is in dirs, not entered)
            links += (p for p in (os.path.join(folder, d) for d in dirs) if os.path.islink(p))
            for path in (os.path.join(folder, f) for f in files):
                try:
                    st = os.lstat(path)
                except OSError as exc:  # removed since it was listed
                    refused.append((path, f"cannot stat ({exc.strerror or exc})"))
                    continue
                if stat.S_ISLNK(st.st_mode):
                    links.append(path)
                elif not stat.S_ISREG(st.st_mode):
                    refused.append((path, "not a regular file (a FIFO, socket or device)"))
                else:
                    sizes[path] = st.st_size
    else:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        sizes = {i.path: i.size or 0 for i in infos if i.type == pafs.FileType.File}
    for path, size in sizes.items():
        if size > max_bytes:
            refused.append((path, f"{size:,} bytes, more than {max_bytes:,} (size limit; raise --max-member-size "
                                  "if the file is trusted)"))
    files = [p for p, size in sizes.items() if size <= max_bytes]

    def wanted(p: str) -> bool:
        return not is_junk(p, backslashes=False) and not is_job_file(p[len(root):])

    return (sorted(filter(wanted, files)), sorted(filter(wanted, links)),
            sorted((p, why) for p, why in refused if wanted(p)))


def _unreadable_name(path: str) -> bool:
    """Whether ``ray.data.read_binary_files`` fails on the path (and with it the whole job): a name
    that is not UTF-8 (its bytes kept as surrogates), or one with a control character, which its
    path handling drops."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in path)


def _link_on_the_way(root: str, key: str) -> str | None:
    """The first folder of output ``key`` under ``root``, or the output itself, that is a symbolic
    link (writing there would write wherever it points: into the source, or over a user's file)."""
    parts = key.split("/")
    for n in range(1, len(parts) + 1):
        path = os.path.join(root, *parts[:n])
        if os.path.islink(path):
            return path
    return None


def _check_writable(root: str, dst) -> None:
    """OutputError now, before Ray starts, when the local output folder cannot be made or written
    (read-only, full, not ours): else every actor would fail on its first photo."""
    import tempfile

    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryFile(dir=root, prefix=".streamcolor-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write here ({exc.strerror or exc})") from exc


def _report_name(fs, root: str) -> str:
    """The report's name in the output: :data:`REPORT_FILENAME`, unless a file is there that is no
    report of streamcolor's (a spreadsheet of the user's by that name), which is kept: then
    ``streamcolor-report~2.csv``...  A collection keeps no record of what it wrote, so a report is
    known by its header line, as `batch` knows one of an earlier version."""
    from pyarrow import fs as pafs

    header = problems_csv([]).splitlines()[0]
    n, name = 1, REPORT_FILENAME
    while True:
        info = fs.get_file_info(f"{root}/{name}")
        if info.type == pafs.FileType.NotFound:
            break
        if info.type == pafs.FileType.File and not (is_local(fs) and os.path.islink(info.path)):
            with fs.open_input_stream(info.path) as fh:
                if fh.read(len(header) + 2).splitlines()[:1] == [header]:
                    break
        n += 1
        name = numbered(REPORT_FILENAME, n)
    if name != REPORT_FILENAME:
        log.warning("%s/%s is not a report of streamcolor's (a file of yours?); it is kept and the report is "
                    "written as %s", root, REPORT_FILENAME, name)
    return name


def _existing(fs, root: str) -> set[str]:
    from pyarrow import fs as pafs

    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return set()
    if is_local(fs):  # (links not followed: see _list_files)
        return {os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                for folder, _, files in os.walk(root) for name in files}
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return {i.path[len(root):].lstrip("/") for i in infos if i.type == pafs.FileType.File}


__all__ = ["MIN_READ_CPUS", "colorize_collection", "fit_reading"]
