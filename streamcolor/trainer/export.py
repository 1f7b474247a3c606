"""Export a trained colorizer (and its frozen extractor) as a model bundle.

A bundle is the folder ``engines`` loads (``streamcolor/engines/base.py``): ``model.json``
plus the graphs.  ``export_bundle`` writes

* ``extractor.onnx`` (``l_ext`` (N, S, S, 1) -> ``embedding`` (N, E)) and
  ``colorizer.onnx`` (``l`` (N, H, W, 1), ``embedding`` -> ``ab`` (N, H, W, 2)),
  float32, batch and image size dynamic;
* ``extractor.keras`` and ``colorizer.keras`` for the Keras engine;
* optionally ``*-fp16.onnx``: float16 compute inside, float32 inputs and
  outputs (onnxconverter-common);
* with ``ship=True`` instead a compact bundle for the package: ONNX only,
  every large weight stored as a float16 initializer followed by a Cast to
  float32, so compute stays float32 in ONNX Runtime and the files are half
  the size.  The export checks the result against the float32 graphs and
  records the largest difference in ``model.json``.

A U-Net (:mod:`streamcolor.trainer.unet`) exports as one graph,
``colorizer.onnx`` (``l`` (N, H, W, 1), H and W multiples of 32 -> ``ab``
(N, H/4, W/4, 2)), plus ``unet-trained.npz``: the weights of its trained
layers in float16, from which ``streamcolor train fit --init`` fine-tunes.

ONNX conversion goes through ``keras.Model.export(format="onnx")``, which
needs TensorFlow and tf2onnx (the ``train`` extra): run the export on a
machine with TensorFlow even when training ran on JAX.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from streamcolor.engines.base import BUNDLE_FORMAT, MANIFEST, ModelInfo

log = logging.getLogger(__name__)

#: Initializers with fewer elements stay float32 in ship mode (biases, shapes, scales: no size to save).
SHIP_MIN_ELEMENTS = 256


class ExportError(RuntimeError):
    """The model cannot be exported (missing runtime, failed check...)."""


@dataclass(frozen=True)
class ExportOptions:
    """Knobs of :func:`export_bundle`."""

    name: str | None = None  # bundle name in model.json (default: the output folder's name)
    extractor: str | None = None  # extractor name (default: the one the run was trained with)
    extractor_weights: str | None = None  # default: the run's ("default" = pre-trained)
    fp16: bool = False  # also write colorizer-fp16.onnx and extractor-fp16.onnx (float16 compute)
    ship: bool = False  # compact bundle: ONNX only, weights stored float16, computed float32
    tensorrt: bool = False  # also build (and cache) TensorRT plans for this GPU
    opset: int | None = None  # ONNX opset (default: tf2onnx's)
    verify: bool = True  # run the bundle on ONNX Runtime (and Keras) and compare
    eval_json: str | None = None  # an evaluation report (JSON) to record in model.json
    overwrite: bool = False  # replace an existing output folder


@dataclass
class ExportReport:
    """What :func:`export_bundle` wrote and how well its graphs agree."""

    path: Path
    files: dict[str, str]  # name -> sha256
    max_diff: dict[str, float] = field(default_factory=dict)  # check name -> largest |difference|
    sizes: dict[str, int] = field(default_factory=dict)  # name -> bytes


def _require_onnx():
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"ONNX export runs on Keras' TensorFlow backend, this process uses "
                          f"{keras.backend.backend()!r}: rerun with KERAS_BACKEND=tensorflow "
                          "(the checkpoints and .keras files are backend-independent)")
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise ImportError("ONNX export needs TensorFlow, tf2onnx and onnx: pip install 'streamcolor[train]' "
                          f"({exc})") from exc


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def keras_to_onnx(model, path: Path, *, input_names: list[str], output_name: str,
                  dim_names: dict[str, list[str | None]], opset: int | None = None) -> Path:
    """Convert a Keras model to ONNX and give its tensors stable names.

    ``input_names``: names for the graph inputs in model order;
    ``output_name``: name of the single output; ``dim_names``: per tensor, a
    symbolic name per dimension (None keeps the dimension as it is).
    """
    import onnx

    _require_onnx()
    # Keras exports only models that have been called once.
    dummy = [np.zeros((1,) + tuple(d if d is not None else 64 for d in t.shape[1:]), np.float32)
             for t in model.inputs]
    model(dummy if len(dummy) > 1 else dummy[0], training=False)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        model.export(str(raw), format="onnx", verbose=False, opset_version=opset)
        proto = onnx.load(str(raw))
    g = proto.graph
    renames = {}
    if len(g.input) != len(input_names) or len(g.output) != 1:
        raise ExportError(f"unexpected ONNX graph: inputs {[i.name for i in g.input]}, "
                          f"outputs {[o.name for o in g.output]}")
    by_keras = {t.name: i for i, t in enumerate(model.inputs)}
    for i, inp in enumerate(g.input):
        want = input_names[by_keras.get(inp.name.split(":")[0], i)]
        renames[inp.name] = want
    renames[g.output[0].name] = output_name
    for node in g.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for vi in g.value_info:
        vi.name = renames.get(vi.name, vi.name)
    for vi in list(g.input) + list(g.output):
        vi.name = renames.get(vi.name, vi.name)
        for dim, want in zip(vi.type.tensor_type.shape.dim, dim_names.get(vi.name, [])):
            if want is not None and not dim.HasField("dim_value"):
                dim.dim_param = want
    proto.producer_name = "streamcolor"
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def store_weights_fp16(proto, *, min_elements: int = SHIP_MIN_ELEMENTS):
    """Rewrite an ONNX model so large float32 initializers are stored as
    float16 and cast back to float32 by a Cast node at the start of the
    graph (compute stays float32).  Returns the same ModelProto, changed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph
    casts, keep = [], []
    for init in g.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max(initial=0.0) > 65504.0:  # beyond float16's range: keep float32
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), name=f"{init.name}__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(proto)
    return proto


def export_bundle(source: str | Path, out: str | Path, *, options: ExportOptions = ExportOptions()) -> ExportReport:
    """Export a trained colorizer as a model bundle folder.

    Parameters
    ----------
    source:
        A run folder (from ``fit``), a checkpoint folder, a ``.keras`` file or
        a ``.weights.h5`` file beside its ``run.json``.
    out:
        The bundle folder to write (written under a temporary name, then
        renamed into place).
    options:
        :class:`ExportOptions`.

    Returns
    -------
    ExportReport
        Files with their sha256 and the verification differences:
        ``onnx_vs_keras_ab`` / ``onnx_vs_keras_embedding`` (float32 bundle) or
        ``ship_vs_fp32_ab`` / ``ship_vs_fp32_embedding`` (ship bundle), the
        largest absolute difference over a test batch.
    """
    import onnx

    from streamcolor.trainer.extractors import EXTRACTORS, build_extractor
    from streamcolor.trainer.train import load_trained

    _require_onnx()
    if options.ship and options.fp16:
        raise ValueError("ship and fp16 exclude each other: a ship bundle holds only the two ONNX graphs")
    if options.tensorrt:
        _require_tensorrt()  # before any work, not after
    if options.eval_json:
        eval_meta(options.eval_json)  # (said now, not after the export's work)
    out = Path(out)
    _refuse_inside_a_run(out)
    if out.exists() or out.is_symlink():
        if not options.overwrite:
            raise ExportError(f"{out} exists; choose another folder or --overwrite")
        _check_replaceable(out, Path(source))
    model, run = load_trained(source)
    if run.get("model") == "unet":
        return _export_unet(model, run, source, out, options)
    ext_name = options.extractor or run.get("extractor")
    if not ext_name:
        raise ExportError(f"{source}: no run.json says which extractor the model was trained with; give --extractor")
    if ext_name not in EXTRACTORS:
        raise ExportError(f"unknown extractor {ext_name!r}; choose from {sorted(EXTRACTORS)}")
    spec = EXTRACTORS[ext_name]
    embed_dim = int(model.inputs[1].shape[-1])
    if embed_dim != spec.embed_dim:
        raise ExportError(f"the colorizer takes embeddings of size {embed_dim}, extractor {ext_name} gives "
                          f"{spec.embed_dim}")
    weights = options.extractor_weights or run.get("extractor_weights", "default")
    extractor = build_extractor(ext_name, weights=weights)

    report = ExportReport(path=out, files={})
    with _staging(out, ship=options.ship) as (tmp, fp32_dir):
        log.info("converting the colorizer to ONNX")
        keras_to_onnx(model, fp32_dir / "colorizer.onnx", input_names=["l", "embedding"], output_name="ab",
                      dim_names={"l": ["batch", "height", "width", None], "embedding": ["batch", None],
                                 "ab": ["batch", "height", "width", None]}, opset=options.opset)
        log.info("converting the extractor %s to ONNX", ext_name)
        keras_to_onnx(extractor, fp32_dir / "extractor.onnx", input_names=["l_ext"], output_name="embedding",
                      dim_names={"l_ext": ["batch", None, None, None], "embedding": ["batch", None]},
                      opset=options.opset)
        if options.ship:
            for part in ("colorizer", "extractor"):
                proto = store_weights_fp16(onnx.load(str(fp32_dir / f"{part}.onnx")))
                onnx.save(proto, str(tmp / f"{part}.onnx"))
        else:
            model.save(tmp / "colorizer.keras")
            extractor.save(tmp / "extractor.keras")
        if options.fp16:
            _fp16_variants(tmp)

        files = _record_files(tmp, report)
        meta: dict[str, Any] = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "extractor_weights": weights,
            "weights_storage": "float16 (computed in float32)" if options.ship else "float32",
            "inputs": {"l": "(N, H, W, 1) L/50 - 1, H and W multiples of 8", "embedding": f"(N, {embed_dim})",
                       "l_ext": f"(N, {spec.size}, {spec.size}, 1) L/50 - 1, letterboxed"},
            "outputs": {"ab": "(N, H, W, 2) a*b*/128", "embedding": f"(N, {embed_dim})"},
            "training": {k: run[k] for k in ("step", "epoch", "examples_seen", "loss", "val_loss", "batch_size",
                                             "size", "checkpoint", "backend", "stopped_by") if k in run},
            "data": {k: run[k] for k in ("shards", "data_counts", "data_sources") if k in run},
            "source": str(source),
        }
        if options.eval_json:
            meta.update(eval_meta(options.eval_json))
        info = ModelInfo(path=tmp, name=options.name or out.name, extractor=ext_name, extractor_size=spec.size,
                         embed_dim=embed_dim, files=files, meta=meta)
        _publish(tmp, out, info, options, report,
                 verify=lambda: _verify(tmp, fp32_dir, ship=options.ship, extractor_size=spec.size))
    return _after_publish(out, options, report)


def _export_unet(model, run: dict, source, out: Path, options: ExportOptions) -> ExportReport:
    """:func:`export_bundle` for a U-Net: one graph, L -> a*b* at a quarter size."""
    import onnx

    from streamcolor.engines.base import UNET
    from streamcolor.trainer.unet import OUTPUT_STRIDE, SIZE_MULTIPLE, TRAINED_WEIGHTS, UNetConfig, build_unet, \
        save_trained

    config = UNetConfig.from_json(run["unet"]) if "unet" in run else UNetConfig()
    if options.extractor not in (None, config.encoder):
        raise ExportError(f"the U-Net is built on {config.encoder}; --extractor cannot change it")
    unet = build_unet(config, weights=None)
    unet.full_model().set_weights(model.get_weights())
    report = ExportReport(path=out, files={})
    with _staging(out, ship=options.ship) as (tmp, fp32_dir):
        log.info("converting the U-Net to ONNX")
        keras_to_onnx(unet.full_model(), fp32_dir / "colorizer.onnx", input_names=["l"], output_name="ab",
                      dim_names={"l": ["batch", "height", "width", None],
                                 "ab": ["batch", "out_height", "out_width", None]}, opset=options.opset)
        if options.ship:
            onnx.save(store_weights_fp16(onnx.load(str(fp32_dir / "colorizer.onnx"))), str(tmp / "colorizer.onnx"))
        else:
            unet.full_model().save(tmp / "colorizer.keras")
        if options.fp16:
            _fp16_variants(tmp, parts=("colorizer",))
        save_trained(unet, tmp / TRAINED_WEIGHTS)
        files = _record_files(tmp, report)
        meta: dict[str, Any] = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "extractor_weights": run.get("extractor_weights", "default"),
            "weights_storage": "float16 (computed in float32)" if options.ship else "float32",
            "unet": config.to_json(),
            "output_stride": OUTPUT_STRIDE,
            "inputs": {"l": f"(N, H, W, 1) L/50 - 1, H and W multiples of {SIZE_MULTIPLE}"},
            "outputs": {"ab": f"(N, H/{OUTPUT_STRIDE}, W/{OUTPUT_STRIDE}, 2) a*b*/128"},
            "training": {k: run[k] for k in ("step", "epoch", "examples_seen", "loss", "val_loss", "batch_size",
                                             "size", "checkpoint", "backend", "stopped_by", "options") if k in run},
            "data": {k: run[k] for k in ("shards", "data_counts", "data_sources") if k in run},
            "source": str(source),
        }
        meta.update(_inherited(run))
        if options.eval_json:
            meta.update(eval_meta(options.eval_json))
        info = ModelInfo(path=tmp, name=options.name or out.name, extractor=config.encoder, extractor_size=0,
                         embed_dim=1000, files=files, meta=meta, architecture=UNET, size_multiple=SIZE_MULTIPLE)
        _publish(tmp, out, info, options, report,
                 verify=lambda: _verify_unet(tmp, fp32_dir, ship=options.ship, model=unet.full_model()))
    return _after_publish(out, options, report)


#: What a fine-tuned model keeps of the bundle it started from (``fit --init``): how it is run.
INHERITED = ("render_size", "saturation", "guided_upsampling")


def _inherited(run: dict) -> dict[str, Any]:
    """The run settings of the model a fine-tuning run started from (its render size, saturation and
    edge-aware upsampling), so that the new bundle runs as that one did: without them it ran at 256
    with the grid upsampled bilinearly, and `eval` against the model it came from measured the
    settings, not the fine-tuning.  Nothing for a run trained from scratch."""
    from streamcolor.trainer.train import init_source

    init = (run.get("options") or {}).get("init")
    if not init:
        return {}
    try:
        kind, path = init_source(str(init))
        if kind != "bundle":
            return {}
        start = json.loads((path / MANIFEST).read_text())
    except (ValueError, OSError):
        log.warning("the model this run started from (%s) is not found: its render size and upsampling are not "
                    "carried into the bundle", init)
        return {}
    kept = {k: start[k] for k in INHERITED if k in start}
    if kept:
        log.info("carried from %s: %s", init, ", ".join(f"{k} {v}" for k, v in kept.items()))
    return kept


def _verify_unet(bundle: Path, fp32_dir: Path, *, ship: bool, model) -> dict[str, float]:
    """Largest |a*b*| differences of the bundle's graph against the Keras model
    (and, for a ship bundle, against the float32 graph), on a non-square batch."""
    from streamcolor.engines.base import ModelInfo as _Info
    from streamcolor.engines.onnx_engine import OnnxEngine

    l, _ = _test_batch(8, size=96)
    l = np.concatenate([l, l[:, :, :32]], axis=2)  # 96 x 128: non-square, multiples of 32
    info = _Info.load(bundle)
    ab = OnnxEngine(info, device="cpu").predict(l)
    ref = np.asarray(model(l, training=False), np.float32)
    diffs = {"onnx_vs_keras_ab": float(np.abs(ab - ref).max())}
    if ship:
        ref32 = OnnxEngine(_Info(path=fp32_dir, name="fp32", extractor=info.extractor, extractor_size=0,
                                 embed_dim=info.embed_dim, architecture=info.architecture,
                                 size_multiple=info.size_multiple), device="cpu").predict(l)
        diffs = {"ship_vs_fp32_ab": float(np.abs(ab - ref32).max()), "ship_vs_keras_ab": diffs["onnx_vs_keras_ab"]}
        diffs.pop("onnx_vs_keras_ab", None)
    if (bundle / "colorizer-fp16.onnx").is_file():
        half = OnnxEngine(info, device="cpu", colorizer_file="colorizer-fp16.onnx")
        diffs["fp16_vs_fp32_ab"] = float(np.abs(half.predict(l) - ab).max())
    return diffs



def _refuse_inside_a_run(out: Path) -> None:
    """ExportError when ``out`` would sit in a run's ``checkpoints/`` folder: ``fit`` prunes old
    checkpoints there, and a bundle inside one would be pruned with it (or be taken for one)."""
    from streamcolor.trainer.train import CHECKPOINTS, RUN_FILE

    for folder in (out.resolve(), *out.resolve().parents):
        if folder.name == CHECKPOINTS and (folder.parent / RUN_FILE).is_file():
            raise ExportError(f"{out}: the bundle would sit inside the checkpoints of the run {folder.parent}, "
                              "which fit prunes; choose a folder outside it (e.g. bundles/NAME)")


def _check_replaceable(out: Path, source: Path) -> None:
    """ExportError unless ``out`` may be removed for the new bundle: --overwrite replaces an
    earlier model bundle (a folder with a model.json) or an empty folder, never the run being
    exported, a folder holding it, or any other folder or file of the user's."""
    real_out, real_src = out.resolve(), source.resolve()
    if real_out == real_src or real_src.is_relative_to(real_out) or real_out.is_relative_to(real_src):
        raise ExportError(f"{out}: the bundle would replace (or sit inside) the run {source} it is exported from; "
                          "choose a folder outside it")
    if out.is_symlink() or not out.is_dir():
        raise ExportError(f"{out} is a file, not a model bundle; --overwrite only replaces a bundle folder")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ExportError(f"{out} is a folder with no {MANIFEST}, not a model bundle; --overwrite only replaces "
                          "a bundle (nothing was removed)")
    if (out / MANIFEST).is_file():
        try:
            manifest = json.loads((out / MANIFEST).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT or "files" not in manifest:
            raise ExportError(f"{out}: its {MANIFEST} is not a streamcolor bundle's (another program's model?); "
                              "--overwrite only replaces a bundle (nothing was removed)")
        others = sorted(p.name for p in out.iterdir() if not _bundle_file(p, manifest))
        if others:  # (the whole folder is replaced: a user's notes kept in it went with it)
            raise ExportError(f"{out} holds files that are not the bundle's ({', '.join(others[:5])}"
                              f"{', ...' if len(others) > 5 else ''}); move them out first (nothing was removed)")


#: Names of files that streamcolor writes into a bundle besides those its manifest lists: the int8
#: and fp16 variants (``quantize``), TensorRT plans, the encoder's licence.
_BUNDLE_EXTRAS = re.compile(r"(colorizer|extractor)(-[a-z0-9]+)?\.(onnx|keras)|(colorizer|extractor)-[\w.-]+\.plan"
                            r"|LICENSE-efficientnet-[\w-]+\.txt|unet-trained\.npz")


def _bundle_file(path: Path, manifest: dict) -> bool:
    return path.is_file() and not path.is_symlink() and (
        path.name == MANIFEST or path.name in manifest.get("files", {}) or bool(_BUNDLE_EXTRAS.fullmatch(path.name)))


@contextlib.contextmanager
def _staging(out: Path, *, ship: bool) -> Iterator[tuple[Path, Path]]:
    """A hidden sibling folder to build the bundle in, moved onto ``out`` only once complete (a failed
    export never leaves half a bundle where ``-m`` would find it), and for ship bundles a scratch
    folder for the float32 graphs that are converted and verified but not shipped."""
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fp32_dir = tmp if not ship else Path(tempfile.mkdtemp(prefix="streamcolor-fp32-"))
    try:
        yield tmp, fp32_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ship:
            shutil.rmtree(fp32_dir, ignore_errors=True)


def _record_files(tmp: Path, report: ExportReport) -> dict[str, str]:
    """The bundle's files with their sha256 (the manifest pins them) and sizes (for the log)."""
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MANIFEST}
    report.files = files
    report.sizes = {n: (tmp / n).stat().st_size for n in files}
    return files


def _publish(tmp: Path, out: Path, info: ModelInfo, options: ExportOptions, report: ExportReport,
             verify: Callable[[], dict[str, float]]) -> None:
    """Write the manifest, check the graphs against Keras when asked (the result goes into the
    manifest too), then move the finished bundle onto ``out``."""
    _write_manifest(tmp, info)
    if options.verify:
        report.max_diff = verify()
        info.meta["export_check_max_abs_diff"] = report.max_diff
        _write_manifest(tmp, info)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _after_publish(out: Path, options: ExportOptions, report: ExportReport) -> ExportReport:
    if options.tensorrt:
        build_tensorrt(out)
    log.info("bundle %s: %s; checks %s", out, ", ".join(f"{n} ({report.sizes[n] / 1e6:.1f} MB)" for n in report.files),
             report.max_diff)
    return report

def eval_meta(path: str | Path) -> dict[str, Any]:
    """model.json keys from an ``eval --json`` report: ``eval`` (the val split, or the
    only one) and, for a report of several splits, ``eval_splits`` with each."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"{path}: not a report of `train eval --json` ({exc})") from exc
    if not isinstance(report, dict) or not ("splits" in report or "model" in report):
        raise ExportError(f"{path}: not a report of `train eval --json` (no 'model' or 'splits')")
    if "splits" not in report:
        return {"eval": report}
    splits = report["splits"]
    return {"eval": splits.get("val") or next(iter(splits.values())), "eval_splits": splits}


def _write_manifest(folder: Path, info: ModelInfo) -> None:
    (folder / MANIFEST).write_text(json.dumps(info.dump(), indent=1, default=str))


def _fp16_variants(folder: Path, parts: tuple[str, ...] = ("colorizer", "extractor")) -> None:
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ImportError("fp16 variants need onnxconverter-common: pip install onnxconverter-common") from exc
    for part in parts:
        src = folder / f"{part}.onnx"
        proto = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(proto, str(folder / f"{part}-fp16.onnx"))


def _test_batch(extractor_size: int, n: int = 2, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth test images: L (n, size, size, 1) and the letterboxed (n, S, S, 1), in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    l = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + 4 * yy * rng.uniform(0.5, 2)) * 0.8 for _ in range(n)])
    l = (l + rng.normal(0, 0.05, l.shape)).clip(-1, 1).astype(np.float32)[..., None]
    from streamcolor.engines import lab
    l_ext = np.stack([lab.letterbox(x[..., 0], extractor_size) for x in l])[..., None]
    return l, l_ext


def _verify(bundle: Path, fp32_dir: Path, *, ship: bool, extractor_size: int) -> dict[str, float]:
    """Largest absolute differences between the bundle's ONNX graphs and the
    reference (the Keras models, or the float32 ONNX graphs for a ship bundle)."""
    from streamcolor.engines.base import ModelInfo as _Info
    from streamcolor.engines.onnx_engine import OnnxEngine

    l, l_ext = _test_batch(extractor_size)
    onnx_engine = OnnxEngine(_Info.load(bundle), device="cpu")
    emb = onnx_engine.embed(l_ext)
    ab = onnx_engine.colorize(l, emb)
    if ship:
        info = _Info.load(bundle)
        ref = OnnxEngine(_Info(path=fp32_dir, name="fp32", extractor=info.extractor,
                               extractor_size=info.extractor_size, embed_dim=info.embed_dim), device="cpu")
        tag = "ship_vs_fp32"
    else:
        from streamcolor.engines.keras_engine import KerasEngine
        ref = KerasEngine(_Info.load(bundle))
        tag = "onnx_vs_keras"
    ref_emb = ref.embed(l_ext)
    ref_ab = ref.colorize(l, ref_emb)
    ab_same_emb = onnx_engine.colorize(l, ref_emb)
    diffs = {f"{tag}_embedding": float(np.abs(emb - ref_emb).max()),
             f"{tag}_ab": float(np.abs(ab_same_emb - ref_ab).max()),
             f"{tag}_ab_end_to_end": float(np.abs(ab - ref_ab).max())}
    if (bundle / "colorizer-fp16.onnx").is_file():
        half = OnnxEngine(_Info.load(bundle), device="cpu", colorizer_file="colorizer-fp16.onnx",
                          extractor_file="extractor-fp16.onnx")
        diffs["fp16_vs_fp32_embedding"] = float(np.abs(half.embed(l_ext) - emb).max())
        diffs["fp16_vs_fp32_ab"] = float(np.abs(half.colorize(l, emb) - ab).max())
    return diffs


def _require_tensorrt() -> None:
    from streamcolor.engines.tensorrt_engine import require_tensorrt

    try:
        require_tensorrt()
    except ImportError as exc:
        raise ExportError(f"cannot build TensorRT plans: {exc}") from exc


def build_tensorrt(bundle: str | Path) -> None:
    """Build and cache TensorRT plans for ``bundle`` on this machine's GPU (the
    cache ``streamcolor.engines.tensorrt_engine`` reads, via its ``build_plan``), or raise
    ExportError when TensorRT is missing."""
    from streamcolor.engines import load_engine

    _require_tensorrt()
    load_engine(bundle, "tensorrt").close()


__all__ = ["ExportOptions", "ExportReport", "ExportError", "export_bundle", "keras_to_onnx", "store_weights_fp16",
           "build_tensorrt", "sha256_file"]
