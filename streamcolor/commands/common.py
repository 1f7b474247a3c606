"""Options shared by several verbs, read from the engine registry."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, NoReturn

import click

from streamcolor.colorize import DEFAULT_RENDER_SIZE
from streamcolor.engines import DEFAULT_MODEL, available_backends, lab
from streamcolor.errors import StreamcolorError

if TYPE_CHECKING:
    from streamcolor.items import JobReport

#: Exit status of the job verbs: every item done / some items skipped or failed / could not start or could not write.
EXIT_OK, EXIT_ITEMS, EXIT_FATAL = 0, 1, 2


def engine_options(f):
    """--model, --backend, --render-size, --saturation."""
    f = click.option("--saturation", type=click.FloatRange(min=0), default=None,
                     help="Gain on predicted colour (a*b*); >1 gives more vivid colours. "
                          "Default: the model's recommendation.")(f)
    f = click.option("-r", "--render-size", type=click.IntRange(min=lab.SIZE_MULTIPLE), default=None,
                     help="Longer side of the network input. Larger: more colour detail, slower. "
                          "Output keeps the input's full resolution. "
                          f"Default: the model's recommendation, else {DEFAULT_RENDER_SIZE}.")(f)
    f = click.option("--backend", type=click.Choice(["auto", *available_backends()]), default="auto",
                     show_default=True, help="Runtime that runs the model.")(f)
    f = click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True,
                     help="A shipped model name (see `streamcolor models`) or a model bundle folder.")(f)
    return f


def load(model: str, backend: str):
    """Load the engine once for a verb, turning bad names into a CLI error."""
    from streamcolor.engines import EngineError, load_engine

    try:
        return load_engine(model, backend)
    except (ValueError, EngineError, ImportError) as exc:
        raise click.ClickException(str(exc)) from exc


def run_job(job: Callable[[], "JobReport"], *, fatal: tuple[type[BaseException], ...] = ()) -> NoReturn:
    """Run a job verb's call and exit: its summary and 0 when every item was
    done, 1 when some were skipped or failed; one error line and 2 when the
    job could not start or write (StreamcolorError, ValueError, or ``fatal``)."""
    try:
        report = job()
    except (StreamcolorError, ValueError, *fatal) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    click.echo(report.summary())
    sys.exit(EXIT_OK if report.ok else EXIT_ITEMS)


def show_ray_progress() -> None:
    """For ``--ray`` runs: let ``streamcolor.ray``'s INFO lines through (which
    cluster is used, how many actors), unless the user asked for quiet (-q)."""
    import logging

    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:
        logging.getLogger("streamcolor.ray").setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))
