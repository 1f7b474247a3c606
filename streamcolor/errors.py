"""The exception types users of streamcolor catch."""

from __future__ import annotations

import re


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


#: What :func:`one_line` escapes: C0 controls (newline, carriage return, escape...), DEL, C1 controls,
#: the Unicode line and paragraph separators, and the bidirectional overrides and isolates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` as one line on a terminal: a file may be named ``"a\\nerror: b.jpg"``, and printed
    as is its name would forge a line of the tool's output (or an escape sequence would drive the
    terminal).  Control characters become ``\\n``, ``\\xNN`` or ``\\uNNNN``, and the bytes of a
    name that is not UTF-8 (kept by Python as surrogates) ``\\xNN``, as the job report writes them."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte made
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
