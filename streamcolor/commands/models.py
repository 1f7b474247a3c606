"""`streamcolor models`: what models and runtimes this install has."""

from __future__ import annotations

import click

from streamcolor.commands.common import common_options

from streamcolor.engines import available_backends, available_models, resolve_model, runtime_info


@click.command("models")
@common_options
def command():
    """List the shipped models (with their training data and quality) and the runtimes."""
    for name in available_models():
        info = resolve_model(name)
        meta = info.meta
        click.echo(f"{name}: extractor {info.extractor} ({info.extractor_size}px, {info.embed_dim}-d), "
                   f"files {', '.join(sorted(info.files))}")
        for key in ("description", "training", "quality"):
            if key in meta:
                click.echo(f"  {key}: {meta[key]}")
    click.echo(f"backends: {', '.join(available_backends())}; "
               f"ONNX Runtime providers here: {', '.join(runtime_info()['providers'])}")
