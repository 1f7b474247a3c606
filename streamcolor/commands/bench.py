"""`streamcolor bench`: measure the engines and the video pipeline on this machine."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click

from streamcolor.commands.common import PathArg, common_options, say

from streamcolor.engines import DEFAULT_MODEL, lab


@click.command("bench")
@click.option("--full", is_flag=True, help="More render sizes (224, 256, 512), batch 16, Keras, 1080p video: "
                                           "several minutes instead of about one.")
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True,
              help="A shipped model name or a model bundle folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the engines run (auto: CUDA when ONNX Runtime offers it).")
@click.option("-r", "--render-size", "renders", type=click.IntRange(lab.SIZE_MULTIPLE, lab.MAX_RENDER_SIZE), multiple=True,
              help="Square render size to time (repeatable). Default: 256 (--full: 224, 256, 512).")
@click.option("-b", "--batch", "batches", type=click.IntRange(min=1), multiple=True,
              help="Batch size to time (repeatable). Default: 1 and 8 (--full: 1 and 16).")
@click.option("--video/--no-video", default=True, show_default=True,
              help="Also time the video pipeline against decode + encode alone.")
@click.option("--json", "json_path", type=PathArg(dir_okay=False, path_type=Path), default=None,
              help="Also write every figure to this JSON file (readable by `streamcolor report --results`).")
@common_options
def command(full, model, device, renders, batches, video, json_path):
    """Measure images/s of each engine and precision, achieved GFLOP/s against
    this machine's matrix-multiply peak, and video frames/s against
    decode + encode alone on a generated clip.

    Every ratio is measured within one run (the engines take turns), so it
    holds on a busy machine; the load average is printed with the results.

    \b
    Examples:
      streamcolor bench
      streamcolor bench --full --json bench.json
      streamcolor bench -r 384 -b 4 --no-video
    """
    from streamcolor import image_io
    from streamcolor.bench import FULL, QUICK, run_bench
    from streamcolor.engines import EngineError

    if json_path is not None and json_path.suffix.lower() != ".json":  # never written over a photo or a script
        raise click.UsageError(f"--json {json_path}: give a name ending in .json")
    from streamcolor.outputs import remember_written, written_by_streamcolor

    if json_path is not None and os.path.lexists(json_path) and not written_by_streamcolor(json_path):
        # said before measuring, as `report -o` does: a JSON of yours (or one you edited) is kept
        raise click.UsageError(f"--json {json_path} exists and is not a file streamcolor wrote (or it changed "
                               "since); it is kept: give another name, or move it away")

    options = dataclasses.replace(FULL if full else QUICK, model=model, device=device)
    if renders:
        options = dataclasses.replace(options, renders=tuple(renders))
    if batches:
        options = dataclasses.replace(options, batches=tuple(batches))
    if not video:
        options = dataclasses.replace(options, videos=())
    try:
        result = run_bench(options, progress=say)  # (none with -q)
    except (ValueError, EngineError) as exc:  # an unknown model, a device this machine lacks: could not start
        error = click.ClickException(str(exc))
        error.exit_code = 2
        raise error from exc
    click.echo(result.to_text())
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        remember_written(image_io.write_atomic(json_path, result.to_json().encode("utf-8"),
                                               replace=written_by_streamcolor))
        say(f"wrote {json_path}")
