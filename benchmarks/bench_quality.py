"""Colour quality of the shipped model on held-out photos, against the gray baseline.

``streamcolor.trainer.evaluate`` on the ``val`` split of ``data/photos`` (its
``manifest.json``): a*b* MSE (the training loss, [-1, 1] scaling), PSNR of
the RGB result and Hasler-Suesstrunk colorfulness, each next to the gray
baseline (a*b* = 0) and the truth, at the model's own render size.  The
photos are not in git: without them (CI) the test is skipped.  The bundled
sample is black and white (no colour truth), so it cannot stand in.

Full mode: every held-out photo.  Smoke mode: the first three.  The flicker
figures (with and without stabilization) are in ``bench_video.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.conftest import FULL

PHOTOS = Path(os.environ.get("STREAMCOLOR_PHOTOS", Path(__file__).resolve().parent.parent / "data" / "photos"))
MAX_IMAGES = None if FULL else 3


@pytest.fixture(scope="module")
def held_out() -> list[Path]:
    if not (PHOTOS / "manifest.json").is_file():
        pytest.skip(f"no held-out photos: {PHOTOS}/manifest.json is absent (data/ is not in git)")
    from streamcolor.trainer.data import list_photos
    from streamcolor.trainer.quantize import split_photos

    photos, _ = list_photos([PHOTOS])
    val = [p.path for p in split_photos(photos, "val")]
    if not val:
        pytest.skip(f"{PHOTOS}: no photo in the val split")
    return val


def test_quality_on_held_out_photos(benchmark, engine, held_out):
    """a*b* MSE, PSNR and colorfulness of the model and of the gray baseline."""
    from streamcolor.colorize import model_options
    from streamcolor.trainer.evaluate import EvalOptions, evaluate

    size = model_options(engine).render_size
    opts = EvalOptions(size=size, max_images=MAX_IMAGES)
    report = benchmark.pedantic(evaluate, args=(engine, held_out), kwargs={"options": opts}, rounds=1, iterations=1)
    m, g, t = report.model, report.gray, report.truth
    benchmark.group = "quality"
    benchmark.extra_info.update(
        engine=report.engine, render_size=size, photos=len(held_out), images=report.images,
        skipped=report.skipped, model=m, gray=g, truth=t,
        mse_ab_over_gray=round(m["mse_ab"] / g["mse_ab"], 4),
        psnr_gain_db=round(m["psnr"] - g["psnr"], 3),
        colorfulness_ratio=round(report.colorfulness_ratio, 4),
        gray_colorfulness_ratio=round(g["colorfulness"] / t["colorfulness"], 4) if t["colorfulness"] else None)
    assert report.images > 0
    if FULL:  # the trained model must beat the gray baseline on held-out photos
        assert m["mse_ab"] < g["mse_ab"]
