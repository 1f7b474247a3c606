"""Benchmarks run in two modes.

* Smoke (default, inside the normal test suite): tiny sizes, each benchmark
  once (pyproject sets ``--benchmark-disable``), so they never rot.
* Full: ``STREAMCOLOR_BENCH_FULL=1 python -m pytest benchmarks --benchmark-enable
  --benchmark-json benchmarks/results/<name>.json``; real sizes and repeats.

Figures that are ratios (pipeline vs floor, int8 vs fp32...) are measured in
the same run and stored in each benchmark's ``extra_info``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_photo

FULL = os.environ.get("STREAMCOLOR_BENCH_FULL") == "1"


@pytest.fixture(scope="session")
def full() -> bool:
    return FULL


@pytest.fixture(scope="session")
def engine():
    """The shipped default model on ONNX Runtime float32 (CPU), loaded once."""
    from streamcolor.engines import load_engine

    eng = load_engine("default", "onnx", device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def seed_engine():
    """The two-graph seed model on ONNX Runtime float32 (CPU): the one model whose
    classifier runs separately, so video can reuse its embedding."""
    from streamcolor.engines import load_engine

    eng = load_engine("seed", "onnx", device="cpu")
    yield eng
    eng.close()


def write_gray_photos(root: Path, n: int, height: int, width: int, *, subfolders: int = 1) -> Path:
    """``n`` gray JPEGs of ``height`` x ``width`` with film-like grain under ``root``,
    spread over ``roll0/``, ``roll1/``... when ``subfolders`` > 1."""
    rng = np.random.default_rng(0)
    for i in range(n):
        gray = make_photo(height, width, seed=i).mean(axis=-1)
        gray = np.clip(gray + rng.normal(0, 6, gray.shape), 0, 255).astype(np.uint8)
        folder = root / f"roll{i % subfolders}" if subfolders > 1 else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gray).save(folder / f"frame{i:03d}.jpg", quality=90)
    return root


def codec_one(path: Path, out_dir: Path, quality: int) -> None:
    """Decode + encode only, the bound's other half in pipeline_bound, batch_scaling and
    gil_profile: the photo read and written as a batch job writes it, a gray photo's JPEG from
    Y'CbCr planes (here its own luma and neutral chroma: no conversion from RGB), any other as
    an RGB image.  A module-level function, so that worker processes can run it too."""
    from streamcolor import image_io

    d = image_io.read_image(path)
    if d.pixels.ndim == 2 and d.pixels.dtype == np.uint8:
        gray = np.full_like(d.pixels, 128)
        image_io.write_atomic(out_dir / path.name, image_io.encode_jpeg_planes(d.pixels, gray, gray, info=d.info,
                                                                               quality=quality))
    else:
        image_io.write_image(out_dir / path.name, d.pixels, info=d.info, quality=quality)
