"""`streamcolor image`: colorize image files, or stdin to stdout (``-``)."""

from __future__ import annotations

import hashlib
import logging
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import click

from streamcolor import image_io, tempfiles
from streamcolor.colorize import ColorOptions, colorize_image, encode_colorized
from streamcolor.commands.common import (EXIT_FATAL, EXIT_ITEMS, PathArg, check_medium, common_options, distinct,
                                         engine_options, existing_options, load, make_output_folder,
                                         output_folder_given, output_option, progress_setting,
                                         refuse_file_name_for_folder, say)
from streamcolor.errors import InputError, OutputError, StreamcolorError, one_line
from streamcolor.items import is_item_error
from streamcolor.outputs import Piped, Planned, describe_renames, fitted, plan_outputs, remember_written, replace_policy
from streamcolor.progress import progress_bar

log = logging.getLogger(__name__)

#: `--format` choice -> Pillow format name.
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}  # as batch --format
#: The name that stands for stdin (as an input) and stdout (as -o).
STDIO = Path("-")


@click.command("image")
@click.argument("inputs", nargs=-1, required=True, type=PathArg(path_type=Path))
@output_option("Output folder, or a file name when there is one input (a name without an extension, or "
               "ending in /, is a folder); "
               "'-' writes the image to stdout.", required=True)
@click.option("--format", "fmt", type=click.Choice(["same", *FORMATS]), default="same",
              show_default=True, help="Output format (same: the input's; with -o FILE, FILE's extension decides).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@existing_options
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help=f"Refuse images with more pixels (decompression bombs). [default: {image_io.DEFAULT_MAX_PIXELS}]")
@engine_options
@common_options
def command(inputs, output, fmt, quality, existing, max_pixels, model, backend, render_size, saturation):
    """Colorize image files INPUTS into OUTPUT.  '-' reads one image from
    stdin; '-o -' writes the result to stdout (logs go to stderr only).

    Gray, colour (reduced to lightness first), RGBA (alpha kept), 16-bit and
    EXIF-rotated images are accepted; output has the input's size and
    lightness.  An output that would replace an input refuses the run (a name
    streamcolor picks that is another input is numbered instead); inputs
    with the same name from different folders get name~2..., and so does an
    output whose name is taken by a file streamcolor did not write (yours is
    kept; --overwrite replaces it).  Exit status 1
    when any input failed (the others are still done), 2 when the output
    cannot be written or the model is unknown.

    \b
    Examples:
      streamcolor image grandma.jpg -o grandma-colour.jpg
      streamcolor image scans/*.tif -o colour/ --format png -r 384
      curl -s https://example.org/old.jpg | streamcolor image - -o - > colour.jpg
    """
    ctx = click.get_current_context()
    quality_given = ctx.get_parameter_source("quality") == click.core.ParameterSource.COMMANDLINE
    if list(inputs).count(STDIO) > 1:
        raise click.UsageError("'-' (stdin) can be given once")
    given = len(inputs)
    files = [p for p in inputs if p != STDIO]
    # a video or folder among them: named (with the command to run), left out, exit 1 at the end
    fitting = check_medium(files, "image", output_folder_given(output))
    left_out = len(files) - len(fitting)
    inputs = distinct([p for p in inputs if p == STDIO or p in fitting])
    to_stdout = output == STDIO
    single_file = len(inputs) == 1 and (to_stdout or output_folder_given(output) is None)
    if to_stdout and len(inputs) > 1:
        raise click.UsageError("-o - (stdout) takes one input")
    refuse_file_name_for_folder(output, given, "image")
    if STDIO in inputs and not single_file:
        raise click.UsageError("'-' (stdin) needs -o FILE with an image extension (-o out.png), or -o - (stdout)")
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("-o - would write image bytes to the terminal; redirect stdout (> out.jpg) "
                               "or give -o FILE")
    if single_file and not to_stdout and fmt != "same":
        named = image_io.format_for(output, default="?")
        if named != FORMATS[fmt]:
            log.warning("--format %s ignored: -o %s names a %s file (its extension decides)", fmt, output,
                        named if named != "?" else f"{output.suffix!r}")

    # stdin is read before outputs are planned: the record of written files knows it by its bytes
    stdin, piped = None, None
    if STDIO in inputs:
        try:
            stdin, piped = _read_stdin(max_pixels or image_io.DEFAULT_MAX_PIXELS)
        except InputError as exc:
            log.error("%s", exc)
            sys.exit(EXIT_ITEMS)
    if to_stdout:
        planned = [Planned(inputs[0], STDIO)]
    else:
        try:
            planned = plan_outputs([(piped if src == STDIO else src,
                                     output if single_file else output / _out_name(src, fmt))
                                    for src in inputs], keep_others=existing == "keep", picked=not single_file)
        except OutputError as exc:
            _fatal(str(exc))
        folder = output.parent if single_file else output
        if os.path.lexists(folder) and not folder.is_dir():  # (before the renames are said: none will be written)
            _fatal(f"{folder}: exists and is not a folder (several inputs, or a name without an extension, "
                   "need an output folder)")
        for line in describe_renames(planned):
            say(line)  # (none with -q: errors only)
        try:
            make_output_folder(folder)
        except OSError as exc:
            _fatal(f"{folder}: cannot create the output folder ({exc.strerror or exc})")
        by_folder: dict[Path, list[str]] = {}
        for plan in planned:
            by_folder.setdefault(plan.dst.parent, []).append(plan.dst.name)
        for parent, names in by_folder.items():  # what a killed run left for these outputs (streamcolor.tempfiles)
            tempfiles.sweep(parent, names)
    engine = load(model, backend)
    options = ColorOptions(render_size=render_size, saturation=saturation, quality=quality,
                           max_pixels=max_pixels or image_io.DEFAULT_MAX_PIXELS)
    failures = left_out
    warned_quality = not quality_given
    with progress_bar(progress_setting() if len(inputs) > 1 else False, total=len(inputs), desc="images",
                      unit="img") as bar:
        for plan in planned:
            src, dst = plan.src, plan.dst
            if dst != STDIO and os.path.lexists(dst) and existing == "skip":
                say(f"{_label(src, 'stdin')}: skipped, {dst} exists (--skip-existing)")  # (as `video` says it)
                bar.update()
                continue
            if dst != STDIO and not single_file and os.path.isdir(dst):  # (--overwrite: a folder of the
                # user's at this input's output name, in the output folder given) this input's problem only
                log.error("%s: a folder is in the way of the output of %s; it is kept, and that input not "
                          "colorized (rename or remove the folder)", dst, _label(src, "stdin"))
                failures += 1
                bar.update()
                continue
            try:
                source = piped if src == STDIO else src
                out_fmt, dst = _colorize_one(src, dst, fmt, engine, options,
                                             replace_policy(existing, source, renamed=plan.renamed), stdin)
                if dst != STDIO:
                    remember_written(dst, source)
                if not warned_quality and out_fmt not in ("JPEG", "WEBP"):
                    log.warning("--quality ignored: %s output is lossless", out_fmt)
                    warned_quality = True
                log.info("%s -> %s", _label(src, "stdin"), _label(dst, "stdout"))
            except OutputError as exc:
                log.error("%s", exc)
                if not is_item_error(exc):  # the location cannot be written: every later image would fail too
                    sys.exit(EXIT_FATAL)
                failures += 1
            except StreamcolorError as exc:
                failures += 1
                log.error("%s", exc)
            bar.update()
    if failures:
        sys.exit(EXIT_ITEMS)


def _fatal(message: str):
    """One error line and exit status 2 (the run cannot start or cannot write)."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(EXIT_FATAL)


def _label(path: Path, stream: str) -> str:
    return f"<{stream}>" if path == STDIO else str(path)


def _write_all(data: bytes) -> None:
    """``data`` to stdout, all of it or an OSError (BrokenPipeError: the reader left).  Why not
    ``sys.stdout.buffer.write``: when a pipe's reader leaves during a write (`| head -c 10`), it took
    the part the pipe held and dropped the rest without an error: a cut image, exit 0."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # (a stream in memory: a test's, a notebook's)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _colorize_one(src: Path, dst: Path, fmt: str, engine, options: ColorOptions,
                  replace: tempfiles.Replace, stdin: BinaryIO | None = None) -> tuple[str, Path]:
    """Read ``src`` (a file or stdin), colorize, write ``dst`` (a file or stdout); returns the format
    written and the path (``name~N`` where a file that appeared at ``dst`` meanwhile is kept).
    Files go through :func:`colorize_image` (the API's path: atomic write, bounded memory).
    ``replace``: what may be replaced at ``dst`` (:func:`replace_policy`); ``stdin``: what was
    read from stdin (:func:`_read_stdin`) when ``src`` is ``-``."""
    if dst != STDIO and src != STDIO:
        written = colorize_image(src, dst, engine=engine, options=options, replace=replace)
        return image_io.format_for(dst), written
    if src == STDIO:
        decoded = image_io.read_image(stdin, name="<stdin>", max_pixels=options.max_pixels)
    else:
        decoded = image_io.read_image(src, max_pixels=options.max_pixels)
    if dst == STDIO:
        out_fmt = FORMATS[fmt] if fmt != "same" else image_io.written_format(decoded.format)  # (GIF: PNG)
        data = encode_colorized(decoded, out_fmt, engine, options, label="<stdout>")  # (as into a file)
        try:
            _write_all(data)
        except BrokenPipeError as exc:
            raise OutputError("<stdout>: closed by the reader (broken pipe)") from exc
        except OSError as exc:  # (a full disk behind `> file`, /dev/full: said of stdout, not of nothing)
            raise OutputError(f"<stdout>: cannot write the image ({exc.strerror or exc})") from exc
        return out_fmt.upper(), dst
    out_fmt = image_io.format_for(dst)
    image_io.check_file_path(dst)
    with image_io.said_of(dst):
        data = encode_colorized(decoded, out_fmt, engine, options, label=str(dst))
    return out_fmt, image_io.write_atomic(dst, data, replace=replace)


#: Bytes of stdin held in memory; more go to a temporary file (:func:`_read_stdin`).
STDIN_IN_MEMORY = 64 << 20


def _read_stdin(max_pixels: int) -> tuple[BinaryIO, Piped]:
    """Read stdin whole (an image is decoded from a seekable file) into a temporary file that
    stays in memory up to :data:`STDIN_IN_MEMORY`, hashing it on the way (:class:`Piped`).

    Why a limit: a pipe can be endless (``yes | streamcolor image - ...``) or a film.  No image
    within ``max_pixels`` takes more than 8 bytes a pixel (16-bit RGBA, uncompressed) beside
    some metadata, so a stream past that is refused as it arrives, before it fills memory or disk."""
    limit = max_pixels * 8 + (64 << 20)
    spool = tempfile.SpooledTemporaryFile(max_size=STDIN_IN_MEMORY)
    digest = hashlib.sha256()
    read = 0
    while chunk := sys.stdin.buffer.read(1 << 20):
        read += len(chunk)
        if read > limit:
            spool.close()
            raise InputError(f"<stdin>: over {limit:,} bytes, more than an image of at most {max_pixels:,} "
                             "pixels can take (--max-pixels); is it an image?")
        digest.update(chunk)
        spool.write(chunk)
    spool.seek(0)
    return spool, Piped(digest.hexdigest())


def _out_name(src: Path, fmt: str) -> str:
    """The output file name: the input's, or with ``fmt``'s suffix (PNG for a
    format that is read but not written, such as GIF), its stem shortened where a longer
    suffix would take it past the filesystem's name limit (:func:`streamcolor.outputs.fitted`)."""
    if src == STDIO:
        return f"stdin.{fmt if fmt != 'same' else 'png'}"
    if fmt == "same":
        # its own name where its format is written here; a photo under another name (photo.mp4) is
        # named for what its header says it is, as stdin's output is encoded; a GIF's becomes .png
        return fitted(f"{src.stem or src.name}{image_io.output_suffix(src)}")
    return fitted(f"{src.stem}.{fmt}")
