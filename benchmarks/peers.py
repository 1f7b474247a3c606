"""A peer architecture for speed comparisons: Zhang, Isola and Efros,
"Colorful Image Colorization" (ECCV 2016).

The network follows the authors' public deploy definition
(``colorization_deploy_v2.prototxt``; the same layers as ``eccv16`` in
richzhang/colorization): a VGG-style stack on L only, no global features:

=====  =====================================================  ==========
block  layers (3 x 3, ReLU; BatchNorm after each block)       resolution
=====  =====================================================  ==========
1      64, 64 / stride 2                                      1/2
2      128, 128 / stride 2                                    1/4
3      256, 256, 256 / stride 2                               1/8
4      512, 512, 512                                          1/8
5      512 x 3, dilation 2                                    1/8
6      512 x 3, dilation 2                                    1/8
7      512 x 3                                                1/8
8      4 x 4 transposed conv 256 / stride 2, 256, 256         1/4
out    1 x 1 conv to 313 colour bins, softmax, 1 x 1 conv     1/4
       313 -> 2 (the annealed mean as a fixed linear map),
       bilinear x 4 upsampling to the input size
=====  =====================================================  ==========

Weights are random: only speed is compared (the paper's network at its own
256 x 256 input size).  The input and output are rescaled to streamcolor's
conventions (L/50 - 1 in, a*b*/128 out; the paper uses (L - 50)/100 and
a*b*/110), and :func:`peer_bundle` wraps the graph in a model bundle whose
extractor is a trivial 8 x 8 mean, so that the peer runs through exactly the
same ONNX Runtime engine (``streamcolor.engines.load_engine(bundle, "onnx")``, same
session options, same ``predict``) as ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

#: Name of the peer in tables.
NAME = "zhang-eccv16"
#: The paper's input size (pixels, square).
INPUT_SIZE = 256
#: Colour bins of the classification output (ab space quantised on a grid of 10).
BINS = 313
#: Conv blocks: (filters, convolutions, stride of the last one, dilation).
BLOCKS = ((64, 2, 2, 1), (128, 2, 2, 1), (256, 3, 2, 1), (512, 3, 1, 1), (512, 3, 1, 2), (512, 3, 1, 2),
          (512, 3, 1, 1))
#: Extractor side of the wrapper bundle: the peer has no global features, so the
#: engine's letterboxed extractor input is reduced to a mean at negligible cost.
EXTRACTOR_SIZE = 8
#: Where exported peer bundles are cached (keyed by this file's content).
CACHE_DIR = Path(os.environ.get("STREAMCOLOR_CACHE", Path.home() / ".cache" / "streamcolor")) / "peers"


def build_eccv16(size: int = INPUT_SIZE, seed: int = 0):
    """The ECCV16 network in Keras 3: ``l`` (N, size, size, 1) in [-1, 1], size
    a multiple of 8 -> ``ab`` (N, size, size, 2) in about [-1, 1].  Random
    weights.  The side is fixed: Keras' bilinear upsampling needs a static
    shape to export."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    l_in = keras.Input(shape=(size, size, 1), name="l")
    x = layers.Rescaling(0.5, name="to_paper_l")(l_in)  # (L/50 - 1) / 2 = (L - 50) / 100
    for b, (filters, convs, stride, dilation) in enumerate(BLOCKS, start=1):
        for i in range(convs):
            last = i == convs - 1
            x = layers.Conv2D(filters, 3, strides=stride if last else 1, dilation_rate=dilation, padding="same",
                              activation="relu", name=f"conv{b}_{i + 1}")(x)
        x = layers.BatchNormalization(name=f"conv{b}_norm")(x)
    x = layers.Conv2DTranspose(256, 4, strides=2, padding="same", activation="relu", name="conv8_1")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv8_2")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv8_3")(x)
    x = layers.Conv2D(BINS, 1, name="conv8_313")(x)
    x = layers.Softmax(name="softmax")(x)
    x = layers.Conv2D(2, 1, use_bias=False, name="model_out")(x)  # expectation over bin centres
    x = layers.UpSampling2D(4, interpolation="bilinear", name="upsample4")(x)
    ab = layers.Rescaling(110.0 / 128.0, name="ab")(x)  # paper a*b*/110 -> ours a*b*/128
    return keras.Model(l_in, ab, name="eccv16")


def _source_key() -> str:
    import keras

    return hashlib.sha256(Path(__file__).read_bytes() + keras.__version__.encode()).hexdigest()[:16]


def peer_bundle(size: int = INPUT_SIZE, folder: str | Path | None = None) -> Path:
    """A model bundle (``model.json``, ``colorizer.onnx``, ``extractor.onnx``)
    running ECCV16 at ``size`` x ``size`` through the ONNX engine; built once
    and cached.

    Needs Keras on TensorFlow, tf2onnx and onnx (``streamcolor[train]``) the
    first time.  ``folder``: where to build it (default: the cache).
    """
    folder = Path(folder) if folder is not None else CACHE_DIR / f"{NAME}-{size}-{_source_key()}"
    if (folder / "model.json").is_file():
        return folder
    import onnx
    from onnx import TensorProto, helper

    from streamcolor.trainer.export import keras_to_onnx

    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    keras_to_onnx(build_eccv16(size), tmp / "colorizer.onnx", input_names=["l"], output_name="ab",
                  dim_names={"l": ["batch"], "ab": ["batch"]})
    # the engine feeds an embedding: give the graph that input (unused by the peer)
    proto = onnx.load(str(tmp / "colorizer.onnx"))
    proto.graph.input.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1]))
    onnx.save(proto, str(tmp / "colorizer.onnx"))
    ext = helper.make_graph(
        [helper.make_node("ReduceMean", ["l_ext"], ["mean"], axes=[1, 2], keepdims=0, name="mean")],
        "peer_extractor",
        [helper.make_tensor_value_info("l_ext", TensorProto.FLOAT, ["batch", EXTRACTOR_SIZE, EXTRACTOR_SIZE, 1])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", 1])])
    onnx.save(helper.make_model(ext, opset_imports=[helper.make_opsetid("", 13)]), str(tmp / "extractor.onnx"))
    (tmp / "model.json").write_text(json.dumps({
        "format": 1, "name": NAME, "extractor": "mean", "extractor_size": EXTRACTOR_SIZE, "embed_dim": 1,
        "files": {}, "render_size": size,
        "description": "Zhang et al. ECCV16 colorization network (public architecture, random weights), "
                       "for speed comparisons only"}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    return folder


def check_peer(engine, size: int = INPUT_SIZE) -> np.ndarray:
    """One prediction at ``size``: (1, size, size, 2), finite."""
    out = engine.predict(np.zeros((1, size, size, 1), np.float32))
    assert out.shape == (1, size, size, 2) and np.isfinite(out).all()
    return out


__all__ = ["BINS", "BLOCKS", "INPUT_SIZE", "NAME", "build_eccv16", "check_peer", "peer_bundle"]
