"""The one-run benchmark scripts (benchmarks/pipeline_bound.py, benchmarks/spin.py, benchmarks/encode_threads.py) in
--quick mode, so that they keep running; and the engine setting that benchmarks/spin.py measures."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest


def test_onnx_engine_threads_do_not_spin_unless_asked(engine):
    from streamcolor.engines.onnx_engine import OnnxEngine

    key = "session.intra_op.allow_spinning"
    assert engine._colorizer.get_session_options().get_session_config_entry(key) == "0"
    spinning = OnnxEngine(engine.info, device="cpu", spin=True)
    with pytest.raises(Exception):  # ONNX Runtime's own default (spinning) when the entry is absent
        spinning._colorizer.get_session_options().get_session_config_entry(key)


def test_spin_script_quick(tmp_path):
    from benchmarks import spin

    out = tmp_path / "spin.json"
    assert spin.main(["--quick", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    for name in ("spin", "no_spin"):
        assert d["engine_images_per_s"][name]["batch1"] > 0 and d["engine_images_per_s"][name]["batch8"] > 0
        v = d["video"][name]
        assert v["video_fps"] > 0 and v["video_over_bound"] > 0
        assert v["bound_fps"] < min(v["engine_fps"], d["video"]["codec_fps"])  # arithmetic, not timing


def test_pipeline_bound_script_quick(tmp_path):
    from benchmarks import figures, pipeline_bound

    out = tmp_path / "bound.json"
    assert pipeline_bound.main(["--quick", "--skip", "rss", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    (clip,) = d["video"]
    assert set(clip["stages_ms_per_frame"]) == set(figures.STAGES)
    assert set(clip["rgb_route_ms_per_frame"]) == set(figures.RGB_ROUTE)
    assert clip["bound_fps"] < min(clip["engine_fps"], clip["codec_fps"])
    assert d["batch"]["archive_items_per_s"] > 0
    assert clip["pipeline_over_bound_paired"] > 0 and d["batch"]["archive_over_bound_paired"] > 0
    assert "each round's own ratio, median" in figures.video_bound(d | {"memory": _MEMORY})
    for part, rate in ((clip, "together_fps"), (d["batch"], "together_items_per_s")):  # engine and codec at once
        assert part[rate] > 0 and part["together_over_bound_paired"] > 0 and part["cpu_together_over_parts"] > 0
    assert clip["colour_encode"]["colour_over_gray"] > 0
    for part, unit, product in ((clip, "fps", "pipeline"), (d["batch"], "items_per_s", "archive")):  # with the colour
        engine, colour = part[f"engine_{unit}"], part[f"codec_colour_{unit}"]
        assert colour > 0 and part[f"bound_colour_{unit}"] == pytest.approx(1 / (1 / engine + 1 / colour), rel=2e-3)
        assert part[f"{product}_over_colour_bound"] > 0 and part[f"{product}_over_colour_bound_paired"] > 0
        assert part["codec_colour_over_codec"] == pytest.approx(colour / part[f"codec_{unit}"], abs=2e-3)  # arithmetic
    assert "| bound with the colour |" in figures.colour_bound(d) and "MP photos" in figures.colour_bound(d)
    assert set(d["engine_only"]["images_per_s"]) == {"1", "2"} and all(v > 0 for v in d["engine_only"]["images_per_s"].values())
    assert "engine only and codec only at once" in figures.video_overlap(d)
    table = figures.video_stages(d)
    assert "compose into the frame's 4:2:0 planes" in table and "RGB route, total" in table
    threads = clip["thread_cpu_ms_per_frame"]
    if threads["pipeline"]:  # Linux (a tiny clip's threads may end before the first read: no role is certain)
        assert "network (engine calls)" in threads["pipeline"] and "network (engine calls)" not in threads["codec"]
        for part in threads.values():  # the roles add up to the process's CPU time
            assert abs(sum(v for k, v in part.items() if k != "total") - part["total"]) < 0.05 * len(part) + 0.01  # rounding
        assert "| network (engine calls) |" in figures.video_threads(d)


_MEMORY = {"width": 320, "height": 240, "seconds": [10, 60], "load_average": {"start": 1.0},
           "10s": {"peak_rss_mb": 1.0, "growth_mb": 1.0}, "60s": {"peak_rss_mb": 1.0, "growth_mb": 1.0},
           "long_over_short_peak": 1.0}


def test_paired_ratio_is_the_median_of_each_rounds_own_ratio():
    """Rounds' times, given: the bound of a round is its parts' times added; the figure is
    the median over rounds of that against the pipeline's time in the same round."""
    from benchmarks.pipeline_bound import Rounds

    r = Rounds()
    r.wall = {"engine": [1.0, 2.0, 1.0], "codec": [3.0, 2.0, 5.0], "pipeline": [5.0, 8.0, 6.0]}
    # rounds: 4/5 = 0.8, 4/8 = 0.5, 6/6 = 1.0 -> median 0.8; best against best: 4/5
    assert r.paired_over_bound("pipeline", ["engine", "codec"]) == pytest.approx(0.8)
    r.wall["pipeline"] = [5.0, 8.0, 4.0]  # 0.8, 0.5, 1.5 -> 0.8, whatever the third round's outlier
    assert r.paired_over_bound("pipeline", ["engine", "codec"]) == pytest.approx(0.8)


def test_int8_kernels_script_quick(tmp_path):
    from benchmarks import int8_kernels

    out = tmp_path / "int8.json"
    assert int8_kernels.main(["--quick", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert set(d["recipes"]) == {"u8s8", "u8s8_reduce_range", "u8u8"}
    for r in d["recipes"].values():
        assert 0 <= r["disagreement_as_written"] < 2 and 0 <= r["disagreement_fused_kernels"] < 2
        assert r["int8_images_per_s"] > 0 and r["fp32_images_per_s"] > 0
    assert d["recipes"]["u8s8_reduce_range"]["reduce_range"] and d["recipes"]["u8u8"]["weights"] == "uint8"


def _frame_times(path) -> list[float]:
    import av

    with av.open(str(path)) as inp:
        return [float(f.time) for f in inp.decode(video=0)]


def test_stage_and_colour_encodes_keep_the_source_timestamps(tmp_path, engine):
    """The script's encoder-alone runs (the stage table's encode, colour encode) stamp frames
    with the source's times: x264's rate control reads them, and frames one tick of a 1/12288
    time base apart once looked like 12,288 fps to it (a tenth of the bits, 40% less CPU time)."""
    from benchmarks.pipeline_bound import colour_encode, video_stages
    from streamcolor.video import VideoOptions, colorize_video, make_clip

    src = make_clip(tmp_path / "clip.mp4", 160, 96, 12)
    coloured = colorize_video(src, tmp_path / "coloured.mp4", engine=engine, progress=False)
    want = _frame_times(src)
    assert len(want) == 12 and want[-1] == pytest.approx(11 / 24)
    stages, _ = video_stages(src, engine, VideoOptions(), tmp_path)
    assert stages["encode"] > 0
    assert _frame_times(tmp_path / "stages-out.mp4") == pytest.approx(want)
    res = colour_encode(src, coloured, VideoOptions(), tmp_path, rounds=1)
    assert _frame_times(tmp_path / "colour-encode.mp4") == pytest.approx(want)
    assert res["cpu_ms_per_frame"]["gray"] > 0 and len(res["colour_over_gray_rounds"]) == 1


def test_colour_encode_swaps_only_the_chroma(tmp_path, engine):
    """What colour encode hands the encoder besides the gray frames: their own luma, with the
    chroma of the pipeline's output."""
    import numpy as np

    from benchmarks.pipeline_bound import _yuv_frames, with_chroma_of
    from streamcolor.video import colorize_video, make_clip

    src = make_clip(tmp_path / "clip.mp4", 160, 96, 6)
    coloured = colorize_video(src, tmp_path / "coloured.mp4", engine=engine, progress=False)
    gray, _, _, _ = _yuv_frames(src)
    colour, _, _, _ = _yuv_frames(coloured)
    mixed = with_chroma_of(gray, colour)
    assert len(mixed) == 6
    for g, c, m in zip(gray, colour, mixed):
        assert m.shape == (144, 160)
        np.testing.assert_array_equal(m[:96], g[:96])
        np.testing.assert_array_equal(m[96:], c[96:])
        assert np.abs(g[96:].astype(int) - 128).max() <= 1  # gray: neutral chroma
        assert np.abs(c[96:].astype(int) - 128).max() > 2  # the output has colour to swap in
    with pytest.raises(ValueError, match="not the same frames"):
        with_chroma_of(gray, colour[:-1])


def test_together_runs_its_parts_at_once_and_raises_their_errors():
    import threading

    from benchmarks.pipeline_bound import together

    meet = threading.Barrier(2, timeout=10)  # passes only if both parts are running at the same time
    seen = []
    together(lambda: seen.append(meet.wait()), lambda: seen.append(meet.wait()))
    assert sorted(seen) == [0, 1]

    def broken():
        raise RuntimeError("codec failed")

    with pytest.raises(RuntimeError, match="codec failed"):
        together(lambda: None, broken)


def test_gpu_run_script_device_mode_runs_its_parts_on_a_cpu(tmp_path):
    """benchmarks/gpu_run.sh's device command, as a device call would run it, here on the CPU in
    --quick form (two of its three parts): each part in its own process, all into one results file.
    It has not run on a GPU (see the script's comments)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    site = tmp_path / "site"
    env.update(PY=sys.executable, QUICK="--quick", PARTS="engine batch", OUT=str(tmp_path), SITE=str(site),
               BACKEND="onnx", WHL=str(tmp_path / "no-wheels"))  # (a GPU session measures the Keras engine, which JAX compiles: slow on a CPU)
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu_run.sh"), "device"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "bound: rc=0" in proc.stdout, proc.stdout
    d = json.loads((tmp_path / "pipeline-gpu-h200.json").read_text())
    assert [(r["parts"], r["done"]) for r in d["runs"]] == [(["engine", "batch"], ["engine", "batch"])]
    assert d["engine"].startswith("onnx-cpu")
    assert set(d["engine_only"]["images_per_s"]) == {"1", "2"} and d["batch"]["archive_items_per_s"] > 0
    env_txt = (tmp_path / "env.txt").read_text()
    assert "nvenc in PyAV" in env_txt and "auto loads: onnx" in env_txt  # (no NVIDIA GPU here)
    # streamcolor travels as source: the script declares its entry points (the Keras engine finds the
    # U-Net's builder by one), as an install would
    from importlib.metadata import distributions

    (dist,) = [d for d in distributions(path=[str(site)]) if d.metadata["Name"] == "streamcolor"]
    (builder,) = [ep for ep in dist.entry_points if ep.group == "streamcolor.keras_models" and ep.name == "unet"]
    assert builder.value == "streamcolor.trainer.unet:keras_model_for_bundle" and callable(builder.load())


def test_overlap_figures_from_given_rounds():
    """Rounds' times, given: engine and codec at once against their bound (the two times added) and
    the product against them, best against best and round by round."""
    from benchmarks.pipeline_bound import Rounds, overlap_figures

    r = Rounds()
    r.wall = {"engine": [1.0, 2.0, 1.5], "codec": [3.0, 4.0, 3.0], "together": [4.0, 5.0, 6.0],
              "pipeline": [5.0, 5.0, 8.0]}
    r.cpu = {"engine": [2.0, 2.5, 2.0], "codec": [6.0, 6.0, 7.0], "together": [8.8, 9.0, 9.0]}
    f = overlap_figures(r, "pipeline")
    assert f["together_over_bound"] == pytest.approx((1.0 + 3.0) / 4.0)  # best rounds: 1.0, 3.0; 4.0
    assert f["together_over_bound_paired"] == pytest.approx(1.0)  # rounds: 4/4, 6/5, 4.5/6 -> median 1.0
    assert f["pipeline_over_together"] == pytest.approx(4.0 / 5.0)  # faster than together: above 1, slower below
    assert f["pipeline_over_together_paired"] == pytest.approx(0.8)  # rounds: 4/5, 5/5, 6/8 -> 0.8
    assert f["cpu_together_over_parts"] == pytest.approx(8.8 / 8.0)


def test_pipeline_bound_require_gpu_measures_nothing_on_a_cpu(tmp_path):
    """A GPU session's minutes are not spent on a CPU engine: --require-gpu stops before any part."""
    from benchmarks import pipeline_bound

    out = tmp_path / "bound.json"
    assert pipeline_bound.main(["--quick", "--require-gpu", "--backend", "onnx", "--out", str(out)]) == 3
    assert not out.exists()


def test_encode_threads_script_quick(tmp_path):
    from benchmarks import encode_threads
    from streamcolor import image_io

    out = tmp_path / "encode.json"
    real = getattr(image_io.os, "memfd_create", None)
    assert encode_threads.main(["--quick", "--out", str(out)]) == 0
    assert getattr(image_io.os, "memfd_create", None) is real  # the BytesIO switch is undone
    d = json.loads(out.read_text())
    enc = d["encode"]
    for fmt in ("jpeg", "png"):
        for way in ("image_io", "bytesio"):
            one, many = (enc["encodes_per_s"][f"{fmt}_{way}_threads{t}"] for t in (1, enc["threads"]))
            assert one > 0 and many > 0
            assert enc["scaling"][f"{fmt}_{way}"] == pytest.approx(many / one, abs=2e-3)  # arithmetic, not timing
            rounds = enc["all_rounds"]
            assert enc["scaling_paired"][f"{fmt}_{way}"] == pytest.approx(float(np.median(  # a round's own ratio
                [m / o for o, m in zip(rounds[f"{fmt}_{way}_threads1"], rounds[f"{fmt}_{way}_threads{enc['threads']}"])])),
                abs=2e-3)
    assert d["machine"]["processor"]
    job = d["job"]
    assert job["photos_per_s"]["memfd"] > 0 and job["photos_per_s"]["bytesio"] > 0
    assert job["memfd_over_bytesio"] == pytest.approx(job["photos_per_s"]["memfd"] / job["photos_per_s"]["bytesio"],
                                                     abs=2e-3)


def test_ood_cv_pools_the_folds_and_pairs_recipes_by_photo(tmp_path):
    """benchmarks/ood_cv.py: a recipe counts only once all three folds are scored; MSEs are pooled
    over the folds' photos; the paired ratio against A is over the same photos, with a bootstrap
    interval around it, and packages are counted from the photos' folders."""
    from benchmarks import ood_cv

    def rows(fold, scale):
        return [{"image": f"pkg{fold}{j % 2}/p{j}.jpg", "mse_ab": scale * (1 + j), "gray_mse_ab": 4.0 * (1 + j),
                 "psnr": 20.0, "gray_psnr": 19.0, "colorfulness": 6.0 * scale, "truth_colorfulness": 10.0}
                for j in range(4)]

    for fold in ood_cv.FOLDS:
        (tmp_path / f"fold{fold}").mkdir()
        for name, scale in (("A", 2.0), ("C", 1.0)):
            (tmp_path / f"fold{fold}" / f"eval-{name}-s0.json").write_text(
                json.dumps({"per_image": rows(fold, scale)}))
        (tmp_path / f"fold{fold}" / "eval-C-s0-g1.2.json").write_text(json.dumps({"per_image": rows(fold, 1.5)}))
    (tmp_path / "fold1" / "eval-E-s0.json").write_text(json.dumps({"per_image": rows(1, 1.0)}))  # one fold only
    runs = ood_cv.gather(tmp_path)
    assert sorted(runs) == ["A-s0", "C-s0", "C-s0-x120"]
    assert runs["C-s0-x120"]["gain"] == 1.2 and runs["C-s0-x120"]["against_A"]["mse_ratio_to_A"] == 0.75
    a, c = runs["A-s0"], runs["C-s0"]
    assert (a["photos"], a["packages"]) == (12, 6)
    assert a["mse_ratio_to_gray"] == 0.5 and c["mse_ratio_to_gray"] == 0.25
    assert c["colorfulness_ratio"] == 0.6 and c["psnr_over_gray"] == 1.0
    p = c["against_A"]
    assert p["mse_ratio_to_A"] == 0.5 and p["ci95"] == [0.5, 0.5] and p["packages_better_than_A"] == 6
    assert "against_A" not in a
    (tmp_path / "all").mkdir()
    split = {"images": 3, "model": {"mse_ab": 1.0, "psnr": 21.0}, "gray": {"mse_ab": 4.0, "psnr": 20.0},
             "colorfulness_ratio": 0.5}
    (tmp_path / "all" / "eval-C-g1.15.json").write_text(json.dumps({"splits": {"val": split, "holdout": split}}))
    both = ood_cv.gather_all_data(tmp_path)
    assert list(both) == ["C-x115"] and both["C-x115"]["holdout"]["mse_ratio_to_gray"] == 0.25
    assert "x 1.15 when scored" in both["C-x115"]["recipe"]


def test_encoders_gathers_each_encoders_seeds_and_their_mean(tmp_path):
    """benchmarks/encoders.py: eval-A.json is seed 0, eval-A-sN.json seed N; a seed found in two folders
    of one encoder counts once (the first); the mean is over each encoder's seeds."""
    from benchmarks import encoders

    def report(folder, name, mse):
        split = {"images": 3, "model": {"mse_ab": mse, "psnr": 21.0}, "gray": {"mse_ab": 4.0, "psnr": 20.0},
                 "colorfulness_ratio": 0.5}
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(json.dumps({"splits": {"val": split, "holdout": split}}))

    report(tmp_path / "a", "eval-A.json", 3.0)
    report(tmp_path / "a", "eval-C.json", 1.0)  # another recipe: not read
    report(tmp_path / "b", "eval-A.json", 1.0)  # seed 0 of lite0 again: the first folder's counts
    report(tmp_path / "b", "eval-A-s1.json", 2.0)
    report(tmp_path / "c", "eval-A-s1.json", 4.0)
    runs = encoders.gather([("lite0", tmp_path / "a"), ("lite0", tmp_path / "b"), ("lite2", tmp_path / "c")])
    assert sorted(runs) == ["lite0-A-s0", "lite0-A-s1", "lite2-A-s1"]
    assert runs["lite0-A-s0"]["holdout"]["mse_ratio_to_gray"] == 0.75
    m = encoders.means(runs)
    assert m["lite0"]["holdout"] == {"seeds": 2, "mse_ratio_to_gray": 0.625, "colorfulness_ratio": 0.5}
    assert m["lite2"]["val"]["mse_ratio_to_gray"] == 1.0


def test_quality_runs_specs_summary_and_paired_comparison(tmp_path):
    from benchmarks.quality_runs import main, paired, parse_spec, summarise

    assert parse_spec("default@320=default@320") == ("default@320", "default", 320, True)
    assert parse_spec("b=/x/bundle@256 --no-guided") == ("b", "/x/bundle", 256, False)
    with pytest.raises(ValueError, match="NAME=MODEL@SIZE"):
        parse_spec("default")
    rows = [{"image": f"photos/{pkg}/{i}.jpg", "mse_ab": mse, "gray_mse_ab": 0.02}
            for i, (pkg, mse) in enumerate([("p", 0.01), ("p", 0.03), ("q", 0.01)])]
    split = {"images": 3, "model": {"mse_ab": 0.05 / 3, "psnr": 22.0}, "gray": {"mse_ab": 0.02, "psnr": 21.0},
             "skipped": ["x"], "per_image": rows}
    splits, packages, counts = summarise({"splits": {"val": split, "holdout": split}}, added=("q",))
    assert splits["holdout"]["mse_ratio_to_gray"] == pytest.approx(0.05 / 3 / 0.02) and splits["val"]["skipped"] == 1
    assert packages["p"] == {"images": 2, "mse_ab": 0.02, "gray_mse_ab": 0.02, "mse_ratio_to_gray": 1.0,
                             "worse_than_gray": 1}
    assert counts == {"photos": 1, "of": 3, "first_six": 1, "first_six_of": 2, "added": 0, "added_of": 1}
    base = {s: {f"k{i}": 1.0 for i in range(20)} for s in ("val", "holdout")}
    half = {s: {k: 0.5 for k in v} for s, v in base.items()}
    got = paired(base, half, rounds=200)["holdout"]
    assert got["mse_ratio"] == 0.5 and got["interval_95"] == [0.5, 0.5] and got["better_on"] == 20
    # a mistyped --against is said before any evaluation runs (this streamcolor would fail at once)
    with pytest.raises(SystemExit):
        main(["photos", "a=default@320", "--against", "nope", "--out", str(tmp_path / "q.json"),
              "--streamcolor", "/bin/false"])
    assert not (tmp_path / "q.json").exists()


def test_video_parts_script_quick(tmp_path):
    """benchmarks/video_parts.py on a tiny clip: it really cuts the clip into parts, and its ratios are
    the ones of the seconds it records."""
    from benchmarks import video_parts

    out = tmp_path / "parts.json"
    assert video_parts.main(["--quick", "--out", str(out)]) == 0
    v = json.loads(out.read_text())["video"]
    assert v["parts"] == 4 and v["frames"] == 96
    wall = v["wall_s"]
    # (the seconds are recorded to 0.01 s, the ratio from the unrounded ones)
    assert v["parts_over_one_pass_wall"] == pytest.approx(min(wall["parts"]) / min(wall["one pass"]), rel=0.01)


def test_batch_sizes_script_records_each_runs_engine_calls(tmp_path):
    """benchmarks/batch_sizes.py: the sizes of a batch job's engine calls, run by run, entries added by label."""
    from benchmarks import batch_sizes

    out = tmp_path / "sizes.json"
    for label in ("before", "after"):
        assert batch_sizes.main(["--out", str(out), "--label", label, "--photos", "5", "--batch", "2",
                                 "--workers", "2", "--runs", "1"]) == 0
    d = json.loads(out.read_text())
    for label in ("before", "after"):
        (run,) = d[label]["runs"]
        assert sum(run["sizes"]) == 5 and max(run["sizes"]) <= 2 and run["calls"] == len(run["sizes"])
        assert run["sizes_text"] == ", ".join(map(str, run["sizes"]))


def test_gil_profile_counts_a_photos_gil_time_by_step():
    """benchmarks/gil_profile.py's arithmetic on py-spy's raw output (py-spy itself, a profiler
    from PyPI, is not one of the test dependencies): samples a photo over the rate, by the
    streamcolor path that held the GIL."""
    from benchmarks.gil_profile import means, summarize

    raw = "\n".join([
        "_worker (concurrent/futures/thread.py:85);finish_item (streamcolor/items.py:177);"
        "encode_jpeg_planes (streamcolor/image_io.py:536);merge (PIL/Image.py:3831) 30",
        "_worker (concurrent/futures/thread.py:85);decode_item (streamcolor/items.py:120);"
        "_open (streamcolor/image_io.py:243) 10",
        "wait (threading.py:331) 10",
        "not a sample line",
    ])
    row = summarize(raw, photos=10, rate=500)
    assert row["samples"] == 50 and row["gil_ms_per_photo"] == 10.0 and row["gil_bound_photos_per_s"] == 100.0
    assert row["by_streamcolor_path_ms"] == {"finish_item > encode_jpeg_planes": 6.0, "decode_item > _open": 2.0,
                                             "(outside streamcolor)": 2.0}
    assert row["by_innermost_frame_ms"]["merge (PIL/Image.py:3831)"] == 6.0
    runs = [{"label": "a", "codec": {"gil_ms_per_photo": g}, "job": {**row, "photos_per_s": 1.0}} for g in (1.0, 2.0)]
    assert means(runs)["a"] == {"runs": 2, "codec_gil_ms": 1.5, "job_gil_ms": 10.0, "job_encode_gil_ms": 6.0,
                                "job_photos_per_s": 1.0}


def test_batch_scaling_variants_are_parsed_and_bad_ones_refused():
    import argparse

    from benchmarks.batch_scaling import parse_variant

    assert parse_variant("default") == {}
    assert parse_variant("cv2=1,workers=8,malloc=big,switch=0.001") == {"cv2": 1, "workers": 8, "malloc": "big",
                                                                        "switch": 0.001}
    assert parse_variant("processes=12") == {"processes": 12}
    for bad in ("threads=2", "cv2", "malloc=small"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


def test_batch_scaling_script_runs_a_variant_with_worker_processes(tmp_path):
    """benchmarks/batch_scaling.py on a few small photos: the job with worker processes and decode +
    encode only on as many, each variant's row in the file, its CPU time counting the workers'."""
    from benchmarks import batch_scaling

    out = tmp_path / "scaling.json"
    assert batch_scaling.main(["--out", str(out), "--photos", "6", "--size", "64", "96", "--rounds", "1",
                               "--variant", "processes=2", "--backend", "onnx"]) == 0
    (row,) = json.loads(out.read_text())["variants"]
    assert row["variant"] == {"processes": 2} and row["workers"] == 2
    for part in ("codec", "job"):
        assert row[part]["items_per_s"] > 0 and len(row[part]["rounds_s"]) == 1


def test_batch_scaling_counts_the_cpu_time_of_child_processes_alive_and_ended():
    """The worker processes' CPU time is the job's: counted while they run (decode + encode only's
    pool) and after they end (a job's workers end with it)."""
    from benchmarks.batch_scaling import cpu_usage

    burn = [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
            "input()"]
    def cpu_s() -> float:  # user + system
        return sum(cpu_usage()[:2])

    before = cpu_s()
    child = subprocess.Popen(burn, stdin=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while cpu_s() - before < 0.3:  # alive: seen through psutil
            assert child.poll() is None and time.monotonic() < deadline, "the live child's CPU time was not counted"
            time.sleep(0.05)
        child.communicate("\n", timeout=30)
    finally:
        child.kill()
    assert cpu_s() - before >= 0.4  # ended and reaped: in the process's children's usage
