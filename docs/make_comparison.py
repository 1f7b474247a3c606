"""Side-by-side gallery of held-out photos: gray input | each model | the original.

    python docs/make_comparison.py data/photos --split holdout -n 8 \\
        --model seed --model default -o docs/gallery/holdout-comparison.png

``--package NAME`` (repeatable) takes the photos of those packages only.

The photos are taken evenly spaced over the split's list in the manifest
(sorted by file name), not chosen by result.  Each photo is made gray (its
L* only), colorized by every model through ``streamcolor.colorize_image`` at
the model's own render size, and shown downscaled to ``--height`` pixels.  A
markdown file beside the PNG lists each photo's package, licence and author.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

import streamcolor
from streamcolor.colorize import model_options
from streamcolor.engines import lab, load_engine


def pick(manifest: dict, split: str, n: int, packages: list[str] | None = None) -> list[dict]:
    """``n`` photos of ``split`` (of ``packages`` only, when given) evenly spaced over the manifest's
    sorted list."""
    photos = sorted((p for p in manifest["photos"] if p.get("split") == split
                     and (not packages or p["package"] in packages)), key=lambda p: p["file"])
    if not photos:
        raise SystemExit(f"no photo of split {split!r}{' in ' + ', '.join(packages) if packages else ''} "
                         "in the manifest")
    idx = np.linspace(0, len(photos) - 1, num=min(n, len(photos))).round().astype(int)
    return [photos[i] for i in dict.fromkeys(idx.tolist())]


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """The photo's lightness as a gray RGB image (what a black-and-white print shows)."""
    l = lab.rgb_to_l(rgb)
    return np.rint(lab.lab_to_rgb(np.dstack([l, np.zeros_like(l), np.zeros_like(l)])) * 255).astype(np.uint8)


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (8 + 9 * len(text), 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path, help="folder with manifest.json (trainer.collect_photos output)")
    ap.add_argument("--split", default="holdout")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--package", action="append", help="only photos of this package; repeatable")
    ap.add_argument("--model", action="append", required=True, help="shipped model name or bundle; repeatable")
    ap.add_argument("--height", type=int, default=200, help="row height in the gallery, pixels")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()

    manifest = json.loads((args.photos / "manifest.json").read_text())
    chosen = pick(manifest, args.split, args.n, args.package)
    engines = {m: load_engine(m, "onnx", device="cpu") for m in args.model}
    names = {m: f"{m} ({e.info.name})" for m, e in engines.items()}
    rows, credits = [], []
    for rec in chosen:
        bgr = cv2.imread(str(args.photos / rec["file"]), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        gray = gray_of(rgb)
        cells = {"gray input": gray}
        for m, eng in engines.items():
            cells[Path(m).name] = np.asarray(streamcolor.colorize_image(gray, engine=eng, options=model_options(eng)))
        cells["original"] = rgb
        h, w = rgb.shape[:2]
        size = (max(1, round(w * args.height / h)), args.height)
        rows.append(np.concatenate([label(cv2.resize(c, size, interpolation=cv2.INTER_AREA), name)
                                    for name, c in cells.items()], axis=1))
        credits.append(f"| {Path(rec['file']).name} | {rec['package']} | {rec['licence']} | "
                       f"{(rec.get('copyright') or '').replace('|', '/')[:80]} |")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
    md = args.out.with_suffix(".md")
    md.write_text("\n".join([
        f"# {args.out.name}", "",
        f"Rows: {len(rows)} photos of the `{args.split}` split"
        + (f" from {', '.join(args.package)}" if args.package else "")
        + ", evenly spaced over its list, not chosen by result. "
        f"Columns: gray input | {' | '.join(names.values())} | original. "
        f"Made with `python docs/make_comparison.py {args.photos.name} --split {args.split} -n {args.n} "
        + "".join(f"--package {p} " for p in args.package or [])
        + " ".join(f"--model {m}" for m in args.model) + f" -o {args.out}`.", "",
        "| file | package | licence | author |", "|---|---|---|---|", *credits, ""]))
    print(f"wrote {args.out} and {md}")


if __name__ == "__main__":
    main()
