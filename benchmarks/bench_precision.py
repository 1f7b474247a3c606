"""Precision variants side by side: images/s of fp32 and int8 (fp16 with a GPU),
their ratio, and the a*b* MSE drift on held-out photos, all from one run.

Full mode (``STREAMCOLOR_BENCH_FULL=1``): the shipped default model (or the
bundle in ``STREAMCOLOR_BENCH_MODEL``), render sizes 224 and 256, batches 1
and 16; held-out photos = the val split of ``data/photos``.  A bundle without
an int8 variant is quantized first (a copy, in a temporary folder: 300 crops).
Smoke mode: a tiny hand-made bundle and a few generated photos.

Each benchmark times the int8 engine (pytest-benchmark's own figures); the
ratios come from :func:`streamcolor.engines.select.compare_engines`, which times the
engines taking turns in the same test, so load from other processes hits both
alike.  ``extra_info`` holds, per precision: images/s, ratio to fp32, the
a*b* MSE against the truth, its relative drift from fp32 and the MSE between
the variant's and fp32's outputs (at the benchmark's render size).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import FULL
from streamcolor.engines import load_engine, resolve_model
from streamcolor.engines.select import compare_engines, cpu_description, cuda_available, variants

RENDER = [224, 256] if FULL else [32]
BATCH = [1, 16] if FULL else [1, 2]
#: Timed rounds per engine (the median is kept): small batches are quick and noisier.
ROUNDS = {1: 15, 16: 5} if FULL else {}
ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "data" / "photos"


def _shown(path: Path) -> str:
    """A bundle path as results files record it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
#: Why there is no bf16 row (streamcolor/engines/select.py, and the issue #10 notes).
BF16 = ("unavailable: ONNX Runtime's CPU provider has no bfloat16 Conv/MatMul kernels on x86 (NOT_IMPLEMENTED), "
        "and its only bf16 switch, mlas.enable_gemm_fastmath_arm64_bfloat16, is ARM64-only")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(bundle folder, held-out photo paths)."""
    pytest.importorskip("onnx")
    from streamcolor.trainer.data import list_photos
    from streamcolor.trainer.quantize import QuantizeOptions, quantize_bundle, split_photos

    tmp = tmp_path_factory.mktemp("precision")
    if FULL:
        info = resolve_model(os.environ.get("STREAMCOLOR_BENCH_MODEL", "default"))
        held_out: list[Path] = []
        if (PHOTOS / "manifest.json").is_file():  # data/ is not in git: without it, speed figures only
            photos, _ = list_photos([PHOTOS])
            held_out = [p.path for p in split_photos(photos, "val")]
        if "int8" in variants(info):
            return info.path, held_out
        if not held_out:
            pytest.skip(f"{info.name} has no int8 variant and {PHOTOS} has no photos to calibrate one")
        bundle = tmp / info.path.name
        bundle.mkdir()
        for f in ("model.json", "colorizer.onnx", "extractor.onnx"):
            shutil.copyfile(info.path / f, bundle / f)
        quantize_bundle(bundle, PHOTOS, options=QuantizeOptions(speed=False))
        return bundle, held_out
    from tests.test_precision import photo_folder, tiny_bundle

    photos = photo_folder(tmp / "photos")
    bundle = tiny_bundle(tmp / "bundle")
    quantize_bundle(bundle, photos, options=QuantizeOptions(n=8, size=32, batch=4, eval_size=32, speed=False))
    return bundle, sorted(photos.glob("p[6-8].png"))


@pytest.fixture(scope="module")
def quality(setup):
    """render size -> precision -> quality figures on the held-out photos."""
    from streamcolor.trainer.quantize import measure_quality

    bundle, held_out = setup
    recs = variants(resolve_model(bundle))
    graphs = {p: (r["colorizer"], r["extractor"]) for p, r in recs.items() if r.get("device") == "cpu"}
    cache: dict[int, dict] = {}

    def at(render: int) -> dict:
        if not held_out:
            return {}
        if render not in cache:
            cache[render] = measure_quality(bundle, graphs, held_out, size=render)
        return cache[render]

    return at


@pytest.mark.parametrize("render", RENDER)
@pytest.mark.parametrize("batch", BATCH)
def test_precision_images_per_second(benchmark, setup, quality, render, batch):
    bundle, _ = setup
    device = "cuda" if cuda_available() else "cpu"
    rounds = ROUNDS.get(batch, 5 if FULL else 1)
    rows = compare_engines(bundle, sizes=[render], batches=[batch], device=device, rounds=rounds)
    q = quality(render)
    per = {}
    for r in rows:
        p = r["precision"]
        fig = {"engine": r["engine"], "images_per_s": round(r["images_per_s"], 3),
               "ratio_to_fp32": round(r["ratio_to_fp32"], 3), "auto": r["auto"], "guard": r["guard"]}
        if p in q:
            fig.update(mse_ab=q[p]["mse_variant"], mse_rel=q[p]["mse_rel"], mse_vs_fp32=q[p]["mse_vs_fp32"],
                       held_out_images=q[p]["images"])
        elif p == "fp32" and q:
            fig.update(mse_ab=next(iter(q.values()))["mse_fp32"], mse_rel=0.0, mse_vs_fp32=0.0)
        per[p] = fig
    benchmark.group = f"precision render={render} batch={batch}"
    benchmark.extra_info.update(render=render, batch=batch, device=device, cpu=cpu_description(), bf16=BF16,
                                model=_shown(bundle), rounds=rounds, load_average=os.getloadavg()[0], **per)

    subject = "int8" if "int8" in per else "fp32"
    eng = load_engine(bundle, "onnx", precision=subject, device="cpu" if subject == "int8" else device)
    l = np.random.default_rng(0).uniform(-1, 1, (batch, render, render, 1)).astype(np.float32)
    eng.predict(l)
    out = benchmark.pedantic(eng.predict, args=(l,), rounds=rounds, iterations=1)
    eng.close()
    assert out.shape[0] == batch and out.shape[-1] == 2  # on the model's output grid (the U-Net's: a quarter)
    assert per["fp32"]["ratio_to_fp32"] == 1.0
    if benchmark.stats:
        benchmark.extra_info[f"{subject}_benchmark_images_per_s"] = batch / benchmark.stats.stats.mean
