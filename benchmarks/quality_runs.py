"""Colour quality of models on the collector's val and holdout splits, in one run, for README's tables.

Each spec is ``NAME=MODEL@SIZE`` (``MODEL``: a shipped name or a bundle folder), optionally with
``--no-guided``; each runs ``streamcolor train eval -m MODEL PHOTOS --size SIZE --split val --split
holdout --per-image --json ...`` (the command a user runs), and the reports are merged into one
results file with what the figure blocks read (``benchmarks/figures.py``: ``quality-splits``,
``quality-packages``): each run's splits with their MSE / gray, the holdout by package and the
count of holdout photos that score worse than gray.

    python -m benchmarks.quality_runs data/photos --out benchmarks/results/quality-DATE.json \\
        default@320=default@320 "default@320 --no-guided=default@320 --no-guided" default@256=default@256 \\
        seed@256=seed@256 previous@320=/path/to/previous-bundle@320

``--added PKG`` (repeatable) names holdout packages added since the first six, whose count of
photos worse than gray the README gives apart.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

#: The first six holdout packages' photos are counted apart from those added later (README).
DEFAULT_ADDED = ("wordpress-theme-twentytwentyfive", "wordpress-theme-twentytwentyfour", "gnome-recipes-data")


def parse_spec(text: str) -> tuple[str, str, int, bool]:
    """``NAME=MODEL@SIZE[ --no-guided]`` -> (name, model, size, guided)."""
    name, _, rest = text.partition("=")
    guided = not rest.endswith(" --no-guided")
    model, _, size = rest.removesuffix(" --no-guided").rpartition("@")
    if not name or not model or not size.isdigit():
        raise ValueError(f"expected NAME=MODEL@SIZE[ --no-guided], got {text!r}")
    return name, model, int(size), guided


def package_of(image: str) -> str:
    """The collector's package of a per-image key (``photos/<package>/<file>``)."""
    return image.split("/")[-2]


def summarise(report: dict[str, Any], added: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """(splits without per-image rows, with MSE / gray; holdout by package; worse-than-gray counts)."""
    splits = {}
    for split, r in report["splits"].items():
        r = {k: v for k, v in r.items() if k != "per_image"}
        r["skipped"] = len(r.get("skipped") or [])
        r["mse_ratio_to_gray"] = r["model"]["mse_ab"] / r["gray"]["mse_ab"]
        r["psnr_over_gray"] = r["model"]["psnr"] - r["gray"]["psnr"]
        splits[split] = r
    rows = report["splits"]["holdout"]["per_image"]
    by: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by[package_of(row["image"])].append(row)
    packages = {}
    for name, rs in sorted(by.items()):
        mse, gray = sum(r["mse_ab"] for r in rs) / len(rs), sum(r["gray_mse_ab"] for r in rs) / len(rs)
        packages[name] = {"images": len(rs), "mse_ab": mse, "gray_mse_ab": gray, "mse_ratio_to_gray": mse / gray,
                          "worse_than_gray": sum(r["mse_ab"] > r["gray_mse_ab"] for r in rs)}
    worse = [r for r in rows if r["mse_ab"] > r["gray_mse_ab"]]
    late = [r for r in rows if package_of(r["image"]) in added]
    late_worse = sum(package_of(r["image"]) in added for r in worse)
    counts = {"photos": len(worse), "of": len(rows), "first_six": len(worse) - late_worse,
              "first_six_of": len(rows) - len(late), "added": late_worse, "added_of": len(late)}
    return splits, packages, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", help="the collector's folder (with manifest.json)")
    parser.add_argument("specs", nargs="+", help="NAME=MODEL@SIZE[ --no-guided]")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--added", action="append", default=None, help="holdout packages added after the first six")
    parser.add_argument("--streamcolor", default=str(Path(sys.executable).with_name("streamcolor")))
    parser.add_argument("--against", help="a run NAME the others are compared with photo by photo (paired)")
    args = parser.parse_args(argv)
    added = tuple(args.added or DEFAULT_ADDED)
    names = [parse_spec(spec)[0] for spec in args.specs]  # (said before any evaluation runs)
    if len(set(names)) != len(names):
        parser.error(f"run names repeat: {names}")
    if args.against and args.against not in names:
        parser.error(f"--against {args.against!r} names no run; the runs are {names}")
    result: dict[str, Any] = {
        "generator": "python -m benchmarks.quality_runs " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"), "runs": {}, "holdout_by_package": {}, "holdout_worse_than_gray": {},
        "per_image": {}, "added_packages": list(added)}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.specs:
            name, model, size, guided = parse_spec(spec)
            out = Path(tmp) / "eval.json"
            command = [args.streamcolor, "train", "eval", "-m", model, args.photos, "--size", str(size),
                       "--split", "val", "--split", "holdout", "--per-image", "--json", str(out), "-q",
                       *([] if guided else ["--no-guided"])]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            report = json.loads(out.read_text())
            out.unlink()
            splits, packages, counts = summarise(report, added)
            result["runs"][name] = {**splits, "command": " ".join(command[1:]).replace(str(out), "EVAL.json")}
            result["holdout_by_package"][name] = packages
            result["holdout_worse_than_gray"][name] = counts
            result["per_image"][name] = {s: {r["image"]: r["mse_ab"] for r in report["splits"][s]["per_image"]}
                                         for s in ("val", "holdout")}
            print(f"{name}: val {splits['val']['mse_ratio_to_gray']:.3f}, holdout "
                  f"{splits['holdout']['mse_ratio_to_gray']:.3f} x gray")
    if args.against:
        result["paired"] = {name: paired(result["per_image"][args.against], result["per_image"][name])
                            for name in result["per_image"] if name != args.against}
        result["paired_against"] = args.against
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def paired(base: dict[str, dict[str, float]], other: dict[str, dict[str, float]], rounds: int = 4000) -> dict:
    """Per split: ``other``'s summed a*b* MSE over ``base``'s on the same photos, a 95% interval from a
    bootstrap over photos (seeded), and on how many photos ``other`` is the better."""
    import random

    out = {}
    for split in ("val", "holdout"):
        keys = sorted(set(base[split]) & set(other[split]))
        ratio = sum(other[split][k] for k in keys) / sum(base[split][k] for k in keys)
        rng = random.Random(0)
        draws = []
        for _ in range(rounds):
            sample = [rng.choice(keys) for _ in keys]
            draws.append(sum(other[split][k] for k in sample) / sum(base[split][k] for k in sample))
        draws.sort()
        out[split] = {"mse_ratio": ratio, "interval_95": [draws[int(0.025 * rounds)], draws[int(0.975 * rounds) - 1]],
                      "better_on": sum(other[split][k] < base[split][k] for k in keys), "photos": len(keys)}
    return out


if __name__ == "__main__":
    sys.exit(main())
