"""Hostile and unlucky inputs through the CLI: is anything lost? (issue 14)

Builds a corpus of cases -- corrupt, truncated and empty files, wrong
extensions, pixel and zip bombs, lying sizes, zip-slip spellings, links,
devices and FIFOs, awkward names (not UTF-8, formulas, newlines, very long,
duplicates), nested archives, outputs that collide with inputs -- and runs
``streamcolor image|batch|video`` on each in a child process, as a user would.

A case is *handled* when every check holds:

* the inputs are unchanged (names, types, bytes of every file under ``in/``);
* nothing was written outside the output (``out/``) -- not beside it, not above it;
* the exit status is one the README allows for the case (0 all done, 1 some
  inputs failed, 2 could not start or could not write);
* no Python traceback, and a failing run says why on stderr;
* the case's own check (e.g. one output per input, a report without formulas,
  a user's file in the output folder kept).

Each run's peak RSS is measured (the wrapper's ``RUSAGE_CHILDREN``); the
report gives the peak of the largest input.  Full mode writes
``benchmarks/results/hostile-<date>.json``::

    python benchmarks/bench_hostile.py            # every case (several minutes)
    python benchmarks/bench_hostile.py -k zip     # cases whose name contains "zip"

Smoke mode (the normal suite) runs three cases to keep the machinery working.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_memory import _WRAPPER, make_flat_png  # noqa: E402
from tests.conftest import make_photo  # noqa: E402

log = logging.getLogger(__name__)
RESULTS = ROOT / "benchmarks" / "results"

OK, SOME, FATAL = {0}, {1}, {2}
IMAGE_RE = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")


@dataclass
class Case:
    """One hostile input: ``build(case_dir)`` makes ``in/`` and returns the CLI arguments."""

    name: str
    build: Callable[[Path], list[str]]
    rc: set[int]  # exit statuses the README allows here
    check: Callable[[Path, subprocess.CompletedProcess], str | None] | None = None  # a reason it failed, or None
    tags: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- making inputs


def jpg(arr: np.ndarray | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_photo(90, 120)[..., 0] if arr is None else arr).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def png(arr: np.ndarray | None = None, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(make_photo(90, 120)[..., 0] if arr is None else arr)
    (im.convert(mode) if mode else im).save(buf, "PNG")
    return buf.getvalue()


def encode(fmt: str, im: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declared(width: int, height: int, rows: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` gray, with whatever rows follow."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def png_bomb(side: int) -> bytes:
    """A real, valid gray PNG of side x side zeros: a few hundred KB for hundreds of megapixels."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def zip_of(path: Path, members: dict[str, bytes], *, flag_utf8: bool | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def zip_raw_names(path: Path, members: list[tuple[bytes, bytes]], *, utf8_flag: bool = False) -> Path:
    """A zip whose member names are these raw bytes, with the UTF-8 flag unset
    (cp437 by the spec; what old Windows and cameras write) or set although
    the names are not UTF-8 (what some tools write)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i, (_, data) in enumerate(members):
            zf.writestr(f"PLACEHOLDER{i:03d}.jpg", data)
    raw = bytearray(path.read_bytes())
    for i, (name, _) in enumerate(members):
        ph = f"PLACEHOLDER{i:03d}.jpg".encode()
        assert len(name) == len(ph), "raw names must be as long as the placeholder"
        raw = bytearray(bytes(raw).replace(ph, name))
    if utf8_flag:
        for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            pos = raw.find(signature)
            while pos >= 0:
                flags = struct.unpack_from("<H", raw, pos + at)[0] | 0x800
                struct.pack_into("<H", raw, pos + at, flags)
                pos = raw.find(signature, pos + 4)
    path.write_bytes(bytes(raw))
    return path


def tar_of(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 5
    return info


# --------------------------------------------------------------------------- checks


def outputs(case_dir: Path) -> list[Path]:
    out = case_dir / "out"
    if out.is_file():
        return [out]
    return sorted(p for p in out.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_RE + (".mp4", ".mkv"))


def n_outputs(n: int):
    def check(case_dir: Path, proc) -> str | None:
        got = len(outputs(case_dir))
        return None if got == n else f"{got} outputs, expected {n}"
    return check


def at_least_outputs(n: int):
    def check(case_dir: Path, proc) -> str | None:
        got = len(outputs(case_dir))
        return None if got >= n else f"{got} outputs, expected at least {n}"
    return check


def one_output_per_input_or_refused(n: int):
    """Colliding outputs: either every input gets its own output, or the run
    refuses (non-zero, and says so) -- never one silently replacing another."""
    def check(case_dir: Path, proc) -> str | None:
        got = len(outputs(case_dir))
        if got == n:
            return None
        if proc.returncode != 0 and proc.stderr.strip():
            return None
        return f"{got} outputs for {n} inputs with exit {proc.returncode}: an output was replaced"
    return check


def report_has_no_formulas(case_dir: Path, proc) -> str | None:
    report = case_dir / "out" / "streamcolor-report.csv"
    if not report.exists():
        return "no report"
    for row in csv.reader(io.StringIO(report.read_text(encoding="utf-8", errors="replace"))):
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@"):
                return f"report cell starts a formula: {cell[:40]!r}"
    return None


def kept(rel: str):
    def check(case_dir: Path, proc) -> str | None:
        return None if (case_dir / rel).exists() else f"{rel} was deleted"
    return check


def all_of(*checks):
    def check(case_dir: Path, proc) -> str | None:
        for c in checks:
            if (why := c(case_dir, proc)):
                return why
        return None
    return check


def snapshot(root: Path, skip: Path | None = None, *, contents: bool = True) -> dict[str, str]:
    """name -> type and content hash (``contents``) of everything under ``root`` (links not followed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if skip is not None and p == skip:
                continue
            st = p.lstat()
            key = os.fsencode(p.relative_to(root)).decode("utf-8", "surrogateescape")
            if stat.S_ISREG(st.st_mode):
                out[key] = "f:" + (hashlib.sha256(p.read_bytes()).hexdigest() if contents else "")
            elif stat.S_ISLNK(st.st_mode):
                out[key] = "l:" + os.readlink(p)
            else:
                out[key] = f"t:{stat.S_IFMT(st.st_mode):o}"
    return out


# --------------------------------------------------------------------------- the corpus


def image_case(name: str, files: dict[str, bytes], rc: set[int], check=None, *, extra: list[str] = (),
               out: str = "out/") -> Case:
    def build(d: Path) -> list[str]:
        paths = [str(write(d / "in" / n, data)) for n, data in files.items()]
        return ["image", *paths, "-o", str(d / out), *extra]
    return Case(name, build, rc, check, ("image",))


def batch_case(name: str, make: Callable[[Path], list[Path]], rc: set[int], check=None, *,
               extra: list[str] = ()) -> Case:
    def build(d: Path) -> list[str]:
        (d / "in").mkdir(parents=True, exist_ok=True)
        return ["batch", *map(str, make(d / "in")), "-o", str(d / "out"), "--no-progress", *extra]
    return Case(name, build, rc, check, ("batch",))


def folder(files: dict[str | bytes, bytes]) -> Callable[[Path], list[Path]]:
    def make(d: Path) -> list[Path]:
        src = d / "photos"
        src.mkdir(parents=True)
        for n, data in files.items():
            p = os.path.join(os.fsencode(src), n) if isinstance(n, bytes) else src / n
            Path(os.fsdecode(p)).parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as fh:
                fh.write(data)
        return [src]
    return make


def corpus(work: Path) -> list[Case]:
    good_j, good_p = jpg(), png()
    photo = make_photo(90, 120)
    cases: list[Case] = []
    add = cases.append

    # -- image: contents
    add(image_case("image: valid JPEG", {"a.jpg": good_j}, OK, n_outputs(1)))
    add(image_case("image: valid PNG", {"a.png": good_p}, OK, n_outputs(1)))
    add(image_case("image: truncated JPEG", {"a.jpg": good_j[:len(good_j) // 2]}, OK | SOME))
    add(image_case("image: truncated PNG", {"a.png": good_p[:len(good_p) // 2]}, SOME))
    add(image_case("image: JPEG with a corrupt middle",
                   {"a.jpg": good_j[:600] + bytes(range(256)) * 4 + good_j[1624:]}, OK | SOME))
    add(image_case("image: zero-byte file", {"a.jpg": b""}, SOME))
    add(image_case("image: text named .jpg", {"a.jpg": b"hello, not an image\n" * 10}, SOME))
    add(image_case("image: random bytes named .png", {"a.png": os.urandom(5000)}, SOME))
    add(image_case("image: PNG named .jpg", {"a.jpg": good_p}, OK, n_outputs(1)))
    add(image_case("image: JPEG named .png", {"a.png": good_j}, OK, n_outputs(1)))
    add(image_case("image: PNG header lying about its size (data for far fewer rows)",
                   {"a.png": png_declared(4000, 3000, b"\x00" * 101 * 10)}, SOME))
    add(image_case("image: header declaring 60000x60000 (over the pixel limit)",
                   {"a.png": png_declared(60000, 60000)}, SOME))
    add(image_case("image: real PNG bomb 17000x17000 zeros (289 Mpx, over the limit)",
                   {"a.png": png_bomb(17000)}, SOME))
    add(image_case("image: RGBA PNG", {"a.png": png(np.dstack([photo, photo[..., :1]]))}, OK, n_outputs(1)))
    add(image_case("image: 16-bit gray PNG", {"a.png": encode("PNG", Image.fromarray(
        photo[..., 0].astype(np.uint16) * 257))}, OK, n_outputs(1)))
    add(image_case("image: palette PNG with transparency",
                   {"a.png": encode("PNG", Image.fromarray(photo).convert("P"), transparency=0)}, OK, n_outputs(1)))
    add(image_case("image: CMYK JPEG", {"a.jpg": encode("JPEG", Image.fromarray(photo).convert("CMYK"))}, OK,
                   n_outputs(1)))
    add(image_case("image: EXIF-rotated JPEG", {"a.jpg": encode("JPEG", Image.fromarray(photo), exif=_exif_rotated())},
                   OK, n_outputs(1)))
    add(image_case("image: 1x1 pixel", {"a.png": png(np.array([[128]], np.uint8))}, OK, n_outputs(1)))
    add(image_case("image: 1x20000 strip", {"a.png": png(np.full((1, 20000), 90, np.uint8))}, OK, n_outputs(1)))
    add(image_case("image: WebP", {"a.webp": encode("WEBP", Image.fromarray(photo))}, OK, n_outputs(1)))
    add(image_case("image: BMP", {"a.bmp": encode("BMP", Image.fromarray(photo))}, OK, n_outputs(1)))
    add(image_case("image: TIFF", {"a.tif": encode("TIFF", Image.fromarray(photo))}, OK, n_outputs(1)))
    # (a video, for `video`: given alone to `image`, it stops the run, exit 2, naming that verb: README)
    add(image_case("image: animated GIF (3 frames)", {"a.gif": _gif(3)}, FATAL, at_least_outputs(0)))
    add(image_case("image: multi-page TIFF (3 pages)", {"a.tif": _tiff_pages(3)}, OK | SOME))

    # -- image: names
    add(image_case("image: non-UTF-8 file name", {os.fsdecode(b"caf\xe9.jpg"): good_j}, OK, n_outputs(1)))
    add(image_case("image: formula file name", {"=cmd|' calc'!A0.jpg": good_j}, OK, n_outputs(1)))
    add(image_case("image: newline in file name", {"a\nb.jpg": good_j}, OK, n_outputs(1)))
    add(image_case("image: file name starting with a dash", {"-x.jpg": good_j}, OK, n_outputs(1)))
    add(image_case("image: 250-character file name", {"n" * 246 + ".jpg": good_j}, OK, n_outputs(1)))
    add(image_case("image: two inputs with one name in two folders",
                   {"a/x.jpg": good_j, "b/x.jpg": jpg(make_photo(90, 120, seed=3)[..., 0])}, OK | SOME | FATAL,
                   one_output_per_input_or_refused(2)))

    # -- image: where the output goes
    def onto_inputs(d: Path) -> list[str]:
        a, b = write(d / "in" / "a.jpg", good_j), write(d / "in" / "b.jpg", good_p)
        return ["image", str(a), str(b), "-o", str(d / "in") + "/"]
    add(Case("image: output folder is the inputs' folder", onto_inputs, OK | SOME | FATAL, tags=("image",)))

    def onto_itself(d: Path) -> list[str]:
        a = write(d / "in" / "a.jpg", good_j)
        return ["image", str(a), "-o", str(a)]
    add(Case("image: output file is the input", onto_itself, SOME | FATAL, tags=("image",)))

    def onto_hardlink(d: Path) -> list[str]:
        a = write(d / "in" / "a.jpg", good_j)
        (d / "out").mkdir()
        os.link(a, d / "out" / "a.jpg")
        return ["image", str(a), "-o", str(d / "out") + "/"]
    add(Case("image: output is a hard link to the input", onto_hardlink, SOME | FATAL, tags=("image",)))

    def into_a_file(d: Path) -> list[str]:
        a = write(d / "in" / "a.jpg", good_j)
        write(d / "out", b"a file where the output folder should be")
        return ["image", str(a), "-o", str(d / "out" / "x.png")]
    add(Case("image: output folder's place taken by a file", into_a_file, FATAL, tags=("image",)))

    def unknown_model(d: Path) -> list[str]:
        return ["image", str(write(d / "in" / "a.jpg", good_j)), "-o", str(d / "out") + "/", "-m", "no-such-model"]
    add(Case("image: unknown model", unknown_model, FATAL, tags=("image",)))

    # -- image: special files
    def missing(d: Path) -> list[str]:
        (d / "in").mkdir()
        return ["image", str(d / "in" / "nope.jpg"), "-o", str(d / "out") + "/"]
    add(Case("image: missing file", missing, SOME, tags=("image",)))

    def a_folder(d: Path) -> list[str]:
        (d / "in" / "dir.jpg").mkdir(parents=True)
        return ["image", str(d / "in" / "dir.jpg"), "-o", str(d / "out") + "/"]
    # a folder is `batch`'s input: a usage error with the command to run (exit 2), before anything loads
    add(Case("image: a folder named .jpg", a_folder, FATAL, tags=("image",)))

    def fifo(d: Path) -> list[str]:
        (d / "in").mkdir()
        os.mkfifo(d / "in" / "a.jpg")
        return ["image", str(d / "in" / "a.jpg"), "-o", str(d / "out") + "/"]
    add(Case("image: FIFO named .jpg", fifo, SOME, tags=("image",)))

    def dev_zero(d: Path) -> list[str]:
        (d / "in").mkdir()
        (d / "in" / "zero.jpg").symlink_to("/dev/zero")
        return ["image", str(d / "in" / "zero.jpg"), "-o", str(d / "out") + "/"]
    add(Case("image: link to /dev/zero", dev_zero, SOME, tags=("image",)))

    def dangling(d: Path) -> list[str]:
        (d / "in").mkdir()
        (d / "in" / "gone.jpg").symlink_to(d / "in" / "nowhere.jpg")
        return ["image", str(d / "in" / "gone.jpg"), "-o", str(d / "out") + "/"]
    add(Case("image: dangling symbolic link", dangling, SOME, tags=("image",)))

    def link_ok(d: Path) -> list[str]:
        a = write(d / "in" / "real.jpg", good_j)
        (d / "in" / "link.jpg").symlink_to(a)
        return ["image", str(d / "in" / "link.jpg"), "-o", str(d / "out") + "/"]
    add(Case("image: symbolic link to an image", link_ok, OK, n_outputs(1), tags=("image",)))

    # -- batch: folders
    add(batch_case("batch: folder of good photos", folder({"a.jpg": good_j, "s/b.png": good_p}), OK, n_outputs(2)))
    add(batch_case("batch: folder with a corrupt photo", folder({"a.jpg": good_j, "b.jpg": good_j[:300]}), SOME,
                   n_outputs(1)))
    add(batch_case("batch: empty folder", folder({}), OK))
    add(batch_case("batch: non-UTF-8 names in a folder", folder({b"caf\xe9.jpg": good_j, b"\xff\xfe.png": good_p}),
                   OK, n_outputs(2)))
    add(batch_case("batch: formula names in a folder, one corrupt",
                   folder({"=HYPERLINK(\"http://x\").jpg": good_j[:200], "+1.jpg": good_j}), SOME,
                   report_has_no_formulas))

    def folder_with_fifo(d: Path) -> list[Path]:
        src = folder({"a.jpg": good_j})(d)[0]
        os.mkfifo(src / "b.jpg")
        return [src]
    add(batch_case("batch: FIFO inside a folder", folder_with_fifo, SOME, n_outputs(1)))

    def folder_with_outside_link(d: Path) -> list[Path]:
        src = folder({"a.jpg": good_j})(d)[0]
        write(d / "secret.jpg", good_j)
        (src / "b.jpg").symlink_to(d / "secret.jpg")
        return [src]
    add(batch_case("batch: link out of the folder", folder_with_outside_link, SOME, n_outputs(1)))

    def fifo_source(d: Path) -> list[Path]:
        os.mkfifo(d / "album.zip")
        return [d / "album.zip"]
    add(batch_case("batch: FIFO named .zip as the source", fifo_source, FATAL))

    def dev_source(d: Path) -> list[Path]:
        (d / "zero.tar").symlink_to("/dev/zero")
        return [d / "zero.tar"]
    add(batch_case("batch: /dev/zero as the source", dev_source, FATAL))

    # -- batch: zip-slip and special members
    for spelling in ("../evil.jpg", "../../evil.jpg", "a/../../evil.jpg", "/tmp/streamcolor-evil.jpg",
                     "..\\evil.jpg", "C:/evil.jpg", "C:\\evil.jpg", "./../evil.jpg", "a/./../../evil.jpg"):
        add(batch_case(f"batch: zip member {spelling!r}",
                       lambda d, s=spelling: [zip_of(d / "a.zip", {"ok.jpg": good_j, s: good_j})], OK | SOME,
                       at_least_outputs(1)))
    add(batch_case("batch: tar member '../evil.jpg'",
                   lambda d: [tar_of(d / "a.tar", [("ok.jpg", good_j), ("../evil.jpg", good_j)])], SOME, n_outputs(1)))
    add(batch_case("batch: tar member with an absolute path",
                   lambda d: [tar_of(d / "a.tar", [("ok.jpg", good_j), ("/tmp/streamcolor-evil2.jpg", good_j)])],
                   SOME, n_outputs(1)))
    for label, info in (("symbolic link to /etc/passwd", special("l.jpg", tarfile.SYMTYPE, "/etc/passwd")),
                        ("hard link to ../x", special("h.jpg", tarfile.LNKTYPE, "../x")),
                        ("character device", special("c.jpg", tarfile.CHRTYPE)),
                        ("block device", special("b.jpg", tarfile.BLKTYPE)),
                        ("FIFO", special("f.jpg", tarfile.FIFOTYPE))):
        add(batch_case(f"batch: tar member that is a {label}",
                       lambda d, i=info: [tar_of(d / "a.tar", [("ok.jpg", good_j), i])], SOME, n_outputs(1)))
    add(batch_case("batch: tar link then a file through it",
                   lambda d: [tar_of(d / "a.tar", [special("sub", tarfile.SYMTYPE, "/tmp"), ("sub/x.jpg", good_j)])],
                   OK | SOME))

    # -- batch: bombs and lying archives
    add(batch_case("batch: zip bomb (64 MB of zeros in 64 KB)",
                   lambda d: [zip_of(d / "b.zip", {"ok.jpg": good_j, "bomb.png": b"\x00" * (64 << 20)})], SOME,
                   n_outputs(1)))
    add(batch_case("batch: pixel bomb member (289 Mpx PNG)",
                   lambda d: [zip_of(d / "b.zip", {"ok.jpg": good_j, "bomb.png": png_bomb(17000)})], SOME,
                   n_outputs(1)))
    add(batch_case("batch: zip member lying about its size", lambda d: [_lying_zip(d / "l.zip", good_j)], OK | SOME))
    add(batch_case("batch: truncated zip", lambda d: [_truncated(zip_of(d / "t.zip", {"a.jpg": good_j,
                                                                                      "b.jpg": good_j}))],
                   SOME | FATAL))
    add(batch_case("batch: truncated tar.gz",
                   lambda d: [_truncated(tar_of(d / "t.tar.gz", [(f"{i}.jpg", jpg(make_photo(90, 120, seed=i)))
                                                                   for i in range(4)], "w:gz"))], SOME))
    add(batch_case("batch: zero-byte zip", lambda d: [write(d / "e.zip", b"")], FATAL))
    add(batch_case("batch: random bytes named .tar.gz", lambda d: [write(d / "r.tar.gz", os.urandom(4000))], FATAL))
    add(batch_case("batch: nested zip inside a zip",
                   lambda d: [zip_of(d / "n.zip", {"ok.jpg": good_j,
                                                   "inner.zip": zip_of(d / "inner.zip", {"x.jpg": good_j}).read_bytes()})],
                   OK | SOME, at_least_outputs(1)))

    # -- batch: names in archives
    add(batch_case("batch: duplicate member names in a zip", lambda d: [_dup_zip(d / "d.zip", good_j, good_p)],
                   OK | SOME, at_least_outputs(2)))
    add(batch_case("batch: zip with cp437 (not UTF-8) names",
                   lambda d: [zip_raw_names(d / "c.zip", [(b"caf\x82-000000000.jpg", good_j),
                                                          (b"\xe9\xe8\xff-0000000000.jpg", good_j)])], OK,
                   n_outputs(2)))
    add(batch_case("batch: zip with the UTF-8 flag on Latin-1 names",
                   lambda d: [zip_raw_names(d / "u.zip", [(b"caf\xe9-000000000.jpg", good_j),
                                                          (b"ok-00000000000.jpg", good_j)], utf8_flag=True)], OK,
                   n_outputs(2)))
    add(batch_case("batch: GNU tar with Latin-1 names",
                   lambda d: [_latin1_tar(d / "l.tar", good_j)], OK, n_outputs(2)))
    add(batch_case("batch: member named like the report",
                   lambda d: [zip_of(d / "r.zip", {"streamcolor-report.csv": b"x", "ok.jpg": good_j,
                                                   "bad.jpg": b"junk"})], SOME,
                   all_of(n_outputs(1), report_has_no_formulas)))
    add(batch_case("batch: member named like the manifest",
                   lambda d: [zip_of(d / "m.zip", {".streamcolor-manifest.sqlite": good_j, "ok.jpg": good_j})],
                   OK | SOME, at_least_outputs(1)))
    add(batch_case("batch: two zips with the same member names",
                   lambda d: [zip_of(d / "a.zip", {"DSC0000.jpg": good_j}),
                              zip_of(d / "b.zip", {"DSC0000.jpg": good_p})], OK, n_outputs(2)))

    # -- batch: found by the reviews of 2026-12-03 (session 6)
    def zip64(d: Path) -> list[Path]:  # zip64 end records, as a zip over 4 GiB or 65,535 entries has them
        limit = zipfile.ZIP_FILECOUNT_LIMIT
        zipfile.ZIP_FILECOUNT_LIMIT = 1
        try:
            return [zip_of(d / "z64.zip", {"a.jpg": good_j, "b.jpg": good_j})]
        finally:
            zipfile.ZIP_FILECOUNT_LIMIT = limit
    add(batch_case("batch: zip64 archive", zip64, OK, n_outputs(2)))

    def long_name_bomb(d: Path) -> list[Path]:  # a GNU long-name header declaring 200 MB, a few hundred KB gzipped
        path = d / "bomb.tar.gz"
        head = tarfile.TarInfo("././@LongLink")
        head.size, head.type = 200 << 20, tarfile.GNUTYPE_LONGNAME
        info = tarfile.TarInfo("ok.jpg")
        info.size = len(good_j)
        ok = info.tobuf(format=tarfile.GNU_FORMAT) + good_j + bytes(-len(good_j) % tarfile.BLOCKSIZE)
        with gzip.open(path, "wb", compresslevel=1) as gz:
            gz.write(ok + head.tobuf(format=tarfile.GNU_FORMAT))
            zero = bytes(1 << 20)
            for _ in range(200):
                gz.write(zero)
            gz.write(bytes(1024))
        return [path]
    add(batch_case("batch: tar long-name header declaring 200 MB", long_name_bomb, SOME, n_outputs(1)))
    add(batch_case("batch: a tar named .zip", lambda d: [tar_of(d / "t.zip", [("a.jpg", good_j)], "w:gz")], OK,
                   n_outputs(1)))

    def backslash_folder(d: Path) -> list[Path]:
        with zipfile.ZipFile(d / "w.zip", "w") as zf:
            entry = zipfile.ZipInfo("photos\\")
            entry.external_attr = 0x10  # (MS-DOS's folder bit)
            zf.writestr(entry, b"")
            zf.writestr("photos\\a.jpg", good_j)
        return [d / "w.zip"]
    add(batch_case("batch: zip folder entry written with a backslash", backslash_folder, OK, n_outputs(1)))
    add(batch_case("batch: a.jpg, a.jpg/b.jpg and a~2.jpg/b.jpg in one zip",
                   lambda d: [zip_of(d / "f.zip", {"a.jpg": good_j, "a.jpg/b.jpg": good_j, "a~2.jpg/b.jpg": good_p})],
                   OK, n_outputs(3)))

    # -- batch: the output folder
    def user_part(d: Path) -> list[Path]:  # d is the case's in/; OUT is beside it
        write(d.parent / "out" / "mine.part", b"the user's own file")
        write(d.parent / "out" / ".notes.part", b"the user's own file")
        return folder({"a.jpg": good_j})(d)
    add(batch_case("batch: user's *.part files in the output folder", user_part, OK,
                   all_of(kept("out/mine.part"), kept("out/.notes.part"))))

    def out_inside_source(d: Path) -> list[str]:
        src = folder({"a.jpg": good_j})(d / "in")[0]
        return ["batch", str(src), "-o", str(src / "colour"), "--no-progress"]
    add(Case("batch: output inside the source folder", lambda d: out_inside_source(d), FATAL, tags=("batch",)))

    # -- video
    def video_case(name, make, rc, extra=(), out="out/v.mp4"):
        def build(d: Path) -> list[str]:
            (d / "in").mkdir(parents=True, exist_ok=True)
            return ["video", str(make(d / "in")), "-o", str(d / out), "--no-progress", *extra]
        return Case(name, build, rc, tags=("video",))

    def clip(d: Path) -> Path:
        from streamcolor.video import make_clip
        return make_clip(d / "c.mp4", 96, 64, 6)
    add(video_case("video: valid clip", clip, OK))
    add(video_case("video: truncated clip", lambda d: _truncated(clip(d)), OK | SOME))
    add(video_case("video: random bytes named .mp4", lambda d: write(d / "r.mp4", os.urandom(20000)), SOME))
    add(video_case("video: zero-byte .mp4", lambda d: write(d / "z.mp4", b""), SOME))
    # (an image given alone to `video` stops the run, exit 2, naming the verb that takes it: README)
    add(video_case("video: a JPEG named .mp4", lambda d: write(d / "j.mp4", good_j), FATAL))

    def fifo_video(d: Path) -> Path:
        os.mkfifo(d / "f.mp4")
        return d / "f.mp4"
    add(video_case("video: FIFO named .mp4", fifo_video, SOME))
    add(video_case("video: audio codec as --codec", clip, FATAL, extra=("--codec", "aac")))
    add(video_case("video: unknown pixel format", clip, FATAL, extra=("--pix-fmt", "nonsense")))

    def ts_clip(n: int) -> bytes:
        import av
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as out:
            s = out.add_stream("libx264", rate=12)
            s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
            a = out.add_stream("aac", rate=48000)
            a.layout = "mono"
            for i in range(n):
                out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 9, np.uint8), format="rgb24")))
            out.mux(s.encode())
            for k in range(0, n * 4000, 1024):
                sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                sound.sample_rate, sound.pts = 48000, k
                out.mux(a.encode(sound))
            out.mux(a.encode())
        return buf.getvalue()
    # (two MPEG-TS clips with audio joined byte for byte: both streams' timestamps start again)
    add(video_case("video: MPEG-TS clips with audio joined byte for byte",
                   lambda d: write(d / "joined.ts", ts_clip(12) + ts_clip(12)), OK))

    def avi_b_frames(d: Path) -> Path:  # H.264 with B-frames in AVI: frame slots in decode order
        import av
        with av.open(str(d / "b.avi"), "w") as out:
            s = out.add_stream("libx264", rate=24)
            s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
            s.options = {"preset": "medium", "g": "12"}
            for i in range(48):
                frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 5, np.uint8), format="rgb24")
                out.mux(s.encode(frame))
            out.mux(s.encode())
        return d / "b.avi"

    def same_length(case_dir: Path, proc) -> str | None:
        import av
        made = outputs(case_dir)
        if len(made) != 1:
            return f"{len(made)} outputs"
        with av.open(str(made[0])) as c:
            times = [float(f.time) for f in c.decode(video=0)]
        if len(times) == 48 and times[-1] - times[0] < 2.1:  # (48 frames at 24 fps: it lasted twice that)
            return None
        return f"{len(times)} frames over {times[-1] - times[0]:.2f} s"
    add(Case("video: H.264 AVI with B-frames", lambda d: ["video", str(avi_b_frames(_mkdir(d / "in"))), "-o",
                                                          str(d / "out" / "v.mp4"), "--no-progress"],
             OK, same_length, tags=("video",)))

    def pcm_mkv(d: Path) -> Path:  # PCM whose packets MP4 takes one by one, but not at the end of the file
        import av
        with av.open(str(d / "pcm.mkv"), "w") as out:
            v = out.add_stream("libx264", rate=24)
            v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
            a = out.add_stream("pcm_s16le", rate=48000)
            for i in range(12):
                out.mux(v.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 9, np.uint8), format="rgb24")))
            out.mux(v.encode())
            for k in range(0, 24000, 1024):
                sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                sound.sample_rate, sound.pts = 48000, k
                out.mux(a.encode(sound))
            out.mux(a.encode())
        return d / "pcm.mkv"
    add(video_case("video: PCM audio the MP4 output cannot finish with", pcm_mkv, SOME))

    def video_into_file(d: Path) -> list[str]:
        write(d / "out", b"a file where the output folder should be")
        return ["video", str(clip(_mkdir(d / "in"))), "-o", str(d / "out" / "v.mp4"), "--no-progress"]
    add(Case("video: output folder's place taken by a file", video_into_file, FATAL, tags=("video",)))

    # -- the largest input: memory
    add(Case("image: 88 Mpx flat PNG (11000x8000, ~120 KB)",
             lambda d: ["image", str(make_flat_png(_mkdir(d / "in") / "big.png", 11000, 8000)),
                        "-o", str(d / "out") + "/"], OK, n_outputs(1), tags=("image", "largest")))
    return cases


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def _gif(frames: int) -> bytes:
    ims = [Image.fromarray(make_photo(60, 80, seed=i)[..., 0]) for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, "GIF", save_all=True, append_images=ims[1:], duration=100)
    return buf.getvalue()


def _tiff_pages(pages: int) -> bytes:
    ims = [Image.fromarray(make_photo(60, 80, seed=i)[..., 0]) for i in range(pages)]
    buf = io.BytesIO()
    ims[0].save(buf, "TIFF", save_all=True, append_images=ims[1:])
    return buf.getvalue()


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _lying_zip(path: Path, data: bytes) -> Path:
    """A stored member whose headers claim 100 bytes: the reader must not trust either."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("liar.jpg", data)
        zf.writestr("ok.jpg", data)
    raw = bytearray(path.read_bytes())
    size = struct.pack("<I", len(data))
    first = raw.find(size)  # local header's sizes of the first member, then the central directory's
    for _ in range(4):
        if first < 0:
            break
        raw[first:first + 4] = struct.pack("<I", 100)
        first = raw.find(size, first + 4)
    path.write_bytes(bytes(raw))
    return path


def _dup_zip(path: Path, a: bytes, b: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("same.jpg", a)
        with __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            zf.writestr("same.jpg", b)
    return path


def _latin1_tar(path: Path, data: bytes) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        for name in ("café.jpg", "Ærø.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------- running


#: Where absolute-path members would land if they escaped.
ABSOLUTE_TARGETS = (Path("/tmp/streamcolor-evil.jpg"), Path("/tmp/streamcolor-evil2.jpg"))


def run_case(case: Case, work: Path, index: int, python: str = sys.executable) -> dict:
    """Build the case in a fresh folder under ``work``, run it, check it, remove it."""
    d = work / f"case{index:03d}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    args = case.build(d)
    before_in = snapshot(d / "in") if (d / "in").exists() else {}
    before_all = snapshot(work.parent, skip=d / "out", contents=False)
    escaped_before = [p for p in ABSOLUTE_TARGETS if p.exists()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [python, "-c", _WRAPPER, python, "-m", "streamcolor", *args]
    wrapped = subprocess.run(cmd, capture_output=True, env=env, timeout=900, cwd=d)
    res = json.loads(wrapped.stdout.decode().strip().splitlines()[-1])
    proc = subprocess.CompletedProcess(args, res["rc"], "", res["stderr_tail"])
    # The wrapper keeps stderr's tail only; rerun is not needed: it holds the last lines.
    problems = []
    if (d / "in").exists() and snapshot(d / "in") != before_in:
        problems.append("an input changed or disappeared")
    after_all = snapshot(work.parent, skip=d / "out", contents=False)
    new = sorted(set(after_all) - set(before_all)) + [str(p) for p in ABSOLUTE_TARGETS
                                                       if p.exists() and p not in escaped_before]
    if new:
        problems.append(f"written outside the output: {new[:3]}")
    if res["rc"] not in case.rc:
        problems.append(f"exit {res['rc']}, README allows {sorted(case.rc)}")
    if res["traceback"]:
        problems.append("a Python traceback")
    if res["rc"] != 0 and not (res["stderr_tail"].strip() or "skipped" in res["stdout_tail"]):
        problems.append("failed without a word")
    if case.check and res["rc"] in case.rc and (why := case.check(d, proc)):
        problems.append(why)
    err_line = res["first_error"] or (res["stdout_tail"].strip().splitlines()[0] if res["stdout_tail"].strip() else "")
    shutil.rmtree(d, ignore_errors=True)
    return {"case": case.name, "tags": list(case.tags), "rc": res["rc"], "handled": not problems,
            "problems": problems, "peak_rss_mb": round(res["peak_rss_mb"], 1), "wall_s": round(res["wall_s"], 1),
            "error_line": err_line[:200]}


def run(cases: list[Case], work: Path) -> list[dict]:
    rows = []
    for i, case in enumerate(cases, 1):
        row = run_case(case, work, i)
        rows.append(row)
        log.info("%2d/%d %s %-70s %s", i, len(cases), "ok  " if row["handled"] else "FAIL", case.name,
                 "; ".join(row["problems"]))
    return rows


def test_hostile_smoke(tmp_path):
    """Smoke: three cases through the machinery; the corpus itself is well over 60 cases."""
    work = tmp_path / "work" / "cases"
    work.mkdir(parents=True)
    cases = corpus(work)
    assert len(cases) >= 60
    picked = [c for c in cases if c.name in ("image: valid JPEG", "image: FIFO named .jpg",
                                             "batch: zip member '../evil.jpg'")]
    rows = run(picked, work)
    assert all(r["handled"] for r in rows), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="streamcolor-hostile-") as tmp:
        work = Path(tmp) / "sandbox" / "cases"
        work.mkdir(parents=True)
        cases = [c for c in corpus(work) if args.k in c.name]
        rows = run(cases, work)
    largest = next((r for r in rows if "largest" in r["tags"]), None)
    today = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = {"date": today, "commit": commit, "cases": len(rows), "handled": sum(r["handled"] for r in rows),
              "not_handled": [r["case"] for r in rows if not r["handled"]],
              "largest_input": largest and {"case": largest["case"], "peak_rss_mb": largest["peak_rss_mb"]},
              "max_peak_rss_mb": max((r["peak_rss_mb"] for r in rows), default=0), "runs": rows}
    out = args.out or RESULTS / f"hostile-{today}.json"
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    log.info("%d of %d cases handled with nothing lost; largest input peak %s MB; wrote %s", result["handled"],
             len(rows), largest and largest["peak_rss_mb"], out)


if __name__ == "__main__":
    main()
