"""Folders, zip and tar archives of photos: the one reader (listing, safety,
member bytes) and writer (packing), for the batch job and the trainer alike.

It lives in ``engines`` for the reason ``lab.py`` does: both the user-facing
``streamcolor`` modules and ``streamcolor.trainer`` read archives, and
``engines`` is the one package both may import.  It imports nothing else of
streamcolor (no images are decoded here: members come out as bytes) and
raises its own :class:`ArchiveError`; ``streamcolor.archive`` turns that
into :class:`streamcolor.InputError`.

A new archive format is added here alone: its suffixes in
:data:`ARCHIVE_SUFFIXES`, its sniffing in :func:`source_kind`, a lister and a
reader in :class:`Source`, and a writer in :func:`pack`.

Safety: member names are sanitized by :func:`safe_member_path` (backslashes
are separators, ``.`` parts dropped; absolute names and names with ``..``
refused).  Links (symbolic and hard), devices, FIFOs and encrypted members
are refused with a reason and never read.  Declared sizes and zip
compression ratios are checked before a member is read (:class:`Limits`),
and reads are capped.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import logging
import lzma
import os
import posixpath
import re
import shlex
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Mapping

log = logging.getLogger(__name__)

#: Archive kinds read and written, and their file suffixes (the first is the one written).
ARCHIVE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "zip": (".zip",),
    "tar": (".tar",),
    "tar.gz": (".tar.gz", ".tgz"),
    "tar.xz": (".tar.xz", ".txz"),
    "tar.bz2": (".tar.bz2", ".tbz2", ".tbz"),
}
#: Files that operating systems sprinkle into folders and zips; ignored, not reported.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: Folders of operating-system and photo-tool litter (thumbnail caches, trash, indexes, version control):
#: their files are copies or metadata, never the user's photos, so they are passed over like JUNK_NAMES.
#: Compared case-insensitively (Windows spells its bin $RECYCLE.BIN or $Recycle.Bin); ``.Trash-1000``
#: (a Linux desktop's bin on a removable drive) by its prefix; the old Windows bins RECYCLER and
#: RECYCLED only as Windows wrote them, in capitals: a folder of yours named "Recycled" is photos.
JUNK_FOLDERS = frozenset(n.casefold() for n in (
    "__MACOSX", "@eaDir", ".thumbnails", ".Trashes", ".Trash", "$RECYCLE.BIN",
    ".Spotlight-V100", ".fseventsd", "System Volume Information", ".git", ".svn", ".hg",
    ".streamcolor"))  # (a streamcolor job's own state, when an earlier output folder is given as a source)


def name_key(name: str) -> str:
    """What a file name is on the disks outputs end up on, for telling whether two names are one file.

    Windows and macOS compare names without case (``A.jpg`` is ``a.jpg``), and macOS without
    Unicode normal form: ``café.jpg`` typed as one code point for the é (NFC, as Windows and Linux
    write it) and as an e plus a combining accent (NFD, as older Macs wrote it) is one file there,
    and in a zip unpacked there.  On Linux the two are two files; numbering one of them keeps
    both when the folder or archive is copied.  Unicode's canonical caseless match:
    NFD(casefold(NFD(name))).
    """
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def is_junk_folder(name: str) -> bool:
    """Whether a folder name is one of :data:`JUNK_FOLDERS` (or a ``.Trash-<uid>`` bin)."""
    folded = name.casefold()
    return folded in JUNK_FOLDERS or folded.startswith(".trash-") or name in ("RECYCLER", "RECYCLED")
#: The zip compression-ratio check applies to members bigger than this (tiny files may compress very well).
RATIO_MIN_BYTES = 1 << 20
#: Already-compressed image formats: stored in a zip as they are, not deflated again.
_STORED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: tarfile write modes by kind.
_TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.xz": "w:xz", "tar.bz2": "w:bz2"}


class ArchiveError(Exception):
    """A source or one of its members cannot be read; the message names it and says why."""


class MemberRefused(ArchiveError):
    """A member turned out to break a safety limit when read (a refusal, not a failure)."""


@dataclass(frozen=True)
class Limits:
    """Safety limits applied while listing and reading."""

    max_member_bytes: int = 512 << 20  # refuse files/members bigger than this, declared or actually read
    max_ratio: float = 200.0  # refuse zip members > RATIO_MIN_BYTES that inflate more than this many times
    # entries listed of one source (about 1 KB of memory each while the job runs: a tar.gz of a few MB can
    # declare millions of empty ones); a zip with more is refused whole (its directory is read at once)
    max_members: int = 1_000_000


@dataclass(frozen=True)
class Member:
    """One listing entry of a source: a file to read, or one refused with the reason."""

    name: str  # as stored (for a folder: the relative posix path)
    size: int  # bytes, uncompressed, as declared
    stamp: str  # change detector: "size:mtime_ns" (file), "size:crc" (zip), "size:mtime" (tar)
    locator: int = -1  # zip: index in infolist(); tar: index in the member list; folder: unused
    refusal: str | None = None  # why it is not read at all (link, device, limits...), or None
    broken: bool = False  # the refusal is a read failure of the source (a failure), not a policy (a skip)


def kind_by_name(name: str) -> str | None:
    """The archive kind its suffix names (``"zip"``, ``"tar.gz"``...), or None."""
    lower = name.lower()
    for kind, suffixes in ARCHIVE_SUFFIXES.items():
        if lower.endswith(suffixes):
            return kind
    return None


def source_kind(path: str | os.PathLike) -> str:
    """"folder", "zip", "tar", "tar.gz", "tar.xz" or "tar.bz2"; ArchiveError otherwise."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file or folder") from None
    except OSError as exc:  # (a name too long, a folder on the way that cannot be read: this source alone)
        raise ArchiveError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(mode):
        return "folder"
    if not stat.S_ISREG(mode):  # a FIFO would block the open, a device be read forever
        raise ArchiveError(f"{path}: not a regular file ({_file_type(mode)}); give a folder, zip or tar archive")
    kind = kind_by_name(path.name)
    if kind is not None and (kind != "zip" or zipfile.is_zipfile(path)):
        return kind
    if kind is None and zipfile.is_zipfile(path):
        return "zip"
    try:
        with open_tar(path):  # (a tar by its content: named .zip, or with no archive suffix)
            return {"r:gz": "tar.gz", "r:bz2": "tar.bz2", "r:xz": "tar.xz"}.get(_tar_mode(path), "tar")
    except tarfile.TarError:
        pass
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if kind is not None:
        return kind  # (a damaged zip: opening it says how)
    raise ArchiveError(f"{path}: not a folder, zip or tar archive (for one image use `streamcolor image`, "
                       "for a video `streamcolor video`)")


def source_name(path: str | os.PathLike, kind: str | None) -> str:
    """A source's name without its archive suffix (``album`` for ``album.tar.gz``), which names
    its folder in a job of several sources; ``kind``: its archive kind ("folder" or None: none)."""
    name = Path(path).resolve().name
    if kind not in (None, "folder"):
        lower = name.lower()
        for suffix in ARCHIVE_SUFFIXES[kind]:
            if lower.endswith(suffix):
                return name[: -len(suffix)] or name
    return name or "source"


def member_label(path: str | os.PathLike, kind: str, member: str) -> str:
    """How messages name a member of a source: ``album.zip:dir/a.jpg`` or ``photos/dir/a.jpg``.
    A source given as ``.`` or ``..`` is named by the folder it is (``photos/a.jpg``, not ``/a.jpg``)."""
    name = Path(path).name
    if name in ("", ".", ".."):
        name = Path(path).resolve().name or str(path)
    return f"{name}{'/' if kind == 'folder' else ':'}{member}"


def is_junk(name: str, *, backslashes: bool = True) -> bool:
    """Whether a member name is operating-system litter (``.DS_Store``, ``._x``, anything in
    ``__MACOSX/``, a Synology ``@eaDir/`` or a ``.thumbnails/`` cache: :data:`JUNK_FOLDERS`).
    ``backslashes``: whether ``\\`` separates folders in it (:func:`safe_member_path`)."""
    parts = (name.replace("\\", "/") if backslashes else name).split("/")
    return (parts[-1] in JUNK_NAMES or parts[-1].startswith("._")
            or any(is_junk_folder(p) for p in parts[:-1]))


def safe_member_path(name: str, *, backslashes: bool = True) -> tuple[str | None, str | None]:
    """A member name as a safe relative posix path: ``(path, None)``, or
    ``(None, reason)`` when it is absolute, climbs out with ``..`` or is empty.

    ``backslashes``: whether backslashes separate folders, as in zips and tars made by Windows
    tools (the default, and always on Windows, where a file name cannot hold one).  A file's own
    name on POSIX may hold ``\\`` as a plain character (:attr:`Source.backslashes`): its output
    keeps it, rather than land in a folder beside or over another file's; a name that would climb
    out when read the Windows way (``..\\x.jpg``) is refused all the same, since outputs get
    packed and unpacked elsewhere.  ``.`` and empty parts are dropped.
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
    if not backslashes and os.sep != "\\":
        parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts), None


def _size_refusal(size: int, limits: Limits) -> str | None:
    if size > limits.max_member_bytes:
        return (f"{size:,} bytes is over the size limit of {limits.max_member_bytes:,} "
                "(raise max_member_bytes / --max-member-size if the file is trusted)")
    return None


class _ChecksumError(tarfile.ReadError):
    """A compressed tar whose stream fails its checksum (gzip's CRC) after its last member."""


#: Largest extended tar header read (a GNU long name or link, a pax header): a real one holds a path
#: and a few attributes, a few KB at most.
MAX_EXTENDED_HEADER = 1 << 20
#: Most entries of a GNU sparse 1.0 map read.
MAX_SPARSE_ENTRIES = 1 << 16


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's headers with a bound on what listing reads into memory.  Why: tarfile reads a
    GNU long-name or pax header whole, at the size the header declares (a .tar.gz of a few MB
    declaring one of gigabytes took 700 MB to list, past any member size limit, which applies
    to members' contents, not to headers), and a GNU sparse 1.0 map a number at a time, as many
    as its first line says.  Over the bound, the archive is truncated or corrupt from there
    (members before it are kept, as for any damaged header)."""

    def _proc_member(self, tarfile_):
        if (self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                          tarfile.SOLARIS_XHDTYPE) and self.size > MAX_EXTENDED_HEADER):
            raise tarfile.SubsequentHeaderError(f"an extended header of {self.size:,} bytes (a name or attributes "
                                                f"take a few KB; refused over {MAX_EXTENDED_HEADER:,})")
        return super()._proc_member(tarfile_)

    def _proc_gnusparse_10(self, next, pax_headers, tarfile_):
        # tarfile's own reading of the map (its count, then two numbers a line), with the bounds
        fh = tarfile_.fileobj
        head, buf = (fh.read(tarfile.BLOCKSIZE).split(b"\n", 1) + [b""])[:2]
        if not head.strip().isdigit() or int(head) > MAX_SPARSE_ENTRIES:
            raise tarfile.SubsequentHeaderError(f"a sparse file's map of {head[:20]!r} entries (refused over "
                                                f"{MAX_SPARSE_ENTRIES:,})")
        numbers: list[int] = []
        while len(numbers) < int(head) * 2:
            if b"\n" not in buf:
                more = fh.read(tarfile.BLOCKSIZE)
                if not more or len(buf) > tarfile.BLOCKSIZE:
                    raise tarfile.SubsequentHeaderError("a sparse file's map that is cut short or not numbers")
                buf += more
            number, buf = buf.split(b"\n", 1)
            numbers.append(int(number))
        next.offset_data = fh.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2]))


def _tar_mode(path: Path) -> str:
    """tarfile's read mode for the file's compression, by its first bytes (not its name)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    return ("r:gz" if magic[:2] == b"\x1f\x8b" else "r:bz2" if magic[:3] == b"BZh"
            else "r:xz" if magic == b"\xfd7zXZ\x00" else "r:")


def open_tar(path: str | os.PathLike) -> tarfile.TarFile:
    """A tar, plain or compressed, opened for reading with :class:`_BoundedTarInfo`'s bounds on its
    headers.  The mode follows the compression found (``r:*`` tries each and, when all fail,
    says why in four lines, three of them about compressions the file does not have)."""
    return tarfile.open(path, _tar_mode(Path(path)), tarinfo=_BoundedTarInfo)


def _open_regular(path: Path):
    """Open a file for reading only if it is still a regular file (it was one
    when listed; a FIFO put in its place would block, a device never end):
    non-blocking open, then fstat on the descriptor.  OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file any more ({_file_type(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return f"file type {stat.S_IFMT(mode):o}"


class Source:
    """A folder, a zip or a tar archive, kept open.

    :meth:`members` lists it once; :meth:`read` returns one member's bytes
    (from memory, capped at ``limits.max_member_bytes``).  Reads of a
    compressed tar are cheapest in listing order (forward seeks only).  Not
    thread-safe: one thread reads at a time.
    """

    def __init__(self, path: str | os.PathLike, limits: Limits = Limits()):
        self.path = Path(path)
        self.limits = limits
        self.kind = source_kind(self.path)
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._raw = None  # the file under a zip opened through _FlagFixedFile (ZipFile does not close it)
        self._tar_members: list[tarfile.TarInfo] = []
        self._tar_links: dict[int, int] = {}  # a hard link's index -> its target's (read in its place)
        self._listed: list[Member] | None = None
        try:
            if self.kind == "zip":
                self._zip, self._raw = _open_zip(self.path, limits.max_members)
            elif self.kind != "folder":
                self._tar = open_tar(self.path)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{self.path}: cannot open as {self.kind} ({exc})") from exc

    @property
    def name(self) -> str:
        """The source's name without its archive suffix (the folder name for several sources)."""
        return source_name(self.path, self.kind)

    def label(self, member: str) -> str:
        """How messages name a member: ``album.zip:dir/a.jpg`` or ``photos/dir/a.jpg``."""
        return member_label(self.path, self.kind, member)

    def members(self) -> list[Member]:
        """Every file of the source in a stable order (directories and OS junk left out)."""
        if self._listed is None:
            lister = {"folder": self._list_folder, "zip": self._list_zip}.get(self.kind, self._list_tar)
            self._listed = [m for m in self._capped(lister()) if not is_junk(m.name, backslashes=self.backslashes)]
        return self._listed

    def _capped(self, members: Iterator[Member]) -> Iterator[Member]:
        """The first ``limits.max_members`` entries, then one that says the rest are not listed:
        each listed entry stays in memory for the job (a tar.gz of a few MB can declare millions)."""
        cap = self.limits.max_members
        for n, member in enumerate(members):
            if n == cap:
                yield Member(f"(after member {cap:,})", 0, "broken", -1,
                             f"over the limit of {cap:,} entries in one source; the rest are not listed (split it, "
                             "or raise max_members / --max-members if it is trusted)", broken=True)
                return
            yield member

    @property
    def backslashes(self) -> bool:
        """Whether ``\\`` in a member name separates folders: in zips and tars (Windows tools write
        them so), not in a folder's file names on POSIX, where it is a character of the name."""
        return self.kind != "folder" or os.sep == "\\"

    def _list_folder(self) -> Iterator[Member]:
        root = self.path
        real_root = root.resolve()
        unreadable: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not is_junk_folder(d))  # (not walked: a .git has thousands)
            here = Path(dirpath)
            for d in list(dirnames):
                if (here / d).is_symlink():
                    dirnames.remove(d)
                    rel = (here / d).relative_to(root).as_posix()
                    yield Member(rel, 0, "link", refusal="symbolic link to a folder (not followed)")
            for fn in sorted(filenames):
                p = here / fn
                rel = p.relative_to(root).as_posix()
                try:
                    st = p.lstat()
                    if stat.S_ISLNK(st.st_mode):
                        refusal, target = _link_refusal(p, real_root)
                        if refusal is not None:
                            yield Member(rel, 0, "link", refusal=refusal)
                            continue
                        st = target.stat()
                except OSError as exc:
                    yield Member(rel, 0, "?", refusal=f"cannot stat ({exc.strerror or exc})", broken=True)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    yield Member(rel, 0, "special", refusal=f"not a regular file ({_file_type(st.st_mode)})")
                    continue
                yield Member(rel, st.st_size, f"{st.st_size}:{st.st_mtime_ns}",
                             refusal=_size_refusal(st.st_size, self.limits))
        for exc in unreadable:  # e.g. a sub-folder without read permission: its files are lost to this job
            rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?"
            yield Member(rel + "/", 0, "?", refusal=f"cannot list this folder ({exc.strerror or exc})", broken=True)

    def _list_zip(self) -> Iterator[Member]:
        assert self._zip is not None
        limits = self.limits
        for i, info in enumerate(self._zip.infolist()):
            if info.is_dir() or (not info.file_size and (info.filename.endswith("\\") or info.external_attr & 0x10)):
                continue  # (a folder: "name/", or as old Windows tools wrote it, "name\\" with MS-DOS's folder bit)
            stamp = f"{info.file_size}:{info.CRC:08x}"
            mode = info.external_attr >> 16
            refusal = None
            if info.create_system == 3 and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                refusal = f"not a regular file ({_file_type(mode)}; not followed)"
            elif info.flag_bits & 0x1:
                refusal = "encrypted member (no password support)"
            elif (size_refusal := _size_refusal(info.file_size, limits)) is not None:
                refusal = size_refusal
            elif info.file_size > RATIO_MIN_BYTES and info.file_size > limits.max_ratio * info.compress_size:
                ratio = info.file_size / max(info.compress_size, 1)
                refusal = (f"compression ratio {ratio:,.0f}:1 ({info.file_size:,} bytes from "
                           f"{info.compress_size:,}) is over the limit of {limits.max_ratio:g}:1 "
                           "(possible zip bomb; raise max_ratio / --max-ratio if the file is trusted)")
            yield Member(zip_member_name(info), info.file_size, stamp, i, refusal)

    def _list_tar(self) -> Iterator[Member]:
        assert self._tar is not None
        members = self._tar_members
        regular: dict[str, int] = {}  # the regular members listed so far by normalised name (the last one wins)
        try:
            for m in self._tar:
                members.append(m)
                i = len(members) - 1
                if m.isdir():
                    continue
                stamp = f"{m.size}:{int(m.mtime)}"
                if m.issym():
                    yield Member(m.name, 0, stamp, i, f"symbolic link to {m.linkname!r} (not followed)")
                elif m.islnk():
                    # tar stores a file's second name as a hard link to an earlier member: the same bytes,
                    # read from that member (never from the disk: a link to anything else is refused)
                    target = regular.get(posixpath.normpath(m.linkname))
                    if target is None:
                        yield Member(m.name, 0, stamp, i,
                                     f"hard link to {m.linkname!r}, which is no earlier file of the archive")
                        continue
                    self._tar_links[i] = target
                    t = members[target]
                    yield Member(m.name, t.size, f"{t.size}:{int(t.mtime)}", i, _size_refusal(t.size, self.limits))
                elif not m.isreg():
                    kind = ("character device" if m.ischr() else "block device" if m.isblk()
                            else "FIFO" if m.isfifo() else f"member type {m.type!r}")
                    yield Member(m.name, 0, stamp, i, f"not a regular file ({kind})")
                else:
                    regular[posixpath.normpath(m.name)] = i
                    yield Member(m.name, m.size, stamp, i, _size_refusal(m.size, self.limits))
            self._check_tar_end()
        except _ChecksumError as exc:  # every member listed, but the compressed stream's checksum failed
            yield Member(f"(after member {len(members)})", 0, "broken", -1, str(exc), broken=True)
        except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as exc:
            # A truncated or corrupt archive: keep what was listed, report where it broke off.
            yield Member(f"(after member {len(members)})", 0, "broken", -1,
                         f"archive is truncated or corrupt here; later members are lost ({exc})", broken=True)

    def _check_tar_end(self) -> None:
        """Raise tarfile.ReadError unless the tar ended as a tar ends: Python's tarfile stops
        without a word at a header it cannot read after the first member (a damaged block in the
        middle of an archive), so the members after it would be lost without a report.  The end is
        a zero block or the end of the file; a compressed stream is also read to its end, so that
        its checksum is checked (a gzip's CRC is read only there)."""
        assert self._tar is not None
        fileobj = self._tar.fileobj
        fileobj.seek(self._tar.offset)
        block = fileobj.read(tarfile.BLOCKSIZE)
        if block and block != tarfile.NUL * tarfile.BLOCKSIZE:
            what = "a header that is not one" if len(block) == tarfile.BLOCKSIZE else "a header cut short"
            raise tarfile.ReadError(f"{what} at byte {self._tar.offset:,} of the tar")
        if isinstance(fileobj, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)):
            try:
                while fileobj.read(1 << 20):
                    pass
            except EOFError:  # xz stream padding, or the stream cut short after the tar's end: nothing is lost
                return
            except (OSError, zlib.error, lzma.LZMAError) as exc:
                if "Not a gzipped file" in str(exc):  # bytes after the gzip stream, not the tar's
                    return
                raise _ChecksumError(f"the archive's checksum does not match its data: a member read from "
                                     f"it may be damaged ({exc})") from exc

    def read(self, member: str, locator: int = -1) -> bytes:
        """The bytes of ``member`` (a name from :meth:`members`; its ``locator``
        tells duplicate names in an archive apart).  ArchiveError if it cannot
        be read; MemberRefused if it turns out bigger than ``max_member_bytes``."""
        label = self.label(member)
        cap = self.limits.max_member_bytes
        try:
            if self.kind == "folder":
                with _open_regular(self.path / member) as fh:
                    data = fh.read(cap + 1)
            elif self.kind == "zip":
                assert self._zip is not None
                info = self._zip.infolist()[locator] if locator >= 0 else self._zip.getinfo(member)
                with self._zip.open(info) as fh:
                    data = fh.read(cap + 1)
            else:
                assert self._tar is not None
                if not self._tar_members:
                    self.members()
                info = (self._tar_members[self._tar_links.get(locator, locator)] if locator >= 0
                        else self._tar.getmember(member))
                fh = self._tar.extractfile(info)
                if fh is None:
                    raise ArchiveError(f"{label}: not a regular file")
                with fh:
                    data = fh.read(cap + 1)
        except ArchiveError:
            raise
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, NotImplementedError,
                RuntimeError, KeyError) as exc:
            # CRC mismatch, truncated data, unsupported compression, permission denied...
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ArchiveError(f"{label}: cannot read ({detail})") from exc
        except Exception as exc:  # zlib.error, lzma.LZMAError, bz2 errors
            raise ArchiveError(f"{label}: cannot read ({type(exc).__name__}: {exc})") from exc
        if len(data) > cap:
            raise MemberRefused(f"{label}: more than {cap:,} bytes (size limit; raise max_member_bytes / "
                                "--max-member-size if the file is trusted)")
        return data

    def close(self) -> None:
        for handle in (self._zip, self._tar, self._raw):
            if handle is not None:
                handle.close()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_zip(path: Path, max_members: int = Limits.max_members) -> tuple[zipfile.ZipFile, object | None]:
    """Open a zip for reading.  Names marked UTF-8 (flag bit 11) that are not
    valid UTF-8 make :class:`zipfile.ZipFile` fail for the whole archive; such a
    zip is opened again through :class:`_FlagFixedFile`, which clears the flag
    on those entries only, so their names are read as zip's historical
    encoding (cp437) and every member can still be processed.  Returns the
    zip and the file to close after it (None when ZipFile owns it).  A zip of more than
    ``max_members`` entries is refused (BadZipFile) before ZipFile reads its directory whole."""
    with open(path, "rb") as fh:
        _check_outer_end(fh)
        endrec = zipfile._EndRecData(fh)  # type: ignore[attr-defined]
        entries = endrec[zipfile._ECD_ENTRIES_TOTAL] if endrec else 0  # type: ignore[attr-defined]
        if entries > max_members:
            raise zipfile.BadZipFile(f"it holds {entries:,} entries, over the limit of {max_members:,} in one "
                                     "source (split it, or raise max_members / --max-members if it is trusted)")
    try:
        return zipfile.ZipFile(path), None
    except UnicodeDecodeError:
        pass
    fh = open(path, "rb")
    try:
        zf = zipfile.ZipFile(_FlagFixedFile(fh, _bad_utf8_flags(fh)))
    except BaseException:
        fh.close()
        raise
    return zf, fh


def _prefix_bytes(endrec: list) -> int:
    """Bytes before the zip's own first byte (a self-extracting program's), from its end record,
    as :class:`zipfile.ZipFile` computes them: with a zip64 end (over 4 GiB or 65,535 entries)
    its two records sit between the directory and the end, and are not a prefix."""
    z = zipfile  # (its end record's indices and sizes are private names)
    concat = endrec[z._ECD_LOCATION] - endrec[z._ECD_SIZE] - endrec[z._ECD_OFFSET]  # type: ignore[attr-defined]
    if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    return concat


def _check_outer_end(fh) -> None:
    """BadZipFile when the directory that :class:`zipfile.ZipFile` would read is not this zip's own
    but that of a zip stored inside it: a zip cut short (its own directory, at the end, is gone)
    whose last readable directory is a stored member's.  ZipFile takes the bytes before that
    inner zip as a prefix (as of a self-extracting program) and lists the inner zip alone, so the
    job would colorize the wrong photos and call the run a success.  A real prefix is a program,
    not a zip member: what starts with a zip member's header and has a prefix is this case."""
    endrec = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # (as ZipFile reads it)
    fh.seek(0)
    starts_as_zip = fh.read(4) == b"PK\x03\x04"
    if not endrec:
        if starts_as_zip:  # (ZipFile says "File is not a zip file", which reads as "wrong format")
            raise zipfile.BadZipFile(
                "it starts as a zip but its end, the directory of its members, is missing: it was likely cut "
                "short (an interrupted download or copy); download it again, or recover the members before "
                f"the cut with Info-ZIP: echo y | zip -FF {shlex.quote(str(getattr(fh, 'name', 'IN.zip')))} "
                "--out fixed.zip")
        return  # (ZipFile says so itself)
    concat = _prefix_bytes(endrec)
    if concat > 0 and starts_as_zip:
        raise zipfile.BadZipFile("its end is missing, so it was likely cut short: the only directory left in it belongs to a "
                                 "zip stored inside it")


def _bad_utf8_flags(fh) -> dict[int, int]:
    """{file offset: patched byte} that clear the UTF-8 flag of the central
    directory and local headers of entries whose names are not valid UTF-8."""
    endrec = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # the end record, as ZipFile reads it
    if not endrec:
        raise zipfile.BadZipFile("no end of central directory")
    size_cd, offset_cd = endrec[zipfile._ECD_SIZE], endrec[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    concat = _prefix_bytes(endrec)
    fh.seek(offset_cd + concat)
    cd = fh.read(size_cd)
    patches: dict[int, int] = {}
    pos = 0
    while pos + 46 <= len(cd) and cd[pos:pos + 4] == b"PK\x01\x02":
        flags = int.from_bytes(cd[pos + 8:pos + 10], "little")
        n, m, k = (int.from_bytes(cd[pos + i:pos + i + 2], "little") for i in (28, 30, 32))
        local = int.from_bytes(cd[pos + 42:pos + 46], "little")
        name = cd[pos + 46:pos + 46 + n]
        if flags & 0x800:
            try:
                name.decode("utf-8")
            except UnicodeDecodeError:
                patches[offset_cd + concat + pos + 9] = cd[pos + 9] & ~0x08
                fh.seek(local + concat + 7)
                high = fh.read(1)
                if high:
                    patches[local + concat + 7] = high[0] & ~0x08
        pos += 46 + n + m + k
    return patches


class _FlagFixedFile:
    """A read-only file that returns ``patches`` ({offset: byte}) in place of the bytes there."""

    def __init__(self, fh, patches: dict[int, int]):
        self._fh, self._patches = fh, patches

    def read(self, n: int = -1) -> bytes:
        start = self._fh.tell()
        data = self._fh.read(n)
        hits = [p for p in self._patches if start <= p < start + len(data)]
        if not hits:
            return data
        buf = bytearray(data)
        for p in hits:
            buf[p - start] = self._patches[p]
        return bytes(buf)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._fh.close()


def dead_link(link: Path) -> str | None:
    """What is wrong with a symbolic link that leads to nothing: "a symbolic link
    loop (through 'x')" or "a broken symbolic link (its target 'x' does not
    exist)"; None when ``link`` is not a link or leads somewhere."""
    if not link.is_symlink():
        return None
    try:
        target = repr(os.readlink(link))
        os.stat(link)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"a symbolic link loop (through {target})"
        return f"a broken symbolic link (its target {target} does not exist)"
    return None


def _link_refusal(link: Path, real_root: Path) -> tuple[str | None, Path]:
    """(why a symbolic link in a source folder is not followed, or None; its
    target): only links to regular files inside the folder are followed.
    A loop or a missing target is an item's refusal, never the job's end."""
    dead = dead_link(link)
    if dead is not None:
        return f"{dead} (not followed)", link
    target = link.resolve()
    shown = repr(os.readlink(link))
    if not target.is_relative_to(real_root):
        return f"symbolic link to {shown} outside the source folder (not followed)", target
    if not target.is_file():
        return f"symbolic link to {shown}, which is not a regular file (not followed)", target
    return None, target


def zip_member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as its maker meant it.  Zip names are CP437 unless the
    UTF-8 flag is set, but many tools (macOS's Archive Utility, older Java and
    Windows tools) write UTF-8 without setting it, which CP437 turns into
    ``Gr├╝├ƒe.jpg``: like Info-ZIP, such a name is read as UTF-8 when its bytes
    are valid UTF-8 (a real CP437 name almost never is)."""
    name = info.filename
    if info.flag_bits & 0x800 or name.isascii():
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except UnicodeError:
        return name


def zip_safe_name(rel: str) -> str:
    """``rel`` as a zip can store it: a name from a folder whose bytes are not
    UTF-8 (kept by Python as lone surrogates, which no zip can hold) has those
    bytes read as Latin-1, the most common origin of such names (``caf\\xe9.jpg``
    -> ``café.jpg``); every other name is kept as it is."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("latin-1")


def pack(root: str | os.PathLike, members: Iterable[str] | Mapping[str, str], dest: str | os.PathLike, kind: str, *,
         name: str | None = None) -> None:
    """Write the files ``members`` (posix paths relative to ``root``) into a new
    archive of ``kind`` at ``dest``, under the same names, or, given a mapping
    {path: name}, under those names.  Already-compressed images are stored in
    zips, not deflated again.  (Callers that want the file to appear whole
    write ``dest`` as a temporary name and rename it; ``name`` is then the
    final file name, which gzip records in its header: ``gzip -dN`` restores it.)

    A name an archive cannot hold as it is gets another, said in a warning, with ``~N`` where that
    is taken: a folder's non-UTF-8 name in a zip (read as Latin-1), and a ``\\`` in a POSIX file's
    name (as ``_``: zip and tar readers, streamcolor's among them, take it for a folder, which
    would put ``back\\slash.jpg`` onto ``back/slash.jpg``)."""
    root = Path(root)
    names = dict(members) if isinstance(members, Mapping) else {m: m for m in members}
    arcnames = _archive_names(names.values(), kind)
    if kind == "zip":
        with zipfile.ZipFile(dest, "w", allowZip64=True) as zf:
            for rel, wanted in names.items():
                stored = PurePosixPath(wanted).suffix.lower() in _STORED_SUFFIXES
                zf.write(root / rel, arcnames[wanted],
                         compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        return
    if kind not in _TAR_MODES:
        raise ValueError(f"unknown archive kind {kind!r}; one of {list(ARCHIVE_SUFFIXES)}")
    with contextlib.ExitStack() as stack:
        if kind == "tar.gz":  # gzip by hand, for the name in its header (tarfile's would be dest's)
            gz_name = name or Path(dest).name
            gz_name = gz_name[:-4] + ".tar" if gz_name.lower().endswith(".tgz") else gz_name.removesuffix(".gz")
            raw = stack.enter_context(open(dest, "wb"))
            gz = stack.enter_context(gzip.GzipFile(gz_name, "wb", fileobj=raw))
            tf = stack.enter_context(tarfile.open(str(dest), "w", fileobj=gz))
        else:
            tf = stack.enter_context(tarfile.open(dest, _TAR_MODES[kind]))
        for rel, wanted in names.items():
            tf.add(root / rel, arcname=arcnames[wanted], recursive=False)


def _archive_names(wanted: Iterable[str], kind: str) -> dict[str, str]:
    """{name: the name it is packed under} (see :func:`pack`); one bad name never stops the packing."""
    wanted = list(wanted)

    def holdable(n: str) -> str:
        return (zip_safe_name(n) if kind == "zip" else n).replace("\\", "_")

    used = {name_key(n) for n in wanted if holdable(n) == n}
    out: dict[str, str] = {}
    for n in wanted:
        arcname = holdable(n)
        if arcname != n:
            base, i = PurePosixPath(arcname), 1
            while name_key(arcname) in used:
                i += 1
                arcname = str(base.with_name(f"{base.stem}~{i}{base.suffix}"))
            used.add(name_key(arcname))
            why = "holds a \\, which archive readers take for a folder" if "\\" in n else \
                "is not UTF-8, which a zip cannot hold"
            log.warning("%s: its name %s; packed as %r", os.fsencode(n).decode("ascii", "backslashreplace"), why,
                        arcname)
        out[n] = arcname
    return out


__all__ = ["ARCHIVE_SUFFIXES", "ArchiveError", "JUNK_FOLDERS", "JUNK_NAMES", "Limits", "Member", "MemberRefused", "Source",
           "dead_link", "is_junk", "is_junk_folder", "kind_by_name", "name_key", "pack", "safe_member_path", "source_kind", "source_name",
           "zip_member_name", "zip_safe_name"]
