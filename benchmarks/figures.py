"""Figure blocks of README.md and docs/, made from the results files.

A block in a markdown file looks like::

    <!-- figures: video-bound benchmarks/results/pipeline-cpu-2026-11-30.json -->
    ...table made by the function BLOCKS["video-bound"] from that file...
    <!-- /figures -->

``python -m benchmarks.figures`` rewrites every block from its file;
``tests/test_figures.py`` fails when a block differs from what its file
gives (a number edited by hand, or a file re-measured without updating the
text).  Figures quoted in prose are checked by that test against their file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
#: Markdown files that may hold figure blocks.
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- figures: (\S+) (\S+) -->\n)(.*?)(<!-- /figures -->)", re.S)
#: Stages of the video pipeline in the order frames go through them (a gray film into yuv420p).
STAGES = ["decode", "to_L", "resize", "engine", "scene_cut", "stabilizer", "refine", "compose_yuv", "encode"]
#: The steps of the full-resolution RGB route that ``compose_yuv`` replaces, timed for comparison.
RGB_ROUTE = ["upsample", "compose", "to_yuv"]
STAGE_NAMES = {"decode": "decode (PyAV, threaded)", "to_L": "to L* (full res; its 2x2 average)",
               "resize": "resize to the render size", "engine": "engine", "scene_cut": "scene-cut histogram",
               "stabilizer": "stabilizer (flow on the a\\*b\\* grid)",
               "refine": "edge-aware upsampling of the grid to the render size",
               "compose_yuv": "compose into the frame's 4:2:0 planes (colour at half res, Y at full res)",
               "encode": "encode (x264)",
               "upsample": "upsample a\\*b\\* to full res", "compose": "compose full-res sRGB (Lab -> RGB, gamut check)",
               "to_yuv": "RGB -> YUV 4:2:0 (swscale)"}


def _f(x: float, digits: int = 1) -> str:
    """A number as the docs print it: fixed decimals, thousands separated."""
    return f"{x:,.{digits}f}"


def video_bound(d: dict[str, Any]) -> str:
    paired = all("pipeline_over_bound_paired" in v for v in d["video"]) and "archive_over_bound_paired" in d["batch"]
    pair_head, pair_rule = (" each round's own ratio, median |", "---|") if paired else ("", "")
    rows = ["| clip | `streamcolor video` fps | engine only | decode + encode only | bound | video / bound |"
            f"{pair_head} CPU time: (engine + codec) / video | naive loop | video / naive |",
            f"|---|---|---|---|---|---|{pair_rule}---|---|---|"]
    for v in d["video"]:
        pair = f" {_f(v['pipeline_over_bound_paired'], 2)}x |" if paired else ""
        rows.append(f"| {v['clip']} ({v['width']}x{v['height']}, {v['frames']} frames) | **{_f(v['pipeline_fps'], 2)}** "
                    f"| {_f(v['engine_fps'], 2)} | {_f(v['codec_fps'], 2)} | {_f(v['bound_fps'], 2)} "
                    f"| **{_f(v['pipeline_over_bound'], 2)}x** |{pair} {_f(v['cpu_bound_over_pipeline'], 2)} "
                    f"| {_f(v['naive_fps'], 2)} | {_f(v['pipeline_over_naive'], 2)}x |")
    b = d["batch"]
    pair = f" {_f(b['archive_over_bound_paired'], 2)}x |" if paired else ""
    rows += ["", "| photos | `streamcolor batch` items/s | engine only | decode + encode only | bound | batch / bound |"
             f"{pair_head} CPU time: (engine + codec) / batch | `colorize_image` one by one | batch / one by one |",
             f"|---|---|---|---|---|---|{pair_rule}---|---|---|",
             f"| {b['photos']} x {b['size']} ({b['megapixels']} MP) | **{_f(b['archive_items_per_s'], 2)}** "
             f"| {_f(b['engine_items_per_s'], 2)} | {_f(b['codec_items_per_s'], 2)} | {_f(b['bound_items_per_s'], 2)} "
             f"| **{_f(b['archive_over_bound'], 2)}x** |{pair} {_f(b['cpu_bound_over_archive'], 2)} "
             f"| {_f(b['naive_items_per_s'], 2)} | {_f(b['archive_over_naive'], 2)}x |"]
    if all("pipeline_preferred_batch_fps" in v for v in d["video"]):
        v0 = d["video"][0]
        rows += ["", f"`streamcolor video` runs the engine at batch {v0['pipeline_batch']} (`Engine.video_batch_size`); "
                 f"at batch {v0['engine_batch']}, as engine only, it ran " + ", ".join(
                     f"{_f(v['pipeline_preferred_batch_fps'], 2)} fps at {v['clip']} (batch {v['pipeline_batch']} / "
                     f"batch {v['engine_batch']}: {_f(v['pipeline_over_preferred_batch'], 2)}x the fps, "
                     f"{_f(v['cpu_pipeline_over_preferred_batch'], 2)}x the CPU time)" for v in d["video"]) + "."]
    m = d["memory"]
    s, l = (m[f"{x}s"] for x in m["seconds"])
    loads = [x for part in (*d["video"], d["batch"], m) for x in part["load_average"].values()]
    rows += ["", f"Peak RSS, {m['width']}x{m['height']}: {_f(s['peak_rss_mb'])} MB for {m['seconds'][0]} s of video, "
             f"{_f(l['peak_rss_mb'])} MB for {m['seconds'][1]} s ({_f(m['long_over_short_peak'], 2)}x; growth above the "
             f"loaded engine {_f(s['growth_mb'])} and {_f(l['growth_mb'])} MB).",
             "", f"Engine `{d['engine']}`, render {d['render_size']}, batch {d['batch_size']}; best of "
             f"{d['video'][0]['rounds']} alternating rounds (the naive loop: one); {d['machine']['cpu_count']} cores, "
             f"1-minute load average {_f(min(loads), 1)}-{_f(max(loads), 1)} during the run; {d['date']}, "
             f"`{Path(d['command'].split('--out ')[-1].split()[0]).name}`."]
    return "\n".join(rows) + "\n"


def video_stages(d: dict[str, Any]) -> str:
    clips = d["video"]
    head = "| stage | " + " | ".join(f"{v['clip']} ms/frame | share" for v in clips) + " |"
    rows = [head, "|---|" + "---|---|" * len(clips)]
    for k in (k for k in STAGES if all(k in v["stages_ms_per_frame"] for v in clips)):  # (older files: no refine)
        cells = []
        for v in clips:
            st = v["stages_ms_per_frame"]
            cells.append(f"{_f(st[k], 2)} | {_f(100 * st[k] / v['stage_sum_ms'], 0)}%")
        rows.append(f"| {STAGE_NAMES[k]} | " + " | ".join(cells) + " |")
    rows.append("| **sum** | " + " | ".join(f"**{_f(v['stage_sum_ms'], 2)}** | 100%" for v in clips) + " |")
    if all("rgb_route_ms_per_frame" in v for v in clips):
        rows.append("| *for comparison, the RGB route that compose into 4:2:0 replaces:* |" + " |" * (2 * len(clips)))
        for k in RGB_ROUTE:
            rows.append(f"| {STAGE_NAMES[k]} | " + " | ".join(
                f"{_f(v['rgb_route_ms_per_frame'][k], 2)} | " for v in clips) + " |")
        rows.append("| RGB route, total | " + " | ".join(
            f"{_f(sum(v['rgb_route_ms_per_frame'].values()), 2)} | " for v in clips) + " |")
    return "\n".join(rows) + "\n"


def video_threads(d: dict[str, Any]) -> str:
    """CPU ms per frame by thread role, decode + encode only against the pipeline, each clip."""
    clips = [v for v in d["video"] if v.get("thread_cpu_ms_per_frame", {}).get("pipeline")]
    roles: list[str] = []
    for v in clips:
        for part in ("pipeline", "codec"):
            roles += [k for k in v["thread_cpu_ms_per_frame"][part] if k not in roles and k != "total"]
    roles.append("total")
    rows = ["| thread role | " + " | ".join(f"{v['clip']}: decode + encode only | {v['clip']}: `streamcolor video`"
                                          for v in clips) + " |", "|---|" + "---|---|" * len(clips)]
    for k in roles:
        cells = []
        for v in clips:
            t = v["thread_cpu_ms_per_frame"]
            cells += [_f(t[p][k]) if k in t[p] else "" for p in ("codec", "pipeline")]
        name = f"**{k}**" if k == "total" else k
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def video_overlap(d: dict[str, Any]) -> str:
    """Engine only and codec only run at once (no pipeline work) against the bound and the
    pipeline; and the encoder's CPU time on gray frames against the same frames in colour."""
    rows = ["| input | product | engine only and codec only at once | at once / bound | each round's own, median "
            "| CPU time: at once / (engine + codec) | product / at once | each round's own, median |",
            "|---|---|---|---|---|---|---|---|"]
    for v in d["video"]:
        rows.append(f"| {v['clip']} video | {_f(v['pipeline_fps'], 2)} fps | {_f(v['together_fps'], 2)} fps "
                    f"| **{_f(v['together_over_bound'], 2)}x** | {_f(v['together_over_bound_paired'], 2)}x "
                    f"| {_f(v['cpu_together_over_parts'], 2)} | **{_f(v['pipeline_over_together'], 2)}x** "
                    f"| {_f(v['pipeline_over_together_paired'], 2)}x |")
    b = d["batch"]
    rows.append(f"| {b['megapixels']} MP photos | {_f(b['archive_items_per_s'], 2)} items/s "
                f"| {_f(b['together_items_per_s'], 2)} items/s | **{_f(b['together_over_bound'], 2)}x** "
                f"| {_f(b['together_over_bound_paired'], 2)}x | {_f(b['cpu_together_over_parts'], 2)} "
                f"| **{_f(b['archive_over_together'], 2)}x** | {_f(b['archive_over_together_paired'], 2)}x |")
    rows += ["", "| clip | encoder CPU ms/frame: the gray frames | the same frames, chroma of the colourized output "
             "| colour / gray | each round's ratio |", "|---|---|---|---|---|"]
    for v in d["video"]:
        c = v["colour_encode"]
        if "error" in c:
            rows.append(f"| {v['clip']} | not measured: {c['error']} | | | |")
            continue
        rows.append(f"| {v['clip']} | {_f(c['cpu_ms_per_frame']['gray'])} | {_f(c['cpu_ms_per_frame']['colour'])} "
                    f"| **{_f(c['colour_over_gray'], 2)}x** | "
                    + ", ".join(f"{_f(x, 2)}" for x in c["colour_over_gray_rounds"]) + " |")
    rows += ["", f"Best of {d['video'][0]['rounds']} alternating rounds (colour encode: cheapest of "
             f"{d['video'][0]['colour_encode'].get('rounds', 0)}); {d['date']}, "
             f"`{Path(d['command'].split('--out ')[-1].split()[0]).name}`."]
    return "\n".join(rows) + "\n"


def colour_bound(d: dict[str, Any]) -> str:
    """Decode + encode only of the gray input against the same with the colour (the pipeline's own
    output's chroma or planes encoded), and the product against the bound made with each."""
    rows = ["| input | product | decode + encode only: gray | with the colour | colour / gray | bound | bound with "
            "the colour | product / bound | product / bound with the colour | each round's own, median |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    parts = [(f"{v['clip']} video", v, "fps", "pipeline") for v in d["video"]]
    parts.append((f"{d['batch']['megapixels']} MP photos", d["batch"], "items_per_s", "archive"))
    for name, v, unit, product in parts:
        rows.append(f"| {name} | {_f(v[f'{product}_{unit}'], 2)} | {_f(v[f'codec_{unit}'], 2)} "
                    f"| {_f(v[f'codec_colour_{unit}'], 2)} | {_f(v['codec_colour_over_codec'], 3)}x "
                    f"| {_f(v[f'bound_{unit}'], 2)} | {_f(v[f'bound_colour_{unit}'], 2)} "
                    f"| {_f(v[f'{product}_over_bound'], 3)}x | **{_f(v[f'{product}_over_colour_bound'], 3)}x** "
                    f"| {_f(v[f'{product}_over_colour_bound_paired'], 3)}x |")
    rows += ["", f"Best of {d['video'][0]['rounds']} alternating rounds; {d['date']}, "
             f"`{Path(d['command'].split('--out ')[-1].split()[0]).name}`."]
    return "\n".join(rows) + "\n"


#: Steps of a batch job, in the order a photo goes through them.
BATCH_STAGES = {"decode": "decode (Pillow, EXIF orientation)", "prepare": "prepare (L\\*, the network input)",
                "engine": "engine (at the job's batch)",
                "refine": "edge-aware upsampling of the grid to the render size", "render": "render (a\\*b\\* upsampled, Lab -> sRGB, gamut check, 8 bits)",
                "encode": "encode (JPEG, quality 95, 4:4:4)", "write": "write (temporary file, fsync, rename)"}
#: The same two steps where the job writes gray photos' JPEGs from their Y'CbCr planes (streamcolor.ycbcr).
JPEG_PLANES_STAGES = {"render": "render (Y'CbCr planes: the colour at half res, Y at full res)",
                      "encode": "encode (JPEG from the planes, quality 95, 4:4:4)"}


def batch_stages(d: dict[str, Any]) -> str:
    """A batch job's steps timed alone (ms per photo, share), then its CPU time by thread role."""
    b = d["batch"]
    st = b["stages_ms_per_item"]
    total = sum(st.values())
    rows = ["| step | ms per photo | share |", "|---|---|---|"]
    names = {**BATCH_STAGES, **(JPEG_PLANES_STAGES if b.get("render_route") == "jpeg planes" else {})}
    rows += [f"| {names[k]} | {_f(st[k], 2)} | {_f(100 * st[k] / total, 0)}% |" for k in BATCH_STAGES if k in st]
    rows += [f"| **sum** | **{_f(total, 2)}** | 100% |", "",
             "| thread role | CPU ms per photo in `streamcolor batch` |", "|---|---|"]
    for k, v in b["thread_cpu_ms_per_item"].items():
        rows.append(f"| {'**total**' if k == 'total' else k} | {_f(v)} |")
    rows += ["", f"{b['photos']} photos of {b['size']} ({b['megapixels']} MP); engine at batch {b['batch_size']}, "
             f"{b['workers']} workers; {d['date']}, `{Path(d['command'].split('--out ')[-1].split()[0]).name}`."]
    return "\n".join(rows) + "\n"


#: The runs of a quality file (``streamcolor train eval``), in table order, and how the table names them.
QUALITY_RUNS = {"default@320": "**default** (render 320)",
                "default@320 --no-guided": "default, grid upsampled bilinearly (`--no-guided`)",
                "default@256": "default at render 256",
                "previous@320": "previous default (v1, render 320)", "seed@256": "seed (render 256)"}


def quality_splits(d: dict[str, Any]) -> str:
    """Each model's a*b* MSE, its ratio to gray, PSNR and colourfulness share, holdout first, then val."""
    rows = ["| split | model | a\\*b\\* MSE | MSE / gray | PSNR | gray PSNR | colourfulness |",
            "|---|---|---|---|---|---|---|"]
    for split in ("holdout", "val"):
        for run, label in QUALITY_RUNS.items():
            r = d["runs"].get(run, {}).get(split)
            if r is None:
                continue
            bold = (lambda t: f"**{t}**") if run == "default@320" else (lambda t: t)
            rows.append(f"| {split} ({r['images']} photos) | {label} | {bold(_f(r['model']['mse_ab'], 5))} | "
                        f"{bold(_f(r['mse_ratio_to_gray'], 3))} | {bold(_f(r['model']['psnr'], 2))} | "
                        f"{_f(r['gray']['psnr'], 2)} | {_f(r['colorfulness_ratio'], 2)} |")
    return "\n".join(rows) + "\n"


def quality_packages(d: dict[str, Any]) -> str:
    """The default model on each holdout package: MSE / gray of its photos, and how many score worse than gray."""
    packages = d["holdout_by_package"]["default@320"]
    rows = ["| holdout package | photos | MSE / gray | worse than gray |", "|---|---|---|---|"]
    for name, p in sorted(packages.items(), key=lambda kv: kv[1]["mse_ratio_to_gray"]):
        rows.append(f"| {name} | {p['images']} | {_f(p['mse_ratio_to_gray'], 3)} | {p['worse_than_gray']} |")
    w = d["holdout_worse_than_gray"]["default@320"]
    rows += ["", f"{w['photos']} of the {w['of']} photos score worse than gray ({w['first_six']} of the first six "
             f"packages' {w['first_six_of']}, {w['added']} of the added {w['added_of']})."]
    return "\n".join(rows) + "\n"


#: Block name -> the function that writes it from its results file.
BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {"video-bound": video_bound, "video-stages": video_stages,
                                                      "video-threads": video_threads, "video-overlap": video_overlap,
                                                      "batch-stages": batch_stages,
                                                      "colour-bound": colour_bound, "quality-splits": quality_splits,
                                                      "quality-packages": quality_packages}


def render(name: str, source: str) -> str:
    """The text of block ``name`` from results file ``source`` (relative to the repository)."""
    if name not in BLOCKS:
        raise KeyError(f"unknown figure block {name!r}; known: {sorted(BLOCKS)}")
    return BLOCKS[name](json.loads((ROOT / source).read_text()))


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(name, source, current body) of each figure block in a markdown text."""
    return [(m.group(2), m.group(3), m.group(4)) for m in BLOCK.finditer(text)]


def rewrite(path: Path) -> bool:
    """Rewrite the blocks of one file from their sources; True when it changed."""
    text = path.read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(m.group(2), m.group(3)) + m.group(5), text)
    if new != text:
        path.write_text(new)
    return new != text


def main() -> int:
    for path in DOCS:
        if rewrite(path):
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
