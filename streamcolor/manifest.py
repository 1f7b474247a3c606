"""The resume manifest of a batch job: one SQLite row per item.

A batch writes into an output folder ``OUT``; ``OUT/.streamcolor-manifest.sqlite``
records, for every item of the job, its state and why:

* ``pending``: listed, not finished yet (or reset because its source changed);
* ``done``: the output file was written (atomically) *before* the row was
  marked, so a ``done`` row always has a complete file behind it;
* ``failed``: tried and could not be done (corrupt, truncated, empty, not an
  image, over the pixel limit, cannot be encoded);
* ``skipped``: refused without decoding (unsafe member name, link or device
  member, over the size or compression-ratio limit).

The database is in WAL mode and every state change is committed at once, so a
run killed with SIGKILL loses at most the items in flight; the same command
re-run finishes the rest.  An item whose output was renamed into place but
whose row was not yet marked is simply written again (to the same path, by an
atomic replace), so each item ends up as exactly one file.

The class is used from one thread (the one that drives the batch); the Ray
actor pool records outcomes from its driver in the same way.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

#: File name of the manifest inside the output folder.
FILENAME = ".streamcolor-manifest.sqlite"
#: Item states.
PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
STATES = (PENDING, DONE, FAILED, SKIPPED)
_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One row: ``key`` is the item's output path relative to OUT (posix), or a
    ``?``-prefixed id for items that are refused before an output name exists."""

    key: str
    source: str  # the source folder or archive, as given
    member: str  # the name inside the source, as stored there
    stamp: str  # change detector: size and mtime, or size and CRC
    state: str
    reason: str | None = None  # why failed/skipped
    output: str | None = None  # output path relative to OUT, once done


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
                updated REAL
            );
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
            """
        )
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))

    @classmethod
    def open(cls, out_dir: str | Path) -> "Manifest":
        """The manifest of the job writing into ``out_dir`` (created if new)."""
        return cls(Path(out_dir) / FILENAME)

    # -- registering the listing -------------------------------------------------------------

    def sync(self, entries: Iterable[Entry]) -> dict[str, Entry]:
        """Register a job's listing and return every listed key's current entry.

        New keys are inserted with the given state (``pending``, or ``skipped``
        for items refused at listing).  A known key whose source, member or
        stamp changed is reset to the given state: the source file changed, so
        the old output no longer stands.  Known keys that are not done are
        reset too (failed and skipped items are retried on every run: limits
        may have been raised, and bad items fail quickly).  Done rows with the
        same stamp are kept.
        """
        now = time.time()
        result: dict[str, Entry] = {}
        with self._db:
            self._db.execute("BEGIN")
            for e in entries:
                row = self._db.execute("SELECT source, member, stamp, state, reason, output FROM items "
                                       "WHERE key = ?", (e.key,)).fetchone()
                if row is not None and row[3] == DONE and tuple(row[:3]) == (e.source, e.member, e.stamp):
                    result[e.key] = Entry(e.key, *row)
                    continue
                self._db.execute(
                    "INSERT OR REPLACE INTO items (key, source, member, stamp, state, reason, output, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                    (e.key, e.source, e.member, e.stamp, e.state, e.reason, now))
                result[e.key] = Entry(e.key, e.source, e.member, e.stamp, e.state, e.reason, None)
        return result

    # -- recording outcomes ------------------------------------------------------------------

    def mark(self, key: str, state: str, *, reason: str | None = None, output: str | None = None) -> None:
        """Set one item's state and commit at once."""
        if state not in STATES:
            raise ValueError(f"unknown item state {state!r}; one of {STATES}")
        cur = self._db.execute("UPDATE items SET state = ?, reason = ?, output = ?, updated = ? WHERE key = ?",
                               (state, reason, output, time.time(), key))
        if cur.rowcount != 1:
            raise KeyError(f"manifest has no item {key!r} (sync the listing first)")

    def reset(self, key: str) -> None:
        """Put a done item back to pending (its output went missing)."""
        self.mark(key, PENDING)

    # -- reading -----------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        row = self._db.execute("SELECT key, source, member, stamp, state, reason, output FROM items WHERE key = ?",
                               (key,)).fetchone()
        return Entry(*row) if row else None

    def entries(self, states: Iterable[str] = STATES, keys: set[str] | None = None) -> Iterator[Entry]:
        """Rows in the given states, in key order; only ``keys`` when given."""
        states = tuple(states)
        marks = ",".join("?" * len(states))
        for row in self._db.execute(f"SELECT key, source, member, stamp, state, reason, output FROM items "
                                    f"WHERE state IN ({marks}) ORDER BY key", states).fetchall():
            if keys is None or row[0] in keys:
                yield Entry(*row)

    def counts(self, keys: set[str] | None = None) -> dict[str, int]:
        """Number of items per state (only ``keys`` when given)."""
        out = dict.fromkeys(STATES, 0)
        for e in self.entries(keys=keys):
            out[e.state] += 1
        return out

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
