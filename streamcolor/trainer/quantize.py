"""Low-precision variants of a model bundle, calibrated and measured.

``quantize_bundle(bundle, photos)`` adds to a bundle folder (``engines``
picks among them at load time, see ``streamcolor/engines/select.py``):

* ``colorizer-int8.onnx`` (and ``extractor-int8.onnx``): static int8
  quantization with ONNX Runtime (``quant_pre_process``, then
  ``quantize_static``, QDQ format, per-channel int8 weights, uint8
  activations), calibrated on random crops of training photos at the render
  size, with embeddings from the bundle's own float32 extractor;
* optionally ``colorizer-fp16.onnx`` / ``extractor-fp16.onnx`` for CUDA
  (``streamcolor.engines.select.to_fp16``: onnxconverter-common, float32 inputs and
  outputs), or only their quality record when the files should not be shipped
  (the engine then converts at load time).

Each variant is measured before it is recorded in ``model.json`` under
``"variants"``: the a*b* MSE on held-out photos (the val split) through the
variant and through the float32 graphs, ``mse_rel`` = |MSE(variant) -
MSE(fp32)| / MSE(fp32) (the quality guard reads it), ``mse_vs_fp32`` = the MSE
between the two outputs, and images/s of both at render size 224, batch 16
(``speedup_224_b16``).  The calibration set (photo keys, crops, size, seed)
and method (calibrator, format, types, excluded nodes, operators left in
float) are recorded next to it.

Command line: ``python -m streamcolor.trainer.quantize BUNDLE --calib data/photos --n 300``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamcolor.engines import lab
from streamcolor.engines.base import MANIFEST, Engine, EngineError, ModelInfo
from streamcolor.engines.select import VARIANT_FILES, compare_engines, cpu_description, guard, load_onnx, to_fp16, \
    unfold_fp16_weights
from streamcolor.trainer.data import (DataError, PhotoRef, PrepareOptions, decode_photo, list_photos, photo_examples,
                                     plan_splits)
from streamcolor.trainer.export import sha256_file

log = logging.getLogger(__name__)

#: Render size when neither the options nor the bundle's model.json give one.
DEFAULT_RENDER = 224
#: Calibration methods (``onnxruntime.quantization.CalibrationMethod`` names, lower case).
METHODS = ("minmax", "entropy", "percentile")
#: Quantized tensor types by name.
QTYPES = ("uint8", "int8")
#: Operators ONNX Runtime runs on integers (after its QDQ fusions).
INT_OPS = ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool",
           "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QGemm", "MatMulInteger", "ConvInteger",
           "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
#: Operators that only move values (run on uint8 as well as float).
DATA_MOVEMENT_OPS = ("Tile", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity")
#: Operators with arithmetic worth counting when they stay in float.
FLOAT_COMPUTE_OPS = ("Conv", "FusedConv", "NhwcFusedConv", "MatMul", "Gemm", "FusedMatMul", "Add", "Mul", "Tanh",
                     "Relu", "Clip", "Sigmoid", "GlobalAveragePool", "AveragePool", "Resize", "Tile", "Transpose",
                     "ReorderInput", "ReorderOutput")


class QuantizeError(RuntimeError):
    """A variant cannot be made (no calibration photos, unusable graph...)."""


@dataclass(frozen=True)
class QuantizeOptions:
    """Knobs of :func:`quantize_bundle`."""

    n: int = 300  # calibration crops
    size: int | None = None  # side of the square calibration crops, pixels; None: the bundle's render_size (else 224)
    split: str = "train"  # photos the crops come from (manifest split, else the hash split of prepare_shards)
    min_crop_scale: float = 0.35  # crop side as a fraction of the photo's shorter side: [this, 1]
    seed: int = 0  # which photos, where the crops fall
    batch: int = 10  # crops per calibration run (bounds the memory of the calibrator)
    method: str = "minmax"  # one of METHODS
    percentile: float = 99.999  # "percentile" only
    per_channel: bool = True  # one weight scale per output channel
    # 7-bit weights: ONNX Runtime's u8s8 kernels on x86 CPUs without VNNI (AVX2, plain AVX-512) add
    # pairs of products in 16 bits, which saturate with full-range weights (onnxruntime#6004)
    reduce_range: bool = False
    activations: str = "uint8"  # activation type (uint8 + int8 weights: the x86 VNNI/AMX kernels)
    weights: str = "int8"  # weight type
    exclude: tuple[str, ...] = ("last",)  # nodes kept in float: "first", "last" (conv), "fusion", or node names
    extractor: bool = False  # also quantize the extractor (+5 MB: over the package budget for the shipped model)
    int8: bool = True  # make the int8 variant
    fp16: bool = False  # make (and measure) the fp16 CUDA variant
    fp16_files: bool = True  # keep the fp16 graphs in the bundle (False: only the record; converted at load)
    eval_size: int | None = None  # held-out photos: longest side for the comparison; None: as ``size``
    eval_max: int | None = None  # at most this many held-out photos
    speed: bool = True  # time fp32 and the variant (render 224, batch 16) and record the speed-up


@dataclass
class QuantizeReport:
    """What :func:`quantize_bundle` wrote: the variant records as stored in model.json."""

    bundle: Path
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for name, rec in self.variants.items():
            q, nan = rec.get("quality", {}), float("nan")
            lines.append(f"{name}: {rec['colorizer']} + {rec['extractor']}; a*b* MSE {q.get('mse_variant', nan):.5f}"
                         f" vs fp32 {q.get('mse_fp32', nan):.5f} (drift {100 * rec.get('mse_rel', nan):.2f}%,"
                         f" output MSE vs fp32 {rec.get('mse_vs_fp32', nan):.2e}); "
                         f"speed-up at 224 px, batch 16: {rec.get('speedup_224_b16') or 'not measured'}; "
                         f"guard {rec.get('guard')}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- calibration data


@dataclass
class CalibrationSet:
    """Calibration inputs: L crops (n, S, S, 1) in [-1, 1], their letterboxed
    extractor input (n, X, X, 1) and embedding (n, E), and where they come from."""

    l: np.ndarray
    l_ext: np.ndarray
    embedding: np.ndarray
    photos: list[str]  # photo keys, in the order used
    record: dict[str, Any]  # the description stored in model.json


def split_photos(photos: Sequence[PhotoRef], split: str) -> list[PhotoRef]:
    """The photos of ``split`` exactly as ``streamcolor train prepare`` splits
    them (:func:`streamcolor.trainer.data.plan_splits`): the manifest's split
    where it has one, else the content hash -- and in a tiny set without a
    val photo, the photo whose hash comes first is val, so a small folder of
    one's own photos has one to measure on."""
    kept = []
    for p in photos:
        try:
            kept.append((p, hashlib.sha256(p.read_bytes()).hexdigest()))
        except OSError:
            continue
    by_split, _ = plan_splits(kept, PrepareOptions(), ("train", "val"))
    return [p for p, _ in by_split.get(split, [])]


def calibration_set(sources: Sequence[str | Path], engine: Engine, *, options: QuantizeOptions = QuantizeOptions()
                    ) -> CalibrationSet:
    """``options.n`` square L crops of side ``options.size`` from the ``options.split``
    photos of ``sources`` (random photos, random crops, reproducible by seed),
    with embeddings from ``engine`` (the float32 bundle)."""
    size = options.size or int(engine.info.meta.get("render_size") or DEFAULT_RENDER)
    if size % engine.size_multiple:
        raise QuantizeError(f"calibration crops of {size} px: the model takes multiples of {engine.size_multiple} "
                            "(--size)")
    with tempfile.TemporaryDirectory(prefix="streamcolor-calib-") as tmp:
        photos, _ = list_photos(sources, extract_dir=Path(tmp))
        pool = split_photos(photos, options.split)
        if not pool:
            raise QuantizeError(f"no {options.split} photos in {', '.join(str(s) for s in sources)} to calibrate on "
                                "(--calib)")
        rng = np.random.default_rng(options.seed)
        per_photo = max(1, math.ceil(options.n / len(pool)))
        order = [pool[i] for i in rng.permutation(len(pool))]
        prep = PrepareOptions(size=size, crops_per_photo=per_photo, min_crop_scale=options.min_crop_scale)
        crops, keys = [], []
        for p in order:
            if len(crops) >= options.n:
                break
            try:
                rgb = decode_photo(p.read_bytes())
            except Exception as exc:  # one bad photo never stops the calibration
                log.warning("calibration: skipped %s: %s", p.key, exc)
                continue
            for labim in photo_examples(rgb, prep, rng)[: options.n - len(crops)]:
                crops.append(lab.scale_l(labim[..., :1]))
            keys.append(p.key)
    if not crops:
        raise QuantizeError("no calibration crops could be made")
    l = np.stack(crops).astype(np.float32)
    if engine.reuses_embedding:
        l_ext = engine.extractor_input(l)
        emb = np.concatenate([engine.embed(l_ext[i:i + options.batch]) for i in range(0, len(l), options.batch)])
    else:  # one graph: L is its only input
        l_ext = emb = np.zeros((len(l), 0), np.float32)
    record = {"source": ", ".join(str(s) for s in sources), "split": options.split, "photos": len(keys),
              "crops": len(l), "crops_per_photo": per_photo, "size": size,
              "crop_scale": [options.min_crop_scale, 1.0], "seed": options.seed, "photo_keys": keys}
    if engine.reuses_embedding:
        record["embeddings"] = "the bundle's float32 extractor on the letterboxed crop"
    log.info("calibration set: %d crops of %d px from %d %s photos", len(l), size, len(keys), options.split)
    return CalibrationSet(l=l, l_ext=l_ext, embedding=emb, photos=keys, record=record)


def _reader(feeds: list[dict[str, np.ndarray]]):
    """A ``CalibrationDataReader`` over prepared feeds, with the ``set_range``
    ONNX Runtime's strided calibration uses (one batch per pass bounds memory)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Feeds(CalibrationDataReader):
        def __init__(self):
            self._range = (0, len(feeds))
            self._it = iter(feeds)

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._range = (start_index, end_index)
            self._it = iter(feeds[start_index:end_index])

        def get_next(self):
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds[self._range[0]:self._range[1]])

    return _Feeds()


# --------------------------------------------------------------------------- graphs


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    if name not in QTYPES:
        raise ValueError(f"quantized type must be one of {QTYPES}, got {name!r}")
    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    if name not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {name!r}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def float32_graph(src: Path, dst: Path) -> Path:
    """Write ``src`` as a plain float32 graph (fp16-stored weights folded back) to ``dst``."""
    import onnx

    onnx.save(unfold_fp16_weights(onnx.load(str(src))), str(dst))
    return dst


def preprocess(src: Path, dst: Path) -> str:
    """``quant_pre_process``: shape inference and graph clean-up before quantization.
    tf2onnx's dynamic upsampling defeats plain symbolic shape inference, so it
    merges symbolic dims (``auto_merge``), else falls back to ONNX shape
    inference.  Returns how it was done."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), auto_merge=True)
        return "quant_pre_process (symbolic shape inference, auto_merge; ORT basic optimizations)"
    except Exception as exc:  # symbolic inference is best effort
        log.info("symbolic shape inference failed (%s); using ONNX shape inference only", exc)
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return "quant_pre_process (ONNX shape inference only; ORT basic optimizations)"


def resolve_exclude(path: Path, tokens: Sequence[str]) -> list[str]:
    """Node names for ``tokens``: "first"/"last" (the first/last Conv in graph
    order), "fusion" (the MatMul and Add nodes of the fusion), or names as they are."""
    import onnx

    nodes = list(onnx.load(str(path), load_external_data=False).graph.node)
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    names = []
    for t in tokens:
        if t == "first" and convs:
            names.append(convs[0])
        elif t == "last" and convs:
            names.append(convs[-1])
        elif t == "fusion":
            names += [n.name for n in nodes if n.op_type in ("MatMul", "Add") and "fusion" in n.name]
        elif t not in ("first", "last", "fusion"):
            names.append(t)
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_graph(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], *, options: QuantizeOptions,
                   exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Statically quantize the float32 graph ``src`` into ``dst`` (QDQ),
    calibrated on ``feeds`` (one dict of input arrays per calibration run).
    Returns the method record stored in model.json."""
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, quantize_static

    with tempfile.TemporaryDirectory(prefix="streamcolor-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        how = preprocess(src, pre)
        excluded = resolve_exclude(pre, exclude)
        extra = {"CalibStridedMinMax": 1, "CalibPercentile": options.percentile}
        t = time.perf_counter()
        with _quiet_root_logger():  # the quantizer logs every bias-scale adjustment at INFO on the root logger
            quantize_static(str(pre), str(dst), _reader(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=options.per_channel, reduce_range=options.reduce_range,
                            activation_type=_qtype(options.activations),
                            weight_type=_qtype(options.weights), calibrate_method=_calibration_method(options.method),
                            nodes_to_exclude=excluded, extra_options=extra)
        log.info("quantized %s in %.1f s", src.name, time.perf_counter() - t)
        import onnx

        proto = onnx.load(str(dst))
        moved = push_dequantize_down(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(dst))
    rec = {"tool": f"onnxruntime {onnxruntime.__version__} quantize_static", "preprocess": how, "format": "QDQ",
           "calibration": options.method, "per_channel": options.per_channel, "reduce_range": options.reduce_range,
           "activations": options.activations,
           "weights": options.weights, "excluded_nodes": excluded,
           "post_pass": f"DequantizeLinear moved below {moved} data-movement nodes (Tile, Transpose, Reshape...: "
                        "exact), so the upsampling moves uint8",
           "calibration_runs": len(feeds)}
    if options.method == "percentile":
        rec["percentile"] = options.percentile
    return rec


def push_dequantize_down(proto) -> int:
    """Let pure data movement run on the quantized tensors: every per-tensor
    DequantizeLinear that feeds a Tile, Transpose, Reshape, (Un)Squeeze,
    Flatten or Identity is moved below it (and Shape reads the quantized
    tensor).  Exact, since rearranging values commutes with a per-tensor
    affine map; it matters here because tf2onnx writes nearest upsampling as
    Tile + Reshape + Transpose, which the quantizer leaves in float, so each
    upsampling dequantized, moved float32 data and quantized again.  Returns
    how many nodes were rewired; changes ``proto`` in place."""
    from onnx import helper

    g = proto.graph
    scalar = {i.name for i in g.initializer if int(np.prod(i.dims)) == 1}
    graph_outputs = {o.name for o in g.output}
    moved = 0
    changed = True
    while changed:
        changed = False
        consumers: dict[str, list] = {}
        for n in g.node:
            for name in n.input:
                consumers.setdefault(name, []).append(n)
        for dq in list(g.node):
            if dq.op_type != "DequantizeLinear" or dq.input[1] not in scalar:
                continue
            for x in consumers.get(dq.output[0], []):
                if not x.input or x.input[0] != dq.output[0]:
                    continue
                if x.op_type == "Shape":
                    x.input[0] = dq.input[0]
                    moved += 1
                    continue
                if x.op_type not in DATA_MOVEMENT_OPS or x.output[0] in graph_outputs:
                    continue
                out = x.output[0]
                x.input[0], x.output[0] = dq.input[0], f"{out}__q"
                nodes = list(g.node)
                g.node.insert(nodes.index(x) + 1, helper.make_node(
                    "DequantizeLinear", [x.output[0], *dq.input[1:]], [out], name=f"{out}__dq"))
                moved += 1
                changed = True
                break
            if changed:
                break
    read = {name for n in g.node for name in n.input} | graph_outputs
    for n in [n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] not in read]:
        g.node.remove(n)
    return moved


def graph_report(path: Path) -> dict[str, Any]:
    """What ONNX Runtime (CPU, all optimizations) actually runs for ``path``.

    Returns counts of the integer operators (``int8_ops``), of the operators
    that work on 8-bit tensors without arithmetic (``int8_data_movement``),
    of the operators left on float32 tensors (``float_ops``; integer shape
    arithmetic is not counted), of the Quantize/DequantizeLinear conversions
    left, and the names of the float Conv/MatMul nodes."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    with tempfile.TemporaryDirectory(prefix="streamcolor-opt-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    # Element type of every tensor, propagated in graph order: the first input's,
    # except where an operator decides it.
    dtype = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    dtype.update({i.name: i.data_type for i in graph.initializer})
    kinds: dict[str, Counter] = {"int8_ops": Counter(), "int8_data_movement": Counter(), "float_ops": Counter(),
                                 "quantize_dequantize": Counter()}
    float_convs = []
    for n in graph.node:
        first = dtype.get(n.input[0]) if n.input else None
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            kinds["quantize_dequantize"][n.op_type] += 1
            out = dtype.get(n.input[2], TensorProto.UINT8) if n.op_type == "QuantizeLinear" and len(n.input) > 2 \
                else TensorProto.UINT8 if n.op_type == "QuantizeLinear" else TensorProto.FLOAT
        elif n.op_type in INT_OPS:
            kinds["int8_ops"][n.op_type] += 1
            out = TensorProto.FLOAT if n.op_type in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul") \
                else TensorProto.UINT8
        elif n.op_type == "Shape":
            out = TensorProto.INT64
        elif n.op_type == "Cast":
            out = next(a.i for a in n.attribute if a.name == "to")
        else:
            out = first
            if first in (TensorProto.UINT8, TensorProto.INT8):
                kinds["int8_data_movement"][n.op_type] += 1
            elif first in (TensorProto.FLOAT, TensorProto.FLOAT16) and n.op_type in FLOAT_COMPUTE_OPS:
                kinds["float_ops"][n.op_type] += 1
                if n.op_type in ("Conv", "FusedConv", "NhwcFusedConv", "MatMul", "Gemm", "FusedMatMul"):
                    float_convs.append(n.name)
        for o in n.output:
            if out is not None:
                dtype[o] = out
    report: dict[str, Any] = {k: dict(sorted(v.items())) for k, v in kinds.items()}
    report["float_conv_matmul_nodes"] = float_convs
    return report


# --------------------------------------------------------------------------- measurement


class _Recording(Engine):
    """Wraps an engine and keeps every a*b* batch it returns (for output comparisons)."""

    def __init__(self, inner: Engine):
        super().__init__(inner.info)
        self.inner = inner
        self.backend = inner.backend
        self.outputs: list[np.ndarray] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def extractor_size(self) -> int:
        return self.inner.extractor_size

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        return self.inner.embed(l_ext)

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        out = self.inner.colorize(l, embedding)
        self.outputs.append(out)
        return out

    def forward(self, l: np.ndarray) -> np.ndarray:
        out = self.inner.forward(l)
        self.outputs.append(out)
        return out


def measure_quality(bundle: Path, graphs: dict[str, tuple[str, str]], photos: Sequence[Path], *, size: int = 224,
                    max_images: int | None = None) -> dict[str, dict[str, Any]]:
    """a*b* MSE of each variant against the truth of ``photos`` (colour
    files; near-gray ones skipped), and against the float32 graphs' output,
    on the CPU, each graph evaluated as written (its quantize/dequantize arithmetic,
    the same on every CPU).  ``graphs``: variant name -> (colorizer, extractor) files of
    the bundle.  Returns name -> {mse_fp32, mse_variant, mse_rel,
    mse_vs_fp32, max_abs_vs_fp32, images, size, psnr_*}."""
    from streamcolor.engines.onnx_engine import OnnxEngine
    from streamcolor.trainer.evaluate import EvalOptions, evaluate

    info = ModelInfo.load(bundle)
    opts = EvalOptions(size=size, max_images=max_images, split=None)  # (``photos`` are the chosen ones already)
    runs = {}
    for p, (colorizer, extractor) in {"fp32": VARIANT_FILES["fp32"], **graphs}.items():
        # each graph as written (engines.select.kernel_check judges a CPU's int8 kernels at load time)
        rec = _Recording(OnnxEngine(info, device="cpu", colorizer_file=colorizer, extractor_file=extractor,
                                    as_written=True))
        report = evaluate(rec, list(photos), options=opts)
        runs[p] = (report, rec.outputs)
        rec.inner.close()
    ref_report, ref_out = runs["fp32"]
    out = {}
    for p in graphs:
        report, outs = runs[p]
        diffs = [np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(outs, ref_out)]
        mse_fp32, mse_v = ref_report.model["mse_ab"], report.model["mse_ab"]
        out[p] = {"eval_set": f"{report.images} of {len(photos)} held-out photos (near-gray ones skipped), "
                              f"longest side {size}",
                  "evaluated": "each graph as written (ONNX Runtime basic optimizations: quantize/dequantize "
                               "in float, the same on every CPU)",
                  "images": report.images, "size": size, "mse_fp32": mse_fp32, "mse_variant": mse_v,
                  "mse_rel": abs(mse_v - mse_fp32) / mse_fp32 if mse_fp32 > 0 else float("inf"),
                  "mse_vs_fp32": float(np.mean(diffs)),
                  "max_abs_vs_fp32": float(max(np.abs(a - b).max() for a, b in zip(outs, ref_out))),
                  "psnr_fp32": ref_report.model["psnr"], "psnr_variant": report.model["psnr"]}
    return out


# --------------------------------------------------------------------------- the bundle


def _write_manifest(bundle: Path, info: ModelInfo) -> None:
    tmp = bundle / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(info.dump(), indent=1, default=str))
    os.replace(tmp, bundle / MANIFEST)


def _record_variant(bundle: Path, name: str, rec: dict[str, Any] | None, files: Sequence[str] = ()) -> ModelInfo:
    """Store (or with ``rec=None`` drop) variant ``name`` in model.json, with the sha256 of ``files``."""
    info = ModelInfo.load(bundle)
    meta = dict(info.meta)
    v = dict(meta.get("variants") or {})
    if rec is None:
        v.pop(name, None)
    else:
        v[name] = rec
    meta["variants"] = v
    shas = dict(info.files)
    for f in files:
        if (bundle / f).is_file():
            shas[f] = sha256_file(bundle / f)
        else:
            shas.pop(f, None)
    info = replace(info, files=shas, meta=meta)
    _write_manifest(bundle, info)
    return info


def quantize_bundle(bundle: str | Path, calib: str | Path | Sequence[str | Path], *,
                    eval_photos: str | Path | Sequence[str | Path] | None = None,
                    options: QuantizeOptions = QuantizeOptions()) -> QuantizeReport:
    """Make, measure and record the low-precision variants of a bundle.

    Parameters
    ----------
    bundle:
        A bundle folder with float32 (or float16-stored) ONNX graphs; it gets
        the variant files and an updated ``model.json``.
    calib:
        Colour photos (files, folders with or without manifest.json, archives);
        calibration uses their ``options.split`` split.
    eval_photos:
        Photos for the quality guard; default: the val split of ``calib``.
    options:
        :class:`QuantizeOptions`.

    Returns
    -------
    QuantizeReport
        The variant records, as stored under ``"variants"`` in model.json.
    """
    bundle = Path(bundle)
    calib_sources = [calib] if isinstance(calib, (str, Path)) else list(calib)
    info = ModelInfo.load(bundle)
    size = options.size or int(info.meta.get("render_size") or DEFAULT_RENDER)
    options = replace(options, size=size, eval_size=options.eval_size or size)
    report = QuantizeReport(bundle=bundle)
    with tempfile.TemporaryDirectory(prefix="streamcolor-eval-") as tmp:
        if eval_photos is None:
            photos, _ = list_photos(calib_sources, extract_dir=Path(tmp))
            eval_paths = [p.path for p in split_photos(photos, "val") if p.member is None]
            eval_desc = f"{', '.join(str(s) for s in calib_sources)} (val split)"
        else:
            eval_paths = [eval_photos] if isinstance(eval_photos, (str, Path)) else list(eval_photos)
            eval_desc = ", ".join(str(s) for s in eval_paths)
        if not eval_paths:
            raise QuantizeError(f"no held-out photos to measure the variants on: none of the photos in "
                                f"{', '.join(str(s) for s in calib_sources)} falls in the val split (about 1 in 10 "
                                "photos does, by content hash); name some other colour photos with --eval PHOTOS "
                                "(eval_photos= in Python)")

        made: dict[str, tuple[dict[str, Any], list[str]]] = {}
        if options.int8:
            made["int8"] = _make_int8(bundle, info, calib_sources, options)
        if options.fp16:
            made["fp16"] = _make_fp16(bundle)
        for name, (rec, files) in made.items():
            _record_variant(bundle, name, rec, files)

        quality = measure_quality(bundle, {k: (r["colorizer"], r["extractor"]) for k, (r, _) in made.items()},
                                  eval_paths, size=options.eval_size, max_images=options.eval_max)
        for name, (rec, files) in made.items():
            q = dict(quality[name])
            q["eval_set"] = f"{eval_desc}: {q['eval_set']}"
            rec.update(mse_rel=q["mse_rel"], mse_vs_fp32=q["mse_vs_fp32"], quality=q)
            _record_variant(bundle, name, rec, files)
            if name == "int8" and options.speed:
                rows = compare_engines(bundle, sizes=[224], batches=[16], precisions=["fp32", "int8"], rounds=3)
                ips = {r["precision"]: r["images_per_s"] for r in rows}
                rec["speed"] = {"cpu": cpu_description(), "render": 224, "batch": 16,
                                "images_per_s": {k: round(v, 2) for k, v in ips.items()},
                                "end_to_end": "extractor + colorizer, engine.predict"}
                rec["speedup_224_b16"] = round(ips["int8"] / ips["fp32"], 2)
            elif name == "fp16":
                rec["speed"] = "not measured here: fp16 runs on CUDA; ONNX Runtime's x86 CPU provider casts " \
                               "float16 convolutions back to float32"
            info = _record_variant(bundle, name, rec, files)
            ok, why = guard(info, name)
            rec["guard"] = "pass" if ok else f"fail: {why}"
            if name == "fp16" and not options.fp16_files:
                for f in files:
                    (bundle / f).unlink(missing_ok=True)
                rec["in_bundle"] = False
            _record_variant(bundle, name, rec, files)
            report.variants[name] = rec
            log.info("%s variant: %s", name, rec["guard"])
    return report


def _make_int8(bundle: Path, info: ModelInfo, calib_sources: list, options: QuantizeOptions
               ) -> tuple[dict[str, Any], list[str]]:
    colorizer_file, extractor_file = VARIANT_FILES["int8"]
    fp32 = load_onnx(info, precision="fp32", device="cpu")
    try:
        cal = calibration_set(calib_sources, fp32, options=options)
    finally:
        fp32.close()
    b = options.batch
    with tempfile.TemporaryDirectory(prefix="streamcolor-int8-") as tmp:
        tmp = Path(tmp)
        src = float32_graph(info.file("colorizer.onnx"), tmp / "colorizer-fp32.onnx")
        if info.two_stage:
            feeds = [{"l": cal.l[i:i + b], "embedding": cal.embedding[i:i + b]} for i in range(0, len(cal.l), b)]
        else:
            feeds = [{"l": cal.l[i:i + b]} for i in range(0, len(cal.l), b)]
        method = quantize_graph(src, tmp / colorizer_file, feeds, options=options, exclude=options.exclude)
        graphs = {"colorizer": graph_report(tmp / colorizer_file)}
        files = [colorizer_file]
        if options.extractor and info.two_stage:
            src = float32_graph(info.file("extractor.onnx"), tmp / "extractor-fp32.onnx")
            name = _input_name(src)
            feeds = [{name: cal.l_ext[i:i + b]} for i in range(0, len(cal.l_ext), b)]
            ext_opts = replace(options, exclude=())
            method["extractor"] = quantize_graph(src, tmp / extractor_file, feeds, options=ext_opts)
            graphs["extractor"] = graph_report(tmp / extractor_file)
            files.append(extractor_file)
        for f in files:
            shutil.copyfile(tmp / f, bundle / f".{f}.tmp")
            os.replace(bundle / f".{f}.tmp", bundle / f)
    for part, g in graphs.items():
        log.info("int8 %s runs %s in int8; left in float: %s", part, g["int8_ops"], g["float_ops"])
    ext_too = options.extractor and info.two_stage
    # (a one-graph model has no extractor: None, not a file name the bundle lacks)
    rec = {"colorizer": colorizer_file,
           "extractor": extractor_file if ext_too else ("extractor.onnx" if info.two_stage else None),
           "device": "cpu", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "made_from": _made_from(bundle, ["colorizer.onnx"] + (["extractor.onnx"] if ext_too else [])),
           "quantization": method,
           "calibration_set": cal.record, "graph": graphs,
           "sizes_bytes": {f: (bundle / f).stat().st_size for f in files}}
    return rec, files


def _make_fp16(bundle: Path) -> tuple[dict[str, Any], list[str]]:
    import onnxconverter_common

    info = ModelInfo.load(bundle)
    files = list(VARIANT_FILES["fp16"])[:2 if info.two_stage else 1]
    for src, dst in zip(("colorizer.onnx", "extractor.onnx"), files):
        (bundle / f".{dst}.tmp").write_bytes(to_fp16(info.file(src).read_bytes()))
        os.replace(bundle / f".{dst}.tmp", bundle / dst)
    rec = {"colorizer": files[0], "extractor": files[-1] if info.two_stage else None, "device": "cuda",
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "made_from": _made_from(bundle, ["colorizer.onnx", "extractor.onnx"][:len(files)]),
           "conversion": f"onnxconverter-common {onnxconverter_common.__version__} convert_float_to_float16"
                         "(keep_io_types=True)", "in_bundle": True,
           "quality_measured_on": "CPU (ORT casts float16 ops to float32 there; float16 storage of weights "
                                  "and activations between ops is what the figure reflects)"}
    return rec, files


def _made_from(bundle: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of the float32 graphs a variant is made from (the guard compares them with ``files``)."""
    return {n: sha256_file(bundle / n) for n in names}


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


# --------------------------------------------------------------------------- command line


def command():
    """The ``quantize`` click command (for ``python -m streamcolor.trainer.quantize`` and the ``train`` group)."""
    import click

    @click.command(name="quantize")
    @click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--calib", "calib", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
                  help="Colour photos to calibrate on (their train split); repeatable.")
    @click.option("--eval", "eval_photos", multiple=True, type=click.Path(exists=True, path_type=Path),
                  help="Held-out photos for the quality guard (default: the val split of --calib).")
    @click.option("--n", default=QuantizeOptions.n, show_default=True, help="Calibration crops.")
    @click.option("--size", type=int, default=None,
                  help="Calibration crop side and evaluation size, pixels "
                       "(default: the bundle's render_size, else 224).")
    @click.option("--method", type=click.Choice(METHODS), default=QuantizeOptions.method, show_default=True)
    @click.option("--exclude", multiple=True, default=QuantizeOptions.exclude, show_default=True,
                  help="Keep in float: first, last, fusion, or a node name; repeatable ('none' for nothing).")
    @click.option("--per-tensor", is_flag=True, help="One weight scale per tensor instead of per channel.")
    @click.option("--reduce-range", is_flag=True,
                  help="7-bit weights, for x86 CPUs without VNNI (AVX2), where ONNX Runtime's int8 kernels "
                       "saturate with full-range weights.")
    @click.option("--extractor/--no-extractor", default=QuantizeOptions.extractor, show_default=True,
                  help="Also quantize the extractor (faster end to end; 5 MB more in the bundle).")
    @click.option("--fp16/--no-fp16", default=False, help="Also make and measure the fp16 (CUDA) variant.")
    @click.option("--fp16-files/--no-fp16-files", default=True, show_default=True,
                  help="Keep the fp16 graphs in the bundle (else only their record; converted at load time).")
    @click.option("--no-int8", is_flag=True, help="Skip the int8 variant.")
    @click.option("--eval-max", type=int, default=None, help="At most this many held-out photos.")
    @click.option("--no-speed", is_flag=True, help="Do not time the variant.")
    @click.option("--seed", default=0, show_default=True)
    def quantize(bundle, calib, eval_photos, n, size, method, exclude, per_tensor, reduce_range, extractor, fp16,
                 fp16_files, no_int8, eval_max, no_speed, seed):
        """Add int8 (CPU) and fp16 (CUDA) variants to the model bundle BUNDLE, measured against its float32 graphs.

        Each variant's record in model.json says whether its colours on held-out
        photos pass the quality guard that `--backend auto` checks before using it.

        \b
        Examples:
          streamcolor train quantize bundles/mine --calib my-photos/
          streamcolor train quantize bundles/mine --calib my-photos/ --reduce-range --fp16
        """
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
        exclude = tuple(e for e in exclude if e != "none")
        opts = QuantizeOptions(n=n, size=size, method=method, exclude=exclude, per_channel=not per_tensor,
                               reduce_range=reduce_range, extractor=extractor, fp16=fp16, fp16_files=fp16_files,
                               int8=not no_int8,
                               eval_max=eval_max, speed=not no_speed, seed=seed)
        try:
            report = quantize_bundle(bundle, list(calib), eval_photos=list(eval_photos) or None, options=opts)
        except (QuantizeError, ImportError, ValueError, EngineError, DataError) as exc:  # (not a bundle; no photo)
            raise click.ClickException(str(exc)) from exc
        click.echo(report.summary())

    return quantize


def main() -> None:
    """``python -m streamcolor.trainer.quantize``."""
    command()(prog_name="python -m streamcolor.trainer.quantize")


__all__ = ["CalibrationSet", "QuantizeError", "command", "QuantizeOptions", "QuantizeReport", "calibration_set", "graph_report",
           "measure_quality", "quantize_bundle", "quantize_graph", "split_photos"]

if __name__ == "__main__":
    main()
