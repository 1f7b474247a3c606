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


class MemberRefused(InputError):
    """An input refused by a safety limit while it was read (a batch records
    it as skipped, not failed): e.g. an archive member bigger than allowed."""
