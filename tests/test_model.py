"""The seed network matches method.md's table."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from streamcolor.trainer.model import ENCODER, INCEPTION_EMBED_DIM, build_colorizer  # noqa: E402


def test_parameter_count_of_seed_network():
    model = build_colorizer(INCEPTION_EMBED_DIM)
    assert model.count_params() == 6_574_050
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 6_574_050


def test_layer_table():
    model = build_colorizer(1000)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    enc = [(c.filters, c.strides[0], c.kernel_size) for c in convs[: len(ENCODER)]]
    assert enc == [(f, s, (3, 3)) for f, s in ENCODER]
    dec = [(c.filters, c.kernel_size, c.activation.__name__) for c in convs[len(ENCODER):]]
    assert dec == [(128, (3, 3), "relu"), (64, (3, 3), "relu"), (64, (3, 3), "relu"),
                   (32, (3, 3), "relu"), (2, (3, 3), "tanh")]
    fusion = model.get_layer("fusion")
    assert tuple(fusion.kernel.shape) == (256 + 1000, 256)


@pytest.mark.parametrize("h,w", [(64, 64), (48, 96), (224, 224)])
def test_any_multiple_of_8_size(h, w):
    model = build_colorizer(10)
    out = model.predict([np.zeros((2, h, w, 1), "float32"), np.zeros((2, 10), "float32")], verbose=0)
    assert out.shape == (2, h, w, 2)
    assert np.all(np.abs(out) <= 1)


def test_fusion_equals_concat_then_1x1_conv():
    """The fusion layer computes exactly conv1x1(concat[features, tiled embedding])."""
    from streamcolor.engines.keras_layers import Fusion

    rng = np.random.default_rng(0)
    feat = rng.normal(size=(2, 3, 5, 8)).astype("float32")
    emb = rng.normal(size=(2, 6)).astype("float32")
    layer = Fusion(4)
    out = np.asarray(layer([feat, emb]))
    tiled = np.broadcast_to(emb[:, None, None, :], (2, 3, 5, 6))
    concat = np.concatenate([feat, tiled], axis=-1)
    kernel, bias = (np.asarray(w) for w in layer.weights)
    ref = np.maximum(concat @ kernel + bias, 0)
    np.testing.assert_allclose(out, ref, atol=1e-5)
