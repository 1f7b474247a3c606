"""`streamcolor collection`: the Ray Data job for large photo collections,
also a script for ``ray job submit``::

    ray job submit --runtime-env-json '{"pip": ["streamcolor[ray]"]}' -- \\
        python -m streamcolor.commands.collection s3://bucket/scans s3://bucket/scans-colour \\
        --gpus-per-actor 1 --actors 8

A thin wrapper over :func:`streamcolor.ray.colorize_collection` (no Ray
code here).  Exit status: 0 every file colorized, 1 some files failed or were
skipped (see ``streamcolor-report.csv`` in the output), 2 the job could not
run (bad arguments, unreadable source, output not writable).
"""

from __future__ import annotations

import logging

import click

from streamcolor.archive import OUTPUT_FORMATS
from streamcolor.commands.common import (ByteSize, FiniteRange, common_options, engine_options, non_empty, run_job,
                                        warn_quality_unused)
from streamcolor.engines.archives import Limits


@click.command("collection")
@click.argument("source", callback=non_empty)
@click.argument("output", callback=non_empty)
@click.option("--address", default=None,
              help="Ray cluster to join: auto, HOST:6379 or ray://HOST:10001 [default: $RAY_ADDRESS, which "
                   "`ray job submit` sets; else a private Ray started on this machine for this job].")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="Actors colorizing [default: one per GPU, else one per --cpus-per-actor CPUs, one CPU spare].")
@click.option("--gpus-per-actor", type=FiniteRange(min=0), default=None,
              help="GPUs each actor reserves [default: 1 on a cluster with GPUs, else 0].")
@click.option("--cpus-per-actor", type=FiniteRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs each actor reserves (and its engine threads on CPU).")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per map_batches batch (and per engine call).")
@click.option("--format", "fmt", type=click.Choice(["same", *OUTPUT_FORMATS]), default="same",
              show_default=True, help="Output format (same: keep each file's format).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Redo files whose output already exists (default: skip them).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images with more pixels (decompression bombs). [default: 268000000]")
@click.option("--max-member-size", type=ByteSize(), default=f"{Limits.max_member_bytes >> 20}M", show_default=True,
              help="Refuse files bigger than this (Ray Data reads each file whole into memory).")
@engine_options
@common_options
def command(source, output, address, actors, gpus_per_actor, cpus_per_actor, batch_size, fmt, quality, overwrite,
            max_pixels, max_member_size, model, backend, render_size, saturation):
    """Colorize every image under SOURCE into OUTPUT with Ray Data.

    SOURCE and OUTPUT are local folders (on storage every node sees) or URIs
    pyarrow understands: s3://bucket/prefix, gs://bucket/prefix, ...
    Resumable: files whose output exists are skipped.  Bad files are listed
    in OUTPUT/streamcolor-report.csv and never stop the job; files that are
    not images by their names (notes.txt, clip.mp4) are left out with a warning.

    \b
    Examples:
      streamcolor collection scans/ colour/                # a private Ray on this machine
      streamcolor collection s3://archive/scans s3://archive/colour --address auto
      ray job submit --working-dir . -- streamcolor collection /mnt/scans /mnt/colour -b 64
    """
    from streamcolor.archive import BatchOptions
    from streamcolor.image_io import DEFAULT_MAX_PIXELS
    from streamcolor.ray import ClusterOptions, colorize_collection

    warn_quality_unused(fmt)
    try:
        options = BatchOptions(render_size=render_size, saturation=saturation, quality=quality, output_format=fmt,
                               batch_size=batch_size, max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                               max_member_bytes=max_member_size)
        cluster = ClusterOptions(address=address, actors=actors, gpus_per_actor=gpus_per_actor,
                                 cpus_per_actor=cpus_per_actor)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    run_job(lambda: colorize_collection(source, output, model=model, backend=backend, options=options,
                                        cluster=cluster, overwrite=overwrite, progress=False),  # (Ray Data's bars)
            fatal=(ImportError, OSError))

def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command.main(args=argv, prog_name="python -m streamcolor.commands.collection")


if __name__ == "__main__":
    main()
