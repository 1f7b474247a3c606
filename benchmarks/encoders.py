"""Variants of the U-Net trained on all the training photos with the shipped schedule, compared over
seeds on val and the holdout: its frozen encoder (EfficientNet-Lite0, shipped, against Lite2), or
more photos (the surveys' finds in docs/training-data.md, not collected yet, added to training).

    ENCODER=efficientnet_lite2 bash benchmarks/ood_cv.sh WORK all A 0    # and ... all A 1
    bash benchmarks/ood_cv.sh WORK all A 1                              # Lite0, seed 1
    python -m benchmarks.encoders lite0=WORK/all lite0=OOD/all lite2=WORK/all-lite2 --out FILE \
        --bundle lite0=WORK/all/bundle-A-s1 --bundle lite2=WORK/all-lite2/bundle-A

For more photos, ``benchmarks/more_photos.sh WORK EXTRA_DIR`` trains on data/photos plus a folder of
them (the same crops, schedule and seeds) into WORK/extra; ``more=WORK/extra`` then names its reports.

Each ``ENCODER=DIR`` (any label: ``more=DIR`` too) names a folder of ``train eval --json`` reports written by ``ood_cv.sh WORK all A
[SEED]`` (``eval-A.json`` for seed 0, ``eval-A-sN.json`` for seed N; ``benchmarks/ood_recipes.sh``'s
``all`` runs are the same recipe at seed 0).  Same photos, crops (24 a photo, seed 0) and schedule for
both encoders; the grid upsampled bilinearly (a bundle from ``export`` names no guided upsampling).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from benchmarks import one_run
from benchmarks.ood_recipes import split_figures

log = logging.getLogger("benchmarks.encoders")


def gather(pairs: list[tuple[str, Path]]) -> dict:
    """{"ENCODER-A-sSEED": {split: figures}} for every report found, first folder first on a clash."""
    runs: dict[str, dict] = {}
    for encoder, folder in pairs:
        for path in sorted(folder.glob("eval-A*.json")):
            m = re.fullmatch(r"eval-A(?:-s(\d+))?\.json", path.name)
            if not m:
                continue
            key = f"{encoder}-A-s{int(m.group(1) or 0)}"
            if key in runs:
                continue
            splits = json.loads(path.read_text())["splits"]
            runs[key] = {split: split_figures(e) for split, e in splits.items()}
            runs[key]["report"] = str(path)
    return runs


def means(runs: dict) -> dict:
    """Per encoder and split: the mean over its seeds of MSE / gray and of the colourfulness ratio."""
    out: dict[str, dict] = {}
    for key, run in runs.items():
        encoder = key.split("-A-")[0]
        for split in ("val", "holdout"):
            if split in run:
                out.setdefault(encoder, {}).setdefault(split, []).append(run[split])
    return {enc: {split: {"seeds": len(rows),
                          "mse_ratio_to_gray": round(sum(r["mse_ratio_to_gray"] for r in rows) / len(rows), 4),
                          "colorfulness_ratio": round(sum(r["colorfulness_ratio"] for r in rows) / len(rows), 4)}
                  for split, rows in splits.items()}
            for enc, splits in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encoders", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", metavar="ENCODER=DIR", help="an encoder's name and a folder of reports")
    parser.add_argument("--out", type=Path, required=True, help="results JSON to write")
    parser.add_argument("--bundle", action="append", default=[], metavar="ENCODER=DIR",
                        help="a bundle of that encoder's U-Net: its network's GFLOPs per image at render 320x256")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pairs = []
    for item in args.folders:
        encoder, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"{item}: give ENCODER=DIR")
        pairs.append((encoder, Path(folder)))
    result = one_run.record("encoders", argv, script="benchmarks/ood_cv.sh WORK all A [SEED] (ENCODER=...)")
    result["runs"] = gather(pairs)
    if not result["runs"]:
        log.error("no eval-A*.json report in %s", ", ".join(str(f) for _, f in pairs))
        return 1
    result["means"] = means(result["runs"])
    if args.bundle:
        from streamcolor.engines.flops import network_flops

        result["gflops_320x256"] = {}
        for item in args.bundle:
            encoder, _, folder = item.partition("=")
            result["gflops_320x256"][encoder] = round(network_flops(folder, 256, 320)["total"] / 1e9, 3)
        if {"lite0", "lite2"} <= set(result["gflops_320x256"]):
            g = result["gflops_320x256"]
            result["gflops_lite2_over_lite0"] = round(g["lite2"] / g["lite0"], 3)
    one_run.write(args.out, result, log)
    for key, run in result["runs"].items():
        print(key, ", ".join(f"{s} {run[s]['mse_ratio_to_gray']:.3f}x gray, colour {run[s]['colorfulness_ratio']:.2f}"
                             for s in ("val", "holdout") if s in run))
    for enc, splits in result["means"].items():
        print(f"{enc} mean of {splits['holdout']['seeds']} seeds: holdout "
              f"{splits['holdout']['mse_ratio_to_gray']:.3f}x gray, val {splits['val']['mse_ratio_to_gray']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
