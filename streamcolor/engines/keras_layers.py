"""Custom Keras layers a saved streamcolor model needs at load time.

They live in ``engines`` (not ``trainer``) so the Keras engine can load a
``.keras`` file without importing the training package.  Importing this
module registers them with Keras' serialization.
"""

from __future__ import annotations

import keras
from keras import layers, ops

#: Fusion output depth (method.md: 1x1 convolution with 256 filters).
FUSION_FILTERS = 256


@keras.saving.register_keras_serializable(package="streamcolor")
class Fusion(layers.Layer):
    """Fusion layer: encoder features (N, h, w, C) and embedding (N, E) ->
    ReLU(1x1 conv over concat[features, tiled embedding]) with ``filters``
    outputs.  Kernel shape (C + E, filters), as a 1x1 conv on the concat."""

    def __init__(self, filters: int = FUSION_FILTERS, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        feat_shape, emb_shape = input_shape
        self.feat_dim = int(feat_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.feat_dim + int(emb_shape[-1]), self.filters),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        feat, emb = inputs
        k_feat = self.kernel[: self.feat_dim]
        k_emb = self.kernel[self.feat_dim :]
        per_image = ops.matmul(emb, k_emb) + self.bias  # (N, filters)
        out = ops.matmul(feat, k_feat) + per_image[:, None, None, :]
        return ops.relu(out)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
