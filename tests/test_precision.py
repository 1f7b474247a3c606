"""Precision variants: int8 quantization of a bundle, the quality guard, forcing a
variant, the fp16 (CUDA) path.  Runs on a tiny hand-made bundle shaped like the
tf2onnx export (NHWC in and out, Transposes around NCHW convolutions, the
fusion as MatMul + Add), so it needs neither TensorFlow nor the shipped model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamcolor.engines import EngineError, load_engine
from streamcolor.engines.base import ModelInfo
from tests.conftest import make_photo

TINY_EMBED = 16
TINY_EXTRACTOR_SIZE = 32


def _conv(rng, name, c_out, c_in, k=3, gain=1.0):
    from onnx import numpy_helper

    w = rng.normal(0, gain * np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k)).astype(np.float32)
    b = rng.normal(0, 0.05, c_out).astype(np.float32)
    return [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]


def tiny_bundle(folder: Path, seed: int = 0) -> Path:
    """Write a tiny bundle (colorizer.onnx, extractor.onnx, model.json) to ``folder``:
    l (N, H, W, 1) + embedding (N, 16) -> ab (N, H, W, 2); l_ext (N, 32, 32, 1) -> embedding."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    e = TINY_EMBED
    inits = _conv(rng, "enc0", 8, 1) + _conv(rng, "enc1", 16, 8) + _conv(rng, "dec0", 8, 16) \
        + _conv(rng, "dec1", 2, 8, gain=0.5)
    inits += [numpy_helper.from_array(rng.normal(0, 0.3, (e, 16)).astype(np.float32), "fusion_k"),
              numpy_helper.from_array(np.array([-1, 16, 1, 1], np.int64), "fusion_shape"),
              numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales")]
    nodes = [
        helper.make_node("Transpose", ["l"], ["l_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["l_nchw", "enc0_w", "enc0_b"], ["c0"], pads=[1, 1, 1, 1], strides=[2, 2],
                         name="encoder_conv0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="encoder_relu0"),
        helper.make_node("Conv", ["r0", "enc1_w", "enc1_b"], ["c1"], pads=[1, 1, 1, 1], name="encoder_conv1"),
        helper.make_node("MatMul", ["embedding", "fusion_k"], ["fe"], name="fusion/MatMul"),
        helper.make_node("Reshape", ["fe", "fusion_shape"], ["fe4"], name="fusion/Reshape"),
        helper.make_node("Add", ["c1", "fe4"], ["fused"], name="fusion/Add"),
        helper.make_node("Relu", ["fused"], ["r1"], name="fusion/Relu"),
        helper.make_node("Conv", ["r1", "dec0_w", "dec0_b"], ["c2"], pads=[1, 1, 1, 1], name="decoder_conv0"),
        helper.make_node("Relu", ["c2"], ["r2"], name="decoder_relu0"),
        helper.make_node("Conv", ["r2", "dec1_w", "dec1_b"], ["c3"], pads=[1, 1, 1, 1], name="decoder_conv1"),
        helper.make_node("Tanh", ["c3"], ["t"], name="decoder_tanh"),
        helper.make_node("Resize", ["t", "", "up_scales"], ["up"], mode="nearest", name="ab_up"),
        helper.make_node("Transpose", ["up"], ["ab"], perm=[0, 2, 3, 1], name="to_nhwc"),
    ]
    g = helper.make_graph(nodes, "tiny_colorizer",
                          [helper.make_tensor_value_info("l", TensorProto.FLOAT, ["batch", "height", "width", 1]),
                           helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", e])],
                          [helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["batch", "height", "width", 2])],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "colorizer.onnx"))

    inits = _conv(rng, "ext0", 8, 1)
    inits.append(numpy_helper.from_array(rng.normal(0, 1.0, (8, e)).astype(np.float32), "head_k"))
    nodes = [
        helper.make_node("Transpose", ["l_ext"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "ext0_w", "ext0_b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], name="ext_conv"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "head_k"], ["embedding"], name="head"),
    ]
    s = TINY_EXTRACTOR_SIZE
    g = helper.make_graph(nodes, "tiny_extractor",
                          [helper.make_tensor_value_info("l_ext", TensorProto.FLOAT, ["batch", s, s, 1])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", e])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "extractor.onnx"))
    (folder / "model.json").write_text(json.dumps({"format": 1, "name": "tiny", "extractor": "tiny",
                                                   "extractor_size": s, "embed_dim": e, "files": {}}))
    return folder


def photo_folder(folder: Path, n_train: int = 6, n_val: int = 3) -> Path:
    """Colour photos with a manifest.json splitting them into train and val."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n_train + n_val):
        name = f"p{i}.png"
        Image.fromarray(make_photo(48 + 8 * (i % 3), 64, seed=i)).save(folder / name)
        entries.append({"file": name, "split": "train" if i < n_train else "val"})
    (folder / "manifest.json").write_text(json.dumps({"photos": entries}))
    return folder


def _set_variant(bundle: Path, name: str, **fields) -> None:
    data = json.loads((bundle / "model.json").read_text())
    data.setdefault("variants", {}).setdefault(name, {}).update(fields)
    (bundle / "model.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, photos) -> Path:
    """A tiny bundle with its int8 variant, made once for the module."""
    pytest.importorskip("onnx")
    from streamcolor.trainer.quantize import QuantizeOptions, quantize_bundle

    bundle = tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")
    quantize_bundle(bundle, photos, options=QuantizeOptions(n=12, size=32, batch=4, eval_size=48, extractor=True))
    return bundle


@pytest.fixture
def bundle_copy(quantized, tmp_path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(quantized, out)
    return out


def _session(path: Path, level: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_quantized_graph_is_close_to_fp32(quantized):
    """The int8 graph as written (quantize/dequantize evaluated in float: exactly the
    integer arithmetic, whatever this CPU's fused int8 kernels do) stays close to fp32."""
    rng = np.random.default_rng(3)
    l = np.clip(rng.normal(0, 0.4, (3, 48, 64, 1)), -1, 1).astype(np.float32)
    with load_engine(quantized, "onnx", device="cpu") as ref:
        l_ext = ref.extractor_input(l)
        emb = ref.embed(l_ext)
        ab_ref = ref.colorize(l, emb)
    feeds = {"l": l, "embedding": emb}
    ab_q = _session(quantized / "colorizer-int8.onnx", "ORT_ENABLE_BASIC").run(None, feeds)[0]
    assert np.abs(ab_q - ab_ref).mean() < 0.02 and np.abs(ab_q - ab_ref).max() < 0.15
    # the int8 extractor as well
    emb_q = _session(quantized / "extractor-int8.onnx", "ORT_ENABLE_BASIC").run(None, {"l_ext": l_ext})[0]
    assert np.abs(emb_q - emb).mean() < 0.1 * np.abs(emb).mean()


@pytest.fixture
def trusted_kernels(kernel_cache, monkeypatch) -> None:
    """For tests of the quality guard: this CPU's int8 kernels are not what they test."""
    import streamcolor.engines.select as sel

    monkeypatch.setattr(sel, "MAX_KERNEL_DISAGREEMENT", float("inf"))


@pytest.fixture
def kernel_cache(tmp_path, monkeypatch) -> Path:
    import streamcolor.engines.select as sel

    monkeypatch.setattr(sel, "CACHE_DIR", tmp_path / "cache")
    return tmp_path / "cache" / "kernel-checks.json"


def _variant_from(bundle: Path, colorizer: Path, extractor: Path) -> None:
    """Make ``bundle``'s int8 variant files from other graphs, recorded as passing the guard."""
    shutil.copy(colorizer, bundle / "colorizer-int8.onnx")
    shutil.copy(extractor, bundle / "extractor-int8.onnx")
    data = json.loads((bundle / "model.json").read_text())
    for f in ("colorizer-int8.onnx", "extractor-int8.onnx"):
        if f in data.get("files", {}):
            from streamcolor.trainer.export import sha256_file

            data["files"][f] = sha256_file(bundle / f)
    (bundle / "model.json").write_text(json.dumps(data))
    _set_variant(bundle, "int8", mse_rel=0.01, speedup_224_b16=2.5)


def test_auto_drops_a_variant_whose_kernels_disagree_here(bundle_copy, tmp_path, kernel_cache, caplog,
                                                          monkeypatch):
    """Kernels that compute something else than the graph (ONNX Runtime's int8 on some CPUs)
    are caught on the probe photo: "auto" runs fp32 and says why on an info line (its choice is
    right: no warning on a new machine's first run), a forced int8 warns; the check is cached, and
    once cached, "auto" does not even build the int8 session."""
    from streamcolor.engines.onnx_engine import OnnxEngine

    other = tiny_bundle(tmp_path / "other", seed=1)  # stands for kernels that compute another function
    _variant_from(bundle_copy, other / "colorizer.onnx", other / "extractor.onnx")
    with caplog.at_level(logging.INFO, logger="streamcolor.engines.select"):
        eng = load_engine(bundle_copy, device="cpu")
    said = [r for r in caplog.records if "disagree with fp32" in r.getMessage()]
    assert "int8" not in eng.name and said and all(r.levelno == logging.INFO for r in said)
    cached = json.loads(kernel_cache.read_text())
    assert len(cached) == 1 and next(iter(cached.values()))["disagreement"] > 0.3
    built, real_init = [], OnnxEngine.__init__

    def init(self, info, **kw):  # the real constructor, noting which graph each session is built from
        built.append(kw.get("colorizer_file"))
        real_init(self, info, **kw)

    monkeypatch.setattr(OnnxEngine, "__init__", init)
    assert "int8" not in load_engine(bundle_copy, device="cpu").name
    assert built == ["colorizer.onnx"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamcolor.engines.select"):
        assert "int8" in load_engine(bundle_copy, "onnx-int8").name
    assert "as asked, but" in caplog.text and len(json.loads(kernel_cache.read_text())) == 1


def test_auto_keeps_a_variant_that_agrees_here(bundle_copy, kernel_cache):
    _variant_from(bundle_copy, bundle_copy / "colorizer.onnx", bundle_copy / "extractor.onnx")
    assert "int8" in load_engine(bundle_copy, device="cpu").name
    assert next(iter(json.loads(kernel_cache.read_text()).values()))["disagreement"] < 1e-5


@pytest.mark.parametrize("entry", [{"disagreement": None}, {}, 5, "x", {"disagreement": "low"}])
def test_a_damaged_kernel_check_entry_is_measured_again(bundle_copy, kernel_cache, entry):
    """A hand-damaged entry in $STREAMCOLOR_CACHE/kernel-checks.json gave a traceback on every
    "auto" load; it counts as never measured now: checked again and the entry rewritten."""
    import streamcolor.engines.select as sel

    _variant_from(bundle_copy, bundle_copy / "colorizer.onnx", bundle_copy / "extractor.onnx")
    assert "int8" in load_engine(bundle_copy, device="cpu").name
    key = next(iter(json.loads(kernel_cache.read_text())))
    kernel_cache.write_text(json.dumps({key: entry}))
    assert sel.cached_kernel_check(ModelInfo.load(bundle_copy), "int8") is None
    assert "int8" in load_engine(bundle_copy, device="cpu").name
    assert json.loads(kernel_cache.read_text())[key]["disagreement"] < 1e-5


def test_variant_record_says_what_was_done(quantized, photos):
    info = ModelInfo.load(quantized)
    rec = info.meta["variants"]["int8"]
    assert rec["colorizer"] == "colorizer-int8.onnx" and (quantized / rec["colorizer"]).is_file()
    assert info.files["colorizer-int8.onnx"] and info.files["extractor-int8.onnx"]
    cal = rec["calibration_set"]
    assert cal["crops"] == 12 and cal["size"] == 32 and cal["split"] == "train"
    train = {f"{photos.name}/p{i}.png" for i in range(6)}
    assert cal["photo_keys"] and set(cal["photo_keys"]) <= train  # never the held-out photos
    q = rec["quantization"]
    assert q["format"] == "QDQ" and q["calibration"] == "minmax" and q["per_channel"]
    assert q["activations"] == "uint8" and q["weights"] == "int8"
    assert q["excluded_nodes"] == ["decoder_conv1"]  # the last conv stays float by default
    # ONNX Runtime really runs integer convolutions; the excluded one stays float
    g = rec["graph"]["colorizer"]
    assert g["int8_ops"].get("QLinearConv", 0) == 3 and g["float_conv_matmul_nodes"]
    assert rec["quality"]["images"] == 3 and rec["mse_rel"] >= 0 and rec["mse_vs_fp32"] >= 0
    assert rec["speedup_224_b16"] > 0 and "cpu" in rec["speed"]
    from streamcolor.engines.select import guard

    assert (rec["guard"] == "pass") == guard(info, "int8")[0]


def test_auto_refuses_a_variant_that_drifts(bundle_copy, caplog):
    _set_variant(bundle_copy, "int8", mse_rel=0.08, speedup_224_b16=3.0)
    with caplog.at_level(logging.INFO, logger="streamcolor.engines.select"):
        eng = load_engine(bundle_copy, device="cpu")
    assert "int8" not in eng.name
    assert "drifts 8.0%" in caplog.text and "limit 5%" in caplog.text


def test_auto_takes_a_faster_variant_that_passes(bundle_copy, trusted_kernels):
    _set_variant(bundle_copy, "int8", mse_rel=0.01, speedup_224_b16=2.5)
    assert "int8" in load_engine(bundle_copy, device="cpu").name
    _set_variant(bundle_copy, "int8", mse_rel=0.01, speedup_224_b16=0.9)  # measured slower: not taken
    assert "int8" not in load_engine(bundle_copy, device="cpu").name
    _set_variant(bundle_copy, "int8", mse_rel=None)  # never measured: not taken
    assert "int8" not in load_engine(bundle_copy, device="cpu").name


def test_forcing_a_variant(bundle_copy, caplog):
    _set_variant(bundle_copy, "int8", mse_rel=0.2)
    with caplog.at_level(logging.WARNING, logger="streamcolor.engines.select"):
        eng = load_engine(bundle_copy, "onnx-int8")
    assert "int8" in eng.name and "as asked, but" in caplog.text
    assert "int8" in load_engine(bundle_copy, "onnx", precision="int8").name
    assert "int8" not in load_engine(bundle_copy, "onnx").name  # "onnx" alone stays float32, as before
    assert "int8" not in load_engine(bundle_copy, "onnx", precision="fp32").name
    with pytest.raises(ValueError, match="precision"):
        load_engine(bundle_copy, "onnx", precision="int4")
    data = json.loads((bundle_copy / "model.json").read_text())
    data.pop("variants")
    (bundle_copy / "model.json").write_text(json.dumps(data))
    with pytest.raises(EngineError, match="streamcolor train quantize .* --calib PHOTOS"):
        load_engine(bundle_copy, "onnx-int8")


def test_compare_engines_rows(quantized):
    from streamcolor.engines.select import compare_engines

    rows = compare_engines(quantized, sizes=[32], batches=[1, 2], rounds=1)
    assert {(r["precision"], r["batch"]) for r in rows} == {("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    for r in rows:
        assert r["images_per_s"] > 0 and r["size"] == 32
        if r["precision"] == "fp32":
            assert r["ratio_to_fp32"] == 1.0 and r["mse_rel"] == 0.0 and r["guard"] == "pass"
        else:
            assert r["mse_rel"] is not None and r["engine"].startswith("onnx-cpu-int8")
    assert sum(r["auto"] for r in rows if r["batch"] == 1) == 1


def test_ship_bundle_weights_fold_back_to_float32(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    from streamcolor.engines.select import unfold_fp16_weights
    from streamcolor.trainer.export import store_weights_fp16

    bundle = tiny_bundle(tmp_path / "b")
    proto = store_weights_fp16(onnx.load(str(bundle / "colorizer.onnx")), min_elements=16)
    assert any(n.op_type == "Cast" for n in proto.graph.node)
    back = unfold_fp16_weights(proto)
    assert not any(n.op_type == "Cast" for n in back.graph.node)
    assert all(i.data_type != TensorProto.FLOAT16 for i in back.graph.initializer)
    onnx.checker.check_model(back)


def test_fp16_conversion_keeps_float32_io_and_output(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxconverter_common")
    import onnxruntime as ort
    from onnx import TensorProto

    from streamcolor.engines.select import to_fp16

    bundle = tiny_bundle(tmp_path / "b")
    half = onnx.load_from_string(to_fp16((bundle / "colorizer.onnx").read_bytes()))
    assert {i.type.tensor_type.elem_type for i in half.graph.input} == {TensorProto.FLOAT}
    assert any(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    feeds = {"l": np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 1)).astype(np.float32),
             "embedding": np.ones((1, TINY_EMBED), np.float32)}
    ref = ort.InferenceSession(str(bundle / "colorizer.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    out = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert out.dtype == np.float32 and np.abs(out - ref).max() < 5e-3


def test_auto_prefers_fp16_on_cuda_only(bundle_copy, monkeypatch):
    import streamcolor.engines.select as sel

    _set_variant(bundle_copy, "fp16", colorizer="colorizer-fp16.onnx", extractor="extractor-fp16.onnx",
                 device="cuda", mse_rel=0.001)
    info = ModelInfo.load(bundle_copy)
    assert sel.choose(info, device="cpu").precision != "fp16"
    monkeypatch.setattr(sel, "cuda_available", lambda: True)
    assert sel.choose(info, device="auto") == sel.Choice("fp16", "cuda", sel.choose(info).reason)
    _set_variant(bundle_copy, "fp16", mse_rel=0.3)
    assert sel.choose(ModelInfo.load(bundle_copy), device="auto").precision == "fp32"


@pytest.mark.gpu
def test_fp16_engine_runs_on_cuda(bundle_copy, tmp_path, monkeypatch):
    import streamcolor.engines.select as sel

    if not sel.cuda_available():
        pytest.skip("ONNX Runtime has no CUDA provider here")
    pytest.importorskip("onnxconverter_common")
    monkeypatch.setattr(sel, "CACHE_DIR", tmp_path / "cache")
    _set_variant(bundle_copy, "fp16", device="cuda", mse_rel=0.001)  # files absent: converted at load
    eng = load_engine(bundle_copy)
    assert eng.providers[0] == "CUDAExecutionProvider" and "fp16" in eng.name
    l = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    ref = load_engine(bundle_copy, "onnx", device="cpu").predict(l)
    assert np.abs(eng.predict(l) - ref).max() < 1e-2


def test_dequantize_moves_below_data_movement_exactly():
    pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from streamcolor.trainer.quantize import push_dequantize_down

    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "z"),
             numpy_helper.from_array(np.array([4], np.int64), "ax"),
             numpy_helper.from_array(np.array([1, 1, 1, 1, 2], np.int64), "rep"),
             numpy_helper.from_array(np.array([1, 2, 3, 8], np.int64), "shape")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"]),
             helper.make_node("Shape", ["xf"], ["xs"]),
             helper.make_node("Unsqueeze", ["xf", "ax"], ["u"]),
             helper.make_node("Tile", ["u", "rep"], ["t"], name="tile"),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 3, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("xs", TensorProto.INT64, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = {"x": np.random.default_rng(0).normal(0, 2, (1, 2, 3, 4)).astype(np.float32)}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
    assert push_dequantize_down(model) == 4  # Shape, Unsqueeze, Tile, Reshape (Transpose writes the output)
    tile = next(n for n in model.graph.node if n.name == "tile")
    assert tile.input[0].endswith("__q")  # the Tile moves uint8 now
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_auto_falls_back_when_a_variant_cannot_load(bundle_copy, trusted_kernels, caplog):
    _set_variant(bundle_copy, "int8", mse_rel=0.01, speedup_224_b16=2.5)
    (bundle_copy / "colorizer-int8.onnx").unlink()
    with caplog.at_level(logging.WARNING, logger="streamcolor.engines.select"):
        eng = load_engine(bundle_copy, device="cpu")
    assert "int8" not in eng.name and "cannot load the int8 variant" in caplog.text


def test_a_variant_of_another_export_is_refused(bundle_copy, trusted_kernels, caplog):
    _set_variant(bundle_copy, "int8", mse_rel=0.01, speedup_224_b16=2.5)
    assert "int8" in load_engine(bundle_copy, device="cpu").name
    data = json.loads((bundle_copy / "model.json").read_text())
    data["files"]["colorizer.onnx"] = "0" * 64  # the float32 graph was re-exported since
    (bundle_copy / "model.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="streamcolor.engines.select"):
        assert "int8" not in load_engine(bundle_copy, device="cpu").name
    assert "made from another colorizer.onnx" in caplog.text


def test_reduce_range_quantizes_weights_to_7_bits(tmp_path, photos):
    """--reduce-range (for CPUs without VNNI): every int8 weight of the colorizer within [-64, 64] (full range: 127), recorded."""
    pytest.importorskip("onnx")
    import onnx
    from onnx import numpy_helper

    from streamcolor.trainer.quantize import QuantizeOptions, quantize_bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    quantize_bundle(bundle, photos, options=QuantizeOptions(n=8, size=32, batch=4, eval_size=32, speed=False,
                                                            reduce_range=True))
    rec = ModelInfo.load(bundle).meta["variants"]["int8"]
    assert rec["quantization"]["reduce_range"] is True
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(bundle / "colorizer-int8.onnx")).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims and np.prod(t.dims) > 1]
    assert weights and all(int(np.abs(w).max()) <= 64 for w in weights)  # ONNX Runtime: symmetric [-64, 64]
    assert max(int(np.abs(w).max()) for w in weights) > 32  # the 7-bit range is used, not something narrower
