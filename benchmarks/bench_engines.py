"""Engine throughput: images/s by engine, batch size and render size; the
network's achieved GFLOP/s against this machine's matmul peak; a peer network.

* ``test_engine_images_per_second``: ONNX Runtime fp32 (the reference), the
  Keras engine, int8 when the bundle carries it (the shipped one does not:
  ``bench_precision`` quantizes a copy and compares it in its own run) and
  TensorRT when installed with a GPU.  The engines take turns
  (:func:`streamcolor.bench.engine_rows`, median of the rounds), so their
  ratios hold on a busy machine.  pytest-benchmark itself times ONNX fp32.
* GFLOP/s: flops per image counted from ONNX Runtime's profile of the float32
  graphs (2 x multiply-adds of every convolution and matrix product, the
  extractor included; :func:`streamcolor.bench.network_flops`) times
  images/s, against the best NumPy float32 matmul (2048 x 2048, NumPy's BLAS
  threads, = the engine's threads here) measured in the same test.
* ``test_peer_images_per_second``: Zhang et al.'s ECCV16 network
  (``benchmarks/peers.py``, random weights) through the same ONNX engine at
  the same size, taking turns with ours.

The Keras engine runs a bundle built here: the shipped EfficientNet-Lite0
weights and a colorizer of the same architecture with random weights (the
shipped bundle is ONNX only; speed does not depend on the weights).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from benchmarks.conftest import FULL
from streamcolor.engines import load_engine, resolve_model
from streamcolor.engines.select import cuda_available, variants
from streamcolor.bench import engine_rows, matmul_peak, with_share_of_peak

RENDER = [224, 256] if FULL else [64]
BATCH = [1, 16] if FULL else [1, 2]
ROUNDS = 5 if FULL else 1
PEAK_N = 2048 if FULL else 512
#: Peer comparison: the paper's own input size, batch 1 and 16.
PEER_RENDER = 256 if FULL else 32
PEER_BATCH = [1, 16] if FULL else [1]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _time_predict(benchmark, engine, group: str, batch: int, render: int, load: list[float]) -> None:
    """pytest-benchmark times ``engine.predict`` on a (batch, render, render, 1) batch; load after appended."""
    l = np.random.default_rng(0).uniform(-1, 1, (batch, render, render, 1)).astype(np.float32)
    benchmark.group = group
    out = benchmark.pedantic(engine.predict, args=(l,), rounds=ROUNDS, iterations=1)
    load.append(_load())
    assert out.shape[0] == batch and out.shape[-1] == 2 and render % out.shape[1] == 0


@pytest.fixture(scope="module")
def onnx_engine():
    eng = load_engine("default", "onnx", device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def keras_bundle(tmp_path_factory):
    """The default model as ``.keras`` files for the Keras engine: a one-graph U-Net
    with its shipped trained weights; for a two-graph model, the shipped extractor
    weights and a colorizer of the same architecture with random weights (the
    shipped bundle is ONNX only; speed does not depend on the weights)."""
    pytest.importorskip("keras")
    from streamcolor.trainer.extractors import build_extractor
    from streamcolor.trainer.model import build_colorizer

    info = resolve_model("default")
    folder = tmp_path_factory.mktemp("keras-bundle")
    if info.two_stage:
        build_colorizer(info.embed_dim).save(folder / "colorizer.keras")
        build_extractor(info.extractor, weights="default").save(folder / "extractor.keras")
    else:
        from streamcolor.trainer.unet import TRAINED_WEIGHTS, UNetConfig, build_unet, load_trained_npz

        unet = build_unet(UNetConfig.from_json(info.meta["unet"]))
        load_trained_npz(unet, info.file(TRAINED_WEIGHTS))
        unet.full_model().save(folder / "colorizer.keras")
    (folder / "model.json").write_text(json.dumps({**info.dump(), "files": {}, "name": f"{info.name}-keras"}))
    return folder


@pytest.fixture(scope="module")
def engines(onnx_engine, keras_bundle):
    """label -> engine; the first is the reference."""
    info = resolve_model("default")
    out = {"onnx-cpu-fp32": onnx_engine, "keras-fp32": load_engine(keras_bundle, "keras")}
    if "int8" in variants(info):
        out["onnx-cpu-int8"] = load_engine("default", "onnx", precision="int8", device="cpu")
    if cuda_available():
        try:
            out["tensorrt-fp16"] = load_engine("default", "tensorrt")
        except ImportError:
            pass
    yield out
    for k, e in out.items():
        if k != "onnx-cpu-fp32":
            e.close()


def _not_measured() -> dict[str, str]:
    info = resolve_model("default")
    why = {}
    if "int8" not in variants(info):
        why["onnx-cpu-int8"] = "the shipped bundle has no int8 variant; bench_precision times one made in its run"
    if not cuda_available():
        why["tensorrt"] = "no CUDA provider / NVIDIA GPU on this machine"
    why["bf16"] = "ONNX Runtime's CPU provider has no bfloat16 Conv/MatMul kernels on x86"
    return why


@pytest.mark.parametrize("render", RENDER)
@pytest.mark.parametrize("batch", BATCH)
def test_engine_images_per_second(benchmark, engines, onnx_engine, render, batch):
    """Full predict (extractor + colorizer) of every engine on a square render-size batch."""
    load = [_load()]
    peak = [matmul_peak(PEAK_N)]
    # the Keras engine runs the same (flops-counted) graphs as the ONNX one
    rows = engine_rows(engines, [render], [batch], rounds=ROUNDS, peak=None,
                       flops_model={k: onnx_engine for k in engines})
    peak.append(matmul_peak(PEAK_N))
    best_peak = max(peak)
    with_share_of_peak(rows, best_peak)
    _time_predict(benchmark, onnx_engine, f"engine render={render}", batch, render, load)
    benchmark.extra_info.update(
        engine=onnx_engine.name, batch=batch, render=render, rounds=ROUNDS,
        matmul_peak_gflops=round(best_peak, 1), matmul_peak_runs_gflops=[round(p, 1) for p in peak],
        matmul_n=PEAK_N, gflop_per_image=rows[0].get("gflop_per_image"), load_average_1min=load,
        engines={r["label"]: {k: r[k] for k in ("engine", "images_per_s", "ratio_to_fp32", "gflops",
                                                  "share_of_peak") if k in r} for r in rows},
        not_measured=_not_measured())
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.mean


@pytest.fixture(scope="module")
def peer_engine():
    pytest.importorskip("tf2onnx")
    from benchmarks.peers import check_peer, peer_bundle

    eng = load_engine(peer_bundle(PEER_RENDER), "onnx", device="cpu")
    check_peer(eng, PEER_RENDER)
    yield eng
    eng.close()


@pytest.mark.parametrize("batch", PEER_BATCH)
def test_peer_images_per_second(benchmark, onnx_engine, peer_engine, batch):
    """Ours against Zhang et al. ECCV16 (same ONNX engine path, same size), taking turns."""
    from benchmarks.peers import NAME

    load = [_load()]
    peak = [matmul_peak(PEAK_N)]
    rows = engine_rows({"ours": onnx_engine, NAME: peer_engine}, [PEER_RENDER], [batch], rounds=ROUNDS)
    peak.append(matmul_peak(PEAK_N))
    with_share_of_peak(rows, max(peak))
    by = {r["label"]: r for r in rows}
    _time_predict(benchmark, peer_engine, f"peer render={PEER_RENDER}", batch, PEER_RENDER, load)
    benchmark.extra_info.update(
        peer=NAME, render=PEER_RENDER, batch=batch, rounds=ROUNDS, matmul_peak_gflops=round(max(peak), 1),
        load_average_1min=load,
        ours={k: by["ours"].get(k) for k in ("engine", "images_per_s", "gflop_per_image", "gflops", "share_of_peak")},
        peer_figures={k: by[NAME].get(k) for k in ("engine", "images_per_s", "gflop_per_image", "gflops",
                                                   "share_of_peak")},
        ours_over_peer=round(by["ours"]["images_per_s"] / by[NAME]["images_per_s"], 3),
        peer_weights="random (public architecture; speed only)")
