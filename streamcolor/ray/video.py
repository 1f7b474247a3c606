"""``colorize_video_ray``: a long video split at keyframes across Ray actors and joined.

Only public names of :mod:`streamcolor.video` are used: ``video_keyframes``
and ``plan_segments`` cut the video, each actor runs ``colorize_segment``
(with its warm-up), and the driver calls ``join_segments``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path


from streamcolor import tempfiles
from streamcolor.archive import BatchOptions
from streamcolor.errors import InputError, OutputError, refuse_empty_path
from streamcolor.progress import Progress, progress_bar
from streamcolor.ray.pool import ActorPool, ClusterError, ClusterOptions, colorize_kwargs, plan_actors, ray_session
from streamcolor.engines import EngineError, resolve_model
from streamcolor.video import (Segment, VideoOptions, check_joinable, join_parts, keyframes_in_order, output_path,
                               output_replace, part_job, plan_segments, refuse_if_written, remember_output, remembers,
                               segment_folder, video_keyframes)

log = logging.getLogger(__name__)

def colorize_video_ray(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                       model: "str | os.PathLike" = "default", backend: str = "auto",
                       options: VideoOptions | None = None, cluster: ClusterOptions = ClusterOptions(),
                       segment_s: float = 30.0, warmup_s: float = 1.0, segments: int | None = None,
                       progress: Progress = None, replace: tempfiles.Replace | None = None,
                       remember: bool | None = None) -> Path:
    """:func:`streamcolor.colorize_video` with the video split across Ray actors.

    The video stream is cut at keyframes into segments of whole GOPs (at least
    ``segment_s`` seconds each).  Each actor seeks to its segment in the
    source, colorizes it with streamcolor.video's pipeline and encodes a
    segment file; the driver joins them by stream copy and copies audio and
    subtitles from the source once.  Borders: each segment starts decoding
    at a keyframe at least ``warmup_s`` earlier, so scene-cut detection and
    the chroma stabilizer enter the border already warmed up; those frames are
    dropped.  (The embedding is recomputed at the warm-up start, as it is
    every ``embed_every`` frames in a single run.)  ``segments``, if given,
    replaces ``segment_s``: at most that many segments of about equal length
    (fewer when the video has fewer keyframes).

    ``src`` and the folder of ``dst`` must be on storage every node sees.
    Segments go to ``.<dst name>.segments/`` next to ``dst``: a rerun after
    a failure reuses the finished ones; the folder is removed on success.

    ``replace``: what the joined output may replace at ``dst``, as in :func:`streamcolor.colorize_video`
    (by default any file at a ``dst`` you give; at the default name only this source's earlier output).
    ``remember``: note the output as streamcolor's, as in :func:`streamcolor.colorize_video`.

    Returns the output path.  Raises as :func:`streamcolor.colorize_video`.
    """
    options = options or VideoOptions()
    refuse_empty_path(src, "source")
    refuse_empty_path(dst, "output")
    src = Path(src)
    given = dst is not None
    dst = Path(os.path.abspath(output_path(src, dst)))  # absolute before any path goes to an actor
    if dst.suffix.lower() == ".avi":  # frame slots without timestamps: joined segments' times cannot be kept
        raise OutputError(f"{dst}: an AVI cannot be joined from segments (it has no timestamps); write .mkv, "
                          ".mp4 or .mov with --ray, or the AVI without --ray")
    keyframes, time_base, _ = video_keyframes(src)
    if not keyframes_in_order(keyframes):
        raise InputError(f"{src}: its timestamps start again (clips joined?), so it cannot be cut into segments "
                         "by time; colorize it without --ray")
    if segments is not None and segments < 1:
        raise ValueError(f"segments must be at least 1, got {segments}")
    plan = plan_segments(keyframes, time_base, segment_s=segment_s, warmup_s=warmup_s, count=segments)
    if not plan:
        raise InputError(f"{src}: no keyframe with a timestamp in the video stream, so it cannot be cut into "
                         "segments (no frames, or damaged?); without --ray it is read frame by frame, which "
                         "colorizes what decodes")
    if not dst.parent.is_dir():
        raise OutputError(f"{dst}: folder {dst.parent} does not exist")
    try:
        bundle = resolve_model(model).path
    except (EngineError, ValueError, TypeError):  # (the actors say what is wrong with it)
        bundle = None
    refuse_if_written(dst)
    with segment_folder(src, dst, part_job(f"{backend}:{model}", bundle, options), plan) as folder:
        todo = [s for s, p in zip(plan, folder.paths) if not p.is_file()]
        if todo:
            with ray_session(cluster.address, runtime_env=cluster.runtime_env) as ray:
                n, gpus = plan_actors(ray, cluster, len(todo))
                log.info("%s: %d segments (%d to do) on %d Ray actors", src, len(plan), len(todo), n)
                pool = ActorPool(ray, n, cluster=cluster, gpus=gpus,
                                 colorize_kwargs=colorize_kwargs(model, backend, BatchOptions(), None, cluster, gpus))
                try:
                    if options.codec == "auto":  # one encoder for all segments, chosen where they are encoded
                        options = dataclasses.replace(options, codec=pool.call_one(
                            "pick_codec", "auto", dst.suffix.lower().lstrip(".") or None))
                    check_joinable(src, dst, options.codec, options.pix_fmt)  # (before the work)
                    if folder.pin("codec", options.codec):  # (parts of an earlier run's other encoder: redone)
                        todo = list(plan)
                    _run_segments(pool, src.resolve(), todo, folder.paths, options, progress)
                finally:
                    pool.close()
        written = join_parts(src, folder, dst, output_replace(src, given, replace), remembers(given, remember))
    remember_output(src, written, remembers(given, remember))
    return written


def _run_segments(pool: ActorPool, src: Path, todo: list[Segment], paths: list[Path], options: VideoOptions,
                  progress: Progress) -> None:
    waiting = list(todo)
    with progress_bar(progress, total=len(todo), unit="segment", desc=src.name) as bar:
        while waiting or pool.pending:
            while waiting and pool.has_room():
                seg = waiting.pop(0)
                pool.submit("segment", str(src), str(paths[seg.index]), seg, options, payload=seg)
            for task, result in pool.results():
                seg = task.payload
                if isinstance(result, BaseException):
                    if task.attempt >= pool.cluster.resubmits:
                        raise ClusterError(f"{src}: segment {seg.index} lost {task.attempt + 1} times with its "
                                           f"worker ({type(result).__name__})") from result
                    pool.submit("segment", *task.args, payload=seg, attempt=task.attempt + 1)
                    continue
                log.info("segment %d: %d frames (pts %d..%d) on actor %d, pid %d", seg.index, result["frames"],
                         result["first_pts"], result["last_pts"], task.slot, result["pid"])
                bar.update(1)


__all__ = ["colorize_video_ray"]
