"""The U-Net colorizer: the frozen ImageNet classifier is the encoder too.

The seed network (``streamcolor.trainer.model``, method.md) learns its encoder
from scratch and takes only the classifier's 1000 logits.  With a few hundred
photos that encoder never learns what grass or a face is.  Here the same
frozen EfficientNet-Lite0 runs once on L at the render size and gives both:

* its feature maps at strides 4, 8 and 16 (and the 1280-channel head at 32),
  the U-Net's skip connections: what ImageNet taught it about local texture
  and parts, at several scales;
* its logits, the embedding of method.md, fused at the bottleneck with the
  seed's fusion layer (the same "concatenate the tiled embedding, 1x1 conv"
  map, computed as a broadcast add) after a LayerNormalization (raw logits
  span tens of units and would swamp the 256 fused channels).

The decoder upsamples (nearest, each followed by a 3x3 convolution) from stride 32 to stride 4, each time
concatenating the skip of that stride, and ends in a 3x3 tanh convolution
predicting a*b* at a quarter of the input size.  Chroma is smooth, and
streamcolor upsamples a*b* to the full-resolution image in any case, so the
two costliest decoder levels (strides 2 and 1) are left out.  The output
convolution starts at zero (predict gray), which keeps tanh out of
saturation at the start of training.

Stages of Lite0 below the tap at stride 16 (``block10``) always stay frozen;
the blocks above it (stride 32, ``block11``-``block15`` and the head) can be
fine-tuned with ``train_top=True`` (their BatchNorm statistics stay frozen).
Because everything below ``block10`` is frozen, training never needs to run
it: :func:`bottom_model` computes the taps once per training crop (stored in
feature shards), and :meth:`UNet.train_model` starts from them.

Input sides must be multiples of 32 (:data:`SIZE_MULTIPLE`); the TF "SAME"
padding of the ported checkpoints is the same for every even size, so the
graph takes any such size.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import keras
from keras import layers

from streamcolor.engines.keras_layers import Fusion
from streamcolor.trainer import extractors as ex

log = logging.getLogger(__name__)

#: Input sides must be multiples of this (five stride-2 stages).
SIZE_MULTIPLE = 32
#: The decoder's output grid: a*b* at 1/OUTPUT_STRIDE of the input sides.
OUTPUT_STRIDE = 4
#: Lite0 block whose output is the skip at each stride (block indices as in
#: ``extractors._lite0_classifier``: the last block of each stage).  Other encoders: :func:`encoder_taps`.
TAPS = {"s4": "block2", "s8": "block4", "s16": "block10"}
TAP_CHANNELS = {"s4": 24, "s8": 40, "s16": 112}
#: Frozen ImageNet classifiers the U-Net can be built on (``extractors.LITE_STAGES``).
ENCODERS = tuple(ex.LITE_STAGES)
#: Frozen-encoder inputs of the training model, in this order.
TRAIN_INPUTS = tuple(TAPS)


@dataclass(frozen=True)
class UNetConfig:
    """Decoder widths and what is trained.  Stored in the run and the bundle."""

    bottleneck: int = 256  # channels after the head projection and the fusion
    widths: tuple[int, int, int] = (192, 128, 64)  # decoder convs at strides 16, 8, 4
    convs_per_level: int = 1  # 3x3 convs per decoder level
    train_top: bool = False  # fine-tune Lite0's stride-32 blocks and head (BatchNorm stays frozen)
    dropout: float = 0.0  # spatial dropout on each decoder level's input (training only): against memorising
    skips: tuple[str, ...] = ("s16", "s8", "s4")  # encoder taps concatenated in the decoder
    encoder: str = "efficientnet_lite0"  # the frozen ImageNet classifier (a key of extractors.LITE_STAGES)

    def to_json(self) -> dict:
        d = asdict(self)
        d["widths"], d["skips"] = list(self.widths), list(self.skips)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["widths"] = tuple(d.get("widths", cls.widths))
        d["skips"] = tuple(d.get("skips", cls.skips))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def encoder_taps(encoder: str = "efficientnet_lite0") -> tuple[dict[str, str], dict[str, int]]:
    """The block whose output is the skip at strides 4, 8 and 16 (the last block at that stride)
    and its channels, for an EfficientNet-Lite variant: ``({"s4": "block2", ...}, {"s4": 24, ...})``."""
    if encoder not in ex.LITE_STAGES:
        raise ValueError(f"unknown U-Net encoder {encoder!r}; choose one of {list(ENCODERS)}")
    taps, channels, stride, block = {}, {}, 2, -1  # the stem has stride 2
    for repeats, _, first_stride, _, out_channels in ex.LITE_STAGES[encoder]:
        stride *= first_stride
        block += repeats
        if stride in (4, 8, 16):
            taps[f"s{stride}"], channels[f"s{stride}"] = f"block{block}", out_channels
    return taps, channels


# --------------------------------------------------------------------------- Lite0 as layers


def _pad(kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for an even input side (all sides here are)."""
    return ex.same_padding(2 * SIZE_MULTIPLE, kernel, stride)


class _Lite0Layers:
    """EfficientNet-Lite0's layers, created once and applied to any tensor, with
    the layer names of :func:`streamcolor.trainer.extractors.build_extractor`
    (so the shipped ImageNet weights copy over by name)."""

    def __init__(self, init: str = "glorot_uniform", encoder: str = "efficientnet_lite0"):
        self.layers: dict[str, layers.Layer] = {}
        self.blocks: list[dict] = []  # per block: names, stride, residual
        self.init = init  # kernel initializer (see extractors.kernel_init)
        self._conv_bn("stem", ex.LITE0_STEM_CHANNELS, 3, 2)
        channels, block = ex.LITE0_STEM_CHANNELS, 0
        for repeats, kernel, first_stride, expand, out_channels in ex.LITE_STAGES[encoder]:
            for r in range(repeats):
                stride = first_stride if r == 0 else 1
                name = f"block{block}"
                parts = []
                if expand != 1:
                    parts.append(self._conv_bn(f"{name}_expand", channels * expand, 1, 1))
                parts.append(self._conv_bn(f"{name}_dw", None, kernel, stride))
                parts.append(self._conv_bn(f"{name}_project", out_channels, 1, 1, relu6=False))
                residual = stride == 1 and channels == out_channels
                if residual:
                    self.layers[f"{name}_add"] = layers.Add(name=f"{name}_add")
                self.blocks.append({"name": name, "parts": parts, "residual": residual})
                channels = out_channels
                block += 1
        self._conv_bn("head", ex.LITE0_HEAD_CHANNELS, 1, 1)
        self.layers["avg_pool"] = layers.GlobalAveragePooling2D(name="avg_pool")
        self.layers["embedding"] = layers.Dense(1000, kernel_initializer=init, name="embedding")

    def _conv_bn(self, name: str, filters: int | None, kernel: int, stride: int, relu6: bool = True) -> str:
        pad = _pad(kernel, stride)
        if any(pad):
            self.layers[f"{name}_pad"] = layers.ZeroPadding2D((pad, pad), name=f"{name}_pad")
        if filters is None:
            self.layers[f"{name}_conv"] = layers.DepthwiseConv2D(kernel, strides=stride, padding="valid",
                                                                 use_bias=False, depthwise_initializer=self.init,
                                                                 name=f"{name}_conv")
        else:
            self.layers[f"{name}_conv"] = layers.Conv2D(filters, kernel, strides=stride, padding="valid",
                                                        use_bias=False, kernel_initializer=self.init,
                                                        name=f"{name}_conv")
        self.layers[f"{name}_bn"] = layers.BatchNormalization(epsilon=ex.LITE0_BN_EPSILON, name=f"{name}_bn")
        if relu6:
            self.layers[f"{name}_relu6"] = layers.ReLU(max_value=6.0, name=f"{name}_relu6")
        return name

    def conv_bn(self, x, name: str):
        for suffix in ("_pad", "_conv", "_bn", "_relu6"):
            layer = self.layers.get(name + suffix)
            if layer is not None:
                x = layer(x)
        return x

    def block(self, x, index: int):
        b = self.blocks[index]
        inputs = x
        for part in b["parts"]:
            x = self.conv_bn(x, part)
        if b["residual"]:
            x = self.layers[f"{b['name']}_add"]([inputs, x])
        return x

    def block_index(self, name: str) -> int:
        return int(name.removeprefix("block"))

    def normalize(self, l_in):
        """L in [-1, 1] -> the gray photo as Lite0's normalised RGB input."""
        gray = layers.Rescaling(0.5, offset=0.5, name="gray")(l_in)
        rgb = layers.Concatenate(axis=-1, name="gray_rgb")([gray, gray, gray])
        return layers.Rescaling(255.0 / ex.LITE0_PIXEL_STD, offset=-ex.LITE0_PIXEL_MEAN / ex.LITE0_PIXEL_STD,
                                name="normalize")(rgb)


# --------------------------------------------------------------------------- the U-Net


class UNet:
    """Layers of the U-Net colorizer, built once, and the models made of them.

    ``full_model()``: L (N, H, W, 1) in [-1, 1] -> a*b* (N, H/4, W/4, 2) in
    [-1, 1], the graph that is exported and shipped.  ``train_model()``: the
    same layers from the frozen taps ``s4``, ``s8``, ``s16`` (as
    :func:`bottom_model` computes them) to a*b*: what training runs.  The
    layers are shared, so training the one trains the other.
    """

    def __init__(self, config: UNetConfig = UNetConfig(), *, weights: str | None = "default",
                 decoder_loaded: bool = False):
        """``decoder_loaded``: the decoder's weights will be loaded too (an inference rebuild of a
        trained bundle), so it is built without random values (see ``extractors.kernel_init``)."""
        self.config = config
        self.lite0 = _Lite0Layers(ex.kernel_init(weights is not None), config.encoder)
        self.taps, self.tap_channels = encoder_taps(config.encoder)
        c = config
        init = ex.kernel_init(decoder_loaded)
        self.head_proj = layers.Conv2D(c.bottleneck, 1, activation="relu", kernel_initializer=init, name="head_proj")
        self.emb_norm = layers.LayerNormalization(name="embedding_norm")
        self.fusion = Fusion(c.bottleneck, name="fusion")
        self.up = [layers.UpSampling2D(2, interpolation="nearest", name=f"decoder_up{i}") for i in range(3)]
        self.cat = [layers.Concatenate(axis=-1, name=f"decoder_cat{i}") for i in range(3)]
        self.convs = [[layers.Conv2D(w, 3, padding="same", activation="relu", kernel_initializer=init,
                                     name=f"decoder_conv{i}_{j}")
                       for j in range(c.convs_per_level)] for i, w in enumerate(c.widths)]
        self.drop = [layers.SpatialDropout2D(c.dropout, name=f"decoder_drop{i}") if c.dropout > 0 else None
                     for i in range(3)]
        self.out = layers.Conv2D(2, 3, padding="same", activation="tanh", kernel_initializer="zeros",
                                 name="ab")
        self._full = self._bottom = self._train = None
        self._built_weights = weights

    # -- graph pieces
    def _bottom_taps(self, l_in) -> dict:
        x = self.lite0.normalize(l_in)
        x = self.lite0.conv_bn(x, "stem")
        taps, last = {}, self.lite0.block_index(self.taps["s16"])
        wanted = {self.lite0.block_index(v): k for k, v in self.taps.items()}
        for i in range(last + 1):
            x = self.lite0.block(x, i)
            if i in wanted:
                taps[wanted[i]] = x
        return taps

    def _top(self, s16):
        x = s16
        for i in range(self.lite0.block_index(self.taps["s16"]) + 1, len(self.lite0.blocks)):
            x = self.lite0.block(x, i)
        head = self.lite0.conv_bn(x, "head")
        logits = self.lite0.layers["embedding"](self.lite0.layers["avg_pool"](head))
        return head, logits

    def _decode(self, taps: dict, head, logits):
        x = self.head_proj(head)
        x = self.fusion([x, self.emb_norm(logits)])
        for i, skip in enumerate(("s16", "s8", "s4")):
            x = self.up[i](x)
            if skip in self.config.skips:
                x = self.cat[i]([x, taps[skip]])
            if self.drop[i] is not None:
                x = self.drop[i](x)
            for conv in self.convs[i]:
                x = conv(x)
        return self.out(x)

    # -- models
    def full_model(self) -> keras.Model:
        if self._full is None:
            l_in = keras.Input(shape=(None, None, 1), name="l")
            taps = self._bottom_taps(l_in)
            head, logits = self._top(taps["s16"])
            self._full = keras.Model(l_in, self._decode(taps, head, logits), name="unet_colorizer")
            if self._built_weights is not None:
                load_lite0(self)
            self._freeze()
        return self._full

    def bottom_model(self) -> keras.Model:
        """L (N, H, W, 1) -> the frozen taps {"s4", "s8", "s16"} (for feature shards)."""
        if self._bottom is None:
            self.full_model()
            l_in = keras.Input(shape=(None, None, 1), name="l")
            self._bottom = keras.Model(l_in, self._bottom_taps(l_in), name="unet_bottom")
        return self._bottom

    def train_model(self) -> keras.Model:
        """{"s4", "s8", "s16"} taps -> a*b*: the part of the network training runs."""
        if self._train is None:
            self.full_model()
            taps = {k: keras.Input(shape=(None, None, self.tap_channels[k]), name=k) for k in TRAIN_INPUTS
                    if k in self.config.skips or k == "s16"}
            head, logits = self._top(taps["s16"])
            self._train = keras.Model(taps, self._decode(taps, head, logits), name="unet_train")
        return self._train

    def _freeze(self) -> None:
        top_from = self.lite0.block_index(self.taps["s16"]) + 1
        top_names = {p for b in self.lite0.blocks[top_from:] for p in b["parts"]} | {"head"}
        for name, layer in self.lite0.layers.items():
            prefix = name.rsplit("_", 1)[0]
            trainable = (self.config.train_top and prefix in top_names and not name.endswith("_bn"))
            layer.trainable = trainable
        self.lite0.layers["embedding"].trainable = self.config.train_top


def load_lite0(unet: UNet) -> None:
    """Copy the encoder's ImageNet weights (Lite0's ship) into the U-Net's encoder, by layer name."""
    ref = ex.build_extractor(unet.config.encoder, weights="default")
    n = 0
    for name, layer in unet.lite0.layers.items():
        if not layer.weights:
            continue
        layer.set_weights(ref.get_layer(name).get_weights())
        n += 1
    log.debug("copied %d %s layers' ImageNet weights into the U-Net", n, unet.config.encoder)


def build_unet(config: UNetConfig = UNetConfig(), *, weights: str | None = "default",
               decoder_loaded: bool = False) -> UNet:
    """A U-Net colorizer (see :class:`UNet`); ``weights=None`` leaves Lite0 random (tests)."""
    return UNet(config, weights=weights, decoder_loaded=decoder_loaded)


# --------------------------------------------------------------------------- trained weights for fine-tuning

#: File in a U-Net bundle holding the weights of its trained layers (float16),
#: from which ``streamcolor train fit --init`` continues.
TRAINED_WEIGHTS = "unet-trained.npz"


def trained_layer_names(unet: UNet) -> list[str]:
    """Layers whose weights differ from the ImageNet encoder: the decoder, the
    fusion and, with ``train_top``, Lite0's top blocks and head."""
    full = unet.full_model()
    lite0 = set(unet.lite0.layers)
    names = [layer.name for layer in full.layers if layer.weights and layer.name not in lite0]
    if unet.config.train_top:
        top_from = unet.lite0.block_index(unet.taps["s16"]) + 1
        prefixes = tuple(f"block{i}_" for i in range(top_from, len(unet.lite0.blocks))) + ("head_", "embedding")
        names += [n for n in unet.lite0.layers if n.startswith(prefixes) and unet.lite0.layers[n].weights]
    return names


def save_trained(unet: UNet, path, *, dtype="float16") -> None:
    """Write the trained layers' weights to an ``.npz`` (``<layer>/<index>`` keys)."""
    import numpy as np

    full = unet.full_model()
    arrays = {}
    for name in trained_layer_names(unet):
        for i, w in enumerate(full.get_layer(name).get_weights()):
            arrays[f"{name}/{i}"] = np.asarray(w).astype(dtype)
    np.savez(path, **arrays)


def load_trained_npz(unet: UNet, path) -> int:
    """Set the U-Net's layers from :func:`save_trained`'s file; returns the layer count.
    Raises ValueError when a layer is missing or its shapes differ (another configuration)."""
    import numpy as np

    full = unet.full_model()
    by_layer: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            name, i = key.rsplit("/", 1)
            by_layer.setdefault(name, {})[int(i)] = data[key]
    for name, ws in by_layer.items():
        try:
            layer = full.get_layer(name)
        except ValueError:
            raise ValueError(f"{path}: layer {name!r} is not in this U-Net (another configuration?)") from None
        current = layer.get_weights()
        new = [ws[i].astype(current[i].dtype) for i in range(len(current))]
        if [w.shape for w in new] != [w.shape for w in current]:
            raise ValueError(f"{path}: layer {name!r} has other shapes than this U-Net's (another configuration?)")
        layer.set_weights(new)
    return len(by_layer)


def keras_model_for_bundle(info) -> keras.Model:
    """The U-Net of a bundle (``streamcolor.engines.base.ModelInfo``) as a Keras model, for the
    Keras engine when the bundle ships ONNX only: the architecture from its ``model.json``, the
    ImageNet Lite0 weights, then its trained layers (:data:`TRAINED_WEIGHTS`).  Registered as the
    ``unet`` entry point of ``streamcolor.keras_models``."""
    unet = build_unet(UNetConfig.from_json(info.meta.get("unet", {})), weights="default", decoder_loaded=True)
    model = unet.full_model()
    load_trained_npz(unet, info.file(TRAINED_WEIGHTS))
    return model
