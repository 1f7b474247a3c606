"""Quantitative evaluation of a model through an :class:`streamcolor.engines.Engine`.

Metrics, each next to the gray baseline (a*b* = 0) and, where it has one,
the truth:

* ``mse_ab``: mean over images of the per-image MSE of a*b* in the [-1, 1]
  scaling (method.md's figure; the loss);
* ``psnr``: PSNR in dB of the uint8 RGB image made from the true L and the
  predicted a*b*, against the true RGB image;
* ``colorfulness``: Hasler and Suesstrunk's M (``streamcolor.engines.lab.colorfulness``)
  of the output, its mean over images, and ``colorfulness_ratio`` =
  mean M(output) / mean M(truth): MSE training is known to desaturate, so a
  ratio well below 1 is that weakness in one number.

The engine does the whole prediction (``predict``: its own extractor, then
its colorizer; then ``refine``: the model's edge-aware upsampling of its grid,
as streamcolor runs it, unless ``EvalOptions.guided`` is off), so the same
evaluation runs on the ONNX, Keras or TensorRT engine.  This module imports no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from streamcolor.engines import lab
from streamcolor.trainer.data import ALL_SPLITS, DataError, ShardSet, decode_photo, list_photos, mean_chroma

if TYPE_CHECKING:
    from streamcolor.engines.base import Engine

log = logging.getLogger(__name__)

#: PSNR of an exact reconstruction is infinite; it is capped here.
PSNR_CAP = 100.0


@dataclass(frozen=True)
class EvalOptions:
    """Knobs of :func:`evaluate`."""

    size: int = 224  # photos: longest side at which the model runs (aspect kept, multiple of the model's)
    batch_size: int = 16  # images per engine call (shards; photos go one by one)
    split: str | None = "val"  # shards: which split; photos with a manifest: only this split (None: all)
    max_images: int | None = None  # stop after this many images
    gray_threshold: float = 3.0  # photos: near-gray ones (mean chroma below) are skipped, no colour truth
    stored_embeddings: bool = False  # shards: use the stored embeddings (engine.colorize only)
    guided: bool = True  # the model's edge-aware upsampling of its grid, as streamcolor runs it (Engine.refine)
    saturation: float = 1.0  # a*b* gain before scoring (clipped to the a*b* range), as ColorOptions.saturation


@dataclass
class EvalReport:
    """Result of :func:`evaluate`; ``to_json`` and ``to_markdown`` render it."""

    engine: str
    source: str
    images: int
    model: dict[str, float]  # mse_ab, psnr, colorfulness
    gray: dict[str, float]  # the same for a*b* = 0
    truth: dict[str, float]  # colorfulness of the ground truth
    colorfulness_ratio: float  # mean M(model) / mean M(truth)
    skipped: list[str] = field(default_factory=list)
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, *, per_image: bool = False) -> str:
        d = asdict(self)
        if not per_image:
            d.pop("per_image")
        return json.dumps(d, indent=1)

    def to_markdown(self) -> str:
        gray_ratio = self.gray["colorfulness"] / self.truth["colorfulness"] if self.truth["colorfulness"] else 0.0
        rows = [
            "| metric | model | gray baseline (ab = 0) | truth |",
            "|---|---|---|---|",
            f"| a\\*b\\* MSE ([-1, 1] scaling), lower is better | {self.model['mse_ab']:.5f} | "
            f"{self.gray['mse_ab']:.5f} | 0 |",
            f"| PSNR of RGB, dB, higher is better | {self.model['psnr']:.2f} | {self.gray['psnr']:.2f} | - |",
            f"| colorfulness M (Hasler-Suesstrunk) | {self.model['colorfulness']:.2f} | "
            f"{self.gray['colorfulness']:.2f} | {self.truth['colorfulness']:.2f} |",
            f"| colorfulness ratio to truth | {self.colorfulness_ratio:.3f} | {gray_ratio:.3f} | 1 |",
        ]
        head = f"Evaluation of `{self.engine}` on {self.images} images from `{self.source}`"
        if self.skipped:
            head += f" ({len(self.skipped)} skipped)"
        return head + "\n\n" + "\n".join(rows) + "\n"


def image_metrics(l_scaled: np.ndarray, ab_pred: np.ndarray, ab_true: np.ndarray,
                  rgb_true: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one image.

    l_scaled: (H, W, 1) L in [-1, 1]; ab_pred, ab_true: (H, W, 2) in [-1, 1];
    rgb_true: uint8 (H, W, 3), default the RGB of (L, ab_true).
    Returns mse_ab, psnr (dB, capped at :data:`PSNR_CAP`), colorfulness, and
    the same for the gray baseline (``gray_*``) and ``truth_colorfulness``.
    """
    if rgb_true is None:
        rgb_true = _rgb_u8(l_scaled, ab_true)
    out = {}
    for tag, ab in (("", ab_pred), ("gray_", np.zeros_like(ab_true))):
        rgb = _rgb_u8(l_scaled, ab)
        out[f"{tag}mse_ab"] = float(np.mean((ab.astype(np.float64) - ab_true) ** 2))
        out[f"{tag}psnr"] = psnr(rgb, rgb_true)
        out[f"{tag}colorfulness"] = lab.colorfulness(rgb)
    out["truth_colorfulness"] = lab.colorfulness(rgb_true)
    return out


def to_grid(ab: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """a*b* (h, w, 2) from the model's output grid to (H, W, 2), bilinear, as
    streamcolor upsamples it onto the image (the U-Net predicts at a quarter size)."""
    if ab.shape[:2] == tuple(size):
        return ab
    import cv2

    return cv2.resize(np.ascontiguousarray(ab, dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _gain(ab: np.ndarray, saturation: float) -> np.ndarray:
    """a*b* (scaled to [-1, 1]) times ``saturation``, clipped to the range."""
    return ab if saturation == 1.0 else np.clip(ab * np.float32(saturation), -1.0, 1.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (capped at :data:`PSNR_CAP`)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * math.log10(255.0 ** 2 / mse))


def _rgb_u8(l_scaled: np.ndarray, ab_scaled: np.ndarray) -> np.ndarray:
    labim = np.concatenate([lab.unscale_l(l_scaled), lab.unscale_ab(ab_scaled)], axis=-1)
    return np.rint(lab.lab_to_rgb(labim) * 255.0).astype(np.uint8)


def evaluate(engine: "Engine", source: str | Path | Sequence[str | Path], *,
             options: EvalOptions = EvalOptions()) -> EvalReport:
    """Evaluate ``engine`` on held-out data.

    Parameters
    ----------
    engine:
        Any :class:`streamcolor.engines.base.Engine` (``streamcolor.engines.load_engine(bundle, backend)``).
    source:
        A shard folder (its ``options.split`` split, "val" by default) or
        colour photos: files, folders, .zip/.tar* archives.  Photos are run
        at ``options.size`` on the longer side, aspect kept; near-gray photos
        are skipped.

    Returns
    -------
    EvalReport
        Means over images of the metrics in the module docstring.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    is_shards = len(sources) == 1 and (Path(sources[0]) / "meta.json").is_file()
    items = _from_shards(engine, Path(sources[0]), options) if is_shards else _from_photos(engine, sources, options)
    per_image: list[dict[str, Any]] = []
    skipped: list[str] = []
    from tqdm.auto import tqdm

    for entry in tqdm(items, desc="evaluating", unit="image", leave=False, disable=None):
        if "skipped" in entry:
            skipped.append(entry["skipped"])
            continue
        per_image.append(entry)
        if options.max_images and len(per_image) >= options.max_images:
            break
    if not per_image:
        raise DataError(f"nothing to evaluate in {[str(s) for s in sources]}"
                        + (f" ({len(skipped)} skipped)" if skipped else ""))
    mean = {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0] if k != "image"}
    truth_cf = mean["truth_colorfulness"]
    report = EvalReport(
        engine=engine.name, source=", ".join(str(s) for s in sources), images=len(per_image),
        model={k: mean[k] for k in ("mse_ab", "psnr", "colorfulness")},
        gray={k: mean[f"gray_{k}"] for k in ("mse_ab", "psnr", "colorfulness")},
        truth={"colorfulness": truth_cf},
        colorfulness_ratio=mean["colorfulness"] / truth_cf if truth_cf else 0.0,
        skipped=skipped, per_image=per_image)
    log.info("evaluated %s on %d images: mse_ab %.5f (gray %.5f), psnr %.2f (gray %.2f), colorfulness ratio %.3f",
             report.engine, report.images, report.model["mse_ab"], report.gray["mse_ab"], report.model["psnr"],
             report.gray["psnr"], report.colorfulness_ratio)
    return report


def _from_shards(engine: "Engine", root: Path, options: EvalOptions) -> Iterator[dict[str, Any]]:
    if options.split not in ALL_SPLITS:
        raise ValueError(f"shards have the splits {ALL_SPLITS}, not {options.split!r}")
    shards = ShardSet(root, options.split)
    if options.stored_embeddings and shards.model == "unet":
        raise DataError(f"{root}: U-Net shards store feature maps, not embeddings; --stored-embeddings is for "
                        "the seed model's shards (prepare --model koalarization)")
    if len(shards) == 0:
        raise DataError(f"{root}: the {options.split} split has no examples")
    n = len(shards) if not options.max_images else min(len(shards), options.max_images)
    for i in range(0, n, options.batch_size):
        idx = np.arange(i, min(n, i + options.batch_size))
        x, ab = shards.take(idx)
        l = x["l"] if "l" in x else shards.take_l(idx)
        if options.stored_embeddings:
            pred = engine.colorize(l, x["embedding"])
        else:
            pred = engine.predict(l)
        if options.guided:
            pred = engine.refine(l, pred)
        pred = _gain(pred, options.saturation)
        for j, k in enumerate(idx):
            size = l.shape[1:3]
            yield {"image": f"{options.split}#{int(k)}",
                   **image_metrics(l[j], to_grid(pred[j], size), to_grid(ab[j], size))}


def _from_photos(engine: "Engine", sources: Sequence[str | Path], options: EvalOptions) -> Iterator[dict[str, Any]]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="streamcolor-eval-") as tmp:
        photos, problems = list_photos(sources, extract_dir=Path(tmp))
        for p in problems:
            yield {"skipped": f"{p['key']}: {p['error']}"}
        if options.split is not None and photos and not any(p.split for p in photos):
            log.warning("split %r ignored: %s have no manifest.json that splits them; every photo is evaluated",
                        options.split, ", ".join(str(s) for s in sources))
        elif options.split is not None:
            photos = [p for p in photos if p.split == options.split]
            if not photos:
                raise DataError(f"no photo of the {options.split!r} split in {[str(s) for s in sources]}")
        for p in photos:
            try:
                rgb = decode_photo(p.read_bytes())
            except Exception as exc:  # one bad file never stops the evaluation
                log.warning("skipped %s: %s", p.key, exc)
                yield {"skipped": f"{p.key}: {exc}"}
                continue
            if mean_chroma(rgb) < options.gray_threshold:
                yield {"skipped": f"{p.key}: near-gray, no colour truth"}
                continue
            h, w = lab.render_shape(*rgb.shape[:2], options.size, engine.size_multiple)
            rgbf = lab.resize(rgb.astype(np.float32) / 255.0, h, w)
            rgb_true = np.rint(np.clip(rgbf, 0, 1) * 255.0).astype(np.uint8)
            labim = lab.rgb_to_lab(rgb_true)
            l_scaled = lab.scale_l(labim[..., :1])
            pred = engine.predict(l_scaled[None])
            if options.guided:
                pred = engine.refine(l_scaled[None], pred)
            pred = to_grid(_gain(pred, options.saturation)[0], (h, w))
            yield {"image": p.key, **image_metrics(l_scaled, pred, lab.scale_ab(labim[..., 1:]), rgb_true)}


__all__ = ["EvalOptions", "EvalReport", "evaluate", "image_metrics", "psnr"]
