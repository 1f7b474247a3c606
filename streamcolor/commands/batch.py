"""`streamcolor batch`: colorize folders, zip and tar archives; resumable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from streamcolor.archive import OUTPUT_FORMATS
from streamcolor.commands.common import (ByteSize, FiniteRange, PathArg, common_options, engine_options,
                                         load, output_is_folder, output_option, progress_setting,
                                         refuse_file_name_for_folder, run_job, show_ray_progress, warn_quality_unused)
from streamcolor.engines.archives import RATIO_MIN_BYTES, Limits
from streamcolor.memory import DEFAULT_MEMORY_BUDGET

log = logging.getLogger(__name__)


class _BatchCommand(click.Command):
    """`batch`, whose ``--ray`` takes an optional address: ``batch --ray scans/ -o out`` would give it
    the source.  A path that is there after ``--ray`` is a source (an address is host:port,
    ray://... or auto), so it is read as bare ``--ray`` followed by that source."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        for i, arg in enumerate(args[:-1]):
            if arg == "--":
                break
            if arg == "--ray" and os.path.lexists(args[i + 1]):
                args[i] = "--ray="
        return super().parse_args(ctx, args)


@click.command("batch", cls=_BatchCommand)
@click.argument("sources", nargs=-1, required=True, type=PathArg(path_type=Path))
@output_option("Output folder (mirrors the source tree; OUT/<source name>/ per source when several). "
               "A name ending in .zip/.tar.gz/... also packs the folder into that archive (a name ending "
               "in / is a folder, whatever it looks like).", required=True)
@click.option("--format", "fmt", type=click.Choice(["same", *OUTPUT_FORMATS]),
              default="same", show_default=True, help="Output format (same: keep each file's format; "
                                                      "formats we cannot write, such as GIF, become PNG).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--archive", is_flag=True,
              help="When finished, also pack OUTPUT into OUTPUT.zip / OUTPUT.tar.gz / ... of the sources' kind "
                   "(zip for folders).  To choose the kind, name the output so: -o out.tar.xz.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per engine call. [default: the engine's, 8 on CPUs, 32-64 on GPUs]")
@click.option("-j", "--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads that decode and encode/write (0: one per CPU core).")
@click.option("--processes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes for decoding, rendering and encoding instead of threads (0: threads). "
                   "For a GPU engine on a many-core machine, where the threads of one process, which share "
                   "Python's GIL, cannot keep up with the GPU: e.g. --processes 12 on 16 cores. Each process "
                   "starts Python anew (about a second) and holds its own memory.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images with more pixels (decompression bombs). [default: 268000000]")
@click.option("--max-member-size", type=ByteSize(), default=f"{Limits.max_member_bytes >> 20}M", show_default=True,
              help="Refuse files and archive members bigger than this (declared or read).")
@click.option("--max-ratio", type=FiniteRange(min=1, min_open=True), default=Limits.max_ratio, show_default=True,
              help=f"Refuse zip members (over {RATIO_MIN_BYTES >> 20} MiB) that inflate more than this many times "
                   "(zip bombs).")
@click.option("--max-members", type=click.IntRange(min=1), default=Limits.max_members, show_default=True,
              help="Entries listed of one folder or archive (each takes memory for the whole job); a zip with more "
                   "is refused, a tar or folder listed up to this many and the rest reported.")
@click.option("--memory-budget", type=ByteSize(), default=f"{DEFAULT_MEMORY_BUDGET >> 20}M", show_default=True,
              help="Working memory for images in flight at once, estimated from each one's size before decoding "
                   "(about 16 bytes a pixel): big images wait for each other. One bigger than this runs alone.")
@click.option("--redo", is_flag=True,
              help="Colorize again the items an earlier run into OUTPUT finished (a rerun otherwise resumes and "
                   "keeps them, e.g. after a change of -m, -r, --saturation or --quality). Only the job's own "
                   "outputs are replaced, never files it did not write.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Colorize on a pool of Ray actors (needs streamcolor[ray]). Bare --ray starts a private "
                   "Ray on this machine for this run (a cluster already running here is not joined), unless "
                   "$RAY_ADDRESS is set. An address after --ray is the same as --ray-address.")
@click.option("--ray-address", "ray_address_option", default=None, metavar="ADDRESS",
              help="The Ray cluster to join: auto (the one this machine belongs to), HOST:6379, or "
                   "ray://HOST:10001 (Ray Client); implies --ray. OUTPUT must be on storage every node sees.")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="With --ray: number of actors [default: one per GPU, else one per CPU].")
@engine_options
@common_options
def command(sources, output, fmt, quality, archive, batch_size, workers, processes, max_pixels, max_member_size, max_ratio,
            max_members, memory_budget, redo, ray_address, ray_address_option, actors, model, backend, render_size, saturation):
    """Colorize every image in SOURCES (folders, searched recursively; .zip;
    .tar, .tar.gz/.tgz, .tar.xz, .tar.bz2) into the folder OUTPUT.

    Members are read straight from the archives, one at a time; decoding,
    the network and writing run in parallel.  Bad files (corrupt, truncated,
    empty, not images), unsafe members (absolute or '..' paths, links,
    devices) and decompression bombs are skipped, listed with the reason in
    OUTPUT/streamcolor-report.csv, and never stop the run.  Files whose
    names say they are no images (README.txt, .xmp sidecars, videos) are
    left out, with one warning.

    Resumable: the state of every item is kept in
    OUTPUT/.streamcolor/manifest.sqlite; after an interruption (even kill -9)
    run the same command again to finish the rest (each output is written
    once).  Failed and skipped items are retried on each run; finished ones
    are kept (--redo colorizes them again, a warning says when this run's
    settings differ from theirs).  Files in
    OUTPUT that this job did not write are never replaced: the new output
    gets name~2.

    \b
    Exit status:
      0  every item colorized
      1  some items were skipped or failed (see the report); the rest are done
      2  could not start (bad arguments, unreadable source, unknown model),
         could not write the output (read-only, disk full) or lost a worker
         process (--processes): the items finished so far are kept; run the
         command again when fixed

    \b
    Examples:
      streamcolor batch scans/ -o scans-colour/
      streamcolor batch album.zip -o album-colour --archive   # folder + .zip
      streamcolor batch film.tar -o film-colour.tar.xz        # folder + .tar.xz
      streamcolor batch a.tar.gz b/ -o out/ --format jpg -r 384
      streamcolor batch scans/ -o /shared/scans-colour --ray-address auto --actors 8
    """
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.image_io import DEFAULT_MAX_PIXELS

    progress = progress_setting()
    try:
        options = BatchOptions(render_size=render_size, saturation=saturation, quality=quality,
                               output_format=fmt, archive="same" if archive else None, batch_size=batch_size,
                               workers=workers, processes=processes, max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                               max_member_bytes=max_member_size, max_ratio=max_ratio, max_members=max_members,
                               memory_budget=memory_budget, redo=redo)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    warn_quality_unused(fmt)
    _warn_workers_unused(processes, ray_address is not None or ray_address_option is not None)
    if str(output) == "-" or any(str(s) == "-" for s in sources):  # (as `image` reads them; here a folder "-")
        raise click.UsageError("batch reads and writes folders and archives, not stdin or stdout ('-'); "
                               "for a folder named '-', write ./-")
    refuse_file_name_for_folder(output, len(sources), "batch")
    out = f"{output}{os.sep}" if output_is_folder() else output  # "x.zip/": the folder x.zip, nothing packed
    if ray_address_option is not None:
        ray_address = ray_address_option
    if actors is not None and ray_address is None:
        raise click.UsageError("--actors needs --ray")
    if ray_address is not None:  # ImportError: no Ray
        show_ray_progress()
        run_job(lambda: _run_on_ray(sources, out, options, progress, ray_address, actors, model, backend),
                fatal=(ImportError,))
    engine = load(model, backend)
    run_job(lambda: colorize_archive(list(sources), out, engine=engine, options=options, progress=progress))


def _warn_workers_unused(processes: int, on_ray: bool) -> None:
    """Say that ``-j`` or ``--processes``, given on the command line, does nothing here (an option
    that has no effect is said): with ``--processes N`` the N processes are the workers; on Ray each
    actor decodes and encodes its own photos."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    given = [name for name, param in (("-j/--workers", "workers"), ("--processes", "processes"))
             if ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE]
    if on_ray and given:
        log.warning("%s ignored with --ray: each Ray actor decodes and encodes its own photos", " and ".join(given))
    elif processes and "-j/--workers" in given:
        log.warning("-j/--workers ignored with --processes: the %d worker processes decode and encode, "
                    "one photo each", processes)


def _run_on_ray(sources, output, options, progress, ray_address, actors, model, backend):
    """The same job on Ray actors (the engine is loaded in each actor, not here)."""
    from streamcolor.engines import EngineError, resolve_model
    from streamcolor.ray import ClusterOptions, colorize_archive_ray

    try:
        resolve_model(model)  # a bad model fails here, before Ray starts
    except EngineError as exc:
        raise ValueError(str(exc)) from exc
    cluster = ClusterOptions(address=ray_address or None, actors=actors)
    return colorize_archive_ray(list(sources), output, model=model, backend=backend, options=options,
                                cluster=cluster, progress=progress)
