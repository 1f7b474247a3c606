"""Lab colour core against published reference values, plus round trips."""

import numpy as np
import pytest

from streamcolor.engines import lab

# sRGB (8-bit) -> CIE L*a*b* (D65), reference values from Bruce Lindbloom's
# calculator / colormine.org (2 degree observer).
REFERENCE = [
    ((255, 0, 0), (53.2408, 80.0925, 67.2032)),
    ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
    ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((128, 128, 128), (53.5850, 0.0, 0.0)),
    ((255, 255, 0), (97.1393, -21.5537, 94.4780)),
    ((100, 149, 237), (61.9259, 9.3373, -49.3012)),  # cornflower blue
]


@pytest.mark.parametrize("rgb,expected", REFERENCE)
def test_rgb_to_lab_matches_reference(rgb, expected):
    got = lab.rgb_to_lab(np.array([[rgb]], dtype=np.uint8))[0, 0]
    np.testing.assert_allclose(got, expected, atol=0.2)  # OpenCV's spline sRGB curve


def test_gray_to_l_matches_rgb_path():
    g = np.arange(256, dtype=np.uint8)[None]
    via_rgb = lab.rgb_to_l(np.repeat(g[..., None], 3, axis=-1))
    np.testing.assert_array_equal(lab.gray_to_l(g), via_rgb)


def test_round_trip_batch():
    rng = np.random.default_rng(0)
    rgb = rng.random((3, 17, 23, 3), dtype=np.float32)
    back = lab.lab_to_rgb(lab.rgb_to_lab(rgb))
    assert back.shape == rgb.shape
    np.testing.assert_allclose(back, rgb, atol=5e-3)


def test_scaling_is_method_md():
    assert lab.scale_l(np.array([0.0, 50.0, 100.0])).tolist() == [-1.0, 0.0, 1.0]
    assert lab.scale_ab(np.array([-128.0, 0.0, 64.0])).tolist() == [-1.0, 0.0, 0.5]
    x = np.linspace(0, 100, 11, dtype=np.float32)
    np.testing.assert_allclose(lab.unscale_l(lab.scale_l(x)), x, atol=1e-5)
    np.testing.assert_allclose(lab.unscale_ab(lab.scale_ab(x)), x, atol=1e-5)


@pytest.mark.parametrize("hw,size,expected", [((480, 640), 256, (192, 256)), ((1080, 1920), 256, (144, 256)),
                                              ((301, 451), 224, (152, 224)), ((10, 10), 8, (8, 8))])
def test_render_shape_keeps_aspect_multiple_of_8(hw, size, expected):
    got = lab.render_shape(*hw, size)
    assert got == expected and got[0] % 8 == 0 and got[1] % 8 == 0


def test_letterbox_pads_with_mid_gray():
    x = np.ones((10, 20), dtype=np.float32)
    box = lab.letterbox(x, 8)
    assert box.shape == (8, 8)
    assert box[0, 0] == 0.0 and box[4, 4] == pytest.approx(1.0)


def test_colorfulness_gray_is_zero_and_colour_positive():
    gray = np.full((8, 8, 3), 128, np.uint8)
    assert lab.colorfulness(gray) == 0.0
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:4, :, 0] = 255
    colour[4:, :, 2] = 255
    assert lab.colorfulness(colour) > 50
