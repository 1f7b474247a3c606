"""The edge-aware upsampling of the U-Net's quarter-size a*b* grid (streamcolor.engines.guided)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from streamcolor.engines import load_engine
from streamcolor.engines.base import ModelInfo
from streamcolor.engines.guided import GuidedUpsampling, guided_upsample, refine_batch

SPEC = GuidedUpsampling(radius=2, eps=1e-3)


def _step_scene(size: int = 128, grid: int = 32, edge: int = 50):
    """L dark left of column ``edge`` and bright right of it; the true a*b* a colour step at that
    same edge; the model's grid the true a*b* averaged onto a quarter-size grid (the colour
    smeared over the cells that straddle the edge, as a coarse prediction is)."""
    l = np.where(np.arange(size)[None, :] < edge, -0.6, 0.5).astype(np.float32).repeat(size, 0)
    truth = np.zeros((size, size, 2), np.float32)
    truth[:, :edge] = (0.4, 0.2)
    truth[:, edge:] = (-0.3, -0.1)
    coarse = cv2.resize(truth, (grid, grid), interpolation=cv2.INTER_AREA)
    return l, truth, coarse


def test_colour_follows_the_lightness_edge():
    l, truth, coarse = _step_scene()
    bilinear = cv2.resize(coarse, l.shape[::-1], interpolation=cv2.INTER_LINEAR)
    guided = guided_upsample(l, coarse, SPEC)
    err_bilinear = np.abs(bilinear - truth).mean()
    err_guided = np.abs(guided - truth).mean()
    assert err_guided < 0.25 * err_bilinear, (err_guided, err_bilinear)
    # right next to the edge the colour is the side's own, not a blend of the two
    np.testing.assert_allclose(guided[:, 49], truth[:, 49], atol=0.02)
    np.testing.assert_allclose(guided[:, 50], truth[:, 50], atol=0.02)


def test_a_thin_line_beside_a_colour_edge_does_not_overshoot():
    """A linear fit of a*b* on L, applied to a 1-pixel line of other lightness next to a colour
    edge, gave colours far outside anything the model predicted there (a* -0.61 from a grid in
    [-0.30, 0.40]); each pixel now stays within its window's range of the grid."""
    l, truth, coarse = _step_scene()
    l[:, 56] = 0.9  # a bright line six pixels past the edge
    l[:, 44] = -0.95  # a dark one before it
    out = guided_upsample(l, coarse, SPEC)
    for c in range(2):
        assert coarse[..., c].min() - 1e-6 <= out[..., c].min()
        assert out[..., c].max() <= coarse[..., c].max() + 1e-6


def test_flat_colour_and_flat_lightness_stay_as_they_are():
    rng = np.random.default_rng(0)
    l = rng.uniform(-1, 1, (64, 96)).astype(np.float32)
    flat = np.full((16, 24, 2), (0.25, -0.5), np.float32)
    np.testing.assert_allclose(guided_upsample(l, flat, SPEC), np.broadcast_to(flat[0, 0], (64, 96, 2)), atol=1e-5)
    # no lightness edge at all: the result is a smoothed bilinear upsampling, no new structure
    ab = rng.uniform(-0.5, 0.5, (16, 24, 2)).astype(np.float32)
    out = guided_upsample(np.zeros((64, 96), np.float32), ab, SPEC)
    assert out.std() < ab.std()
    assert abs(float(out.mean()) - float(ab.mean())) < 0.02


def test_shapes_range_and_batch():
    rng = np.random.default_rng(1)
    l = rng.uniform(-1, 1, (2, 64, 96, 1)).astype(np.float32)
    ab = rng.uniform(-1, 1, (2, 16, 24, 2)).astype(np.float32)
    out = refine_batch(l, ab, SPEC)
    assert out.shape == (2, 64, 96, 2) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[1], guided_upsample(l[1], ab[1], SPEC))
    assert refine_batch(l, ab, None) is ab  # a model without it: its grid, untouched
    same = guided_upsample(l[0], rng.uniform(-1, 1, (64, 96, 2)).astype(np.float32), SPEC)
    assert same.shape == (64, 96, 2)  # a grid at L's size: the guided filter proper
    # the product's reused work arrays give the same result as fresh ones, call after call
    from streamcolor.colorize import Scratch

    scratch = Scratch()
    for _ in range(2):
        np.testing.assert_array_equal(refine_batch(l, ab, SPEC, work=scratch.take), out)
    with pytest.raises(ValueError, match="out must be"):
        guided_upsample(l[0], ab[0], SPEC, out=np.empty((64, 96, 2), np.float64))
    with pytest.raises(ValueError, match="larger than"):
        guided_upsample(np.zeros((8, 8), np.float32), ab[0], SPEC)
    with pytest.raises(ValueError, match=r"\(h, w, 2\)"):
        guided_upsample(l[0], ab[0, ..., :1], SPEC)


@pytest.mark.parametrize("kw", [{"radius": 0}, {"radius": True}, {"radius": 1.5}, {"eps": 0.0},
                                {"eps": math.nan}, {"eps": -1e-3}])
def test_bad_parameters_are_refused(kw):
    with pytest.raises(ValueError, match="guided upsampling"):
        GuidedUpsampling(**kw)


def test_model_bundle_names_it(tmp_path):
    default = load_engine("default")
    assert default.info.guided == GuidedUpsampling(radius=2, eps=1e-3)
    assert load_engine("seed").info.guided is None  # its grid is its input size: nothing to bring up
    # the manifest round trip keeps it; a bad entry is a clear error
    (tmp_path / "model.json").write_text(json.dumps(default.info.dump()))
    assert ModelInfo.load(tmp_path).guided == default.info.guided
    bad = {**default.info.dump(), "guided_upsampling": {"radius": -3}}
    (tmp_path / "model.json").write_text(json.dumps(bad))
    with pytest.raises(Exception, match="guided upsampling radius"):
        ModelInfo.load(tmp_path)


def test_engine_refine_brings_the_grid_to_the_input_size():
    from streamcolor.colorize import ColorOptions, predict, prepare_l

    engine = load_engine("default")
    l = np.linspace(-1, 1, 96 * 128, dtype=np.float32).reshape(1, 96, 128, 1)
    grid = engine.predict(l)
    assert grid.shape == (1, 24, 32, 2)
    refined = engine.refine(l, grid)
    assert refined.shape == (1, 96, 128, 2)
    np.testing.assert_array_equal(refined[0], guided_upsample(l[0], grid[0], engine.info.guided))
    # the product's predict step hands out the refined a*b* at the render size
    prep = prepare_l(np.tile(np.linspace(0, 100, 200, dtype=np.float32), (150, 1)),
                     ColorOptions().for_engine(engine))
    (ab,) = predict([prep], engine)
    assert ab.shape[:2] == prep.net_in.shape[:2]


def test_video_frames_go_through_it(tmp_path):
    """A video's frames get the same edge-aware upsampling as photos (after the stabilizer):
    with the model's guided upsampling switched off, the frames come out otherwise."""
    import dataclasses

    import av

    from streamcolor.video import colorize_video
    from streamcolor.video.clips import make_clip

    src = make_clip(tmp_path / "clip.mp4", 160, 96, 6)
    outs = {}
    for name, guided in (("on", True), ("off", False)):
        engine = load_engine("default")
        if not guided:
            engine.info = dataclasses.replace(engine.info, guided=None)
        dst = colorize_video(src, tmp_path / f"{name}.mp4", engine=engine, quality=0)
        with av.open(str(dst)) as c:
            outs[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)
    assert outs["on"].shape == outs["off"].shape == (6, 96, 160, 3)
    assert np.abs(outs["on"] - outs["off"]).max() > 3
