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

(``streamcolor batch`` keeps its own keys unique in :mod:`streamcolor.archive`.)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from streamcolor.errors import OutputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """One input and where its output goes; ``renamed`` when ``~N`` was added."""

    src: Path
    dst: Path
    renamed: bool = False


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
    """(device, inode) of the file a path names (links followed), or None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _slot(dst: Path) -> tuple[str, str]:
    """What two output paths share when they are one file: the real folder and the case-folded name."""
    return os.path.normcase(os.path.realpath(dst.parent)), dst.name.casefold()


def plan_outputs(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]]) -> list[Planned]:
    """The output of each ``(input, proposed output)`` pair, made safe.

    Raises OutputError (naming both paths) when a proposed output is an input
    file itself; later outputs that would land on an earlier one's file get
    ``stem~N.suffix``.
    """
    inputs: dict[tuple[int, int], Path] = {}
    for src, _ in pairs:
        ident = _identity(Path(src))
        if ident is not None:
            inputs.setdefault(ident, Path(src))
    planned: list[Planned] = []
    taken: set[tuple[str, str]] = set()
    for src, proposed in pairs:
        src, dst = Path(src), Path(proposed)
        original = dst
        n = 1
        while True:
            ident = _identity(dst)
            if ident is not None and ident in inputs:
                if dst == original:
                    same = inputs[ident]
                    what = "that input itself" if same == src else f"the input {same}"
                    raise OutputError(f"{dst}: the output for {src} would replace {what}; "
                                      "choose another output (-o) so that the originals are kept")
            elif _slot(dst) not in taken:
                break
            n += 1
            dst = original.with_name(numbered(original.name, n))
        taken.add(_slot(dst))
        planned.append(Planned(src, dst, renamed=dst != original))
    return planned


def describe_renames(planned: Sequence[Planned]) -> list[str]:
    """One line per output that got ``~N``, for the user."""
    return [f"note: {p.src}: its output name is taken by another input's output; writing {p.dst}"
            for p in planned if p.renamed]


__all__ = ["NAME_MAX", "Planned", "describe_renames", "fitted", "numbered", "plan_outputs"]
