"""Temporary output files that streamcolor owns, and the sweep of the ones a killed run left.

Every output (image, video, archive, report) is written under a temporary
name in its destination folder and renamed into place, so a path holds
nothing or a whole file.  The temporary names are built so that:

* their length is fixed (``.streamcolor-<12 hex>-<8 chars>.part`` plus the
  destination's suffix when it is short): a destination name the filesystem
  accepts never fails because its temporary name is longer;
* they are recognisably this tool's: the 12 hex digits are a hash of the
  destination's name, so a sweep removes only temporaries of the outputs it
  is about to write, never a user's ``*.part`` file nor another output's;
* they are locked (``flock``) by the process writing them for as long as it
  writes: a sweep removes only temporaries whose writer is gone (killed), never
  those of a run still going (another run into a sub-folder, say).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Union

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a sweep then leaves every temporary alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Every temporary name starts with this.
PREFIX = ".streamcolor-"
#: Suffixes longer than this are not carried onto the temporary name.
MAX_SUFFIX = 16
_ALPHABET = string.ascii_lowercase + string.digits
TEMP_RE = re.compile(r"^\.streamcolor-([0-9a-f]{12})-([0-9a-z]{8})\.part(\.[^/]{0,%d})?$" % (MAX_SUFFIX - 1))


def name_tag(name: str) -> str:
    """The hash of a destination's file name that its temporary names carry."""
    return hashlib.sha1(os.fsencode(name)).hexdigest()[:12]


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of this module's temporary names."""
    return TEMP_RE.match(name) is not None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process umask, read once at import (reading it means setting it, which is not thread-safe).
UMASK = _umask()


@dataclass(frozen=True)
class Beside:
    """A rename policy: replace the file there when ``may_replace(path)`` says so; any other file
    there is kept and the output takes the first ``name~N`` beside it that is free or its own (said in a warning).
    The command line's: a film colorized for hours is not thrown away because a file appeared
    at its name meanwhile."""

    may_replace: Callable[[Path], bool]


#: What may be replaced when a temporary file is renamed into place: True, anything there;
#: False, nothing (a file there is kept and the rename refused); a function, the file at the
#: path it is given when it returns True (the file an earlier run of streamcolor wrote, say);
#: a :class:`Beside`, as a function, but a file that may not be replaced sends the output beside it.
Replace = Union[bool, Callable[[Path], bool], Beside]

#: errno values of a filesystem without hard links (FAT, some network and FUSE disks).
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV})


def move_into_place(tmp: str | os.PathLike, final: str | os.PathLike, replace: Replace = True) -> Path:
    """Rename the complete file ``tmp`` onto ``final`` (same folder).

    With ``replace`` other than True the rename never replaces a file it was not
    told it may: it is made as a hard link, which the filesystem refuses when
    ``final`` exists (atomically: a file that appeared after the run planned its
    outputs -- another run into the same folder, a user saving there -- is never
    lost), then ``tmp`` is removed.  A file that is there and that ``replace``
    accepts is replaced by an atomic rename.  FileExistsError (``tmp`` left as it
    is) when a file is there that may not be replaced -- or, with :class:`Beside`,
    the output goes to the first ``name~N`` that is free or that the policy may replace.
    Where the filesystem has no hard links the check and the rename are two steps.  Returns the path written.
    """
    from streamcolor.outputs import numbered  # (outputs builds on nothing of this module)

    tmp, final = Path(tmp), Path(final)
    if replace is True:
        _replace(tmp, final)
        return final
    may = replace.may_replace if isinstance(replace, Beside) else replace if callable(replace) else None
    target, n = final, 1
    while True:
        try:
            _link_or_check(tmp, target, may)
            break
        except FileExistsError:
            if not isinstance(replace, Beside):
                raise
        n += 1
        target = final.with_name(numbered(final.name, n))
        # (a numbered name: free, or the same policy's, the output that an earlier call wrote from this input
        # there: `colorize_video(src)` beside a file of yours wrote ~2, then ~3, ~4... on every call)
    if target != final:
        log.warning("%s: holds a file that streamcolor may not replace (not an output it wrote from this input, "
                    "or one that appeared while the output was written); it is kept, and the output is %s",
                    final, target.name)
    return target


def _link_or_check(tmp: Path, final: Path, may: Callable[[Path], bool] | None) -> None:
    """One attempt of :func:`move_into_place` at ``final``: FileExistsError when a file is there
    that ``may`` (None: nothing) does not accept."""
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        if _same_file(tmp, final):  # the link of an earlier commit that stopped before removing tmp
            os.unlink(tmp)
            return
        if may is not None and may(final):
            _replace(tmp, final)
            return
        raise _kept(final) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(final) and not (may is not None and may(final)):
            raise _kept(final) from None
        _replace(tmp, final)
        return
    os.unlink(tmp)


def _replace(tmp: Path, final: Path) -> None:
    """``os.replace``, the file replaced keeping its permissions: a photo the user had made private
    (0600) came back readable by all (0644, the new file's), where saving over it in place (Pillow,
    an editor) keeps them."""
    try:
        st = os.lstat(final)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.replace(tmp, final)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _kept(final: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "a file that streamcolor may not replace is there now (written by another "
                           "program or run after this one planned its outputs); it is kept", str(final))


@dataclass
class Staged:
    """A complete or in-progress temporary file for ``final``, locked while this
    object holds ``fd``.  :meth:`commit` renames it into place, :meth:`discard`
    removes it; both release the lock."""

    path: Path
    final: Path
    fd: int | None = field(default=None, repr=False)

    def commit(self, replace: Replace = True) -> Path:
        """Rename onto ``final`` (atomic; :func:`move_into_place` says what ``replace`` allows);
        OSError if it cannot (FileExistsError for a file there that may not be replaced; the
        temporary is then removed).  Returns the path written (another with :class:`Beside`)."""
        try:
            written = move_into_place(self.path, self.final, replace)
        except OSError:
            self.discard()
            raise
        self._release()
        return written

    def release(self) -> None:
        """Release the lock and keep the complete file, for another process to commit (a Ray actor
        hands its staged output to the driver, which records it before renaming it into place)."""
        self._release()

    def discard(self) -> None:
        """Remove the temporary file (if still there) and release the lock."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self._release()

    def _release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def create(final: str | os.PathLike, *, keep_suffix: bool = False) -> Staged:
    """Create an empty, locked temporary file next to ``final`` (its folder is
    created if needed).  ``keep_suffix``: end the name with ``final``'s suffix
    (a video container is chosen by it).  OSError if the folder cannot be written."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = final.suffix if keep_suffix and 0 < len(final.suffix) <= MAX_SUFFIX and "/" not in final.suffix else ""
    tag = name_tag(final.name)
    for _ in range(100):
        rand = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        path = final.parent / f"{PREFIX}{tag}-{rand}.part{suffix}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # new and unique: nobody else holds it
        return Staged(path, final, fd)
    raise FileExistsError(f"{final.parent}: no free temporary name")


def sweep(folder: str | os.PathLike, final_names: Iterable[str], *, recursive: bool = False) -> int:
    """Remove temporaries that a killed writer left for the outputs named
    ``final_names`` (file names) in ``folder`` (and its sub-folders when
    ``recursive``).  Temporaries still locked by a live writer, other
    outputs' temporaries and every other file are left alone.  Returns the
    number removed."""
    if fcntl is None:
        return 0
    tags = {name_tag(n) for n in final_names}
    if not tags:
        return 0
    removed = 0
    walker = os.walk(folder) if recursive else [(str(folder), [], _listdir(folder))]
    for dirpath, _, files in walker:
        for fn in files:
            m = TEMP_RE.match(fn)
            if m is None or m.group(1) not in tags:
                continue
            removed += _remove_if_abandoned(Path(dirpath) / fn)
    return removed


def being_written(final: str | os.PathLike) -> bool:
    """Whether a live writer (a run still going, in this process or another) holds a temporary
    file for ``final``: another run writing the same output.  Always False where there is no
    ``flock`` (Windows)."""
    if fcntl is None:
        return False
    final = Path(final)
    tag = name_tag(final.name)
    for fn in _listdir(final.parent):
        m = TEMP_RE.match(fn)
        if m is None or m.group(1) != tag:
            continue
        try:
            fd = os.open(final.parent / fn, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
    return False


def _listdir(folder: str | os.PathLike) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _remove_if_abandoned(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # gone, a link, unreadable: not ours to touch
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # its writer is alive
        if not os.path.isfile(path) or os.stat(path).st_ino != os.fstat(fd).st_ino:
            return 0  # replaced meanwhile
        os.unlink(path)
        log.debug("removed a temporary file a killed run left: %s", path)
        return 1
    except OSError:
        return 0
    finally:
        os.close(fd)


__all__ = ["Beside", "MAX_SUFFIX", "PREFIX", "Replace", "Staged", "TEMP_RE", "UMASK", "being_written", "create",
           "is_temp_name",
           "move_into_place", "name_tag", "sweep"]
