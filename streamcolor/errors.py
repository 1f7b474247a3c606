"""The exception types users of streamcolor catch."""

from __future__ import annotations



class StreamcolorError(Exception):
    """Base class: something about an input or output prevents the work.

    The message names the file and the reason; the underlying library error,
    if any, is chained as ``__cause__``.
    """


class InputError(StreamcolorError):
    """An input cannot be read: missing, not a file, corrupt, truncated,
    an unsupported format, or over a configured safety limit."""


class OutputError(StreamcolorError):
    """An output cannot be written (read-only location, disk full...)."""


class ItemOutputError(OutputError):
    """An output that cannot be written because of its own input (a stream its container cannot
    hold, timestamps its muxer refuses), not of the output location: in a run of several inputs
    the others are still done."""


class MemberRefused(InputError):
    """An input refused by a safety limit while it was read (a batch records
    it as skipped, not failed): e.g. an archive member bigger than allowed."""


def refuse_empty_path(value: object, what: str) -> None:
    """Raise when ``value`` is an empty (or blank) string: pathlib reads ``""`` as ``"."``, so an
    unset variable given as a source would colorize the whole folder the program runs in, and
    given as an output would write there.  ``what``: "source" (InputError) or "output" (ValueError)."""
    if isinstance(value, str) and not value.strip():
        cls = InputError if what == "source" else ValueError
        raise cls(f"the {what} path is empty (an unset variable?); give a file or folder, or '.' for the current one")
