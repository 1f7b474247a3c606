"""`streamcolor video`: colorize video files (audio and subtitles kept)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from streamcolor.commands.common import (EXIT_FATAL, EXIT_ITEMS, IMAGE_SUFFIXES, FiniteRange, PathArg, check_medium,
                                         common_options, distinct, engine_options, existing_options, load,
                                         make_output_folder, output_folder_given, output_option, progress_setting,
                                         refuse_file_name_for_folder, say)
from streamcolor.errors import OutputError, StreamcolorError, one_line
from streamcolor.items import is_item_error
from streamcolor.outputs import describe_renames, plan_outputs, replace_policy, written_from

log = logging.getLogger(__name__)


@click.command("video")
@click.argument("inputs", nargs=-1, required=True, type=PathArg(path_type=Path))
@output_option("Output file (one input; its extension picks the container) or folder (several inputs, a "
               "name without an extension, or a name ending in /).  "
               "Default: <name>-colour.<ext> next to each input.", default=None)
@click.option("--codec", default="auto", show_default=True,
              help="Video encoder (libx264, libx265, libvpx-vp9, h264_nvenc...); "
                   "'auto': NVIDIA's h264_nvenc when it works here, else libx264 (logged).")
@click.option("--crf", "quality", type=click.IntRange(0, 63), default=18, show_default=True,
              help="Constant quality (crf, or cq for NVENC): lower is better and bigger.")
@click.option("--preset", default=None, help="Encoder speed preset (x264: ultrafast..veryslow).")
@click.option("--pix-fmt", default="yuv420p", show_default=True,
              help="Output pixel format. yuv420p keeps colour at half resolution, so a gray film's frames are "
                   "composed straight into it; yuv444p keeps full-resolution colour (bigger, slower).")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=None,
              help="Frames per network call. [default: the engine's, 2 on CPUs (the decoder and the "
                   "encoder share the cores and caches), 32-64 on GPUs]")
@click.option("--stabilize/--no-stabilize", default=True, show_default=True,
              help="Smooth colour over time (motion-compensated) against flicker.")
@click.option("--embed-every", type=click.IntRange(min=1), default=48, show_default=True,
              help="Recompute the global embedding at least every N frames, and at every scene cut "
                   "(1: every frame).")
@click.option("--scene-cut", type=FiniteRange(0, 1, min_open=True), default=0.3, show_default=True,
              help="Lightness-histogram change that counts as a scene cut.")
@click.option("--checkpoint-every", "checkpoint_s", type=FiniteRange(0, None), default=60.0, show_default=True,
              metavar="SECONDS",
              help="A video of two such parts or more is colorized a part at a time (whole GOPs of at least "
                   "SECONDS), kept in .<output name>.segments/ beside the output until all are joined: a run that "
                   "was stopped, run again the same way, redoes only the unfinished part. 0: one pass.")
@existing_options
@click.option("--ray", "use_ray", is_flag=True,
              help="Split each video at keyframes across Ray actors and join the parts (long videos; needs "
                   "streamcolor[ray]). Without --ray-address or $RAY_ADDRESS, a private local Ray is started.")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="With --ray: the cluster to join (auto, HOST:6379, ray://HOST:10001); implies --ray. "
                   "Inputs and OUTPUT must then be on storage every node sees.")
@click.option("--segments", type=click.IntRange(min=1), default=None,
              help="With --ray: cut each video into at most N parts of about equal length "
                   "[default: parts of at least 30 s].")
@engine_options
@common_options
def command(inputs, output, codec, quality, preset, pix_fmt, batch_size, stabilize, embed_every, scene_cut,
            checkpoint_s, existing, use_ray, ray_address, segments, model, backend, render_size, saturation):
    """Colorize the video files INPUTS.

    Only colour is added: size, frame rate, timestamps, lightness, rotation
    and metadata follow the input (an odd width or height gets one repeated
    row or column: yuv420p needs even sides); audio and subtitle streams are copied
    untouched.  The output's extension picks the container.  An output that
    would replace an input refuses the run (a default name that is another input
    is numbered instead: a-colour~2.mp4); inputs with the same name from
    different folders get name~2..., and so does an output whose name is
    taken by a file streamcolor did not write (yours is kept; --overwrite
    replaces it).  Exit status 1 when any input failed (the
    others are still done); 2 for bad options, an unknown model, or an output
    that cannot be written.

    \b
    Examples:
      streamcolor video film.mp4                      # -> film-colour.mp4
      streamcolor video film.mkv -o film-colour.mkv --crf 20 -r 320
      streamcolor video reels/*.mp4 -o colour/ --codec auto
      streamcolor video film.mp4 --ray --segments 8        # on a local Ray
    """
    from streamcolor.video import (VideoOptions, check_codec, check_container, check_pix_fmt, colorize_video,
                                   default_output, segment_folder_path)

    if Path("-") in inputs or output == Path("-"):  # (as `image` reads them: here they would be a file or folder "-")
        raise click.UsageError("video reads and writes files, not stdin or stdout ('-'): a video's container "
                               "needs to seek; give file names (a file named '-': give its full path)")
    given = len(inputs)
    # an image or folder among them: named (with the command to run), left out, exit 1 at the end
    fitting = check_medium(inputs, "video", output_folder_given(output))
    left_out = given - len(fitting)
    inputs = distinct(fitting)
    # `video *.mp4` run again in one folder: the glob now holds the outputs of the first run too
    # (a-colour.mp4, of a.mp4); such an output, unchanged, is left out when its own input is given
    given_real = {os.path.realpath(p) for p in inputs}
    ours = [p for p in inputs if written_from(p) in given_real - {os.path.realpath(p)}]
    if ours:
        say(f"left out {len(ours)} video(s) streamcolor colorized from other inputs given here: "
            f"{', '.join(str(p) for p in ours[:3])}{', ...' if len(ours) > 3 else ''}")
        inputs = [p for p in inputs if p not in ours]
    if output is not None:
        refuse_file_name_for_folder(output, given, "video")
    use_ray = use_ray or ray_address is not None
    if segments is not None and not use_ray:
        raise click.UsageError("--segments needs --ray")
    try:
        options = VideoOptions(render_size=render_size, saturation=saturation, batch_size=batch_size, codec=codec,
                               pix_fmt=pix_fmt, quality=quality, preset=preset, stabilize=stabilize,
                               embed_every=embed_every, scene_cut=scene_cut, checkpoint_s=checkpoint_s)
        check_codec(codec)
        if codec != "auto":
            check_pix_fmt(codec, pix_fmt)
    except ValueError as exc:
        _fatal(str(exc))
    to_folder = output is not None and (len(inputs) > 1 or output_folder_given(output) is not None)
    if to_folder:
        if output.exists() and not output.is_dir():
            _fatal(f"{output}: exists and is not a folder (several inputs, or a name without an extension, "
                   "need an output folder)")
        try:
            make_output_folder(output)
        except OSError as exc:
            _fatal(f"{output}: cannot create the output folder ({exc.strerror or exc})")
    elif output is not None:  # one output file: its folder must exist or be made, else nothing can be written
        if output.suffix.lower() in IMAGE_SUFFIXES:  # (found out only when the video was colorized, before)
            _fatal(f"{output}: {output.suffix} is an image format, a video cannot be written as one; give a "
                   f"video name, e.g. {output.with_suffix('.mp4')}")
        try:
            check_container(output)
        except ValueError as exc:
            _fatal(str(exc))
        if output.parent.exists() and not output.parent.is_dir():
            _fatal(f"{output}: cannot be written: {output.parent} is a file, not a folder")
        try:
            make_output_folder(output.parent)
        except OSError as exc:
            _fatal(f"{output.parent}: cannot create the output folder ({exc.strerror or exc})")
    try:
        planned = plan_outputs([(src, output / default_output(src).name if to_folder else output or default_output(src))
                                for src in inputs], keep_others=existing == "keep", picked=to_folder or not output)
    except OutputError as exc:
        _fatal(str(exc))
    for line in describe_renames(planned):
        say(line)  # (none with -q: errors only)
    if existing == "skip":  # said, and left out before the engine or Ray is even started
        for plan in [p for p in planned if os.path.lexists(p.dst)]:
            say(f"{plan.src}: skipped, {plan.dst} exists (--skip-existing)")
        planned = [p for p in planned if not os.path.lexists(p.dst)]
        if not planned:
            sys.exit(EXIT_ITEMS if left_out else 0)
    if use_ray:
        convert = _on_ray(ray_address, segments, model, backend)
    else:
        engine = load(model, backend)
    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:  # (not with -q)
        logging.getLogger("streamcolor.video.job").setLevel(logging.INFO)  # where a long video's parts are kept, resumed
    failures = left_out
    for plan in planned:
        src, dst = plan.src, plan.dst
        try:
            if use_ray:
                dst = convert(src, dst, options, progress_setting(),
                              replace_policy(existing, src, renamed=plan.renamed))
            else:  # (noted as streamcolor's: in parts before the work folder is removed)
                dst = colorize_video(src, dst, engine=engine, options=options, progress=progress_setting(),
                                     replace=replace_policy(existing, src, renamed=plan.renamed), remember=True)
            say(f"{src} -> {dst}")
        except OutputError as exc:
            if not is_item_error(exc):  # the location or the encoder settings: every later input would fail too
                _fatal(str(exc))
            failures += 1
            log.error("%s", exc)
        except StreamcolorError as exc:
            failures += 1
            log.error("%s", exc)
        except KeyboardInterrupt:  # (Ctrl-C, or SIGTERM: say what a rerun does with the parts done)
            work = segment_folder_path(dst)
            if any(work.glob("segment-*")):
                raise click.exceptions.Abort(f"the finished parts of {Path(dst).name} are kept in {work}; the "
                                             "same command again resumes from them") from None
            raise
    if failures:
        sys.exit(EXIT_ITEMS)


def _fatal(message: str) -> NoReturn:
    """One error line and exit status 2 (the run cannot start or cannot write)."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(EXIT_FATAL)


def _on_ray(address, segments, model, backend):
    """``(src, dst, options, progress) -> None`` running :func:`streamcolor.ray.colorize_video_ray`.

    A bad model, a missing Ray or a cluster that cannot be reached fail here
    (exit 2), before any video; one Ray session serves every input (the engine
    loads in each actor) and ends with the command."""
    from streamcolor.commands.common import show_ray_progress
    from streamcolor.engines import EngineError, resolve_model

    show_ray_progress()

    try:
        from streamcolor.ray import ClusterOptions, colorize_video_ray, ray_session

        resolve_model(model)
        click.get_current_context().with_resource(ray_session(address))
    except (ImportError, EngineError, StreamcolorError) as exc:
        _fatal(str(exc))
    cluster = ClusterOptions(address=address)

    def convert(src, dst, options, progress, replace):
        return colorize_video_ray(src, dst, model=model, backend=backend, options=options, cluster=cluster,
                                  segments=segments, progress=progress, replace=replace, remember=True)

    return convert
