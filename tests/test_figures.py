"""Every measured figure in README.md and docs/ comes from a file in benchmarks/results/.

Two kinds of check:

* figure blocks (``<!-- figures: NAME FILE -->`` ... ``<!-- /figures -->``)
  must equal what ``benchmarks.figures`` makes from their file;
* figures quoted in prose are listed below with the file and key they come
  from, and must appear in the text exactly as the file gives them (rounded
  as printed).  A number edited by hand, or a file re-measured without the
  text, fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import figures

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _value(source: str, path: str):
    """A value from a results file: ``a.b.0.c`` walks dicts and lists; for a pytest-benchmark
    file, ``bench:NAME:a.b`` walks ``extra_info`` of the benchmark called NAME."""
    data = json.loads((RESULTS / source).read_text())
    if path.startswith("bench:"):
        _, name, path = path.split(":", 2)
        data = next(b for b in data["benchmarks"] if b["name"] == name)["extra_info"]
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


BENCH = "docs/benchmarks.md"
#: The runs of benchmarks/pipeline_bound.py on 2026-11-30, in order.
FIRST, YUV420, THREADS, BATCH2, STRIPS, GAMUT, SCRATCH1, SCRATCH, JOB, TOGETHER = (
    f"pipeline-cpu-2026-11-30{run}.json" for run in ("", "-yuv420", "-threads", "-video-batch2", "-strips", "-gamut",
                                                     "-scratch-first", "-scratch", "-jobthreads", "-together"))
X264 = "thread_cpu_ms_per_frame.{}.encoder (x264 threads)"
COMPOSE = "video.1.thread_cpu_ms_per_frame.pipeline.compose"

#: The quality evaluations (``streamcolor train eval``): the six-package holdout, then the nine-package one.
Q1202, Q95 = "quality-2026-12-02.json", "quality-2026-12-02-holdout95.json"
#: The quality of the default model v2 against v1 and the seed model, in one run (benchmarks/quality_runs.py).
Q1203 = "quality-2026-12-03.json"
ENS, OOD, OODCV = "ensembles-2026-12-03.json", "ood-recipes-2026-12-03.json", "ood-cv-2026-12-03.json"
ENC, MORE = "encoders-2026-12-03.json", "more-photos-2026-12-03.json"
PARTS = "video-parts-cpu-2026-12-03.json"
#: benchmarks/pipeline_bound.py with the default model v2, on the AVX-512 VNNI machine (int8 engine).
V2BOUND = "pipeline-cpu-2026-12-03.json"

#: Figures named in a fragment of prose (see :func:`_each`): key in a pipeline_bound file, format.
FIGURES = {"v0": ("video.0.pipeline_over_bound", "{:.3f}x"), "v1": ("video.1.pipeline_over_bound", "{:.3f}x"),
           "p0": ("video.0.pipeline_over_bound_paired", "{:.3f}x"),
           "p1": ("video.1.pipeline_over_bound_paired", "{:.3f}x"),
           "b": ("batch.archive_over_bound", "{:.2f}x"), "b3": ("batch.archive_over_bound", "{:.3f}x"),
           "x264": ("video.1." + X264.format("pipeline"), "{:.1f}"),
           "x264_alone": ("video.1." + X264.format("codec"), "{:.1f}"),
           "x264_576": ("video.0." + X264.format("pipeline"), "{:.1f}"),
           "x264_576_alone": ("video.0." + X264.format("codec"), "{:.1f}"),
           "compose": (COMPOSE, "{:.1f}"), "compose_ms": (COMPOSE, "{:.0f}"),
           "reader": ("video.1.thread_cpu_ms_per_frame.pipeline.reader (decode calls, L*)", "{:.1f}"),
           "stage_compose": ("video.1.stages_ms_per_frame.compose_yuv", "{:.2f}"),
           "stage_encode": ("video.1.stages_ms_per_frame.encode", "{:.2f}"),
           # engine only and codec only at once, and the product against that (the together run on)
           "t0": ("video.0.together_over_bound", "{:.2f}x"), "t1": ("video.1.together_over_bound", "{:.2f}x"),
           "tp1": ("video.1.together_over_bound_paired", "{:.2f}x"), "tb": ("batch.together_over_bound", "{:.2f}x"),
           "o0": ("video.0.pipeline_over_together", "{:.2f}x"), "o1": ("video.1.pipeline_over_together", "{:.2f}x"),
           "ob": ("batch.archive_over_together", "{:.2f}x"),
           "enc_gray": ("video.1.colour_encode.cpu_ms_per_frame.gray", "{:.1f}"),
           "enc_colour": ("video.1.colour_encode.cpu_ms_per_frame.colour", "{:.1f}"),
           "e1": ("engine_only.images_per_s.1", "{:.1f}"), "e16": ("engine_only.images_per_s.16", "{:.1f}"),
           "e64": ("engine_only.images_per_s.64", "{:.1f}")}
#: The batch part alone, with its steps timed alone and its threads (2026-12-01).
BATCH1201 = "pipeline-cpu-2026-12-01-batch.json"
#: Every part again on 2026-12-01, on a machine with AVX-512 VNNI and AMX (the int8 engine by default).
VNNI1201 = "pipeline-cpu-2026-12-01-vnni.json"
#: Its batch part again after gray photos' JPEGs came from their Y'CbCr planes.
PLANES1201 = "pipeline-cpu-2026-12-01-vnni-planes.json"
#: benchmarks/encode_threads.py (encoding into a memfd and into a BytesIO), and the whole pipeline_bound
#: script after the change, its batch part on 96 photos, then on 24 (2026-12-01).
ENC1201J = "encode-threads-cpu-2026-12-01-jpeg.json"  # again, the memfd for JPEGs only (after a review)
ENC1201, MEMFD1201, MEMFD24 = ("encode-threads-cpu-2026-12-01.json", "pipeline-cpu-2026-12-01-memfd.json",
                               "pipeline-cpu-2026-12-01-memfd-24.json")
#: The whole script again with decode + encode only with the colour, and the bound made with it.
COLOUR1201 = "pipeline-cpu-2026-12-01-colour.json"
COLOUR1201B = "pipeline-cpu-2026-12-01-colour2.json"  # with the gray references fixed
#: The whole script again after the default model's edge-aware upsampling (a guided filter) was added.
GUIDED1202 = "pipeline-cpu-2026-12-02.json"
GUIDED_BENCH = "guided-cpu-2026-12-02.json"  # benchmarks/bench_guided.py: the filter alone
#: The GPU calls of benchmarks/gpu_run.sh (an H200): the first, and the second after the engine's jitted call.
GPU1, GPU2 = "pipeline-gpu-h200-2026-11-30.json", "pipeline-gpu-h200-2026-11-30-lean.json"
#: Two later calls: chunks dispatched at once (and the warm naive loop, memory), then the copies' settings.
GPU3, GPU4 = "pipeline-gpu-h200-2026-11-30-overlap.json", "pipeline-gpu-h200-2026-11-30-copies.json"
#: The two calls of 2026-12-04 (default model v2): engine, batch and the CLI; then the 1080p clip alone.
GPU5, GPU6 = "pipeline-gpu-h200-2026-12-04.json", "pipeline-gpu-h200-2026-12-04-video.json"
GPU7, SCALE = "pipeline-gpu-h200-2026-12-04b.json", "batch-scaling-gpu-h200-2026-12-04.json"
GIL = "gil-cpu-2026-12-04.json"
GIL2 = "gil-cpu-2026-12-05.json"
GIL3 = "gil-processes-cpu-2026-12-05.json"
GIL4 = "gil-processes-cpu-2026-12-05b.json"
_VARIANTS = {"b16": "transfer=bfloat16", "b16x8": "transfer=bfloat16,copy_threads=8", "x8": "copy_threads=8",
             "x4": "copy_threads=4", "c32": "chunk_rows=32"}
FIGURES |= {f"l{b}": (f"engine_only.images_per_s.{b}", "{:.1f}") for b in (1, 16, 64, 128, 256)}
FIGURES |= {f"c{b}{d[0]}": (f"engine_only.copy_ms.{b}.{d}_gpu", "{:.1f}") for b in (1, 16, 64, 128, 256)
            for d in ("to", "from")}
for _i in (0, 1):
    FIGURES |= {f"g_e{_i}": (f"video.{_i}.engine_fps", "{:.0f}"), f"g_c{_i}": (f"video.{_i}.codec_fps", "{:.2f}"),
                f"g_b{_i}": (f"video.{_i}.bound_fps", "{:.2f}"), f"g_p{_i}": (f"video.{_i}.pipeline_fps", "{:.2f}"),
                f"g_v{_i}": (f"video.{_i}.pipeline_over_bound", "{:.3f}x"),
                f"g_pp{_i}": (f"video.{_i}.pipeline_over_bound_paired", "{:.3f}x"),
                f"g_cb{_i}": (f"video.{_i}.pipeline_over_colour_bound", "{:.3f}x"),
                f"g_n{_i}": (f"video.{_i}.naive_fps", "{:.2f}"), f"g_pn{_i}": (f"video.{_i}.pipeline_over_naive", "{:.2f}x")}
FIGURES |= {"g_cc": ("video.0.cpu_ms_per_frame.codec", "{:.1f}"), "g_cp": ("video.0.cpu_ms_per_frame.pipeline", "{:.1f}"),
            "g_x0": ("video.0." + X264.format("pipeline"), "{:.1f}"), "g_xa0": ("video.0." + X264.format("codec"), "{:.1f}"),
            "g_eg": ("video.0.colour_encode.cpu_ms_per_frame.gray", "{:.1f}"),
            "g_ec": ("video.0.colour_encode.cpu_ms_per_frame.colour", "{:.1f}"),
            "g_comp": ("video.0.thread_cpu_ms_per_frame.pipeline.compose", "{:.1f}"),
            "g_pool": ("video.0.thread_cpu_ms_per_frame.pipeline.engine pool (alive before)", "{:.1f}"),
            "g_read": ("video.0.thread_cpu_ms_per_frame.pipeline.reader (decode calls, L*)", "{:.1f}"),
            "ba": ("batch.archive_items_per_s", "{:.1f}"), "bb": ("batch.bound_items_per_s", "{:.1f}"),
            "bob": ("batch.archive_over_bound", "{:.3f}x"), "bobp": ("batch.archive_over_bound_paired", "{:.3f}x"),
            "bon": ("batch.archive_over_naive", "{:.2f}x"), "bn": ("batch.naive_items_per_s", "{:.1f}"),
            "be": ("batch.engine_items_per_s", "{:.0f}"), "bcpu": ("batch.cpu_ms_per_item.archive", "{:.1f}"),
            "bcpuc": ("batch.cpu_ms_per_item.codec", "{:.1f}"), "bce": ("batch.cpu_ms_per_item.engine", "{:.1f}"),
            "brgb": ("batch.archive_rgb_route_items_per_s", "{:.1f}"), "bor": ("batch.archive_over_rgb_route", "{:.3f}x"),
            "borp": ("batch.archive_over_rgb_route_paired", "{:.3f}x"),
            "bcpurgb": ("batch.cpu_ms_per_item.archive_rgb_route", "{:.1f}")}
FIGURES |= {"jm1": ("encode.encodes_per_s.jpeg_memfd_threads1", "{:.1f}"),
            "jm2": ("encode.encodes_per_s.jpeg_memfd_threads2", "{:.1f}"),
            "jb1": ("encode.encodes_per_s.jpeg_bytesio_threads1", "{:.1f}"),
            "jb2": ("encode.encodes_per_s.jpeg_bytesio_threads2", "{:.1f}"),
            "jsm": ("encode.scaling.jpeg_memfd", "{:.3f}x"), "jsb": ("encode.scaling.jpeg_bytesio", "{:.3f}x"),
            "psm": ("encode.scaling.png_memfd", "{:.3f}x"), "psb": ("encode.scaling.png_bytesio", "{:.3f}x"),
            "jobm": ("job.photos_per_s.memfd", "{:.2f}"), "jobb": ("job.photos_per_s.bytesio", "{:.2f}"),
            "jobr": ("job.memfd_over_bytesio", "{:.3f}x"), "jobrp": ("job.memfd_over_bytesio_paired", "{:.3f}x"),
            "cpum": ("job.cpu_ms_per_photo.memfd", "{:.1f}"), "cpub": ("job.cpu_ms_per_photo.bytesio", "{:.1f}"),
            "ej1": ("encode.encodes_per_s.jpeg_image_io_threads1", "{:.1f}"),
            "ej2": ("encode.encodes_per_s.jpeg_image_io_threads2", "{:.1f}"),
            "ebj1": ("encode.encodes_per_s.jpeg_bytesio_threads1", "{:.1f}"),
            "ebj2": ("encode.encodes_per_s.jpeg_bytesio_threads2", "{:.1f}"),
            "ejs": ("encode.scaling.jpeg_image_io", "{:.3f}x"), "ejsp": ("encode.scaling_paired.jpeg_image_io", "{:.3f}x"),
            "ebjs": ("encode.scaling.jpeg_bytesio", "{:.3f}x"), "ebjsp": ("encode.scaling_paired.jpeg_bytesio", "{:.3f}x"),
            "eps": ("encode.scaling.png_image_io", "{:.3f}x"), "epbs": ("encode.scaling.png_bytesio", "{:.3f}x"),
            "ejobm": ("job.photos_per_s.memfd", "{:.2f}"), "ejobb": ("job.photos_per_s.bytesio", "{:.2f}"),
            "ejobr": ("job.memfd_over_bytesio", "{:.3f}x"), "ejobrp": ("job.memfd_over_bytesio_paired", "{:.3f}x"),
            "bcodec": ("batch.codec_items_per_s", "{:.2f}"), "bb2": ("batch.bound_items_per_s", "{:.2f}"),
            "ba2": ("batch.archive_items_per_s", "{:.2f}"), "ba2_24": ("batch.archive_items_per_s", "{:.2f}"),
            "bob_24": ("batch.archive_over_bound", "{:.3f}x"),
            "brender": ("batch.stages_ms_per_item.render", "{:.2f}"),
            "bprep": ("batch.stages_ms_per_item.prepare", "{:.2f}"),
            "cc0": ("video.0.codec_colour_over_codec", "{:.3f}x"), "cc1": ("video.1.codec_colour_over_codec", "{:.3f}x"),
            "cb0": ("video.0.pipeline_over_colour_bound", "{:.3f}x"),
            "cb1": ("video.1.pipeline_over_colour_bound", "{:.3f}x"),
            "cbp0": ("video.0.pipeline_over_colour_bound_paired", "{:.3f}x"),
            "cbp1": ("video.1.pipeline_over_colour_bound_paired", "{:.3f}x"),
            "gb0": ("video.0.bound_fps", "{:.2f}"), "gb1": ("video.1.bound_fps", "{:.2f}"),
            "cbf0": ("video.0.bound_colour_fps", "{:.2f}"), "cbf1": ("video.1.bound_colour_fps", "{:.2f}"),
            "bcc": ("batch.codec_colour_over_codec", "{:.3f}x"), "bcpucc": ("batch.cpu_ms_per_item.codec_colour", "{:.1f}"), "be2": ("batch.engine_items_per_s", "{:.2f}"), "bcb": ("batch.archive_over_colour_bound", "{:.3f}x")}
FIGURES |= {f"{tag}_{b}": (f"engine_only.images_per_s_variants.{name}.{b}", "{:.1f}")
            for tag, name in _VARIANTS.items() if tag != "c32" for b in (1, 64, 256)}
FIGURES |= {f"c32_{b}": (f"engine_only.images_per_s_chunk_rows.32.{b}", "{:.1f}") for b in (1, 16, 64, 128, 256)}
FIGURES |= {"m10": ("memory.10s.peak_rss_mb", "{:.1f}"), "m60": ("memory.60s.peak_rss_mb", "{:.1f}"),
            "mr": ("memory.long_over_short_peak", "{:.3f}x"), "g_xenc0": ("video.0.thread_cpu_ms_per_frame.pipeline."
                                                                      "encoder (x264 threads)", "{:.1f}")}


#: The rows of docs/benchmarks.md's table of benchmarks/batch_scaling.py's variants, in the file's order.
_SCALING_ROWS = ["as shipped then (16 workers, OpenCV's own pool)", "OpenCV on one thread",
                 "and glibc keeping freed arrays", "OpenCV on one thread, 8 workers"]


def _scaling_row(i: int, label: str) -> list[tuple[str, str, str, str, str]]:
    """PROSE entries for row ``i`` of that table: each figure checked, the others as the file gives them."""
    keys = [(f"variants.{i}.{k}", fmt) for k, fmt in (
        ("job.items_per_s", "{}"), ("codec.items_per_s", "{}"), ("job_over_codec", "{}"), ("job.cores_busy", "{}"),
        ("job.cpu_ms_per_item.user", "{}"), ("job.cpu_ms_per_item.sys", "{}"),
        ("job.context_switches_per_item.ivcsw", "{}"))]
    row = "| " + label + " | {} | {} | {} | {} | {} + {} | {} |"
    values = [fmt.format(_value(SCALE, key)) for key, fmt in keys]
    return [(BENCH, row.format(*[("{}" if j == n else v) for j, v in enumerate(values)]), SCALE, key, fmt)
            for n, (key, fmt) in enumerate(keys)]


def _each(doc: str, fragment: str, source: str) -> list[tuple[str, str, str, str, str]]:
    """PROSE entries for every figure named in ``fragment`` (``{v0}``, ``{p1}``: :data:`FIGURES`) from
    ``source``: one per figure, the others written in as the file gives them, so the whole fragment
    is checked."""
    names = re.findall(r"{(\w+)}", fragment)
    values = {n: FIGURES[n][1].format(_value(source, FIGURES[n][0])) for n in names}
    return [(doc, fragment.format(**{**values, n: "{}"}), source, *FIGURES[n]) for n in names]


#: (markdown file, text with {} for the figure, results file, key, format of the figure).
PROSE = [
    # README: what colorizing a long video in resumable parts costs (benchmarks/video_parts.py)
    ("README.md", "parts of 24 s, two rounds): {} the one pass's time", PARTS, "video.parts_over_one_pass_wall",
     "{:.3f}x"),
    ("README.md", "({} round by round), 0.84 s a", PARTS, "video.parts_over_one_pass_wall_paired", "{:.3f}x"),
    ("README.md", "round by round), {} s a join", PARTS, "video.extra_s_per_join", "{:.2f}"),
    # the Ray guide's 2-vs-1 actors figure, and the machine's own two-process ceiling, same test
    ("docs/ray.md", "reached {} the items/s of 1 actor", "cpu-2026-11-26.json",
     "bench:test_ray_actor_pool_throughput:scaling_2_over_1", "{:.2f}x"),
    ("docs/ray.md", "two busy Python processes, came out at {}", "cpu-2026-11-26.json",
     "bench:test_ray_actor_pool_throughput:machine_2proc_speedup", "{:.2f}x"),
    ("docs/ray.md", "Starting the actors took {} s", "cpu-2026-11-26.json",
     "bench:test_ray_actor_pool_throughput:ray_startup_s", "{:.2f}"),
    ("docs/ray.md", "Ray added {} ms per item", "cpu-2026-11-26.json",
     "bench:test_ray_actor_pool_throughput:overhead_ms_per_item_after_startup", "{:.1f}"),
    # docs/benchmarks.md: the video pipeline against its bound, run by run, and thread by thread
    *_each(BENCH, "11% more in the latest ({x264} against {x264_alone} ms a frame)", TOGETHER),
    *_each(BENCH, "6% more in the jobthreads run ({x264} against {x264_alone})", JOB),
    *_each(BENCH, "at 576p, 18% more in the latest ({x264_576} against {x264_576_alone} ms)", TOGETHER),
    *_each(BENCH, "so the encode row reads {stage_encode} ms at 1080p where the previous run", TOGETHER),
    *_each(BENCH, "where the previous run read {stage_encode} ms.", JOB),
    *_each(BENCH, "reach the bound: {t1} at 1080p ({tp1} round by round), above it at 576p ({t0}) and for the "
                  "photos ({tb})", TOGETHER),
    *_each(BENCH, "the codec at once ({o1} at 1080p, {o0} at 576p, {ob} for the photos): composing each frame "
                  "({compose} ms of CPU time a 1080p frame in the thread table; {stage_compose} ms timed alone in "
                  "the stage table), reading its full-resolution L\\* ({reader} ms), and the encoder working beside "
                  "them ({x264} ms a frame in the pipeline against {x264_alone} alone; the colour by itself took it "
                  "from {enc_gray} to {enc_colour} ms in colour encode)", TOGETHER),
    *_each(BENCH, "means going from {o1} of the engine and codec at once", TOGETHER),
    *_each(BENCH, "13.3 in the third, {compose} in the latest)", TOGETHER),
    *_each(BENCH, "in the second, {compose} in the third", JOB),
    *_each(BENCH, "more in the second scratch run ({x264} against {x264_alone})", SCRATCH),
    *_each(BENCH, "more in the first ({x264} against {x264_alone})", SCRATCH1),
    *_each(BENCH, "9% more in the gamut run ({x264} against {x264_alone})", GAMUT),
    *_each(BENCH, "at 1080p: {compose} ms a frame in the first of the four runs", SCRATCH1),
    *_each(BENCH, "since, {compose} in the second", SCRATCH),
    *_each(BENCH, "not at 1080p in the latest run: {v0} at 576p and {v1} at 1080p** ({p0} and {p1} round by "
                  "round); batch reaches {b}.", TOGETHER),
    *_each(BENCH, "0.960x in the second scratch run, {v0} in the jobthreads run", JOB),
    *_each(BENCH, "0.93x in the batch-2 run, {v0} in the strips run", STRIPS),
    *_each(BENCH, "in the strips run, {v0} in the gamut run", GAMUT),
    *_each(BENCH, "in the gamut run, {v0} in the second scratch run", SCRATCH),
    *_each(BENCH, "at 1080p, {v1} in the strips run came nearest", STRIPS),
    *_each(BENCH, "`pipeline-cpu-2026-11-30-scratch-first.json` ({v0} / {v1}, batch {b3};", SCRATCH1),
    *_each(BENCH, "its round-by-round ratio is {p1})", SCRATCH1),
    *_each(BENCH, "`pipeline-cpu-2026-11-30-scratch.json` ({v0} / {v1}, or {p0} / {p1} round by round, batch {b}, "
                  "load 1.5-3.4)", SCRATCH),
    *_each(BENCH, "load 1.0-3.3): {v0} / {v1}, or {p0} / {p1} round by round. The tables", JOB),
    *_each(BENCH, "(`pipeline-cpu-2026-11-30-together.json`, load 1.3-3.6): {v0} / {v1}, or {p0} / {p1} round by "
                  "round, batch {b}. So the goal", TOGETHER),
    *_each(BENCH, "at 1080p in none (nearest: {v1} in the strips run)", STRIPS),
    *_each(BENCH, "each round's own ratio beside the best rounds' ({v0} / {v1}, or {p0} / {p1} round by round, "
                  "batch {b}, load 1.3-3.3)", GAMUT),
    *_each(BENCH, "after the strips of rows ({v0} / {v1}, batch {b}, load 2.0-3.6)", STRIPS),
    (BENCH, "parted at 1080p ({} against 0.89x)", GAMUT, "video.1.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "parted at 1080p (0.85x against {})", GAMUT, "video.1.pipeline_over_bound_paired", "{:.2f}x"),
    (BENCH, "in the gamut run; {} ms in the latest", JOB, "video.1.stages_ms_per_frame.compose_yuv", "{:.1f}"),
    *_each("README.md", "in this run (576p {v0}, or {p0} round by round; 1080p {v1}, or {p1} round by round)", TOGETHER),
    *_each("README.md", "run at once in one process, reach {t1} of the bound at 1080p", TOGETHER),
    (BENCH, "still at batch 8 ({} / 0.85x, batch 0.79x", THREADS, "video.0.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "batch 8 (0.85x / {}, batch 0.79x", THREADS, "video.1.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "0.85x / 0.85x, batch {}, under", THREADS, "batch.archive_over_bound", "{:.2f}x"),
    (BENCH, "with video at batch 2 ({} / 0.87x, batch", BATCH2, "video.0.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "batch 2 (0.93x / {}, batch", BATCH2, "video.1.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "{} in the batch-2 run", BATCH2, "video.0.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "in the gamut run's stage table: {} ms, 5.0 before", GAMUT, "video.1.stages_ms_per_frame.resize", "{:.1f}"),
    (BENCH, "in the gamut run's stage table: 1.3 ms, {} before", YUV420, "video.1.stages_ms_per_frame.resize",
     "{:.1f}"),
    (BENCH, "in the earlier run; {} against 56.8 ms in the gamut run", GAMUT,
     "video.1.stages_ms_per_frame.compose_yuv", "{:.1f}"),
    (BENCH, "engine (video {} / 0.75x of the bound", FIRST, "video.0.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "engine (video 0.80x / {} of the bound", FIRST, "video.1.pipeline_over_bound", "{:.2f}x"),
    (BENCH, "at 576p / 1080p, batch {});", FIRST, "batch.archive_over_bound", "{:.2f}x"),
    # engine only at 256 through the engine class, this CPU (the figure the GPU run is prepared for)
    *_each("README.md", "engine-only figure through the default ONNX engine is {e1}, {e16} and {e64} images/s",
           TOGETHER),
    *_each(BENCH, "is {e1}, {e16} and {e64} images/s at batch 1, 16 and 64", TOGETHER),
    # the GPU path through the product on the H200 (docs/benchmarks.md's GPU section and README)
    *_each(BENCH, "| 1 | {e1} | 385.4 | 0.2 / 0.4 | | 16 | {e16} | 4273.7 | 1.0 / 0.7 | | 64 | {e64} | 8780.3 | 2.2 / 1.4 |",
           GPU1),
    *_each(BENCH, "| 1 | 170.3 | {l1} | {c1t} / {c1f} | | 16 | 2511.2 | {l16} | {c16t} / {c16f} | | 64 | 7089.3 | {l64} | "
                  "{c64t} / {c64f} | | 128 | | {l128} | {c128t} / {c128f} | | 256 | | {l256} | {c256t} / {c256f} |", GPU2),
    *_each(BENCH, "took batch 64 from {e64} to 8780.3 images/s", GPU1),
    *_each(BENCH, "took batch 64 from 7089.3 to {l64} images/s", GPU2),
    *_each(BENCH, "back take {c64t} and {c64f} ms, one after the other", GPU2),
    *_each(BENCH, "| 1080p | {g_e0} fps | {g_c0} | {g_b0} | {g_p0} | {g_v0} ({g_pp0} round by round) | {g_n0} | {g_pn0} | "
                  "| 576p | {g_e1} fps | {g_c1} | {g_b1} | {g_p1} | {g_v1} ({g_pp1} round by round) | {g_n1} | {g_pn1} |", GPU1),
    *_each(BENCH, "at 1080p, is missed: {g_v0}.** The pipeline against the naive loop ({g_pn0} at 1080p)", GPU1),
    *_each(BENCH, "decode + encode alone took {g_cc} ms a frame, the pipeline {g_cp}. x264's threads took {g_x0} in the "
                  "pipeline against {g_xa0} alone; the colour alone costs the encoder some of that ({g_eg} to {g_ec} ms "
                  "in colour encode)", GPU1),
    *_each(BENCH, "the compose ({g_comp} ms), threads that were alive before the job (JAX's runtime among them, {g_pool} "
                  "ms) and the reader ({g_read} ms)", GPU1),
    *_each(BENCH, "a frame: {g_cc} / {g_cp} is within 3% of the pipeline's {g_v0}", GPU1),
    *_each(BENCH, "{ba} photos/s against a bound of {bb} ({bob}), {bon} the naive loop ({bn}/s;", GPU1),
    *_each(BENCH, "as `streamcolor batch` picks it on a GPU: {ba} against {bb} ({bob}, {bobp} round by round). The "
                  "engine is not the limit ({be} photos/s alone); the archive spends {bcpu} CPU ms a photo against "
                  "{bcpuc} for decode + encode only", GPU2),
    *_each("README.md", "batch 1 and 16 on one thread, an earlier call: {l1} and {l16};", GPU2),
    # the two later calls: the copies' settings, chunks at once, the warm naive loop, memory
    *_each(BENCH, "| float32, one thread (the default until then) | {l1} | {l64} | {l256} | | bfloat16, one thread | "
                  "{b16_1} | {b16_64} | {b16_256} | | bfloat16, 8 threads | {b16x8_1} | {b16x8_64} | {b16x8_256} | | "
                  "float32, 8 threads | {x8_1} | {x8_64} | {x8_256} | | float32, 4 threads (the default now) | {x4_1} | "
                  "{x4_64} | {x4_256} |", GPU4),
    *_each(BENCH, "took {c64t} ms of a 7.3 ms call", GPU4),
    *_each(BENCH, "batch 64 went from {l64} to {x4_64} images/s and batch 256 from {l256} to {x4_256}.", GPU4),
    *_each(BENCH, "spread from {x8_1} to {l1} between rows", GPU4),
    *_each(BENCH, "it gained on batch 64 here ({l256} against {l64}, one thread)", GPU4),
    *_each(BENCH, "but not in the first of these calls ({l256} against {l64}), where", GPU3),
    *_each(BENCH, "at batch 64 and above ({c32_64} against {l64} at batch 64; at batch 16, two chunks of 32 against one "
                  "of 64, they were faster: {c32_16} against {l16})", GPU3),
    *_each(BENCH, "decode + encode of the same 1080p clip ran {g_c0} fps in the first of them against", GPU3),
    *_each(BENCH, "against {g_c0} above", GPU1),
    *_each(BENCH, "engine only {g_e0} fps, decode + encode only {g_c0} fps, bound {g_b0}, `colorize_video` {g_p0} fps: "
                  "**{g_v0} of the bound** ({g_pp0} round by round). The naive loop, now timed after its batch-1 shape "
                  "is compiled, ran {g_n0} fps, so the pipeline is **{g_pn0} the naive loop,", GPU3),
    *_each(BENCH, "the 3.58x above counted a compile", GPU1),
    *_each(BENCH, "{g_cc} ms for decode + encode only, {g_cp} for the pipeline, x264's threads {g_xenc0} against "
                  "{g_xa0} alone (the colour alone: {g_eg} to {g_ec} ms in colour encode), the compose {g_comp} and the "
                  "threads alive before the job {g_pool}.", GPU3),
    *_each(BENCH, "the 60 s clip peaked at {m60} MB against {m10} MB for 10 s ({mr}).", GPU3),
    *_each(BENCH, "in the second call the 60 s clip peaked at {m60} MB against {m10} MB for 10 s ({mr}): flat.", GPU4),
    *_each("README.md", "4 threads as it now does there: {x4_64} images/s at batch 64 and {x4_256} at batch", GPU4),
    *_each("README.md", "on one thread, the same call: {l64} and {l256};", GPU4),
    *_each("README.md", "a later call gave {g_v0} at 1080p and {g_pn0} the naive loop", GPU3),
    *_each("README.md", "stayed flat from a 10 s to a 60 s clip ({m10} and {m60} MB)", GPU4),
    ("README.md", "the pipeline is {} a naive frame-by-frame loop", GPU3, "video.0.pipeline_over_naive", "{:.2f}x"),
    *_each("README.md", "at 1080p `colorize_video` ran {g_p0} fps against a bound of {g_b0} ({g_v0}; the goal is nine tenths), at "
                        "576p {g_p1} against {g_b1} ({g_v1})", GPU1),
    *_each("README.md", "Photos (1 megapixel, batch 64): {ba}/s against a bound of {bb} ({bob})", GPU2),
    ("README.md", "video is limited by x264 on the CPU ({} of decode + encode alone at 1080p in the first call", GPU1,
     "video.0.pipeline_over_bound", "{:.2f}x"),
    # the two calls of 2026-12-04, with the default model v2
    *_each(BENCH, "2 rounds): {e1} images/s at batch 1, {e16} at 16, {e64} at 64 and {l256} at 256. Copying a "
                  "batch-64 input to the GPU took {c64t} ms", GPU5),
    *_each(BENCH, "engine only {g_e0} fps, decode + encode only {g_c0} fps, bound {g_b0}, `colorize_video` {g_p0} fps: "
                  "**{g_v0} of the bound** ({cb0} against the bound made with decode + encode of the colour output)",
           GPU6),
    *_each(BENCH, "The naive loop ran {g_n0} fps, so the pipeline is **{g_pn0} the naive loop, not 3x,", GPU6),
    *_each(BENCH, "the codec floor itself is {g_c0} against {g_n0} fps, under 2.5x", GPU6),
    *_each(BENCH, "The CPU time a frame: {g_cc} ms for decode + encode only, {g_cp} for the pipeline; x264's threads "
                  "{g_xenc0} against {g_xa0} alone (the colour alone: {g_eg} to {g_ec} ms in colour encode), the "
                  "compose {g_comp}, the threads alive before the job {g_pool}.", GPU6),
    *_each(BENCH, "`colorize_archive` {ba} photos/s against a bound of {bb} ({bob}; {bobp} round by round), {bon} the "
                  "naive loop ({bn}/s). Decode + encode only of the same photos ran {bcodec}/s", GPU5),
    *_each(BENCH, "ran {brgb} photos/s at {bcpurgb} CPU ms a photo", GPU5),
    (BENCH, "two rounds of the job took {} s and 1.60 s", GPU5, "batch.all_rounds_s.archive.0", "{:.2f}"),
    (BENCH, "two rounds of the job took 39.95 s and {} s", GPU5, "batch.all_rounds_s.archive.1", "{:.2f}"),
    (BENCH, "OpenCV's pool is among them) took {} CPU ms a photo", GPU5,
     "batch.thread_cpu_ms_per_item.engine pool (alive before)", "{:.1f}"),
    (BENCH, "against {} for the workers", GPU5, "batch.thread_cpu_ms_per_item.workers (decode, L*, render, encode, write)",
     "{:.1f}"),
    *_each("README.md", "engine only {e64} images/s at batch 64 and {l256} at 256 (the 10,000", GPU5),
    *_each("README.md", "1080p video {g_p0} fps against a bound of {g_b0} ({g_v0}, one round) and {g_pn0} the naive "
                        "loop", GPU6),
    *_each("README.md", "x264's floor itself is {g_c0} fps against the naive loop's {g_n0}.", GPU6),
    *_each("README.md", "Photos: {ba}/s against a bound of {bb} ({bob})", GPU5),
    ("README.md", "at 1080p in the first call there, {} in the latest)", GPU6, "video.0.pipeline_over_bound", "{:.2f}x"),
    # the batch part again after the batching change (2026-12-04), and the job's engine calls before and after
    *_each(BENCH, "`streamcolor batch` ran {ba2} photos/s against a bound of {bb2}: {bob} ({bobp} round by round).",
           "pipeline-cpu-2026-12-04-batch.json"),
    *_each(BENCH, "(11.09 photos/s alone against {bcodec} for decode + encode only)", "pipeline-cpu-2026-12-04-batch.json"),
    *_each(BENCH, "({be2} photos/s alone against 53.31 for decode + encode only)", "pipeline-cpu-2026-12-04-batch.json"),
    *_each("README.md", "the batch job at {bob} of the bound ({bobp} round by round).", "pipeline-cpu-2026-12-04-batch.json"),
    (BENCH, "calls of {} photos in one run", "batch-sizes-2026-12-04.json", "before.runs.0.sizes_text", "{}"),
    (BENCH, "photos in one run and {} in the next", "batch-sizes-2026-12-04.json", "before.runs.1.sizes_text", "{}"),
    (BENCH, "being written): {} in both runs", "batch-sizes-2026-12-04.json", "after.runs.0.sizes_text", "{}"),
    (BENCH, "being written): {} in both runs", "batch-sizes-2026-12-04.json", "after.runs.1.sizes_text", "{}"),
    # the batch part alone on 2026-12-01, with its steps and threads
    *_each(BENCH, "That run: `streamcolor batch` at {bob} of the bound ({bobp} round by round), {bcpu} CPU ms a photo "
                  "against {bce} for engine only and {bcpuc} for decode + encode only.", BATCH1201),
    *_each(BENCH, "That run: `streamcolor video` at {v0} of the bound at 576p and {v1} at 1080p; `streamcolor batch` "
                  "at {bob} of the bound ({bobp} round by round), {bcpu} CPU ms a photo against {bce} for engine only "
                  "and {bcpuc} for decode + encode only.", VNNI1201),
    *_each(BENCH, "`streamcolor batch` at {bob} of the bound ({bobp} round by round), {ba} photos/s against a bound "
                  "of {bb}, {bcpu} CPU ms a photo.", PLANES1201),
    *_each(BENCH, "ran {brgb} photos/s and {bcpurgb} CPU ms a photo: the planes are {bor} its photos/s ({borp} round "
                  "by round).", PLANES1201),
    # encoding without the GIL (benchmarks/encode_threads.py), and the whole script after it
    *_each(BENCH, "ran {ej1} encodes/s on one thread and {ej2} on two through `image_io` ({ejs}, {ejsp} round by "
                  "round), against {ebj1} and {ebj2} into a `BytesIO` ({ebjs}, {ebjsp} round by round).", ENC1201J),
    *_each(BENCH, "On one thread the descriptor costs a little: {ej1} against {ebj1} encodes/s. PNG, through the "
                  "same code either way, scales alike ({eps} and {epbs}). The batch job on 96 gray 1 MP JPEGs, rounds "
                  "alternating: {ejobm} photos/s against {ejobb} with the `BytesIO`, **{ejobr}** ({ejobrp} round by "
                  "round).", ENC1201J),
    *_each(BENCH, "(`encode-threads-cpu-2026-12-01.json`), gave {jsm} and {jsb} for the JPEG scaling and {jobr} "
                  "({jobrp}) for the job.", ENC1201),
    *_each(BENCH, "benchmarks/results/pipeline-cpu-2026-12-01-memfd-24.json`): {ba2_24} photos/s, {bob_24} of the "
                  "bound.", MEMFD24),
    *_each(BENCH, "so it gained from the change too: {bcodec} photos/s here,", MEMFD1201),
    *_each(BENCH, "before it). The bound rose with it to {bb2}, and "
                  "`streamcolor batch`, at {ba2} photos/s, is **{bob} of the bound** ({bobp} round by round): {bcpu} "
                  "CPU ms a photo against {bce} for engine only and {bcpuc} for decode + encode only. Video: "
                  "{v0} of the bound at 576p and {v1} at 1080p (0.868x", MEMFD1201),
    *_each(BENCH, "at 1080p ({v0} and {v1} in the first run of today: within the spread between runs)", VNNI1201),
    *_each(BENCH, "149.86 photos/s here, against {bcodec} in the first run of today", VNNI1201),
    *_each(BENCH, "the render of the Y'CbCr planes and the network input ({brender} and {bprep} ms a photo in the "
                  "step table); in video, x264 working on colour (the encoder's threads took {x264} CPU ms a 1080p "
                  "frame in the pipeline against {x264_alone} alone) and the compose ({compose} ms).", MEMFD1201),
    *_each("README.md", "on that machine two threads encoded {ejs} the JPEGs/s of one, against {ebjs} before, and "
                        "the batch job ran {ejobr} the photos/s", ENC1201J),
    *_each("README.md", "video at {v0} of the bound at 576p ({p0} round by round) and {v1} at 1080p ({p1} round by "
                        "round), so at 1080p nine tenths is reached by one measure and missed by a hair by the "
                        "other; the batch job at {b3} ({bobp} round by round).", GUIDED1202),
    *_each("README.md", "Against the issue's gray bound, video was at {v0} and {v1} in that run:", COLOUR1201B),
    *_each("README.md", "video at {v0} of the bound at 576p ({p0} round by round) and {v1} at 1080p ({p1} round by "
                        "round), just under nine tenths at both sizes; against the bound of encoding the colour "
                        "frames (colour costs the encoder a few percent) {cb0} and {cb1}; the batch job at {b3} "
                        "({bobp} round by round).", V2BOUND),
    # the default model's guided filter alone against the bilinear upsampling it replaced (bench_guided.py)
    ("README.md", "`streamcolor/engines/guided.py`; {} ms a 320x240 frame here", GUIDED_BENCH,
     "bench:test_guided_upsampling_against_bilinear:sizes.320x240.guided_reused_arrays_ms", "{:.3f}"),
    (BENCH, "with reused arrays, it takes {} ms a 320x240 frame", GUIDED_BENCH,
     "bench:test_guided_upsampling_against_bilinear:sizes.320x240.guided_reused_arrays_ms", "{:.3f}"),
    (BENCH, "a 320x240 frame, {} the bilinear upsampling it replaces", GUIDED_BENCH,
     "bench:test_guided_upsampling_against_bilinear:sizes.320x240.guided_reused_over_bilinear", "{:.1f}x"),
    # the bound with the colour (the second run: the first, COLOUR1201, had the faults its section names)
    *_each("README.md", "`streamcolor video` ran at {cb0} (576p) and {cb1} (1080p)", COLOUR1201B),
    *_each("README.md", "and the batch job {bcb} of it ({bob} of the gray bound)", COLOUR1201B),
    *_each(BENCH, "The colour slows decode + encode only to {cc0} of the gray clip's rate at 576p and {cc1} at 1080p. "
                  "Against the bound made with it, `streamcolor video` runs at **{cb0}** at 576p ({cbp0} round by "
                  "round) and **{cb1}** at 1080p ({cbp1}):", COLOUR1201B),
    *_each(BENCH, "it is **{v0}** and **{v1}** ({p0} and {p1} round by round): the goal", COLOUR1201B),
    *_each(BENCH, "(the bound goes from {gb0} to {cbf0} fps at 576p and from {gb1} to {cbf1} at 1080p)", COLOUR1201B),
    *_each(BENCH, "decode + encode with it runs {bcc} of the gray photos' rate. `streamcolor batch` is at {bcb} of the "
                  "bound made with it and {bob} of the gray bound ({bobp} round by round)", COLOUR1201B),
    *_each(BENCH, "8.67 and 1.95 ms a photo, against {bcpucc} CPU ms a photo for decode and encode with the colour",
           COLOUR1201B),
    *_each(BENCH, "the machine ran slower throughout (engine only {be2} photos/s, against", COLOUR1201B),
    *_each(BENCH, "photos/s, against {be2} in the memfd run)", MEMFD1201),
    # streamcolor video's peak memory by frame size (benchmarks/bench_memory.py --video)
    ("README.md", "a peak of {} MB at 1080p", "memory-video-2026-12-02.json", "runs.2.peak_rss_mb", "{:,.0f}"),
    ("README.md", "and {} MB at 4K", "memory-video-2026-12-02.json", "runs.3.peak_rss_mb", "{:,.0f}"),
    ("README.md", "against {} MB for tiny frames", "memory-video-2026-12-02.json", "runs.0.peak_rss_mb", "{:,.0f}"),
    ("README.md", "measured at {} to 328", "memory-video-2026-12-02.json", "runs.3.bytes_per_frame_pixel", "{:.0f}"),
    ("README.md", "measured at 306 to {}", "memory-video-2026-12-02.json", "max_bytes_per_frame_pixel", "{:.0f}"),
    # the default model v2 (2026-12-03) against v1 on the same photos, paired; its two seeds
    ("README.md", "(0.761x, PSNR {} dB above gray)", Q1203, "runs.default@320.holdout.psnr_over_gray", "{:.2f}"),
    ("README.md", "(0.939x gray MSE, PSNR {} dB above gray)", Q1203, "runs.seed@256.holdout.psnr_over_gray", "{:.2f}"),
    ("README.md", "on the holdout its a\\*b\\* MSE is {} v1's", Q1203, "paired.default@320.holdout.mse_ratio",
     "{:.3f}x"),
    ("README.md", "v1's ({}-0.974)", Q1203, "paired.default@320.holdout.interval_95.0", "{:.3f}"),
    ("README.md", "v1's (0.878-{})", Q1203, "paired.default@320.holdout.interval_95.1", "{:.3f}"),
    ("README.md", "better on {} of the 93 photos", Q1203, "paired.default@320.holdout.better_on", "{}"),
    ("README.md", "on val {} (0.894-1.099)", Q1203, "paired.default@320.val.mse_ratio", "{:.3f}x"),
    ("README.md", "on val 1.009x ({}-1.099)", Q1203, "paired.default@320.val.interval_95.0", "{:.3f}"),
    ("README.md", "on val 1.009x (0.894-{})", Q1203, "paired.default@320.val.interval_95.1", "{:.3f}"),
    ("README.md", "chosen on val (0.608x against {} gray)", Q1203, "runs.seed-0-run@320.val.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "the other scores {} on the", Q1203, "runs.seed-0-run@320.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "holdout (v1: {}), so part", Q1203, "runs.previous@320.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "It lowers the holdout's a\\*b\\* MSE from {} to 0.761x gray", Q1203,
     "runs.default@320 --no-guided.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "(0.65 of the truth's colourfulness on the holdout against {})", Q1203,
     "runs.default@320 --no-guided.holdout.colorfulness_ratio", "{:.2f}"),
    ("README.md", "on the holdout 0.761x and {})", Q1203, "runs.seed-0-run@320.holdout.mse_ratio_to_gray", "{:.3f}x"),
    # test-time ensembles and gains (benchmarks/ensembles.py)
    ("README.md", "the mean of renders 224, 320 and 448, scores {} on val", ENS,
     "splits.val.mse_over_gray.224 + 320 + 448", "{:.3f}x"),
    ("README.md", "scores 0.602x on val and {} on the holdout", ENS, "splits.holdout.mse_over_gray.224 + 320 + 448",
     "{:.3f}x"),
    ("README.md", "(render 320 alone: {} and 0.823x)", ENS, "splits.val.mse_over_gray.render 320", "{:.3f}x"),
    ("README.md", "(render 320 alone: 0.611x and {})", ENS, "splits.holdout.mse_over_gray.render 320", "{:.3f}x"),
    ("README.md", "(a\\*b\\* x 0.8) would score {} on the holdout", ENS,
     "splits.holdout.mse_over_gray.render 320, gain 80%", "{:.3f}x"),
    ("README.md", "but val prefers none ({} at 0.8)", ENS, "splits.val.mse_over_gray.render 320, gain 80%", "{:.3f}x"),
    # training recipes judged on ten held-out training packages (benchmarks/ood_recipes.sh)
    ("README.md", "the shipped schedule scores {} gray there", OOD, "recipes.A.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "one epoch {}, and dropout", OOD, "recipes.B.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "(rejected on val before) {}, but", OOD, "recipes.C.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "but with {} of the truth's colour against 0.71", OOD, "recipes.C.colorfulness_ratio", "{:.2f}"),
    ("README.md", "of the truth's colour against {}: on unseen", OOD, "recipes.A.colorfulness_ratio", "{:.2f}"),
    ("README.md", "left out of training and scored ({} photos)", OOD, "recipes.A.photos", "{}"),
    ("README.md", "rebalanced loss alone gives colour ({}) at", OOD, "recipes.D.colorfulness_ratio", "{:.2f}"),
    ("README.md", "gives colour (0.87) at {}; with", OOD, "recipes.D.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "weight decay it scores {} with", OOD, "recipes.E.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "with {} of the colour, better", OOD, "recipes.E.colorfulness_ratio", "{:.2f}"),
    ("README.md", "that recipe scores {} on the holdout", OOD, "all_data.E.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "the shipped schedule {} (val:", OOD, "all_data.A.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "(val: {} and 0.666x)", OOD, "all_data.E.val.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "(val: 0.667x and {})", OOD, "all_data.A.val.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "and v1 itself {} the same way", Q95,
     "runs.default@320 --no-guided.holdout.mse_ratio_to_gray", "{:.3f}x"),
    # training recipes judged by package-grouped cross-validation, two seeds (benchmarks/ood_cv.sh)
    ("README.md", "each of the {} training packages is scored once", OODCV, "runs.A-s0.packages", "{}"),
    ("README.md", "by decoders trained without its fold of packages ({} photos)", OODCV, "runs.A-s0.photos", "{}"),
    ("README.md", "moves the shipped schedule from {} to 0.814x gray", OODCV, "runs.A-s0.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "moves the shipped schedule from 0.865x to {} gray", OODCV, "runs.A-s1.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "weight decay 0.05 scored {} of the shipped schedule's MSE", OODCV,
     "runs.C-s0.against_A.mse_ratio_to_A", "{:.3f}x"),
    ("README.md", "(95% interval over packages {}-0.986)", OODCV, "runs.C-s0.against_A.ci95.0", "{:.3f}"),
    ("README.md", "(95% interval over packages 0.874-{})", OODCV, "runs.C-s0.against_A.ci95.1", "{:.3f}"),
    ("README.md", "and {} with seed 1, both times", OODCV, "runs.C-s1.against_A.mse_ratio_to_A", "{:.3f}x"),
    ("README.md", "with less colour ({} and 0.47 of the truth's", OODCV, "runs.C-s0.colorfulness_ratio", "{:.2f}"),
    ("README.md", "with less colour (0.56 and {} of the truth's", OODCV, "runs.C-s1.colorfulness_ratio", "{:.2f}"),
    ("README.md", "against {} and 0.62); with", OODCV, "runs.A-s0.colorfulness_ratio", "{:.2f}"),
    ("README.md", "against 0.66 and {}); with", OODCV, "runs.A-s1.colorfulness_ratio", "{:.2f}"),
    ("README.md", "with the rebalanced loss too, {} (seed 0)", OODCV, "runs.E-s0.against_A.mse_ratio_to_A",
     "{:.3f}x"),
    ("README.md", "x 0.85 scores {} and 0.967x of it", OODCV, "runs.A-s0-x85.against_A.mse_ratio_to_A", "{:.3f}x"),
    ("README.md", "x 0.85 scores 0.954x and {} of it", OODCV, "runs.A-s1-x85.against_A.mse_ratio_to_A", "{:.3f}x"),
    ("README.md", "both intervals under 1, at {} and 0.53 of the colour", OODCV, "runs.A-s0-x85.colorfulness_ratio",
     "{:.2f}"),
    ("README.md", "both intervals under 1, at 0.56 and {} of the colour", OODCV, "runs.A-s1-x85.colorfulness_ratio",
     "{:.2f}"),
    ("README.md", "dropout and weight decay score {} on the holdout with", OODCV, "all_data.C.holdout.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "on the holdout with {} of the colour, or", OODCV, "all_data.C.holdout.colorfulness_ratio", "{:.2f}"),
    ("README.md", "or with a\\*b\\* x 1.15 {} with 0.63", OODCV, "all_data.C-x115.holdout.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "x 1.15 0.819x with {} (`train eval", OODCV, "all_data.C-x115.holdout.colorfulness_ratio", "{:.2f}"),
    ("README.md", "where v1 scores {} with 0.69 the same way", Q95,
     "runs.default@320 --no-guided.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "where v1 scores 0.837x with {} the same way", Q95,
     "runs.default@320 --no-guided.holdout.colorfulness_ratio", "{:.2f}"),
    ("README.md", "on val {} against its 0.618x", OODCV, "all_data.C.val.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "on val 0.695x against its {}", Q95, "runs.default@320 --no-guided.val.mse_ratio_to_gray", "{:.3f}x"),
    # the U-Net's frozen encoder, Lite0 against Lite2, two seeds each (benchmarks/encoders.py)
    ("README.md", "scores {} and 0.844x gray on the holdout", ENC, "runs.lite2-A-s0.holdout.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "scores 0.844x and {} gray on the holdout", ENC, "runs.lite2-A-s1.holdout.mse_ratio_to_gray",
     "{:.3f}x"),
    ("README.md", "against Lite0's {} and 0.821x", ENC, "runs.lite0-A-s0.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "against Lite0's 0.813x and {}, and", ENC, "runs.lite0-A-s1.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "the same as Lite0 on val ({} against", ENC, "means.lite2.val.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "against {}, the mean of the seeds", ENC, "means.lite0.val.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "for {} times the network's arithmetic", ENC, "gflops_lite2_over_lite0", "{:.2f}"),
    ("README.md", "arithmetic ({} against 3.32 GFLOPs", ENC, "gflops_320x256.lite2", "{:.2f}"),
    ("README.md", "against {} GFLOPs an image at render 320", ENC, "gflops_320x256.lite0", "{:.2f}"),
    # the 98 photos the surveys found, added to training as an experiment (benchmarks/more_photos.sh)
    ("README.md", "`more-photos-2026-12-03.json`) give {} and 0.814x on the holdout", MORE,
     "runs.more-A-s0.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "`more-photos-2026-12-03.json`) give 0.783x and {} on the holdout", MORE,
     "runs.more-A-s1.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "(without them {} and 0.821x)", MORE, "runs.lite0-A-s0.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "(without them 0.813x and {})", MORE, "runs.lite0-A-s1.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "{} against 0.817x on average", MORE, "means.more.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "0.799x against {} on average", MORE, "means.lite0.holdout.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "other way ({} against 0.692x)", MORE, "means.more.val.mse_ratio_to_gray", "{:.3f}x"),
    ("README.md", "other way (0.704x against {})", MORE, "means.lite0.val.mse_ratio_to_gray", "{:.3f}x"),
    # the later device calls of 2026-12-04: engine, batch on 512 photos, OpenCV on one thread, 576p, the CLI twice
    *_each(BENCH, "2 rounds): {e1} images/s at batch 1, {e16} at 16, {e64} at 64 and {l256} at 256; a batch-64 input "
                  "took {c64t} ms to copy", GPU7),
    *_each(BENCH, "Three calls on three days now: 10509.6, 7440.9 and {e64} at batch 64.", GPU7),
    *_each(BENCH, "`colorize_archive` {ba2} photos/s against a bound of {bb2} (**{bob}**; {bobp} round by round), "
                  "{bon} the naive loop ({bn}/s).", GPU7),
    *_each(BENCH, "a photo costs it {bcpu} CPU ms against {bcpuc} for decode + encode only.", GPU7),
    (BENCH, "Both rounds took about 5 s ({} and 4.97 s)", GPU7, "batch.all_rounds_s.archive.0", "{:.1f}"),
    (BENCH, "Both rounds took about 5 s (5.4 and {} s)", GPU7, "batch.all_rounds_s.archive.1", "{:.2f}"),
    (BENCH, "ran {} photos/s at 45.5 CPU ms", GPU7, "batch_cv2_threads_1.archive_rgb_route_items_per_s", "{:.2f}"),
    (BENCH, "ran 149.64 photos/s at {} CPU ms", GPU7, "batch_cv2_threads_1.cpu_ms_per_item.archive_rgb_route", "{:.1f}"),
    *[entry for i, label in enumerate(_SCALING_ROWS) for entry in _scaling_row(i, label)],
    *_each(BENCH, "**576p video** (240 frames, 2 rounds, x264 on the 16 cores): `colorize_video` {g_p0} fps against a "
                  "bound of {g_b0} ({g_v0}; {g_pp0} round by round; {g_cb0} against the bound made with the colour "
                  "output's encode), {g_pn0} the naive loop ({g_n0} fps).", GPU7),
    *_each("README.md", "engine only {e64} images/s at batch 64 (so 10,000", GPU7),
    *_each("README.md", "photos, 512 of them: {ba2}/s against a bound of {bb2} ({bob})", GPU7),
    *_each("README.md", "576p video: {g_p0} fps against a bound of {g_b0} ({g_v0})", GPU7),
    # the GIL a photo of a batch job (benchmarks/gil_profile.py), before and after Image.merge was replaced
    (BENCH, "**The job holds the GIL about 9 ms a photo** ({} ms, the mean of three runs", GIL,
     "means.before.job_gil_ms", "{:.2f}"),
    (BENCH, "Decode + encode only: {} GIL ms a photo before, 1.72 after", GIL, "means.before.codec_gil_ms", "{:.2f}"),
    (BENCH, "Decode + encode only: 2.36 GIL ms a photo before, {} after", GIL, "means.after.codec_gil_ms", "{:.2f}"),
    (BENCH, "the job's encode step: {} to 0.70 ms", GIL, "means.before.job_encode_gil_ms", "{:.2f}"),
    (BENCH, "the job's encode step: 1.82 to {} ms", GIL, "means.after.job_encode_gil_ms", "{:.2f}"),
    (BENCH, "run-to-run spread (8.95 to {} ms)", GIL, "means.after.job_gil_ms", "{:.2f}"),
    (BENCH, "run-to-run spread ({} to 8.90 ms)", GIL, "means.before.job_gil_ms", "{:.2f}"),
    # worker processes (--processes)
    (BENCH, "{} GIL ms a photo with threads", GIL3, "summary.threads_job_gil_ms", "{:.3f}"),
    (BENCH, "threads, {} with two processes", GIL3, "summary.procs_job_gil_ms", "{:.3f}"),
    (BENCH, "slower with them ({} photos/s against", GIL3, "summary.procs_photos_per_s", "{:.2f}"),
    (BENCH, "photos/s against {}: the workers compete", GIL3, "summary.threads_photos_per_s", "{:.2f}"),
    (BENCH, "3.354 with two processes, {} ms of which outside", GIL3, "runs.1.job.by_streamcolor_path_ms.(outside streamcolor)", "{:.2f}"),
    ("README.md", "held it {} ms a photo instead of 4.979", GIL3, "summary.procs_job_gil_ms", "{:.3f}"),
    ("README.md", "a photo instead of {}, most of", GIL3, "summary.threads_job_gil_ms", "{:.3f}"),
    ("README.md", "is slower ({} against 19.76", GIL3, "summary.procs_photos_per_s", "{:.2f}"),
    ("README.md", "(17.02 against {} photos/s", GIL3, "summary.threads_photos_per_s", "{:.2f}"),
    ("README.md", "on the CPU: {} ms before, 5.32 after", GIL2, "means.before.job_gil_ms", "{:.2f}"),
    # each photo kept in the worker that decoded it
    (BENCH, "GIL ms a photo in the job's process, means: {} as before", GIL4, "summary.base_procs_job_gil_ms", "{:.3f}"),
    (BENCH, "{} with the photos kept (six runs)", GIL4, "summary.kept_procs_job_gil_ms", "{:.3f}"),
    (BENCH, "{} with the upsampling in the workers too", GIL4, "summary.refine_procs_job_gil_ms", "{:.3f}"),
    (BENCH, "pickling and reading the pipes {}, 0.613", GIL4, "summary.base_procs_pickling_gil_ms", "{:.3f}"),
    (BENCH, "pipes 1.639, {} and 0.549", GIL4, "summary.kept_procs_pickling_gil_ms", "{:.3f}"),
    (BENCH, "0.613 and {}. A ceiling", GIL4, "summary.refine_procs_pickling_gil_ms", "{:.3f}"),
    (BENCH, "the job ran {}, 18.31 and 19.11 photos/s", GIL4, "summary.base_procs_photos_per_s", "{:.2f}"),
    (BENCH, "the job ran 17.56, {} and 19.11 photos/s", GIL4, "summary.kept_procs_photos_per_s", "{:.2f}"),
    (BENCH, "17.56, 18.31 and {} photos/s with two", GIL4, "summary.refine_procs_photos_per_s", "{:.2f}"),
    (BENCH, "two processes, {} with threads", GIL4, "summary.threads_photos_per_s", "{:.2f}"),
    ("README.md", "holds the GIL {} ms a photo (3.208", GIL4, "summary.refine_procs_job_gil_ms", "{:.3f}"),
    ("README.md", "ms a photo ({} before, the same day)", GIL4, "summary.base_procs_job_gil_ms", "{:.3f}"),
    ("README.md", "on the CPU: 5.71 ms before, {} after", GIL2, "means.after.job_gil_ms", "{:.2f}"),
    # gray JPEGs decoded by OpenCV, the planes' colour work in OpenCV calls
    (BENCH, "decode + encode only {} GIL ms a photo before", GIL2, "means.before.codec_gil_ms", "{:.2f}"),
    (BENCH, "GIL ms a photo before, {} after; the job", GIL2, "means.after.codec_gil_ms", "{:.2f}"),
    (BENCH, "after; the job {} before, 5.32 after", GIL2, "means.before.job_gil_ms", "{:.2f}"),
    (BENCH, "the job 5.71 before, {} after", GIL2, "means.after.job_gil_ms", "{:.2f}"),
    (BENCH, "(engine-bound) {} photos/s before", GIL2, "means.before.job_items_per_s", "{:.2f}"),
    (BENCH, "photos/s before, {} after, decode", GIL2, "means.after.job_items_per_s", "{:.2f}"),
    (BENCH, "decode + encode only {} before", GIL2, "means.before.codec_items_per_s", "{:.2f}"),
    (BENCH, "103.56 before, {} after", GIL2, "means.after.codec_items_per_s", "{:.2f}"),
    *_each(BENCH, "which is what the H200's 16 cores gave ({ba2} photos/s in the 512-photo run", GPU7),
    (BENCH, "in the 512-photo run, {} with OpenCV on one thread", GPU7, "batch_cv2_threads_1.archive_items_per_s",
     "{:.2f}"),
    # an earlier GPU figure in README: the seed model's colorizer called directly (Keras 3 on JAX on the H200)
    ("README.md", "{} images/s in mixed bfloat16 at batch 16", "gpu-h200-inference.json",
     "keras_jax_mixed_bfloat16_colorizer_b16_images_per_s", "{:,.0f}"),
    # the seed model's 2026-11-26 figures kept in README's Performance section
    ("README.md", "it runs {} as many images/s as Zhang et al. ECCV16", "cpu-2026-11-26.json",
     "bench:test_peer_images_per_second[16]:ours_over_peer", "{:.1f}x"),
    ("README.md", "with the stabilizer on: {} against", "cpu-2026-11-26.json",
     "bench:test_video_flicker_with_and_without_stabilization:flow.warp_ab_rms", "{:.2f}"),
    ("README.md", "against {} with it off", "cpu-2026-11-26.json",
     "bench:test_video_flicker_with_and_without_stabilization:off.warp_ab_rms", "{:.2f}"),
]


def _doc_blocks():
    return [(doc, name, source, body) for doc in figures.DOCS for name, source, body in
            figures.blocks(doc.read_text())]


def test_every_figure_block_matches_its_results_file():
    found = _doc_blocks()
    assert {name for _, name, _, _ in found} >= {"video-bound", "video-stages"}, "the pipeline tables are gone"
    for doc, name, source, body in found:
        assert (ROOT / source).is_file(), f"{doc.name}: block {name} cites {source}, which does not exist"
        assert body == figures.render(name, source), (
            f"{doc.name}: block {name} differs from {source}; run python -m benchmarks.figures")


@pytest.mark.parametrize("doc,template,source,key,fmt", PROSE, ids=[f"{p[0]}:{p[3]}" for p in PROSE])
def test_prose_figure_matches_its_results_file(doc, template, source, key, fmt):
    assert template.count("{}") == 1, "a template names the place of its one figure"
    value = _value(source, key)
    text = " ".join((ROOT / doc).read_text().split())  # line breaks in prose are spaces
    assert template.format(fmt.format(value)) in text, (
        f"{doc} should quote {fmt.format(value)} from {source} ({key})")


def test_blocks_are_rewritten_from_their_file(tmp_path, monkeypatch):
    """The check above can fail: a hand-edited number in a block is found and put back."""
    src = next(s for _, n, s, _ in _doc_blocks() if n == "video-bound")
    good = figures.render("video-bound", src)
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n<!-- figures: video-bound {src} -->\n{good.replace('|', '| 99.9', 1)}"
                   "<!-- /figures -->\nend\n")
    (name, _, body), = figures.blocks(doc.read_text())
    assert body != good
    assert figures.rewrite(doc) and figures.blocks(doc.read_text())[0][2] == good
    assert doc.read_text().startswith("intro\n") and doc.read_text().endswith("end\n")


def test_performance_section_numbers_all_have_a_source():
    """In README's Performance section, every decimal figure outside a block is one of the PROSE figures."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Performance", 1)[1].split("\n## ", 1)[0]
    section = figures.BLOCK.sub("", section)
    quoted = {fmt.format(_value(src, key)) for doc, _, src, key, fmt in PROSE if doc == "README.md"}
    for number in re.findall(r"(?<![\w.-])\d[\d,]*\.\d+x?(?![\w.])", section):
        assert number in quoted or number.rstrip("x") in quoted, f"README Performance: {number} has no source"
