"""Test-time ensembles and colour gains on the held-out photos: can the shipped model do better
without training, and would val have told us?

    python -m benchmarks.ensembles data/photos --out benchmarks/results/ensembles-<date>.json

For each colour photo of the ``val`` and ``holdout`` splits (near-gray ones skipped, as
``streamcolor train eval`` does), the default model predicts a*b* at render sizes 224, 256, 320,
384 and 448 and on the mirrored photo at 320, each with the model's own edge-aware upsampling;
every prediction is brought to the 320 render's grid and scored there against the truth, as
``streamcolor train eval --size 320`` scores the model.  Then, from the same predictions:

* **ensembles**: the mean of several renders (and of the mirrored one);
* **a global gain** on a*b* (80% to 120%: less or more colour everywhere);
* **disagreement shrinkage**: the ensemble's mean scaled by m^2 / (m^2 + c v) per pixel or per
  photo, where v is the renders' variance about the mean m: less colour where the renders
  disagree, the guess being that disagreement marks the colours the model does not know.

Each as a*b* MSE / the gray baseline's, per split.  Settings are to be chosen on ``val`` only;
the holdout's column says what that choice would have given on sources never seen.
About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import one_run

log = logging.getLogger("benchmarks.ensembles")

SIZES = (224, 256, 320, 384, 448)
BASE = 320
SPLITS = ("val", "holdout")


def predictions(engine, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The truth's a*b* at the 320 render and each prediction brought to its grid."""
    from streamcolor.engines import lab
    from streamcolor.trainer.evaluate import to_grid

    def render(size: int) -> np.ndarray:
        h, w = lab.render_shape(*rgb.shape[:2], size, engine.size_multiple)
        return np.rint(np.clip(lab.resize(rgb.astype(np.float32) / 255.0, h, w), 0, 1) * 255.0).astype(np.uint8)

    def predict(l_scaled: np.ndarray) -> np.ndarray:
        l_scaled = np.ascontiguousarray(l_scaled)
        return engine.refine(l_scaled[None], engine.predict(l_scaled[None]))[0]

    base = lab.rgb_to_lab(render(BASE))
    truth = lab.scale_ab(base[..., 1:])
    shape = truth.shape[:2]
    preds = {str(s): to_grid(predict(lab.scale_l(lab.rgb_to_lab(render(s))[..., :1])), shape) for s in SIZES}
    preds["flip"] = to_grid(predict(lab.scale_l(base[..., :1])[:, ::-1]), shape)[:, ::-1]
    return truth, preds


def methods() -> dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]:
    """Each way of turning the predictions into one a*b*."""
    def mean(keys):
        return lambda p: np.mean([p[k] for k in keys], axis=0)

    def shrink(keys, c, per_pixel):
        def fn(p):
            m = np.mean([p[k] for k in keys], axis=0)
            v = np.mean([(p[k] - m) ** 2 for k in keys], axis=0).sum(-1, keepdims=True)
            m2 = (m ** 2).sum(-1, keepdims=True)
            if not per_pixel:
                v, m2 = v.mean(), m2.mean()
            return m * m2 / (m2 + c * v + 1e-8)
        return fn

    out: dict[str, Callable] = {f"render {s}": mean([str(s)]) for s in SIZES}
    ensembles = {"320 + mirrored": ["320", "flip"], "256 + 320": ["256", "320"], "320 + 384": ["320", "384"],
                 "256 + 320 + 384": ["256", "320", "384"], "224 + 320 + 448": ["224", "320", "448"],
                 "five renders": [str(s) for s in SIZES], "five renders + mirrored": [*map(str, SIZES), "flip"]}
    out.update({k: mean(v) for k, v in ensembles.items()})
    for gain in (0.8, 0.9, 1.1, 1.2):
        out[f"render 320, gain {gain:.0%}"] = lambda p, g=gain: g * p["320"]
    for name in ("320 + mirrored", "224 + 320 + 448", "five renders"):
        for c, label in ((0.5, "1/2"), (1, "1"), (2, "2"), (4, "4")):  # (no dots in the keys: figures are a.b.c paths)
            out[f"{name}, shrink per pixel c={label}"] = shrink(ensembles[name], c, True)
            out[f"{name}, shrink per photo c={label}"] = shrink(ensembles[name], c, False)
    return out


def run(photos_dir: Path, model: str, backend: str) -> dict:
    from streamcolor.engines import load_engine
    from streamcolor.trainer.data import decode_photo, list_photos, mean_chroma
    from streamcolor.trainer.evaluate import EvalOptions

    engine = load_engine(model, backend)
    fns = methods()
    sums = {split: {"gray": 0.0, "photos": 0, **{k: 0.0 for k in fns}} for split in SPLITS}
    threshold = EvalOptions().gray_threshold
    with tempfile.TemporaryDirectory() as tmp:
        photos, _ = list_photos([photos_dir], extract_dir=Path(tmp))
        photos = [p for p in photos if p.split in SPLITS]
        for i, p in enumerate(photos, start=1):
            rgb = decode_photo(p.read_bytes())
            if mean_chroma(rgb) < threshold:
                continue
            truth, preds = predictions(engine, rgb)
            row = sums[p.split]
            row["photos"] += 1
            row["gray"] += float(np.mean(truth.astype(np.float64) ** 2))
            for k, fn in fns.items():
                row[k] += float(np.mean((fn(preds).astype(np.float64) - truth) ** 2))
            if i % 20 == 0:
                log.info("%d/%d photos", i, len(photos))
    table = {split: {"photos": s["photos"], "gray_mse_ab": s["gray"] / max(s["photos"], 1),
                     "mse_over_gray": {k: round(s[k] / s["gray"], 4) for k in fns}} for split, s in sums.items()}
    best_val = min(fns, key=lambda k: table["val"]["mse_over_gray"][k])
    return {"engine": engine.name, "base_render": BASE, "splits": table, "best_on_val": best_val,
            "best_on_val_holdout": table["holdout"]["mse_over_gray"][best_val],
            "base_holdout": table["holdout"]["mse_over_gray"][f"render {BASE}"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ensembles", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="data/photos (the collector's folder with manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON to write")
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--backend", default="onnx")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not (args.photos / "manifest.json").is_file():
        print(f"{args.photos}: no manifest.json (run python -m streamcolor.trainer.collect_photos first)",
              file=sys.stderr)
        return 2
    result = one_run.record("ensembles", argv)
    result.update(run(args.photos, args.model, args.backend))
    one_run.write(args.out, result, log)
    for split in SPLITS:
        t = result["splits"][split]
        print(f"{split} ({t['photos']} photos)")
        for k, v in t["mse_over_gray"].items():
            print(f"  {k:45s} {v:.4f}")
    print(f"best on val: {result['best_on_val']} -> holdout {result['best_on_val_holdout']:.4f} "
          f"(render {BASE} alone: {result['base_holdout']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
