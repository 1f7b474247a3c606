"""Pool ``benchmarks/ood_cv.sh``'s package-grouped cross-validation into one results file.

    python -m benchmarks.ood_cv WORK_DIR --out benchmarks/results/ood-cv-<date>.json

Every training package is scored once, by the models trained without its fold. For each recipe and
seed: a*b* MSE over all the folds' photos as a share of the gray baseline's, PSNR over gray and
colourfulness as a share of the truth's; against recipe A of the same seed, the paired ratio of
MSEs with a 95% bootstrap interval over photos (resampled by package, since photos of one package
are alike), so that a difference the photos cannot carry is not read as one.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks import one_run
from benchmarks.ood_recipes import split_figures

log = logging.getLogger("benchmarks.ood_cv")

RECIPES = {"A": "2 epochs (the shipped schedule)",
           "C": "2 epochs, dropout 0.3, weight decay 0.05",
           "E": "2 epochs, rebalanced loss, dropout 0.3, weight decay 0.05"}
FOLDS = (1, 2, 3)
BOOTSTRAP = 2000


def _package(image: str) -> str:
    """The package folder a scored photo came from (``.../photos/PACKAGE/name``)."""
    parts = Path(image).parts
    return parts[-2] if len(parts) >= 2 else image


def _gain_tag(gain: float) -> str:
    """The key suffix of a gain in the results file: ``-x115`` for 1.15 (no dot: keys are dotted paths)."""
    return "" if gain == 1.0 else f"-x{round(gain * 100)}"


def load(work: Path) -> dict[tuple[str, int, float], list[dict]]:
    """Per-image figures of every complete (recipe, seed, a*b* gain): all three folds scored."""
    found: dict[tuple[str, int, float], list[dict]] = defaultdict(list)
    folds: dict[tuple[str, int, float], set[int]] = defaultdict(set)
    for k in FOLDS:
        for path in sorted((work / f"fold{k}").glob("eval-*-s*.json")):
            m = re.fullmatch(r"eval-([A-Z])-s(\d+)(?:-g(\d+(?:\.\d+)?))?\.json", path.name)
            if not m or m.group(1) not in RECIPES:
                continue
            key = (m.group(1), int(m.group(2)), float(m.group(3) or 1.0))
            found[key].extend(json.loads(path.read_text())["per_image"])
            folds[key].add(k)
    return {key: rows for key, rows in found.items() if folds[key] == set(FOLDS)}


def summary(rows: list[dict]) -> dict:
    mse = float(np.mean([r["mse_ab"] for r in rows]))
    gray = float(np.mean([r["gray_mse_ab"] for r in rows]))
    truth = float(np.mean([r["truth_colorfulness"] for r in rows]))
    return {"photos": len(rows), "packages": len({_package(r["image"]) for r in rows}),
            "mse_ab": round(mse, 6), "gray_mse_ab": round(gray, 6), "mse_ratio_to_gray": round(mse / gray, 4),
            "psnr_over_gray": round(float(np.mean([r["psnr"] - r["gray_psnr"] for r in rows])), 3),
            "colorfulness_ratio": round(float(np.mean([r["colorfulness"] for r in rows])) / truth, 4)}


def paired(rows: list[dict], base: list[dict], seed: int = 0) -> dict:
    """MSE of ``rows`` over that of ``base`` on the same photos, with a package-level bootstrap."""
    b = {r["image"]: r for r in base}
    common = [r for r in rows if r["image"] in b]
    by_pkg: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in common:
        by_pkg[_package(r["image"])].append((r["mse_ab"], b[r["image"]]["mse_ab"]))
    sums = np.array([[sum(x for x, _ in v), sum(y for _, y in v)] for v in by_pkg.values()])
    ratio = float(sums[:, 0].sum() / sums[:, 1].sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(BOOTSTRAP, len(sums)))
    boot = sums[draws].sum(axis=1)
    lo, hi = np.percentile(boot[:, 0] / boot[:, 1], [2.5, 97.5])
    wins = sum(1 for v in by_pkg.values() if sum(x for x, _ in v) < sum(y for _, y in v))
    return {"mse_ratio_to_A": round(ratio, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "packages_better_than_A": wins, "packages": len(by_pkg)}


def gather(work: Path) -> dict:
    runs = load(work)
    out: dict = {}
    for (name, seed, gain), rows in sorted(runs.items()):
        recipe = RECIPES[name] + (f"; a*b* x {gain:g} when scored" if gain != 1.0 else "")
        entry = {"recipe": recipe, "seed": seed, "gain": gain, **summary(rows)}
        if (name, gain) != ("A", 1.0) and ("A", seed, 1.0) in runs:
            entry["against_A"] = paired(rows, runs[("A", seed, 1.0)])
        out[f"{name}-s{seed}" + _gain_tag(gain)] = entry
    return out


def gather_all_data(work: Path) -> dict:
    """``ood_cv.sh WORK all RECIPE`` (and its ``train eval --saturation G`` re-scorings, named
    ``eval-RECIPE-gG.json``): the recipe trained on all the training photos, scored on val and the
    holdout with the grid upsampled bilinearly (a bundle from ``export`` names no guided upsampling)."""
    out = {}
    for path in sorted((work / "all").glob("eval-*.json")):
        m = re.fullmatch(r"eval-([A-Z])(?:-g(\d+(?:\.\d+)?))?\.json", path.name)
        if not m or m.group(1) not in RECIPES:
            continue
        gain = float(m.group(2) or 1.0)
        splits = json.loads(path.read_text())["splits"]
        entry = {split: split_figures(e) for split, e in splits.items()}
        entry["recipe"] = (RECIPES[m.group(1)] + ", 24 crops a photo, seed 0, the last weights"
                           + (f"; a*b* x {gain:g} when scored" if gain != 1.0 else ""))
        out[m.group(1) + _gain_tag(gain)] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ood_cv", description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="the WORK_DIR given to benchmarks/ood_cv.sh")
    parser.add_argument("--out", type=Path, required=True, help="results JSON to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = one_run.record("ood_cv", argv, script="bash benchmarks/ood_cv.sh WORK_DIR [SEED]")
    result["runs"] = gather(args.work)
    result["all_data"] = gather_all_data(args.work)
    if not result["runs"]:
        log.error("no recipe has all three folds scored under %s", args.work)
        return 1
    one_run.write(args.out, result, log)
    for key, r in result["runs"].items():
        line = f"{key:6s} {r['recipe']:80s} {r['mse_ratio_to_gray']:.3f}x gray, colour {r['colorfulness_ratio']:.2f}"
        if "against_A" in r:
            p = r["against_A"]
            line += (f"; {p['mse_ratio_to_A']:.3f}x A [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}],"
                     f" better in {p['packages_better_than_A']}/{p['packages']} packages")
        print(line)
    for key, r in result["all_data"].items():
        said = [f"{split} {r[split]['mse_ratio_to_gray']:.3f}x gray, colour {r[split]['colorfulness_ratio']:.2f}"
                for split in ("val", "holdout") if split in r]
        print(f"all data, {key}: " + ", ".join(said))
    return 0


if __name__ == "__main__":
    sys.exit(main())
