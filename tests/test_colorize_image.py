"""colorize_image and `streamcolor image`: size and lightness kept, every
input kind, bad input rejected cleanly with nothing half-written."""

from __future__ import annotations

import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import streamcolor
from streamcolor.engines import lab
from streamcolor import image_io
from streamcolor.colorize import ColorOptions
from streamcolor.errors import InputError
from tests.conftest import make_photo, png_bytes


def delta_l(a: np.ndarray, b: np.ndarray) -> float:
    la = lab.gray_to_l(a) if a.ndim == 2 else lab.rgb_to_l(a[..., :3])
    return float(np.abs(la - lab.rgb_to_l(b[..., :3])).max())


def test_path_in_file_out_keeps_size_and_lightness(engine, tmp_path, photo_file):
    out = streamcolor.colorize_image(photo_file, tmp_path / "out.png", engine=engine)
    src = np.asarray(Image.open(photo_file))
    res = np.asarray(Image.open(out))
    assert res.shape == src.shape
    assert delta_l(src, res) <= 1.0


def test_path_and_array_give_same_result(engine, photo_file):
    from_path = streamcolor.colorize_image(photo_file, engine=engine)
    from_array = streamcolor.colorize_image(np.asarray(Image.open(photo_file)), engine=engine)
    assert from_path.dtype == np.uint8 and from_path.shape == from_array.shape
    assert np.abs(from_path.astype(int) - from_array.astype(int)).max() <= 1


def test_returns_kind_it_received(engine, photo):
    assert isinstance(streamcolor.colorize_image(Image.fromarray(photo), engine=engine), Image.Image)
    out = streamcolor.colorize_image(png_bytes(photo), engine=engine)
    assert isinstance(out, bytes) and Image.open(__import__("io").BytesIO(out)).format == "PNG"
    f = streamcolor.colorize_image(photo.astype(np.float32) / 255, engine=engine)
    assert f.dtype == np.float32 and f.shape == photo.shape and 0 <= f.min() and f.max() <= 1


@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (33, 501), (257, 31)])
def test_gray_odd_sizes(engine, h, w):
    gray = make_photo(max(h, 2), max(w, 2))[:h, :w, 0]
    out = streamcolor.colorize_image(gray, engine=engine, render_size=64)
    assert out.shape == (h, w, 3)
    assert delta_l(gray, out) <= 1.0


def test_rgba_keeps_alpha(engine, photo, tmp_path):
    alpha = np.tile(np.linspace(0, 255, photo.shape[1], dtype=np.uint8), (photo.shape[0], 1))
    rgba = np.dstack([photo, alpha])
    out = streamcolor.colorize_image(rgba, engine=engine)
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], alpha)
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)
    written = streamcolor.colorize_image(p, tmp_path / "b.png", engine=engine)
    assert np.array_equal(np.asarray(Image.open(written))[..., 3], alpha)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_rgba_alpha_comes_back_on_the_inputs_scale(engine, photo, dtype):
    top = 1.0 if np.dtype(dtype).kind == "f" else 65535
    alpha = np.tile(np.linspace(0, top, photo.shape[1]), (photo.shape[0], 1)).astype(dtype)
    rgb = (photo.astype(np.float64) / 255 * top).astype(dtype)
    out = streamcolor.colorize_image(np.dstack([rgb, alpha]), engine=engine)
    assert out.dtype == dtype and out.shape == (*photo.shape[:2], 4)
    assert np.abs(out[..., 3].astype(np.float64) - alpha).max() <= top / 65535  # was 0..65535 for floats
    assert out[..., :3].max() <= top


def test_tiff_outputs_are_compressed_losslessly_8bit_as_16bit(engine, tmp_path):
    """An 8-bit TIFF output was written raw (3 bytes a pixel, several times the scan it came from);
    it is LZW-compressed, as the 16-bit ones are, and its pixels are those of a PNG output."""
    gray = make_photo(96, 128)[..., 0]
    Image.fromarray(gray).save(tmp_path / "scan.tif", compression="tiff_adobe_deflate")
    Image.fromarray((gray.astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    for src in ("scan.tif", "deep.png"):
        out = tmp_path / f"{src}.out.tif"
        streamcolor.colorize_image(tmp_path / src, out, engine=engine, render_size=64)
        with Image.open(out) as im:
            assert im.info.get("compression") == "tiff_lzw", (src, im.info)
    streamcolor.colorize_image(tmp_path / "scan.tif", tmp_path / "same.png", engine=engine, render_size=64)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "scan.tif.out.tif")),
                          np.asarray(Image.open(tmp_path / "same.png")))


def test_16bit_png_stays_16bit(engine, tmp_path):
    gray16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(gray16).save(src)
    out = streamcolor.colorize_image(src, engine=engine)
    assert out.dtype == np.uint16 and out.shape == (48, 64, 3)
    written = streamcolor.colorize_image(src, tmp_path / "c16.png", engine=engine)
    import cv2
    back = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (48, 64, 3)
    l_in = lab.gray_to_l(gray16)
    l_out = lab.rgb_to_l(back[..., ::-1])
    assert np.abs(l_in - l_out).max() <= 1.0


def _tiff16(path, rgb: np.ndarray, orientation: int):
    """A baseline 16-bit RGB TIFF (uncompressed, one strip) with an Orientation tag (Pillow writes no
    16-bit colour, OpenCV no Orientation)."""
    import struct

    h, w, _ = rgb.shape
    data = np.ascontiguousarray(rgb, dtype="<u2").tobytes()
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, 8 + len(data)), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 8), (274, 3, 1, orientation), (277, 3, 1, 3), (278, 3, 1, h),
               (279, 4, 1, len(data)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 and count == 1
                                                 else struct.pack("<I", value)) for tag, kind, count, value in entries)
    bits = struct.pack("<HHH", 16, 16, 16)
    head = b"II*\0" + struct.pack("<I", 8 + len(data) + len(bits))
    path.write_bytes(head + data + bits + ifd + b"\0\0\0\0")
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_orientation_of_a_16bit_colour_tiff_is_applied_once(engine, tmp_path, orientation):
    """OpenCV's TIFF reader turns a 16-bit colour TIFF by its Orientation tag, and the tag was applied
    again after it: 2-5 and 7 came out as stored, 6 and 8 upside down."""
    g = np.linspace(5000, 60000, 48).astype(np.uint16)[None].repeat(32, 0)
    g[:8, :12] = 65535
    rgb = np.dstack([g + 300, g, g])  # (not gray: the 16-bit colour path)
    src = _tiff16(tmp_path / "o.tif", rgb, orientation)
    want = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.T, 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
            8: lambda a: np.rot90(a, 1)}[orientation](lab.rgb_to_l(rgb))
    out = streamcolor.colorize_image(src, engine=engine, render_size=64)
    assert out.dtype == np.uint16 and out.shape[:2] == want.shape
    assert np.abs(lab.rgb_to_l(out) - want).max() < 1.5


def test_exif_orientation_is_applied(engine, tmp_path, photo):
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    Image.fromarray(photo).save(p, exif=exif.tobytes(), quality=95)
    out = streamcolor.colorize_image(p, engine=engine)
    assert out.shape == (photo.shape[1], photo.shape[0], 3)
    written = streamcolor.colorize_image(p, tmp_path / "o.jpg", engine=engine)
    im = Image.open(written)
    assert im.size == (photo.shape[0], photo.shape[1]) and im.getexif().get(0x0112) is None


def _pillow_decode(data: bytes) -> image_io.Decoded:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return image_io.read_image(im)  # (an image already open: Pillow's pixels, as before OpenCV decoded them)


@pytest.mark.parametrize("orientation", [None, 3, 6, 7])
@pytest.mark.parametrize("progressive", [False, True])
def test_a_gray_jpeg_decoded_by_opencv_is_what_pillow_decodes(orientation, progressive):
    """Gray JPEGs are decoded by OpenCV (the GIL released: a batch job's threads no longer wait on
    Pillow's decode); the pixels, orientation, EXIF, DPI and ICC profile are Pillow's, to the bit."""
    from tests.icc_profiles import gray_profile

    rng = np.random.default_rng(orientation or 0)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (61, 90), dtype=np.uint8), (0, 0), 1.5)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
        exif[0x010F] = "scanner"
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "JPEG", quality=87, progressive=progressive, dpi=(600, 600),
                               exif=exif.tobytes() if orientation else b"", icc_profile=gray_profile())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:  # (OpenCV's decode is the one read_image takes)
        assert image_io.gray_jpeg(im.fp, im, "x") is not None
    fast, slow = image_io.read_image(data), _pillow_decode(data)
    assert fast.pixels.shape == slow.pixels.shape == ((90, 61) if orientation in (6, 7) else (61, 90))
    np.testing.assert_array_equal(fast.pixels, slow.pixels)
    assert fast.info == slow.info and fast.format == "JPEG"
    if orientation:
        written = Image.Exif()
        written.load(fast.info["exif"])
        assert written.get(0x0112) is None and written.get(0x010F) == "scanner"


def test_a_gray_jpeg_cut_short_is_refused_and_one_with_bytes_after_its_end_decodes(tmp_path):
    """libjpeg fills a cut-short JPEG in gray where Pillow refuses it: such a file goes to Pillow."""
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.arange(0, 240, 3, dtype=np.uint8), (64, 1))).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    with pytest.raises(InputError, match="truncated"):
        image_io.read_image(data[:len(data) * 2 // 3])
    with Image.open(io.BytesIO(data[:-100])) as im:
        assert image_io.gray_jpeg(im.fp, im, "x") is None
    trailing = image_io.read_image(data + b"trailer of a camera")
    np.testing.assert_array_equal(trailing.pixels, image_io.read_image(data).pixels)


def test_render_size_changes_only_colour_resolution(engine, photo):
    a = streamcolor.colorize_image(photo, engine=engine, render_size=64)
    b = streamcolor.colorize_image(photo, engine=engine, options=ColorOptions(render_size=128))
    assert a.shape == b.shape == photo.shape
    assert delta_l(photo, a) <= 1.0 and delta_l(photo, b) <= 1.0


def test_a_render_size_below_the_models_multiple_is_said(engine, photo, caplog):
    """-r 8 ran the U-Net at 32 (its sides are multiples of 32) without a word.  (24: a size no other
    test here asks for, since it is said once per process.)"""
    import logging

    with caplog.at_level(logging.INFO, logger="streamcolor.colorize"):
        streamcolor.colorize_image(photo, engine=engine, render_size=24)
        streamcolor.colorize_image(photo, engine=engine, render_size=24)  # said once, not per image
        streamcolor.colorize_image(photo, engine=engine, render_size=64)  # a multiple: nothing to say
    said = [r for r in caplog.records if "not a multiple of 32" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "render size 24 is not a multiple of 32" in said[0].getMessage() and "runs at 32" in said[0].getMessage()


def test_model_recommendations_apply_to_the_api_as_to_the_cli(engine, photo, tmp_path):
    """Without options, colorize_image takes the model's render size and saturation
    (model.json), exactly as `streamcolor image` does."""
    import json
    import shutil

    from streamcolor.engines import load_engine

    bundle = shutil.copytree(engine.info.path, tmp_path / "bundle")
    meta = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps({**meta, "render_size": 64, "saturation": 1.6}))
    eng = load_engine(bundle, "onnx", device="cpu")
    default = streamcolor.colorize_image(photo, engine=eng)
    assert np.array_equal(default, streamcolor.colorize_image(photo, engine=eng,
                                                              options=ColorOptions(render_size=64, saturation=1.6)))
    assert not np.array_equal(default, streamcolor.colorize_image(photo, engine=eng, render_size=256))
    assert np.array_equal(streamcolor.colorize_image(photo, engine=eng, saturation=1.0),  # (a shortcut, as render_size)
                          streamcolor.colorize_image(photo, engine=eng, options=ColorOptions(saturation=1.0)))
    assert ColorOptions().for_engine(eng) == ColorOptions(render_size=64, saturation=1.6,
                                                          size_multiple=eng.size_multiple)
    Image.fromarray(photo).save(tmp_path / "in.png")
    r = run_cli("image", str(tmp_path / "in.png"), "-o", str(tmp_path / "cli.png"), "-m", str(bundle),
                "--backend", "onnx")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png")), default)


@pytest.mark.parametrize("case", ["missing", "directory", "zero", "text", "truncated", "huge"])
def test_bad_input_clear_error_and_no_output(engine, tmp_path, photo_file, case):
    src = {"missing": tmp_path / "nope.jpg", "directory": tmp_path, "zero": tmp_path / "zero.jpg",
           "text": tmp_path / "text.jpg", "truncated": tmp_path / "trunc.jpg", "huge": photo_file}[case]
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "trunc.jpg").write_bytes(photo_file.read_bytes()[: photo_file.stat().st_size // 2])
    options = ColorOptions(max_pixels=1000) if case == "huge" else ColorOptions()
    dst = tmp_path / "out" / "x.png"
    with pytest.raises(InputError) as err:
        streamcolor.colorize_image(src, dst, engine=engine, options=options)
    assert str(src) in str(err.value)
    assert not dst.exists() and not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_write_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    dst = tmp_path / "x.png"
    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(image_io.os, "replace", boom)
    with pytest.raises(streamcolor.OutputError, match="No space left"):
        image_io.write_atomic(dst, b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
@pytest.mark.parametrize("memfd", [True, False])
def test_encode_gives_pillows_own_bytes_whatever_the_buffer(photo, fmt, memfd, monkeypatch):
    """image_io encodes a JPEG into an anonymous in-memory file where Linux has one (Pillow releases
    the GIL while it writes to a file descriptor), anything else into a BytesIO: either way, byte for
    byte what Pillow writes into a BytesIO with the same settings, EXIF and ICC included."""
    real = getattr(image_io.os, "memfd_create", None)
    if memfd and real is None:
        pytest.skip("no os.memfd_create on this system: every encode takes the BytesIO")
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        if not memfd:  # refused, as a sandbox may: the BytesIO instead, and no error
            raise OSError(1, "Operation not permitted")
        return real(*args, **kwargs)

    monkeypatch.setattr(image_io.os, "memfd_create", spy, raising=False)
    exif = Image.Exif()
    exif[0x0131] = "streamcolor test"  # Software
    info = {"exif": exif.tobytes(), "icc_profile": b"\0" * 16 + b"RGB " + b"\0" * 69980, "dpi": (300, 300)}
    # (an ICC over one JPEG marker: an RGB one, which image_io.profile_fits keeps on colour)
    info = {k: v for k, v in info.items() if not (fmt == "WEBP" and k == "icc_profile")}
    got = image_io.encode_image(photo, fmt, info=info, quality=90, warn=False)
    assert len(calls) == (fmt == "JPEG")  # only a JPEG is encoded through the descriptor
    ref = io.BytesIO()
    params = {k: v for k, v in info.items() if not (k == "exif" and fmt == "TIFF") and fmt != "BMP"}
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = 90
    if fmt == "JPEG":
        params["subsampling"] = 0
    if fmt == "TIFF":
        params["compression"] = "tiff_lzw"
    Image.fromarray(photo, "RGB").save(ref, format=fmt, **params)
    assert got == ref.getvalue()
    if fmt == "JPEG":
        planes = [np.ascontiguousarray(c) for c in np.moveaxis(np.asarray(Image.fromarray(photo).convert("YCbCr")), -1, 0)]
        ref = io.BytesIO()
        Image.merge("YCbCr", [Image.fromarray(c, "L") for c in planes]).save(ref, format="JPEG", quality=95,
                                                                           subsampling=0)
        assert image_io.encode_jpeg_planes(*planes) == ref.getvalue() and len(calls) == 2


def test_a_refused_memfd_leaves_no_trace_in_an_encode_error(photo, monkeypatch):
    """Where the in-memory file is refused, an encode error is raised on its own, not chained to the
    refusal (which would print "During handling of the above exception...")."""
    def refuse(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(image_io.os, "memfd_create", refuse, raising=False)
    with pytest.raises(Exception) as err:
        image_io.encode_image(photo, "JPEG", info={"dpi": "not a pair"}, quality=90, warn=False)
    assert err.value.__context__ is None or not isinstance(err.value.__context__, OSError)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamcolor", *args], capture_output=True, text=True)


def test_cli_image_and_bad_inputs(tmp_path, photo_file):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    r = run_cli("image", str(photo_file), str(bad), "-o", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "bad.jpg" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "out" / "photo.jpg").exists() and not (tmp_path / "out" / "bad.jpg").exists()


def test_cli_help_lists_every_verb():
    r = run_cli("--help")
    assert r.returncode == 0
    for verb in ("image", "video", "batch", "bench", "report", "models", "train"):
        assert f"  {verb} " in r.stdout


@pytest.mark.parametrize("chroma", [10.0, 40.0, 100.0])
def test_compose_keeps_lightness_even_out_of_gamut(chroma):
    """Strong chroma on near-black and near-white pixels cannot be shown in
    sRGB; compose must desaturate them rather than change their lightness."""
    from streamcolor.colorize import compose, to_dtype

    rng = np.random.default_rng(int(chroma))
    l = np.concatenate([rng.uniform(0, 3, 2000), rng.uniform(97, 100, 2000), rng.uniform(0, 100, 4000)])
    l = l.astype(np.float32).reshape(80, 100)
    ab = rng.uniform(-chroma, chroma, (80, 100, 2)).astype(np.float32)
    rgb8 = to_dtype(compose(l, ab), np.uint8)
    assert np.abs(lab.rgb_to_l(rgb8) - l).max() <= 1.0
    assert lab.colorfulness(rgb8) > 0  # colour survives where it fits


@pytest.mark.parametrize("fields,error,match", [
    ({"saturation": float("nan")}, ValueError, "from 0 to 4"),
    ({"saturation": float("inf")}, ValueError, "from 0 to 4"),
    ({"saturation": 1e39}, ValueError, "from 0 to 4, got 1e"),  # (finite: it painted every pixel white)
    ({"saturation": 4.01}, ValueError, "from 0 to 4"),
    ({"saturation": -0.5}, ValueError, "from 0 to 4"),
    ({"saturation": "1.2"}, TypeError, "saturation must be a number"),
    ({"quality": 0}, ValueError, "quality must be 1-100"),
    ({"quality": 101}, ValueError, "quality must be 1-100"),
    ({"quality": 95.5}, TypeError, "quality must be an integer"),
    ({"max_pixels": "big"}, TypeError, "max_pixels must be an integer"),
    ({"size_multiple": 0}, ValueError, "size_multiple"),
    ({"size_multiple": 1}, ValueError, "multiple of 8"),  # (taken, then failed inside the engine on its shape)
    ({"size_multiple": 12}, ValueError, "multiple of 8"),
])
def test_options_out_of_range_are_refused_where_they_are_made(fields, error, match):
    """NaN saturation used to give an all-white picture, quality 0 or 300 a codec's own error later."""
    with pytest.raises(error, match=match):
        ColorOptions(**fields)


def test_options_at_their_bounds_are_taken():
    ColorOptions(saturation=0, quality=1)
    ColorOptions(saturation=4, quality=1)
    ColorOptions(saturation=np.float32(2.5), quality=np.int64(100), size_multiple=8)


@pytest.mark.parametrize("make", ["video", "batch"])
def test_every_options_class_refuses_a_saturation_that_is_not_a_number(make):
    from streamcolor import BatchOptions, VideoOptions

    cls = VideoOptions if make == "video" else BatchOptions
    with pytest.raises(ValueError, match="from 0 to 4"):
        cls(saturation=float("nan"))
    with pytest.raises(ValueError, match="quality"):
        cls(quality=-1)


@pytest.mark.parametrize("kind", ["gray8", "gray16", "rgb"])
def test_a_pngs_one_transparent_colour_stays_transparent(engine, tmp_path, kind):
    """A gray or RGB PNG with a tRNS chunk (one colour marked transparent) came back opaque, with
    no warning, while palette PNGs and alpha channels kept theirs."""
    g = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint8)
    if kind == "gray8":
        im, value = Image.fromarray(g), 7
    elif kind == "gray16":
        g16 = g.astype(np.uint16) * 257
        im, value = Image.fromarray(g16), int(g16[0, 7])
    else:
        im, value = Image.fromarray(np.dstack([g, g, g])), (7, 7, 7)
    src = tmp_path / f"{kind}.png"
    im.save(src, transparency=value)
    assert Image.open(src).info.get("transparency") == value
    out = streamcolor.colorize_image(src, tmp_path / "out.png", engine=engine)
    got = np.asarray(Image.open(out))
    assert got.shape == (48, 64, 4)
    np.testing.assert_array_equal(got[..., 3] == 0, g == 7)  # exactly the marked pixels are hidden


@pytest.mark.parametrize("mode,out_mode", [("La", "RGBA"), ("RGBa", "RGBA"), ("LA", "RGBA"), ("I;16", "RGB")])
def test_every_pil_mode_in_memory_comes_back_with_its_transparency(engine, photo, mode, out_mode):
    """Premultiplied modes (La, RGBa: only made in memory) were a raw 'conversion not supported' or lost alpha."""
    base = Image.fromarray(photo).convert("RGBA")
    base.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, photo.shape[1], dtype=np.uint8), (photo.shape[0], 1))))
    im = base.convert("LA").convert(mode) if mode in ("La", "LA") else base.convert(mode)
    out = streamcolor.colorize_image(im, engine=engine)
    assert out.mode == out_mode and out.size == im.size
    if out_mode == "RGBA":
        assert np.asarray(out)[..., 3].min() == 0 and np.asarray(out)[..., 3].max() == 255


def test_empty_path_and_missing_model_are_said_plainly(engine):
    with pytest.raises(InputError, match="the image path is empty"):
        streamcolor.colorize_image("", engine=engine)
    with pytest.raises(ValueError, match="model is empty"):
        streamcolor.load_engine("")
    with pytest.raises(TypeError, match="model must be a shipped model's name"):
        streamcolor.load_engine(3)
    assert streamcolor.engines.resolve_model(None).name == streamcolor.engines.resolve_model().name


def test_every_verbs_help_has_examples():
    """README: "each verb's --help has examples" (collection and four train verbs had none)."""
    import click

    from streamcolor.cli import cli

    def leaves(cmd, path):
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=path[-1])
            for name in cmd.list_commands(ctx):
                yield from leaves(cmd.get_command(ctx, name), path + [name])
        else:
            yield " ".join(path), cmd

    found = dict(leaves(cli, ["streamcolor"]))
    assert {"streamcolor collection", "streamcolor train quantize", "streamcolor serve"} <= set(found)
    missing = [p for p, cmd in found.items() if "Examples" not in cmd.get_help(click.Context(cmd, info_name=p))]
    assert not missing, missing


def test_the_shared_engine_is_loaded_once_when_threads_ask_for_it_together(monkeypatch):
    """Threads whose first calls pass no engine wait for one load, not one session each."""
    import threading

    import streamcolor.engines
    from streamcolor import colorize

    loads = []
    real = streamcolor.engines.load_engine

    def counting(*args, **kw):
        loads.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(streamcolor.engines, "load_engine", counting)
    colorize.default_engine.cache_clear()
    start = threading.Barrier(6)
    got = []

    def first_call():
        start.wait()
        got.append(colorize.default_engine())

    threads = [threading.Thread(target=first_call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(e) for e in got}) == 1 and len(got) == 6
    colorize.default_engine.cache_clear()  # (later tests load the real one again)


def test_16bit_values_become_the_nearest_8bit_ones():
    """Taken down, every 16-bit photo written in 8 bits came out about 0.2 L* darker than its 8-bit twin."""
    from streamcolor import image_io

    x = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(image_io.to_uint8(x), np.floor(x / 257 + 0.5).astype(np.uint8))


def test_a_lossless_webp_stays_lossless(engine, tmp_path):
    """A lossless WebP (VP8L) came back lossy (VP8): its lightness 3 off, where a lossless file keeps it
    within 1.  A lossy one stays lossy."""
    photo = Image.fromarray(make_photo(120, 160)).convert("L")
    for lossless in (True, False):
        buf = io.BytesIO()
        photo.save(buf, "WEBP", lossless=lossless, quality=90)
        out = streamcolor.colorize_image(buf.getvalue(), engine=engine, render_size=64)
        assert (out[12:16] == b"VP8L" or b"VP8L" in out[:64]) == lossless
        if lossless:
            l_out = lab.rgb_to_l(np.asarray(Image.open(io.BytesIO(out)).convert("RGB")))
            assert np.abs(l_out - lab.gray_to_l(np.asarray(photo))).max() <= 1.0


def test_bytes_in_a_format_without_colour_or_with_icon_sizes(engine):
    """Bytes come back in their own format: an ICO kept only Pillow's standard icon size under the
    image's (16x11 of 32x21); XBM and MSP (1-bit) gave Pillow's raw "cannot write mode RGB"."""
    from streamcolor.errors import OutputError

    g = Image.fromarray(np.random.default_rng(0).integers(0, 255, (21, 32), dtype=np.uint8))
    buf = io.BytesIO()
    g.save(buf, "ICO", sizes=[(32, 21)])
    assert Image.open(buf).size == (32, 21)
    assert Image.open(io.BytesIO(streamcolor.colorize_image(buf.getvalue(), engine=engine))).size == (32, 21)
    for fmt in ("XBM", "MSP"):
        buf = io.BytesIO()
        g.convert("1").save(buf, fmt)
        with pytest.raises(OutputError, match=f"{fmt} holds no colour"):
            streamcolor.colorize_image(buf.getvalue(), engine=engine)
    buf = io.BytesIO()  # (a format Pillow reads but does not write: a KeyError came out; now a PNG)
    buf.write(b'/* XPM */\nstatic char *x[] = {\n"2 1 2 1",\n"a c #000000",\n"b c #FFFFFF",\n"ab"\n};\n')
    assert Image.open(io.BytesIO(buf.getvalue())).format == "XPM"
    assert Image.open(io.BytesIO(streamcolor.colorize_image(buf.getvalue(), engine=engine))).format == "PNG"


@pytest.mark.parametrize("options,match", [({"device": "gpu"}, "device must be"), ({"threads": -3}, "threads must")])
def test_onnx_engine_options_out_of_range_are_refused(options, match):
    from streamcolor.engines import load_engine

    with pytest.raises(ValueError, match=match):
        load_engine("default", "onnx", **options)


def test_a_pil_image_comes_back_with_its_rgb_profile_and_dpi(engine):
    """The bytes and file routes carried an RGB ICC profile and the DPI; a PIL image came back without."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.new("RGB", (64, 48), (90, 90, 90))
    im.info.update(icc_profile=srgb, dpi=(300, 300))
    out = streamcolor.colorize_image(im, engine=engine)
    assert out.info.get("icc_profile") == srgb and out.info.get("dpi") == (300, 300)


# ---------------------------------------------------------------------------------------------
# what describes the photo (captions, dates, rights) is carried to the output
# ---------------------------------------------------------------------------------------------

CAPTION = "Café am Markt, Jürgen, 1931"
XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
       'tiff:Orientation="6"><dc:description>Straßenbahn, XMP</dc:description></rdf:Description></rdf:RDF>'
       '</x:xmpmeta>').encode()
IPTC = b"\x1c\x02\x78\x00\x0dIPTC caption." + b"\x1c\x02\x50\x00\x06Ansel."  # (2:120 caption, 2:80 by-line)


def _photoshop_app13(iptc: bytes) -> bytes:
    import struct

    data = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc + b"\x00" * (len(iptc) % 2)
    return b"\xff\xed" + struct.pack(">H", len(data) + 2) + data


def _exif_text(value) -> str:
    """EXIF text as the bytes in the file, decoded as UTF-8 (Pillow reads it as Latin-1)."""
    return (value if isinstance(value, bytes) else value.encode("latin-1")).rstrip(b"\0").decode("utf-8")


def _described_jpeg(path, gray: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # (shown turned 90 degrees clockwise)
    exif[0x010E] = CAPTION.encode()  # (UTF-8, as cameras and editors write it)
    exif[0x8298] = "(c) Stadtarchiv".encode()
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = gray.shape[1], gray.shape[0]
    Image.fromarray(gray).save(path, exif=exif.tobytes(), xmp=XMP, comment=b"scanned 2024", quality=92,
                               extra=_photoshop_app13(IPTC))


@pytest.mark.parametrize("fmt", ["jpg", "png", "tiff", "webp"])
def test_captions_dates_and_rights_are_carried_to_every_output_format(engine, tmp_path, fmt):
    """An archive's photos carry their captions, dates and rights in EXIF, XMP, IPTC and comments:
    all were lost with the gray (only the ICC profile, DPI and EXIF were kept, EXIF's text mangled
    to '?'), where the outputs now carry them wherever the format has a place for them."""
    from PIL import IptcImagePlugin

    gray = make_photo(90, 140, seed=3)[..., 1]
    src = tmp_path / "scan.jpg"
    _described_jpeg(src, gray)
    out = streamcolor.colorize_image(src, tmp_path / f"out.{fmt}", engine=engine)
    with Image.open(out) as im:
        assert im.size == (90, 140)  # (upright)
        exif = im.getexif()
        assert exif.get(0x0112) is None
        if fmt == "tiff":  # (the TIFF's own tags)
            assert _exif_text(im.tag_v2[270]) == CAPTION
            assert _exif_text(im.tag_v2[33432]) == "(c) Stadtarchiv"
            xmp = im.info["xmp"]
        else:
            assert _exif_text(exif[0x010E]) == CAPTION and _exif_text(exif[0x8298]) == "(c) Stadtarchiv"
            assert dict(exif.get_ifd(0x8769)) == {0xA002: 90, 0xA003: 140}  # (the upright photo's size)
            xmp = im.info["XML:com.adobe.xmp"].encode() if fmt == "png" else im.info["xmp"]
        assert b"Stra\xc3\x9fenbahn, XMP" in xmp and b"Orientation" not in xmp
        if fmt in ("jpg", "tiff"):
            assert IptcImagePlugin.getiptcinfo(im) == {(2, 120): b"IPTC caption.", (2, 80): b"Ansel."}
        if fmt == "jpg":
            assert im.info["comment"] == b"scanned 2024"
        if fmt == "png":
            assert im.info["Comment"] == "scanned 2024"


def test_a_tiffs_caption_and_a_pngs_text_are_carried(engine, tmp_path):
    from PIL import IptcImagePlugin
    from PIL.PngImagePlugin import PngInfo

    gray = make_photo(80, 100, seed=4)[..., 0]
    tif = tmp_path / "scan.tif"
    Image.fromarray(gray).save(tif, tiffinfo={0x010E: CAPTION.encode(), 0x013B: "A. Smith", 0x0132: "1931:05:02 10:00:00",
                                              700: XMP, 33723: IPTC,
                                              0x8769: {0x9003: "1931:05:02 09:58:00"}})  # (DateTimeOriginal)
    jpg = streamcolor.colorize_image(tif, tmp_path / "from-tiff.jpg", engine=engine)
    with Image.open(jpg) as im:
        exif = im.getexif()
        assert _exif_text(exif[0x010E]) == CAPTION and exif[0x013B] == "A. Smith"
        assert exif[0x0132] == "1931:05:02 10:00:00" and 0x0111 not in exif  # (not the TIFF's strip offsets)
        assert exif.get_ifd(0x8769)[0x9003] == "1931:05:02 09:58:00"
        assert b"Stra\xc3\x9fenbahn" in im.info["xmp"]
        assert IptcImagePlugin.getiptcinfo(im)[(2, 120)] == b"IPTC caption."
    again = streamcolor.colorize_image(tif, tmp_path / "from-tiff.tif", engine=engine)
    with Image.open(again) as im:
        assert _exif_text(im.tag_v2[270]) == CAPTION and im.tag_v2[315] == "A. Smith"
        assert IptcImagePlugin.getiptcinfo(im)[(2, 80)] == b"Ansel."

    text = PngInfo()
    text.add_text("Title", "Harbour")
    text.add_itxt("Description", "Hafen von Kiel, März 1931", lang="de", tkey="Beschreibung")
    png = tmp_path / "scan.png"
    Image.fromarray(gray).save(png, pnginfo=text)
    out = streamcolor.colorize_image(png, tmp_path / "out.png", engine=engine)
    with Image.open(out) as im:
        im.load()
        assert im.text["Title"] == "Harbour" and im.text["Description"] == "Hafen von Kiel, März 1931"
        assert im.text["Description"].lang == "de" and im.text["Description"].tkey == "Beschreibung"


def test_a_batch_carries_the_captions_too(tmp_path):
    """The batch job's JPEG route (Y'CbCr planes) writes the same metadata as an image does."""
    src = tmp_path / "scans"
    src.mkdir()
    _described_jpeg(src / "a.jpg", make_photo(70, 90, seed=5)[..., 1])
    r = subprocess.run([sys.executable, "-m", "streamcolor", "batch", str(src), "-o", str(tmp_path / "out"), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (out,) = (tmp_path / "out").glob("*.jpg")
    with Image.open(out) as im:
        assert _exif_text(im.getexif()[0x010E]) == CAPTION and im.info["comment"] == b"scanned 2024"
        assert b"Stra\xc3\x9fenbahn" in im.info["xmp"] and b"Orientation" not in im.info["xmp"]


def test_an_xmp_packet_a_jpeg_cannot_hold_is_said_and_the_photo_still_written(engine, tmp_path, caplog):
    from PIL.PngImagePlugin import PngInfo

    big = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><!--' + "a" * 70000 + "--></x:xmpmeta>"
    chunks = PngInfo()
    chunks.add_itxt("XML:com.adobe.xmp", big)
    src = tmp_path / "scan.png"
    Image.fromarray(make_photo(50, 60, seed=6)[..., 0]).save(src, pnginfo=chunks)
    with caplog.at_level("WARNING"):
        out = streamcolor.colorize_image(src, tmp_path / "out.jpg", engine=engine)
    assert f"out.jpg: its XMP ({len(big)} bytes) is over what a JPEG segment holds" in caplog.text
    with Image.open(out) as im:
        assert im.size == (60, 50) and "xmp" not in im.info
    again = streamcolor.colorize_image(src, tmp_path / "out.png", engine=engine)  # (PNG holds it)
    with Image.open(again) as im:
        assert len(im.info["XML:com.adobe.xmp"]) == len(big)


def test_metadata_that_does_not_fit_is_said_and_never_fails_the_photo(engine, tmp_path, caplog):
    """Found by a new-user helper: EXIF over 64 KB failed the photo into a JPEG ("EXIF data is too
    long"); IPTC typed LONG in a TIFF (as exiftool writes it) was lost; a Latin-1 JPEG comment came
    into a PNG as U+FFFD; a PNG keyword over 79 bytes was written as it was."""
    import struct

    from PIL.PngImagePlugin import PngInfo

    gray = Image.fromarray(make_photo(40, 50, seed=7)[..., 0])
    exif = Image.Exif()
    exif[0x010E] = "caption"
    exif.get_ifd(0x8769)[0x927C] = bytes(70000)  # (a maker note)
    gray.save(tmp_path / "big-exif.png", exif=exif)
    with caplog.at_level("WARNING"):
        out = streamcolor.colorize_image(tmp_path / "big-exif.png", tmp_path / "big-exif.jpg", engine=engine)
    assert "big-exif.jpg: its EXIF (" in caplog.text and "over what a JPEG segment holds" in caplog.text
    assert Image.open(out).size == (50, 40)

    padded = IPTC + b"\0" * (-len(IPTC) % 4)
    buf = io.BytesIO()
    gray.save(buf, "TIFF", tiffinfo={33723: padded})  # (Pillow writes it UNDEFINED; made LONG below, as exiftool)
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 33723:
            struct.pack_into("<HI", data, entry + 2, 4, len(padded) // 4)
    (tmp_path / "long-iptc.tif").write_bytes(bytes(data))
    assert image_io.read_image(tmp_path / "long-iptc.tif").info["iptc"] == padded

    gray.save(tmp_path / "latin1.jpg", comment=b"Caf\xe9 Gro\xdfmutter")
    out = streamcolor.colorize_image(tmp_path / "latin1.jpg", tmp_path / "latin1.png", engine=engine)
    assert Image.open(out).info["Comment"] == "Café Großmutter"

    text = PngInfo()
    text.add_text("K" * 100, "too long a keyword")
    text.add_text("Title", "kept")
    gray.save(tmp_path / "keyword.png", pnginfo=text)
    caplog.clear()
    with caplog.at_level("WARNING"):
        out = streamcolor.colorize_image(tmp_path / "keyword.png", tmp_path / "keyword-out.png", engine=engine)
    with Image.open(out) as im:
        im.load()
        assert im.text == {"Title": "kept"}
    assert "PNG cannot hold that keyword" in caplog.text
