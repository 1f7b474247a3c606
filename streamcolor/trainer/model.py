"""The Deep Koalarization network in Keras 3 (method.md).

Encoder, fusion and decoder follow method.md's table exactly.  The frozen
ImageNet extractor is a separate model (``streamcolor.trainer.extractors``): its
embedding is an input of the colorizer, so embeddings can be precomputed for
training and reused across video frames at inference.

Fusion note: concatenating the embedding, repeated over every H/8 x W/8
position, with the encoder output and applying a 1x1 convolution is the same
linear map as ``conv1x1(encoder; K[:256]) + embedding @ K[256:]`` broadcast
over positions.  :class:`streamcolor.engines.keras_layers.Fusion` keeps method.md's single (256 + E) x 256
kernel, with the same parameter count, and computes it that way, so the
(H/8, W/8, 1257) tensor is never materialised and the graph exports to ONNX
as MatMul + Add.
"""

from __future__ import annotations

import keras
from keras import layers

from streamcolor.engines.keras_layers import FUSION_FILTERS, Fusion

#: Encoder convolutions: (filters, stride), all 3x3, ReLU, "same" padding.
ENCODER = ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 1), (256, 1))
#: Embedding size of the thesis' Inception-ResNet-v2 (1000 classes + background).
INCEPTION_EMBED_DIM = 1001


def build_colorizer(embed_dim: int, name: str = "colorizer") -> keras.Model:
    """The trainable network: inputs ``l`` (N, H, W, 1) in [-1, 1] with H, W
    multiples of 8, and ``embedding`` (N, embed_dim); output ``ab``
    (N, H, W, 2) in [-1, 1] (tanh)."""
    l_in = keras.Input(shape=(None, None, 1), name="l")
    emb_in = keras.Input(shape=(embed_dim,), name="embedding")
    x = l_in
    for i, (filters, stride) in enumerate(ENCODER):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                          name=f"encoder_conv{i}")(x)
    x = Fusion(FUSION_FILTERS, name="fusion")([x, emb_in])
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="decoder_conv0")(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name="decoder_up0")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="decoder_conv1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="decoder_conv2")(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name="decoder_up1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="decoder_conv3")(x)
    x = layers.Conv2D(2, 3, padding="same", activation="tanh", name="decoder_conv4")(x)
    ab = layers.UpSampling2D(2, interpolation="nearest", name="ab")(x)
    return keras.Model([l_in, emb_in], ab, name=name)
