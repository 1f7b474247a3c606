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
    table = figures.video_stages(d)
    assert "compose into the frame's 4:2:0 planes" in table and "RGB route, total" in table
    threads = clip["thread_cpu_ms_per_frame"]
    if threads["pipeline"]:  # Linux (a tiny clip's threads may end before the first read: no role is certain)
        assert "network (engine calls)" in threads["pipeline"] and "network (engine calls)" not in threads["codec"]
        for part in threads.values():  # the roles add up to the process's CPU time
            assert abs(sum(v for k, v in part.items() if k != "total") - part["total"]) < 0.05 * len(part) + 0.01  # rounding
        assert "| network (engine calls) |" in figures.video_threads(d)


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
