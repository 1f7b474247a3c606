"""The resume manifest of a batch job: one SQLite row per item.

A batch writes into an output folder ``OUT``; ``OUT/.streamcolor/manifest.sqlite``
records, for every item of the job, its state and why (the hidden
``.streamcolor/`` folder holds the job's own files, apart from the outputs:
no member name can collide with them):

* ``pending``: listed, not finished yet (or reset because its source changed);
* ``done``: the output file was written (atomically) *before* the row was
  marked, so a ``done`` row always has a complete file behind it;
* ``failed``: tried and could not be done (corrupt, truncated, empty, not an
  image, over the pixel limit, cannot be encoded);
* ``skipped``: refused without decoding (unsafe member name, link or device
  member, over the size or compression-ratio limit).

The database is in WAL mode and every state change is committed at once, so a
run killed with SIGKILL loses at most the items in flight; the same command
re-run finishes the rest.  Each output is written exactly once: its complete
temporary file is recorded (``done`` with ``temp``) *before* it is renamed
into place, so a rerun after a kill between the two finishes the rename
(:meth:`Manifest.pending_renames`) instead of colorizing the item again.

Names are stored as they are, UTF-8 text when they are valid UTF-8 and bytes
otherwise (file names that are not UTF-8 come in as ``surrogateescape``
strings), so no file or member name can break the manifest.

The class is used from one thread (the one that drives the batch); the Ray
actor pool records outcomes from its driver in the same way.
"""

from __future__ import annotations

import os
import sqlite3
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

#: The folder inside the output folder that holds the job's own files (manifest, lock).
JOB_DIR = ".streamcolor"
#: File name of the manifest inside :data:`JOB_DIR`.
FILENAME = "manifest.sqlite"
#: Where earlier versions kept the manifest (directly in the output folder); moved on open.
OLD_FILENAME = ".streamcolor-manifest.sqlite"
#: Item states.
PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
STATES = (PENDING, DONE, FAILED, SKIPPED)
_SCHEMA_VERSION = 5
_COLUMNS = "key, source, member, stamp, state, reason, output, temp, written, updated, replaces"


@dataclass(frozen=True)
class Entry:
    """One row: ``key`` is the item's output path relative to OUT (posix), or a
    ``?``-prefixed id for items that are refused before an output name exists."""

    key: str
    source: str  # the source folder or archive: its absolute path (as typed, in manifests of earlier versions)
    member: str  # the name inside the source, as stored there
    stamp: str  # change detector: size and mtime, or size and CRC
    state: str
    reason: str | None = None  # why failed/skipped
    output: str | None = None  # output path relative to OUT, once done
    temp: str | None = None  # the output's temporary file name (same folder) while it may still need its rename
    written: str | None = None  # the output file as the job wrote it (inode:size:mtime_ns); kept when the
    #                            item is reset, so that a later run knows whether what is there is still its own
    updated: float | None = None  # when the row last changed (seconds since the epoch)
    replaces: str | None = None  # with ``temp``: the identity of the file its rename may replace (the item's
    #                              own earlier output, see :func:`replaces_only`); None: none


class Manifest:
    """Per-item state of a batch job, stored in SQLite inside the output folder.

    >>> with Manifest.open(out_dir) as m:
    ...     todo = m.sync(entries)          # register the listing, get what is left
    ...     m.mark(key, "done", output=key)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against process death; WAL keeps it consistent
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS items (
                key TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                member TEXT NOT NULL,
                stamp TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                reason TEXT,
                output TEXT,
                updated REAL,
                temp TEXT
            );
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
            """
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(items)")}
        if "temp" not in columns:  # a version 1 manifest
            self._db.execute("ALTER TABLE items ADD COLUMN temp TEXT")
        if "made_with" not in columns:  # before version 3: done items' settings unknown (NULL)
            self._db.execute("ALTER TABLE items ADD COLUMN made_with TEXT")
        if "written" not in columns:  # before version 4: which file the job wrote unknown (NULL)
            self._db.execute("ALTER TABLE items ADD COLUMN written TEXT")
        if "replaces" not in columns:  # before version 5: a pending rename replaced nothing
            self._db.execute("ALTER TABLE items ADD COLUMN replaces TEXT")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))

    @classmethod
    def open(cls, out_dir: str | Path) -> "Manifest":
        """The manifest of the job writing into ``out_dir`` (created if new; one
        an earlier version left directly in ``out_dir`` is moved into place)."""
        out_dir = Path(out_dir)
        path = out_dir / JOB_DIR / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        old = out_dir / OLD_FILENAME
        if not path.exists() and old.is_file():
            con = sqlite3.connect(old)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
            os.replace(old, path)
            for extra in ("-wal", "-shm"):
                try:
                    os.unlink(f"{old}{extra}")
                except OSError:
                    pass
        return cls(path)

    # -- registering the listing -------------------------------------------------------------

    def sync(self, entries: Iterable[Entry]) -> dict[str, Entry]:
        """Register a job's listing and return every listed key's current entry.

        New keys are inserted with the given state (``pending``, or ``skipped``
        for items refused at listing).  A known key whose source (compared as the
        file it names: ``./scans`` and ``/home/me/scans`` are one), member or
        stamp changed is reset to the given state: the source file changed, so
        the old output no longer stands (what it was written as, ``written``,
        is kept: the new output replaces the old one only while it is unchanged).  Known keys that are not done are
        reset too (failed and skipped items are retried on every run: limits
        may have been raised, and bad items fail quickly).  Done rows with the
        same stamp are kept.
        """
        now = time.time()
        result: dict[str, Entry] = {}
        with self._db:
            self._db.execute("BEGIN")
            for e in entries:
                old = self.get(e.key)
                if old is not None and old.state == DONE and (old.member, old.stamp) == (e.member, e.stamp) and (
                        old.source == e.source or os.path.realpath(old.source) == os.path.realpath(e.source)):
                    if old.source != e.source:  # the same source spelt otherwise (a link; an older relative path)
                        self._db.execute("UPDATE items SET source = ? WHERE key = ?", (_enc(e.source), _enc(e.key)))
                        old = dataclasses.replace(old, source=e.source)
                    result[e.key] = old
                    continue
                self._db.execute(
                    "INSERT INTO items (key, source, member, stamp, state, reason, output, updated, temp, made_with) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL) ON CONFLICT(key) DO UPDATE SET "
                    "source = excluded.source, member = excluded.member, stamp = excluded.stamp, "
                    "state = excluded.state, reason = excluded.reason, output = NULL, updated = excluded.updated, "
                    "temp = NULL, made_with = NULL, replaces = NULL",
                    (_enc(e.key), _enc(e.source), _enc(e.member), e.stamp, e.state, _enc(e.reason), now))
                result[e.key] = Entry(e.key, e.source, e.member, e.stamp, e.state, e.reason, None,
                                      written=old.written if old is not None else None)
        return result

    # -- recording outcomes ------------------------------------------------------------------

    def mark(self, key: str, state: str, *, reason: str | None = None, output: str | None = None,
             temp: str | None = None, made_with: str | None = None, written: str | None = None,
             replaces: str | None = None) -> None:
        """Set one item's state and commit at once.  ``temp``: with ``done``, the
        name of the complete temporary file (in the output's folder) that is
        about to be renamed onto ``output``; ``made_with``: with ``done``, the
        settings that made the output (a JSON object, see :meth:`made_with`);
        ``written``: with ``done``, the output file's identity (see :attr:`Entry.written`;
        None when unknown); in other states the one recorded stays.  ``replaces``: with ``temp``,
        the identity of the file that the rename may replace (:attr:`Entry.replaces`)."""
        if state not in STATES:
            raise ValueError(f"unknown item state {state!r}; one of {STATES}")
        keep = "written" if state != DONE else "?"
        cur = self._db.execute("UPDATE items SET state = ?, reason = ?, output = ?, temp = ?, updated = ?, "
                               f"made_with = ?, written = {keep}, replaces = ? WHERE key = ?",
                               (state, _enc(reason), _enc(output), _enc(temp), time.time(), made_with,
                                *([written] if state == DONE else []), replaces if temp else None, _enc(key)))
        if cur.rowcount != 1:
            raise KeyError(f"manifest has no item {key!r} (sync the listing first)")

    def forget(self, key: str) -> None:
        """Drop a row: its output is no longer the job's (the user changed it, and the item's
        output now goes elsewhere), so later runs treat that file as the user's."""
        self._db.execute("DELETE FROM items WHERE key = ?", (_enc(key),))

    def renamed(self, key: str) -> None:
        """Forget a done item's temporary name: its rename is complete."""
        self._db.execute("UPDATE items SET temp = NULL, replaces = NULL WHERE key = ?", (_enc(key),))

    def renamed_all(self) -> None:
        """Forget every temporary name: the job's renames are all complete."""
        self._db.execute("UPDATE items SET temp = NULL, replaces = NULL WHERE temp IS NOT NULL")

    def pending_renames(self) -> list[Entry]:
        """Done items whose temporary file may not have been renamed yet (a
        run was killed in between): the caller renames what is still there."""
        return [_entry(row) for row in self._db.execute(
            f"SELECT {_COLUMNS} FROM items WHERE state = ? AND temp IS NOT NULL", (DONE,)).fetchall()]

    def reset(self, key: str) -> None:
        """Put a done item back to pending (its output went missing)."""
        self.mark(key, PENDING)

    # -- reading -----------------------------------------------------------------------------

    def made_with(self, keys: set[str] | None = None) -> dict[str, str]:
        """{key: the settings that made its output} of the done items (``keys`` only, when given)
        whose settings were recorded (outputs of earlier versions have none)."""
        rows = self._db.execute("SELECT key, made_with FROM items WHERE state = ? AND made_with IS NOT NULL",
                                (DONE,)).fetchall()
        out = {_dec(k): v for k, v in rows}
        return out if keys is None else {k: v for k, v in out.items() if k in keys}

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE key = ?", (_enc(key),)).fetchone()
        return _entry(row) if row else None

    def entries(self, states: Iterable[str] = STATES, keys: set[str] | None = None) -> Iterator[Entry]:
        """Rows in the given states, in key order; only ``keys`` when given."""
        states = tuple(states)
        marks = ",".join("?" * len(states))
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM items "
                                    f"WHERE state IN ({marks}) ORDER BY key", states).fetchall():
            entry = _entry(row)
            if keys is None or entry.key in keys:
                yield entry

    def counts(self, keys: set[str] | None = None) -> dict[str, int]:
        """Number of items per state (only ``keys`` when given)."""
        out = dict.fromkeys(STATES, 0)
        for e in self.entries(keys=keys):
            out[e.state] += 1
        return out

    # -- job-wide values ---------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A job-wide value stored with :meth:`set_meta` (None if never set)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str | None) -> None:
        """Store (or, with None, forget) a job-wide value, committed at once."""
        if value is None:
            self._db.execute("DELETE FROM meta WHERE name = ?", (name,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_identity(path: str | os.PathLike) -> str | None:
    """What tells the file at ``path`` from any other put there later or changed since (inode, size,
    modification time: a rename keeps them all; not the device number, which a network disk may
    change when it is mounted again), for :attr:`Entry.written`; None if none is there."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def replaces_only(identity: str | None) -> bool | Callable[[Path], bool]:
    """The rename policy (:func:`streamcolor.tempfiles.move_into_place`) of an output planned to
    replace the file of that :func:`file_identity` (the item's own earlier output, as the job wrote
    it), or nothing when None: any other file found there when the output is renamed into place
    (one that appeared, or changed, after the job planned its outputs) is kept."""
    if identity is None:
        return False
    return lambda path: file_identity(path) == identity


def _enc(text: str | None) -> str | bytes | None:
    """A name as stored: the text when it is valid UTF-8, else its bytes (a
    ``surrogateescape`` string from a file name that is not UTF-8)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _dec(value: str | bytes | None) -> str | None:
    """The inverse of :func:`_enc`."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _entry(row) -> Entry:
    return Entry(*(_dec(v) for v in row))
