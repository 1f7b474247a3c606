"""Engine registry, bundle loading errors and the TensorRT import guard."""

import json
import os
from pathlib import Path

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


def test_an_empty_batch_gives_an_empty_result_on_both_models(seed_engine, engine):
    """The seed model failed in NumPy ("need at least one array to stack"); the U-Net gave (0, ...)."""
    l = np.zeros((0, 64, 96, 1), np.float32)
    assert seed_engine.predict(l).shape == (0, 64, 96, 2)
    assert engine.predict(l).shape[0] == 0


def test_unknown_model_and_backend_are_clear():
    with pytest.raises(ValueError, match="shipped models are"):
        load_engine("no-such-model")
    with pytest.raises(ValueError, match="'bundles/mnie': no such folder"):  # a mistyped path says so
        load_engine("bundles/mnie")
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


# --------------------------------------------------------------------------- TensorRT, what runs without a GPU


def test_tensorrt_profile_spans_the_render_sizes_used():
    from streamcolor.engines.lab import render_shape
    from streamcolor.engines.tensorrt_engine import profile_shapes

    p = profile_shapes([256, 320], 32, max_batch=64)
    assert p.min == (1, 32, 32) and p.max == (64, 320, 320)
    assert p.opt == (16, *render_shape(900, 1600, 320, 32))  # 16:9 video at the largest render size
    for h, w in [(1080, 1920), (1920, 1080), (576, 768), (4000, 100)]:  # landscape, portrait, a thin strip
        for r in (256, 320):
            assert p.covers((8, *render_shape(h, w, r, 32), 1)), (h, w, r)
    assert not p.covers((8, 352, 320, 1))  # render 352 was never asked for
    # a render size that is not a multiple rounds like the pipeline rounds it
    assert profile_shapes([330], 32).max[1:] == (320, 320)
    assert profile_shapes([40], 8, max_batch=4).max == (4, 40, 40)
    with pytest.raises(ValueError, match="no render sizes"):
        profile_shapes([], 32)


def test_tensorrt_outside_profile_message_says_what_to_do():
    from streamcolor.engines.tensorrt_engine import profile_error, profile_shapes

    msg = profile_error((8, 352, 640, 1), profile_shapes([256], 32))
    assert "(8, 352, 640, 1)" in msg and "32..256" in msg and "render_sizes=" in msg


def test_tensorrt_cache_key_depends_on_the_profile(tmp_path):
    from streamcolor.engines.tensorrt_engine import cache_key, profile_shapes

    a = tmp_path / "colorizer.onnx"
    a.write_bytes(b"model-a")
    k256 = cache_key(a, "NVIDIA H200", "11.4.0", "fp16", profile_shapes([256], 32))
    k320 = cache_key(a, "NVIDIA H200", "11.4.0", "fp16", profile_shapes([320], 32))
    assert k256 != k320 and "b64-256x256" in k256 and k256.endswith("-fp16.plan")


_BUILD_RACE = """
import sys, time
from pathlib import Path
from streamcolor.engines.tensorrt_engine import cached_plan
plan, log = Path(sys.argv[1]), Path(sys.argv[2])
def build():
    with open(log, "a") as fh:
        fh.write("built\\n")
    time.sleep(0.5)  # long enough for the other processes to arrive while it builds
    return b"P" * 1_000_000
cached_plan(plan, build)
assert plan.read_bytes() == b"P" * 1_000_000
"""


def test_tensorrt_plan_is_built_once_when_several_processes_ask(tmp_path):
    """Three processes (three Ray actors on one node) want the same plan at once:
    one builds it, the others wait for the lock and load it; no temporary file is left."""
    import subprocess
    import sys

    plan, log_file = tmp_path / "cache" / "colorizer.plan", tmp_path / "builds.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_RACE, str(plan), str(log_file)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert log_file.read_text().count("built") == 1
    assert sorted(f.name for f in plan.parent.iterdir()) == ["colorizer.plan", "colorizer.plan.lock"]


def test_tensorrt_plan_write_is_atomic(tmp_path):
    """A failed build leaves neither a plan nor a temporary file; a rewrite replaces the whole file."""
    from streamcolor.engines.tensorrt_engine import cached_plan, write_atomic

    plan = tmp_path / "p.plan"

    def failing() -> bytes:
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError):
        cached_plan(plan, failing)
    assert not plan.exists() and not list(tmp_path.glob(".p.plan.*"))
    write_atomic(plan, b"old")
    write_atomic(plan, b"new!")
    assert plan.read_bytes() == b"new!" and not list(tmp_path.glob("*.tmp"))


def test_auto_runtime_uses_jax_on_a_gpu_that_onnx_runtime_cannot_use():
    """backend="auto": ONNX Runtime, unless an NVIDIA GPU has JAX but not ONNX Runtime CUDA."""
    from streamcolor.engines.select import auto_runtime

    asked = []

    def jax_gpu(answer):
        return lambda: asked.append(1) or answer

    assert auto_runtime(ort_cuda=True, nvidia_gpu=True, jax_gpu=jax_gpu(True)) == "onnx"
    assert auto_runtime(ort_cuda=False, nvidia_gpu=False, jax_gpu=jax_gpu(True)) == "onnx"
    assert not asked  # JAX is not even imported on a machine without an NVIDIA GPU
    assert auto_runtime(ort_cuda=False, nvidia_gpu=True, jax_gpu=jax_gpu(True)) == "keras"
    assert auto_runtime(ort_cuda=False, nvidia_gpu=True, jax_gpu=jax_gpu(False)) == "onnx"
    # here (no GPU): auto is ONNX Runtime, on the CPU
    assert load_engine("default").name.startswith("onnx-cpu")
