"""`streamcolor report`: an HTML page of the user's own photos before and after, with figures and charts."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from streamcolor.commands.common import EXIT_FATAL, EXIT_ITEMS, PathArg, common_options, engine_options, load, say
from streamcolor.errors import OutputError
from streamcolor.image_io import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

#: Where `streamcolor report` writes when no -o is given.
DEFAULT_OUTPUT = Path("streamcolor-report.html")


@click.command("report")
@click.argument("folder", required=False, type=PathArg(path_type=Path))
@click.option("-o", "--output", type=PathArg(dir_okay=False, path_type=Path), default=None,
              help=f"The HTML file to write.  [default: {DEFAULT_OUTPUT}]")
@click.option("--max-photos", type=click.IntRange(min=1), default=12, show_default=True,
              help="Photos to show, evenly spaced over the folder's list (never picked by result).")
@click.option("--size", "image_size", type=click.IntRange(min=64), default=640, show_default=True,
              help="Longest side of each image on the page, pixels (photos are colorized at full size).")
@click.option("--speed/--no-speed", default=True, show_default=True,
              help="Measure images/s of the model's engines on this machine (about 20 s) and chart it.")
@click.option("-b", "--batch", "batches", type=click.IntRange(min=1), multiple=True,
              help="Batch size for --speed (repeatable).  [default: 1, 4, 8]")
@click.option("--results", type=PathArg(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Results JSON to show as well (repeatable): `streamcolor bench --json` output (charted), "
                   "pytest-benchmark JSON from benchmarks/, or any JSON of figures.")
@click.option("--gallery", type=PathArg(file_okay=False, path_type=Path), default=None,
              help="Also write up to 4 PNG strips (gray | ours | original) of colour photos into this folder.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse photos with more pixels (decompression bombs; the report holds about 26 bytes a pixel "
                   f"of its largest photo, since it colorizes at full size). [default: {DEFAULT_MAX_PIXELS}]")
@click.option("--photos", "photos_opt", type=PathArg(file_okay=False, path_type=Path), default=None,
              hidden=True, help="Old name of FOLDER.")
@engine_options
@common_options
def command(folder, output, max_photos, image_size, speed, batches, results, gallery, max_pixels, photos_opt, model,
            backend, render_size, saturation):
    """Write an HTML report about the photos in FOLDER (yours: gray or colour,
    searched recursively): each photo before and after at a size you can
    judge, and, for colour photos, the original beside it with the colour
    error against the gray baseline (per photo and charted).  Also a chart of
    images/s by engine and batch on this machine, and the model's own card.
    The page is one self-contained file (images embedded).  Photos that
    cannot be read are skipped with their reason and others take their place;
    the exit status is then 1 (the page is written), 2 when no page could be.

    Without FOLDER: the bundled black-and-white sample.  A folder with a
    manifest.json (from the training recipe) shows its held-out photos.

    \b
    Examples:
      streamcolor report my-scans/ -o report.html
      streamcolor report family-colour-photos/ --max-photos 6 -r 384
      streamcolor bench --json bench.json && streamcolor report my-scans/ --results bench.json --no-speed
    """
    from streamcolor.colorize import ColorOptions
    from streamcolor.report import check_page_name, write_report

    ctx = click.get_current_context()
    notes: list[str] = []

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    if folder is not None and folder.suffix.lower() in (".html", ".htm") and not folder.is_dir():
        # The old form `streamcolor report report.html [--photos DIR]`.
        if output is not None:
            raise click.UsageError(f"{folder}: FOLDER is a folder of photos; the page is -o {output}")
        log.warning("`streamcolor report %s` is the old form; now: streamcolor report FOLDER -o %s", folder, folder)
        folder, output = photos_opt or Path("data/photos"), folder
    elif photos_opt is not None:
        if folder is not None:
            raise click.UsageError("give the photo folder once (FOLDER; --photos is its old name)")
        folder = photos_opt
    if folder is not None and not os.path.lexists(folder):
        raise click.UsageError(f"{folder}: no such folder (streamcolor report takes a folder of photos)")
    if folder is not None and not folder.is_dir():
        raise click.UsageError(f"{folder}: not a folder (streamcolor report takes a folder of photos)")
    if folder is not None and gallery is not None and \
            Path(os.path.realpath(gallery)).is_relative_to(os.path.realpath(folder)):
        # the next report of FOLDER would take the gallery's strips for photos of yours
        raise click.UsageError(f"--gallery {gallery} is inside the photo folder {folder}: give a folder outside it")
    try:
        output = check_page_name(output or DEFAULT_OUTPUT)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if batches and not speed:
        notes.append("-b/--batch ignored: --no-speed measures nothing")
    if given("max_photos") and folder is None:
        notes.append("--max-photos ignored: no FOLDER given (the bundled sample is shown)")
    speed_batches = (tuple(batches) or (1, 4, 8)) if speed else ()
    engine = load(model, backend)
    try:
        options = ColorOptions(render_size=render_size, saturation=saturation,
                               max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        path = write_report(output, engine=engine, results=results, photos=folder, max_photos=max_photos,
                            gallery=gallery, progress=say, options=options, image_size=image_size,
                            speed_batches=speed_batches, notes=notes)
    except (ValueError, OutputError) as exc:  # a results file that is not one, a page or gallery of the user's
        error = click.ClickException(str(exc))  # at -o: checked before any work, the run could not start
        error.exit_code = EXIT_FATAL
        raise error from exc
    for note in notes:
        log.warning("%s", note)
    say(f"wrote {path}")
    if folder is not None and any(note.startswith(("no photos found in ", "none of the ")) for note in notes):
        # (the page shows the bundled sample, not a photo of yours: a script should know)
        say(f"{folder}: no photo of it is on the page (the bundled sample is shown instead)")
        sys.exit(EXIT_ITEMS)
    skipped = sum(note.startswith("skipped: ") for note in notes)
    if skipped:  # the page is written, but not every photo is on it: a script should know (as with batch)
        say(f"{skipped} photo(s) skipped (listed above and at the top of the page)")
        sys.exit(EXIT_ITEMS)  # (not ctx.exit: the console entry runs Click with standalone_mode=False)
