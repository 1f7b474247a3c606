"""The batch job around the colorizing: output layout, lock, resume manifest, report, packing.

:class:`BatchJob` is shared by the threaded pipeline
(:func:`streamcolor.archive.colorize_archive`) and the Ray actor pool
(:func:`streamcolor.ray.colorize_archive_ray`), so a run of either resumes
the other's.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Sequence

from streamcolor import image_io
from streamcolor.archive.listing import ARCHIVE_SUFFIXES, BatchOptions, Item, Source, list_items, open_source, read_item
from streamcolor.engines import archives
from streamcolor.errors import OutputError
from streamcolor.items import REPORT_FILENAME, JobReport, Outcome, Problem, problems_csv
from streamcolor.manifest import DONE, FAILED, FILENAME as MANIFEST_FILENAME, SKIPPED, Manifest

log = logging.getLogger(__name__)

#: Lock file that keeps two runs from writing into the same OUT.
LOCK_FILENAME = ".streamcolor.lock"
#: The result of a batch job (the one job report).
BatchReport = JobReport
_TEMP_RE = re.compile(r"^\..+\.part$")  # write_atomic's temporary names: .<name>.<random>.part


class BatchJob:
    """Everything around the colorizing of a batch, shared by the threaded
    pipeline and the Ray actor pool.

    Constructing it checks the sources and the output layout.  Entering it
    creates and locks ``OUT``, opens the manifest, removes temporary files a
    killed run left, lists every source and registers the listing: then
    :attr:`items` is the whole job and :attr:`todo` what is left to do.
    :meth:`read` gives an item's bytes; :meth:`record` stores one
    :class:`~streamcolor.items.Outcome` (from the thread that entered the
    job); :meth:`finish` writes the report, packs the archive if asked for and
    returns the :class:`~streamcolor.items.JobReport`.

    >>> with BatchJob("album.zip", "out") as job:
    ...     for outcome in process_items(..., out_dir=job.out_dir, ...):
    ...         job.record(outcome)
    ...     report = job.finish()
    """

    def __init__(self, src: str | os.PathLike | Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                 options: BatchOptions = BatchOptions()):
        self.started = time.perf_counter()
        self.options = options
        self.paths = [Path(src)] if isinstance(src, (str, os.PathLike)) else [Path(s) for s in src]
        if not self.paths:
            raise ValueError("no sources given")
        self.out_dir, self.archive_kind = _output_layout(Path(dst), options)
        self._stack = ExitStack()
        try:
            self.sources = [self._stack.enter_context(open_source(p, options)) for p in self.paths]
        except BaseException:
            self._stack.close()
            raise
        if self.archive_kind == "same":
            kinds = {s.kind for s in self.sources}
            self.archive_kind = kinds.pop() if len(kinds) == 1 and "folder" not in kinds else "zip"
        self.archive_path = (self.out_dir.parent / (self.out_dir.name + ARCHIVE_SUFFIXES[self.archive_kind][0])
                             if self.archive_kind else None)
        try:
            _check_overlap(self.paths, self.out_dir, self.archive_path)
        except BaseException:
            self._stack.close()
            raise
        self.items: list[Item] = []
        self.todo: list[Item] = []
        self.settled = 0  # items already finished (earlier run) or refused at listing
        self.done_now = 0
        self.manifest: Manifest | None = None

    @property
    def source_by_path(self) -> dict[str, Source]:
        """Open sources by ``Item.source``."""
        return {str(s.path): s for s in self.sources}

    def read(self, item: Item) -> bytes:
        """An item's bytes from its source (one thread at a time).  InputError if
        it cannot be read; MemberRefused if a safety limit refuses it."""
        return read_item(self.source_by_path[item.source], item)

    def __enter__(self) -> "BatchJob":
        try:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{self.out_dir}: cannot create the output folder "
                                  f"({exc.strerror or exc})") from exc
            self._stack.enter_context(_exclusive(self.out_dir))
            self.manifest = self._stack.enter_context(_open_manifest(self.out_dir))
            _remove_stale_temps(self.out_dir, self.archive_path)
            self.items = list_items(self.sources, self.options)
            with _recording(self.manifest):
                entries = self.manifest.sync(it.entry() for it in self.items)
                for it in self.items:
                    e = entries[it.key]
                    if it.refusal or (e.state == DONE and (self.out_dir / (e.output or it.key)).is_file()):
                        self.settled += 1
                        continue
                    if e.state == DONE:
                        self.manifest.reset(it.key)  # its output went missing: redo
                    self.todo.append(it)
        except BaseException:
            self._stack.close()
            raise
        log.info("%d items, %d to do", len(self.items), len(self.todo))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def record(self, outcome: Outcome) -> None:
        """Store one item's outcome in the manifest (committed at once)."""
        assert self.manifest is not None, "enter the job first"
        item = outcome.item
        with _recording(self.manifest):
            self.manifest.mark(item.key, outcome.state, reason=outcome.reason, output=outcome.output)
        if outcome.state == DONE:
            self.done_now += 1
        else:
            log.info("%s %s: %s", outcome.state, item.label, outcome.reason)

    def finish(self, *, engine_s: float = 0.0) -> JobReport:
        """Write the report, pack the archive if asked for; the job's :class:`~streamcolor.items.JobReport`.

        ``engine_s``: time spent inside engine calls, for the report's figures."""
        assert self.manifest is not None, "enter the job first"
        # Every writer has finished now; a worker killed mid-write (a Ray actor) may have left its temporary file.
        _remove_stale_temps(self.out_dir, None)
        keys = {it.key for it in self.items}
        with _recording(self.manifest):
            counts = self.manifest.counts(keys)
            problems = [Problem(e.state, e.source, e.member, e.reason or "")
                        for e in self.manifest.entries((SKIPPED, FAILED), keys)]
            done = [e.output or e.key for e in self.manifest.entries((DONE,), keys)]
        report = image_io.write_atomic(self.out_dir / REPORT_FILENAME, problems_csv(problems))
        packed = None
        if self.archive_kind and self.archive_path is not None:
            packed = pack_outputs(self.out_dir, done, self.archive_path, self.archive_kind)
        return JobReport(output=self.out_dir, report=report, total=len(self.items), done=counts[DONE],
                         skipped=counts[SKIPPED], failed=counts[FAILED], done_now=self.done_now,
                         elapsed_s=time.perf_counter() - self.started, engine_s=engine_s, problems=problems,
                         archive=packed)


def pack_outputs(out_dir: Path, outputs: Iterable[str], archive_path: Path, kind: str) -> Path:
    """Pack the given outputs (paths relative to ``out_dir``) into ``archive_path``
    (a temporary name, renamed into place at the end)."""
    with image_io.atomic_output(archive_path, what="writing the archive") as tmp:
        archives.pack(out_dir, outputs, tmp, kind)
    return archive_path


def _output_layout(dst: Path, options: BatchOptions) -> tuple[Path, str | None]:
    """(output folder, archive kind or "same" or None).  ``x.zip`` -> folder ``x`` + zip."""
    lower = dst.name.lower()
    for kind, suffixes in ARCHIVE_SUFFIXES.items():
        for suffix in suffixes:
            if lower.endswith(suffix) and len(lower) > len(suffix):
                if options.archive not in (None, "same", kind):
                    raise ValueError(f"{dst}: the output name says {kind}, but archive={options.archive!r}")
                return dst.with_name(dst.name[: -len(suffix)]), kind
    return dst, options.archive


def _check_overlap(sources: Sequence[Path], out_dir: Path, archive_path: Path | None) -> None:
    out = out_dir.resolve()
    for s in sources:
        s = s.resolve()
        if s.is_dir() and (out == s or out.is_relative_to(s) or s.is_relative_to(out)):
            raise ValueError(f"the output folder {out_dir} and the source folder {s} overlap; "
                             "choose an output outside the source")
        if archive_path is not None and archive_path.resolve() == s:
            raise ValueError(f"the packed output {archive_path} would replace the source archive; "
                             "choose another output name")


@contextmanager
def _exclusive(out_dir: Path):
    """Hold an exclusive lock on OUT for the run (another run into OUT is refused)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the manifest still keeps state
        yield
        return
    try:
        fh = open(out_dir / LOCK_FILENAME, "a+")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write here ({exc.strerror or exc})") from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise OutputError(f"{out_dir}: another streamcolor batch is writing here (locked)") from exc
        yield
    finally:
        fh.close()


@contextmanager
def _open_manifest(out_dir: Path):
    try:
        manifest = Manifest.open(out_dir)
    except sqlite3.Error as exc:
        raise OutputError(f"{out_dir / MANIFEST_FILENAME}: cannot open the resume manifest ({exc})") from exc
    try:
        yield manifest
    finally:
        manifest.close()


@contextmanager
def _recording(manifest: Manifest):
    """sqlite errors (disk full, read-only) -> OutputError."""
    try:
        yield
    except sqlite3.Error as exc:
        raise OutputError(f"{manifest.path}: cannot record progress ({exc})") from exc


def _remove_stale_temps(out_dir: Path, archive_path: Path | None) -> None:
    """Temporary files left by a killed run (``.<name>.<random>.part``)."""
    stale = [Path(d) / f for d, _, files in os.walk(out_dir) for f in files if _TEMP_RE.match(f)]
    if archive_path is not None:
        stale += [p for p in archive_path.parent.glob(f".{archive_path.name}.*.part")]
    for p in stale:
        try:
            p.unlink()
            log.debug("removed stale temporary file %s", p)
        except OSError:
            pass


__all__ = ["BatchJob", "BatchReport", "LOCK_FILENAME", "REPORT_FILENAME", "pack_outputs"]
