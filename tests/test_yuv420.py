"""Gray frames composed straight into 4:2:0 planes (streamcolor.ycbcr) against the
reference route: full-res sRGB (colorize.render) converted by FFmpeg (swscale)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamcolor.colorize import render
from streamcolor.engines import lab
from streamcolor.video import VideoOptions, colorize_video, make_clip
from streamcolor.video.lightness import gray_lut
from streamcolor.ycbcr import Yuv420Composer, composer, ycbcr_matrix

SAMPLE = Path(__file__).resolve().parents[1] / "streamcolor" / "samples" / "chenonceau-bw.jpg"


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width].astype(np.int32)
            for p in frame.planes]


def _luma(height: int, width: int, hd: bool) -> np.ndarray:
    """Limited-range luma codes of a real photo, as a decoder gives a gray frame's Y plane."""
    gray = cv2.resize(cv2.imread(str(SAMPLE), cv2.IMREAD_GRAYSCALE), (width, height), interpolation=cv2.INTER_AREA)
    vf = av.VideoFrame.from_ndarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709" if hd else "ITU601", dst_color_range="MPEG")
    return _planes(vf)[0].astype(np.uint8)


def _ab(height: int, width: int, gain: float, seed: int = 0) -> np.ndarray:
    """Smooth network-like a*b* (a sixth of the frame's size) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-gain, gain, (6, 8, 2)).astype(np.float32)
    return cv2.resize(coarse, (width // 6, height // 6), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _reference(l_full: np.ndarray, ab: np.ndarray, hd: bool) -> list[np.ndarray]:
    rgb = render(l_full, ab, dtype=np.uint8)
    return _planes(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709" if hd else "ITU601", dst_color_range="MPEG"))


@pytest.mark.parametrize("height,width,hd", [(576, 768, False), (720, 1280, True)])
def test_direct_planes_match_the_rgb_route(height, width, hd):
    """Plane by plane, on a real photo's edges with everyday colour (a*b* up to ~27): Y almost
    everywhere within one code of the RGB route's, chroma likewise; the few larger differences
    sit at sharp edges, where the RGB route reduces chroma pixel by pixel to fit the gamut and
    the direct route does it per 2x2 block."""
    luma = _luma(height, width, hd)
    table = gray_lut("yuv420p")
    l_full = cv2.LUT(luma, table)
    ab = _ab(height, width, 0.15)
    comp = Yuv420Composer(table, hd=hd)
    buf = comp.frame(luma, comp.half_l(l_full), ab)
    assert buf.shape == (height * 3 // 2, width) and buf.dtype == np.uint8
    direct = _planes(av.VideoFrame.from_ndarray(buf, format="yuv420p"))
    ref = _reference(l_full, ab, hd)
    for name, got, want, limit in zip("Y Cb Cr".split(), direct, ref, (10, 12, 20)):
        diff = np.abs(got - want)
        psnr = 10 * np.log10(255 ** 2 / max(float((diff ** 2).mean()), 1e-12))
        assert diff.max() <= limit, (name, diff.max())
        assert (diff > 1).mean() < 0.02, (name, (diff > 1).mean())
        assert psnr > 50, (name, psnr)
    # the colour really moved luma: without dY (the frame's gray luma alone) Y would be off much more
    gray_y = cv2.LUT(luma, comp.gray_y)
    without, with_dy = np.abs(np.rint(gray_y) - ref[0]).mean(), np.abs(direct[0] - ref[0]).mean()
    assert without > 3 * with_dy, (without, with_dy)


@pytest.mark.parametrize("gain", [0.15, 0.3, 0.9])
def test_as_a_player_shows_it_the_direct_route_is_as_close_as_the_rgb_route(gain):
    """Decoded to RGB (what a player shows) and compared with the full-res composition itself:
    both routes lose the same to 4:2:0, the direct one no more in lightness, and within 10% in
    colour on average, from everyday colour to colour far outside the gamut (gain 0.9)."""
    hd, height, width = False, 288, 384
    luma = _luma(height, width, hd)
    table = gray_lut("yuv420p")
    l_full = cv2.LUT(luma, table)
    ab = _ab(height, width, gain, seed=1)
    truth = render(l_full, ab, dtype=np.uint8)
    truth_lab = lab.rgb_to_lab(truth)
    comp = Yuv420Composer(table, hd=hd)
    frames = {"direct": av.VideoFrame.from_ndarray(comp.frame(luma, comp.half_l(l_full), ab), format="yuv420p"),
              "rgb": av.VideoFrame.from_ndarray(truth, format="rgb24").reformat(
                  format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")}
    err = {}
    for name, f in frames.items():
        shown = lab.rgb_to_lab(f.to_ndarray(format="rgb24", src_colorspace="ITU601", src_color_range="MPEG"))
        dl = np.abs(shown[..., 0] - truth_lab[..., 0])
        err[name] = (dl.mean(), np.percentile(dl, 99.9), np.sqrt(((shown - truth_lab) ** 2).sum(-1)).mean())
    (dl_d, dl99_d, de_d), (dl_r, dl99_r, de_r) = err["direct"], err["rgb"]
    assert dl_d <= dl_r * 1.05 + 0.02, err
    assert dl99_d <= dl99_r * 1.05 + 0.1, err
    assert de_d <= de_r * 1.1, err


def test_gray_ab_gives_the_input_luma_and_neutral_chroma():
    luma = _luma(240, 320, False)
    table = gray_lut("yuv420p")
    comp = composer(table, hd=False)
    y, cb, cr = _planes(av.VideoFrame.from_ndarray(
        comp.frame(luma, comp.half_l(cv2.LUT(luma, table)), np.zeros((40, 53, 2), np.float32)), format="yuv420p"))
    assert np.abs(y - luma).max() <= 1  # one code where L* -> sRGB -> Y' rounds differently
    assert np.abs(cb - 128).max() <= 1 and np.abs(cr - 128).max() <= 1


def test_matrices_and_input_checks():
    for hd in (False, True):
        m = ycbcr_matrix(hd)
        white = m[:, :3].sum(axis=1) + m[:, 3]
        np.testing.assert_allclose(white, [235, 128, 128], atol=1e-4)  # white: Y 235, neutral chroma
        np.testing.assert_allclose(m[:, 3], [16, 128, 128])
    assert composer(gray_lut("yuv420p"), hd=True) is composer(gray_lut("yuv420p"), hd=True)  # made once
    comp = composer(gray_lut("yuv420p"), hd=False)
    with pytest.raises(ValueError, match="even"):
        comp.half_l(np.zeros((5, 8), np.float32))
    with pytest.raises(ValueError, match="half-res"):
        comp.frame(np.zeros((8, 8), np.uint8), np.zeros((2, 2), np.float32), np.zeros((2, 2, 2), np.float32))


def _decoded(path: Path) -> list[list[np.ndarray]]:
    with av.open(str(path)) as c:
        return [_planes(f) for f in c.decode(video=0)]


def _odd_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A gray clip of odd size (4:4:4, which allows it)."""
    luma = _luma(height + 1, width + 1, False)[:height, :width]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=24)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv444p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.stack([np.roll(luma, i, axis=1)] * 3, axis=0), format="yuv444p")
            f.planes[1].update(np.full((height, f.planes[1].line_size), 128, np.uint8).tobytes())
            f.planes[2].update(np.full((height, f.planes[2].line_size), 128, np.uint8).tobytes())
            f.pts = i
            out.mux(vs.encode(f))
        out.mux(vs.encode())
    return path


@pytest.mark.parametrize("size,pix_fmt,direct", [((160, 120), "yuv420p", True), ((161, 121), "yuv420p", False),
                                                 ((160, 120), "yuv444p", False)])
def test_video_takes_the_direct_route_only_where_it_applies(tmp_path, engine, size, pix_fmt, direct):
    """Lossless x264 (crf 0), so the decoded planes are what each route composed: the direct
    route close to the RGB route; odd sizes and other formats take the RGB route itself
    (identical output)."""
    src = (make_clip(tmp_path / "in.mp4", *size, 6) if size[0] % 2 == 0
           else _odd_clip(tmp_path / "in.mp4", *size, 6))
    base = VideoOptions(quality=0, pix_fmt=pix_fmt, stabilize=False)
    fast = colorize_video(src, tmp_path / "fast.mp4", engine=engine, options=base, progress=False)
    ref = colorize_video(src, tmp_path / "ref.mp4", engine=engine,
                         options=dataclasses.replace(base, rgb_compose=True), progress=False)
    got, want = _decoded(fast), _decoded(ref)
    assert len(got) == len(want) == 6
    diff = np.concatenate([np.abs(g - w).ravel() for fg, fw in zip(got, want) for g, w in zip(fg, fw)])
    if direct:  # a different route, the same picture (larger differences only at sharp edges in strong colour)
        assert diff.max() > 0
        assert diff.mean() < 0.5 and (diff > 3).mean() < 0.02, (diff.mean(), (diff > 3).mean(), diff.max())
    else:
        assert diff.max() == 0


@pytest.mark.parametrize("size, from_half", [((1080, 1920), True), ((576, 768), False), ((240, 320), False)])
def test_network_input_from_the_half_res_blocks_equals_the_full_res_one(size, from_half):
    """The 4:2:0 route shrinks the network input from the 2x2 blocks' average it has anyway, when
    it is at least twice the render size: area averages of area averages, the input the full-res L* gives
    within OpenCV's area weights at a fractional scale (a fraction of one L* unit)."""
    from streamcolor.colorize import ColorOptions, network_input
    from streamcolor.video.lightness import frame_network_input

    height, width = size
    luma = _luma(height, width, hd=height >= 720)
    l_full = cv2.LUT(luma, gray_lut("yuv420p"))
    half = Yuv420Composer.half_l(l_full)
    colour = ColorOptions(render_size=320, saturation=1.0, size_multiple=32)
    want = network_input(l_full, 320, 32)
    got = frame_network_input(l_full, half, colour)
    assert got.shape == want.shape and got.dtype == want.dtype
    if from_half:  # shrunk from the blocks; [-1, 1] scaled, so 0.01 is half an L* unit
        err = np.abs(got - want) * 50.0  # (the default model's a*b* then differ by 0.2 on average)
        assert err.mean() < 0.5 and np.percentile(err, 99) < 3.0 and err.max() < 10.0, (err.mean(), err.max())
    else:  # the half-res frame is under twice the render size: made from the full-res L*, exactly
        assert np.array_equal(got, want)
    assert np.array_equal(frame_network_input(l_full, None, colour), want)


def test_strips_of_rows_give_the_planes_of_one_pass(monkeypatch):
    """The half-res colour work runs a strip of rows at a time (to stay in cache); any strip height,
    one row or several with a short last one, gives the same planes byte for byte as one pass."""
    import streamcolor.ycbcr as y420

    height, width = 180, 320
    luma = _luma(height, width, hd=False)
    l_table = gray_lut("yuv420p")
    comp = Yuv420Composer(l_table, hd=False, saturation=1.3)
    half = comp.half_l(cv2.LUT(luma, l_table))
    ab = _ab(height, width, 0.6, seed=5)
    monkeypatch.setattr(y420, "_STRIP_PIXELS", 10 ** 9)
    whole = comp.frame(luma, half, ab)
    for strip_rows in (1, 7, 89):
        monkeypatch.setattr(y420, "_STRIP_PIXELS", strip_rows * (width // 2))
        assert np.array_equal(comp.frame(luma, half, ab), whole), strip_rows


# --------------------------------------------------------------------------- a gray photo into a JPEG


def _gray_photo(height: int, width: int) -> np.ndarray:
    return cv2.resize(cv2.imread(str(SAMPLE), cv2.IMREAD_GRAYSCALE), (width, height), interpolation=cv2.INTER_AREA)


def _jpeg_rgb(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("height,width", [(864, 1152), (1201, 907)])
def test_jpeg_planes_are_as_close_to_the_render_as_the_rgb_route(engine, height, width):
    """A gray photo written as JPEG through its Y'CbCr planes, with the network's own colour made
    half as vivid again (saturation 1.5), decodes as close to the full-resolution render as the RGB
    route's JPEG does (within 0.6 dB, and within 0.1 in mean CIE76 colour difference), odd sides
    included; its Y'CbCr are JFIF's (full range).  (Random strong chroma on near-white sky, which
    no network predicts, is where the two differ: per pixel against per 2x2 block gamut fits.  Both
    are above 43 dB here; the default model v2's stronger colour at saturation 1.5 put the gap at
    0.55 dB, v1's under 0.5.)"""
    from PIL import Image

    from streamcolor import image_io
    from streamcolor.colorize import ColorOptions, prepare, render_prepared
    from streamcolor.ycbcr import jpeg_planes, takes_jpeg_planes

    gray = _gray_photo(height, width)
    prep = prepare(image_io.read_image(Image.fromarray(gray)), ColorOptions(render_size=320).for_engine(engine))
    ab = engine.predict(prep.net_in[None])[0]
    assert takes_jpeg_planes(prep, "JPEG") and not takes_jpeg_planes(prep, "PNG")
    planes = jpeg_planes(prep, ab, saturation=1.5)
    assert [p.shape for p in planes] == [(height, width)] * 3 and all(p.dtype == np.uint8 for p in planes)
    rgb = render_prepared(prep, ab, saturation=1.5)
    via_planes = _jpeg_rgb(image_io.encode_jpeg_planes(*planes, quality=95))
    via_rgb = _jpeg_rgb(image_io.encode_image(rgb, "JPEG", quality=95))
    ref = rgb.astype(np.float64)
    assert _psnr(via_planes, ref) > _psnr(via_rgb, ref) - 0.6 > 38

    def delta_e(x: np.ndarray) -> float:
        lab_x, lab_r = (cv2.cvtColor((v / 255).astype(np.float32), cv2.COLOR_RGB2Lab) for v in (x, ref))
        return float(np.sqrt(((lab_x - lab_r) ** 2).sum(-1)).mean())

    assert delta_e(via_planes) < delta_e(via_rgb) + 0.1


def test_jpeg_planes_of_a_gray_photo_with_no_colour_are_its_own_codes():
    """No colour (a* = b* = 0): Y is the photo's own codes within one, Cb and Cr neutral (128)."""
    from PIL import Image

    from streamcolor import image_io
    from streamcolor.colorize import ColorOptions, prepare
    from streamcolor.ycbcr import jpeg_planes

    gray = _gray_photo(300, 401)
    prep = prepare(image_io.read_image(Image.fromarray(gray)), ColorOptions(render_size=128, saturation=1.0, size_multiple=32))
    y, cb, cr = jpeg_planes(prep, np.zeros((*prep.net_in.shape[:2], 2), np.float32))
    assert np.abs(y.astype(int) - gray).max() <= 1
    assert cb.min() == cb.max() == 128 and cr.min() == cr.max() == 128


def test_jpeg_planes_strip_by_strip_match_one_pass():
    """A big photo's full-resolution work runs in strips of rows; any strip height gives the
    planes of one pass within one code (the bilinear rows computed two ways: float rounding)."""
    luma = _gray_photo(301, 400)
    comp = composer(np.arange(256, dtype=np.float32) * (100 / 255), hd=False, saturation=1.0, full_range=True)
    ab = _ab(300, 400, 0.4, seed=3)
    whole = comp.full_planes(luma, ab)
    for strip in (400, 400 * 7, 400 * 50):
        parts = comp.full_planes(luma, ab, strip_pixels=strip)
        for a, b in zip(parts, whole):
            assert np.abs(a.astype(int) - b).max() <= 1, strip


def test_a_batch_writes_gray_photos_as_jpeg_through_the_planes(engine, tmp_path, monkeypatch):
    """The batch job takes the route for a big enough gray JPEG, and the RGB route for a colour
    source and for a small photo; each output is a full-size RGB JPEG."""
    from PIL import Image

    from streamcolor import ycbcr
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.colorize import colorize_image

    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(_gray_photo(300, 401)).save(src / "gray.jpg", quality=92)
    tinted = cv2.cvtColor(_gray_photo(300, 401), cv2.COLOR_GRAY2RGB)
    tinted[..., 2] //= 2  # a colour photo (sepia-ish): reduced to its lightness, through the RGB route
    Image.fromarray(tinted).save(src / "colour.jpg", quality=92)
    Image.fromarray(_gray_photo(200, 240)).save(src / "small.jpg", quality=92)  # under twice the render size
    Image.fromarray(_gray_photo(300, 401)).convert("1").save(src / "dither.png")  # a 1-bit scan: per-pixel fits
    took = []
    real = ycbcr.jpeg_planes
    monkeypatch.setattr(ycbcr, "jpeg_planes", lambda prep, *a, **k: took.append(prep.shape) or real(prep, *a, **k))
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(render_size=128, output_format="jpg"))  # (a 128-px input)
    assert report.ok and took == [(300, 401)]
    for name, size in (("gray.jpg", (401, 300)), ("colour.jpg", (401, 300)), ("small.jpg", (240, 200)),
                       ("dither.jpg", (401, 300))):
        with Image.open(tmp_path / "out" / name) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", size)

    # `colorize_image` (the `image` verb) writes a file as the job does: the same route, the same picture
    took.clear()
    single = colorize_image(src / "gray.jpg", tmp_path / "single.jpg", engine=engine, render_size=128)
    assert took == [(300, 401)]
    a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in (single, tmp_path / "out" / "gray.jpg"))
    assert np.abs(a - b).max() <= 2  # (the engine ran the photo alone here, with two others in the job)
    colorize_image(src / "gray.jpg", tmp_path / "single.png", engine=engine, render_size=128)
    assert took == [(300, 401)]  # a PNG: the RGB route


@pytest.mark.parametrize("height, width", [(64, 96), (301, 403)])
def test_jpeg_planes_are_lent_to_pillow_and_encode_as_pillows_own_merge(monkeypatch, height, width):
    """encode_jpeg_planes hands Pillow the planes interleaved by OpenCV, without Image.merge (which
    holds the GIL: on 16 cores the workers wait on it); the JPEG is byte for byte the same, and
    without Pillow's internals it falls back to Image.merge."""
    import io

    from PIL import Image

    from streamcolor import image_io

    rng = np.random.default_rng(height)
    y, cb, cr = (rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(3))
    merged = io.BytesIO()
    Image.merge("YCbCr", [Image.fromarray(p) for p in (y, cb, cr)]).save(merged, "JPEG", quality=92, subsampling=0)
    assert image_io.encode_jpeg_planes(y, cb, cr, quality=92) == merged.getvalue()
    real = Image.core.map_buffer

    def refuses_ycbcr(data, size, name, offset, args):  # (a Pillow whose internals differ)
        if args[0] == "YCbCr":
            raise ValueError("unknown raw mode")
        return real(data, size, name, offset, args)

    monkeypatch.setattr(Image.core, "map_buffer", refuses_ycbcr)
    assert image_io.encode_jpeg_planes(y, cb, cr, quality=92) == merged.getvalue()
