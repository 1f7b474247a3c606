"""Where the outputs of `streamcolor image` and `streamcolor video` go: the one
place that decides output paths for a list of inputs.

Two rules keep a user's files safe whatever the paths look like:

* an output that is one of the inputs (the same path, a symbolic or hard
  link to it, another spelling on a case-insensitive disk: anything that is the
  same file on disk) refuses the whole run before anything is written;
* two inputs whose outputs would be one file (``a/x.jpg`` and ``b/x.jpg`` into
  one folder, or ``X.jpg`` and ``x.jpg`` on a case-insensitive disk) do not
  overwrite each other: the later one gets ``x~2.jpg``, in input order, so a
  rerun gives the same names.

And, for the command line (``keep_others``), a third: a file already at an
output's path is replaced only when streamcolor wrote it from the same input
and it is unchanged since (:func:`remember_written` notes each output in a
small database in the user's cache folder: path, inode, size, modification
time, input); the colorized ``b/x.jpg`` never replaces the colorized ``a/x.jpg``.  Anything else
there -- a photo of the user's, an output they retouched since -- is kept and
the new output gets ``x~2.jpg``.  Why a record rather than a mark inside the
file: it works for every format and container alike, and an edit (which
changes the modification time) makes the file the user's.

(``streamcolor batch`` keeps its own keys unique in :mod:`streamcolor.archive`.)
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Hashable, Sequence

from streamcolor.engines.archives import name_key
from streamcolor.errors import OutputError, one_line

if TYPE_CHECKING:
    from streamcolor import tempfiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """One input and where its output goes; ``renamed`` when ``~N`` was added."""

    src: Path
    dst: Path
    renamed: bool = False
    kept: Path | None = None  # a file found at the proposed output that streamcolor did not write: left as it is
    kept_asked: bool = True  # ``kept`` is at the name asked for (which --overwrite replaces), not at a ``~N``


#: Longest file name, in bytes, on the usual filesystems.
NAME_MAX = 255


def numbered(name: str, n: int) -> str:
    """``stem~n.suffix`` for a file name, its stem shortened when needed so that
    the name stays within :data:`NAME_MAX` bytes (a name that fits must not stop
    fitting because it was numbered)."""
    return fitted(name, f"~{n}")


def fitted(name: str, tail: str = "") -> str:
    """``stem + tail + suffix`` for a file name, the stem shortened (by whole characters) so that
    it fits in :data:`NAME_MAX` bytes: an output whose name grew (a number added, a longer
    suffix) must not fail where its input's name fitted."""
    p = PurePosixPath(name)
    stem, suffix = p.stem, p.suffix
    room = NAME_MAX - len(os.fsencode(tail + suffix))
    while stem and len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return f"{stem}{tail}{suffix}"


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file a path names (links followed), or None when there is none.

    A path through folders not made yet (``new/../a.jpg``) names what it will name once they are
    made: ``realpath`` takes the part that is missing as written, ``..`` included."""
    for candidate in (path, os.path.realpath(path)):
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        return st.st_dev, st.st_ino
    return None


def _slot(dst: Path) -> tuple[str, str]:
    """What two output paths share when they are one file: the real folder and the name's :func:`name_key`."""
    return os.path.normcase(os.path.realpath(dst.parent)), name_key(dst.name)


def plan_outputs(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], *,
                 keep_others: bool = False, picked: bool = False) -> list[Planned]:
    """The output of each ``(input, proposed output)`` pair, made safe.

    Raises OutputError (naming both paths) when a proposed output is an input
    file itself; later outputs that would land on an earlier one's file get
    ``stem~N.suffix``.  ``keep_others``: a path where something already is
    that streamcolor did not write (:func:`written_by_streamcolor`) is passed
    over for the next ``stem~N.suffix`` as well (the command line's default:
    a user's file is never replaced).  A numbered name is passed over in that
    case whatever ``keep_others`` says (``--overwrite`` is for the name asked
    for, not for one streamcolor picks).  A number never gives an output the
    name that another pair proposes (``x~2.jpg`` of an input named so keeps it).
    ``picked``: the proposed names are streamcolor's (``photo-colour.mkv``), not the user's, so one
    that is *another* input (a file of the user's named so) is passed over for ``stem~N.suffix``
    instead of refusing the run; an output onto its own input is refused either way.
    """
    inputs: dict[tuple[int, int], Path] = {}
    for src, _ in pairs:
        ident = _identity(Path(src))
        if ident is not None:
            inputs.setdefault(ident, Path(src))
    planned: list[Planned] = []
    taken: set[tuple[str, str]] = set()
    slots = [_slot(Path(proposed)) for _, proposed in pairs]
    reserved = set(slots)  # a number never takes another input's own output
    # who keeps a name several outputs propose: the input whose own earlier output is there (outputs
    # never move), else as `batch` names its members (:func:`claimants`); so the order given changes nothing
    keeps = claimants([(slot, Path(src).name == Path(proposed).name) for slot, (src, proposed) in zip(slots, pairs)])
    if keep_others:
        sharing: dict[tuple[str, str], list[int]] = {}
        for i, slot in enumerate(slots):
            sharing.setdefault(slot, []).append(i)
        for users in (u for u in sharing.values() if len(u) > 1 and os.path.lexists(_there(Path(pairs[u[0]][1])))):
            owner = next((i for i in users if written_by_streamcolor(pairs[i][1], pairs[i][0])), None)
            if owner is not None:
                keeps = (keeps - set(users)) | {owner}
    for i, (src, proposed) in enumerate(pairs):
        src, dst = Path(src), Path(proposed)
        original = dst
        kept: Path | None = None
        n = 1
        while True:
            ident = _identity(dst)
            if ident is not None and ident in inputs:
                if dst == original and not (picked and inputs[ident] != src):
                    same = inputs[ident]
                    what = "that input itself" if same == src else f"the input {same}"
                    raise OutputError(f"{dst}: the output for {src} would replace {what}; "
                                      "choose another output (-o) so that the originals are kept")
            elif _slot(dst) not in taken and (i in keeps if dst == original else _slot(dst) not in reserved):
                # a number streamcolor picks never lands on a file it did not write from this input,
                # --overwrite or not: --overwrite is for the name asked for
                if not ((keep_others or dst != original) and os.path.lexists(_there(dst))
                        and not written_by_streamcolor(dst, pairs[i][0])):
                    break
                if keep_others:
                    kept = kept or dst
            n += 1
            dst = original.with_name(numbered(original.name, n))
        taken.add(_slot(dst))
        planned.append(Planned(src, dst, renamed=dst != original, kept=kept, kept_asked=kept == original))
    return planned


def claimants(keys: Sequence[tuple[Hashable | None, bool]]) -> set[int]:
    """The indices of the ``(key, own)`` pairs (None: no key) that keep their key when several
    have one key (keys compared as given: callers fold case): one whose ``own`` is true (its
    name as listed) before one whose name was converted, then the first listed.  Why not
    simply the first listed: which of ``photo.jpg`` and ``photo.png`` comes first is an
    accident of the listing, while the one already named ``photo.png`` is the one a user looks
    for there."""
    best: dict[Hashable, int] = {}
    for i, (key, own) in enumerate(keys):
        if key is None:
            continue
        j = best.get(key)
        if j is None or (own and not keys[j][1]):
            best[key] = i
    return set(best.values())


def describe_renames(planned: Sequence[Planned]) -> list[str]:
    """One line per output that got ``~N``, for the user."""
    def line(p: Planned) -> str:
        if p.kept is None:
            return f"note: {p.src}: its output name is taken by another input's output; writing {p.dst}"
        if os.path.isdir(p.kept):  # (--overwrite replaces a file, never a folder)
            return f"note: {p.src}: {p.kept} is a folder, so it is kept; writing {p.dst}"
        return (f"note: {p.src}: {p.kept} is not its earlier output (a file of yours, another input's output, or "
                f"changed since), so it is kept; writing {p.dst}{' (--overwrite replaces it)' if p.kept_asked else ''}")

    return [one_line(line(p)) for p in planned if p.renamed]  # (names as printed: one line each)


# --------------------------------------------------------------------------- files streamcolor wrote

#: The record of the files that `streamcolor image` and `video` wrote, in the cache folder
#: (``$STREAMCOLOR_CACHE``, else ``~/.cache/streamcolor``).
WRITTEN_DB = "written.sqlite"
#: Rows kept at most; the oldest go first (a file forgotten is only ever kept, never lost).
WRITTEN_KEEP = 100_000


_UNRECORDED: list[str] = []  # the first output this process could not note (warned about once)


def _written_db() -> sqlite3.Connection:
    folder = Path(os.environ.get("STREAMCOLOR_CACHE") or Path.home() / ".cache" / "streamcolor")
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / WRITTEN_DB, timeout=10.0, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS written (path TEXT PRIMARY KEY, identity TEXT NOT NULL, source TEXT)")
    if "source" not in {row[1] for row in db.execute("PRAGMA table_info(written)")}:  # (an earlier version's)
        db.execute("ALTER TABLE written ADD COLUMN source TEXT")
    return db


@dataclass(frozen=True)
class Piped:
    """Standard input as an input: the path ``-``, named in the record of written files by its
    bytes' SHA-256.  Why: a rerun piping the same bytes may replace its own output, while other
    bytes piped to the same ``-o`` keep the first output and are written as ``name~2``, as two
    files of one name from different folders are."""

    digest: str  # SHA-256 of what was read, hex

    def __fspath__(self) -> str:
        return "-"


def _source_id(source: str | os.PathLike | None) -> str | None:
    """How the record names an input: its real path, ``<stdin SHA-256>`` for bytes piped in
    (:class:`Piped`; ``<stdin>`` for ``-`` when they are not known), None when not known."""
    if source is None:
        return None
    if isinstance(source, Piped):
        return f"<stdin {source.digest}>"
    return "<stdin>" if str(source) == "-" else os.fsencode(os.path.realpath(source)).hex()


def _there(path: Path) -> Path:
    """Where ``path`` leads once its folders are made: its folder's links and ``..`` resolved
    (``new/../a.jpg`` is ``a.jpg`` even before ``new`` exists), its own name as written."""
    return Path(os.path.realpath(path.parent)) / path.name


def _where(path: Path) -> tuple[str, str] | None:
    """(the path with its folder resolved, the identity of the file there: inode, size, modification
    time), or None when nothing plain is there (a link is never "ours")."""
    real = _there(path)
    try:
        st = os.lstat(real)
    except OSError:
        return None
    if not os.path.isfile(real) or os.path.islink(real):
        return None
    return os.fsencode(real).hex(), f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"  # (any name's bytes)


def remember_written(path: str | os.PathLike, source: str | os.PathLike | None = None) -> None:
    """Note that streamcolor just wrote ``path`` (as it is now) from the input ``source``, so that a
    later run from that input may replace it.
    A record that cannot be written is logged and left: the next run then keeps the file and
    writes ``~2`` beside it, which loses nothing."""
    where = _where(Path(path))
    if where is None:
        return
    try:
        db = _written_db()
        try:
            db.execute("INSERT OR REPLACE INTO written (path, identity, source) VALUES (?, ?, ?)",
                       (*where, _source_id(source)))
            db.execute("DELETE FROM written WHERE rowid <= (SELECT MAX(rowid) FROM written) - ?", (WRITTEN_KEEP,))
        finally:
            db.close()
    except (OSError, sqlite3.Error) as exc:
        if not _UNRECORDED:  # once a process: the cause is the same for every output
            log.warning("cannot note %s as written by streamcolor (%s): a rerun will take it for a file of yours "
                        "and keep it; set $STREAMCOLOR_CACHE to a folder that can be written",
                        path, exc)
            _UNRECORDED.append(str(path))


def written_by_streamcolor(path: str | os.PathLike, source: str | os.PathLike | None = None) -> bool:
    """Whether the file at ``path`` is one streamcolor wrote (:func:`remember_written`) and is
    unchanged since: the same file (inode), size and modification time; with ``source``, also
    from that input (a record of an earlier version, which did not note the input, counts as any)."""
    record = _unchanged_record(path)
    if record is None:
        return False
    return source is None or record[0] is None or record[0] == _source_id(source)


def written_from(path: str | os.PathLike) -> str | None:
    """The real path of the input streamcolor wrote the file at ``path`` from, while that file is
    unchanged (:func:`written_by_streamcolor`); None for any other file, or an input not on disk."""
    record = _unchanged_record(path)
    if record is None or not record[0] or record[0].startswith("<"):
        return None
    try:
        return os.fsdecode(bytes.fromhex(record[0]))
    except ValueError:
        return None


def _unchanged_record(path: str | os.PathLike) -> tuple[str | None] | None:
    """(the source noted,) for the file at ``path`` when the record of written files has it as it
    is now; None otherwise (no record, a changed file, a record that cannot be read)."""
    where = _where(Path(path))
    if where is None:
        return None
    try:
        db = _written_db()
        try:
            row = db.execute("SELECT identity, source FROM written WHERE path = ?", (where[0],)).fetchone()
        finally:
            db.close()
    except (OSError, sqlite3.Error) as exc:
        log.debug("cannot read the record of files streamcolor wrote (%s)", exc)
        return None
    if row is None or row[0] != where[1]:
        return None
    return (row[1],)


def replace_policy(existing: str, source: str | os.PathLike, *, renamed: bool = False) -> "tempfiles.Replace":
    """What the output of ``source`` by `image` or `video` may replace when it is renamed into
    place (:func:`streamcolor.tempfiles.move_into_place`), for the verb's ``existing`` setting:
    anything with ``--overwrite``; otherwise only a file streamcolor wrote from that input and
    nobody changed since, any other file there being kept and the output written as ``name~N``
    beside it.  Why at the rename too, not only when outputs are planned: a file that appears
    meanwhile (another run writing into the same folder, a user saving there) is kept.
    ``renamed``: the output got a number (:attr:`Planned.renamed`); ``--overwrite`` does not
    reach such a name, which the user never gave."""
    from streamcolor import tempfiles

    if existing == "overwrite" and not renamed:
        return True
    return tempfiles.Beside(lambda path: written_by_streamcolor(path, source))


__all__ = ["NAME_MAX", "Piped", "Planned", "claimants", "describe_renames", "fitted", "numbered", "plan_outputs",
           "remember_written", "replace_policy", "written_by_streamcolor", "written_from"]
