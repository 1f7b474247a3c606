"""`streamcolor image`: colorize image files."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from tqdm import tqdm

from streamcolor import tempfiles
from streamcolor.colorize import ColorOptions, colorize_image
from streamcolor.commands.common import EXIT_FATAL, EXIT_ITEMS, engine_options, load
from streamcolor.errors import OutputError, StreamcolorError
from streamcolor.image_io import supported_suffixes
from streamcolor.items import is_item_error
from streamcolor.outputs import describe_renames, plan_outputs

log = logging.getLogger(__name__)


@click.command("image")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output folder, or a file name when there is one input.")
@click.option("--format", "fmt", type=click.Choice(["same", "png", "jpg", "webp", "tiff"]), default="same",
              show_default=True, help="Output format.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@click.option("--overwrite/--skip-existing", default=True, show_default=True,
              help="Replace outputs that exist, or leave them.")
@engine_options
def command(inputs, output, fmt, quality, overwrite, model, backend, render_size, saturation):
    """Colorize image files INPUTS into OUTPUT.

    Gray, colour (reduced to lightness first), RGBA (alpha kept), 16-bit and
    EXIF-rotated images are accepted; output has the input's size and
    lightness.  An output that would replace an input refuses the run; inputs
    with the same name from different folders get name~2...  Exit status 1
    when any input failed (the others are still done), 2 when the output
    cannot be written or the model is unknown.

    \b
    Examples:
      streamcolor image grandma.jpg -o grandma-colour.jpg
      streamcolor image scans/*.tif -o colour/ --format png -r 384
    """
    single_file = len(inputs) == 1 and output.suffix != "" and not output.is_dir()
    try:
        planned = plan_outputs([(src, output if single_file else output / _out_name(src, fmt)) for src in inputs])
    except OutputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    for line in describe_renames(planned):
        click.echo(line, err=True)
    folder = output.parent if single_file else output
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        click.echo(f"error: {folder}: cannot create the output folder ({exc.strerror or exc})", err=True)
        sys.exit(EXIT_FATAL)
    by_folder: dict[Path, list[str]] = {}
    for plan in planned:
        by_folder.setdefault(plan.dst.parent, []).append(plan.dst.name)
    for parent, names in by_folder.items():  # what a killed run left for these outputs (see streamcolor.tempfiles)
        tempfiles.sweep(parent, names)
    try:
        engine = load(model, backend)
    except click.ClickException as exc:
        exc.exit_code = EXIT_FATAL
        raise
    options = ColorOptions(render_size=render_size, saturation=saturation, quality=quality)
    failures = 0
    for plan in tqdm(planned, desc="images", unit="img", disable=len(inputs) < 2):
        src, dst = plan.src, plan.dst
        if dst.exists() and not overwrite:
            log.info("skip %s (exists)", dst)
            continue
        try:
            colorize_image(src, dst, engine=engine, options=options)
            log.info("%s -> %s", src, dst)
        except OutputError as exc:
            tqdm.write(f"error: {exc}", file=sys.stderr)
            if not is_item_error(exc):  # the location cannot be written: every later image would fail too
                sys.exit(EXIT_FATAL)
            failures += 1
        except StreamcolorError as exc:
            failures += 1
            tqdm.write(f"error: {exc}", file=sys.stderr)
    if failures:
        sys.exit(EXIT_ITEMS)


def _out_name(src: Path, fmt: str) -> str:
    """The output file name: the input's, or with ``fmt``'s suffix (PNG for a
    format that is read but not written, such as GIF)."""
    if fmt == "same":
        return src.name if src.suffix.lower() in supported_suffixes() else f"{src.stem or src.name}.png"
    return f"{src.stem}.{fmt}"
