"""Engine registry, bundle loading errors and the TensorRT import guard."""

import json

import numpy as np
import pytest

import streamcolor.engines
from streamcolor.engines import EngineError, load_engine
from streamcolor.engines.base import ModelInfo, check_l_batch


def test_default_model_is_shipped_and_loads(engine):
    assert {"default", "seed"} <= set(streamcolor.engines.available_models())
    assert engine.info.embed_dim > 0
    l = np.zeros((2, 64, 48, 1), np.float32)
    ab = engine.predict(l)
    # a*b* on the model's output grid: the input size (seed) or a quarter of it (U-Net).
    stride = 64 // ab.shape[1]
    assert ab.shape == (2, 64 // stride, 48 // stride, 2) and stride in (1, 4) and ab.dtype == np.float32
    assert np.all(np.abs(ab) <= 1)


def test_embed_then_colorize_equals_predict(seed_engine):
    rng = np.random.default_rng(1)
    l = rng.uniform(-1, 1, (1, 32, 40, 1)).astype(np.float32)
    emb = seed_engine.embed(seed_engine.extractor_input(l))
    np.testing.assert_allclose(seed_engine.colorize(l, emb), seed_engine.predict(l), atol=1e-6)
    np.testing.assert_allclose(seed_engine.predict(l, emb), seed_engine.predict(l), atol=1e-6)


def test_unknown_model_and_backend_are_clear():
    with pytest.raises(ValueError, match="shipped models are"):
        load_engine("no-such-model")
    with pytest.raises(ValueError, match="choose from"):
        load_engine("default", backend="nope")


def test_bad_bundles(tmp_path):
    with pytest.raises(EngineError, match="not a model bundle"):
        ModelInfo.load(tmp_path)
    (tmp_path / "model.json").write_text("{broken")
    with pytest.raises(EngineError, match="unreadable"):
        ModelInfo.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(EngineError, match="format"):
        ModelInfo.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": 1, "name": "x", "extractor": "e",
                                                     "extractor_size": 8, "embed_dim": 4}))
    with pytest.raises(EngineError, match="has no extractor.onnx"):
        load_engine(tmp_path, "onnx")
    (tmp_path / "extractor.onnx").write_bytes(b"junk")
    (tmp_path / "colorizer.onnx").write_bytes(b"junk")
    with pytest.raises(EngineError, match="cannot load"):
        load_engine(tmp_path, "onnx")


def test_l_batch_validation():
    with pytest.raises(ValueError, match="multiples of 8"):
        check_l_batch(np.zeros((1, 30, 32, 1)))
    with pytest.raises(ValueError, match=r"\(N, H, W, 1\)"):
        check_l_batch(np.zeros((30, 32)))


def test_tensorrt_absent_gives_install_hint(tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="TensorRT"):
        load_engine("default", backend="tensorrt")


def test_tensorrt_cache_key_depends_on_model_gpu_and_version(tmp_path):
    from streamcolor.engines.tensorrt_engine import cache_key

    a = tmp_path / "colorizer.onnx"
    a.write_bytes(b"model-a")
    k1 = cache_key(a, "NVIDIA H100 80GB HBM3", "10.3.0")
    assert k1 == cache_key(a, "NVIDIA H100 80GB HBM3", "10.3.0")
    assert k1 != cache_key(a, "NVIDIA H200", "10.3.0")
    assert k1 != cache_key(a, "NVIDIA H100 80GB HBM3", "10.4.0")
    a.write_bytes(b"model-b")
    assert k1 != cache_key(a, "NVIDIA H100 80GB HBM3", "10.3.0")
    assert k1.endswith("-fp16.plan") and "/" not in k1
