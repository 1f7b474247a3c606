"""Folders, zip and tar archives of photos: ``colorize_archive``.

The only module that touches zip and tar.  A job colorizes every image of one
or more *sources* (a folder, searched recursively; a ``.zip``; a ``.tar``,
``.tar.gz``/``.tgz``, ``.tar.xz`` or ``.tar.bz2``) into an output folder
``OUT`` that mirrors the source tree.  With one source the tree goes straight
into ``OUT``; with several, each goes into ``OUT/<source name>/`` (the folder
name, or the archive name without its suffix; ``~2``, ``~3``... added to
repeated names).  On request the finished folder is also packed into
``OUT.zip`` / ``OUT.tar.gz``...

The job in four reusable pieces (the Ray actor pool uses the same ones):

* :func:`open_source` / :class:`Source` and :func:`list_items`: what is to be
  done, with each member's safe output name, or the reason it is refused;
* :func:`decode_item`, :func:`predict_batch`, :func:`finish_item` (and
  :func:`process_items`, the three in a row): decode one item's bytes, run
  the engine on a batch, compose, encode and write one output atomically;
  :func:`colorize_batch` is the pure array version;
* :class:`streamcolor.manifest.Manifest`: per-item state in SQLite, for resume;
* :class:`BatchJob`: the job around them (output layout, lock, listing
  synced with the manifest, report, packing);
* :func:`colorize_archive`: a job run through the streaming pipeline below.

Pipeline: a reader thread reads members one at a time, in listing order,
straight from the archive into memory (nothing is extracted to disk first)
and hands the bytes to a thread pool that decodes them and prepares the
network input.  The calling thread gathers prepared images into batches of
one render shape and runs the engine; the same pool composes, encodes and
writes the results.  OpenCV, Pillow, zlib and ONNX Runtime release the GIL,
so the stages overlap and use every core.  Queues are bounded, so memory
stays flat however big the archive.

Safety: member names are sanitized (backslashes are separators, ``.`` parts
dropped); absolute names and names with ``..`` are refused, so nothing is ever
written outside ``OUT``.  Links (symbolic and hard), devices, FIFOs and
encrypted members are refused with a reason and never read.  Declared sizes
and zip compression ratios are checked before a member is read, reads are
capped, and decoded images are held to ``max_pixels``.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import queue
import re
import sqlite3
import stat
import tarfile
import threading
import time
import zipfile
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from streamcolor import image_io
from streamcolor.colorize import (ColorOptions, batched, colorize_l, compose, default_engine, model_options,
                                  network_input, pixels_to_l, predict_ab, to_dtype, upsample_ab)
from streamcolor.errors import InputError, OutputError
from streamcolor.manifest import DONE, FAILED, FILENAME as MANIFEST_FILENAME, PENDING, SKIPPED, Entry, Manifest

if TYPE_CHECKING:
    from streamcolor.engines import Engine

log = logging.getLogger(__name__)

#: The report of skipped and failed items, written into OUT at the end of every run.
REPORT_FILENAME = "streamcolor-report.csv"
#: Lock file that keeps two runs from writing into the same OUT.
LOCK_FILENAME = ".streamcolor.lock"
#: Archive kinds read and written, and their file suffixes (the first is the one written).
ARCHIVE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "zip": (".zip",),
    "tar": (".tar",),
    "tar.gz": (".tar.gz", ".tgz"),
    "tar.xz": (".tar.xz", ".txz"),
    "tar.bz2": (".tar.bz2", ".tbz2", ".tbz"),
}
#: Output format choices -> file suffix written.
OUTPUT_FORMATS: dict[str, str] = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
#: Files that operating systems sprinkle into folders and zips; ignored, not reported.
_JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
#: The zip compression-ratio check applies to members bigger than this (tiny files may compress very well).
_RATIO_MIN_BYTES = 1 << 20
#: A write that fails with one of these is the item's own problem (its name); any other stops the batch.
_ITEM_ERRNOS = {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EILSEQ, errno.EINVAL}
_TEMP_RE = re.compile(r"^\..+\.part$")  # write_atomic's temporary names: .<name>.<random>.part


@dataclass(frozen=True)
class BatchOptions:
    """How a batch job runs.  Override fields with ``dataclasses.replace``."""

    render_size: int | None = None  # network input, longer side; None: the model's recommendation
    saturation: float | None = None  # gain on predicted colour; None: the model's recommendation
    quality: int = 95  # JPEG/WebP quality of written files
    output_format: str = "same"  # "same" (keep each file's format) or one of OUTPUT_FORMATS
    archive: str | None = None  # also pack the finished folder: "same" (the sources' kind) or an ARCHIVE_SUFFIXES kind
    batch_size: int = 8  # images per engine call
    workers: int = 0  # threads that decode and encode/write; 0: one per CPU core
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS  # refuse images with more pixels (decompression bombs)
    max_member_bytes: int = 512 << 20  # refuse files/members bigger than this, declared or actually read
    max_ratio: float = 200.0  # refuse zip members > 1 MiB that inflate more than this many times (zip bombs)

    def __post_init__(self) -> None:
        if self.output_format not in ("same", *OUTPUT_FORMATS):
            raise ValueError(f"output_format must be 'same' or one of {list(OUTPUT_FORMATS)}, "
                             f"got {self.output_format!r}")
        if self.archive is not None and self.archive not in ("same", *ARCHIVE_SUFFIXES):
            raise ValueError(f"archive must be None, 'same' or one of {list(ARCHIVE_SUFFIXES)}, got {self.archive!r}")
        for name in ("batch_size", "max_pixels", "max_member_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be > 1, got {self.max_ratio}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {self.quality}")

    def color_options(self, engine: "Engine") -> ColorOptions:
        """The per-image options, with the model's recommendations filled in."""
        return model_options(engine, render_size=self.render_size, saturation=self.saturation,
                             max_pixels=self.max_pixels, quality=self.quality)


# ---------------------------------------------------------------------------------------------
# Items: what a job has to do
# ---------------------------------------------------------------------------------------------


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

    @property
    def label(self) -> str:
        """How messages name the item: ``album.zip:dir/a.jpg`` or ``photos/dir/a.jpg``."""
        return f"{Path(self.source).name}{'/' if self.kind == 'folder' else ':'}{self.member}"

    def entry(self) -> Entry:
        """The manifest row this item starts as."""
        state = self.refusal_state if self.refusal else PENDING
        return Entry(self.key, self.source, self.member, self.stamp, state, self.refusal)


class MemberRefused(InputError):
    """A member is refused by a safety limit (recorded as skipped, not failed)."""


@dataclass(frozen=True)
class _Member:
    """A raw listing entry of a source, before output names are assigned."""

    name: str
    size: int
    stamp: str
    locator: int = -1
    refusal: str | None = None
    refusal_state: str = SKIPPED


def source_kind(path: str | os.PathLike) -> str:
    """"folder", "zip", "tar", "tar.gz", "tar.xz" or "tar.bz2"; InputError otherwise."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    name = path.name.lower()
    for kind, suffixes in ARCHIVE_SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if tarfile.is_tarfile(path):
            return {b"\x1f\x8b": "tar.gz", b"BZ": "tar.bz2", b"\xfd7": "tar.xz"}.get(magic[:2], "tar")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    raise InputError(f"{path}: not a folder, zip or tar archive (for single images use `streamcolor image`)")


def _size_refusal(size: int, options: BatchOptions) -> str | None:
    if size > options.max_member_bytes:
        return (f"{size:,} bytes is over the size limit of {options.max_member_bytes:,} "
                "(raise max_member_bytes / --max-member-size if the file is trusted)")
    return None


class Source:
    """One input of a batch job: a folder, a zip or a tar archive, kept open.

    :meth:`members` lists it once; :meth:`read` returns one member's bytes
    (from memory, capped at ``max_member_bytes``).  Reads of a compressed tar
    are cheapest in listing order (forward seeks only).  Not thread-safe: one
    thread reads (the pipeline's reader thread).
    """

    def __init__(self, path: str | os.PathLike, options: BatchOptions = BatchOptions()):
        self.path = Path(path)
        self.options = options
        self.kind = source_kind(self.path)
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._tar_members: list[tarfile.TarInfo] = []
        self._listed: list[_Member] | None = None
        try:
            if self.kind == "zip":
                self._zip = zipfile.ZipFile(self.path)
            elif self.kind != "folder":
                self._tar = tarfile.open(self.path, "r:*")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"{self.path}: cannot open as {self.kind} ({exc})") from exc

    @property
    def name(self) -> str:
        """The source's name without its archive suffix (the folder name for several sources)."""
        name = self.path.resolve().name
        if self.kind != "folder":
            lower = name.lower()
            for suffix in ARCHIVE_SUFFIXES[self.kind]:
                if lower.endswith(suffix):
                    return name[: -len(suffix)] or name
        return name or "source"

    def members(self) -> list[_Member]:
        """Every file of the source in a stable order (directories and OS junk left out)."""
        if self._listed is None:
            lister = {"folder": self._list_folder, "zip": self._list_zip}.get(self.kind, self._list_tar)
            self._listed = [m for m in lister() if not _is_junk(m.name)]
        return self._listed

    def _list_folder(self) -> Iterator[_Member]:
        root = self.path
        real_root = root.resolve()
        unreadable: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append, followlinks=False):
            dirnames.sort()
            here = Path(dirpath)
            for d in list(dirnames):
                if (here / d).is_symlink():
                    dirnames.remove(d)
                    rel = (here / d).relative_to(root).as_posix()
                    yield _Member(rel, 0, "link", refusal="symbolic link to a folder (not followed)")
            for fn in sorted(filenames):
                p = here / fn
                rel = p.relative_to(root).as_posix()
                try:
                    st = p.lstat()
                    if stat.S_ISLNK(st.st_mode):
                        target = p.resolve()
                        if not (target.is_relative_to(real_root) and target.is_file()):
                            yield _Member(rel, 0, "link", refusal=f"symbolic link to {os.readlink(p)!r} outside "
                                                                  "the source folder (not followed)")
                            continue
                        st = target.stat()
                except OSError as exc:
                    yield _Member(rel, 0, "?", refusal=f"cannot stat ({exc.strerror or exc})",
                                  refusal_state=FAILED)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    yield _Member(rel, 0, "special", refusal=f"not a regular file ({_file_type(st.st_mode)})")
                    continue
                yield _Member(rel, st.st_size, f"{st.st_size}:{st.st_mtime_ns}",
                              refusal=_size_refusal(st.st_size, self.options))
        for exc in unreadable:  # e.g. a sub-folder without read permission: its files are lost to this job
            rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?"
            yield _Member(rel + "/", 0, "?", refusal=f"cannot list this folder ({exc.strerror or exc})",
                          refusal_state=FAILED)

    def _list_zip(self) -> Iterator[_Member]:
        assert self._zip is not None
        opts = self.options
        for i, info in enumerate(self._zip.infolist()):
            if info.is_dir():
                continue
            stamp = f"{info.file_size}:{info.CRC:08x}"
            mode = info.external_attr >> 16
            refusal = None
            if info.create_system == 3 and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                refusal = f"not a regular file ({_file_type(mode)}; not followed)"
            elif info.flag_bits & 0x1:
                refusal = "encrypted member (no password support)"
            elif (size_refusal := _size_refusal(info.file_size, opts)) is not None:
                refusal = size_refusal
            elif info.file_size > _RATIO_MIN_BYTES and info.file_size > opts.max_ratio * info.compress_size:
                ratio = info.file_size / max(info.compress_size, 1)
                refusal = (f"compression ratio {ratio:,.0f}:1 ({info.file_size:,} bytes from "
                           f"{info.compress_size:,}) is over the limit of {opts.max_ratio:g}:1 "
                           "(possible zip bomb; raise max_ratio / --max-ratio if the file is trusted)")
            yield _Member(info.filename, info.file_size, stamp, i, refusal)

    def _list_tar(self) -> Iterator[_Member]:
        assert self._tar is not None
        members = self._tar_members
        try:
            for m in self._tar:
                members.append(m)
                i = len(members) - 1
                if m.isdir():
                    continue
                stamp = f"{m.size}:{int(m.mtime)}"
                if m.issym():
                    yield _Member(m.name, 0, stamp, i, f"symbolic link to {m.linkname!r} (not followed)")
                elif m.islnk():
                    yield _Member(m.name, 0, stamp, i, f"hard link to {m.linkname!r} (not followed)")
                elif not m.isreg():
                    kind = ("character device" if m.ischr() else "block device" if m.isblk()
                            else "FIFO" if m.isfifo() else f"member type {m.type!r}")
                    yield _Member(m.name, 0, stamp, i, f"not a regular file ({kind})")
                else:
                    yield _Member(m.name, m.size, stamp, i, _size_refusal(m.size, self.options))
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            # A truncated or corrupt archive: keep what was listed, report where it broke off.
            yield _Member(f"(after member {len(members)})", 0, "broken", -1,
                          f"archive is truncated or corrupt here; later members are lost ({exc})", FAILED)

    def read(self, item: Item) -> bytes:
        """The member's bytes.  InputError if it cannot be read; MemberRefused
        if it turns out bigger than ``max_member_bytes``."""
        cap = self.options.max_member_bytes
        try:
            if self.kind == "folder":
                with open(self.path / item.member, "rb") as fh:
                    data = fh.read(cap + 1)
            elif self.kind == "zip":
                assert self._zip is not None
                with self._zip.open(self._zip.infolist()[item.locator]) as fh:
                    data = fh.read(cap + 1)
            else:
                assert self._tar is not None
                if not self._tar_members:
                    self.members()
                fh = self._tar.extractfile(self._tar_members[item.locator])
                if fh is None:
                    raise InputError(f"{item.label}: not a regular file")
                with fh:
                    data = fh.read(cap + 1)
        except InputError:
            raise
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, NotImplementedError,
                RuntimeError) as exc:
            # CRC mismatch, truncated data, unsupported compression, permission denied...
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise InputError(f"{item.label}: cannot read ({detail})") from exc
        except Exception as exc:  # zlib.error, lzma.LZMAError, bz2 errors
            raise InputError(f"{item.label}: cannot read ({type(exc).__name__}: {exc})") from exc
        if len(data) > cap:
            raise MemberRefused(f"{item.label}: more than {cap:,} bytes (size limit; raise max_member_bytes / "
                                "--max-member-size if the file is trusted)")
        return data

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(path: str | os.PathLike, options: BatchOptions = BatchOptions()) -> Source:
    """Open a folder or archive for listing and reading (InputError if it is neither)."""
    return Source(path, options)


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return f"file type {stat.S_IFMT(mode):o}"


def _is_junk(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return parts[-1] in _JUNK_NAMES or parts[-1].startswith("._") or "__MACOSX" in parts[:-1]


def safe_member_path(name: str) -> tuple[str | None, str | None]:
    """A member name as a safe relative posix path: ``(path, None)``, or
    ``(None, reason)`` when it is absolute, climbs out with ``..`` or is empty.

    Backslashes count as separators (zips made on Windows); ``.`` and empty
    parts are dropped.
    """
    n = name.replace("\\", "/")
    if "\x00" in n:
        return None, "member name contains a NUL byte"
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return None, "absolute member path (refused: it would write outside the output folder)"
    parts = [p for p in n.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "member path contains '..' (refused: it would write outside the output folder)"
    if not parts:
        return None, "empty member name"
    return "/".join(parts), None


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
    return str(p.with_suffix(new)) if p.suffix and p.stem else rel + new


def list_items(sources: Sequence[Source], options: BatchOptions = BatchOptions()) -> list[Item]:
    """Every item of a job, in order, each with a unique output key.

    One source: keys are the member paths.  Several: ``<source name>/<member
    path>`` (repeated source names get ``~2``, ``~3``...).  Two members that
    map to one output name (duplicate zip entries, ``a.png`` and ``a.gif``)
    get ``~2``... on the later one's stem.  Refused members get a ``?`` key.
    """
    prefixes = _prefixes(sources)
    items: list[Item] = []
    taken: set[str] = set()
    for source, prefix in zip(sources, prefixes):
        for m in source.members():
            common = dict(source=str(source.path), member=m.name, size=m.size, stamp=m.stamp, kind=source.kind,
                          locator=m.locator)
            rel, unsafe = safe_member_path(m.name)
            refusal = m.refusal or unsafe
            if refusal is not None:
                items.append(Item(key=f"?{prefix}{m.locator}:{m.name}", refusal=refusal,
                                  refusal_state=m.refusal_state if m.refusal else SKIPPED, **common))
                continue
            key = unique_name(prefix + output_name(rel, options.output_format), taken)
            items.append(Item(key=key, **common))
    return items


def _prefixes(sources: Sequence[Source]) -> list[str]:
    if len(sources) == 1:
        return [""]
    taken: set[str] = set()
    out = []
    for s in sources:
        name, _ = safe_member_path(s.name)
        out.append(unique_name(name.replace("/", "_") if name else "source", taken) + "/")
    return out


def unique_name(path: str, taken: set[str]) -> str:
    """``path``, or ``stem~N.suffix`` with the first N that is not in ``taken``; adds it to ``taken``."""
    candidate, n = path, 1
    p = PurePosixPath(path)
    while candidate in taken:
        n += 1
        candidate = str(p.with_name(f"{p.stem}~{n}{p.suffix}"))
    taken.add(candidate)
    return candidate


# ---------------------------------------------------------------------------------------------
# Processing: decode -> engine -> compose/encode/write
# ---------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An item decoded and ready for the engine.

    ``l_full``: float32 (H, W) L* in [0, 100] at full resolution.
    ``net_in``: float32 (h, w, 1) scaled L in [-1, 1] at the render shape.
    """

    item: Item
    l_full: np.ndarray
    net_in: np.ndarray
    dtype: np.dtype  # of the source pixels (uint8 / uint16), kept for the output
    alpha: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # ICC profile, EXIF, DPI to carry over
    format: str | None = None  # the source's format name, e.g. "JPEG"


@dataclass(frozen=True)
class Outcome:
    """What became of one item."""

    item: Item
    state: str  # DONE, FAILED or SKIPPED
    reason: str | None = None
    output: str | None = None  # path relative to OUT, when done


def decode_item(item: Item, data: bytes, options: ColorOptions) -> Prepared:
    """Decode an item's bytes and prepare its network input.  Raises InputError
    (corrupt, truncated, empty, not an image, over ``options.max_pixels``)."""
    decoded = image_io.read_image(data, max_pixels=options.max_pixels, name=item.label)
    l_full = pixels_to_l(decoded.pixels)
    return Prepared(item, l_full, network_input(l_full, options.render_size, options.size_multiple), decoded.pixels.dtype,
                    decoded.alpha, decoded.info, decoded.format)


def predict_batch(batch: Sequence[Prepared], engine: "Engine") -> list[np.ndarray]:
    """One engine call for prepared items of one render shape -> a*b* (h, w, 2) in [-1, 1] each."""
    return list(predict_ab(np.stack([p.net_in for p in batch]), engine))


def colorize_batch(decoded: Sequence[image_io.Decoded], *, engine: "Engine",
                   options: ColorOptions = ColorOptions(), batch_size: int = 16) -> list[np.ndarray]:
    """Colorize decoded images -> RGB (H, W, 3) of each source's dtype (uint8/uint16).

    Pure arrays in, arrays out (no files); batched by render shape.
    """
    l_fulls = [pixels_to_l(d.pixels) for d in decoded]
    rgbs = colorize_l(l_fulls, engine=engine, options=options, batch_size=batch_size)
    return [to_dtype(rgb, d.pixels.dtype) for rgb, d in zip(rgbs, decoded)]


def finish_item(prepared: Prepared, ab: np.ndarray, out_dir: str | os.PathLike, options: ColorOptions) -> Outcome:
    """Compose full-res L* with upsampled a*b*, encode in the output's format and
    write it atomically to ``out_dir / item.key``.

    Item-level problems (cannot encode, unusable name) come back as a FAILED
    outcome; a location problem (read-only, disk full, permission) raises
    OutputError, since every later item would fail the same way.
    """
    item = prepared.item
    path = Path(out_dir) / item.key
    try:
        h, w = prepared.l_full.shape
        rgb = to_dtype(compose(prepared.l_full, upsample_ab(ab, h, w, options.saturation)), prepared.dtype)
        fmt = image_io.format_for(path)
        info = prepared.info
        data = image_io.encode_image(rgb, fmt, alpha=prepared.alpha, info=info, quality=options.quality)
    except Exception as exc:  # Pillow refuses e.g. WebP over 16383 px; each item on its own
        return Outcome(item, FAILED, f"cannot encode the output {item.key} ({type(exc).__name__}: {exc})")
    try:
        image_io.write_atomic(path, data)
    except OutputError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno in _ITEM_ERRNOS:
            return Outcome(item, FAILED, str(exc))
        raise
    return Outcome(item, DONE, output=item.key)


def process_items(items: Sequence[tuple[Item, bytes]], *, engine: "Engine", out_dir: str | os.PathLike,
                  options: ColorOptions, batch_size: int = 8) -> list[Outcome]:
    """Decode, colorize, encode and write several items, one after another
    (the steps of :func:`colorize_archive` without its threads; a Ray actor's
    unit of work).  Returns one outcome per item, in order.  Raises OutputError
    when the output location cannot be written."""
    outcomes: dict[int, Outcome] = {}
    groups: dict[tuple, list[tuple[int, Prepared]]] = {}
    for i, (item, data) in enumerate(items):
        if item.refusal:
            outcomes[i] = Outcome(item, item.refusal_state, item.refusal)
            continue
        try:
            prep = decode_item(item, data, options)
        except Exception as exc:  # each item on its own
            outcomes[i] = _decode_failure(item, exc)
            continue
        groups.setdefault(prep.net_in.shape, []).append((i, prep))
    for group in groups.values():
        for chunk in batched(group, batch_size):
            for (i, prep), result in zip(chunk, _predict_or_fail([p for _, p in chunk], engine)):
                outcomes[i] = (result if isinstance(result, Outcome)
                               else finish_item(prep, result, out_dir, options))
    return [outcomes[i] for i in range(len(items))]


def _predict_or_fail(batch: list[Prepared], engine: "Engine") -> list[np.ndarray | Outcome]:
    """predict_batch; if the engine fails on a batch, retry its items one by one
    so only the item that causes it fails."""
    try:
        return list(predict_batch(batch, engine))
    except Exception as exc:
        if len(batch) == 1:
            return [Outcome(batch[0].item, FAILED, f"engine error ({type(exc).__name__}: {exc})")]
        return [r for p in batch for r in _predict_or_fail([p], engine)]


def _decode_failure(item: Item, exc: Exception) -> Outcome:
    """The outcome of an item whose reading or decoding raised ``exc``."""
    if isinstance(exc, InputError):
        return Outcome(item, SKIPPED if isinstance(exc, MemberRefused) else FAILED, _reason(exc, item))
    return Outcome(item, FAILED, f"cannot decode ({type(exc).__name__}: {exc})")


def _reason(exc: Exception, item: Item) -> str:
    """The error message without the item label it starts with (the report has its own column)."""
    msg = str(exc)
    return msg[len(item.label) + 2:] if msg.startswith(item.label + ": ") else msg


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------


@dataclass
class BatchReport:
    """The result of :func:`colorize_archive`.  Counts cover the whole job,
    items finished by earlier (interrupted) runs included."""

    output: Path  # the output folder
    report: Path  # CSV of every skipped and failed item, with its reason
    total: int  # items listed (refused ones included)
    done: int
    skipped: int
    failed: int
    done_now: int  # items colorized by this run
    elapsed_s: float  # wall time of this run
    engine_s: float  # time this run spent inside engine calls
    problems: list[Entry] = field(default_factory=list)  # the skipped and failed items
    archive: Path | None = None  # the packed archive, if asked for

    @property
    def ok(self) -> bool:
        """True when every item was colorized."""
        return self.skipped == 0 and self.failed == 0 and self.done == self.total

    @property
    def items_per_s(self) -> float:
        """Items colorized per second of this run."""
        return self.done_now / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def engine_share(self) -> float:
        """Fraction of this run's wall time spent inside engine calls."""
        return self.engine_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        earlier = self.done - self.done_now
        lines = [f"{self.done} ok{f' ({earlier} from an earlier run)' if earlier else ''}, "
                 f"{self.skipped} skipped, {self.failed} failed, of {self.total} items",
                 f"{self.done_now} colorized in {self.elapsed_s:.1f} s: {self.items_per_s:.2f} items/s, "
                 f"engine busy {100 * self.engine_share:.0f}% of the time",
                 f"output: {self.output}" + (f", archive: {self.archive}" if self.archive else "")]
        if self.problems:
            lines.append(f"skipped and failed items, with reasons: {self.report}")
        return "\n".join(lines)


def colorize_archive(src: str | os.PathLike | Sequence[str | os.PathLike], dst: str | os.PathLike, *,
                     engine: "Engine | None" = None, options: BatchOptions = BatchOptions(),
                     progress: bool = True) -> BatchReport:
    """Colorize every image of a folder, zip or tar archive into a folder tree.

    Resumable: run the same call again after an interruption (even SIGKILL)
    and it finishes what is left; finished outputs are not redone.

    Parameters
    ----------
    src:
        A folder (searched recursively), a ``.zip``, or a ``.tar``/``.tar.gz``/
        ``.tgz``/``.tar.xz``/``.tar.bz2`` -- or a list of them.
    dst:
        The output folder, mirroring the source tree (``dst/<source name>/...``
        for several sources).  It also holds the resume manifest
        (``.streamcolor-manifest.sqlite``) and the report
        (``streamcolor-report.csv``).  A name ending in an archive suffix
        (``album-colour.zip``) means: fill the folder ``album-colour/``, then
        pack it into ``album-colour.zip``.
    engine:
        A loaded engine; the shared default model when None.
    options:
        Output format, batching, threads and safety limits: :class:`BatchOptions`.
    progress:
        Show a tqdm bar over items.

    Returns
    -------
    A :class:`BatchReport`.  Bad items (corrupt, truncated, empty, not an
    image, unsafe, over a limit) are skipped and listed, never fatal.

    Raises
    ------
    InputError: a source is missing or is not a folder or a readable archive.
    OutputError: the output location cannot be written (read-only, full);
        every item finished before that is kept and recorded.
    ValueError: the output would overlap a source.
    """
    with BatchJob(src, dst, options=options) as job:
        engine = engine or default_engine()
        color = options.color_options(engine)
        with tqdm(total=len(job.items), initial=job.settled, unit="img", desc="colorize", disable=not progress,
                  dynamic_ncols=True) as bar:
            pipeline = _Pipeline(job, engine, color, bar)
            pipeline.run()
        return job.finish(engine_s=pipeline.engine_s)


class BatchJob:
    """Everything around the colorizing of a batch, shared by the threaded
    pipeline and the Ray actor pool.

    Constructing it checks the sources and the output layout.  Entering it
    creates and locks ``OUT``, opens the manifest, removes temporary files a
    killed run left, lists every source and registers the listing: then
    :attr:`items` is the whole job and :attr:`todo` what is left to do.
    :meth:`record` stores one :class:`Outcome` (from the thread that entered
    the job); :meth:`finish` writes the report, packs the archive if asked for
    and returns the :class:`BatchReport`.

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

    def finish(self, *, engine_s: float = 0.0) -> BatchReport:
        """Write the report, pack the archive if asked for; the job's :class:`BatchReport`.

        ``engine_s``: time spent inside engine calls, for the report's figures."""
        assert self.manifest is not None, "enter the job first"
        # Every writer has finished now; a worker killed mid-write (a Ray actor) may have left its temporary file.
        _remove_stale_temps(self.out_dir, None)
        keys = {it.key for it in self.items}
        with _recording(self.manifest):
            counts = self.manifest.counts(keys)
            problems = list(self.manifest.entries((SKIPPED, FAILED), keys))
            done = [e.output or e.key for e in self.manifest.entries((DONE,), keys)]
        report = _write_report(self.out_dir, problems)
        packed = None
        if self.archive_kind and self.archive_path is not None:
            packed = pack_outputs(self.out_dir, done, self.archive_path, self.archive_kind)
        return BatchReport(output=self.out_dir, report=report, total=len(self.items), done=counts[DONE],
                           skipped=counts[SKIPPED], failed=counts[FAILED], done_now=self.done_now,
                           elapsed_s=time.perf_counter() - self.started, engine_s=engine_s, problems=problems,
                           archive=packed)


class _Pipeline:
    """reader thread -> pool (decode) -> calling thread (engine) -> pool (compose, encode, write).

    The manifest and the progress bar are touched only from the calling thread.
    """

    def __init__(self, job: BatchJob, engine: "Engine", color: ColorOptions, bar):
        self.job, self.engine, self.color, self.bar = job, engine, color, bar
        self.sources = job.source_by_path
        self.options = job.options
        self.workers = self.options.workers or os.cpu_count() or 1
        self.depth = 2 * self.options.batch_size + self.workers  # decoded items waiting for the engine, at most
        self.engine_s = 0.0
        self._stop = threading.Event()

    # -- the reader thread ---------------------------------------------------------------------

    def _read_all(self, todo: Sequence[Item], pool: ThreadPoolExecutor, q: queue.Queue) -> None:
        try:
            for item in todo:
                if self._stop.is_set():
                    return
                try:
                    data = self.sources[item.source].read(item)
                except InputError as exc:
                    fut: Future = Future()
                    fut.set_exception(exc)
                else:
                    fut = pool.submit(decode_item, item, data, self.color)
                    del data
                if not self._put(q, (item, fut)):
                    return
        except BaseException as exc:  # a bug: hand it to the calling thread rather than hang
            self._put(q, exc)
        finally:
            self._put(q, None)

    def _put(self, q: queue.Queue, entry) -> bool:
        while not self._stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- the calling thread --------------------------------------------------------------------

    def run(self) -> None:
        todo = self.job.todo
        if not todo:
            return
        batch_size = self.options.batch_size
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="streamcolor-io")
        reader = threading.Thread(target=self._read_all, args=(todo, pool, q), name="streamcolor-reader",
                                  daemon=True)
        groups: dict[tuple, list[Prepared]] = {}  # render shape -> items waiting for the engine
        held = 0
        writing: set[Future] = set()
        reader.start()
        try:
            ended = False
            while True:
                self._collect(writing, block=False)
                if not ended:
                    entry = q.get()
                    if entry is None:
                        ended = True
                    elif isinstance(entry, BaseException):
                        raise entry
                    else:
                        item, fut = entry
                        try:
                            prep = fut.result()
                        except Exception as exc:  # each item on its own: record and go on
                            self._record(_decode_failure(item, exc))
                        else:
                            groups.setdefault(prep.net_in.shape, []).append(prep)
                            held += 1
                batch = _take_batch(groups, batch_size, flush=ended or held >= self.depth)
                if batch:
                    held -= len(batch)
                    while len(writing) >= self.depth:
                        self._collect(writing, block=True)
                    t = time.perf_counter()
                    results = _predict_or_fail(batch, self.engine)
                    self.engine_s += time.perf_counter() - t
                    for prep, result in zip(batch, results):
                        if isinstance(result, Outcome):
                            self._record(result)
                        else:
                            writing.add(pool.submit(finish_item, prep, result, self.job.out_dir, self.color))
                elif ended and not groups:
                    break
            while writing:
                self._collect(writing, block=True)
        except BaseException:
            self._stop.set()
            self._settle(writing)  # keep what was written before the failure
            raise
        finally:
            self._stop.set()
            while True:  # unblock the reader and drop queued work
                try:
                    entry = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(entry, tuple):
                    entry[1].cancel()
            reader.join(timeout=30)
            pool.shutdown(wait=True, cancel_futures=True)

    def _collect(self, writing: set[Future], *, block: bool) -> None:
        if not writing:
            return
        finished, _ = wait(writing, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in finished:
            writing.discard(fut)
            self._record(fut.result())  # OutputError from a write propagates: stop the batch

    def _settle(self, writing: set[Future]) -> None:
        """After a fatal error: wait for writes in flight, record the ones that succeeded."""
        for fut in list(writing):
            try:
                outcome = fut.result()
            except BaseException:
                continue
            try:
                self._record(outcome)
            except BaseException:
                return
        writing.clear()

    def _record(self, outcome: Outcome) -> None:
        self.job.record(outcome)
        self.bar.update(1)


def _take_batch(groups: dict[tuple, list[Prepared]], batch_size: int, *, flush: bool) -> list[Prepared] | None:
    """A full batch of one render shape if there is one; else, when flushing, the biggest group."""
    if not groups:
        return None
    shape = max(groups, key=lambda s: len(groups[s]))
    if len(groups[shape]) < batch_size and not flush:
        return None
    batch, rest = groups[shape][:batch_size], groups[shape][batch_size:]
    if rest:
        groups[shape] = rest
    else:
        del groups[shape]
    return batch


# ---------------------------------------------------------------------------------------------
# Output folder: layout, lock, manifest, report, packing
# ---------------------------------------------------------------------------------------------


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


def _write_report(out_dir: Path, problems: Sequence[Entry]) -> Path:
    """Write OUT/streamcolor-report.csv (state, source, member, reason), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["state", "source", "member", "reason"])
    for e in problems:
        writer.writerow([e.state, e.source, e.member, e.reason or ""])
    return image_io.write_atomic(out_dir / REPORT_FILENAME, buf.getvalue().encode("utf-8"))


def pack_outputs(out_dir: Path, outputs: Iterable[str], archive_path: Path, kind: str) -> Path:
    """Pack the given outputs (paths relative to ``out_dir``) into ``archive_path``
    (a temporary name, renamed into place at the end).  Already-compressed
    images are stored in zips, not deflated again."""
    mode = {"tar": "w", "tar.gz": "w:gz", "tar.xz": "w:xz", "tar.bz2": "w:bz2"}
    with image_io.atomic_output(archive_path, what="writing the archive") as tmp:
        if kind == "zip":
            with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
                for rel in outputs:
                    stored = PurePosixPath(rel).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
                    zf.write(out_dir / rel, rel, compress_type=zipfile.ZIP_STORED if stored
                             else zipfile.ZIP_DEFLATED)
        else:
            with tarfile.open(tmp, mode[kind]) as tf:
                for rel in outputs:
                    tf.add(out_dir / rel, arcname=rel, recursive=False)
    return archive_path


__all__ = ["BatchJob", "BatchOptions", "BatchReport", "Item", "Outcome", "Prepared", "Source", "colorize_archive",
           "colorize_batch", "decode_item", "finish_item", "list_items", "open_source", "output_name",
           "pack_outputs", "predict_batch", "process_items", "safe_member_path", "source_kind"]
