"""Shared fixtures: the shipped engine and small real images made on the fly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session", autouse=True)
def kernel_checks(tmp_path_factory):
    """One cache of int8 kernel checks for the whole run, shared with the CLI
    subprocesses (STREAMCOLOR_CACHE) and measured up front for the shipped
    models: tests then see what a user sees after the first run on a machine
    (the warning about untrusted int8 kernels, where this CPU has them, is
    given once, not on every command)."""
    import os

    import streamcolor.engines.select as sel
    from streamcolor.engines import available_models, load_engine

    cache = tmp_path_factory.mktemp("streamcolor-cache")
    old_env, old_dir = os.environ.get("STREAMCOLOR_CACHE"), sel.CACHE_DIR
    os.environ["STREAMCOLOR_CACHE"], sel.CACHE_DIR = str(cache), cache
    for name in available_models():
        if name != "default":
            load_engine(name, device="cpu").close()
    yield cache
    sel.CACHE_DIR = old_dir
    if old_env is None:
        os.environ.pop("STREAMCOLOR_CACHE", None)
    else:
        os.environ["STREAMCOLOR_CACHE"] = old_env


@pytest.fixture(scope="session")
def engine():
    """The shipped default model on ONNX Runtime (CPU), loaded once."""
    from streamcolor.engines import load_engine

    eng = load_engine("default", "onnx", device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def seed_engine():
    """The shipped two-graph seed model (method.md), for what only it has: a
    separate classifier whose embedding video reuses within a scene."""
    from streamcolor.engines import load_engine

    eng = load_engine("seed", "onnx", device="cpu")
    yield eng
    eng.close()


def odd_sized_video(path: Path) -> Path:
    """Three 33x21 frames in FFV1 (yuv444p): a size yuv420p cannot hold, which the video
    pipeline pads, with a warning that names the video."""
    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=12)
        vs.width, vs.height, vs.pix_fmt = 33, 21, "yuv444p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((21, 33, 3), 40 * i + 30, np.uint8), format="rgb24")
            out.mux(vs.encode(frame.reformat(format="yuv444p")))
        out.mux(vs.encode(None))
    return path


def make_photo(h: int = 120, w: int = 170, seed: int = 0) -> np.ndarray:
    """A colourful uint8 RGB test picture: smooth gradients, blobs and edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin((x + y) / 9.0)], axis=-1)
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 30)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.random(3)
    return (img * 255).astype(np.uint8)


@pytest.fixture
def photo() -> np.ndarray:
    return make_photo()


def png_bytes(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **save)
    return buf.getvalue()


@pytest.fixture
def photo_file(tmp_path: Path, photo: np.ndarray) -> Path:
    p = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(p, quality=95)
    return p
