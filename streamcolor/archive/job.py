"""The batch job around the colorizing: output layout, lock, resume manifest, report, packing.

:class:`BatchJob` is shared by the threaded pipeline
(:func:`streamcolor.archive.colorize_archive`) and the Ray actor pool
(:func:`streamcolor.ray.colorize_archive_ray`), so a run of either resumes
the other's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from streamcolor import image_io, tempfiles
from streamcolor.archive.listing import (ARCHIVE_SUFFIXES, BatchOptions, Item, Source, UnreadableSource, folder_keys,
                                         list_items, open_source, read_item)
from streamcolor.colorize import ColorOptions
from streamcolor.engines import ModelInfo, archives
from streamcolor.engines.archives import name_key
from streamcolor.errors import InputError, OutputError, refuse_empty_path
from streamcolor.items import REPORT_FILENAME, JobReport, Outcome, Problem, is_item_error, problems_csv
from streamcolor.manifest import (DONE, FAILED, FILENAME as MANIFEST_FILENAME, JOB_DIR, SKIPPED, Entry, Manifest,
                                 file_identity, replaces_only)
from streamcolor.outputs import numbered

log = logging.getLogger(__name__)

#: Lock file (relative to OUT) that keeps two runs from writing into the same OUT.
LOCK_FILENAME = f"{JOB_DIR}/lock"
#: The manifest's record of the archives this job packed, by path (see _check_packed_target).
PACKED_META = "packed_archive"
#: Manifest meta: the report this job wrote last (its name in OUT and its identity), so that a later run
#: replaces that file only, never one of the user's by the same name.
REPORT_META = "report"
#: Output suffixes whose files depend on the quality setting.
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")
#: The result of a batch job (the one job report).
BatchReport = JobReport


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
        self.paths = _source_paths(src)
        if not isinstance(dst, (str, os.PathLike)):
            raise TypeError(f"the output must be a path (str or os.PathLike), got {type(dst).__name__}")
        refuse_empty_path(dst, "output")
        if not self.paths:
            raise ValueError("no sources given")
        folder = isinstance(dst, str) and dst.endswith(("/", os.sep))  # "name.zip/": a folder, whatever its name
        self.out_dir, self.archive_kind, suffix = _output_layout(Path(dst), options, folder=folder)
        self._stack = ExitStack()
        try:
            self.sources = self._open_sources()
        except BaseException:
            self._stack.close()
            raise
        if self.archive_kind == "same":
            kinds = {s.kind for s in self.sources if not isinstance(s, UnreadableSource)}
            self.archive_kind = kinds.pop() if len(kinds) == 1 and "folder" not in kinds else "zip"
        self.archive_path = (self.out_dir.parent / (self.out_dir.name + (suffix or ARCHIVE_SUFFIXES[self.archive_kind][0]))
                             if self.archive_kind else None)
        try:
            _check_overlap(self.paths, self.out_dir, self.archive_path)
            if self.archive_path is not None and not (self.out_dir / JOB_DIR / MANIFEST_FILENAME).is_file():
                _check_packed_target(self.archive_path, None, self.paths)  # refused before OUT is even created
        except BaseException:
            self._stack.close()
            raise
        self.items: list[Item] = []
        self.todo: list[Item] = []
        self.settled = 0  # items already finished (earlier run) or refused at listing
        self._settings: dict[str, object] | None = None  # what this run colorizes with (note_settings)
        self.done_now = 0
        self.dropped_alpha = 0  # outputs of this run whose transparency a JPEG could not hold
        self.manifest: Manifest | None = None
        self._archive_names: dict[str, str] = {}  # output key -> its name in the packed archive (_archive_names)

    def _open_sources(self) -> list[Source | UnreadableSource]:
        """The sources, open.  One that cannot be opened stops a job of one source (InputError: there is
        nothing to do); among several it becomes one failed item (:class:`UnreadableSource`) and the others
        are done, unless none of them can be opened."""
        sources: list[Source | UnreadableSource] = []
        errors = []
        for p in self.paths:
            try:
                sources.append(self._stack.enter_context(open_source(p, self.options)))
            except InputError as exc:
                if len(self.paths) == 1:
                    raise
                errors.append(exc)
                sources.append(UnreadableSource(p, str(exc)))
        if len(errors) == len(self.paths):
            raise errors[0]
        for exc in errors:
            log.error("%s; the other sources are colorized (the report lists it, and a rerun tries it again)", exc)
        return sources

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
            except FileExistsError as exc:  # (a file, or a link to one, is there)
                raise OutputError(f"{self.out_dir}: a file, not a folder; the outputs go into a folder: name "
                                  "another (or an archive such as out.zip)") from exc
            except OSError as exc:
                raise OutputError(f"{self.out_dir}: cannot create the output folder "
                                  f"({exc.strerror or exc})") from exc
            self._stack.enter_context(exclusive_output(self.out_dir))
            self.manifest = self._stack.enter_context(_open_manifest(self.out_dir))
            if self.archive_path is not None:
                with _recording(self.manifest):
                    _check_shared_work_folder(self.out_dir, self.archive_path, self.manifest, self.paths)
                    _check_packed_target(self.archive_path, self.manifest, self.paths)
                    _claim_work_folder(self.archive_path, self.manifest, self.paths)
            with _recording(self.manifest):
                _finish_renames(self.manifest, self.out_dir)
                listed = _refuse_linked_folders(list_items(self.sources, self.options), self.out_dir)
                self.items = _refuse_linked_folders(  # (again: a folder renumbered onto a link, a~2.jpg/)
                    _keep_clear_of_others(listed, self.manifest, self.out_dir, redo=self.options.redo), self.out_dir)
                self._archive_names = _archive_names(listed, self.items)
            self._sweep()
            with _recording(self.manifest):
                entries = self.manifest.sync(it.entry() for it in self.items)
                for it in self.items:
                    e = entries[it.key]
                    if it.refusal or (e.state == DONE and not self.options.redo
                                      and (self.out_dir / (e.output or it.key)).is_file()):
                        self.settled += 1
                        continue
                    if e.state == DONE:
                        self.manifest.reset(it.key)  # its output went missing: redo
                    self.todo.append(it)
        except BaseException:
            self._stack.close()
            raise
        self._note_other_names()
        if not self.items:  # an empty folder or archive, or the wrong one: a run that does nothing says so
            log.warning("no files to colorize in %s", ", ".join(str(p) for p in self.paths))
        log.info("%d items, %d to do", len(self.items), len(self.todo))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stack.close()
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and self.manifest is not None:
            # Ctrl-C, or SIGTERM through the CLI: what is kept, and how to go on
            kept = self.settled + self.done_now
            if kept >= len(self.items):
                log.warning("stopped: all %d items were done and are kept", kept)
            else:
                log.warning("stopped: %d of %d items are done and kept; run the same command again to finish "
                            "the rest", kept, len(self.items))

    def _note_other_names(self) -> None:
        """Warn when items of this listing also have an output from an earlier run under another
        name (another ``--format``: ``p0.jpg`` then ``p0.png``), both of which are kept."""
        assert self.manifest is not None
        keys = {it.key for it in self.items}
        mine = {(os.path.abspath(it.source), it.member): it.key for it in self.items if not it.refusal}
        with _recording(self.manifest):
            older = [(e.key, mine[(e.source, e.member)]) for e in self.manifest.entries((DONE,))
                     if e.key not in keys and (e.source, e.member) in mine
                     and (self.out_dir / (e.output or e.key)).is_file()]
        if older:
            log.warning("%d item(s) also have an output from an earlier run under another name (%s -> now %s%s: "
                        "another --format?); both are kept", len({now for _, now in older}), older[0][0],
                        older[0][1], ", ..." if len(older) > 1 else "")

    def note_settings(self, info: ModelInfo) -> None:
        """Say which settings this run colorizes with (``info``'s model; the render size,
        saturation and quality it resolves to), so that each output is recorded with the
        settings that made it; and warn when kept outputs were made with other settings.
        Why: a rerun resumes, so without a word a rerun with new options would leave the
        finished items as they were and mix two looks in one folder; ``redo`` (``--redo``)
        colorizes them again."""
        assert self.manifest is not None, "enter the job first"
        colour = ColorOptions(render_size=self.options.render_size, saturation=self.options.saturation).for_model(info)
        self._settings = {"model": info.name, "render size": colour.render_size,
                          "saturation": round(float(colour.saturation), 4)}
        keys = {it.key for it in self.items if not it.refusal}
        with _recording(self.manifest):
            made = self.manifest.made_with(keys)
        other = {k: json.loads(v) for k, v in made.items() if v != self._made_with(k)}
        if not other:
            return
        kinds = list({json.dumps(s, sort_keys=True): s for s in other.values()}.values())
        mine = {**self._settings, "quality": self.options.quality}
        changed = [k for k in mine if any(k in s and s[k] != mine[k] for s in kinds)]
        earlier = dict.fromkeys(", ".join(f"{k} {s[k]}" for k in changed if k in s) for s in kinds)  # (once each)
        log.warning("%d item(s) in %s were colorized by an earlier run with other settings (%s; this run: %s) and "
                    "are kept as they are; --redo (in Python: BatchOptions(redo=True)) colorizes every item again with "
                    "this run's settings", len(other),
                    self.out_dir, " / ".join(earlier), ", ".join(f"{k} {mine[k]}" for k in changed))

    def _made_with(self, key: str) -> str | None:
        """The settings that make ``key``'s output in this run, as recorded in the manifest (JSON):
        the quality only for JPEG and WebP outputs, where it changes the file."""
        if self._settings is None:
            return None
        s = dict(self._settings)
        if PurePosixPath(key).suffix.lower() in LOSSY_SUFFIXES:
            s["quality"] = self.options.quality
        return json.dumps(s, sort_keys=True)

    def _sweep(self) -> None:
        """Remove the temporary files that a killed run left for this job's
        outputs (only those, and only when their writer is gone)."""
        names = {it.key.rsplit("/", 1)[-1] for it in self.items if not it.refusal} | {REPORT_FILENAME}
        if self.manifest is not None:
            with _recording(self.manifest):
                names.add(_written_report(self.manifest).get("name") or REPORT_FILENAME)
                # and those of the keys earlier runs wrote to: a run killed under another --format
                # left its temporaries under names this listing no longer has
                names |= {e.key.rsplit("/", 1)[-1] for e in self.manifest.entries() if not e.key.startswith("?")}
        tempfiles.sweep(self.out_dir, names, recursive=True)
        if self.archive_path is not None:
            tempfiles.sweep(self.archive_path.parent, [self.archive_path.name])

    def record(self, outcome: Outcome) -> None:
        """Store one item's outcome in the manifest (committed at once).  An
        outcome with a staged (complete, not yet renamed) output is recorded
        done with its temporary name first and renamed then, so that each
        output is written exactly once even when the run is killed between."""
        assert self.manifest is not None, "enter the job first"
        item = outcome.item
        staged = outcome.staged
        try:
            with _recording(self.manifest):
                self.manifest.mark(item.key, outcome.state, reason=outcome.reason, output=outcome.output,
                                   temp=staged.path.name if staged is not None else None,
                                   made_with=self._made_with(item.key) if outcome.state == DONE else None,
                                   written=_identity_of(outcome, staged, self.out_dir),
                                   replaces=getattr(item, "replaces", None))
        except BaseException:
            if staged is not None:
                staged.discard()
            raise
        if staged is not None:
            try:
                staged.commit(replaces_only(getattr(item, "replaces", None)))
            except OSError as exc:
                error = OutputError(f"{staged.final}: cannot write ({exc.strerror or exc})")
                if not is_item_error(exc):  # the location's fault, not the item's: it stays to do
                    with _recording(self.manifest):
                        self.manifest.reset(item.key)
                    raise error from exc
                outcome = dataclasses.replace(outcome, state=FAILED, reason=str(error), output=None, staged=None)
                with _recording(self.manifest):
                    self.manifest.mark(item.key, FAILED, reason=outcome.reason)
        if outcome.state == DONE:
            self.done_now += 1
            self.dropped_alpha += outcome.dropped_alpha
        else:
            log.info("%s %s: %s", outcome.state, item.label, outcome.reason)

    def finish(self, *, engine_s: float = 0.0) -> JobReport:
        """Write the report, pack the archive if asked for; the job's :class:`~streamcolor.items.JobReport`.

        ``engine_s``: time spent inside engine calls, for the report's figures."""
        assert self.manifest is not None, "enter the job first"
        # Every writer has finished now; a worker killed mid-write (a Ray actor) may have left its temporary file.
        self._sweep()
        keys = {it.key for it in self.items}
        with _recording(self.manifest):
            self.manifest.renamed_all()  # every staged output of this run is renamed or discarded by now
            counts = self.manifest.counts(keys)
            typed = {os.path.abspath(p): str(p) for p in self.paths}  # (the report names sources as given)
            problems = [Problem(e.state, typed.get(e.source, e.source), e.member, e.reason or "")
                        for e in self.manifest.entries((SKIPPED, FAILED), keys)]
            # the report file is OUT's: it keeps what an earlier job of other sources into OUT recorded
            # (a second job's run replaced the first's list, which was then lost)
            mine = {os.path.realpath(p) for p in self.paths}
            others = [Problem(e.state, e.source, e.member, e.reason or "")
                      for e in self.manifest.entries((SKIPPED, FAILED))
                      if e.key not in keys and os.path.realpath(e.source) not in mine]
            done = {e.output or e.key: self._archive_names.get(e.key, e.output or e.key)
                    for e in self.manifest.entries((DONE,), keys)}
        with _recording(self.manifest):
            name = _report_name(self.out_dir, self.manifest)
            report = image_io.write_atomic(self.out_dir / name, problems_csv(problems + others))
            self.manifest.set_meta(REPORT_META, json.dumps({"name": name, "file": file_identity(report)}))
        if self.dropped_alpha:
            log.warning("%d output(s) lost their transparency: JPEG and BMP have none (--format png, webp or tiff keeps it)",
                        self.dropped_alpha)
        packed = None
        if self.archive_kind and self.archive_path is not None:
            with _recording(self.manifest):
                # checked again (nothing put there meanwhile); the job's own earlier archive may be replaced
                found = _check_packed_target(self.archive_path, self.manifest, self.paths)
                records = _packed_records(self.manifest)
                contents = _contents_id(self.out_dir, done)
                earlier = records.get(os.path.abspath(self.archive_path), {})
                if found is not None and earlier.get("contents") == contents:
                    # what it would hold is what it holds (a rerun with nothing new): a 400-photo .tar.xz took a minute
                    log.info("%s: its outputs are unchanged since it was packed; not packed again", self.archive_path)
                    packed = self.archive_path
                else:
                    packed = pack_outputs(self.out_dir, done, self.archive_path, self.archive_kind,
                                          replace=lambda p: found is not None and _file_identity(p) == found)
                records[os.path.abspath(packed)] = {"file": _file_identity(packed), "sources": _source_ids(self.paths),
                                                    "contents": contents}
                self.manifest.set_meta(PACKED_META, json.dumps(records))
        return JobReport(output=self.out_dir, report=report, total=len(self.items), done=counts[DONE],
                         skipped=counts[SKIPPED], failed=counts[FAILED], done_now=self.done_now,
                         elapsed_s=time.perf_counter() - self.started, engine_s=engine_s, problems=problems,
                         archive=packed)


def _contents_id(out_dir: Path, names: Mapping[str, str]) -> str:
    """What a packed archive of ``names`` ({output path: name in the archive}) holds: each output's
    name there and its file as it is now (inode, size, modification time), hashed."""
    h = hashlib.sha256()
    for output, name in sorted(names.items()):
        h.update(f"{output}\0{name}\0{file_identity(out_dir / output)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _written_report(manifest: Manifest) -> dict:
    """{"name", "file"} of the report the job wrote last, or {} (none yet, or an earlier version's job)."""
    try:
        return json.loads(manifest.get_meta(REPORT_META) or "{}")
    except ValueError:
        return {}


def _report_name(out_dir: Path, manifest: Manifest) -> str:
    """The report's name in OUT: :data:`REPORT_FILENAME`, unless a file is there that this job did not
    write (a spreadsheet of the user's by that name, or the report edited since), which is kept: then
    ``streamcolor-report~2.csv``...  A report of an earlier version's job (no record) is known by its
    header line."""
    last = _written_report(manifest)
    header = problems_csv([]).splitlines()[0]
    name, n = REPORT_FILENAME, 1
    while os.path.lexists(out_dir / name):
        path = out_dir / name
        if last.get("name") == name and last.get("file") == file_identity(path):
            break
        if not last and name == REPORT_FILENAME and path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                if fh.readline().rstrip(b"\r\n") == header:
                    break
        n += 1
        name = numbered(REPORT_FILENAME, n)
    if name != REPORT_FILENAME:
        log.warning("%s is not a report this job wrote (a file of yours, or changed since); it is kept and the "
                    "report is written as %s", out_dir / REPORT_FILENAME, name)
    return name


def pack_outputs(out_dir: Path, outputs: Iterable[str] | Mapping[str, str], archive_path: Path, kind: str, *,
                 replace: tempfiles.Replace = True) -> Path:
    """Pack the given outputs (paths relative to ``out_dir``; or a mapping of such paths to
    their names in the archive) into ``archive_path`` (a temporary name, renamed into place
    at the end; ``replace``: what it may replace there, see :func:`tempfiles.move_into_place`)."""
    names = dict(outputs) if isinstance(outputs, Mapping) else {o: o for o in outputs}
    with image_io.atomic_output(archive_path, what="writing the archive", replace=replace) as tmp:
        archives.pack(out_dir, names, tmp, kind, name=archive_path.name)
    return archive_path


def _archive_names(listed: Sequence[Item], items: Sequence[Item]) -> dict[str, str]:
    """{output key: name in the packed archive} of the items that :func:`_keep_clear_of_others`
    gave another key (``items``, one for one with ``listed``): in the archive each keeps the name
    it was listed with, so that the archive mirrors its sources even where a file in OUT (the
    user's, or another job's output) made the job write it as ``name~2``.  A listed name that
    would be a folder of another listed name in the archive keeps its written name."""
    folders = {name_key(p.as_posix()) for it in listed if not it.refusal
               for p in PurePosixPath(it.key).parents if p.as_posix() != "."}
    return {it.key: first.key for first, it in zip(listed, items)
            if it.key != first.key and not it.refusal and name_key(first.key) not in folders}


def _source_ids(paths: Sequence[Path]) -> list[str]:
    """The sources of a job as its record of the packed archive keeps them (real paths, sorted)."""
    return sorted(os.path.realpath(p) for p in paths)


def _file_identity(path: Path) -> str | None:
    """What tells this very file from any other put at ``path`` later: its
    absolute path, device, inode, size and modification time (JSON)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return json.dumps({"path": os.path.abspath(path), "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                       "mtime_ns": st.st_mtime_ns}, sort_keys=True)


def _check_packed_target(archive_path: Path, manifest: Manifest | None, sources: Sequence[Path]) -> str | None:
    """OutputError when something is at ``archive_path`` that this job did not
    pack there itself (a user's file, a file changed since, or the archive a job
    of other sources packed into the same OUT): the packed archive is renamed
    onto its name, and it must never replace a file the user keeps.  The job's
    own archive from an earlier run (the same sources) is replaced: its identity
    is returned (None: nothing is there)."""
    if not os.path.lexists(archive_path):
        return None
    found = _file_identity(archive_path)
    record = _packed_records(manifest).get(os.path.abspath(archive_path), {})
    if found is not None and found == record.get("file"):
        packed_from = record.get("sources")
        if packed_from is None or packed_from == _source_ids(sources):  # (None: an earlier version's record)
            return found
        raise OutputError(f"{archive_path} exists and was packed from {', '.join(packed_from)}, not from "
                          f"{', '.join(str(p) for p in sources)}; it is kept.  Move it away or name another output")
    what = ("a folder" if archive_path.is_dir()
            else "a file this job has no record of packing (a file of yours, or the archive of a job whose "
                 "folder OUTPUT was removed)" if manifest is None
            else "not the archive this job packed (a file of yours, or one changed since)")
    raise OutputError(f"{archive_path} exists and is {what}; it is kept.  Move it away or name another "
                      "output (the packed archive is OUTPUT plus the archive's suffix)")


def _check_shared_work_folder(out_dir: Path, archive_path: Path, manifest: Manifest, sources: Sequence[Path]) -> None:
    """OutputError when OUT, the work folder of the archive being packed, already holds the work of an
    archive packed from other sources (``-o photos.zip`` for one source, then ``-o photos.tar`` for
    another: both work in ``photos/``).  Sharing it, the second job's outputs were renamed around the
    first's and its report replaced the first's; the same sources packed in another format still share it."""
    mine = _source_ids(sources)
    for path, record in _packed_records(manifest).items():
        theirs = record.get("sources")
        if path != os.path.abspath(archive_path) and theirs is not None and theirs != mine:
            raise OutputError(f"{out_dir} is the work folder of {path}, packed from {', '.join(theirs)}; this job's "
                              f"sources differ, so its archive needs a folder of its own: name another output "
                              f"(e.g. {out_dir.name}-2{archive_path.name[len(out_dir.name):]})")


def _claim_work_folder(archive_path: Path, manifest: Manifest, sources: Sequence[Path]) -> None:
    """Record, before any work, which sources this OUT packs into ``archive_path`` (no file yet), so
    that a job of other sources is refused here even when this one is stopped before it packs."""
    records = _packed_records(manifest)
    if os.path.abspath(archive_path) not in records:
        records[os.path.abspath(archive_path)] = {"file": None, "sources": _source_ids(sources)}
        manifest.set_meta(PACKED_META, json.dumps(records))


def _packed_records(manifest: Manifest | None) -> dict[str, dict]:
    """{absolute archive path: {"file": identity, "sources": [...]}} of the archives the job in OUT
    packed (``-o out.zip`` and ``-o out.tar.gz`` share OUT), or {}.  Earlier versions kept the last
    one only: {"file", "sources"}, or the identity alone (its sources not known)."""
    raw = manifest.get_meta(PACKED_META) if manifest is not None else None
    try:
        record = json.loads(raw or "{}")
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    if "path" in record:  # an identity alone (it names its path)
        record = {"file": raw}
    if "file" in record:
        try:
            path = json.loads(record["file"])["path"]
        except (ValueError, TypeError, KeyError):
            return {}
        return {path: record}
    return {k: v for k, v in record.items() if isinstance(v, dict)}


def _identity_of(outcome: Outcome, staged, out_dir: Path) -> str | None:
    """The identity of a done outcome's output file: its complete temporary file (renamed into place
    next), or the file itself when a worker wrote it in place (the Ray actors)."""
    if outcome.state != DONE:
        return None
    if staged is not None:
        return file_identity(staged.path)
    return file_identity(out_dir / (outcome.output or outcome.item.key))


def _source_paths(src: object) -> list[Path]:
    """The sources as paths: one path, or a list of them (TypeError naming anything else)."""
    items = [src] if isinstance(src, (str, os.PathLike)) else src
    if isinstance(items, (bytes, bytearray)) or not isinstance(items, Iterable):
        raise TypeError(f"sources must be a path or a list of paths, got {type(src).__name__}")
    paths: list[Path] = []
    seen: set[str] = set()
    for s in items:
        if not isinstance(s, (str, os.PathLike)):
            raise TypeError(f"sources must be paths (str or os.PathLike), got {type(s).__name__} {s!r}")
        refuse_empty_path(s, "source")
        real = os.path.realpath(s)
        if real in seen:  # (else it would be colorized twice, into OUT/<name>~2/)
            log.warning("%s: given more than once; colorized once", s)
            continue
        seen.add(real)
        paths.append(Path(s))
    return paths


def _output_layout(dst: Path, options: BatchOptions, *, folder: bool = False) -> tuple[Path, str | None, str | None]:
    """(output folder, archive kind or "same" or None, the archive's suffix as the name gave it).
    ``x.zip`` -> folder ``x`` + zip ``x.zip``; ``x.TGZ`` -> folder ``x`` + tar.gz ``x.TGZ``;
    with ``folder`` (the name was written ``x.zip/``): the folder ``x.zip``."""
    if folder:
        return dst, options.archive, None
    lower = dst.name.lower()
    for kind, suffixes in ARCHIVE_SUFFIXES.items():
        for suffix in suffixes:
            if lower.endswith(suffix) and len(lower) > len(suffix):
                if options.archive not in (None, "same", kind):
                    raise ValueError(f"{dst}: the output name says {kind}, but archive={options.archive!r}")
                return dst.with_name(dst.name[: -len(suffix)]), kind, dst.name[-len(suffix):]
    return dst, options.archive, None


def _check_overlap(sources: Sequence[Path], out_dir: Path, archive_path: Path | None) -> None:
    """ValueError when OUT and a source folder contain one another, or the packed
    archive would be a source archive: compared as files on disk (device and
    inode), so links, ``..`` and another case on a case-insensitive disk are
    caught too."""
    out_chain = _chain(out_dir)
    for src in sources:
        s = src.resolve()
        if os.path.isdir(s) and (_ident(s) in out_chain or _ident(out_dir) in _chain(s)):  # (False on OSError)
            if archive_path is not None and _ident(out_dir) == _ident(s):  # (-o photos.zip for photos/)
                stem, name = out_dir.name, archive_path.name  # (the archive's name is the folder's + its suffix)
                better = archive_path.with_name(f"{stem}-colour{name[len(stem):]}")
                raise ValueError(f"{archive_path.name} is packed from the folder {out_dir}, which is the source "
                                 f"folder {s}; name the archive otherwise, e.g. -o {better}")
            made = f" (the folder that {archive_path.name} is packed from)" if archive_path is not None else ""
            raise ValueError(f"the output folder {out_dir}{made} and the source folder {s} overlap; "
                             "choose an output outside the source")
        if archive_path is not None and (archive_path.resolve() == s
                                         or (_ident(archive_path) is not None and _ident(archive_path) == _ident(s))):
            raise ValueError(f"the packed output {archive_path} would replace the source archive; "
                             "choose another output name")


def _ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _chain(path: Path) -> set[tuple[int, int] | None]:
    """The identities of a path and of every folder above it that exists (as
    spelt, and with links resolved: ``link/..`` is not where it looks)."""
    out: set[tuple[int, int] | None] = set()
    for p in {Path(os.path.abspath(path)), Path(path).resolve()}:
        out |= {i for i in (_ident(q) for q in (p, *p.parents)) if i is not None}
    return out


@contextmanager
def exclusive_output(out_dir: Path):
    """Hold an exclusive lock on OUT for the run (another run into OUT, batch or collection, is refused)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the manifest still keeps state
        yield
        return
    try:
        (out_dir / JOB_DIR).mkdir(exist_ok=True)
        fh = open(out_dir / LOCK_FILENAME, "a+")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write here ({exc.strerror or exc})") from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise OutputError(f"{out_dir}: another streamcolor batch or collection is writing here (locked); "
                              "let it finish, or choose another output folder") from exc
        yield
    finally:
        fh.close()


@contextmanager
def _open_manifest(out_dir: Path):
    try:
        manifest = Manifest.open(out_dir)
    except sqlite3.Error as exc:
        # The advice: without its record the job cannot tell its own outputs from a user's files, so
        # a run after moving it away keeps every file there and writes new ones beside them (name~2).
        raise OutputError(f"{out_dir / JOB_DIR / MANIFEST_FILENAME}: cannot open the resume manifest ({exc}); "
                          "to colorize the inputs again, give a new -o folder (or move this manifest away: "
                          "the files already in the folder are then kept, and new outputs written beside "
                          "them under other names)") from exc
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


def _finish_renames(manifest: Manifest, out_dir: Path) -> None:
    """Outputs recorded done whose rename a killed run may not have made: rename
    the complete temporary file that is still there (the output is not written
    again), replacing only what that rename was to replace (the item's own earlier
    output, with ``--redo`` or a changed source), and forget the temporary names."""
    for e in manifest.pending_renames():
        final = out_dir / (e.output or e.key)
        tmp = final.parent / (e.temp or "")
        if e.temp and tmp.is_file() and not tmp.is_symlink():
            try:
                tempfiles.move_into_place(tmp, final, replace=replaces_only(e.replaces))
                log.info("finished the rename of %s (the run before was stopped just before it)", final)
            except OSError as exc:  # (a file there now that is not the job's: it stays, the item is done again)
                log.warning("%s: cannot finish its rename (%s); it is colorized again", final, exc.strerror or exc)
                tmp.unlink(missing_ok=True)
                manifest.reset(e.key)
        manifest.renamed(e.key)


def _same_source(e: Entry, item: Item) -> bool:
    """Whether a manifest row is about the same member of the same source as ``item``."""
    return e.member == item.member and os.path.realpath(e.source) == os.path.realpath(item.source)


def _keep_clear_of_others(items: list[Item], manifest: Manifest, out_dir: Path, *,
                          redo: bool = False) -> list[Item]:
    """The items with every output key that would replace a file this job did
    not write for that item changed to ``stem~N.suffix``: an output of another
    source done by an earlier run into the same folder (two zips of camera
    files named DSC0000.jpg), a file the manifest does not know (the
    user's), or an output of the job that changed since it was written (the
    user retouched it) when the item is to be colorized again (its source
    changed, or ``redo``).  The same listing always gets the same keys, so reruns resume.

    An item that an earlier run wrote under a numbered name (``p~2.jpg``: ``p.jpg`` was a
    file of yours then) keeps that name while its output there is the job's, even when the
    listing or OUT changed since (you moved your ``p.jpg`` away; a member named ``p~2.jpg``
    was added): outputs never move, and finished items are not colorized again."""
    sticky = _earlier_keys(items, manifest, out_dir, redo)
    sticky_keys = {name_key(k) for k in sticky.values()}
    used: set[str] = {name_key(it.key) for it in items} | sticky_keys
    renamed: list[tuple[str, Item]] = []  # (the key as listed, the item with its key as written)
    out: list[Item] = []
    folders: dict[str, str] = {}
    listed_folders = folder_keys(it.key for it in items if not it.refusal)
    for i, it in enumerate(items):
        if i in sticky:
            listed, it = it.key, _replacing(dataclasses.replace(it, key=sticky[i]), out_dir)
            renamed.append((listed, it))
            out.append(it)
            continue
        if not it.refusal and "/" in it.key:
            key = _clear_folder_path(it.key, out_dir, used, listed_folders, folders)
            if key != it.key:  # a folder of the key is a file in OUT (an earlier job's, or the user's)
                listed, it = it.key, dataclasses.replace(it, key=key)
                renamed.append((listed, it))
        if it.refusal or ((name_key(it.key) not in sticky_keys or _done_there(it, manifest, out_dir))
                          and _free_for(it.key, it, manifest, out_dir, redo)):
            out.append(_replacing(it, out_dir))
            continue
        own = manifest.get(it.key)
        if own is not None and _same_source(own, item=it):
            manifest.forget(it.key)  # its output there was changed by the user: theirs from now on
        p = PurePosixPath(it.key)
        n = 1
        while True:
            n += 1
            candidate = str(p.with_name(numbered(p.name, n)))
            if name_key(candidate) not in used and _free_for(candidate, it, manifest, out_dir, redo):
                break
        used.add(name_key(candidate))
        listed, it = it.key, _replacing(dataclasses.replace(it, key=candidate), out_dir)
        renamed.append((listed, it))
        out.append(it)
    # said as a warning when the renamed output is still to be written; those an earlier run wrote
    # under their new name (and said so then) are only logged, so that reruns do not repeat it
    for fresh, how in ((True, log.warning), (False, log.info)):
        pairs = [(a, it.key) for a, it in renamed if _still_to_write(it, manifest, redo) == fresh]
        if pairs:
            first = ", ".join(f"{a} -> {b}" for a, b in pairs[:3])
            how("%d output name(s) were taken by other files (another item's output, which stays where it was "
                "written; an earlier job's outputs; or your own files), so they are not replaced: %s %s%s", len(pairs),
                "written as" if fresh else "kept as written by an earlier run:", first, ", ..." if len(pairs) > 3 else "")
    return out


def _earlier_keys(items: Sequence[Item], manifest: Manifest, out_dir: Path, redo: bool) -> dict[int, str]:
    """{index: key} of the items that an earlier run gave a key other than the listing's, by a
    number only (same folder and suffix, ``p~2.jpg`` for ``p.jpg`` or the other way round), whose
    output there is still the job's own for them, as the job wrote it (or gone: then it is written
    there again).  Where several rows qualify (``--redo`` wrote ``p~3.jpg`` beside a retouched
    ``p~2.jpg``), the one changed last."""
    rows: dict[tuple[str, str], list[Entry]] = {}
    for e in manifest.entries():
        if not e.key.startswith("?"):
            rows.setdefault((e.source, e.member), []).append(e)
    if not rows:
        return {}
    out: dict[int, str] = {}
    for i, it in enumerate(items):
        if it.refusal:
            continue
        found = rows.get((os.path.abspath(it.source), it.member))
        if not found or any(e.key == it.key and e.state == DONE for e in found):  # (done under its listed key)
            continue
        fits = [e for e in found if _renumbered(e.key, it.key) and _same_source(e, it) and e.state == DONE
                and (not os.path.lexists(out_dir / e.key) or _as_written(e, out_dir / e.key))]
        if fits:
            out[i] = max(fits, key=lambda e: e.updated or 0.0).key
    return out


def _done_there(item: Item, manifest: Manifest, out_dir: Path) -> bool:
    """Whether the item's own finished output is at its listed key, as the job wrote it.  It keeps
    that key even when a key another item keeps is one name with it by :func:`name_key` (``café``
    in NFC and NFD): on this disk the two are two files already, written by a version that told
    them apart, and outputs never move."""
    e = manifest.get(item.key)
    path = out_dir / item.key
    return (e is not None and e.state == DONE and _same_source(e, item) and os.path.lexists(path)
            and _as_written(e, path))


def _renumbered(a: str, b: str) -> bool:
    """Whether two keys differ only by a ``~N`` on their stems (one folder, one suffix)."""
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    if pa.parent != pb.parent or pa.suffix.casefold() != pb.suffix.casefold():
        return False
    return re.sub(r"~\d+$", "", pa.stem) == re.sub(r"~\d+$", "", pb.stem)


def _replacing(item: Item, out_dir: Path) -> Item:
    """``item`` with what its output may replace (:attr:`Item.replaces`): the file now at its key,
    which :func:`_free_for` found to be the job's own for it (or nothing)."""
    if item.refusal:
        return item
    return dataclasses.replace(item, replaces=file_identity(out_dir / item.key))


def _still_to_write(item: Item, manifest: Manifest, redo: bool) -> bool:
    """Whether ``item``'s output is to be written in this run (not already done, as it is, by an earlier one)."""
    e = manifest.get(item.key)
    return not (e is not None and _same_source(e, item) and _stays_done(e, item, redo))


def _stays_done(e: Entry, item: Item, redo: bool) -> bool:
    """Whether ``item``'s own row ``e`` is a finished output that this run keeps as it is (the
    source unchanged since, no ``redo``)."""
    return e.state == DONE and e.stamp == item.stamp and not redo


def _clear_folder_path(key: str, out_dir: Path, used: set[str], listed_folders: set[str],
                       folders: dict[str, str]) -> str:
    """``key`` with each folder of it that is a file in OUT (``OUT/a.jpg`` when the key is
    ``a.jpg/b.jpg``) numbered (``a~2.jpg/b.jpg``), the same for every key in that folder
    (``folders``: folder as listed -> as written), and never onto a key of the job (``used``)
    nor onto another folder the job lists (``listed_folders``: a member ``a~2.jpg/b.jpg`` too)."""
    parts = key.split("/")
    for i in range(1, len(parts)):
        listed = "/".join(parts[:i])
        if listed in folders:
            continue
        parent = folders["/".join(parts[:i - 1])] + "/" if i > 1 else ""
        written, n = parent + parts[i - 1], 1
        while (_not_a_folder(out_dir / written) or name_key(written) in used
               or (written != listed and name_key(written) in listed_folders)):
            n += 1
            written = parent + numbered(parts[i - 1], n)
        folders[listed] = written
    return f"{folders['/'.join(parts[:-1])]}/{parts[-1]}"


def _not_a_folder(path: Path) -> bool:
    """Whether something other than a plain folder is at ``path``: a file, or a link (even to a
    folder: outputs are never written through a link)."""
    return os.path.lexists(path) and (os.path.islink(path) or not path.is_dir())


def _refuse_linked_folders(items: list[Item], out_dir: Path) -> list[Item]:
    """The items with those whose output would be written through a link inside OUT
    (``OUT/sub -> elsewhere``) refused, with the reason.  Why: such a link leads
    out of OUT, perhaps into a source folder, where each rerun would find the
    outputs as new inputs; every output stays inside OUT, as nothing else is
    written outside it.  Only folders that exist are looked at: those the job
    makes are plain folders."""
    linked: dict[str, bool] = {}

    def is_link(rel: str) -> bool:
        if rel not in linked:
            linked[rel] = os.path.islink(out_dir / rel)
        return linked[rel]

    out = []
    hits: dict[str, int] = {}
    for it in items:
        parents = PurePosixPath(it.key).parents
        hit = None if it.refusal else next(
            (str(d) for d in reversed(parents[:-1]) if is_link(str(d))), None)  # (parents[-1] is ".")
        if hit is not None:
            hits[hit] = hits.get(hit, 0) + 1
            it = dataclasses.replace(it, refusal=f"its output folder {out_dir.name}/{hit} is a link; outputs are "
                                     "never written through a link, which could lead out of the output folder "
                                     "(remove the link, or choose another output folder)")
        out.append(it)
    for folder, n in hits.items():
        log.warning("%s/%s is a link: its %d item(s) are not colorized (outputs are never written through a "
                    "link, which could lead out of the output folder)", out_dir, folder, n)
    return out


def _free_for(key: str, item: Item, manifest: Manifest, out_dir: Path, redo: bool = False) -> bool:
    """Whether ``item`` may have ``key``: nothing is there, or what is there is the job's own output
    as it wrote it (an earlier output of the item, or one the job wrote for a source item since gone
    and not done), or the item's own finished output that stays as it is (unchanged source, no ``redo``:
    nothing is written, even when the user retouched it)."""
    e = manifest.get(key)
    path = out_dir / key
    if not os.path.lexists(path):
        return True
    if e is None:
        return False
    if _same_source(e, item):
        return _stays_done(e, item, redo) or _as_written(e, path)
    return e.state != DONE and _as_written(e, path)


def _as_written(e: Entry, path: Path) -> bool:
    """Whether the file at ``path`` is ``e``'s output as the job wrote it.  A manifest of an
    earlier version did not record that: its done outputs are taken as written unless modified
    after the row was marked done (the file is written before that)."""
    if e.written is not None:
        return file_identity(path) == e.written
    if e.state != DONE:
        return False
    try:
        return e.updated is None or os.lstat(path).st_mtime <= e.updated + _CLOCK_SLACK_S
    except OSError:
        return False


#: Seconds by which a file's modification time may pass its row's time and still be the job's
#: (a worker on another machine writing it, with a clock a little ahead).
_CLOCK_SLACK_S = 2.0


__all__ = ["BatchJob", "BatchReport", "LOCK_FILENAME", "REPORT_FILENAME", "exclusive_output", "pack_outputs"]
