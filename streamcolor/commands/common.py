"""Options shared by several verbs, read from the engine registry."""

from __future__ import annotations

import click

from streamcolor.engines import DEFAULT_MODEL, available_backends
from streamcolor.colorize import DEFAULT_RENDER_SIZE


def engine_options(f):
    """--model, --backend, --render-size, --saturation."""
    f = click.option("--saturation", type=click.FloatRange(min=0), default=None,
                     help="Gain on predicted colour (a*b*); >1 gives more vivid colours. "
                          "Default: the model's recommendation.")(f)
    f = click.option("-r", "--render-size", type=click.IntRange(min=8), default=None,
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
