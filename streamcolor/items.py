"""Items of a job: the per-item path from bytes to a written output, and the job report.

One item is one encoded photo with an output *key* (its path relative to the
output, posix).  Its path::

    decode_item      bytes -> Prepared (streamcolor.colorize.prepare)         a bad file: an Outcome
    ShapeBatcher     batches of one render shape (streamcolor.colorize)
    predict          one engine call a batch; a failing batch retried item by item
    finish_item      render (upsample + compose + dtype), encode, write to a sink -> Outcome

:func:`colorize_items` runs the steps in a row for a list of items: the unit
of work of a Ray actor (``streamcolor.ray.ColorizeBatch``, for the actor
pool and the Ray Data job alike) and of :func:`streamcolor.archive.process_items`;
the threaded archive pipeline runs the same steps on its threads.  Each item
is on its own: a bad one becomes an :class:`Outcome` with a reason, never an
exception; only an output location that cannot be written raises OutputError.

:class:`JobReport` is the result of every job, plain or on Ray: counts,
reasons, and the CSV (:func:`problems_csv`) written as :data:`REPORT_FILENAME`.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from streamcolor import image_io, memory, tempfiles, ycbcr
from streamcolor.colorize import (ColorOptions, Prepared, ShapeBatcher, predict, prepare, render_prepared,
                                  thread_scratch)
from streamcolor.errors import InputError, ItemOutputError, MemberRefused, OutputError, one_line
from streamcolor.manifest import DONE, FAILED, SKIPPED, replaces_only

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: The report of skipped and failed items, written into the output at the end of every job.
REPORT_FILENAME = "streamcolor-report.csv"
#: The report's name, or the numbered one a job writes when a file of the user's has that name.
_REPORT_NAMES = re.compile(r"streamcolor-report(~[0-9]+)?\.csv")
#: Its columns.
REPORT_COLUMNS = ("state", "source", "member", "reason")
#: A write that fails with one of these is the item's own problem (its name); any other stops the job.
ITEM_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EILSEQ, errno.EINVAL,
                         errno.EFBIG})
#: Errors of the output location (every later output would fail too), whatever the error says of its item.
LOCATION_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
#: Names a job itself leaves in an output folder start with this (the ``.streamcolor/``
#: folder of manifest and lock; temporary names; older versions' manifest and lock).
JOB_FILE_PREFIX = ".streamcolor"
#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ItemLike(Protocol):
    """What the per-item path needs of an item."""

    key: str  # output path relative to the output (posix); its suffix picks the output format

    @property
    def label(self) -> str:  # how messages name the item
        ...


@dataclass(frozen=True)
class Named:
    """An item that is only its key (a row of a Ray batch); messages name it by the key.
    ``replaces``: as :attr:`streamcolor.archive.Item.replaces` (the one file its output may replace)."""

    key: str
    replaces: str | None = None

    @property
    def label(self) -> str:
        return self.key


@dataclass(frozen=True)
class Outcome:
    """What became of one item."""

    item: Any  # the ItemLike it is about
    state: str  # DONE, FAILED or SKIPPED
    reason: str | None = None
    output: str | None = None  # key written relative to the sink's root, when done and written
    data: bytes | None = field(default=None, repr=False)  # the encoded output, when done with no sink
    staged: Any = field(default=None, repr=False)  # a complete tempfiles.Staged still to be renamed (staging sinks)
    dropped_alpha: bool = False  # its transparency was dropped (a JPEG output): the job says so once, counted


# --------------------------------------------------------------------------- the steps


def decode_item(item: ItemLike, data: bytes, options: ColorOptions) -> Prepared:
    """Decode an item's bytes and prepare its network input (``options`` resolved).
    Raises InputError (corrupt, truncated, empty, not an image, over ``options.max_pixels``)."""
    return prepare(image_io.read_image(data, max_pixels=options.max_pixels, name=item.label), options, item=item)


def reason(exc: BaseException, item: ItemLike) -> str:
    """The error message without the item label it starts with (the report has its own column)."""
    msg = str(exc)
    return msg[len(item.label) + 2:] if msg.startswith(item.label + ": ") else msg


def outcome_of(item: ItemLike, exc: Exception) -> Outcome:
    """The outcome of an item whose reading or decoding raised ``exc``: skipped
    when a safety limit refused it, else failed, with the reason."""
    if isinstance(exc, InputError):
        return Outcome(item, SKIPPED if isinstance(exc, MemberRefused) else FAILED, reason(exc, item))
    return Outcome(item, FAILED, f"cannot decode ({type(exc).__name__}: {exc})")


def engine_failure(item: ItemLike, exc: Exception) -> Outcome:
    """The outcome of an item the engine failed on (alone in its batch)."""
    return Outcome(item, FAILED, f"engine error ({type(exc).__name__}: {exc})")


class Sink(Protocol):
    """Where finished outputs go: ``write(key, data)``; OutputError when it cannot."""

    def write(self, key: str, data: bytes) -> None:
        ...


class FolderSink:
    """Outputs written into a local folder, each atomically (a temporary name
    and a rename): a path holds nothing or a whole file.

    ``staging=True``: :func:`finish_item` only writes the complete temporary
    file (:meth:`stage`) and leaves the rename to whoever records the outcome
    (:meth:`streamcolor.archive.BatchJob.record`), which stores the temporary
    name first: so a run killed between the two renames it on the rerun
    instead of writing the output again.

    ``keep_others=True`` (a batch job's): an output replaces only the file its
    item says it may (``item.replaces``, its own earlier output); any other
    file there, even one that appeared after the job listed its outputs, is
    kept and the item fails with the reason."""

    def __init__(self, root: str | os.PathLike, *, staging: bool = False, keep_others: bool = False):
        self.root = Path(root)
        self.staging = staging
        self.keep_others = keep_others

    def write(self, key: str, data: bytes, *, replaces: str | None = None) -> None:
        """Write ``data`` as ``key``; with ``keep_others``, replacing only the file of identity ``replaces``."""
        image_io.write_atomic(self.root / key, data, replace=replaces_only(replaces) if self.keep_others else True)

    def stage(self, key: str, data: bytes):
        """The complete, locked temporary file of ``key`` (a tempfiles.Staged), not renamed yet."""
        return image_io.stage_bytes(self.root / key, data)


def finish_item(prep: Prepared, ab: np.ndarray, options: ColorOptions, sink: Sink | None = None) -> Outcome:
    """Render one item (a*b* upsampled onto its full-res L*, composed, in its
    source's dtype), encode it in its key's format and write it to ``sink``
    (None: the bytes are kept in the outcome's ``data``).

    Item-level problems (cannot encode, unusable name) come back as a FAILED
    outcome; a location problem (read-only, disk full, permission) raises
    OutputError, since every later item would fail the same way.
    """
    item = prep.item
    try:
        fmt = image_io.format_for(item.key)
        data = encode_prepared(prep, ab, fmt, options, label=item.key, warn_alpha=False)
        dropped = image_io.drops_transparency(prep.alpha, fmt)
    except Exception as exc:  # Pillow refuses e.g. WebP over 16383 px; each item on its own
        return Outcome(item, FAILED, f"cannot encode the output {item.key} ({type(exc).__name__}: {exc})")
    if sink is None:
        return Outcome(item, DONE, data=data, dropped_alpha=dropped)
    staged = None
    try:
        if getattr(sink, "staging", False):
            staged = sink.stage(item.key, data)  # type: ignore[attr-defined]
        elif isinstance(sink, FolderSink):
            sink.write(item.key, data, replaces=getattr(item, "replaces", None))
        else:
            sink.write(item.key, data)
    except OutputError as exc:
        if is_item_error(exc):
            return Outcome(item, FAILED, str(exc))
        raise
    return Outcome(item, DONE, output=item.key, staged=staged, dropped_alpha=dropped)


def encode_prepared(prep: Prepared, ab: np.ndarray, fmt: str, options: ColorOptions, *,
                    label: str | None = None, warn_alpha: bool = True) -> bytes:
    """A prepared image with its network a*b*, encoded as ``fmt``: a gray 8-bit photo into a JPEG
    straight from its Y'CbCr planes (:mod:`streamcolor.ycbcr`), anything else rendered to sRGB
    first.  The one place that picks the route, for a job's items and ``colorize_image``'s files
    alike.  ``label``: the output's name, for warnings (metadata that does not fit); the one when a
    JPEG drops transparency only with ``warn_alpha`` (a job counts them and says it once)."""
    if warn_alpha and label is not None and image_io.drops_transparency(prep.alpha, fmt):
        log.warning("%s: its transparency is dropped: %s has none (PNG, WebP and TIFF keep it)", label, fmt.upper())
    if ycbcr.takes_jpeg_planes(prep, fmt):
        planes = ycbcr.jpeg_planes(prep, ab, saturation=options.saturation)
        return image_io.encode_jpeg_planes(*planes, info=prep.info, quality=options.quality, label=label)
    # rendered into the thread's work array: it lives only until it is encoded just below
    rgb = render_prepared(prep, ab, saturation=options.saturation,
                          out=thread_scratch().take("rendered", (*prep.shape, 3), prep.dtype))
    return image_io.encode_image(rgb, fmt, alpha=prep.alpha, info=prep.info, quality=options.quality, label=label,
                                 warn=False)


def is_item_error(exc: BaseException) -> bool:
    """Whether a write error is the item's own (its name: too long, a folder in
    the way...) rather than the output location's (read-only, full)."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(exc, ItemOutputError):  # (unless the disk under it is full or read-only after all)
        return getattr(cause, "errno", None) not in LOCATION_ERRNOS
    return isinstance(cause, OSError) and cause.errno in ITEM_ERRNOS


def colorize_items(items: Sequence[tuple[ItemLike, bytes]], *, engine: "Engine", options: ColorOptions,
                   sink: Sink | None = None, batch_size: int = 8) -> list[Outcome]:
    """Decode, colorize, encode and write several items, one step after another.

    Parameters
    ----------
    items:
        (item, encoded bytes) pairs.
    options:
        Resolved for ``engine`` (:meth:`~streamcolor.colorize.ColorOptions.for_engine`).
    sink:
        Where outputs go (:class:`FolderSink`, or any object with ``write(key, data)``);
        None keeps each output's bytes in its outcome.

    Returns
    -------
    One :class:`Outcome` per item, in order.  Raises OutputError when the
    sink's location cannot be written.
    """
    outcomes: dict[int, Outcome] = {}
    index: dict[int, int] = {}
    batcher = ShapeBatcher(batch_size)
    held = 0  # estimated bytes of the decoded items the batcher holds

    def run_held() -> None:
        for batch in batcher.drain():
            for prep, ab in zip(batch, predict(batch, engine)):
                i = index[id(prep)]
                outcomes[i] = (engine_failure(prep.item, ab) if isinstance(ab, Exception)
                               else finish_item(prep, ab, options, sink))

    for i, (item, data) in enumerate(items):
        try:
            prep = decode_item(item, data, options)
        except Exception as exc:  # each item on its own
            outcomes[i] = outcome_of(item, exc)
            continue
        index[id(prep)] = i
        batcher.add(prep)
        held += memory.image_bytes(*prep.shape[::-1], wide=prep.dtype.itemsize > 1)
        if held >= options.memory_budget:  # big images: render what is held before decoding more
            run_held()
            held = 0
    run_held()
    return [outcomes[i] for i in range(len(items))]


# --------------------------------------------------------------------------- the job report


@dataclass(frozen=True)
class Problem:
    """A skipped or failed item, as the report lists it."""

    state: str  # SKIPPED or FAILED
    source: str  # the source folder, archive or URI
    member: str  # the name inside the source
    reason: str


def csv_cell(text: str) -> str:
    """A name or reason as a report cell: valid UTF-8 (bytes of a name that is
    not UTF-8 shown as ``\\xNN``), on one line with control characters escaped
    (``cat`` of the report cannot drive the terminal; :func:`~streamcolor.errors.one_line`),
    and never read as a formula by a spreadsheet (a leading ``= + - @`` gets a ``'`` before it)."""
    text = one_line(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def problems_csv(problems: Sequence[Problem]) -> bytes:
    """The report's CSV (:data:`REPORT_COLUMNS`, one row per problem), UTF-8;
    cells made safe by :func:`csv_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for p in problems:
        writer.writerow([p.state, csv_cell(p.source), csv_cell(p.member), csv_cell(p.reason or "")])
    return buf.getvalue().encode("utf-8")


def is_job_file(name: str) -> bool:
    """Whether a path (relative to an output root) is one a job leaves there
    (the report, the ``.streamcolor/`` folder, temporary names, an older
    version's manifest and lock) rather than an output or a source file."""
    parts = name.strip("/").split("/")
    last = parts[-1]
    return (parts[0] == JOB_FILE_PREFIX or (len(parts) == 1 and _REPORT_NAMES.fullmatch(last) is not None)
            or tempfiles.is_temp_name(last) or last.startswith((".streamcolor-manifest.sqlite", ".streamcolor.lock"))
            or (last.startswith(".") and last.endswith(".part")))


@dataclass
class JobReport:
    """The result of a job: :func:`streamcolor.colorize_archive`, its Ray twin
    and the Ray Data collection job.  Counts cover the whole job, items
    finished by earlier (interrupted) runs included."""

    output: Path | str  # the output folder (or URI)
    report: Path | str  # CSV of every skipped and failed item, with its reason
    total: int  # items listed (refused ones included)
    done: int
    skipped: int
    failed: int
    done_now: int  # items colorized by this run
    elapsed_s: float  # wall time of this run
    engine_s: float | None = None  # time this run spent inside engine calls (None: not measured)
    problems: list[Problem] = field(default_factory=list)  # the skipped and failed items
    archive: Path | None = None  # the packed archive, if asked for

    @property
    def ok(self) -> bool:
        """True when every item was colorized."""
        return self.skipped == 0 and self.failed == 0 and self.done == self.total

    @property
    def existing(self) -> int:
        """Items finished by earlier runs."""
        return self.done - self.done_now

    @property
    def items_per_s(self) -> float:
        """Items colorized per second of this run."""
        return self.done_now / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def engine_share(self) -> float:
        """Fraction of this run's wall time spent inside engine calls."""
        return (self.engine_s or 0.0) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        earlier = self.existing
        busy = f", engine busy {100 * self.engine_share:.0f}% of the time" if self.engine_s is not None else ""
        lines = [f"{self.done} ok{f' ({earlier} from an earlier run)' if earlier else ''}, "
                 f"{self.skipped} skipped, {self.failed} failed, of {self.total} items",
                 f"{self.done_now} colorized in {self.elapsed_s:.1f} s: {self.items_per_s:.2f} items/s{busy}",
                 f"output: {self.output}" + (f", archive: {self.archive}" if self.archive else "")]
        if self.problems:
            lines.append(f"skipped and failed items, with reasons: {self.report}")
        return "\n".join(lines)


__all__ = ["FolderSink", "ITEM_ERRNOS", "ItemLike", "JobReport", "Named", "Outcome", "Problem", "REPORT_COLUMNS",
           "REPORT_FILENAME", "Sink", "colorize_items", "decode_item", "engine_failure", "finish_item",
           "csv_cell", "is_item_error", "is_job_file", "outcome_of", "problems_csv", "reason"]
