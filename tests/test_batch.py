"""colorize_archive and `streamcolor batch`: hostile archives, folders mirrored,
resume after SIGKILL, read-only or full output, the reusable pieces."""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import streamcolor
from streamcolor import archive
from streamcolor.engines import Engine, EngineError, archives
from streamcolor.archive import BatchOptions, Item, colorize_archive, output_name, safe_member_path
from streamcolor.errors import InputError, OutputError
from streamcolor.items import is_job_file
from streamcolor.manifest import DONE, FAILED, FILENAME as MANIFEST, JOB_DIR, PENDING, SKIPPED, Entry, Manifest
from tests.conftest import make_photo, png_bytes

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def jpeg_bytes(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def encoded(arr: np.ndarray, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def huge_png_header(w: int = 100_000, h: int = 100_000) -> bytes:
    """A tiny PNG that declares w x h pixels (a pixel-count decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


GOOD = {  # member -> (bytes, (h, w))
    "photos/a.jpg": (jpeg_bytes(make_photo(120, 170, seed=1)[..., 0]), (120, 170)),
    "photos/b.png": (png_bytes(make_photo(90, 64, seed=2)), (90, 64)),
    "c.webp": (encoded(make_photo(50, 80, seed=3)[..., 1], "WEBP", quality=90), (50, 80)),
    "deep/er/d.tif": (encoded(make_photo(40, 40, seed=4)[..., 2], "TIFF"), (40, 40)),
}
GOOD_JPEG = GOOD["photos/a.jpg"][0]
def corrupted(data: bytes) -> bytes:
    """The same file with one byte of its middle flipped (a PNG's CRC no longer matches)."""
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


BAD_FILES = {  # member -> bytes; all of them "failed"
    "corrupt.png": corrupted(GOOD["photos/b.png"][0]),
    "truncated.jpg": GOOD_JPEG[: len(GOOD_JPEG) // 2],
    "zero.png": b"",
    "notes.png": b"these are not the pixels you are looking for\n",  # (a name that says "image")
    "huge.png": huge_png_header(),
}
ESCAPES = ["../sc-escape.png", "/abs/sc-evil.png", "ok/../../sc-escape2.png", "..\\sc-escape3.png"]


def files_outside(root: Path, out: Path, allowed: set[Path]) -> list[Path]:
    """Every file under ``root`` that is neither under ``out`` nor in ``allowed``."""
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            p = Path(d) / f
            if p in allowed or out in p.parents:
                continue
            found.append(p)
    return found


def good_zip(path: Path, more: dict[str, bytes]) -> Path:
    """A zip of the GOOD members, then ``more`` (name -> bytes)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in {**{n: d for n, (d, _) in GOOD.items()}, **more}.items():
            zf.writestr(name, data)
    return path


def image_outputs(out: Path) -> dict[str, Path]:
    """Output images under OUT by relative path (the job's .streamcolor/ folder and report left out)."""
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and not is_job_file(p.relative_to(out).as_posix())}


def read_report(out: Path) -> dict[str, tuple[str, str]]:
    import csv

    with open(out / archive.REPORT_FILENAME, newline="") as fh:
        return {row["member"]: (row["state"], row["reason"]) for row in csv.DictReader(fh)}


def assert_escapes_refused(problems: dict[str, tuple[str, str]]) -> None:
    for name in ESCAPES:
        state, reason = problems[name]
        assert state == SKIPPED
        assert "outside the output folder" in reason


def assert_bad_files_failed(problems: dict[str, tuple[str, str]]) -> None:
    assert problems["zero.png"] == (FAILED, "empty (0 bytes)")
    assert "not an image" in problems["notes.png"][1]
    for name in ("corrupt.png", "truncated.jpg"):
        assert problems[name][0] == FAILED and "corrupt or truncated" in problems[name][1]
    assert problems["huge.png"][0] == FAILED
    assert "100000x100000" in problems["huge.png"][1] or "bomb" in problems["huge.png"][1]


def assert_good_outputs(out: Path, expected: dict[str, tuple[int, int]]) -> None:
    outputs = image_outputs(out)
    assert set(outputs) == set(expected), set(outputs) ^ set(expected)
    for rel, (h, w) in expected.items():
        with Image.open(outputs[rel]) as im:
            im.load()
            assert im.size == (w, h) and im.mode in ("RGB", "RGBA")


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*.part")]


# ---------------------------------------------------------------------------------------------
# hostile archives
# ---------------------------------------------------------------------------------------------


def build_hostile_zip(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, (data, _) in GOOD.items():
                zf.writestr(name, data)
            zf.writestr("photos/a.jpg", GOOD_JPEG)  # a second member of the same name
            for name, data in BAD_FILES.items():
                zf.writestr(name, data)
            for name in ESCAPES:
                zf.writestr(zipfile.ZipInfo(name), GOOD_JPEG)
            link = zipfile.ZipInfo("link.png")
            link.create_system = 3
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(link, "../../../etc/passwd")
            zf.writestr("bomb.png", bytes(50 << 20))  # 50 MB of zeros: ~50 KB deflated
            zf.writestr("__MACOSX/._a.jpg", b"junk")  # OS junk: ignored, not reported
            zf.writestr("photos/@eaDir/a.jpg/SYNOPHOTO_THUMB_XL.jpg", GOOD_JPEG)  # a NAS's thumbnails: the same
    names = zipfile.ZipFile(path).namelist()
    assert "/abs/sc-evil.png" in names and "../sc-escape.png" in names


def build_hostile_tar(path: Path, mode: str) -> None:
    def add(tf, name, data=b"", kind=tarfile.REGTYPE, linkname=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.size, ti.mtime = kind, linkname, len(data), 1_700_000_000
        tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tf:
        for name, (data, _) in GOOD.items():
            add(tf, name, data)
        for name, data in BAD_FILES.items():
            add(tf, name, data)
        for name in ESCAPES:
            add(tf, name, GOOD_JPEG)
        add(tf, "link.png", kind=tarfile.SYMTYPE, linkname="../../../etc/passwd")
        add(tf, "hard.png", kind=tarfile.LNKTYPE, linkname="/etc/passwd")
        add(tf, "dev.png", kind=tarfile.CHRTYPE)
        add(tf, "fifo.png", kind=tarfile.FIFOTYPE)
        add(tf, "bomb.png", bytes(50 << 20))
    assert "/abs/sc-evil.png" in tarfile.open(path).getnames()


def test_hostile_zip(engine, tmp_path):
    src = tmp_path / "in" / "hostile.zip"
    src.parent.mkdir()
    build_hostile_zip(src)
    out = tmp_path / "out"
    report = colorize_archive(src, out, engine=engine, progress=False,
                              options=BatchOptions(render_size=64, batch_size=3))
    problems = read_report(out)
    assert_escapes_refused(problems)
    assert_bad_files_failed(problems)
    assert problems["link.png"][0] == SKIPPED and "symbolic link" in problems["link.png"][1]
    assert problems["bomb.png"][0] == SKIPPED and "zip bomb" in problems["bomb.png"][1]
    expected = {name: hw for name, (_, hw) in GOOD.items()} | {"photos/a~2.jpg": GOOD["photos/a.jpg"][1]}
    assert_good_outputs(out, expected)
    assert (report.done, report.failed, report.skipped) == (len(expected), len(BAD_FILES), len(ESCAPES) + 2)
    assert not report.ok and report.total == len(expected) + len(problems)
    assert files_outside(tmp_path, out, {src}) == []
    assert not Path("/abs/sc-evil.png").exists()
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz")])
def test_hostile_tar(engine, tmp_path, mode, suffix):
    src = tmp_path / "in" / f"hostile{suffix}"
    src.parent.mkdir()
    build_hostile_tar(src, mode)
    out = tmp_path / "out"
    report = colorize_archive(src, out, engine=engine, progress=False,
                              options=BatchOptions(render_size=64, max_member_bytes=16 << 20))
    problems = read_report(out)
    assert_escapes_refused(problems)
    assert_bad_files_failed(problems)
    for name, words in [("link.png", "symbolic link"), ("hard.png", "hard link"), ("dev.png", "character device"),
                        ("fifo.png", "FIFO"), ("bomb.png", "size limit")]:
        assert problems[name][0] == SKIPPED and words in problems[name][1], problems[name]
    assert_good_outputs(out, {name: hw for name, (_, hw) in GOOD.items()})
    assert (report.done, report.failed, report.skipped) == (len(GOOD), len(BAD_FILES), len(ESCAPES) + 5)
    assert files_outside(tmp_path, out, {src}) == []
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz")])
def test_a_hard_link_in_a_tar_is_its_targets_bytes_under_its_own_name(engine, tmp_path, mode, suffix):
    """GNU tar stores a file's second name as a hard link to the first (`tar cf x.tar -C folder .`):
    both are colorized, as the folder would be; a link to anything not earlier in the archive is refused."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(GOOD_JPEG)
    os.link(folder / "a.jpg", folder / "b.jpg")
    src = tmp_path / f"links{suffix}"
    with tarfile.open(src, mode) as tf:
        tf.add(folder, arcname=".")
        ti = tarfile.TarInfo("c.jpg")
        ti.type, ti.linkname = tarfile.LNKTYPE, "later.jpg"  # (not an earlier member)
        tf.addfile(ti)
    assert sorted(m.name for m in tarfile.open(src) if m.islnk()) == ["./b.jpg", "c.jpg"]
    out = tmp_path / "out"
    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert set(image_outputs(out)) == {"a.jpg", "b.jpg"}
    assert (report.done, report.skipped) == (2, 1)
    assert "no earlier file of the archive" in read_report(out)["c.jpg"][1]


def test_truncated_tar_gz_keeps_what_it_can(engine, tmp_path):
    src = tmp_path / "cut.tar.gz"
    with tarfile.open(src, "w:gz") as tf:
        for i in range(6):
            data = png_bytes(make_photo(60, 60, seed=i) + np.uint8(i))  # noisy enough not to compress away
            ti = tarfile.TarInfo(f"p{i}.png")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    src.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(render_size=64))
    assert 1 <= report.done < 6 and report.failed >= 1
    reasons = " ".join(e.reason or "" for e in report.problems)
    assert "truncated" in reasons or "cannot read" in reasons


def test_a_source_that_cannot_be_looked_at_is_reported_and_the_other_sources_done(engine, tmp_path):
    """A name too long for the filesystem: Path.is_dir() raised OSError (ENAMETOOLONG), which stopped
    the whole job, nothing written, where a missing source is one problem among the sources."""
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "x.png").write_bytes(png_bytes(make_photo(40, 40, seed=9)))
    report = colorize_archive([folder, tmp_path / ("x" * 300 + ".zip"), tmp_path / "gone.zip"], tmp_path / "out",
                              engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert (tmp_path / "out" / "more" / "x.png").is_file() and report.done == 1
    reasons = " ".join(e.reason or "" for e in report.problems)
    assert "File name too long" in reasons and "no such file or folder" in reasons, reasons


def test_a_file_keeps_its_own_name_over_one_whose_output_would_take_it(engine, tmp_path, caplog):
    """x.gif's output is a PNG, x.png; the file x.png keeps that name and x.gif takes x~2.png (GIF's
    conversion counted as x.gif's own name, so the first listed, x.gif, took x.png), and the job
    says which files were numbered (it said nothing; the mapping was only in the manifest)."""
    src = tmp_path / "gc"
    src.mkdir()
    for i, name in enumerate(("x.gif", "x.jpg", "x.png")):
        Image.fromarray(make_photo(30, 40, seed=i)[..., 0]).save(src / name)
    with caplog.at_level(logging.INFO, logger="streamcolor"):
        report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                                  options=BatchOptions(render_size=32))
    assert report.done == 3 and sorted(p.name for p in (tmp_path / "out").glob("x*")) == ["x.jpg", "x.png", "x~2.png"]
    assert "1 file(s) take a numbered output name" in caplog.text and "gc/x.gif -> x~2.png" in caplog.text
    with Image.open(tmp_path / "out" / "x.png") as im:  # (x.png's own output: its picture, not x.gif's)
        mean = float(np.asarray(im.convert("L"), np.float32).mean())
    assert abs(mean - float(make_photo(30, 40, seed=2)[..., 0].mean())) < 3


def _tar_of(path: Path, mode: str, n: int = 8) -> list[int]:
    """A tar of ``n`` noisy PNGs at ``path``; the byte offset of each member's header (uncompressed)."""
    offsets = []
    with tarfile.open(path, mode) as tf:
        for i in range(n):
            data = png_bytes(make_photo(40, 40, seed=i) + np.uint8(i))
            ti = tarfile.TarInfo(f"p{i}.png")
            ti.size = len(data)
            offsets.append(tf.offset)
            tf.addfile(ti, io.BytesIO(data))
    return offsets


def test_a_damaged_header_in_the_middle_of_a_tar_is_reported_not_taken_for_its_end(engine, tmp_path):
    """Python's tarfile stops without a word at a header it cannot read after the first member:
    the members after it were lost while the job said every item was done (exit 0)."""
    src = tmp_path / "a.tar"
    offsets = _tar_of(src, "w")
    raw = bytearray(src.read_bytes())
    raw[offsets[5]:offsets[5] + 20] = b"\xaa" * 20
    src.write_bytes(bytes(raw))
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(render_size=64))
    assert report.done == 5 and not report.ok
    reasons = " ".join(e.reason or "" for e in report.problems)
    assert "later members are lost" in reasons and f"at byte {offsets[5]:,}" in reasons, reasons
    # an intact tar: no false alarm (its end blocks are read as its end)
    _tar_of(tmp_path / "ok.tar", "w")
    _tar_of(tmp_path / "ok.tar.gz", "w:gz")
    for i, ok in enumerate(("ok.tar", "ok.tar.gz")):  # (own work folders: out-0-ok/, out-1-ok/)
        report = colorize_archive(tmp_path / ok, tmp_path / f"out-{i}-{ok}", engine=engine, progress=False,
                                  options=BatchOptions(render_size=64))
        assert report.ok and report.done == 8, report.problems


@pytest.mark.parametrize("mode,at", [("w:gz", 0.5), ("w:gz", 0.3), ("w:xz", 0.5)])
def test_corrupt_compressed_data_in_a_tar_is_reported_and_the_other_sources_done(engine, tmp_path, mode, at):
    """50 zero bytes inside a compressed tar: zlib.error and LZMAError (no OSError) stopped the whole
    job with a traceback, the other sources not done; or the damage fell on a header and the members
    after it were lost without a word."""
    src = tmp_path / f"a.tar.{mode[2:]}"
    with tarfile.open(src, mode) as tf:
        for i in range(8):
            data = png_bytes(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8))
            ti = tarfile.TarInfo(f"p{i}.png")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    raw = bytearray(src.read_bytes())
    raw[int(len(raw) * at):int(len(raw) * at) + 50] = bytes(50)
    src.write_bytes(bytes(raw))
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "x.png").write_bytes(png_bytes(make_photo(40, 40, seed=9)))
    report = colorize_archive([src, folder], tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(render_size=64))
    assert (tmp_path / "out" / "more" / "x.png").is_file() and not report.ok
    reasons = " ".join(e.reason or "" for e in report.problems)
    assert "later members are lost" in reasons, reasons


def test_a_compressed_tar_is_checked_to_its_end_without_false_alarms(engine, tmp_path):
    """After the tar's end: xz stream padding and bytes after a gzip stream lose nothing (no
    problem; the padding was reported as "later members are lost"); a gzip whose CRC fails says
    that a member may be damaged, not that members are lost."""
    _tar_of(tmp_path / "a.tar.xz", "w:xz", n=3)
    padded = tmp_path / "padded.tar.xz"
    padded.write_bytes((tmp_path / "a.tar.xz").read_bytes() + bytes(4))  # xz allows 4-byte stream padding
    _tar_of(tmp_path / "b.tar.gz", "w:gz", n=3)
    trailing = tmp_path / "trailing.tar.gz"
    trailing.write_bytes((tmp_path / "b.tar.gz").read_bytes() + b"JUNK AFTER THE STREAM")
    crc = bytearray((tmp_path / "b.tar.gz").read_bytes())
    crc[-8] ^= 0xFF  # the CRC32 in gzip's trailer
    (tmp_path / "crc.tar.gz").write_bytes(bytes(crc))
    for name, fine in (("padded.tar.xz", True), ("trailing.tar.gz", True), ("crc.tar.gz", False)):
        report = colorize_archive(tmp_path / name, tmp_path / f"out-{name}", engine=engine, progress=False,
                                  options=BatchOptions(render_size=64))
        assert report.done == 3 and report.ok == fine, (name, report.problems)
        if not fine:
            reason = report.problems[0].reason
            assert "checksum does not match" in reason and "later members are lost" not in reason, reason


def test_a_member_whose_path_is_over_path_max_fails_alone(engine, tmp_path):
    """A member path of 4.2 KB (21 folders of 200 bytes): the check of which folder above it is a file
    raised ENAMETOOLONG again, which stopped the job (exit 2) at every rerun."""
    src = tmp_path / "deep.zip"
    deep = ("d" * 200 + "/") * 21 + "deep.jpg"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("a.jpg", GOOD_JPEG)
        zf.writestr(deep, GOOD_JPEG)
        zf.writestr("z.jpg", GOOD_JPEG)
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(render_size=64))
    assert report.done == 2 and report.failed == 1, report.problems
    assert "too long" in report.problems[0].reason.lower(), report.problems[0].reason


def test_member_limits_are_configurable(engine, tmp_path):
    src = tmp_path / "a.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("small.jpg", GOOD_JPEG)
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(max_member_bytes=1000, render_size=64))
    assert report.skipped == 1 and "size limit" in report.problems[0].reason
    # the limit raised: the same job picks the refused item up again
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(render_size=64))
    assert report.ok and report.done == 1
    report = colorize_archive(src, tmp_path / "out2", engine=engine, progress=False,
                              options=BatchOptions(max_pixels=100, render_size=64))
    assert report.failed == 1 and "over the limit" in report.problems[0].reason


# ---------------------------------------------------------------------------------------------
# folders, layout, formats
# ---------------------------------------------------------------------------------------------


def test_folder_tree_mirrored_formats_kept(engine, tmp_path):
    src = tmp_path / "scans"
    (src / "1950s" / "summer").mkdir(parents=True)
    (src / "1960s").mkdir()
    gray = make_photo(100, 150, seed=5)[..., 0]
    icc = b"\0" * 16 + b"RGB " + b"\0" * 108  # an RGB profile's header: carried (a gray one is not: test_trust.py)
    Image.fromarray(gray).save(src / "1950s" / "summer" / "beach.jpg", quality=85, icc_profile=icc)
    Image.fromarray((gray.astype(np.uint16) * 257)).save(src / "1950s" / "deep16.png")
    Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 128)])).save(src / "1960s" / "cut.png")
    Image.fromarray(gray).save(src / "1960s" / "old.gif")
    Image.fromarray(gray).save(src / "top.tif")
    (src / ".DS_Store").write_bytes(b"junk")
    for junk in (".thumbnails/normal", ".git/objects/ab", "$Recycle.Bin/S-1-5", ".Trash-1000/files",
                 "RECYCLER/S-1-5"):  # passed over
        (src / junk).mkdir(parents=True)
        (src / junk / "cd.png").write_bytes(GOOD_JPEG)
    (src / "Recycled").mkdir()  # a folder of yours (Windows wrote its old bins in capitals)
    Image.fromarray(gray).save(src / "Recycled" / "paper.jpg")
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(GOOD_JPEG)
    (src / "1960s" / "link-out.jpg").symlink_to(outside)
    (src / "1960s" / "link-in.jpg").symlink_to(src / "1950s" / "summer" / "beach.jpg")
    os.mkfifo(src / "pipe.png")
    out = tmp_path / "colour"

    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))

    outputs = image_outputs(out)
    assert set(outputs) == {"1950s/summer/beach.jpg", "1950s/deep16.png", "1960s/cut.png", "1960s/old.png",
                            "1960s/link-in.jpg", "top.tif", "Recycled/paper.jpg"}
    with Image.open(outputs["1950s/summer/beach.jpg"]) as im:
        assert im.format == "JPEG" and im.size == (150, 100) and im.info.get("icc_profile") == icc
    import cv2

    deep = cv2.imread(str(outputs["1950s/deep16.png"]), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (100, 150, 3)
    with Image.open(outputs["1960s/cut.png"]) as im:
        assert im.mode == "RGBA" and np.asarray(im)[..., 3].max() == 128
    assert Image.open(outputs["top.tif"]).format == "TIFF"
    problems = read_report(out)
    assert set(problems) == {"1960s/link-out.jpg", "pipe.png"}
    assert "outside the source folder" in problems["1960s/link-out.jpg"][1]
    assert "FIFO" in problems["pipe.png"][1]
    assert report.done == 7 and report.skipped == 2


def test_a_rerun_with_other_settings_says_so_and_redo_colorizes_again(engine, tmp_path, caplog):
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(2):
        Image.fromarray(make_photo(48, 64, seed=i)[..., 0]).save(src / f"p{i}.jpg", quality=90)
    out = tmp_path / "out"
    colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    first = {p.name: p.read_bytes() for p in out.glob("*.jpg")}
    (src / "p2.jpg").write_bytes((src / "p0.jpg").read_bytes())  # a new item, done with the new settings

    caplog.clear()
    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=32))
    assert report.done == 3 and report.done_now == 1
    assert {n: (out / n).read_bytes() for n in first} == first  # resumed: kept as they were ...
    said = [r.getMessage() for r in caplog.records if "other settings" in r.getMessage()]
    assert len(said) == 1 and "2 item(s)" in said[0] and "render size 64; this run: render size 32" in said[0]

    caplog.clear()  # the same settings again: the first run's outputs are still there, so it is said again
    colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=32))
    assert any("other settings" in r.getMessage() for r in caplog.records)

    caplog.clear()
    report = colorize_archive(src, out, engine=engine, progress=False,
                              options=BatchOptions(render_size=32, redo=True))
    assert report.done == 3 and report.done_now == 3 and not any("other settings" in r.getMessage()
                                                                   for r in caplog.records)
    assert all((out / n).read_bytes() != first[n] for n in first)  # ... until --redo
    assert sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg", "p1.jpg", "p2.jpg"]  # replaced, not ~2

    caplog.clear()  # now every output has this run's settings: nothing to say
    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=32))
    assert report.done_now == 0 and not any("other settings" in r.getMessage() for r in caplog.records)

    caplog.clear()  # another --format: new names beside the kept ones, and said
    report = colorize_archive(src, out, engine=engine, progress=False,
                              options=BatchOptions(render_size=32, output_format="png"))
    said = [r.getMessage() for r in caplog.records if "under another name" in r.getMessage()]
    assert report.done_now == 3 and len(said) == 1 and said[0].startswith("3 item(s) also have an output")
    for p in out.glob("*.jpg"):
        p.unlink()  # once the old ones are gone, nothing to say
    caplog.clear()
    colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=32, output_format="png"))
    assert not any("under another name" in r.getMessage() for r in caplog.records)

    mixed = tmp_path / "mixed"  # JPEG and PNG outputs: recorded apart (quality), said once
    mixed.mkdir()
    for name in ("a.jpg", "b.png"):
        Image.fromarray(make_photo(48, 64, seed=6)[..., 0]).save(mixed / name)
    colorize_archive(mixed, tmp_path / "mixed-out", engine=engine, progress=False, options=BatchOptions(render_size=64))
    caplog.clear()
    colorize_archive(mixed, tmp_path / "mixed-out", engine=engine, progress=False, options=BatchOptions(render_size=32))
    said = [r.getMessage() for r in caplog.records if "other settings" in r.getMessage()]
    assert len(said) == 1 and "(render size 64; this run: render size 32)" in said[0], said

    # what counts is what the settings resolve to, and quality only where it changes the file
    png = tmp_path / "png"
    png.mkdir()
    Image.fromarray(make_photo(48, 64, seed=5)[..., 0]).save(png / "p.png")
    model = {"render_size": engine.info.meta.get("render_size", 320), "saturation": engine.info.meta.get("saturation", 1.0)}
    for options in (BatchOptions(), BatchOptions(render_size=int(model["render_size"]),
                                                 saturation=float(model["saturation"])), BatchOptions(quality=50)):
        caplog.clear()
        colorize_archive(png, tmp_path / "png-out", engine=engine, progress=False, options=options)
        assert not any("other settings" in r.getMessage() for r in caplog.records), options


def test_an_output_the_user_changed_is_never_replaced(engine, tmp_path, caplog):
    """The job's own output is replaced when its source changes (or with redo) only while it is as the
    job wrote it; one the user retouched is kept and the new output takes ~2.  A plain rerun writes
    nothing at all."""
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(2):
        Image.fromarray(make_photo(48, 64, seed=i)[..., 0]).save(src / f"p{i}.jpg", quality=90)
    out = tmp_path / "out"
    opts = BatchOptions(render_size=32)
    colorize_archive(src, out, engine=engine, progress=False, options=opts)
    retouched = png_bytes(make_photo(48, 64, seed=9))
    (out / "p0.jpg").write_bytes(retouched)  # the user retouches one output

    report = colorize_archive(src, out, engine=engine, progress=False, options=opts)
    assert report.done_now == 0 and sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg", "p1.jpg"]

    time.sleep(0.01)  # both sources are scanned again (new modification times): redone
    for i in range(2):
        Image.fromarray(make_photo(48, 64, seed=i + 4)[..., 0]).save(src / f"p{i}.jpg", quality=90)
    p1_before = (out / "p1.jpg").read_bytes()
    caplog.clear()
    report = colorize_archive(src, out, engine=engine, progress=False, options=opts)
    assert report.ok and report.done_now == 2
    assert (out / "p0.jpg").read_bytes() == retouched  # kept ...
    assert Image.open(out / "p0~2.jpg").size == (64, 48)  # ... and the new output beside it
    assert (out / "p1.jpg").read_bytes() != p1_before and not (out / "p1~2.jpg").exists()  # its own: replaced
    assert any("taken by other files" in r.getMessage() for r in caplog.records)

    redo = BatchOptions(render_size=32, redo=True)
    report = colorize_archive(src, out, engine=engine, progress=False, options=redo)
    assert report.done_now == 2 and (out / "p0.jpg").read_bytes() == retouched
    assert sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg", "p0~2.jpg", "p1.jpg"]

    caplog.clear()  # the names hold on later runs: the retouched file is the user's for good
    caplog.set_level(logging.INFO, logger="streamcolor")
    report = colorize_archive(src, out, engine=engine, progress=False, options=opts)
    assert report.ok and report.done == 2 and report.done_now == 0
    assert not any("under another name" in r.getMessage() for r in caplog.records)
    said = [r for r in caplog.records if "taken by other files" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "INFO" and "kept as written by an earlier run" in said[0].getMessage()
    with Manifest.open(out) as m:
        assert sorted(e.key for e in m.entries()) == ["p0~2.jpg", "p1.jpg"]
    report = colorize_archive(src, out, engine=engine, progress=False, options=redo)
    assert report.done_now == 2 and (out / "p0.jpg").read_bytes() == retouched
    assert sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg", "p0~2.jpg", "p1.jpg"]


def test_a_corrupt_manifest_is_a_clear_error_and_its_advice_keeps_the_outputs(engine, tmp_path):
    """A manifest that is not SQLite stops the job before it writes anything, says which file and
    what to do; moving it away as advised colorizes again beside the earlier outputs, never over them."""
    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(make_photo(48, 64)[..., 0]).save(src / "p0.jpg", quality=90)
    out = tmp_path / "out"
    opts = BatchOptions(render_size=32)
    colorize_archive(src, out, engine=engine, progress=False, options=opts)
    first = (out / "p0.jpg").read_bytes()
    manifest = out / JOB_DIR / MANIFEST
    manifest.write_bytes(b"not a database" * 100)
    with pytest.raises(OutputError) as err:
        colorize_archive(src, out, engine=engine, progress=False, options=opts)
    said = str(err.value)
    assert str(manifest) in said and "cannot open the resume manifest" in said and "new -o folder" in said
    assert (out / "p0.jpg").read_bytes() == first and sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg"]
    manifest.rename(tmp_path / "old-manifest")
    report = colorize_archive(src, out, engine=engine, progress=False, options=opts)
    assert report.ok and report.done_now == 1
    assert (out / "p0.jpg").read_bytes() == first and (out / "p0~2.jpg").is_file()


def test_outputs_written_in_place_by_workers_are_recorded_as_written(tmp_path):
    """The Ray actors write outputs in place and the driver records them: the identity of the file
    there is recorded, replacing an older one, so a retouch is seen on that path too."""
    from streamcolor.archive import BatchJob
    from streamcolor.items import FolderSink, Outcome
    from streamcolor.manifest import file_identity

    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.png").write_bytes(png_bytes(make_photo(16, 16, seed=1)))
    out = tmp_path / "out"
    for i in range(2):
        with BatchJob(src, out, options=BatchOptions(redo=True)) as job:
            for it in job.todo:
                FolderSink(out).write(it.key, png_bytes(make_photo(16, 16, seed=i)))
                job.record(Outcome(it, DONE, output=it.key))
            job.finish()
        with Manifest.open(out) as m:
            assert m.get("a.png").written == file_identity(out / "a.png") is not None
    (out / "a.png").write_bytes(b"retouched")
    with BatchJob(src, out, options=BatchOptions(redo=True)) as job:
        assert [it.key for it in job.todo] == ["a~2.png"]


def test_a_file_of_the_users_named_like_the_report_is_kept(engine, tmp_path, caplog):
    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(make_photo(48, 64, seed=1)[..., 0]).save(src / "p.jpg", quality=90)
    out = tmp_path / "out"
    out.mkdir()
    (out / "streamcolor-report.csv").write_text("my own spreadsheet\n")
    for _ in range(2):  # the second run replaces its own numbered report
        caplog.clear()
        report = colorize_archive(src, out, engine=engine, progress=False)
        assert Path(report.report).name == "streamcolor-report~2.csv" and report.ok
        assert any("is not a report this job wrote" in r.getMessage() for r in caplog.records)
    assert (out / "streamcolor-report.csv").read_text() == "my own spreadsheet\n"
    assert sorted(p.name for p in out.glob("*.csv")) == ["streamcolor-report.csv", "streamcolor-report~2.csv"]
    assert is_job_file("streamcolor-report~2.csv") and not is_job_file("streamcolor-report~x.csv")

    (out / "streamcolor-report.csv").unlink()  # gone: the plain name again, and its own file is replaced
    for _ in range(2):
        report = colorize_archive(src, out, engine=engine, progress=False)
        assert Path(report.report).name == "streamcolor-report.csv"
    (out / "streamcolor-report.csv").write_text("state,source,member,reason\nmy notes\n")  # edited since
    report = colorize_archive(src, out, engine=engine, progress=False)
    assert Path(report.report).name == "streamcolor-report~3.csv"  # (~2 is the first runs', not the last's)
    assert (out / "streamcolor-report.csv").read_text() == "state,source,member,reason\nmy notes\n"


def test_files_that_are_no_images_by_their_names_are_left_out_not_failed(engine, tmp_path, caplog):
    """A folder of photos holds README.txt, sidecars and clips; an earlier output folder holds the job's
    own files.  They are left out and said once, so a job of good photos ends with every item done
    (exit 0), not failed for ever; a name that says image (or says nothing) is still tried."""
    src = tmp_path / "album"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(make_photo(48, 64, seed=1)[..., 0]).save(src / "p.jpg", quality=90)
    Image.fromarray(make_photo(48, 64, seed=2)[..., 0]).save(src / "sub" / "SCAN0001", format="PNG")  # no suffix
    for name in ("README.txt", "p.xmp", "sub/clip.MP4", "index.html", "sub/data.json"):
        (src / name).write_bytes(b"not a photo")
    (src / "odd.png").write_bytes(b"not a photo either")  # its name says image: tried, and failed
    caplog.set_level(logging.WARNING, logger="streamcolor")  # (an earlier CLI test may have set the root's level higher)
    caplog.clear()
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False)
    assert (report.total, report.done, report.failed) == (3, 2, 1)
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("5 file(s) left out: not images") and "streamcolor video" in said[0]
    assert set(read_report(tmp_path / "out")) == {"odd.png"}

    (src / "odd.png").unlink()
    first = colorize_archive(src, tmp_path / "out", engine=engine, progress=False)
    assert first.ok
    again = colorize_archive(tmp_path / "out", tmp_path / "again", engine=engine, progress=False)  # an output as source
    assert again.ok and again.total == 2, again.summary()  # its .streamcolor/ and report are not items


def test_one_unreadable_source_among_several_is_reported_and_the_others_are_done(engine, tmp_path, caplog):
    scans = tmp_path / "scans"
    scans.mkdir()
    Image.fromarray(make_photo(48, 64, seed=1)[..., 0]).save(scans / "p.jpg", quality=90)
    good_zip = tmp_path / "album.zip"
    with zipfile.ZipFile(good_zip, "w") as zf:
        zf.writestr("q.jpg", (scans / "p.jpg").read_bytes())
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(good_zip.read_bytes()[:-30])  # its central directory cut off
    out = tmp_path / "out"
    caplog.clear()
    report = colorize_archive([scans, damaged, tmp_path / "missing"], out, engine=engine, progress=False)
    assert (report.done, report.failed, report.total) == (1, 2, 3)
    assert (out / "scans" / "p.jpg").is_file()
    problems = {Path(p.source).name: p.reason for p in report.problems}
    assert set(problems) == {"damaged.zip", "missing"} and "cannot open as zip" in problems["damaged.zip"]
    assert sum("the other sources are colorized" in r.getMessage() for r in caplog.records) == 2

    damaged.write_bytes(good_zip.read_bytes())  # mended: the rerun does it, into the folder of its name
    report = colorize_archive([scans, damaged, tmp_path / "missing"], out, engine=engine, progress=False)
    assert (report.done, report.failed, report.done_now) == (2, 1, 1) and (out / "damaged" / "q.jpg").is_file()

    with pytest.raises(InputError, match="no such file"):  # nothing at all to do: the job cannot start
        colorize_archive([tmp_path / "missing", tmp_path / "gone"], tmp_path / "out2", engine=engine, progress=False)
    with pytest.raises(InputError, match="no such file"):
        colorize_archive(tmp_path / "missing", tmp_path / "out3", engine=engine, progress=False)


def test_a_rerun_resumes_whatever_the_spelling_of_the_source(engine, tmp_path, monkeypatch):
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(2):
        Image.fromarray(make_photo(48, 64, seed=i)[..., 0]).save(src / f"p{i}.jpg", quality=90)
    monkeypatch.chdir(tmp_path)
    first = colorize_archive("./scans/", "out", engine=engine, progress=False)
    assert first.done_now == 2
    for spelling in (str(src), "scans", str(tmp_path / "out" / ".." / "scans")):
        report = colorize_archive(spelling, "out", engine=engine, progress=False)
        assert report.done == 2 and report.done_now == 0, spelling
    (tmp_path / "elsewhere").mkdir()  # a rerun from another folder, then from the first one again
    for cwd, spelling, out in (("elsewhere", "../scans", "../out"), (".", "scans", "out")):
        monkeypatch.chdir(tmp_path / cwd)
        report = colorize_archive(spelling, out, engine=engine, progress=False)
        assert report.done == 2 and report.done_now == 0, (cwd, spelling)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == ["p0.jpg", "p1.jpg"]


def test_a_source_given_as_dot_is_named_by_its_folder_in_messages(engine, tmp_path, monkeypatch, caplog):
    src = tmp_path / "scans"
    src.mkdir()
    (src / "bad.jpg").write_bytes(b"")
    Image.fromarray(make_photo(48, 64, seed=1)[..., 0]).save(src / "p.jpg", quality=90)
    monkeypatch.chdir(src)
    caplog.set_level(logging.INFO)
    report = colorize_archive(".", tmp_path / "out", engine=engine, progress=False)
    assert (report.done, report.failed) == (1, 1)
    said = [r.getMessage() for r in caplog.records if "bad.jpg" in r.getMessage()]
    assert said and all("scans/bad.jpg" in m for m in said), said  # not "/bad.jpg"
    assert archives.member_label("..", "folder", "a.jpg") == f"{tmp_path.name}/a.jpg"
    assert archives.member_label("album.zip", "zip", "d/a.jpg") == "album.zip:d/a.jpg"


def test_a_packed_archive_whose_job_folder_was_removed_is_kept_and_said_so(engine, tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(make_photo(48, 64, seed=1)[..., 0]).save(src / "p.jpg", quality=90)
    colorize_archive(src, tmp_path / "pk.zip", engine=engine, progress=False)
    before = (tmp_path / "pk.zip").read_bytes()
    shutil.rmtree(tmp_path / "pk")
    with pytest.raises(OutputError, match="a file this job has no record of packing .* the archive of a job whose "
                                          "folder OUTPUT was removed"):
        colorize_archive(src, tmp_path / "pk.zip", engine=engine, progress=False)
    assert (tmp_path / "pk.zip").read_bytes() == before


def test_a_name_that_is_both_a_file_and_a_folder_is_numbered_not_failed(engine, tmp_path):
    src = tmp_path / "odd.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for name in ("a.jpg", "a.jpg/b.jpg", "A.JPG/c.jpg", "d.png/e.jpg", "d.png"):  # a folder first, then a file
            zf.writestr(name, GOOD_JPEG)
    out = tmp_path / "out"
    for run in range(2):
        report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
        assert report.done == 5 and report.failed == 0 and report.done_now == (5, 0)[run], report.problems
    assert sorted(image_outputs(out)) == ["A~2.JPG/c.jpg", "a.jpg", "a~2.jpg/b.jpg", "d.png/e.jpg", "d~2.png"]


def test_names_that_differ_only_in_unicode_form_get_two_outputs_and_a_zip_that_unpacks_on_a_mac(engine, tmp_path):
    """An archive made on Linux may hold café.jpg twice, as NFC and as NFD: two files here, one on
    macOS. Each gets its own output (the later numbered), in a folder and in a packed zip alike."""
    src = tmp_path / "names.zip"
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"
    with zipfile.ZipFile(src, "w") as zf:
        for name in (nfc, nfd, f"x/{nfc}", f"X/{nfd}"):
            zf.writestr(name, GOOD_JPEG)
    out = tmp_path / "out"
    for run in range(2):
        report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
        assert report.done == 4 and report.failed == 0 and report.done_now == (4, 0)[run], report.problems
    got = sorted(image_outputs(out))
    assert len(got) == 4 and nfc in got and "cafe\u0301~2.jpg" in got, got
    assert len({archives.name_key(k) for k in got}) == 4  # four files on a case- and form-insensitive disk too
    packed = tmp_path / "packed.zip"
    colorize_archive(src, packed, engine=engine, progress=False, options=BatchOptions(render_size=64))
    with zipfile.ZipFile(packed) as zf:
        names = [n for n in zf.namelist() if n.endswith(".jpg")]
    assert len(names) == 4 and len({archives.name_key(n) for n in names}) == 4, names


def test_a_job_begun_before_names_were_compared_by_unicode_form_resumes_in_place(engine, tmp_path, monkeypatch):
    """Before, café.jpg in NFC and in NFD were two outputs with their own names; a rerun now keeps
    both where they are (outputs never move) and colorizes nothing again."""
    from streamcolor.archive import job, listing

    src = tmp_path / "names.zip"
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"
    with zipfile.ZipFile(src, "w") as zf:
        for name in (nfc, nfd):
            zf.writestr(name, GOOD_JPEG)
    out = tmp_path / "out"
    with monkeypatch.context() as m:  # the earlier version: names compared by case only
        for module in (job, listing):
            m.setattr(module, "name_key", str.casefold)
        colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert sorted(image_outputs(out)) == sorted([nfc, nfd])
    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert report.done == 2 and report.done_now == 0, report.problems
    assert sorted(image_outputs(out)) == sorted([nfc, nfd])


def test_unlistable_sub_folder_is_reported(tmp_path, monkeypatch):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.jpg").write_bytes(GOOD_JPEG)
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):  # root ignores permissions, so deny one folder this way
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = archive.list_items([archive.open_source(tmp_path)])
    assert [i.key for i in items if not i.refusal] == ["ok/a.jpg"]
    [locked] = [i for i in items if i.refusal]
    assert locked.member == "locked/" and locked.refusal_state == FAILED and "Permission denied" in locked.refusal


def test_several_sources_format_and_packed_archive(engine, tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(GOOD_JPEG)
    z = tmp_path / "album.zip"  # same name as the folder: gets ~2
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("in/zip.png", GOOD["photos/b.png"][0])
        zf.writestr("in/zip.jpg", GOOD_JPEG)  # zip.png and zip.jpg both become zip.png
    t = tmp_path / "more.tar.xz"
    with tarfile.open(t, "w:xz") as tf:
        ti = tarfile.TarInfo("t.webp")
        ti.size = len(GOOD["c.webp"][0])
        tf.addfile(ti, io.BytesIO(GOOD["c.webp"][0]))

    report = colorize_archive([folder, z, t], tmp_path / "out.tar.gz", engine=engine, progress=False,
                              options=BatchOptions(output_format="png", render_size=64))

    assert report.ok and report.output == tmp_path / "out"
    expected = {"album/x.png", "album~2/in/zip.png", "album~2/in/zip~2.png", "more/t.png"}
    assert set(image_outputs(tmp_path / "out")) == expected
    assert report.archive == tmp_path / "out.tar.gz"
    with tarfile.open(report.archive) as tf:
        assert set(tf.getnames()) == expected
        assert all(Image.open(tf.extractfile(n)).format == "PNG" for n in expected)


def test_a_rerun_with_nothing_new_does_not_pack_the_archive_again(engine, tmp_path, caplog):
    """A rerun that colorizes nothing packed the whole archive again each time (a minute for 400
    photos in .tar.xz); an output changed since, or one more, packs it again."""
    folder = tmp_path / "album"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(GOOD_JPEG)
    options = BatchOptions(render_size=32)
    first = colorize_archive(folder, tmp_path / "out.tar.xz", engine=engine, progress=False, options=options)
    inode = first.archive.stat().st_ino
    with caplog.at_level(logging.INFO, logger="streamcolor"):
        again = colorize_archive(folder, tmp_path / "out.tar.xz", engine=engine, progress=False, options=options)
    assert again.archive == first.archive and again.archive.stat().st_ino == inode
    assert "unchanged since it was packed; not packed again" in caplog.text
    (folder / "y.jpg").write_bytes(GOOD_JPEG)
    more = colorize_archive(folder, tmp_path / "out.tar.xz", engine=engine, progress=False, options=options)
    assert more.archive.stat().st_ino != inode
    with tarfile.open(more.archive) as tf:
        assert sorted(tf.getnames()) == ["x.jpg", "y.jpg"]


def test_output_overlapping_source_is_refused(engine, tmp_path):
    (tmp_path / "a.jpg").write_bytes(GOOD_JPEG)
    with pytest.raises(ValueError, match="overlap"):
        colorize_archive(tmp_path, tmp_path / "out", engine=engine, progress=False)
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.jpg", GOOD_JPEG)
    with pytest.raises(ValueError, match="replace the source"):
        colorize_archive(z, tmp_path / "x", engine=engine, progress=False, options=BatchOptions(archive="same"))
    with pytest.raises(InputError, match="not a folder, zip or tar"):
        colorize_archive(tmp_path / "a.jpg", tmp_path / "o2", engine=engine, progress=False)


def test_a_backslash_in_a_file_name_is_kept_not_made_a_folder(engine, tmp_path):
    """In a folder on POSIX, `back\\slash.jpg` is one file's name: mirrored as it is, beside the
    real `back/slash.jpg`, which keeps its own name; in a zip, `\\` separates folders (Windows)."""
    src = tmp_path / "in"
    (src / "back").mkdir(parents=True)
    (src / "back\\slash.jpg").write_bytes(GOOD_JPEG)
    (src / "back" / "slash.jpg").write_bytes(GOOD_JPEG)
    out = tmp_path / "out"
    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert report.ok and set(image_outputs(out)) == {"back\\slash.jpg", "back/slash.jpg"}
    packed = tmp_path / "packed.zip"  # (zip readers take "\\" for a folder: it is packed as "_")
    assert colorize_archive(src, packed, engine=engine, progress=False, options=BatchOptions(render_size=64)).ok
    assert sorted(n for n in zipfile.ZipFile(packed).namelist() if n.endswith(".jpg")) == ["back/slash.jpg",
                                                                                           "back_slash.jpg"]
    z = tmp_path / "win.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("dir\\a.jpg", GOOD_JPEG)
    report = colorize_archive(z, tmp_path / "zout", engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert report.ok and set(image_outputs(tmp_path / "zout")) == {"dir/a.jpg"}


def test_safe_member_path_and_output_name():
    assert safe_member_path("a/./b//c.jpg") == ("a/b/c.jpg", None)
    assert safe_member_path("win\\dir\\c.jpg") == ("win/dir/c.jpg", None)
    # a POSIX file's name holds "\\" as a character; climbing out the Windows way is refused still
    assert safe_member_path("back\\slash.jpg", backslashes=False) == ("back\\slash.jpg", None)
    assert safe_member_path("..\\x.png", backslashes=False)[0] is None
    assert safe_member_path("C:\\x.png", backslashes=False)[0] is None
    for bad in ["/etc/x.png", "../x.png", "a/../../x.png", "C:\\x.png", "..\\x.png", "", "./", "a\x00.png"]:
        path, reason = safe_member_path(bad)
        assert path is None and reason
    assert output_name("a/b.JPG") == "a/b.JPG"
    assert output_name("a/b.gif") == "a/b.png"
    assert output_name("noext") == "noext.png"
    assert output_name("a/b.JPEG", "jpg") == "a/b.JPEG"
    assert output_name("a/b.png", "webp") == "a/b.webp"
    assert output_name("a/b.tiff", "tiff") == "a/b.tiff"


# ---------------------------------------------------------------------------------------------
# the reusable pieces: manifest, process_items, colorize_batch
# ---------------------------------------------------------------------------------------------


def test_manifest_sync_mark_and_reset(tmp_path):
    with Manifest.open(tmp_path) as m:
        got = m.sync([Entry("a.png", "src", "a.png", "1:1", PENDING), Entry("?0:../b", "src", "../b", "1:2",
                                                                              SKIPPED, "unsafe")])
        assert got["a.png"].state == PENDING and got["?0:../b"].reason == "unsafe"
        m.mark("a.png", DONE, output="a.png")
        with pytest.raises(KeyError):
            m.mark("nope", DONE)
    with Manifest.open(tmp_path) as m:  # reopened: the state is kept
        assert m.sync([Entry("a.png", "src", "a.png", "1:1", PENDING)])["a.png"].state == DONE
        assert m.sync([Entry("a.png", "src", "a.png", "2:9", PENDING)])["a.png"].state == PENDING  # changed
        assert m.counts() == {PENDING: 1, DONE: 0, FAILED: 0, SKIPPED: 1}
    con = sqlite3.connect(tmp_path / JOB_DIR / MANIFEST)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_process_items_matches_the_pipeline(engine, tmp_path):
    """The sequential unit of work (what a Ray actor runs) writes what the threaded pipeline writes."""
    src = good_zip(tmp_path / "in.zip", {"notes.jpg": b"text"})
    options = BatchOptions(render_size=64)
    colorize_archive(src, tmp_path / "piped", engine=engine, progress=False, options=options)
    with archive.open_source(src, options) as source:
        items = archive.list_items([source], options)
        outcomes = archive.process_items([(it, archive.read_item(source, it)) for it in items], engine=engine,
                                         out_dir=tmp_path / "direct", options=options.color_options(engine))
    assert [o.state for o in outcomes] == [DONE] * len(GOOD) + [FAILED]
    assert isinstance(items[0], Item) and outcomes[0].output == "photos/a.jpg"
    for rel in GOOD:
        a = np.asarray(Image.open(tmp_path / "piped" / rel), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "direct" / rel), dtype=np.int16)
        assert np.abs(a - b).max() <= 2


def test_worker_processes_write_what_the_threads_write_and_report_the_bad_files(engine, tmp_path):
    """BatchOptions.processes (--processes): the same outputs, byte for byte, and the same report."""
    src = good_zip(tmp_path / "in.zip", {"notes.jpg": b"text", "broken.png": corrupted(GOOD["photos/b.png"][0])})
    threads = colorize_archive(src, tmp_path / "threads", engine=engine, progress=False,
                               options=BatchOptions(render_size=64))
    procs = colorize_archive(src, tmp_path / "procs", engine=engine, progress=False,
                             options=BatchOptions(render_size=64, processes=2, batch_size=2))
    assert (procs.done, procs.failed) == (threads.done, threads.failed) == (len(GOOD), 2)
    a, b = image_outputs(tmp_path / "threads"), image_outputs(tmp_path / "procs")
    assert sorted(a) == sorted(b) == sorted(GOOD)
    for rel in GOOD:
        assert a[rel].read_bytes() == b[rel].read_bytes(), rel
    assert read_report(tmp_path / "procs") == read_report(tmp_path / "threads")
    assert not [p for p in (tmp_path / "procs").rglob("*") if ".tmp" in p.name or p.name.startswith(".sc")]


class TallFails(Engine):
    """The shipped engine, except that it fails on any batch holding a tall photo (twice as high as wide)."""

    def __init__(self, real: Engine):
        super().__init__(real.info)
        self.real = real

    def forward(self, l):
        if l.shape[1] >= 2 * l.shape[2]:
            raise EngineError("engine failure (injected)")
        return self.real.forward(l)


@pytest.mark.parametrize("processes", [0, 2])
def test_a_photo_the_engine_fails_on_is_reported_and_the_rest_finish(engine, tmp_path, processes):
    """Alone in its batch, the photo the engine fails on is the only one that fails; with worker
    processes, the one that kept its pixels lets them go and goes on (the job does not wait for it)."""
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(6):
        (src / f"p{i}.jpg").write_bytes(jpeg_bytes(make_photo(64, 80, seed=i)[..., 0]))
    (src / "tall.jpg").write_bytes(jpeg_bytes(make_photo(96, 40, seed=9)[..., 0]))
    report = colorize_archive(src, tmp_path / "out", engine=TallFails(engine), progress=False,
                              options=BatchOptions(render_size=64, processes=processes, batch_size=2))
    assert (report.done, report.failed) == (6, 1)
    assert sorted(image_outputs(tmp_path / "out")) == [f"p{i}.jpg" for i in range(6)]
    assert read_report(tmp_path / "out") == {"tall.jpg": (FAILED, "engine error (EngineError: engine failure (injected))")}


def test_a_worker_process_killed_mid_job_stops_it_clearly_and_the_same_call_resumes(engine, tmp_path):
    import multiprocessing

    from streamcolor.errors import StreamcolorError

    src = tmp_path / "scans"
    src.mkdir()
    for i in range(16):
        (src / f"p{i:02d}.jpg").write_bytes(jpeg_bytes(make_photo(64, 80, seed=i)[..., 0]))
    out = tmp_path / "out"
    options = BatchOptions(render_size=64, processes=2, batch_size=2)
    killed = []

    def kill_a_worker(done: int, total: int) -> None:
        if done >= 2 and not killed:
            child = multiprocessing.active_children()[0]
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)

    with pytest.raises(StreamcolorError, match="worker process of the job died.*run the same command again"):
        colorize_archive(src, out, engine=engine, progress=kill_a_worker, options=options)
    kept = image_outputs(out)
    assert killed and 2 <= len(kept) < 16
    before = {rel: p.read_bytes() for rel, p in kept.items()}
    report = colorize_archive(src, out, engine=engine, progress=False, options=options)
    assert report.failed == 0 and len(image_outputs(out)) == 16
    assert (report.done, report.done_now) == (16, 16 - len(kept))  # what the first run recorded is not redone
    assert all((out / rel).read_bytes() == data for rel, data in before.items())
    time.sleep(0.2)
    assert not multiprocessing.active_children()  # no worker left behind


def test_a_script_asking_for_processes_without_the_main_guard_is_told_so_and_loses_nothing(tmp_path):
    """A script that calls colorize_archive(..., processes=N) at its top level is imported again by
    each worker (spawn): the workers refuse to run the job again, and the script is told to put its
    call under the __main__ guard (not that a worker died mid-job and a rerun would help); with the
    guard the same call runs."""
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(3):
        (src / f"p{i}.jpg").write_bytes(jpeg_bytes(make_photo(48, 64, seed=i)[..., 0]))
    call = ("colorize_archive('scans', 'out', progress=False, "
            "options=BatchOptions(render_size=64, processes=2, batch_size=2))")
    head = "from streamcolor.archive import BatchOptions, colorize_archive\n"
    (tmp_path / "bare.py").write_text(head + call + "\n")
    (tmp_path / "guarded.py").write_text(head + "if __name__ == '__main__':\n    print(" + call + ".done)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(streamcolor.__file__).parents[1])}
    res = subprocess.run([sys.executable, "bare.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and "worker processes could not start" in last, res.stderr[-2000:]
    assert 'under `if __name__ == "__main__":`' in last and "run the same command again" not in res.stderr
    assert "this process is a batch worker that is still starting" in res.stderr  # the workers' own error
    assert not image_outputs(tmp_path / "out")
    res = subprocess.run([sys.executable, "guarded.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "3", res.stderr[-2000:]
    assert len(image_outputs(tmp_path / "out")) == 3


def test_colorize_batch_matches_colorize_image(engine):
    from streamcolor import image_io
    from streamcolor.colorize import ColorOptions, colorize_batch

    options = ColorOptions(render_size=64)
    decoded = [image_io.read_image(data) for data, _ in GOOD.values()]
    rgbs = colorize_batch(decoded, engine=engine, options=options)
    for (data, (h, w)), rgb in zip(GOOD.values(), rgbs):
        single = streamcolor.colorize_image(image_io.read_image(data).pixels, engine=engine, options=options)
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
        assert np.abs(rgb.astype(int) - single.astype(int)).max() <= 2


def test_public_api():
    assert streamcolor.colorize_archive is colorize_archive and streamcolor.BatchOptions is BatchOptions
    with pytest.raises(ValueError):
        BatchOptions(output_format="gif")
    with pytest.raises(ValueError):
        BatchOptions(archive="rar")


# ---------------------------------------------------------------------------------------------
# failure of the output location
# ---------------------------------------------------------------------------------------------


def make_folder(path: Path, n: int, size=(48, 64)) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(make_photo(*size, seed=i)[..., 0]).save(path / f"p{i:03d}.jpg", quality=90)


def failing_replace_after(monkeypatch, n_ok: int, err: int) -> None:
    """The filesystem fails with ``err`` after ``n_ok`` renames (an output is moved into place by
    os.link, or by os.replace where it replaces its own earlier output)."""
    calls = {"n": 0}

    def failing(real):
        def move(a, b, *args, **kw):
            calls["n"] += 1
            if calls["n"] > n_ok:
                raise OSError(err, os.strerror(err), str(b))
            return real(a, b, *args, **kw)
        return move

    monkeypatch.setattr(os, "replace", failing(os.replace))
    monkeypatch.setattr(os, "link", failing(os.link))


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC])
def test_unwritable_output_stops_cleanly_and_resumes(engine, tmp_path, monkeypatch, err):
    src, out = tmp_path / "src", tmp_path / "out"
    make_folder(src, 12)
    failing_replace_after(monkeypatch, 5, err)
    with pytest.raises(OutputError, match=os.strerror(err)):
        colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64, batch_size=2))
    monkeypatch.undo()

    with Manifest.open(out) as m:
        done = {e.key for e in m.entries([DONE])}
        assert m.counts()[FAILED] == 0 and m.counts()[SKIPPED] == 0  # nothing blamed on the items
    written = set(image_outputs(out))
    assert done == written and 1 <= len(done) <= 5  # the manifest reflects exactly the finished items
    assert no_temp_files(out)
    before = {rel: (p.stat().st_ino, p.stat().st_mtime_ns) for rel, p in image_outputs(out).items()}

    report = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert report.ok and report.done == 12 and report.done_now == 12 - len(done)
    after = image_outputs(out)
    assert len(after) == 12
    assert all((after[rel].stat().st_ino, after[rel].stat().st_mtime_ns) == v for rel, v in before.items())


def test_cli_unwritable_output_exits_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from streamcolor.commands.batch import command

    src = tmp_path / "src"
    make_folder(src, 3)
    failing_replace_after(monkeypatch, 0, errno.EROFS)
    result = CliRunner().invoke(command, [str(src), "-o", str(tmp_path / "out"), "--no-progress", "-r", "64"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Read-only file system" in result.output
    monkeypatch.undo()
    result = CliRunner().invoke(command, [str(tmp_path / "missing"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no such file" in result.output


# ---------------------------------------------------------------------------------------------
# the command line: exit codes, SIGKILL and resume
# ---------------------------------------------------------------------------------------------


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamcolor", "batch", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, **kw)


def test_cli_exit_codes(tmp_path):
    src = tmp_path / "src"
    make_folder(src, 2)
    ok = run_cli(str(src), "-o", str(tmp_path / "out"), "--no-progress", "-r", "64")
    assert ok.returncode == 0, ok.stderr
    assert "2 ok, 0 skipped, 0 failed" in ok.stdout
    (src / "bad.jpg").write_bytes(b"nope")
    bad = run_cli(str(src), "-o", str(tmp_path / "out"), "--no-progress", "-r", "64")
    assert bad.returncode == 1 and "2 from an earlier run" in bad.stdout and "streamcolor-report.csv" in bad.stdout
    usage = run_cli(str(src), "-o", str(tmp_path / "o"), "--format", "gif")
    assert usage.returncode == 2


def done_count(manifest: Path) -> int:
    if not manifest.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM items WHERE state = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_midway_then_resume(tmp_path):
    n = 48
    src, out = tmp_path / "src", tmp_path / "out"
    make_folder(src, n, size=(240, 320))
    args = [str(src), "-o", str(out), "--no-progress", "-b", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "batch", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while done_count(out / JOB_DIR / MANIFEST) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Manifest.open(out) as m:
        done_rows = list(m.entries([DONE]))
    done_before = {e.key for e in done_rows}
    assert 4 <= len(done_before) < n, "killed too late to test resume"
    before = {}
    for e in done_rows:  # a done row always has its complete file: renamed, or (killed just before) still staged
        path = out / e.key if (out / e.key).is_file() else (out / e.key).parent / (e.temp or "-")
        before[e.key] = (path.stat().st_ino, path.stat().st_mtime_ns)

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"{n} ok ({len(done_before)} from an earlier run)" in again.stdout

    outputs = image_outputs(out)
    assert sorted(outputs) == sorted(f"p{i:03d}.jpg" for i in range(n))  # each item exactly once
    for rel, p in outputs.items():
        with Image.open(p) as im:
            im.load()
            assert im.size == (320, 240) and im.mode == "RGB"
    for rel, v in before.items():  # finished items were not written again
        assert (outputs[rel].stat().st_ino, outputs[rel].stat().st_mtime_ns) == v
    assert no_temp_files(tmp_path)
    with Manifest.open(out) as m:
        assert m.counts()[DONE] == n


def test_batch_size_defaults_to_the_engines_preferred_batch(engine):
    """BatchOptions() asks the engine (8 on a CPU, 64 on a GPU: at 8 a GPU spends most of each call
    outside the network); a Ray driver, holding no engine, sizes its chunks at DEFAULT_BATCH."""
    from streamcolor.archive.listing import DEFAULT_BATCH

    assert BatchOptions().batch_for(engine) == engine.preferred_batch_size
    assert BatchOptions().batch_for() == DEFAULT_BATCH == 8
    assert BatchOptions(batch_size=3).batch_for(engine) == BatchOptions(batch_size=3).batch_for() == 3
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        BatchOptions(batch_size=0)


def _folder_job(engine, tmp_path: Path, files: dict[str, bytes]):
    """`batch` of a folder holding ``files`` into tmp_path/out (render 64): its report."""
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    return colorize_archive(src, tmp_path / "out", engine=engine, progress=False, options=BatchOptions(render_size=64))


def test_a_document_among_photos_is_named_as_such(engine, tmp_path):
    """A PDF under a photo's name, and an EPS where Ghostscript is missing: batch said "not an image
    file" and "corrupt or truncated image (Unable to locate Ghostscript)"; `image` already said what
    they are and how to make images of them, and now batch says the same."""
    from PIL import EpsImagePlugin

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    report = _folder_job(engine, tmp_path, {"scan.jpg": b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "logo.eps": eps})
    reasons = {Path(p.member).name: p.reason for p in report.problems}
    assert "a PDF document: export its pages as images" in reasons["scan.jpg"], reasons
    if not EpsImagePlugin.has_ghostscript():
        assert "a PostScript document: export it as an image" in reasons["logo.eps"], reasons


def test_the_report_csv_holds_no_raw_control_characters(engine, tmp_path):
    """A name with an escape sequence was written raw into streamcolor-report.csv, so `cat` of the
    report drove the terminal; it is escaped, as on stderr."""
    report = _folder_job(engine, tmp_path, {"red\x1b[31m.jpg": b"not a jpeg", "two\nlines.jpg": b"not a jpeg"})
    assert report.failed == 2
    text = (tmp_path / "out" / "streamcolor-report.csv").read_text()
    assert "\x1b" not in text and "red\\x1b[31m.jpg" in text and "two\\nlines.jpg" in text
    assert len(text.splitlines()) == 3, text


@pytest.mark.slow
def test_worker_processes_end_with_an_interrupted_or_killed_job_and_the_command_resumes(tmp_path):
    """--processes: Ctrl-C stops the job (exit 130) and its workers; SIGKILL of the job ends them too
    (each watches for its parent); the same command then finishes what is left."""
    import psutil

    n = 40
    src, out = tmp_path / "src", tmp_path / "out"
    make_folder(src, n, size=(240, 320))
    # (a small memory budget: the items that come back from the workers must give theirs back)
    args = [str(src), "-o", str(out), "--no-progress", "-b", "2", "--processes", "2", "--memory-budget", "8M"]

    def run_until(done: int, sig: int) -> tuple[int, list[psutil.Process]]:
        proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "batch", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        try:
            while done_count(out / JOB_DIR / MANIFEST) < done:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the batch made no progress"
                time.sleep(0.02)
            workers = psutil.Process(proc.pid).children()
        finally:
            proc.send_signal(sig)
            proc.wait(timeout=60)
        return proc.returncode, workers

    code, workers = run_until(4, signal.SIGINT)
    assert code == 130 and len(workers) >= 2
    gone, alive = psutil.wait_procs(workers, timeout=10)  # (the resource tracker ends as its pipe closes)
    assert not alive, "a worker process outlived the interrupted job"
    first = done_count(out / JOB_DIR / MANIFEST)
    code, workers = run_until(first + 4, signal.SIGKILL)
    assert code == -signal.SIGKILL and len(workers) >= 2
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "a worker process outlived the job's process"
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"{n} ok (" in again.stdout and len(image_outputs(out)) == n


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_worker_processes_stopped_with_the_process_group_as_they_start_the_job_still_ends(tmp_path, sig):
    """A Ctrl-C in a terminal (or `kill -- -PGID`) reaches the workers too; one killed while its Python
    was starting left the job's exit waiting for good on the pool's queue (5 runs of 8 hung)."""
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(12):
        (src / f"p{i:02d}.jpg").write_bytes(jpeg_bytes(make_photo(200, 260, seed=i)[..., 0]))
    for k, delay in enumerate((0.6, 0.9, 1.2)):
        proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "batch", str(src), "-o", str(tmp_path / f"o{k}"),
                                 "-q", "--processes", "2"], start_new_session=True, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        os.killpg(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the job did not end after the group's {sig.name} at {delay} s")
        assert proc.returncode in (0, 128 + sig if sig == signal.SIGTERM else 130), err
        assert "InvalidStateError" not in err.decode()
