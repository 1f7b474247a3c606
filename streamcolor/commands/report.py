"""`streamcolor report`: an HTML page of before/after images and benchmark figures."""

from __future__ import annotations

from pathlib import Path

import click

from streamcolor.engines import available_backends
from streamcolor.commands.common import common_options, load


@click.command("report")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--results", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Results JSON to show (repeatable): pytest-benchmark JSON from benchmarks/, "
                   "`streamcolor bench --json` output, or any JSON of figures. Default: the model's own evaluation.")
@click.option("--photos", type=click.Path(file_okay=False, path_type=Path), default=Path("data/photos"),
              show_default=True, help="Folder with a manifest.json of held-out photos (split 'val'); "
                                      "when absent, only the bundled black-and-white sample is shown.")
@click.option("--max-photos", type=click.IntRange(min=0), default=6, show_default=True,
              help="Held-out photos to show, evenly spaced over the list.")
@click.option("--gallery", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write 4 PNG strips (gray | ours | truth) of held-out photos into this folder.")
@click.option("-m", "--model", default="default", show_default=True,
              help="A shipped model name or a model bundle folder.")
@click.option("--backend", type=click.Choice(["auto", *available_backends()]), default="auto", show_default=True,
              help="Runtime that colorizes the photos.")
@common_options
def command(output, results, photos, max_photos, gallery, model, backend):
    """Write OUTPUT, a self-contained HTML report: gray input | colorized |
    original colour for some held-out photos, and tables of figures.

    \b
    Examples:
      streamcolor report report.html
      streamcolor report report.html --results benchmarks/results/cpu-2026-11-26.json
      streamcolor bench --json bench.json && streamcolor report report.html --results bench.json
    """
    from streamcolor.report import write_report

    engine = load(model, backend)
    try:
        path = write_report(output, engine=engine, results=results, photos=photos, max_photos=max_photos,
                            gallery=gallery, progress=lambda msg: click.echo(msg, err=True))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {path}")
