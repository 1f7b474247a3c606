"""Which int8 recipe this CPU's ONNX Runtime kernels compute faithfully, in one run.

    python -m benchmarks.int8_kernels --out benchmarks/results/int8-kernels-cpu-2026-11-30.json

The shipped int8 variant (uint8 activations, int8 weights, per channel) is
checked by ``auto`` on every machine (``streamcolor.engines.select.kernel_check``):
on x86 CPUs without VNNI, ONNX Runtime's u8s8 kernels saturate and its colours
drift far from float32.  This re-quantizes the default model's colorizer three
ways on the same calibration crops (gray crops of the bundled photos: the
network's input is L alone) and reports, for each:

* the disagreement with float32 on the probe photo through the fused kernels
  (what ``auto`` measures) and through the graph evaluated as written (basic
  optimizations only: the QDQ arithmetic in float);
* images/s of the int8 graph against float32 at 256 x 256, batch 8.

Recipes: ``u8s8`` (as shipped), ``u8s8 reduce_range`` (7-bit weights, what
ONNX Runtime's quantization guide advises without VNNI) and ``u8u8``.  A few
minutes on 2 cores.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import one_run

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.int8_kernels")
SOURCES = [ROOT / "streamcolor" / "samples" / "chenonceau-bw.jpg", ROOT / "streamcolor" / "engines" / "probe.png",
           ROOT / "docs" / "gallery" / "holdout-comparison.png"]


def calibration_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` network inputs (size x size, L scaled to [-1, 1]) cropped from the bundled photos."""
    import cv2

    from streamcolor.colorize import pixels_to_l
    from streamcolor.engines import lab

    rng = np.random.default_rng(seed)
    images = [im for im in (cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in SOURCES) if im is not None]
    crops = []
    for i in range(n):
        im = images[i % len(images)]
        h, w = im.shape
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(im[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        crops.append(lab.scale_l(pixels_to_l(crop))[..., None])
    return np.stack(crops).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    args = one_run.parse("int8_kernels", __doc__, argv, "fewer crops and calls: checks that the script runs")
    from streamcolor.engines import load_engine, select
    from streamcolor.engines.onnx_engine import OnnxEngine
    from streamcolor.trainer.quantize import QuantizeOptions, float32_graph, quantize_graph

    base = load_engine("default", "onnx", device="cpu")
    info = base.info
    if info.two_stage:
        raise SystemExit("this script is for one-graph models (the default U-Net)")
    crops = calibration_crops(10 if args.quick else 40, 64 if args.quick else 256)
    feeds = [{"l": crops[i:i + 10]} for i in range(0, len(crops), 10)]
    calls = 1 if args.quick else 4
    recipes = {"u8s8": QuantizeOptions(), "u8s8_reduce_range": QuantizeOptions(reduce_range=True),
               "u8u8": QuantizeOptions(weights="uint8")}
    result = one_run.record("int8_kernels", argv, model=info.name, cpu=select.cpu_description(),
                            calibration={"crops": len(crops), "size": int(crops.shape[1]),
                                         "from": [str(p.relative_to(ROOT)) for p in SOURCES]},
                            limit=select.MAX_KERNEL_DISAGREEMENT, recipes={})
    x = crops[:8]
    with tempfile.TemporaryDirectory(prefix="sc-int8-") as tmp:
        tmp = Path(tmp)
        src = float32_graph(info.file("colorizer.onnx"), tmp / "colorizer-fp32.onnx")
        for name, opts in recipes.items():
            bundle = tmp / name
            bundle.mkdir()
            for f in ("model.json", "colorizer.onnx"):
                shutil.copyfile(info.path / f, bundle / f)
            quantize_graph(src, bundle / "colorizer-int8.onnx", feeds, options=opts, exclude=opts.exclude)
            fp32 = load_engine(bundle, "onnx", device="cpu")
            fused = OnnxEngine(fp32.info, device="cpu", colorizer_file="colorizer-int8.onnx")
            written = OnnxEngine(fp32.info, device="cpu", colorizer_file="colorizer-int8.onnx", as_written=True)
            rounds = [(one_run.images_per_s(fused, x, calls), one_run.images_per_s(fp32, x, calls)) for _ in range(2)]
            int8_ips, fp32_ips = max(r[0] for r in rounds), max(r[1] for r in rounds)
            result["recipes"][name] = {
                "activations": opts.activations, "weights": opts.weights, "reduce_range": opts.reduce_range,
                "disagreement_fused_kernels": round(select.probe_disagreement(fp32.info, fused), 4),
                "disagreement_as_written": round(select.probe_disagreement(fp32.info, written), 4),
                "int8_images_per_s": round(int8_ips, 2), "fp32_images_per_s": round(fp32_ips, 2),
                "int8_over_fp32": round(int8_ips / fp32_ips, 3)}
            log.info("%s: %s", name, result["recipes"][name])
            for e in (fp32, fused, written):
                e.close()
    one_run.write(args.out, result, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
