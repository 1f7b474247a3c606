"""`streamcolor image`: colorize image files."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from tqdm import tqdm

from streamcolor.colorize import ColorOptions, colorize_image
from streamcolor.commands.common import engine_options, load
from streamcolor.errors import StreamcolorError

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
    lightness.  Exit status 1 when any input failed; the others are still done.

    \b
    Examples:
      streamcolor image grandma.jpg -o grandma-colour.jpg
      streamcolor image scans/*.tif -o colour/ --format png -r 384
    """
    engine = load(model, backend)
    options = ColorOptions(render_size=render_size, saturation=saturation, quality=quality)
    single_file = len(inputs) == 1 and output.suffix != "" and not output.is_dir()
    failures = 0
    for src in tqdm(inputs, desc="images", unit="img", disable=len(inputs) < 2):
        dst = output if single_file else output / _out_name(src, fmt)
        if dst.exists() and not overwrite:
            log.info("skip %s (exists)", dst)
            continue
        try:
            colorize_image(src, dst, engine=engine, options=options)
            log.info("%s -> %s", src, dst)
        except StreamcolorError as exc:
            failures += 1
            tqdm.write(f"error: {exc}", file=sys.stderr)
    if failures:
        raise SystemExit(1)


def _out_name(src: Path, fmt: str) -> str:
    if fmt == "same":
        return src.name
    return f"{src.stem}.{fmt}"
