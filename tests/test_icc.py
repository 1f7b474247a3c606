"""Colour management: pixels are read as sRGB through their file's ICC profile (streamcolor.icc).

Each expected value here is computed from the profile's own definition (a power law, a matrix), not
by LittleCMS, which the code under test uses."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from streamcolor import icc, image_io
from streamcolor.archive import BatchOptions, colorize_archive
from streamcolor.colorize import colorize_image
from tests.conftest import make_photo
from tests.icc_profiles import gray_profile, rgb_profile

#: Adobe RGB (1998) linear -> XYZ (D65), and XYZ (D65) -> linear sRGB.
ADOBE_TO_XYZ = np.array([[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741],
                         [0.0270343, 0.0706872, 0.9911085]])
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255.0


def gamma18_to_srgb(codes: np.ndarray, top: float = 255.0) -> np.ndarray:
    """sRGB codes (0-255) of gray codes under a "Gray Gamma 1.8" profile."""
    return srgb_encode((np.asarray(codes, np.float64) / top) ** 1.8)


def adobe_to_srgb(rgb: np.ndarray) -> np.ndarray:
    linear = (np.asarray(rgb, np.float64) / 255.0) ** (563 / 256)
    return srgb_encode(linear @ (XYZ_TO_SRGB @ ADOBE_TO_XYZ).T)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[..., 0]


@pytest.mark.parametrize("fmt,size", [("JPEG", (90, 60)), ("JPEG", (900, 700)), ("PNG", (90, 60))])
def test_a_gray_scan_is_read_through_its_gray_profile(tmp_path, engine, fmt, size):
    """A scan in "Gray Gamma 1.8" (Photoshop's gray working spaces are such curves): its gray 128 is
    what viewers show as sRGB 146.  Read as sRGB 128, the colorized output was 4 L* darker than
    the original beside it in any colour-managed viewer.  Its lightness is now the profile's, in
    the small-image route and in the large JPEG's Y'CbCr route alike."""
    codes = cv2.resize(make_photo(60, 90, seed=3)[..., 0], size, interpolation=cv2.INTER_LINEAR)
    src = tmp_path / f"scan.{fmt.lower()}"
    Image.fromarray(codes).save(src, fmt, icc_profile=gray_profile(), **({"quality": 100} if fmt == "JPEG" else {}))
    stored = np.asarray(Image.open(src))
    decoded = image_io.read_image(src)
    assert decoded.pixels.ndim == 2 and "icc_profile" not in decoded.info
    assert np.abs(decoded.pixels.astype(float) - gamma18_to_srgb(stored)).max() <= 2.0  # (LittleCMS near black)
    assert np.abs(decoded.pixels.astype(float) - stored).max() > 15  # (the raw codes are not what is read)

    out = colorize_image(src, tmp_path / f"out.{fmt.lower()}", engine=engine)
    with Image.open(out) as im:
        assert "icc_profile" not in im.info
        got = lightness(np.asarray(im.convert("RGB")))
    want = lightness(np.repeat(gamma18_to_srgb(stored)[..., None], 3, axis=2))
    raw = lightness(np.repeat(stored[..., None].astype(np.float64), 3, axis=2))
    assert np.abs(got - want).mean() < 1.0 < np.abs(got - raw).mean()


def test_a_colour_photo_in_adobe_rgb_is_read_as_srgb_and_its_profile_left_off(tmp_path, engine):
    """A colour scan tagged "Adobe RGB (1998)": its pixels are converted to sRGB (as viewers show
    them) before their lightness is taken, and the output, whose pixels are sRGB, no longer claims
    to be Adobe RGB (which made viewers show its colours more saturated than streamcolor made them).
    The same profile on a gray photo stored as RGB keeps it gray."""
    rgb = make_photo(70, 110, seed=4)
    src = tmp_path / "colour.png"
    Image.fromarray(rgb).save(src, icc_profile=rgb_profile())
    decoded = image_io.read_image(src)
    assert decoded.pixels.shape == rgb.shape and "icc_profile" not in decoded.info
    assert np.abs(decoded.pixels - adobe_to_srgb(rgb)).max() <= 2.0
    assert np.abs(decoded.pixels.astype(float) - rgb).max() > 10
    with Image.open(colorize_image(src, tmp_path / "out.png", engine=engine)) as im:
        assert "icc_profile" not in im.info

    gray = np.repeat(rgb[..., :1], 3, axis=2)
    Image.fromarray(gray).save(tmp_path / "gray.png", icc_profile=rgb_profile())
    decoded = image_io.read_image(tmp_path / "gray.png")
    assert decoded.pixels.ndim == 2
    assert np.abs(decoded.pixels - adobe_to_srgb(gray)[..., 1]).max() <= 2.0


def test_colour_strips_give_the_whole_images_conversion(monkeypatch):
    rgb = make_photo(97, 61, seed=5)
    profile = rgb_profile()
    whole, changed = icc.to_srgb(rgb, profile, "x")
    monkeypatch.setattr(icc, "_STRIP_PIXELS", 61 * 10 + 7)  # strips of 10 rows, the last of 7
    strips, _ = icc.to_srgb(rgb, profile, "x")
    assert changed and np.array_equal(whole, strips)


def test_16bit_gray_goes_through_its_profile_and_16bit_colour_is_said_to_be_left(tmp_path, caplog):
    codes = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(codes).save(tmp_path / "deep.png", icc_profile=gray_profile())
    decoded = image_io.read_image(tmp_path / "deep.png")
    assert decoded.pixels.dtype == np.uint16 and "icc_profile" not in decoded.info
    want = gamma18_to_srgb(codes, 65535.0) * 257.0
    assert np.abs(decoded.pixels - want).max() <= 0.01 * 65535

    colour = cv2.merge([codes, codes[::-1], codes[:, ::-1]])
    ok, buf = cv2.imencode(".png", colour)
    assert ok
    (tmp_path / "deep-colour.png").write_bytes(_png_with_profile(buf.tobytes()))
    with caplog.at_level(logging.WARNING, logger="streamcolor.icc"):
        decoded = image_io.read_image(tmp_path / "deep-colour.png")
    assert decoded.pixels.dtype == np.uint16 and decoded.info.get("icc_profile") == rgb_profile()
    assert np.array_equal(decoded.pixels, colour[..., ::-1])
    assert "is not applied to 16-bit colour" in caplog.text


def _png_with_profile(png: bytes) -> bytes:
    """``png`` with an iCCP chunk of :func:`rgb_profile` after its header (Pillow writes no 16-bit RGB)."""
    import struct
    import zlib

    body = b"adobe\0\0" + zlib.compress(rgb_profile())
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    return png[:33] + chunk + png[33:]


def test_a_broken_profile_is_said_once_and_the_photos_are_still_done(tmp_path, engine, caplog):
    """A profile LittleCMS cannot read (a camera's broken one) leaves the pixels as sRGB, with one
    warning for all the photos that carry it."""
    broken = rgb_profile()[:128] + b"\xff" * 64
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(make_photo(50, 70, seed=i)).save(src / f"{i}.png", icc_profile=broken)
    with caplog.at_level(logging.WARNING, logger="streamcolor.icc"):
        report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                                  options=BatchOptions(render_size=64))
    assert report.done == 3
    said = [r for r in caplog.records if "its ICC profile cannot be used" in r.getMessage()]
    assert len(said) == 1
    assert np.array_equal(image_io.read_image(src / "1.png").pixels, make_photo(50, 70, seed=1))


def test_srgb_profiles_leave_the_pixels_and_stay_on_the_output():
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = make_photo(30, 40, seed=6)
    out, changed = icc.to_srgb(rgb, srgb, "x")
    assert out is rgb and not changed
    # (a gray photo with an sRGB profile, as some programs write: not its pixels' profile, left alone)
    gray = np.ascontiguousarray(rgb[..., 0])
    out, changed = icc.to_srgb(gray, srgb, "x")
    assert out is gray and not changed
