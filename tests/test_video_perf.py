"""The shortcuts taken for speed give the same results as the long way.

* a gray video frame's L* from its luma plane and a table equals the L* of its
  RGB conversion (limited and full range), and colour frames are not taken for gray;
* a gray image's L* from the table of every code equals the per-pixel conversion;
* the gamut check that converts back only the pixels at the gamut's edge flags
  the same pixels as converting back every pixel, on composed images.
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

import concurrent.futures

from streamcolor import colorize
from streamcolor.colorize import Scratch, compose, pixels_to_l, to_dtype
from streamcolor.engines import lab
from streamcolor.video.lightness import gray_luma, gray_lut, rgb_kwargs


def _frame(rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "yuv444p"])
def test_gray_frame_lightness_from_luma_equals_the_rgb_path(pix_fmt):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    gray[0, :] = 0
    gray[1, :] = 255  # the extremes of both ranges
    frame = _frame(np.repeat(gray[..., None], 3, -1), pix_fmt)
    luma = gray_luma(frame)
    assert luma is not None and luma.shape == (48, 64) and luma.dtype == np.uint8
    kw = rgb_kwargs(frame)
    fast = cv2.LUT(luma, gray_lut(frame.format.name, kw.get("src_color_range")))
    slow = pixels_to_l(frame.to_ndarray(**kw))
    # FFmpeg's full-range converter stores this gray's chroma as 127 or 128: read back through RGB
    # that is a faint tint worth up to 2 levels; the luma path reads the gray it is.  Both within
    # the 0.5 L* the output keeps anyway.
    assert np.abs(fast - slow).max() < 0.4


def test_colour_frames_and_other_formats_take_the_rgb_path():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert gray_luma(_frame(rgb, "yuv420p")) is None
    gray = np.repeat(rng.integers(0, 256, (32, 48, 1), dtype=np.uint8), 3, -1)
    assert gray_luma(_frame(gray, "rgb24")) is None  # not planar YUV
    assert gray_luma(_frame(gray, "yuv420p10le")) is None  # more than 8 bits
    tinted = _frame(gray, "yuv420p")
    u = np.frombuffer(tinted.planes[1], np.uint8).reshape(tinted.planes[1].height, -1).copy()
    u[0, 0] = 140  # one chroma sample well off neutral: a colour frame
    tinted.planes[1].update(u.tobytes())
    assert gray_luma(tinted) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_image_lightness_table_equals_per_pixel_conversion(dtype):
    rng = np.random.default_rng(2)
    gray = rng.integers(0, np.iinfo(dtype).max + 1, (3, 40, 50), dtype=dtype)
    slow = lab.rgb_to_l(np.repeat((gray.astype(np.float32) / np.iinfo(dtype).max)[..., None], 3, -1))
    assert np.abs(lab.gray_to_l(gray) - slow).max() == 0.0
    assert np.abs(lab.gray_to_l(gray[0]) - slow[0]).max() == 0.0  # 2-D: cv2.LUT


#: The gamut check's tolerances, as streamcolor.colorize has them.
GAMUT_EPS, L_TOLERANCE, GAMUT_STEPS = 4e-4, 0.5, 5


def _compose_the_long_way(l_full: np.ndarray, ab_full: np.ndarray) -> np.ndarray:
    """compose() as it was before the speed-ups: NumPy channel writes, every pixel converted back."""
    lab_img = np.empty(l_full.shape + (3,), dtype=np.float32)
    lab_img[..., 0] = l_full
    lab_img[..., 1:] = ab_full
    rgb = cv2.cvtColor(lab_img, cv2.COLOR_Lab2RGB)

    def off(rgb, l_target):
        outside = (rgb.min(axis=-1) < -GAMUT_EPS) | (rgb.max(axis=-1) > 1.0 + GAMUT_EPS)
        l_back = cv2.cvtColor(np.clip(rgb, 0.0, 1.0), cv2.COLOR_RGB2Lab)[..., 0]
        return outside | (np.abs(l_back - l_target) > L_TOLERANCE)

    idx = np.flatnonzero(off(rgb, l_full))
    flat_lab, flat_rgb = lab_img.reshape(-1, 3), rgb.reshape(-1, 3)
    for step in range(GAMUT_STEPS + 1):
        if idx.size == 0:
            break
        flat_lab[idx, 1:] *= 0.5 if step < GAMUT_STEPS else 0.0
        fixed = cv2.cvtColor(flat_lab[idx][None], cv2.COLOR_Lab2RGB)[0]
        flat_rgb[idx] = fixed
        idx = idx[off(fixed[None], flat_lab[idx, 0][None])[0]]
    return np.clip(rgb, 0.0, 1.0)


def test_compose_gives_what_the_long_way_gives():
    """The edge-only gamut check and the OpenCV passes change no output pixel."""
    rng = np.random.default_rng(3)
    h, w = 120, 160
    l_full = cv2.resize(rng.uniform(0, 100, (12, 16)).astype(np.float32), (w, h))
    l_full[:10] = 0.5  # near black: any chroma falls outside the gamut
    for spread in (10.0, 40.0, 90.0):  # mild to wild colour
        ab = cv2.resize(rng.normal(0, spread, (6, 8, 2)).astype(np.float32), (w, h))
        expected = _compose_the_long_way(l_full, ab)
        assert np.array_equal(compose(l_full, ab), expected), spread


def test_a_reused_scratch_gives_what_fresh_arrays_give():
    """Strips of several sizes through one Scratch (its arrays handed out again, larger
    and smaller): each the same as composed on its own, out-of-gamut pixels included,
    and uint8 written into the output's rows gives what a fresh conversion gives."""
    rng = np.random.default_rng(5)
    scratch = Scratch()
    for h, w in ((40, 50), (90, 70), (7, 50), (40, 50)):
        l_full = rng.uniform(0, 100, (h, w)).astype(np.float32)
        l_full[: h // 4] = 0.3  # near black: the gamut fit runs
        ab = rng.normal(0, 60, (h, w, 2)).astype(np.float32)
        want = compose(l_full, ab)
        got = compose(l_full, ab, scratch=scratch)
        assert np.array_equal(got, want)
        out = np.zeros((h + 4, w, 3), np.uint8)
        assert to_dtype(got, np.uint8, out=out[2:h + 2]) is not None
        assert np.array_equal(out[2:h + 2], to_dtype(want, np.uint8)) and not out[:2].any() and not out[h + 2:].any()
    lab_big = scratch.take("lab", (90, 70, 3))
    assert np.shares_memory(scratch.take("lab", (7, 50, 3)), lab_big)  # the same memory, not a new array


def _keeping(fn, *args):
    """``fn(*args)`` on a thread that keeps its work arrays, as a job's threads do."""
    with concurrent.futures.ThreadPoolExecutor(1, initializer=colorize.keep_work_arrays) as pool:
        return pool.submit(fn, *args).result()


def test_only_a_job_thread_keeps_its_work_arrays_and_only_up_to_the_cap():
    # a thread that did not ask (a server's, a caller's) gets a new Scratch each time: it keeps nothing
    assert colorize.thread_scratch() is not colorize.thread_scratch()

    def kept():
        colorize.keep_work_arrays()  # (twice: the same arrays kept)
        return colorize.thread_scratch(), colorize.thread_scratch()

    first, again = _keeping(kept)
    assert first is again and first.keep_bytes == colorize.SCRATCH_KEEP_BYTES
    with concurrent.futures.ThreadPoolExecutor(2, initializer=colorize.keep_work_arrays) as pool:
        others = list(pool.map(lambda _: colorize.thread_scratch(), range(8)))
    assert len({id(o) for o in others}) <= 2 and first not in others  # one per thread
    capped = Scratch(keep_bytes=1000)
    small = capped.take("a", (10, 10))  # 400 bytes: kept
    assert np.shares_memory(capped.take("a", (5, 10)), small)
    big = capped.take("b", (10, 20))  # 800 more: over 1000 in all, so fresh each time and not kept
    assert not np.shares_memory(capped.take("b", (10, 20)), big)
    assert np.shares_memory(capped.take("c", (10, 15)), capped.take("c", (10, 15)))  # 600: fits beside "a"
    assert capped.nbytes == 1000


def _photo(rng, h, w, dtype=np.uint8):
    top = np.iinfo(dtype).max
    gray = cv2.resize(rng.integers(0, top + 1, (h // 8 + 1, w // 8 + 1)).astype(np.float32), (w, h))
    gray[: h // 5] = 2 * top // 255  # near black: the gamut fit runs
    return gray.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_results_never_live_in_the_thread_scratch(dtype):
    """Prepared inputs and rendered outputs stay as they were while the same thread
    prepares and renders other images of other sizes through its work arrays."""
    _keeping(_prepare_and_render_several, dtype)


def _prepare_and_render_several(dtype):
    from streamcolor.image_io import Decoded

    assert colorize.thread_scratch() is colorize.thread_scratch()
    rng = np.random.default_rng(7)
    options = colorize.ColorOptions(render_size=64, saturation=1.5, size_multiple=8)
    shapes = [(96, 128), (64, 64), (300, 200), (96, 128)]  # (64, 64): the render size itself, not resized
    preps, outs = [], []
    for h, w in shapes:
        pixels = _photo(rng, h, w, dtype)
        prep = colorize.prepare(Decoded(pixels=pixels), options)
        ab = rng.uniform(-0.6, 0.6, (*prep.net_in.shape[:2], 2)).astype(np.float32)
        out = colorize.render_prepared(prep, ab, saturation=1.5)
        preps.append((prep, prep.net_in.copy(), ab))
        outs.append((out, out.copy()))
    for (prep, net_in, ab), (out, copy) in zip(preps, outs):
        assert np.array_equal(prep.net_in, net_in) and np.array_equal(out, copy)
        fresh = colorize.to_dtype(compose(pixels_to_l(prep.source), colorize.upsample_ab(ab, *prep.shape, 1.5)),
                                  prep.dtype)
        assert np.array_equal(out, fresh)


def test_a_render_written_into_a_given_array_equals_a_fresh_one():
    from streamcolor.image_io import Decoded

    rng = np.random.default_rng(9)
    options = colorize.ColorOptions(render_size=64, saturation=1.0, size_multiple=8)
    prep = colorize.prepare(Decoded(pixels=_photo(rng, 90, 120)), options)
    ab = rng.uniform(-0.6, 0.6, (*prep.net_in.shape[:2], 2)).astype(np.float32)
    out = np.zeros((90, 120, 3), np.uint8)
    assert colorize.render_prepared(prep, ab, out=out) is out
    assert np.array_equal(out, colorize.render_prepared(prep, ab))
    with pytest.raises(ValueError, match="out of shape"):
        colorize.render_prepared(prep, ab, out=np.zeros((90, 120, 3), np.uint16))


def test_renders_on_many_threads_give_the_serial_results():
    rng = np.random.default_rng(8)
    jobs = []
    for i in range(12):
        h, w = 60 + 8 * i, 90 - 4 * i
        l_full = pixels_to_l(_photo(rng, h, w))
        jobs.append((l_full, rng.uniform(-0.7, 0.7, (8, 8, 2)).astype(np.float32)))
    serial = [colorize.render(l, ab, saturation=2.0, dtype=np.uint8, strip_pixels=2000) for l, ab in jobs]
    with concurrent.futures.ThreadPoolExecutor(4, initializer=colorize.keep_work_arrays) as pool:
        for _ in range(3):
            threaded = list(pool.map(lambda j: colorize.render(j[0], j[1], saturation=2.0, dtype=np.uint8,
                                                               strip_pixels=2000), jobs))
            assert all(np.array_equal(a, b) for a, b in zip(serial, threaded))


def test_composed_output_keeps_lightness_and_rounds_like_before():
    rng = np.random.default_rng(4)
    l_full = rng.uniform(0, 100, (64, 80)).astype(np.float32)
    ab = rng.normal(0, 50, (64, 80, 2)).astype(np.float32)
    rgb = compose(l_full, ab)
    l_back = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 0]
    assert np.abs(l_back - l_full).max() < 0.6
    u8 = to_dtype(rgb, np.uint8)
    assert np.abs(u8.astype(int) - (rgb * 255.0 + 0.5).astype(np.uint8)).max() <= 1
