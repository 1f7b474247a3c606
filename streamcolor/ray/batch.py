"""``ColorizeBatch``: the unit of work of every Ray path, and testable without Ray.

``__init__`` loads the engine once (per actor); ``__call__`` maps a
``dict[str, np.ndarray]`` batch of encoded images to one with the results
added, through the one per-item path (:func:`streamcolor.items.colorize_items`).
The actor pool (:mod:`streamcolor.ray.pool`) and the Ray Data job
(:mod:`streamcolor.ray.collection`) both use it.  Nothing here imports Ray;
outputs for a URI go through pyarrow's filesystems (Ray Data's own I/O layer).
"""

from __future__ import annotations

import os
import time
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from streamcolor.archive import BatchOptions, output_key, safe_member_path
from streamcolor.colorize import ColorOptions
from streamcolor.errors import OutputError
from streamcolor.items import FolderSink, Named, colorize_items
from streamcolor.manifest import FAILED, SKIPPED

if TYPE_CHECKING:
    from streamcolor.engines import Engine

#: Columns ColorizeBatch adds to a batch.
RESULT_COLUMNS = ("key", "state", "error", "output")


def filesystem(uri: str | os.PathLike):
    """(pyarrow filesystem, path in it) for a local path or a URI such as ``s3://bucket/prefix``."""
    from pyarrow import fs as pafs

    uri = str(uri)
    if "://" in uri and not uri.startswith("file://"):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(path)


def is_local(fs) -> bool:
    """Whether a pyarrow filesystem is this machine's."""
    return type(fs).__name__ == "LocalFileSystem"


class FilesystemSink:
    """Outputs written to a pyarrow filesystem (``s3://``, ``gs://``, HDFS...):
    one stream per output, so an object appears whole or not at all."""

    def __init__(self, fs, root: str):
        self.fs, self.root = fs, root.rstrip("/")
        self._dirs: set[str] = set()

    def write(self, key: str, data: bytes) -> None:
        path = f"{self.root}/{key}"
        try:
            folder = path.rsplit("/", 1)[0]
            if folder not in self._dirs:  # object stores need none, but HDFS and others do: once per folder
                self.fs.create_dir(folder, recursive=True)
                self._dirs.add(folder)
            with self.fs.open_output_stream(path) as fh:  # one PUT: the object appears whole or not at all
                fh.write(data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc})") from exc


def sink_for(out: str | os.PathLike, *, keep_others: bool = False, staging: bool = False):
    """The sink for an output folder or URI: atomic local writes, or the URI's filesystem.
    ``keep_others`` (local folders): a file found at an output's name is kept, and the item fails
    with the reason, unless the item says it may replace that file (:class:`FolderSink`);
    ``staging`` (local folders): outputs are complete temporary files, renamed by the caller."""
    fs, root = filesystem(out)
    if is_local(fs):
        return FolderSink(root, keep_others=keep_others, staging=staging)
    return FilesystemSink(fs, root)


def item_key(path: str, root: str, output_format: str = "same") -> tuple[str | None, str | None]:
    """Output key (path relative to OUT) of the file ``path`` under ``root``:
    ``(key, None)``, or ``(None, reason)`` for a name that is unsafe to write."""
    rel = path[len(root):].lstrip("/") if path.startswith(root.rstrip("/") + "/") else PurePosixPath(path).name
    return output_key(rel, output_format, backslashes=False)  # (a file's name: ``\\`` is one of its characters)


class _TimedEngine:
    """An engine whose calls are timed (``seconds``); everything else passes through."""

    def __init__(self, engine: "Engine"):
        self.wrapped = engine
        self.seconds = 0.0

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)

    def _timed(self, method: str, *args):
        t = time.perf_counter()
        try:
            return getattr(self.wrapped, method)(*args)
        finally:
            self.seconds += time.perf_counter() - t

    def embed(self, l_ext):
        return self._timed("embed", l_ext)

    def colorize(self, l, embedding):
        return self._timed("colorize", l, embedding)

    def predict(self, l, embedding=None):
        return self._timed("predict", l, embedding)


class ColorizeBatch:
    """Colorize a batch of encoded images: the unit of work of every Ray path.

    ``__init__`` loads the engine once (per actor); ``__call__`` takes a batch
    ``dict[str, np.ndarray]`` with the columns

    * ``bytes``: the encoded images (object array of bytes), and
    * ``key``: each output path relative to the output (object array of str),
      or ``path`` (what ``ray.data.read_binary_files(include_paths=True)``
      gives), from which the key is made relative to ``root``;
    * optionally ``replaces``: for each row the identity of the one file its
      output may replace (its own earlier output; "" for none);

    and returns the batch without ``bytes``, with the columns added:
    ``key``, ``state`` ("done", "failed" or "skipped"), ``error`` (the reason,
    "" when done), ``output`` (the written path relative to the output, "" if
    none) and, when no output location is set, ``image`` (the encoded result,
    b"" if none).  A bad item is reported in its row and never raises; only a
    location that cannot be written (read-only, full) raises OutputError.

    Parameters
    ----------
    model:
        A shipped model name, a bundle folder, or a loaded engine (for use
        without Ray; an engine cannot be sent to an actor).
    backend:
        See :func:`streamcolor.load_engine`.
    options:
        Output format, quality, render size, batching and limits:
        :class:`~streamcolor.archive.BatchOptions` (its thread and archive
        fields are not used here).
    out:
        Where outputs go: a local folder (written atomically, as plain
        ``batch`` does), a URI pyarrow understands (``s3://bucket/prefix``;
        one object PUT per output), or None to return them in ``image``.
    root:
        The source root that ``path`` values are relative to.
    engine_options:
        Passed to :func:`streamcolor.load_engine` (e.g. ``threads``, ``device``).
    renames:
        ``path -> key`` for the few paths whose default key is taken by another
        file (``a.gif`` and ``a.png`` both becoming ``a.png``).
    keep_others:
        In a local output folder, never replace a file found at an output's
        name (one of the user's that appeared while the job ran): the item
        fails with the reason instead; only the file a row's ``replaces``
        names may be replaced.  False: replace whatever is there (what
        ``collection --overwrite`` asks for).
    staging:
        In a local output folder, leave each output as its complete
        temporary file (column ``staged``: its name, beside the output) for
        the caller to record and rename into place: what ``batch --ray``
        does, so that an output is never in place before the job's manifest
        says so (a run stopped in between left files that its rerun took
        for the user's).
    threads:
        Cap OpenCV's threads in this process (the Ray paths set it to the
        actor's CPUs so that actors sharing a node do not oversubscribe it);
        None leaves the process alone.
    """

    def __init__(self, model: "str | os.PathLike | Engine" = "default", backend: str = "auto", *,
                 options: BatchOptions = BatchOptions(), out: str | os.PathLike | None = None,
                 root: str | None = None, engine_options: dict | None = None,
                 renames: dict[str, str] | None = None, threads: int | None = None, keep_others: bool = True,
                 staging: bool = False):
        from streamcolor.engines import Engine, load_engine

        if threads is not None:
            import cv2

            cv2.setNumThreads(threads)
        engine = model if isinstance(model, Engine) else load_engine(model, backend, **(engine_options or {}))
        self.engine = _TimedEngine(engine)
        self.options = options
        self.color: ColorOptions = options.color_options(engine)
        self.root = root
        self.renames = renames or {}
        self.sink = sink_for(out, keep_others=keep_others, staging=staging) if out is not None else None
        self.staging = bool(getattr(self.sink, "staging", False))

    @property
    def engine_s(self) -> float:
        """Seconds spent inside engine calls so far."""
        return self.engine.seconds

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        datas = list(batch["bytes"])
        n = len(datas)
        keys, refused = self._keys(batch, n)
        states, errors, outputs, dropped, staged = [FAILED] * n, [""] * n, [""] * n, [False] * n, [""] * n
        images: list[bytes] = [b""] * n
        rows = [i for i in range(n) if not refused[i]]
        for i in range(n):
            if refused[i]:
                states[i], errors[i] = SKIPPED, refused[i]
        replaces = [str(r) or None for r in batch["replaces"]] if "replaces" in batch else [None] * n
        outcomes = colorize_items([(Named(keys[i], replaces[i]), bytes(datas[i])) for i in rows], engine=self.engine,
                                  options=self.color, sink=self.sink, batch_size=self.options.batch_for(self.engine.wrapped))
        for i, outcome in zip(rows, outcomes):
            states[i], errors[i], outputs[i] = outcome.state, outcome.reason or "", outcome.output or ""
            dropped[i] = outcome.dropped_alpha
            images[i] = outcome.data or b""
            if outcome.staged is not None:  # complete, unlocked now: the caller records it, then renames it
                outcome.staged.release()
                staged[i] = outcome.staged.path.name
        result = {k: v for k, v in batch.items() if k != "bytes"}
        result.update(key=objects(keys), state=objects(states), error=objects(errors), output=objects(outputs),
                      dropped_alpha=np.array(dropped, dtype=bool))
        if self.sink is None:
            result["image"] = objects(images)
        if self.staging:
            result["staged"] = objects(staged)
        return result

    def _keys(self, batch: dict[str, np.ndarray], n: int) -> tuple[list[str], list[str]]:
        """Output keys, and for each row the reason it is refused ("" if not)."""
        if "key" in batch:
            keys = [str(k) for k in batch["key"]]
            refused = []
            for k in keys:
                safe, unsafe = safe_member_path(k, backslashes=False)
                refused.append("" if safe == k else (unsafe or f"key {k!r} is not a normalised relative path"))
            return keys, refused
        if "path" not in batch:
            raise ValueError(f"a batch needs a 'key' or a 'path' column besides 'bytes', got {sorted(batch)}")
        keys, refused = [], []
        for p in batch["path"]:
            p = str(p)
            key, unsafe = (self.renames[p], None) if p in self.renames else \
                item_key(p, self.root or "", self.options.output_format)
            keys.append(key or p)
            refused.append(unsafe or "")
        return keys, refused


def objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of ``values`` (a batch column of bytes or str)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


__all__ = ["ColorizeBatch", "FilesystemSink", "RESULT_COLUMNS", "filesystem", "is_local", "item_key", "objects",
           "sink_for"]
