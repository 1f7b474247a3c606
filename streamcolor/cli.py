"""The ``streamcolor`` command: a click group assembled from a list of verbs.

Each verb lives in ``streamcolor/commands/<verb>.py`` and is imported only
when it runs, so ``streamcolor --help`` and ``--version`` stay instant.  Verbs
from other packages (``train``, from the trainer) are found through the
``streamcolor.commands`` entry-point group, so this package never imports
them.
"""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import signal
import sys
import warnings
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import NoReturn

import click

from streamcolor.errors import StreamcolorError, one_line

#: verb -> (module, one-line help).  The order is the order of --help.
VERBS: dict[str, tuple[str, str]] = {
    "image": ("streamcolor.commands.image", "Colorize image files."),
    "video": ("streamcolor.commands.video", "Colorize a video (audio and subtitles kept)."),
    "batch": ("streamcolor.commands.batch", "Colorize folders, zip and tar archives; resumable."),
    "collection": ("streamcolor.commands.collection",
                   "Colorize a folder or bucket with a Ray Data job (for ray job submit)."),
    "bench": ("streamcolor.commands.bench", "Measure engines and pipelines on this machine."),
    "report": ("streamcolor.commands.report", "Write an HTML report of figures and before/after images."),
    "serve": ("streamcolor.commands.serve", "Serve a web page and HTTP API that colorize uploads (localhost)."),
    "models": ("streamcolor.commands.models", "List shipped models and runtimes."),
}
#: Entry-point group where other packages publish verbs (e.g. trainer's ``train``).
PLUGIN_GROUP = "streamcolor.commands"


class LazyGroup(click.Group):
    """A group whose verbs are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS) + sorted(ep.name for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in VERBS:
            module, _ = VERBS[name]
            return with_common_options(getattr(import_module(module), "command"))
        for ep in entry_points(group=PLUGIN_GROUP):
            if ep.name == name:
                try:
                    return with_common_options(ep.load())
                except ImportError as exc:
                    return _unavailable(name, exc)
        return None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """As click's, but an unknown verb gets a hint: the verb it resembles, or
        the verb for a file named where the verb belongs (``streamcolor old.jpg``)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(unknown_verb_message(name, self.list_commands(ctx)))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, VERBS[name][1]) for name in VERBS]
        rows += [(ep.name, "Train, evaluate and export models (needs streamcolor[train]).")
                 for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in VERBS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def unknown_verb_message(name: str, verbs: list[str]) -> str:
    """One line for ``streamcolor NAME`` where NAME is no verb."""
    from streamcolor.commands.common import suggested_command, verb_for_path

    verb = verb_for_path(name)
    if verb is not None:
        return f"{name!r} is not a verb; to colorize it run `{suggested_command(name, verb)}`"
    close = difflib.get_close_matches(name, verbs, n=1, cutoff=0.6)
    if close:
        return f"no such verb {name!r}; did you mean `streamcolor {close[0]}`?"
    return f"no such verb {name!r}; the verbs are: {', '.join(verbs)} (see `streamcolor --help`)"


def with_common_options(cmd: click.Command) -> click.Command:
    """Give a verb ``-v/--verbose``, ``-q/--quiet`` and ``--progress/--no-progress``
    (where it has none of its own), so they work after the verb too:
    ``streamcolor image x.jpg -o y.jpg -q``."""
    from streamcolor.commands.common import common_params

    if getattr(cmd, "_streamcolor_common", False):
        return cmd
    have = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    cmd.params.extend(p for p in common_params() if not have & {*p.opts, *p.secondary_opts})
    cmd._streamcolor_common = True  # type: ignore[attr-defined]
    if isinstance(cmd, click.Group):  # a verb with verbs of its own (`train prepare ... -q`): theirs too
        for sub in cmd.commands.values():
            with_common_options(sub)
    return cmd


def _unavailable(name: str, exc: ImportError) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args):
        raise click.ClickException(f"`streamcolor {name}` is not available: {exc}")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamcolor", prog_name="streamcolor")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug). Also after the verb.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors, no progress bars. Also after the verb.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on stderr [default: only when stderr is a terminal]. Also after the verb.")
def cli(verbose: int, quiet: bool, progress: bool | None) -> None:
    """Colorize black-and-white photos, photo archives and videos.

    The network predicts colour (a*b*) at a small render size; the original
    full-resolution lightness is kept, so outputs are as sharp as inputs.
    Runs offline with the model shipped in the package.

    \b
    Examples:
      streamcolor image old.jpg -o colour/
      streamcolor video film.mp4 -o film-colour.mp4
      streamcolor batch album.zip -o album-colour/
    """
    from streamcolor.commands.common import apply_output_settings

    _log_to_stderr()  # no-op when main() set it up already
    state = click.get_current_context().meta
    state["streamcolor.verbose"] = verbose
    state["streamcolor.quiet"] = quiet
    state["streamcolor.progress"] = progress
    apply_output_settings(state)


#: Log lines under -vv (debug): on stderr, level and logger first (stdout carries only results, e.g. `image - -o -`).
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class UserFormatter(logging.Formatter):
    """``error: ...``, ``warning: ...``, ``info: ...``: the words a user reads, as git and pip print
    them, and as the command's own one-line errors read; a debug line (``-vv``) names its logger too,
    for whoever digs into the code."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno <= logging.DEBUG:
            return super().format(record)
        text = f"{record.levelname.lower()}: {one_line(record.getMessage())}"  # a file's name cannot forge a line
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_WARNED: set[tuple[str, type, str | None]] = set()


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning (Pillow's "Corrupt EXIF data", ...) as one log line of the tool's own
    (``warning: ...``, hidden by -q), not Python's two lines with the source line under them; it
    names the image being decoded, if any, and is said once for each file (a batch of photos with
    broken EXIF says which ones, where Python's filter said the first only)."""
    from streamcolor import image_io

    item = image_io.decoding()
    key = (str(message), category, item)
    if key in _WARNED:
        return
    if len(_WARNED) >= 10_000:  # (a server's lifetime of uploads: said again, not remembered without end)
        _WARNED.clear()
    _WARNED.add(key)
    where = f"{Path(filename).parent.name}/{Path(filename).name}" if filename else "?"
    said = f"{item}: {message}" if item else str(message)
    logging.getLogger("streamcolor.warnings").warning("%s (%s from %s)", said, category.__name__, where)


def _log_to_stderr() -> None:
    """Log lines to stderr through :class:`UserFormatter` (once: a no-op when logging is set up already)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(UserFormatter())
        root.addHandler(handler)


def _show_click_error(exc: click.ClickException) -> None:
    """Click's own errors (a usage mistake, a verb that is not installed) as Click shows them, usage
    and help hint included, but with the ``error:`` of every other message of the tool, where Click
    writes ``Error:``."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # a bare group (`streamcolor`): its help, as Click
        exc.show()
        return
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:  # the longest name, --help, as Click says it
            hint = f"Try '{ctx.command_path} {max(ctx.command.get_help_option_names(ctx), key=len)}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True)
    click.echo(f"error: {one_line(exc.format_message())}", err=True)


def _exit_after_interruption(code: int) -> NoReturn:
    """Exit with ``code`` once an interrupted verb has cleaned up: Python's exit handlers run
    (``atexit``: Ray's shutdown, temporary files), then the process ends without the C++ static
    destructors of the native libraries.  Why: a Ctrl-C in the middle of `video` ended in "terminate
    called without an active exception" and exit 134 (SIGABRT) in 1 to 3 runs of 8, after every
    output had been made safe, when a native thread pool was torn down at exit.  Nothing of the
    user's is pending then: outputs are renamed into place or removed before the interruption
    reaches here, and log lines are flushed as they are written."""
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def _handle_interruptions() -> list[int]:
    """SIGTERM stops a verb as Ctrl-C does (KeyboardInterrupt; the list returned records it), and an
    interruption that Python would drop is delivered again.

    Why the second: Python runs a signal's handler in the main thread between two of its steps,
    which may be inside a finalizer (``__del__``, a weakref callback), where an exception is printed
    as "Exception ignored in ..." and dropped: `streamcolor video` stopped with SIGTERM went on to the
    end of the film, exit 0, in 3 runs of 45.  Such a KeyboardInterrupt reaches
    ``sys.unraisablehook``, which raises the signal again a moment later, once the finalizer is over."""
    import _thread
    import threading

    terminated: list[int] = []

    def on_sigterm(signum, frame):  # `kill`, `docker stop`, systemd: the same clean stop as Ctrl-C
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = sys.unraisablehook

    def on_unraisable(args) -> None:
        if (args.exc_type is not None and issubclass(args.exc_type, KeyboardInterrupt)
                and threading.current_thread() is threading.main_thread()):
            # (from another thread, a moment later: raised now, it would land in this hook, and be dropped)
            again = threading.Timer(0.02, _thread.interrupt_main, (signal.SIGTERM if terminated else signal.SIGINT,))
            again.daemon = True
            again.start()
            return
        previous(args)

    signal.signal(signal.SIGTERM, on_sigterm)
    sys.unraisablehook = on_unraisable
    return terminated


def _run_verb() -> None:
    """Run the command line; an error that an interruption caused is the interruption.

    Why: a Ctrl-C or SIGTERM that lands while a native module initializes comes back as that module's
    error (ONNX Runtime's "initialization failed", see :func:`streamcolor.engines.interrupted`), which a
    verb then reports as its own ("error: ...", exit 2) where the user stopped the run (130, 143)."""
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, click.exceptions.Exit):  # (an interruption a verb has already said)
        raise
    except (Exception, SystemExit) as exc:
        from streamcolor.engines import interrupted

        ended = isinstance(exc, SystemExit) and exc.code in (0, 130, 128 + signal.SIGTERM)
        if not ended and interrupted(exc):
            raise click.exceptions.Abort() from exc
        raise


def main() -> None:
    """Console entry point: project errors become one line on stderr, exit 1.

    Log lines are written around progress bars (tqdm's logging redirect), so
    a warning never tears a bar in half."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    _log_to_stderr()
    logging.getLogger().setLevel(logging.WARNING)
    warnings.showwarning = _warning_to_log
    warnings.filterwarnings("always", category=UserWarning)  # (once per file and text: _warning_to_log)
    terminated = _handle_interruptions()
    try:
        with logging_redirect_tqdm():
            _run_verb()
    except click.exceptions.Abort as exc:  # a verb may say what an interruption meant for it
        said = str(exc) or "every output already written is kept, and none is left half-written"
        click.echo(f"{'terminated' if terminated else 'aborted'}: {said}", err=True)
        _exit_after_interruption(128 + signal.SIGTERM if terminated else 130)
    except click.ClickException as exc:
        _show_click_error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit as exc:  # a verb that ends an interruption itself, with 130 (`train fit`, after its checkpoint)
        if terminated and exc.code == 130:
            sys.exit(128 + signal.SIGTERM)  # (stopped by SIGTERM: 143, as a shell and systemd expect)
        raise
    except StreamcolorError as exc:
        click.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(1)
    except OSError as exc:  # a path the system refuses (name too long, permission...) that no verb foresaw
        logging.getLogger("streamcolor").debug("unexpected OSError", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {one_line(f'{where}{exc.strerror or exc}')}", err=True)
        sys.exit(2)
