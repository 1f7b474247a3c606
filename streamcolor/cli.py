"""The ``streamcolor`` command: a click group assembled from a list of verbs.

Each verb lives in ``streamcolor/commands/<verb>.py`` and is imported only
when it runs, so ``streamcolor --help`` and ``--version`` stay instant.  Verbs
from other packages (``train``, from the trainer) are found through the
``streamcolor.commands`` entry-point group, so this package never imports
them.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from importlib.metadata import entry_points

import click

from streamcolor.errors import StreamcolorError

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
            return getattr(import_module(module), "command")
        for ep in entry_points(group=PLUGIN_GROUP):
            if ep.name == name:
                try:
                    return ep.load()
                except ImportError as exc:
                    return _unavailable(name, exc)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, VERBS[name][1]) for name in VERBS]
        rows += [(ep.name, "Train, evaluate and export models (needs streamcolor[train]).")
                 for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in VERBS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, exc: ImportError) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args):
        raise click.ClickException(f"`streamcolor {name}` is not available: {exc}")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamcolor", prog_name="streamcolor")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
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
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console entry point: project errors become one line on stderr, exit 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except StreamcolorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
