"""What a batch job is: its options, its sources and its items with their safe output names.

Reading folders, zip and tar archives (and their safety checks) is
:mod:`streamcolor.engines.archives`, shared with the trainer; this module
opens sources through it, turns its errors into :class:`~streamcolor.InputError`,
and gives every member an output key that is unique in the job and can
never point outside the output folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from streamcolor import image_io, memory, tempfiles
from streamcolor.colorize import ColorOptions
from streamcolor.engines.lab import check_saturation
from streamcolor.engines import archives, lab
from streamcolor.engines.archives import ARCHIVE_SUFFIXES, Source, name_key, safe_member_path
from streamcolor.errors import InputError, MemberRefused
from streamcolor.items import REPORT_FILENAME
from streamcolor.manifest import FAILED, JOB_DIR, PENDING, SKIPPED, Entry
from streamcolor.outputs import NAME_MAX, claimants, fitted, numbered

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: Output format choices -> file suffix written.
OUTPUT_FORMATS: dict[str, str] = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}


#: Images per engine call where no engine is at hand to ask (see BatchOptions.batch_for).
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class BatchOptions:
    """How a batch job runs.  Override fields with ``dataclasses.replace``."""

    render_size: int | None = None  # network input, longer side; None: the model's recommendation
    saturation: float | None = None  # gain on predicted colour; None: the model's recommendation
    quality: int = 95  # JPEG/WebP quality of written files
    output_format: str = "same"  # "same" (keep each file's format) or one of OUTPUT_FORMATS
    archive: str | None = None  # also pack the finished folder: "same" (the sources' kind) or an ARCHIVE_SUFFIXES kind
    batch_size: int | None = None  # images per engine call; None: see batch_for
    workers: int = 0  # threads that decode and encode/write; 0: one per CPU core
    # worker processes for those steps instead of threads (each with its own GIL): for an engine so
    # fast (a GPU) that the GIL the threads share bounds the job; 0: threads.  From a script, call under
    # `if __name__ == "__main__":` (each worker imports the script first).  See colorize_archive
    processes: int = 0
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS  # refuse images with more pixels (decompression bombs)
    max_member_bytes: int = archives.Limits.max_member_bytes  # refuse files/members bigger than this, declared or read
    max_ratio: float = archives.Limits.max_ratio  # refuse zip members > 1 MiB that inflate more than this (zip bombs)
    max_members: int = archives.Limits.max_members  # entries listed of one source (each held in memory for the job)
    memory_budget: int = memory.DEFAULT_MEMORY_BUDGET  # bytes of images worked on at once (estimated; one may exceed it)
    redo: bool = False  # colorize again the items an earlier run finished (their outputs, the job's own, are replaced)

    def __post_init__(self) -> None:
        if self.output_format not in ("same", *OUTPUT_FORMATS):
            raise ValueError(f"output_format must be 'same' or one of {list(OUTPUT_FORMATS)}, "
                             f"got {self.output_format!r}")
        if self.archive is not None and self.archive not in ("same", *ARCHIVE_SUFFIXES):
            raise ValueError(f"archive must be None, 'same' or one of {list(ARCHIVE_SUFFIXES)}, got {self.archive!r}")
        lab.check_render_size(self.render_size)
        check_saturation(self.saturation)
        for name in ("batch_size", "max_pixels", "max_member_bytes", "max_members", "memory_budget"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.processes < 0:
            raise ValueError(f"processes must be >= 0, got {self.processes}")
        if self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be > 1, got {self.max_ratio}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {self.quality}")

    def batch_for(self, engine: "Engine | None" = None) -> int:
        """Images per engine call: ``batch_size`` when set, else the engine's
        ``preferred_batch_size`` (8 on a CPU, 64 on a GPU: a GPU at batch 8 spends most of
        each call outside the network), else :data:`DEFAULT_BATCH` (a Ray driver, which
        sizes chunks before any actor has loaded an engine)."""
        if self.batch_size is not None:
            return self.batch_size
        return engine.preferred_batch_size if engine is not None else DEFAULT_BATCH

    @property
    def limits(self) -> archives.Limits:
        """The reader's safety limits."""
        return archives.Limits(max_member_bytes=self.max_member_bytes, max_ratio=self.max_ratio,
                               max_members=self.max_members)

    def color_options(self, engine: "Engine") -> ColorOptions:
        """The per-image options, with the model's recommendations filled in."""
        return ColorOptions(render_size=self.render_size, saturation=self.saturation, max_pixels=self.max_pixels,
                            quality=self.quality, memory_budget=self.memory_budget).for_engine(engine)


@dataclass(frozen=True)
class Item:
    """One file of a source: what to read, where its output goes, or why it is refused.

    Picklable (plain fields), so it can be sent to a worker process or a Ray actor.
    """

    key: str  # output path relative to OUT (posix) -- unique in the job, the manifest key; "?..." when refused
    source: str  # the source folder or archive path, as given
    member: str  # name inside the source, as stored (for a folder: relative path)
    size: int  # bytes, uncompressed, as declared
    stamp: str  # change detector: "size:mtime_ns" (file), "size:crc" (zip), "size:mtime" (tar)
    kind: str = "folder"  # the source's kind: "folder", "zip", "tar", "tar.gz"...
    locator: int = -1  # zip: index in infolist(); tar: index in getmembers(); folder: unused
    refusal: str | None = None  # why it is not read at all (unsafe name, link, device, limits), or None
    refusal_state: str = SKIPPED  # manifest state of a refusal (FAILED for a source that breaks off)
    # the file at OUT/key that the output may replace (its manifest.file_identity): the item's own
    # earlier output as the job wrote it; None: none may be (any file there is kept)
    replaces: str | None = None

    @property
    def label(self) -> str:
        """How messages name the item: ``album.zip:dir/a.jpg`` or ``photos/dir/a.jpg``."""
        return archives.member_label(self.source, self.kind, self.member)

    def entry(self) -> Entry:
        """The manifest row this item starts as."""
        state = self.refusal_state if self.refusal else PENDING
        # the source's absolute path: a rerun from another folder (``../scans``) names the same source
        return Entry(self.key, os.path.abspath(self.source), self.member, self.stamp, state, self.refusal)


def open_source(path: str | os.PathLike, options: BatchOptions = BatchOptions()) -> Source:
    """Open a folder or archive for listing and reading (InputError if it is neither)."""
    try:
        return Source(path, options.limits)
    except archives.ArchiveError as exc:
        raise InputError(str(exc)) from exc


class UnreadableSource:
    """A source of a job of several that cannot be opened (missing, not an archive, a damaged zip):
    one failed item with the reason, so that the others are still colorized, the report names it,
    and a rerun tries it again.  Its name is the one it would have when readable, so its outputs go
    to the same ``OUT/<name>/`` once it is mended."""

    kind = "unreadable"
    backslashes = True  # (its one member has no name)

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason

    @property
    def name(self) -> str:
        return archives.source_name(self.path, archives.kind_by_name(self.path.name))

    def label(self, member: str) -> str:
        return self.path.name

    def members(self) -> list[archives.Member]:
        return [archives.Member("", 0, "?", refusal=self.reason, broken=True)]

    def read(self, member: str, locator: int = -1) -> bytes:
        raise archives.ArchiveError(self.reason)

    def close(self) -> None:
        pass


def read_item(source: Source, item: Item) -> bytes:
    """The bytes of ``item`` from its open ``source``.  InputError if it cannot be
    read; MemberRefused if it turns out bigger than ``max_member_bytes``."""
    try:
        return source.read(item.member, item.locator)
    except archives.MemberRefused as exc:
        raise MemberRefused(str(exc)) from exc
    except archives.ArchiveError as exc:
        raise InputError(str(exc)) from exc


def output_name(rel: str, output_format: str = "same") -> str:
    """Output path for a safe member path: the same name when its suffix is a
    format we write (and ``output_format`` is "same" or agrees), else the
    format's suffix (PNG for unwritable formats such as GIF)."""
    p = PurePosixPath(rel)
    suffix = p.suffix.lower()
    if output_format == "same":
        if suffix in image_io.supported_suffixes():
            return rel
        new = ".png"
    else:
        new = OUTPUT_FORMATS[output_format]
        if suffix in image_io.supported_suffixes() and image_io.format_for(p) == image_io.format_for("x" + new):
            return rel  # e.g. .JPEG kept for --format jpg
    out = PurePosixPath(str(p.with_suffix(new)) if p.suffix and p.stem else rel + new)
    if len(os.fsencode(out.name)) > NAME_MAX:  # the new suffix is longer (.jpg -> .webp): shorten the stem to fit
        out = out.with_name(fitted(out.name))
    return str(out)


def output_key(name: str, output_format: str = "same", *, backslashes: bool = True) -> tuple[str | None, str | None]:
    """A member name's output key: ``(key, None)``, or ``(None, reason)`` when
    the name is unsafe to write (see :func:`safe_member_path`, and for ``backslashes``)."""
    rel, unsafe = safe_member_path(name, backslashes=backslashes)
    if rel is None:
        return None, unsafe
    # a part over the filesystem's name limit (tar and zip allow any length) is shortened to fit,
    # rather than failing at the write after its folders were made
    rel = "/".join(fitted(p) if len(os.fsencode(p)) > NAME_MAX else p for p in rel.split("/"))
    return output_name(rel, output_format), None


def list_items(sources: Sequence[Source], options: BatchOptions = BatchOptions()) -> list[Item]:
    """Every item of a job, in order, each with a unique output key.

    One source: keys are the member paths.  Several: ``<source name>/<member
    path>`` (repeated source names get ``~2``, ``~3``...).  Two members that
    map to one output name (duplicate zip entries, ``a.png`` and ``a.gif``,
    or ``A.jpg`` and ``a.jpg``, one file on a case-insensitive disk) get
    ``~2``... on the later one's stem.  Names of the job's own files (the
    report, the ``.streamcolor/`` folder, temporary names) are never given to
    a member (:func:`clear_of_job_files`).  Refused members get a ``?`` key.

    A numbered name is never one that another member has as its own name
    (``photo~2.png`` listed later keeps ``photo~2.png``), and a member whose
    name is kept as it is wins its name over one whose name was converted
    (``--format png``: ``photo.png`` stays ``photo.png``, ``photo.jpg`` gets
    ``photo~2.png``), whatever the order they are listed in.
    """
    prefixes = _prefixes(sources)
    listed: list[tuple[Source, str, Any, str | None, str | None, bool]] = []
    left_out: list[str] = []
    for source, prefix in zip(sources, prefixes):
        for m in source.members():
            if not m.name.endswith("/") and image_io.not_an_image_name(m.name):
                left_out.append(source.label(m.name))
                continue
            key, unsafe = output_key(m.name, options.output_format, backslashes=source.backslashes)
            refusal = m.refusal or unsafe
            # its name as listed, not converted (x.gif's output x.png is not its own name: x.png's is)
            own = refusal is None and PurePosixPath(key).suffix == PurePosixPath(m.name).suffix
            listed.append((source, prefix, m, None if refusal else clear_of_job_files(prefix + key), refusal, own))
    warn_left_out(left_out)
    keeps = claimants([(key and name_key(key), own) for _, _, _, key, _, own in listed])
    reserved = {name_key(key) for _, _, _, key, _, _ in listed if key is not None}
    items: list[Item] = []
    taken: set[str] = set()
    folders = _Folders(folder_keys(key for _, _, _, key, _, _ in listed if key is not None))
    renamed: list[tuple[str, str]] = []
    for i, (source, prefix, m, key, refusal, _) in enumerate(listed):
        common = dict(source=str(source.path), member=m.name, size=m.size, stamp=m.stamp, kind=source.kind,
                      locator=m.locator)
        if key is None:
            state = FAILED if m.refusal and m.broken else SKIPPED
            items.append(Item(key=f"?{prefix}{m.locator}:{m.name}", refusal=refusal, refusal_state=state, **common))
            continue
        items.append(Item(key=folders.file_key(key, taken, reserved, claimed=i in keeps), **common))
        if items[-1].key != key:
            renamed.append((source.label(m.name), items[-1].key))
    _say_renamed(renamed)
    return items


def _say_renamed(renamed: Sequence[tuple[str, str]]) -> None:
    """One warning for the files of the sources whose outputs would have had one name (names that
    differ only in case or Unicode form, a file and a folder of one name, or suffixes that --format
    makes the same: x.gif, x.png -> x.png), and which output each got, at info level."""
    if not renamed:
        return
    log.warning("%d file(s) take a numbered output name, as their output would have another file's name (one that "
                "differs in case only, or whose suffix becomes the same: x.gif and x.png): %s%s", len(renamed),
                ", ".join(f"{a} -> {b}" for a, b in renamed[:3]),
                ", ... (-v lists them all)" if len(renamed) > 3 else "")
    for a, b in renamed:
        log.info("numbered output name: %s -> %s", a, b)


def warn_left_out(left_out: Sequence[str]) -> None:
    """One warning for the files a job leaves out as no images by their names
    (:func:`streamcolor.image_io.not_an_image_name`), each named at info level."""
    if not left_out:
        return
    videos = any(n.lower().endswith(image_io.VIDEO_SUFFIXES) for n in left_out)
    log.warning("%d file(s) left out: not images, by their names (%s%s)%s", len(left_out),
                ", ".join(left_out[:3]), ", ... (-v lists them all)" if len(left_out) > 3 else "",
                "; colorize videos with `streamcolor video`" if videos else "")
    for name in left_out:
        log.info("left out (not an image, by its name): %s", name)


class _Folders:
    """The folders of a job's output keys, so that a name is never both a file and a folder.

    An archive may hold ``a.jpg`` and ``a.jpg/b.jpg``; on disk one of the two
    cannot exist, so the later one is numbered: the folder (``a~2.jpg/b.jpg``,
    the same for every member in it) or the file, comparing names as
    :func:`unique_name` does."""

    def __init__(self, listed: set[str] = frozenset()) -> None:
        self.renamed: dict[str, str] = {}  # a folder as listed -> as written
        self.names: set[str] = set()  # folders as written (their name_key)
        self.listed = listed  # every folder of the listing (their name_key): a number never takes one

    def file_key(self, key: str, files: set[str], reserved: set[str] = frozenset(), *, claimed: bool = True) -> str:
        """``key`` with its folders and its name clear of the files and folders before it
        (``files``: the file keys so far, as :func:`name_key` gives them; the key is added), numbered
        when not ``claimed`` (another member keeps that name), a number never giving it
        a name in ``reserved`` (every member's own key, the same way)."""
        parts = key.split("/")
        done: list[str] = []
        for part in parts[:-1]:
            listed = "/".join([*done, part])  # (folders differing in case stay apart, as before)
            if listed not in self.renamed:
                written, n = "/".join([*done, part]), 1
                while name_key(written) in files or (n > 1 and (name_key(written) in reserved
                                                                   or name_key(written) in self.listed)):
                    n += 1
                    written = "/".join([*done, numbered(part, n)])
                self.renamed[listed] = written
                self.names.add(name_key(written))
            done = self.renamed[listed].split("/")
        key = unique_name("/".join([*done, parts[-1]]), files, reserved, claimed=claimed,
                          folders=self.names)  # (not onto a folder either)
        return key


def folder_keys(keys: Iterable[str]) -> set[str]:
    """The folders of output keys (``a/b`` and ``a`` of ``a/b/c.jpg``), as :func:`name_key` gives them."""
    return {name_key(p.as_posix()) for key in keys for p in PurePosixPath(key).parents if p.as_posix() != "."}


def clear_of_job_files(key: str) -> str:
    """``key`` with any part that a job's own files use renamed, so no member
    can block them: a top-level file or folder named like the report or the
    ``.streamcolor`` folder (in any case) gets ``~member`` added, and a file
    name of the temporary-name pattern gets ``~member`` on its stem."""
    parts = key.split("/")
    if name_key(parts[0]) in _JOB_NAMES:
        if len(parts) > 1:
            parts[0] += "~member"
        else:
            p = PurePosixPath(parts[0])
            parts[0] = f"{p.stem}~member{p.suffix}"
    if tempfiles.is_temp_name(parts[-1]):
        p = PurePosixPath(parts[-1])
        parts[-1] = f"{p.stem}~member{p.suffix}"
    return "/".join(parts)


#: Top-level names in OUT that belong to the job (their name_key).
_JOB_NAMES = frozenset({name_key(REPORT_FILENAME), name_key(JOB_DIR)})


def _prefixes(sources: Sequence[Source]) -> list[str]:
    """The folder of each source's outputs in OUT (none for one source): its name, numbered
    (``photos~2``) where names repeat.  Numbers go by the sources' absolute paths, not the order
    given, so that ``batch b/photos a/photos`` resumes what ``batch a/photos b/photos`` began."""
    if len(sources) == 1:
        return [""]
    names = []
    for s in sources:
        name, _ = safe_member_path(s.name)
        names.append(name.replace("/", "_") if name else "source")
    order = sorted(range(len(sources)), key=lambda i: os.path.abspath(sources[i].path))
    keeps = {order[j] for j in claimants([(name_key(names[i]), True) for i in order])}
    reserved = {name_key(n) for n in names}
    taken: set[str] = set()
    out = [""] * len(sources)
    for i in order:
        out[i] = unique_name(names[i], taken, reserved, claimed=i in keeps) + "/"
    return out


def unique_name(path: str, taken: set[str], reserved: set[str] = frozenset(), *, claimed: bool = True,
                folders: set[str] = frozenset()) -> str:
    """``path`` when it is not in ``taken`` (nor ``folders``: names of folders) and ``claimed``,
    else ``stem~N.suffix`` with the first N whose name is in none of ``taken``, ``folders`` and
    ``reserved`` (the names others keep, so a number never takes a later listed file's own name);
    compared as :func:`name_key` does (on a case-insensitive disk ``A.jpg`` and ``a.jpg`` are one
    file, on macOS also ``café`` in NFC and NFD).  Adds its key to ``taken``."""
    candidate, n = path, 1
    p = PurePosixPath(path)
    if claimed and name_key(candidate) not in taken and name_key(candidate) not in folders:
        taken.add(name_key(candidate))
        return candidate
    while name_key(candidate) in taken or name_key(candidate) in reserved or name_key(candidate) in folders:
        n += 1
        candidate = str(p.with_name(numbered(p.name, n)))
    taken.add(name_key(candidate))
    return candidate


__all__ = ["ARCHIVE_SUFFIXES", "BatchOptions", "Item", "OUTPUT_FORMATS", "Source", "list_items", "open_source",
           "clear_of_job_files", "folder_keys", "output_key", "output_name", "read_item", "safe_member_path",
           "unique_name"]
