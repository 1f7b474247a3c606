"""Bounded memory and no hangs for any single input (issue 14, "Memory and hangs").

The strip-by-strip render must give what the whole-image render gives; the
pixel limit must hold for arrays too and reach past Pillow's own guard; a
device or FIFO must fail at once; and the memory budget of a job must never
keep it from finishing.  Peak memory itself is measured in
``benchmarks/bench_memory.py`` (child processes' maximum RSS), not here.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from streamcolor import image_io, memory
from streamcolor.archive import BatchOptions, colorize_archive
from streamcolor.colorize import (ColorOptions, StripUpsampler, colorize_image, compose, prepare, render,
                                  render_prepared, to_dtype)
from streamcolor.engines import lab
from streamcolor.errors import InputError
from streamcolor.items import Named, colorize_items
from streamcolor.manifest import DONE
from tests.conftest import make_photo, png_bytes

#: How long a call that must fail at once may take before the test calls it a hang.
HANG_S = 60


def _within(seconds: float, fn, *args, **kwargs):
    """Run ``fn`` in a daemon thread; fail the test if it has not returned in
    ``seconds`` (a hang), else return its result or raise its exception."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {seconds} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _whole_image_render(l_full: np.ndarray, ab_scaled: np.ndarray, saturation: float, dtype) -> np.ndarray:
    """The render as it was before strips: full-resolution a*b* by one cv2.resize, one compose."""
    h, w = l_full.shape
    ab = lab.unscale_ab(ab_scaled) * saturation
    ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR) if ab.shape[:2] != (h, w) else ab
    return to_dtype(compose(l_full, ab), dtype)


def _ab_grid(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A smooth, saturated a*b* grid in [-1, 1], like a network's output."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(-0.6, 0.6, (max(2, h // 4), max(2, w // 4), 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("whole_pixels", [0, 10**9])  # the strip-wise vertical pass; one cv2.resize
@pytest.mark.parametrize("grid", [(16, 24), (40, 56), (97, 131), (120, 170), (300, 410)])
def test_strip_upsampler_matches_cv2_resize(grid, whole_pixels):
    """Up-, down- and same-size grids: OpenCV's bilinear sampling within float rounding."""
    h, w = 120, 170
    ab_scaled = _ab_grid(*grid)
    want = cv2.resize(lab.unscale_ab(ab_scaled), (w, h), interpolation=cv2.INTER_LINEAR)
    up = StripUpsampler(ab_scaled, h, w, whole_pixels=whole_pixels)
    got = np.concatenate([up.rows(a, min(h, a + 7)) for a in range(0, h, 7)])
    assert got.shape == (h, w, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("grid", [(32, 40), (120, 170), (33, 47)])
def test_strips_equal_the_whole_image_and_the_old_render(dtype, grid):
    """Forced-small strips (a few rows, one row, part of a row) give the
    one-strip result, and both the whole-image render of before, within one
    output level on a few pixels: OpenCV's vector code converts the last few
    pixels of each call in scalar code, a float rounding apart."""
    pixels = make_photo(120, 170)
    l_full = lab.rgb_to_l(pixels)
    ab_scaled = _ab_grid(*grid)
    whole = render(l_full, ab_scaled, saturation=1.3, dtype=dtype, strip_pixels=10**9)
    old = _whole_image_render(l_full, ab_scaled, 1.3, dtype)
    for strip in (1000, 170, 50):
        tiled = render(l_full, ab_scaled, saturation=1.3, dtype=dtype, strip_pixels=strip)
        assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
        _assert_within_one_level(tiled, whole)
    _assert_within_one_level(whole, old)


def _assert_within_one_level(got: np.ndarray, want: np.ndarray) -> None:
    if got.dtype.kind == "u":
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        assert diff.max() <= 1, diff.max()
        assert (diff > 0).mean() < 0.001, (diff > 0).mean()
    else:
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_prepared_keeps_the_decoded_pixels_and_renders_them_in_strips(engine):
    """A prepared image holds the decoded pixels, not a float copy; its strip
    render equals the render of its whole-image L* (within a level, see above)."""
    options = ColorOptions().for_engine(engine)
    for pixels in (make_photo(150, 90), make_photo(150, 90)[..., 0],
                   (make_photo(80, 100)[..., 1].astype(np.uint16) * 257)):
        decoded = image_io.Decoded(pixels=pixels)
        prep = prepare(decoded, options)
        assert prep.source is pixels and not prep.is_l
        ab = engine.predict(prep.net_in[None])[0]
        small = render_prepared(prep, ab, saturation=options.saturation, strip_pixels=300)
        full = render(prep.l_full, ab, saturation=options.saturation, dtype=pixels.dtype, strip_pixels=10**9)
        assert small.dtype == pixels.dtype
        _assert_within_one_level(small, full)


# --------------------------------------------------------------------------- pixel limits


def test_array_over_the_pixel_limit_is_refused_before_any_work(engine):
    """Arrays get the files' limit; the error names it and the option to raise it.
    (A broadcast array: 400 Mpx that take no memory, so a missed check would show.)"""
    huge = np.broadcast_to(np.uint8(128), (20_000, 20_000))
    with pytest.raises(InputError, match=r"268,000,000.*max_pixels"):
        colorize_image(huge, engine=engine)
    small = make_photo(60, 80)
    with pytest.raises(InputError, match=r"4,800 pixels is over the limit of 1,000 .*max_pixels"):
        colorize_image(small, engine=engine, options=ColorOptions(max_pixels=1000))
    assert colorize_image(small, engine=engine, options=ColorOptions(max_pixels=4800)).shape == (60, 80, 3)


def test_max_pixels_reaches_past_pillows_own_limit(monkeypatch):
    """Pillow refuses images over 2x its MAX_IMAGE_PIXELS with an error of its
    own; our limit (checked on the header) is what decides."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow: warning over 1000 px, error over 2000
    data = png_bytes(make_photo(60, 80))  # 4800 px
    assert image_io.read_image(data, max_pixels=5000).pixels.shape == (60, 80, 3)
    assert Image.MAX_IMAGE_PIXELS >= 5000  # raised to ours, for this and later opens
    with pytest.raises(InputError, match=r"4,800 pixels is over the limit of 4,000 .*--max-pixels"):
        image_io.read_image(data, max_pixels=4000)


def test_pillows_limit_is_never_lowered(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**9)
    image_io.allow_pixels(1000)
    assert Image.MAX_IMAGE_PIXELS == 10**9


# --------------------------------------------------------------------------- devices and FIFOs


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    path = tmp_path / "photo.png"  # an image's name: only its type tells it apart
    os.mkfifo(path)
    return path


def test_fifo_and_device_fail_at_once_in_read_image(fifo):
    with pytest.raises(InputError, match=r"photo\.png: not a regular file \(a FIFO\)"):
        _within(HANG_S, image_io.read_image, fifo)
    if os.path.exists("/dev/zero"):
        with pytest.raises(InputError, match=r"/dev/zero: not a regular file \(a character device\)"):
            _within(HANG_S, image_io.read_image, "/dev/zero")
    link = fifo.with_name("link.png")
    link.symlink_to(fifo)
    with pytest.raises(InputError, match="a FIFO"):
        _within(HANG_S, image_io.read_image, link)


def test_fifo_as_batch_source_fails_at_once(engine, fifo, tmp_path):
    archive_fifo = tmp_path / "album.zip"
    os.mkfifo(archive_fifo)
    for src in (archive_fifo, fifo):
        with pytest.raises(InputError, match=r"not a regular file \((a )?FIFO\)"):
            _within(HANG_S, colorize_archive, src, tmp_path / "out", engine=engine, progress=False)


def test_fifo_in_a_source_folder_is_skipped_not_read(engine, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(make_photo(40, 60)).save(src / "a.png")
    os.mkfifo(src / "b.png")
    report = _within(HANG_S, colorize_archive, src, tmp_path / "out", engine=engine, progress=False)
    assert (report.done, report.skipped) == (1, 1)
    assert "FIFO" in report.problems[0].reason


def test_fifo_in_the_image_and_video_commands_is_one_line_at_once(fifo, tmp_path):
    """The CLI as a user runs it: one error line naming the file, no traceback,
    exit 1 (an input failed, README's exit codes)."""
    video_fifo = tmp_path / "film.mp4"
    os.mkfifo(video_fifo)
    for verb, src, out in (("image", fifo, "o.png"), ("video", video_fifo, "o.mp4")):
        proc = subprocess.run([sys.executable, "-m", "streamcolor", verb, str(src), "-o", str(tmp_path / out)],
                              capture_output=True, text=True, timeout=HANG_S)
        assert proc.returncode == 1, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if "not a regular file (a FIFO)" in ln]
        assert len(lines) == 1 and str(src) in lines[0] and "Traceback" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- the memory budget


def test_budget_lets_one_oversized_item_run_alone():
    budget = memory.MemoryBudget(100)
    assert budget.acquire(500, timeout=0)  # nothing held: runs even though it is over the budget
    assert not budget.acquire(1, timeout=0.05) and not budget.waiting
    budget.release(500)
    assert budget.acquire(60, timeout=0) and budget.acquire(40, timeout=0)
    assert not budget.acquire(1, timeout=0.05)
    assert budget.peak == 500


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` gray and holds no rows: only a
    header read can size it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_estimate_comes_from_the_header_without_decoding():
    data = _png_header_only(11_000, 8_000)  # 88 Mpx declared, nothing to decode
    assert memory.encoded_bytes(data) == 88_000_000 * memory.BYTES_PER_PIXEL + len(data)
    assert memory.encoded_bytes(b"not an image") == memory.UNKNOWN_BYTES + 12
    small = png_bytes(make_photo(10, 10))
    assert memory.encoded_bytes(small) == 100 * memory.BYTES_PER_PIXEL + len(small)
    # with a render size, the engine's share of a batch: the network input's pixels (aspect kept)
    assert memory.encoded_bytes(data, 320) - memory.encoded_bytes(data) == 320 * 232 * memory.ENGINE_BYTES_PER_INPUT_PIXEL


def test_the_estimate_of_a_photo_past_pillows_own_guard_is_its_size(monkeypatch):
    """Pillow refuses a header over twice its MAX_IMAGE_PIXELS: a photo under the job's limit but over
    that (179-268 Mpx at Pillow's default) was counted as an unknown file of 1 MB, until the first
    decode raised Pillow's guard, and ran beside others at 3 GB."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _png_header_only(100, 50)  # 5,000 px: over twice Pillow's 1,000
    assert memory.encoded_bytes(data, max_pixels=10_000) == 5_000 * memory.BYTES_PER_PIXEL + len(data)
    assert Image.MAX_IMAGE_PIXELS == 10_000


def test_a_huge_batch_size_stays_within_the_memory_budget(tmp_path):
    """`batch -b 100000` gathered as many photos as the budget held and ran them as one engine
    batch, whose activations (about 15 MB a photo at render 320) were not counted: 1.8-1.9x the
    budget.  The growth over the same job at -b 1 must stay within the budget."""
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray((rng.random((750, 1000)) * 255).astype(np.uint8)).save(src / f"p{i}.jpg", quality=90)
    for k in range(1, 6):  # 48 photos, 40 of them hard links (same bytes, other names)
        for i in range(8):
            os.link(src / f"p{i}.jpg", src / f"h{k}-{i}.jpg")
    budget = 256 << 20

    def peak_rss(batch: str) -> int:
        out = tmp_path / f"out-{batch}"
        proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "batch", str(src), "-o", str(out), "-b", batch,
                                 "--memory-budget", "256M", "--no-progress", "-q"], env={**os.environ, "PYTHONPATH":
                                str(Path(__file__).resolve().parents[1])}, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:]
        assert len(list(out.glob("*.jpg"))) == 48
        return usage.ru_maxrss * 1024

    growth = peak_rss("100000") - peak_rss("1")
    assert growth < budget, (growth / 2**20, budget / 2**20)  # (measured: 0.6x; 1.28x before the engine counted)


@pytest.mark.parametrize("budget", [1, 50_000_000])
def test_a_tiny_budget_never_deadlocks_the_pipeline(engine, tmp_path, budget):
    """With room for one image at a time, items wait for memory while the
    batcher waits for a full batch: the batcher must run what it holds."""
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(5):
        Image.fromarray(make_photo(50 + 10 * i, 70, seed=i)).save(src / f"p{i}.png")
    opts = BatchOptions(batch_size=8, workers=2, memory_budget=budget)
    report = _within(HANG_S * 3, colorize_archive, src, tmp_path / "out", engine=engine, options=opts,
                     progress=False)
    assert report.ok and report.done == 5
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"p{i}.png" for i in range(5)]


def test_waiting_for_memory_does_not_cut_batches_short(engine, tmp_path, monkeypatch):
    """The reader waiting for memory made the batcher run whatever it held, even while decoded
    items were on their way and written ones were about to give memory back: a 128-photo job at
    batch 64 ran batches of 1, 1, 1, 1, 58, 1, 47, 1, 1, 16 (slower calls, and on a GPU a compile
    of each new batch size).  It runs what it holds only when nothing else can free memory."""
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(24):
        Image.fromarray(make_photo(90, 120, seed=i)).save(src / f"p{i:02d}.png")
    one = memory.encoded_bytes((src / "p00.png").read_bytes(), 96)
    sizes: list[int] = []
    real = engine.predict
    monkeypatch.setattr(engine, "predict", lambda x, *a, **k: (sizes.append(len(x)), real(x, *a, **k))[1])
    # room for 13 photos at once: two batches of 4 in flight, and the reader waiting now and then
    opts = BatchOptions(batch_size=4, workers=2, memory_budget=13 * one, render_size=96)
    report = _within(HANG_S * 3, colorize_archive, src, tmp_path / "out", engine=engine, options=opts,
                     progress=False)
    assert report.ok and report.done == 24
    assert sum(sizes) == 24 and len(sizes) <= 7, sizes  # (before: mostly batches of 1)


def test_a_batch_jobs_workers_run_opencv_on_one_thread_and_it_is_put_back(engine, tmp_path):
    """OpenCV's own pool beside a job's workers only spun (on 16 cores: 21 of 76 CPU ms a photo
    in system time): a job with several workers holds it to one thread and restores the
    process's setting after, also when two jobs overlap; a job of one worker leaves it alone."""
    from streamcolor.archive.pipeline import opencv_one_thread

    src = tmp_path / "photos"
    src.mkdir()
    for i in range(6):
        Image.fromarray(make_photo(40, 60, seed=i)).save(src / f"p{i}.png")
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        for workers, during in ((2, 1), (1, 3)):
            seen: list[int] = []
            report = colorize_archive(src, tmp_path / f"out{workers}", engine=engine, progress=lambda d, t: seen.append(
                cv2.getNumThreads()), options=BatchOptions(batch_size=2, workers=workers))
            assert report.ok and report.done == 6
            assert set(seen) == {during}, (workers, seen)
            assert cv2.getNumThreads() == 3
        # two jobs at once: the one that ends first leaves OpenCV at one thread for the other
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen_second: list[int] = []

        def second():
            first_in.wait(10)
            with opencv_one_thread():
                second_in.set()
                first_out.wait(10)
                seen_second.append(cv2.getNumThreads())

        t = threading.Thread(target=second)
        t.start()
        with opencv_one_thread():
            first_in.set()
            assert second_in.wait(10)
        assert cv2.getNumThreads() == 1  # the other is still running
        first_out.set()
        t.join(10)
        assert seen_second == [1] and cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_colorize_items_renders_early_when_over_budget(engine):
    """The sequential path (Ray actors) renders what it holds once the budget
    is used, and still returns every outcome in order."""
    items = [(Named(f"p{i}.png"), png_bytes(make_photo(40, 60, seed=i))) for i in range(4)]
    items.insert(2, (Named("bad.png"), b"not an image"))
    for budget in (1, 10**12):
        options = ColorOptions(memory_budget=budget).for_engine(engine)
        outcomes = colorize_items(items, engine=engine, options=options, batch_size=8)
        assert [o.item.key for o in outcomes] == [it.key for it, _ in items]
        assert [o.state == DONE for o in outcomes] == [True, True, False, True, True]


def test_the_async_budget_serves_a_big_request_before_later_small_ones():
    """A stream of small requests kept a big one (waiting for the budget to empty) out for good."""
    import asyncio

    order: list[str] = []

    async def main():
        budget = memory.AsyncMemoryBudget(100)

        async def request(name: str, nbytes: int, hold_s: float):
            async with budget.hold(nbytes):
                order.append(name)
                await asyncio.sleep(hold_s)

        first = [asyncio.create_task(request(f"small{i}", 30, 0.05)) for i in range(2)]
        await asyncio.sleep(0.01)
        big = asyncio.create_task(request("big", 250, 0.01))  # over the budget: needs it empty
        await asyncio.sleep(0.01)
        later = [asyncio.create_task(request(f"late{i}", 30, 0.05)) for i in range(3)]
        await asyncio.gather(*first, big, *later)
        return budget

    budget = asyncio.run(main())
    assert order[:3] == ["small0", "small1", "big"], order
    assert budget.used == 0 and budget.waiting == 0 and budget.peak == 250


def test_a_16bit_colour_png_is_counted_as_wide():
    import io

    rgb16 = (np.random.default_rng(0).random((30, 40, 3)) * 65535).astype(np.uint16)
    ok, png = cv2.imencode(".png", rgb16)
    wide = memory.encoded_bytes(png.tobytes())
    ok8, png8 = cv2.imencode(".png", (rgb16 >> 8).astype(np.uint8))
    assert wide - len(png.tobytes()) == memory.image_bytes(40, 30, wide=True)
    assert memory.encoded_bytes(png8.tobytes()) - len(png8.tobytes()) == memory.image_bytes(40, 30)
    assert Image.open(io.BytesIO(png.tobytes())).mode == "RGB"  # why the mode alone did not tell


def test_a_share_shrunk_to_its_answer_lets_the_next_request_in():
    """An answer being sent was counted at its image's whole working estimate: a slow download
    then kept every later request out, small ones included (first come, first served)."""
    import asyncio

    async def main():
        budget = memory.AsyncMemoryBudget(100)
        sending = asyncio.Event()
        let_go = asyncio.Event()

        async def slow_download():
            async with budget.hold(90) as share:
                share.shrink(10)  # the image is done; its 10-byte answer is being sent
                sending.set()
                await let_go.wait()

        async def next_big():
            async with budget.hold(80):
                return budget.used

        first = asyncio.create_task(slow_download())
        await sending.wait()
        used = await asyncio.wait_for(next_big(), 5)  # would wait for the download without the shrink
        let_go.set()
        await first
        return used, budget

    used, budget = asyncio.run(main())
    assert used == 90 and budget.used == 0 and budget.peak == 90


def test_a_video_is_counted_by_no_less_than_was_measured():
    """serve counts a video upload by memory.video_bytes: never less than `streamcolor video` was
    measured to use a pixel of frame (benchmarks/bench_memory.py --video, the newest file)."""
    import json
    from pathlib import Path

    newest = max((Path(__file__).resolve().parents[1] / "benchmarks" / "results").glob("memory-video-*.json"))
    measured = [r["bytes_per_frame_pixel"] for r in json.loads(newest.read_text())["runs"] if "bytes_per_frame_pixel" in r]
    assert measured and memory.VIDEO_BYTES_PER_FRAME_PIXEL >= max(measured)
    assert memory.video_bytes(1920, 1080) == 1920 * 1080 * memory.VIDEO_BYTES_PER_FRAME_PIXEL
