"""The one-run benchmark scripts (benchmarks/pipeline_bound.py, benchmarks/spin.py) in their
--quick mode, so that they keep running; and the engine setting that benchmarks/spin.py measures."""

from __future__ import annotations

import json

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
