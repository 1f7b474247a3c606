"""Gather ``benchmarks/ood_recipes.sh``'s evaluations into one results file.

    python -m benchmarks.ood_recipes WORK_DIR --out benchmarks/results/ood-recipes-<date>.json

Each recipe's a*b* MSE on the ten held-out training packages as a share of the gray baseline's,
with PSNR over gray and colourfulness as a share of the truth's (see the shell script for what the
recipes are and why).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks import one_run

log = logging.getLogger("benchmarks.ood_recipes")

RECIPES = {"A": "2 epochs (the shipped schedule)", "B": "1 epoch",
           "C": "2 epochs, dropout 0.3, weight decay 0.05", "D": "2 epochs, rebalanced loss",
           "E": "2 epochs, rebalanced loss, dropout 0.3, weight decay 0.05"}


def gather(work: Path) -> dict:
    out = {}
    for name, what in RECIPES.items():
        e = json.loads((work / f"eval-{name}-ood.json").read_text())
        out[name] = {"recipe": what, "photos": e["images"], "mse_ab": e["model"]["mse_ab"],
                     "gray_mse_ab": e["gray"]["mse_ab"],
                     "mse_ratio_to_gray": round(e["model"]["mse_ab"] / e["gray"]["mse_ab"], 4),
                     "psnr_over_gray": round(e["model"]["psnr"] - e["gray"]["psnr"], 3),
                     "colorfulness_ratio": round(e["colorfulness_ratio"], 4), "source": e["source"]}
    return out


def split_figures(e: dict) -> dict:
    """One split of a ``train eval --json`` report: photos, MSE and PSNR against gray, colourfulness."""
    return {"photos": e["images"], "mse_ratio_to_gray": round(e["model"]["mse_ab"] / e["gray"]["mse_ab"], 4),
            "psnr_over_gray": round(e["model"]["psnr"] - e["gray"]["psnr"], 3),
            "colorfulness_ratio": round(e["colorfulness_ratio"], 4)}


def gather_all_data(work: Path) -> dict:
    """Recipes A and E trained on all the training data (``ood_recipes.sh WORK all``), scored on val
    and the holdout with the grid upsampled bilinearly (their bundles have no guided upsampling)."""
    out = {}
    for name in ("A", "E"):
        path = work / "all" / f"eval-{name}.json"
        if not path.is_file():
            continue
        splits = json.loads(path.read_text())["splits"]
        out[name] = {split: split_figures(e) for split, e in splits.items()}
        out[name]["recipe"] = RECIPES[name] + ", 24 crops a photo, the last weights"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ood_recipes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="the WORK_DIR given to benchmarks/ood_recipes.sh")
    parser.add_argument("--out", type=Path, required=True, help="results JSON to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = one_run.record("ood_recipes", argv, script="bash benchmarks/ood_recipes.sh WORK_DIR")
    result["recipes"] = gather(args.work)
    result["all_data"] = gather_all_data(args.work)
    one_run.write(args.out, result, log)
    for name, r in result["recipes"].items():
        print(f"{name} {r['recipe']:42s} {r['mse_ratio_to_gray']:.3f}x gray, colour {r['colorfulness_ratio']:.2f}")
    for name, r in result["all_data"].items():
        said = [f"{split} {r[split]['mse_ratio_to_gray']:.3f}x gray, colour {r[split]['colorfulness_ratio']:.2f}"
                for split in ("val", "holdout")]
        print(f"all data, {name}: " + ", ".join(said))
    return 0


if __name__ == "__main__":
    sys.exit(main())
