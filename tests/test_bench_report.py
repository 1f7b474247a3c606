"""`streamcolor bench`, `streamcolor report` and the benchmark summary: flop
counting, the matmul peak, the video floor, the tables, the HTML report and
the gallery."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from streamcolor import bench, report
from streamcolor.errors import OutputError
from tests.conftest import make_photo


# --------------------------------------------------------------------------- flops


def _graph(path: Path) -> Path:
    """A graph with every counted operator, weights as initializers:
    x (1, 4, 8, 8) -> Conv 3x3 4->6 (stride 2) -> depthwise Conv 3x3 (6 groups)
    -> ConvTranspose 4x4 6->3 (stride 2) -> Reshape (64, 3)... -> MatMul (3, 5);
    and e (2, 7) -> Gemm (7, 9)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)

    inits = [init("w0", (6, 4, 3, 3)), init("w1", (6, 1, 3, 3)), init("wt", (6, 3, 4, 4)), init("m", (3, 5)),
             init("g", (7, 9)), numpy_helper.from_array(np.array([1, 3, 64], np.int64), "shape")]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv"),
        helper.make_node("Conv", ["c0", "w1"], ["c1"], pads=[1, 1, 1, 1], group=6, name="depthwise"),
        helper.make_node("ConvTranspose", ["c1", "wt"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1], name="up"),
        helper.make_node("Reshape", ["c2", "shape"], ["r"], name="flat"),
        helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1], name="tr"),
        helper.make_node("MatMul", ["rt", "m"], ["y"], name="matmul"),
        helper.make_node("Gemm", ["e", "g"], ["z"], name="gemm"),
    ]
    g = helper.make_graph(nodes, "counted",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
                           helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 5]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 9])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_graph_flops_counts_every_operator_kind(tmp_path):
    path = _graph(tmp_path / "g.onnx")
    got = bench.graph_flops(path, {"x": np.zeros((1, 4, 8, 8), np.float32), "e": np.zeros((2, 7), np.float32)})
    conv = 2 * (6 * 4 * 4) * (4 * 3 * 3)  # output 6 x 4 x 4, each 4*3*3 MACs
    depthwise = 2 * (6 * 4 * 4) * (1 * 3 * 3)
    transposed = 2 * (6 * 4 * 4) * (3 * 4 * 4)  # each input position scatters to 3 channels x 4x4
    matmul = 2 * 64 * 5 * 3
    gemm = 2 * 2 * 9 * 7
    assert got["Conv"] == conv + depthwise
    assert got["ConvTranspose"] == transposed
    assert got["MatMul"] == matmul and got["Gemm"] == gemm
    assert got["total"] == conv + depthwise + transposed + matmul + gemm


def test_network_flops_match_the_keras_layers():
    """The profile-based count of the shipped colorizer equals 2*k*k*c_in*c_out*H_out*W_out
    summed over the Keras model's convolutions, plus the fusion's two matrix products."""
    keras = pytest.importorskip("keras")
    from streamcolor.engines import resolve_model
    from streamcolor.trainer.model import build_colorizer

    info = resolve_model("seed")
    h, w = 64, 96
    model = build_colorizer(info.embed_dim)
    expected, size = 0, (h, w)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            cin = layer.kernel.shape[2]
            size = (size[0] // layer.strides[0], size[1] // layer.strides[1])
            expected += 2 * k * cin * layer.filters * size[0] * size[1]
        elif isinstance(layer, keras.layers.UpSampling2D):
            size = (size[0] * 2, size[1] * 2)
        elif layer.name == "fusion":  # 1x1 on (H/8, W/8, 256) plus the embedding product
            expected += 2 * 256 * 256 * (h // 8) * (w // 8) + 2 * info.embed_dim * 256
    got = bench.network_flops("seed", h, w)
    assert got["colorizer"] == expected
    assert 0.7e9 < got["extractor"] < 0.8e9  # EfficientNet-Lite0: ~0.39 G multiply-adds
    assert got["total"] == got["colorizer"] + got["extractor"]


def test_matmul_peak_is_positive_and_finite():
    p = bench.matmul_peak(128, repeats=2)
    assert np.isfinite(p) and p > 0


def test_engine_rows_ratios_and_share_of_peak(engine):
    rows = bench.engine_rows({"a": engine, "b": engine}, [32], [1], rounds=1)
    bench.with_share_of_peak(rows, 1000.0)
    assert [r["label"] for r in rows] == ["a", "b"] and rows[0]["ratio_to_fp32"] == 1.0
    for r in rows:
        assert r["images_per_s"] > 0
        assert r["gflop_per_image"] == pytest.approx(bench.network_flops(engine, 32, 32)["total"] / 1e9, abs=1e-3)
        assert r["share_of_peak"] == pytest.approx(r["gflops"] / 1000.0, abs=1e-4)
    # int8 operations are not set against a float32 peak
    int8 = bench.with_share_of_peak([{"label": "onnx-cpu-int8", "precision": "int8", "gflops": 500.0}], 250.0)
    assert "share_of_peak" not in int8[0]


# --------------------------------------------------------------------------- video


def test_video_row_against_codec_floor(engine, tmp_path):
    from streamcolor.video import VideoOptions, codec_floor, make_clip

    clip = make_clip(tmp_path / "c.mp4", 64, 48, 6)
    assert codec_floor(clip, tmp_path / "floor.mp4") == 6
    row = bench.video_row(engine, clip, tmp_path, name="tiny", rounds=1, options=VideoOptions(render_size=32))
    assert row["frames"] == 6 and (row["width"], row["height"]) == (64, 48)
    assert row["pipeline_over_floor"] == pytest.approx(row["pipeline_fps"] / row["floor_fps"], rel=0.02)
    assert (tmp_path / "pipeline-tiny.mp4").is_file()


def test_bench_command_quick_json(tmp_path):
    from streamcolor.cli import cli

    out = tmp_path / "b.json"
    res = CliRunner().invoke(cli, ["bench", "-r", "32", "-b", "1", "-b", "2", "--no-video", "--device", "cpu",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "images/s" in res.output and "matmul peak" in res.output
    data = json.loads(out.read_text())
    assert data["format"] == bench.JSON_FORMAT and data["peak_gflops"] > 0
    fp32 = [r for r in data["engines"] if r["precision"] == "fp32"]
    assert [(r["render"], r["batch"]) for r in fp32] == [(32, 1), (32, 2)]
    assert all(r["ratio_to_fp32"] == 1.0 for r in fp32)
    assert all("share_of_peak" in r for r in fp32)
    # int8 is timed when the bundle carries it, and otherwise said why not
    assert any(r["precision"] == "int8" for r in data["engines"]) or any("int8" in n for n in data["notes"])
    tables = report.bench_tables(data)
    assert tables[0].rows and "32" in tables[0].rows[0]
    assert "engines: " in res.stderr and f"wrote {out}" in res.stderr  # the lines for the person at the terminal
    quiet = CliRunner().invoke(cli, ["bench", "-q", "-r", "32", "-b", "1", "--no-video", "--device", "cpu",
                                     "--json", str(out)])
    assert quiet.exit_code == 0 and "images/s" in quiet.stdout, quiet.output
    assert quiet.stderr == "", quiet.stderr  # -q: none of them


# --------------------------------------------------------------------------- summary


def _results() -> dict:
    """A pytest-benchmark JSON with one entry per benchmark the summary reads."""
    def b(name, **extra):
        return {"name": name, "fullname": f"benchmarks/x.py::{name}", "extra_info": extra,
                "stats": {"mean": 0.5, "min": 0.4, "rounds": 2}}

    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.11.9"},
        "commit_info": {"id": "abcdef123456"}, "datetime": "2026-11-26T10:00:00",
        "benchmarks": [
            b("test_engine_images_per_second[16-256]", render=256, batch=16, gflop_per_image=19.97,
              matmul_peak_gflops=200.0, load_average_1min=[1.5, 2.5],
              engines={"onnx-cpu-fp32": {"images_per_s": 8.0, "ratio_to_fp32": 1.0, "gflops": 160.0,
                                         "share_of_peak": 0.8},
                       "keras-fp32": {"images_per_s": 2.0, "ratio_to_fp32": 0.25, "gflops": 40.0}},
              not_measured={"tensorrt": "no GPU"}),
            b("test_precision_images_per_second[1-224]", render=224, batch=1,
              fp32={"images_per_s": 10.0, "ratio_to_fp32": 1.0, "mse_ab": 0.0187},
              int8={"images_per_s": 25.0, "ratio_to_fp32": 2.5, "mse_ab": 0.0189, "mse_rel": 0.01}),
            b("test_peer_images_per_second[1]", peer="zhang-eccv16", render=256, batch=1,
              ours={"images_per_s": 6.0, "gflop_per_image": 20.0}, ours_over_peer=3.0,
              peer_figures={"images_per_s": 2.0, "gflop_per_image": 83.5}),
            b("test_video_pipeline_vs_floor_and_naive[360p]", clip="360p", width=640, height=360, frames=96,
              pipeline_fps=12.0, floor_fps=120.0, naive_fps=4.0, pipeline_over_floor=0.1, pipeline_over_naive=3.0,
              load_average=[3.0, 0.5]),
            b("test_video_peak_rss_is_flat", seconds=[10, 60], growth_mb_short=50.0, growth_mb_long=52.0,
              naive_growth_mb_short=900.0),
            b("test_quality_on_held_out_photos", images=48, render_size=256, model={"mse_ab": 0.0187, "psnr": 22.5,
              "colorfulness": 31.0}, gray={"mse_ab": 0.027, "psnr": 21.8, "colorfulness": 0.0},
              truth={"colorfulness": 44.0}, psnr_gain_db=0.7, skipped=[]),
            b("test_video_flicker_with_and_without_stabilization", frames=96, width=640, height=360,
              saturation_gain=1.0, off={"cdc": 0.02, "warp_error": 0.004, "warp_ab_rms": 3.0},
              flow={"cdc": 0.01, "warp_error": 0.002, "warp_ab_rms": 1.5}, flow_reduction={"warp_ab_rms": 0.5}),
        ]}


def test_summary_headline_pairs_each_figure_with_its_reference(tmp_path):
    from benchmarks.summary import main, summary

    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(_results()))
    (tmp_path / "gpu-h200-inference.json").write_text(json.dumps({"keras_jax_b16_images_per_s": 1223.3}))
    text = summary([path], gpu=True)
    assert "Test CPU, 2 cores" in text and "commit abcdef1" in text
    assert "load average (1 min) during the run 0.5-3.0" in text
    lines = text.splitlines()

    def row(*needles):
        hits = [ln for ln in lines if all(n in ln for n in needles)]
        assert hits, needles
        return hits[0]

    assert "0.25x" in row("keras-fp32 images/s (render 256, batch 16)", "ONNX Runtime fp32")
    assert "0.80x" in row("achieved GFLOP/s", "matmul peak")
    assert "2.50x" in row("ONNX int8 images/s")
    assert "3.00x" in row("ours images/s (render 256, batch 1)", "zhang-eccv16")
    assert "0.10x" in row("video pipeline fps (360p 640x360)", "decode+encode")
    assert "3.00x" in row("video pipeline fps (360p 640x360)", "naive")
    assert "1.04x" in row("peak RSS growth, 60 s clip")
    assert "0.69x" in row("a\\*b\\* MSE (48 held-out photos)", "gray baseline")
    assert "+0.70 dB" in row("PSNR, dB")
    assert "0.50x" in row("flicker warp error a\\*b\\* RMS", "no stabilization")
    assert "H200" in text and "1,223" in text
    assert main([str(tmp_path / "missing.json")]) == 2


def test_summary_of_an_empty_run_has_no_empty_tables():
    data = {"machine_info": {}, "benchmarks": []}
    md = report.to_markdown([report.headline(data), *report.detail_tables(data)])
    assert md.strip() == ""


# --------------------------------------------------------------------------- report


def _photo_folder(root: Path) -> Path:
    """Six colour photos and a gray one, in a manifest with train and val splits."""
    root.mkdir()
    photos = []
    for i in range(7):
        rgb = make_photo(60 + 4 * i, 80, seed=i)
        if i == 2:
            rgb = np.repeat(rgb.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
        Image.fromarray(rgb).save(root / f"p{i}.png")
        photos.append({"file": f"p{i}.png", "split": "train" if i == 0 else "val", "package": "pkg",
                       "licence": "CC0-1.0", "copyright": f"author {i}"})
    (root / "manifest.json").write_text(json.dumps({"photos": photos}))
    return root


def test_held_out_photos_are_val_evenly_spaced_and_coloured(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    picked = [p.name for p, _ in report.held_out_photos(folder, 3)]
    assert "p0.png" not in picked and "p2.png" not in picked  # train; gray
    assert picked == ["p1.png", "p3.png", "p5.png"]
    # a folder whose manifest lists only holdout photos: those (it was "no photos found")
    manifest = json.loads((folder / "manifest.json").read_text())
    for e in manifest["photos"]:
        e["split"] = "holdout" if e["split"] == "val" else e["split"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert [p.name for p, _ in report.held_out_photos(folder, 3)] == ["p1.png", "p3.png", "p5.png"]


def test_report_is_self_contained_with_before_after_and_tables(engine, tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    results = tmp_path / "cpu.json"
    results.write_text(json.dumps(_results()))
    out = report.write_report(tmp_path / "r" / "report.html", engine=engine, results=[results], photos=folder,
                              max_photos=2, gallery=tmp_path / "gallery")
    text = out.read_text()
    assert "<!DOCTYPE html>" in text and "Figures against their references" in text
    assert not re.search(r"(src|href)=['\"](http|file|/)", text)  # nothing outside the file
    images = re.findall(r"src='data:image/jpeg;base64,([^']+)'", text)
    assert len(images) == 2 * 3  # two held-out colour photos x (gray, ours, original)
    first = Image.open(__import__("io").BytesIO(base64.b64decode(images[0])))
    assert max(first.size) <= report.REPORT_IMAGE_SIZE
    assert "original colour" in text and "author 1" in text and "Model card" in text
    if engine.info.meta.get("eval_splits", {}).get("holdout"):  # the card's figures: sources training never saw
        holdout = engine.info.meta["eval_splits"]["holdout"]
        assert f"on {holdout['images']} photos from sources training never saw (holdout split)" in text
        assert f"{holdout['model']['mse_ab']:.4f}"[:6] in text and "e2-swa-all" not in text
    assert "against the gray baseline" in text and "<svg" in text  # per-photo metrics, charted
    strips = sorted((tmp_path / "gallery").glob("*.png"))
    assert len(strips) == 4
    readme = (tmp_path / "gallery" / "README.md").read_text()
    assert "author" in readme and f"| streamcolor, model {engine.info.name} |" in readme and "Held-out photos" in readme
    plain = tmp_path / "plain"  # a folder of the user's (no collector manifest): not called held-out photos
    plain.mkdir()
    for p in sorted(folder.glob("*.png")):
        (plain / p.name).write_bytes(p.read_bytes())
    report.write_report(tmp_path / "r" / "plain.html", engine=engine, photos=plain, max_photos=1,
                        gallery=tmp_path / "gallery2")
    assert "Photos of the folder given" in (tmp_path / "gallery2" / "README.md").read_text()
    with Image.open(strips[0]) as im:  # gray | ours | truth side by side
        assert im.size[0] > 2.5 * im.size[1] * 80 / (60 + 4)
    # written again over its own report and gallery; a page or folder of the user's is kept
    assert report.write_report(out, engine=engine, photos=folder, max_photos=2, gallery=tmp_path / "gallery") == out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    (tmp_path / "page.html").write_text("<html>my page</html>")
    for kwargs, said in ((dict(gallery=mine), "its README.md is not a gallery's"),
                         (dict(), "is not a report streamcolor wrote")):
        target = out if kwargs else tmp_path / "page.html"
        with pytest.raises(OutputError, match=said):
            report.write_report(target, engine=engine, photos=folder, max_photos=2, **kwargs)
    assert (mine / "README.md").read_text() == "my notes\n" and sorted(p.name for p in mine.iterdir()) == ["README.md"]
    assert (tmp_path / "page.html").read_text() == "<html>my page</html>"
    # a file of the user's at a strip's name, or a link there, is kept: the strip goes beside it
    gallery = tmp_path / "gallery"
    first, second = sorted(gallery.glob("0[12]-*.png"))
    first.unlink()
    first.symlink_to(tmp_path / "page.html")
    second.write_bytes(b"my own picture")
    report.write_report(out, engine=engine, photos=folder, max_photos=2, gallery=gallery)
    assert (tmp_path / "page.html").read_text() == "<html>my page</html>" and second.read_bytes() == b"my own picture"
    readme = (gallery / "README.md").read_text()
    for kept in (first, second):
        beside = kept.with_name(kept.stem + "~2.png")
        assert Image.open(beside).size[0] > 0 and f"| {beside.name} |" in readme


def test_report_of_a_plain_folder_measures_colour_photos_only(engine, tmp_path):
    """A user's folder (no manifest): colour photos get the original and metrics, a gray one does not;
    a big photo is shown at --size, not at full size."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(make_photo(300, 900, seed=1)).save(folder / "sub" / "colour.jpg", quality=95)
    gray = make_photo(90, 120, seed=2).mean(-1).astype(np.uint8)
    Image.fromarray(gray).save(folder / "old.png")
    (folder / "notes.txt").write_text("not a photo")
    notes: list[str] = []
    out = report.write_report(tmp_path / "r.html", engine=engine, photos=folder, image_size=200,
                              gallery=None, notes=notes)
    text = out.read_text()
    assert "colour.jpg" in text and "old.png" in text and "notes.txt" not in text
    assert "900x300 px" in text and "no colour truth" in text
    sizes = [Image.open(__import__("io").BytesIO(base64.b64decode(b))).size
             for b in re.findall(r"src='data:image/jpeg;base64,([^']+)'", text)]
    assert len(sizes) == 3 + 2 and max(max(s) for s in sizes) == 200
    m = re.search(r"a\*b\* MSE ([0-9.]+) against gray&#x27;s ([0-9.]+)", text)
    assert m and float(m.group(2)) > 0  # the colour photo measured against gray
    assert "Colour error against the gray baseline" in text


def test_before_after_keeps_lightness_and_shape(engine, tmp_path):
    p = tmp_path / "c.png"
    Image.fromarray(make_photo(90, 120)).save(p)
    it = report.before_after(engine, p, render_size=64)
    assert it.gray.shape == it.colour.shape == it.truth.shape == (90, 120, 3)
    assert np.ptp(it.gray.astype(int), axis=-1).max() <= 1  # gray really is gray
    from streamcolor.engines import lab

    l_gray, l_col = lab.rgb_to_l(it.gray), lab.rgb_to_l(it.colour)
    assert np.abs(l_gray - l_col).mean() < 1.0


def test_report_command_without_photos_shows_the_sample_and_says_what_it_ignored(tmp_path):
    from streamcolor.cli import cli

    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", "-o", str(out), "--no-speed", "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "chenonceau-bw.jpg" in text and len(re.findall("data:image/jpeg;base64", text)) == 2
    assert "<svg" not in text  # no colour truth, no speed measured: nothing to chart
    res = CliRunner().invoke(cli, ["report", "-o", str(out), "--no-speed", "-b", "4", "--gallery",
                                   str(tmp_path / "g"), "--max-photos", "3"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    for note in ("--gallery ignored", "-b/--batch ignored", "--max-photos ignored"):
        assert note in text
    assert not (tmp_path / "g").exists()
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such folder" in res.output


@pytest.mark.parametrize("int8_ok", [True, False])
def test_report_command_charts_speed_by_engine_and_batch(tmp_path, monkeypatch, int8_ok):
    from streamcolor.cli import cli
    from streamcolor.engines import select

    # the int8 verdict, as on a CPU whose int8 kernels agree with fp32 or not (both kinds exist)
    monkeypatch.setattr(select, "kernel_check", lambda *a, **k: select.KernelCheck(
        int8_ok, "agrees" if int8_ok else "its kernels disagree with fp32 (test)", False))

    folder = tmp_path / "p"
    folder.mkdir()
    Image.fromarray(make_photo(64, 96)).save(folder / "a.png")
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(out), "-b", "1", "-b", "2", "-r", "64",
                                   "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "Images/s by engine and batch at render 64" in text
    assert "batch 1" in text and "batch 2" in text and "onnx-cpu-fp32" in text
    if "onnx-cpu-int8" in text and not int8_ok:  # int8 kernels that give wrong colours here: said on the bars
        assert "onnx-cpu-int8 (wrong colours here), batch 1" in text and "not recommended: onnx-cpu-int8" in text
    else:
        assert "wrong colours here" not in text and "not recommended" not in text
    assert "TensorRT" not in text and "fp16/bf16" not in text  # what is not timed here is not the page's business


def test_report_puts_other_photos_in_the_place_of_broken_ones_and_exits_1(tmp_path):
    """--max-photos 2 of six files picks the first and the fourth; both broken, two of the
    others take their place (evenly spaced over the rest), and the exit status says photos were skipped."""
    from streamcolor.cli import cli

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        path = folder / f"a{i}.png"
        if i in (0, 3):
            path.write_bytes(b"\x89PNG broken")
        else:
            Image.fromarray(np.full((40, 48), 40 * i, np.uint8)).save(path)
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64",
                                   "--max-photos", "2"])
    assert res.exit_code == 1, res.output
    assert "2 photo(s) skipped" in res.output
    page = (tmp_path / "r.html").read_text()
    assert page.count("skipped: ") == 2 and "a0.png" in page and "a3.png" in page
    assert "a1.png" in page and "a4.png" in page and "a2.png" not in page and "a5.png" not in page
    assert "bundled" not in page
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64",
                                   "--max-photos", "1"])  # picks a0 (broken), then a spare: a3 (broken) is not tried
    assert res.exit_code == 1 and "1 photo(s) skipped" in res.output, res.output


def test_report_does_not_follow_a_link_out_of_the_folder(tmp_path, caplog):
    """holiday.jpg -> ../private/secret.jpg was colorized and embedded in the page; batch and
    collection never follow such a link, and neither does the report now."""
    from streamcolor.cli import cli

    private, folder = tmp_path / "private", tmp_path / "photos"
    private.mkdir()
    folder.mkdir()
    Image.fromarray(np.full((40, 48), 60, np.uint8)).save(private / "secret.png")
    Image.fromarray(np.full((40, 48), 90, np.uint8)).save(folder / "mine.png")
    (folder / "holiday.png").symlink_to(private / "secret.png")
    (folder / "also-mine.png").symlink_to(folder / "mine.png")  # inside: that photo once, not twice
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text()
    assert "mine.png" in page and "holiday.png" not in page and "secret" not in page
    (folder / "also-mine.png").unlink()
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r2.html"), "--no-speed", "-r", "64"])
    assert page.count("<figure") == (tmp_path / "r2.html").read_text().count("<figure")
    assert "links that lead out of" in caplog.text


def test_report_tells_same_named_photos_apart_and_reads_gifs(tmp_path):
    """a/IMG_1.jpg and b/IMG_1.jpg were both labelled IMG_1.jpg on the page; a .gif was left out
    without a word (a still one is a photo; an animated one is skipped with its reason)."""
    from streamcolor.cli import cli

    folder = tmp_path / "photos"
    for sub, v in (("a", 90), ("b", 150)):
        (folder / sub).mkdir(parents=True)
        Image.fromarray(np.full((48, 64), v, np.uint8)).save(folder / sub / "IMG_1.jpg")
    Image.fromarray(np.full((48, 64), 120, np.uint8)).save(folder / "still.gif")
    frames = [Image.fromarray(np.full((48, 64), v, np.uint8)) for v in (10, 200)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64"])
    assert res.exit_code == 1, res.output  # one photo skipped: the animation
    page = (tmp_path / "r.html").read_text()
    assert "a/IMG_1.jpg" in page and "b/IMG_1.jpg" in page and "still.gif" in page
    assert "anim.gif: has 2 frames (animated)" in page


def test_report_times_the_engine_it_colorized_with():
    """`report --backend X` charted the model's default engines only, not X, the one asked for."""
    from streamcolor.engines import load_engine
    from streamcolor.report import measure_speed

    asked = load_engine("seed", "onnx-fp16", device="cpu")  # (one that `bench` leaves out on a CPU)
    try:
        rows = measure_speed(asked, 32, [1], rounds=1)
        labels = {r["label"] for r in rows}
        assert asked.name.split(":")[0] in labels and "onnx-cpu-fp32" in labels, labels
        assert not asked.closed  # the caller's engine: not closed for it
    finally:
        asked.close()


def test_report_with_every_photo_over_max_pixels_names_them_not_the_sample(tmp_path, caplog):
    """With every photo refused by --max-pixels, the bundled sample shown in their place was refused
    by the same limit, and the run ended blaming the sample, the user's photos unnamed and no page."""
    from streamcolor.cli import cli

    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.full((40, 48), 60, np.uint8)).save(folder / "wide.png")
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64",
                                   "--max-pixels", "1000"])
    assert res.exit_code == 1, res.output  # the page is written, without the user's photo
    assert "wide.png: 48x40 = 1,920 pixels is over the limit of 1,000" in caplog.text, caplog.text
    assert "chenonceau" not in res.output + caplog.text
    page = (tmp_path / "r.html").read_text()
    assert "wide.png: 48x40" in page and "none of the 1 photo(s) tried in" in page


def test_the_report_exits_2_when_its_engine_cannot_load(tmp_path):
    """image, batch and video exit 2 when the model cannot be loaded (the run could not start);
    report exited 1, the status that says "the page is written, some photos are not on it"."""
    from streamcolor.cli import cli

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("[]")
    for verb in (["report", "--no-speed", "-o", str(tmp_path / "r.html")],
                 ["image", __file__, "-o", str(tmp_path / "x.png")]):
        res = CliRunner().invoke(cli, [*verb, "-m", str(bundle)])
        assert res.exit_code == 2 and "not a model manifest" in res.output, res.output
    assert not (tmp_path / "r.html").exists()


def test_report_says_why_its_photos_are_missing_and_a_bad_results_file_stops_it_with_2(tmp_path):
    from streamcolor.cli import cli

    folder = tmp_path / "onlybad"
    folder.mkdir()
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64"])
    assert res.exit_code == 1, res.output  # the page is written, without the user's photo
    page = (tmp_path / "r.html").read_text()
    assert "none of the 1 photo(s) tried in" in page and "no photos found" not in page
    # a folder with no photo: the page shows the bundled sample, and said so with exit 0 (a script could
    # not tell); a folder that is not there was called "not a folder"
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "empty"), "-o", str(tmp_path / "e.html"), "--no-speed",
                                   "-r", "64"])
    assert res.exit_code == 1 and "no photo of it is on the page" in res.output, res.output
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "gone"), "-o", str(tmp_path / "g.html")])
    assert res.exit_code == 2 and "gone: no such folder" in res.output, res.output
    bad = tmp_path / "results.json"
    bad.write_text("{")
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r2.html"), "--no-speed",
                                   "--results", str(bad)])
    assert res.exit_code == 2 and "not a JSON results file" in res.output and not (tmp_path / "r2.html").exists()
    bad.write_text("[1, 2, 3]")  # JSON, but no figure the page could show: was left out without a word
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r2.html"), "--no-speed",
                                   "--results", str(bad)])
    assert res.exit_code == 2 and "holds no figures the report can show" in res.output, res.output
    assert not (tmp_path / "r2.html").exists()


def test_a_photo_whose_name_is_not_utf8_is_on_the_page_as_its_bytes(tmp_path):
    """One such name made the whole page fail after every photo was colorized."""
    from streamcolor.cli import cli

    folder = tmp_path / "latin1"
    folder.mkdir()
    Image.fromarray(make_photo(48, 64)).convert("L").save(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.jpg"))
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64"])
    assert res.exit_code == 0, res.output
    assert "caf\\xe9.jpg" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_a_gallery_inside_the_photo_folder_is_refused(tmp_path):
    """Its strips would be taken for the user's photos by the next report of the folder."""
    from streamcolor.cli import cli

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(make_photo(48, 64)).save(folder / "c.png")
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed",
                                   "--gallery", str(folder / "g")])
    assert res.exit_code == 2 and "inside the photo folder" in res.output, res.output
    assert sorted(p.name for p in folder.iterdir()) == ["c.png"]


def test_a_manifest_json_of_something_else_does_not_hide_the_folders_photos(tmp_path):
    """Only the photo collector's manifest.json picks held-out photos; any other (an object, a list,
    not JSON) leaves the folder's own photos shown, not the bundled sample or a traceback."""
    for manifest in ('{"name": "my web app"}', "[1, 2, 3]", "garbage", '{"photos": [{"file": 3}]}'):
        (tmp_path / "manifest.json").write_text(manifest)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"p{i}.png")
        assert [p.name for p, _ in report.find_photos(tmp_path, 4)] == ["p0.png", "p1.png"], manifest


def test_results_with_pytest_benchmarks_keys_but_not_its_layout_are_refused_by_name(tmp_path):
    for i, text in enumerate(('{"benchmarks": [{"name": "test_x"}], "machine_info": null}',
                              '{"benchmarks": [1], "machine_info": {}}',
                              '{"benchmarks": [{"name": "test_engine_images_per_second[a]"}], "machine_info": {}}')):
        bad = tmp_path / f"r{i}.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"r{i}.json: has pytest-benchmark's keys but not its layout"):
            report.load_results([bad])


def test_report_max_pixels_skips_a_photo_over_it_and_shows_the_rest(tmp_path):
    from streamcolor.cli import cli

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((200, 100), 90, np.uint8)).save(folder / "big.png")
    Image.fromarray(np.full((20, 30), 90, np.uint8)).save(folder / "small.png")
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64",
                                   "--max-pixels", "10000"])
    assert res.exit_code == 1, res.output  # written, one photo skipped
    page = (tmp_path / "r.html").read_text()
    assert "big.png: 100x200 = 20,000 pixels is over the limit of 10,000" in page
    assert "small.png" in page
