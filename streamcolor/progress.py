"""Progress reporting for long jobs: a tqdm bar, a caller's callback, or nothing.

The long calls (:func:`streamcolor.colorize_video`,
:func:`streamcolor.colorize_archive` and their Ray versions) take
``progress=``:

* ``None`` (the default): a bar on stderr only when stderr is a terminal
  (tqdm's own ``disable=None`` convention), so logs and pipes stay clean;
* ``True`` / ``False``: always / never a bar;
* a callable ``fn(done, total)``: called in the calling thread after each
  item (image, frame, segment) with the count so far and the total (None
  when unknown); no bar is drawn.  This is the hook for a GUI, a web
  page or a job queue.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from tqdm import tqdm

#: What ``progress=`` accepts (see the module docstring).
Progress = Union[bool, None, Callable[[int, "int | None"], Any]]


class CallbackBar:
    """The part of tqdm's interface the jobs use, reporting to a callback instead of drawing."""

    def __init__(self, fn: Callable[[int, int | None], Any], total: int | None = None, initial: int = 0):
        self.fn, self.total, self.n = fn, total, initial

    def update(self, n: int = 1) -> None:
        self.n += n
        self.fn(self.n, self.total)

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "CallbackBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(progress: Progress, *, total: int | None, initial: int = 0, **tqdm_kw: Any) -> "tqdm | CallbackBar":
    """A tqdm bar (or a :class:`CallbackBar` for a callable ``progress``) for ``total`` items."""
    if callable(progress):
        return CallbackBar(progress, total, initial)
    disable = None if progress is None else not progress
    return tqdm(total=total, initial=initial, disable=disable, dynamic_ncols=True, **tqdm_kw)


__all__ = ["CallbackBar", "Progress", "progress_bar"]
