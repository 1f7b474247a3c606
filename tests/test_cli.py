"""The command line as a user meets it: pipes, quiet logs, progress only on a
terminal, options after the verb, hints for a wrong verb, `models`, and the
progress callback of the Python API.  Run as real processes where stdin,
stdout and the terminal matter."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import struct
import shutil
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import make_photo

REPO = Path(__file__).resolve().parents[1]


def streamcolor(*args: str, input: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamcolor", *args], input=input, capture_output=True,
                          cwd=cwd or REPO, timeout=300)


@pytest.fixture
def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_photo(48, 64).mean(-1).astype(np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


# --------------------------------------------------------------------------- pipes


def test_image_stdin_to_stdout_keeps_the_format_and_logs_only_to_stderr(jpeg_bytes):
    res = streamcolor("-v", "image", "-", "-o", "-", "-r", "64", input=jpeg_bytes)
    assert res.returncode == 0, res.stderr
    out = Image.open(io.BytesIO(res.stdout))
    assert out.format == "JPEG" and out.size == (64, 48) and out.mode == "RGB"
    assert b"<stdin> -> <stdout>" in res.stderr  # -v: the log line, on stderr, not in the image


def test_quiet_keeps_rename_notes_off_stderr(tmp_path):
    """-q means errors only (README), but the note that an output took name~2 still came out."""
    Image.fromarray(make_photo(40, 56)).convert("L").save(tmp_path / "g.png")
    (tmp_path / "q.png").write_bytes(b"mine")
    loud = streamcolor("image", "g.png", "-o", "q.png", "-r", "64", cwd=tmp_path)
    assert loud.returncode == 0 and b"note: g.png: q.png is not its earlier output" in loud.stderr
    quiet = streamcolor("-q", "image", "g.png", "-o", "q.png", "-r", "64", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == b"", quiet.stderr
    assert (tmp_path / "q.png").read_bytes() == b"mine" and (tmp_path / "q~2.png").is_file()


def test_a_reader_that_leaves_early_is_a_broken_pipe_not_a_cut_image(tmp_path):
    """`image ... -o - | head -c 10`: sys.stdout.buffer.write took the part the pipe held, dropped the rest
    without an error, and the run said nothing and exited 0 with a cut image."""
    Image.fromarray(make_photo(600, 800)).convert("L").save(tmp_path / "p.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "image", "p.png", "-o", "-", "-r", "64"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"<stdout>: closed by the reader (broken pipe)" in err, err


def test_a_phone_mpo_through_stdin_comes_out_as_a_jpeg(jpeg_bytes):
    """A JPEG that Pillow reads as MPO (a second picture or a gain map inside) came out of `-o -` as a PNG:
    MPO is no format streamcolor writes, and anything such became PNG."""
    photo = Image.open(io.BytesIO(jpeg_bytes))
    mpo = io.BytesIO()
    photo.save(mpo, "MPO", save_all=True, append_images=[photo.resize((16, 12))])
    assert Image.open(io.BytesIO(mpo.getvalue())).format == "MPO"
    res = streamcolor("image", "-", "-o", "-", "-r", "64", input=mpo.getvalue())
    assert res.returncode == 0, res.stderr
    assert Image.open(io.BytesIO(res.stdout)).format == "JPEG"


def test_image_stdout_takes_format_option_and_file_input(tmp_path, jpeg_bytes):
    src = tmp_path / "in.jpg"
    src.write_bytes(jpeg_bytes)
    res = streamcolor("image", str(src), "-o", "-", "--format", "png", "-r", "64")
    assert res.returncode == 0, res.stderr
    assert Image.open(io.BytesIO(res.stdout)).format == "PNG" and res.stderr == b""
    res = streamcolor("image", "-", "-o", str(tmp_path / "out.webp"), "-r", "64", input=jpeg_bytes)
    assert res.returncode == 0 and Image.open(tmp_path / "out.webp").format == "WEBP"


def test_image_pipe_errors_are_one_line(tmp_path, jpeg_bytes):
    bad = streamcolor("image", "-", "-o", "-", input=b"not an image")
    assert bad.returncode == 1 and bad.stdout == b""
    assert bad.stderr.decode().strip().splitlines() == [
        "error: <stdin>: not an image file (format not recognised)"]
    two = streamcolor("image", "-", "-", "-o", "-", input=jpeg_bytes)
    assert two.returncode == 2 and b"'-' (stdin) can be given once" in two.stderr
    folder = streamcolor("image", "-", "-o", str(tmp_path), input=jpeg_bytes)
    assert folder.returncode == 2 and b"needs -o FILE with an image extension" in folder.stderr


def test_video_refuses_stdin_and_stdout_instead_of_a_file_named_dash(tmp_path):
    for args in (["video", "-"], ["video", str(tmp_path / "film.mp4"), "-o", "-"]):
        res = streamcolor(*args, cwd=tmp_path)
        assert res.returncode == 2 and b"not stdin or stdout" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []  # no folder named "-"


def test_image_max_pixels_refuses_bigger_images_and_keeps_going(tmp_path, jpeg_bytes):
    """64x48 = 3,072 pixels: refused under --max-pixels 3000 (the other input still done), taken at 3072."""
    src, other = tmp_path / "in.jpg", tmp_path / "small.png"
    src.write_bytes(jpeg_bytes)
    Image.fromarray(make_photo(40, 50)).save(other)
    out = tmp_path / "out"
    res = streamcolor("image", str(src), str(other), "-o", str(out), "-r", "64", "--max-pixels", "3000")
    assert res.returncode == 1, res.stderr
    assert b"64x48 = 3,072 pixels is over the limit of 3,000" in res.stderr
    assert not (out / "in.jpg").exists() and (out / "small.png").is_file()
    res = streamcolor("image", str(src), "-o", str(out), "-r", "64", "--max-pixels", "3072")
    assert res.returncode == 0, res.stderr
    assert Image.open(out / "in.jpg").size == (64, 48)


# --------------------------------------------------------------------------- progress and logs


def run_on_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run streamcolor with stderr (and stdout) on a pseudo-terminal: what a person at a terminal sees."""
    pid, fd = pty.fork()
    if pid == 0:  # child: a 100x40 terminal (a pty starts at 0x0, where tqdm draws nothing)
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "streamcolor", *args])
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def three_images(tmp_path) -> list[str]:
    paths = []
    for i in range(3):
        p = tmp_path / f"p{i}.png"
        Image.fromarray(make_photo(40, 56, seed=i)).save(p)
        paths.append(str(p))
    return paths


def test_progress_bar_only_on_a_terminal_and_q_or_no_progress_hide_it(tmp_path, three_images):
    out = tmp_path / "out"
    rc, seen = run_on_terminal(["image", *three_images, "-o", str(out), "-r", "64"], tmp_path)
    assert rc == 0 and "images: 100%" in seen and "3/3" in seen
    piped = streamcolor("image", *three_images, "-o", str(out), "-r", "64")
    assert piped.returncode == 0 and piped.stderr == b""  # not a terminal: no bar
    for flag in (["-q"], ["--no-progress"]):  # after the verb, too
        rc, seen = run_on_terminal(["image", *three_images, "-o", str(out), "-r", "64", *flag], tmp_path)
        assert rc == 0 and "images:" not in seen, flag
    forced = streamcolor("image", *three_images, "-o", str(out), "-r", "64", "--progress")
    assert b"images: 100%" in forced.stderr
    rc, seen = run_on_terminal(["image", three_images[0], "-o", "-"], tmp_path)  # image bytes onto a terminal: no
    assert rc == 2 and "redirect stdout (> out.jpg) or give -o FILE" in seen


def test_verbose_and_quiet_after_the_verb(tmp_path, three_images):
    out = tmp_path / "o.png"
    loud = streamcolor("image", three_images[0], "-o", str(out), "-r", "64", "-v")
    assert b"info: " in loud.stderr
    same = streamcolor("-v", "image", three_images[0], "-o", str(out), "-r", "64")
    assert b"info: " in same.stderr
    quiet = streamcolor("image", three_images[0], "-o", str(tmp_path / "o.png"), "--format", "jpg", "-q")
    assert quiet.returncode == 0 and quiet.stderr == b""  # the --format warning is hidden too


def test_log_lines_do_not_tear_a_progress_bar(tmp_path, three_images):
    """A log line during a bar is written on its own line (tqdm's logging redirect), not glued into the bar."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rc, seen = run_on_terminal(["image", three_images[0], str(bad), three_images[1], "-o",
                                str(tmp_path / "out"), "-r", "64"], tmp_path)
    assert rc == 1
    lines = [line.split("\r")[-1] for line in seen.replace("\r\n", "\n").split("\n")]
    errors = [line for line in lines if "broken.png" in line]
    assert errors and all(line.startswith("error: ") for line in errors), seen


def test_python_api_progress_callback(engine, tmp_path):
    from streamcolor import BatchOptions, colorize_archive, colorize_video
    from streamcolor.video import make_clip

    src = tmp_path / "album"
    src.mkdir()
    for i in range(5):
        Image.fromarray(make_photo(30, 40, seed=i)).save(src / f"{i}.png")
    calls: list[tuple[int, int | None]] = []
    report = colorize_archive(src, tmp_path / "out", engine=engine, options=BatchOptions(render_size=64),
                              progress=lambda done, total: calls.append((done, total)))
    assert report.ok and calls == [(i, 5) for i in range(1, 6)]
    clip = make_clip(tmp_path / "c.mp4", 64, 48, 7)
    frames: list[tuple[int, int | None]] = []
    colorize_video(clip, tmp_path / "c-out.mp4", engine=engine, render_size=32,
                   progress=lambda done, total: frames.append((done, total)))
    assert [d for d, _ in frames] == list(range(1, 8)) and frames[-1][1] in (7, None)


# --------------------------------------------------------------------------- the right verb


@pytest.mark.parametrize("args, expected", [
    (["imgae", "x.jpg"], "no such verb 'imgae'; did you mean `streamcolor image`?"),
    (["vidoe"], "did you mean `streamcolor video`?"),
    (["old.jpg"], "'old.jpg' is not a verb; to colorize it run `streamcolor image old.jpg -o old-colour.jpg`"),
    (["film.mkv"], "to colorize it run `streamcolor video film.mkv`"),
    (["image", "film.mp4", "-o", "x.jpg"], "film.mp4: a video, not an image; run `streamcolor video film.mp4`"),
    (["image", "album.tar.gz", "-o", "x/"],
     "album.tar.gz: an archive, not an image; run `streamcolor batch album.tar.gz -o album-colour/`"),
    (["video", "photo.png"], "photo.png: an image, not a video; run `streamcolor image photo.png -o photo-colour.png`"),
    # the user's -o folder is kept in the hint (it was dropped: the output would have gone elsewhere)
    (["video", "photo.png", "-o", "out/"], "photo.png: an image, not a video; run `streamcolor image photo.png -o out/`"),
    (["image", "film.mp4", "-o", "out"], "film.mp4: a video, not an image; run `streamcolor video film.mp4 -o out/`"),
    (["video", "scans.zip"], "scans.zip: an archive, not a video; run `streamcolor batch scans.zip -o scans-colour/`"),
    # names quoted for the shell, a leading dash after ./: the hint can be pasted as it is
    (["image", "my film.mp4", "-o", "o/"], "run `streamcolor video 'my film.mp4' -o o/`"),
    (["image", "-o", "o/", "--", "-x.mp4"], "run `streamcolor video ./-x.mp4 -o o/`"),
    (["image", "-o", "o/", "--", "it's\nfilm.mp4"], "run `streamcolor video $'it\\'s\\nfilm.mp4' -o o/`"),
])
def test_wrong_verb_names_the_right_command(args, expected):
    from streamcolor.cli import cli

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert expected in res.output
    assert "colorize_" not in res.output  # CLI words, not Python names


def test_a_tiff_with_its_preview_page_is_one_photo_a_second_full_page_is_not(tmp_path):
    """Scanners and cameras store a small preview after a TIFF's image, as a page marked a
    reduced-resolution copy (NewSubfileType 1); such a file was refused as "2 pages". It is the
    first page's photo; a second page of its own is still refused, and so is a file whose first page
    is itself marked a preview (which page is the photo is then not clear)."""
    from PIL.TiffImagePlugin import AppendingTiffWriter

    from streamcolor import image_io

    a = Image.fromarray(make_photo(64, 96)).convert("L")

    def tiff(name: str, *pages: tuple[Image.Image, int]) -> None:
        with open(tmp_path / name, "w+b") as fp, AppendingTiffWriter(fp) as tf:
            for page, subfile in pages:
                page.save(tf, format="TIFF", **({"tiffinfo": {254: subfile}} if subfile else {}))
                tf.newFrame()

    small = a.resize((24, 16))
    tiff("scan.tif", (a, 0), (small, 1))
    tiff("masked.tif", (a, 0), (small, 1), (a.point(lambda v: 255 * (v > 99)).convert("1"), 4))
    tiff("two.tif", (a, 0), (a.transpose(Image.FLIP_LEFT_RIGHT), 0), (small, 1))
    tiff("preview-first.tif", (small, 1), (a, 0))
    assert [image_io.image_kind(tmp_path / n) for n in ("scan.tif", "two.tif")] == ["image", "pages"]
    assert image_io.read_image(tmp_path / "scan.tif").pixels.shape == (64, 96)
    res = streamcolor("image", "scan.tif", "masked.tif", "two.tif", "preview-first.tif", "-o", "out/", "-r", "64",
                      cwd=tmp_path)
    assert res.returncode == 1 and b"two.tif: has 2 pages" in res.stderr, res.stderr
    assert b"preview-first.tif: has 2 pages" in res.stderr and b"scan.tif:" not in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["masked.tif", "scan.tif"]
    with Image.open(tmp_path / "out" / "scan.tif") as out:
        assert out.size == (96, 64) and out.mode == "RGB" and getattr(out, "n_frames", 1) == 1


def test_a_multi_page_file_cut_short_is_one_input_refused_not_the_end_of_the_run(tmp_path):
    """Counting the frames of a 2-page TIFF or an animated GIF cut short raised TypeError ("Missing
    dimensions"), IndexError or struct.error from Pillow: a traceback, and no input done.  Each is now
    refused as the multi-frame file it is; a TIFF of thousands of pages is counted only so far (Pillow's
    count walked them all, ever more slowly: 16 s for 40,000)."""
    a = Image.fromarray(make_photo(40, 56)).convert("L")
    a.save(tmp_path / "good.png")
    for fmt, name in (("TIFF", "two.tif"), ("GIF", "anim.gif")):
        whole, first = io.BytesIO(), io.BytesIO()
        a.save(whole, fmt, save_all=True, append_images=[a.transpose(Image.FLIP_LEFT_RIGHT)])
        a.save(first, fmt)
        data = whole.getvalue()
        (tmp_path / name).write_bytes(data[:len(first.getvalue()) + 50 if fmt == "GIF" else len(data) // 2])
    a.save(tmp_path / "many.tif", save_all=True, append_images=[a.resize((1, 1))] * 3000)
    res = streamcolor("image", "good.png", "two.tif", "many.tif", "-o", "out/", "-r", "64", cwd=tmp_path)
    assert res.returncode == 1 and b"Traceback" not in res.stderr, res.stderr
    assert b"two.tif: has 2 pages" in res.stderr and b"many.tif: has 1,000 or more pages" in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]
    from streamcolor import image_io
    from streamcolor.errors import InputError

    with pytest.raises(InputError, match="anim.gif: has 2 frames"):
        image_io.read_image(tmp_path / "anim.gif")


@pytest.mark.parametrize("args", [["image", "gone.jpg", "-o", "e/deep/"], ["video", "gone.mp4", "-o", "e/deep/"],
                                  ["image", "photo.png", "-o", "e/deep/", "--backend", "tensorrt"]])
def test_a_run_that_writes_nothing_leaves_no_empty_output_folder(tmp_path, monkeypatch, args):
    """A missing input, or an engine that does not load: the output folders the run made were left
    behind, empty.  They are removed again; a folder that was there already stays."""
    from streamcolor.cli import cli

    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_photo(32, 48)).convert("L").save(tmp_path / "photo.png")
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and not (tmp_path / "e").exists(), res.output
    (tmp_path / "e").mkdir()
    CliRunner().invoke(cli, args)
    assert (tmp_path / "e").is_dir() and not (tmp_path / "e" / "deep").exists()


def test_video_given_a_folder_says_to_give_its_videos(tmp_path, monkeypatch):
    """`batch` colorizes a folder's photos, never its videos: `video FOLDER` names both ways."""
    from streamcolor.cli import cli

    (tmp_path / "reels").mkdir()
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["video", "reels"])
    assert res.exit_code == 2
    assert ("reels: a folder, not a video; give its videos (`streamcolor video reels/*.mp4 -o reels-colour/`), "
            "or run `streamcolor batch reels -o reels-colour/` for its photos") in res.output


@pytest.mark.parametrize("args, message", [
    (["batch"], "error: Missing argument 'SOURCES...'."),
    (["image", "--bogus", "x.jpg"], "error: No such option '--bogus'"),
    (["video", "a.mp4", "--overwrite", "--skip-existing"], "error: --overwrite and --skip-existing contradict"),
])
def test_usage_mistakes_read_like_every_other_error(args, message):
    """Click's own usage errors keep its usage line and help hint but say ``error:`` as the tool's
    other messages do (Click writes ``Error:``); exit 2."""
    res = streamcolor(*args)
    err = res.stderr.decode()
    assert res.returncode == 2 and message in err and "Error:" not in err
    assert err.startswith("Usage: ") and f"streamcolor {args[0]} [OPTIONS]" in err.splitlines()[0]
    assert f"streamcolor {args[0]} --help' for help." in err


@pytest.mark.parametrize("args, option", [
    (["train", "fit", ".", "-r", "run", "--steps", "1", "-b", "0"], "'-b' / '--batch-size'"),
    (["train", "fit", ".", "-r", "run", "--steps", "-5"], "'--steps'"),
    (["train", "fit", ".", "-r", "run", "--lr", "-1"], "'--lr'"),
    (["train", "prepare", ".", "-o", "shards", "--val-fraction", "5"], "'--val-fraction'"),
    (["train", "prepare", ".", "-o", "shards", "--crops-per-photo", "-1"], "'--crops-per-photo'"),
    (["train", "eval", ".", "-b", "0"], "'-b' / '--batch-size'"),
])
def test_train_refuses_values_that_cannot_work(tmp_path, args, option):
    """Before any work: a batch of 0 crashed (ZeroDivisionError), a negative step count or rate trained
    nothing or diverged and exited 0.  Now a usage error naming the option, exit 2."""
    res = streamcolor(*args, cwd=tmp_path)
    assert res.returncode == 2 and f"error: Invalid value for {option}" in res.stderr.decode()
    assert b"Traceback" not in res.stderr and not (tmp_path / "run").exists() and not (tmp_path / "shards").exists()


def test_common_options_work_after_a_verbs_own_verbs_too():
    """-v/-q/--progress after the verb, as the top-level help says, also under ``train``'s verbs."""
    for sub in ("prepare", "fit", "eval", "export"):
        res = streamcolor("train", sub, "--help")
        assert res.returncode == 0 and b"-q, --quiet" in res.stdout and b"-v, --verbose" in res.stdout, sub


@pytest.mark.parametrize("args", [[], ["train"]])
def test_a_bare_group_prints_its_help_not_an_error(args):
    res = streamcolor(*args)
    err = res.stderr.decode()
    assert res.returncode == 2 and "Commands:" in err and "error:" not in err.lower()


def test_the_files_header_decides_between_image_and_video(tmp_path):
    """A film named .jpg and an animated GIF are videos, a photo named .mp4 a photo; a file there
    that is neither (random bytes, empty, a broken link) gets the verb's own error, exit 1, not a
    hint by its name; a real photo given to ``video`` is still sent to ``image`` (exit 2)."""
    from streamcolor.video import make_clip

    def frames(path: Path) -> int:
        import av
        with av.open(str(path)) as c:
            return len(list(c.decode(video=0)))

    shutil.copy(make_clip(tmp_path / "clip.mp4", 96, 64, 6), tmp_path / "film.jpg")
    res = streamcolor("video", "film.jpg", "-r", "64", cwd=tmp_path)  # its default output: a video's name
    assert res.returncode == 0, res.stderr
    assert frames(tmp_path / "film-colour.mp4") == 6
    res = streamcolor("image", "film.jpg", "-o", "x.jpg", cwd=tmp_path)
    assert res.returncode == 2 and b"film.jpg: a video, not an image; run `streamcolor video film.jpg`" in res.stderr
    anim = [Image.fromarray(make_photo(40, 56, seed=i)).convert("L") for i in range(4)]
    anim[0].save(tmp_path / "anim.gif", save_all=True, append_images=anim[1:], duration=100)
    res = streamcolor("video", "anim.gif", "-r", "64", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert frames(tmp_path / "anim-colour.mp4") == 4
    Image.fromarray(make_photo(40, 56)).convert("L").save(tmp_path / "photo.mp4", format="JPEG")
    res = streamcolor("image", "photo.mp4", "-o", "photo-out.jpg", "-r", "64", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "photo-out.jpg").mode == "RGB"
    res = streamcolor("video", "photo.mp4", cwd=tmp_path)
    assert res.returncode == 2 and b"an image, not a video; run `streamcolor image photo.mp4 -o photo-colour.jpg`" in res.stderr
    (tmp_path / "notes.jpg").write_bytes(b"not a picture, not a film")
    res = streamcolor("video", "notes.jpg", "-o", "junk.mp4", cwd=tmp_path)
    assert res.returncode == 1 and b"cannot be opened as a video or as an image" in res.stderr
    assert b"; run `streamcolor" not in res.stderr and not (tmp_path / "junk.mp4").exists()
    (tmp_path / "random.mp4").write_bytes(os.urandom(4000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    for verb, name, said in (("image", "random.mp4", b"not an image file"), ("image", "empty.mp4", b"empty (0 bytes)"),
                             ("video", "dangling.jpg", b"broken symbolic link")):
        res = streamcolor(verb, name, "-o", "out/", cwd=tmp_path)
        assert res.returncode == 1 and said in res.stderr and b"; run `streamcolor" not in res.stderr, (name, res.stderr)
    Image.fromarray(make_photo(40, 56)).save(tmp_path / "real.jpg")
    res = streamcolor("video", "real.jpg", cwd=tmp_path)
    assert res.returncode == 2 and b"real.jpg: an image, not a video; run `streamcolor image real.jpg -o real-colour.jpg`" \
        in res.stderr


def test_an_input_of_another_kind_is_left_out_and_the_others_are_done(tmp_path):
    """`image a.jpg film.mp4 b.jpg`: the video is named with its command and left out (exit 1),
    the photos are colorized; a multi-page TIFF is an image's, and `image` says to split it;
    a file named ``-`` given as ``./-`` is that file, not stdin or stdout."""
    from streamcolor.video import make_clip

    make_clip(tmp_path / "film.mp4", 96, 64, 4)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(make_photo(40, 56)).convert("L").save(tmp_path / name)
    pages = [Image.fromarray(make_photo(40, 56, seed=i)).convert("L") for i in range(3)]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    res = streamcolor("image", "a.jpg", "film.mp4", "scan.tif", "b.jpg", "-o", "out/", "-r", "64", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert b"film.mp4: a video, not an image; run `streamcolor video film.mp4 -o out/`; left out" in res.stderr
    assert b"scan.tif: has 3 pages" in res.stderr and b"split it" in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "b.jpg"]
    res = streamcolor("video", "scan.tif", cwd=tmp_path)  # no input left: a usage error, as before
    assert res.returncode == 2 and b"scan.tif: a multi-page TIFF, not a video; split it" in res.stderr
    res = streamcolor("video", "film.mp4", "a.jpg", "-o", "films/", "-r", "64", cwd=tmp_path)
    assert res.returncode == 1 and b"a.jpg: an image, not a video" in res.stderr, res.stderr
    assert [p.name for p in (tmp_path / "films").iterdir()] == ["film-colour.mp4"]

    shutil.copy(tmp_path / "a.jpg", tmp_path / "-")
    res = streamcolor("image", "./-", "-o", "./-.png", "-r", "64", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "-.png").size == (56, 40)
    (tmp_path / "-").unlink()
    res = streamcolor("image", "a.jpg", "-o", "./-", "-r", "64", cwd=tmp_path)  # a folder named "-", not stdout
    assert res.returncode == 0 and res.stdout == b"", res.stderr
    assert [p.name for p in (tmp_path / "-").iterdir()] == ["a.jpg"]


def test_format_and_extension_disagreeing_is_said(tmp_path, three_images):
    res = streamcolor("image", three_images[0], "-o", str(tmp_path / "x.jpg"), "--format", "png", "-r", "64")
    assert res.returncode == 0
    assert b"--format png ignored: -o " in res.stderr and b"names a JPEG file" in res.stderr
    assert Image.open(tmp_path / "x.jpg").format == "JPEG"
    res = streamcolor("image", three_images[0], "-o", str(tmp_path / "x.png"), "--quality", "80", "-r", "64")
    assert b"--quality ignored: PNG output is lossless" in res.stderr


def test_output_names_that_would_silently_become_folders_are_refused_or_kept_as_asked(tmp_path, three_images):
    res = streamcolor("image", *three_images[:2], "-o", str(tmp_path / "three.png"), "-r", "64")
    assert res.returncode == 2 and b"names an image file, but 2 inputs need a folder" in res.stderr
    assert not (tmp_path / "three.png").exists()
    src = tmp_path / "scans"
    src.mkdir()
    for image in three_images:
        shutil.copy(image, src)
    for name, said in (("out.rar", b"not out.rar"), ("out.gz", b"not out.gz"), ("photo.jpg", b"names an image file")):
        res = streamcolor("batch", str(src), "-o", str(tmp_path / name), "-r", "64")
        assert res.returncode == 2 and said in res.stderr and not (tmp_path / name).exists(), res.stderr
    clips = [tmp_path / "v1.mp4", tmp_path / "v2.mp4"]
    for clip in clips:
        clip.write_bytes(b"")  # (refused before any input is read)
    for verb, name in (("image", "both.gif"), ("image", "both.zip"), ("video", "both.mp4")):
        res = streamcolor(verb, *(three_images[:2] if verb == "image" else map(str, clips)), "-o", str(tmp_path / name))
        assert res.returncode == 2 and b"inputs need a folder" in res.stderr and not (tmp_path / name).exists()
    res = streamcolor("batch", str(src), "-o", str(tmp_path / "out.zip") + "/", "-r", "64", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.zip").is_dir() and len(list((tmp_path / "out.zip").glob("*.png"))) == 3
    assert not (tmp_path / "out").exists()  # a folder, as the slash says: nothing packed
    (tmp_path / "empty").mkdir()
    res = streamcolor("batch", str(tmp_path / "empty"), "-o", str(tmp_path / "e-out"))
    assert res.returncode == 0 and b"no files to colorize in" in res.stderr


# --------------------------------------------------------------------------- models


def test_models_table_has_data_licence_quality_and_installed_backends():
    from streamcolor.cli import cli
    from streamcolor.commands.models import installed_backends

    res = CliRunner().invoke(cli, ["models"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["MODEL", "ID", "KIND", "RENDER", "PRECISIONS"]
    assert lines[1].startswith("unet (default)") and "streamcolor-unet-lite0-v2" in lines[1]
    assert "data:" in res.output and "licence:" in res.output and "Apache-2.0" in res.output
    assert "holdout: 0.761x gray a*b* MSE" in res.output  # from model.json eval_splits
    backends = next(line for line in lines if line.startswith("Backends installed here:"))
    assert "tensorrt" not in backends  # not installed here (no NVIDIA runtime on CPU CI)
    assert installed_backends() == [b for b in ("onnx", "onnx-int8", "onnx-fp16", "keras", "tensorrt")
                                     if b in backends]
    # per model, what runs it here: the seed ships ONNX graphs only, which the Keras engine cannot run
    listed = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)["models"]
    runs = {r["model"]: r["runs_on"] for r in listed}
    assert runs["seed"][:2] == ["onnx", "onnx-int8"] and "keras" not in runs["seed"]
    assert ("onnx-fp16" in runs["unet"]) == ("onnx-fp16" in backends)  # (converted from float32 when it loads)
    assert ("keras" in runs["unet"]) == ("keras" in backends)
    assert "see LICENSE-efficientnet-lite0.txt in this folder" not in res.output  # the folder is named
    if "keras" in backends:
        from streamcolor.engines import EngineError, load_engine

        with pytest.raises(EngineError, match="ships ONNX graphs only, which the Keras engine cannot run"):
            load_engine("seed", "keras")


def test_fp16_is_not_claimed_where_it_cannot_load(monkeypatch):
    """A [cpu] install (onnxruntime, no onnx/onnxconverter-common) listed onnx-fp16 as installed and
    as running the seed, whose fp16 graphs are converted when they load; asking for it then said
    "pip install onnx onnxconverter-common" for the seed and "train quantize --fp16" for the default.
    Now it is not listed there, and both models give the same advice."""
    import sys

    from streamcolor.cli import cli
    from streamcolor.commands.models import installed_backends
    from streamcolor.engines import EngineError, load_engine

    for name in ("onnx", "onnxconverter_common"):  # how Python marks a module as not importable
        monkeypatch.setitem(sys.modules, name, None)
    assert "onnx-fp16" not in installed_backends() and "onnx" in installed_backends()
    listed = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)
    assert all("onnx-fp16" not in r["runs_on"] for r in listed["models"])
    for model in ("seed", "default"):
        with pytest.raises(EngineError, match=r"pip install onnx onnxconverter-common \(or write the float16 files"):
            load_engine(model, "onnx-fp16", device="cpu")


def test_bench_recommendation_from_rows():
    from streamcolor.bench import load_text, recommend

    rows = [{"label": "onnx-cpu-fp32", "render": 256, "batch": 1, "images_per_s": 2.0},
            {"label": "onnx-cpu-int8", "render": 256, "batch": 1, "images_per_s": 3.0},
            {"label": "onnx-cpu-fp32", "render": 256, "batch": 8, "images_per_s": 2.5},
            {"label": "onnx-cpu-int8", "render": 256, "batch": 8, "images_per_s": 6.0},
            {"label": "onnx-cpu-int8", "render": 256, "batch": 16, "images_per_s": 6.1}]
    rec = recommend(rows, model_render=320)
    assert rec["options"] == "--backend onnx-int8 -b 8 -r 320"  # batch 16 is within 5% of 8: the smaller one
    assert rec["images_per_s_estimate"] == pytest.approx(6.0 * (256 / 320) ** 2, rel=0.01)
    # int8 timed but with kernels that disagree with fp32 on this CPU: never recommended
    notes = ["not recommended: onnx-cpu-int8: timed, but on this CPU its kernels disagree with fp32 by 72%"]
    assert recommend(rows, model_render=320, notes=notes)["options"] == "--backend onnx -b 8 -r 320"
    # what it says is what it measured: one batch timed, a model that names no render size
    one = recommend(rows[:2], model_render=256, model_names_render=False)["why"]
    assert "only batch 1 was timed" in one and "larger batches" not in one
    assert "render 256 is streamcolor's default (the model names none)" in one
    assert "the model's recommended size" in rec["why"]
    # the nearest measured render, not the largest: 320 measured is used as measured, not estimated from 512
    more = rows + [{"label": "onnx-cpu-fp32", "render": 320, "batch": 8, "images_per_s": 4.0},
                   {"label": "onnx-cpu-fp32", "render": 512, "batch": 8, "images_per_s": 1.0}]
    rec = recommend(more, model_render=320)
    assert rec["images_per_s_estimate"] == 4.0 and "as measured" in rec["why"] and "estimated" not in rec["why"]
    assert recommend(more[:-2] + more[-1:], model_render=384)["why"].endswith("(estimated from render 512 by pixel "
                                                                             "count)")  # 512 is nearer than 256
    # nearest by ratio, not by difference: for a model at 320, 640 (2x) is nearer than 128 (2.5x); a side the
    # model pads (the U-Net to multiples of 32: render 40 runs at 64) is counted as run
    apart = [dict(r, render=128) for r in rows] + [dict(r, render=640, images_per_s=r["images_per_s"] / 20)
                                                   for r in rows]
    assert "estimated from render 640 by" in recommend(apart, model_render=320)["why"]
    padded = recommend([dict(r, render=40) for r in rows], model_render=320, size_multiple=32)
    assert padded["images_per_s_estimate"] == pytest.approx(6.0 * (64 / 320) ** 2, rel=0.01)
    assert "estimated from render 40, run at 64, by pixel count" in padded["why"]
    # another model is named in the command it suggests (copied, it would run the default model)
    seed = recommend(rows, model_render=256, model="seed")
    assert seed["options"] == "-m seed --backend onnx-int8 -b 8 -r 256" and seed["model"] == "seed"
    assert seed["example"] == "streamcolor batch photos/ -o colour/ -m seed --backend onnx-int8 -b 8 -r 256"
    # measured only far from the model's render (32 against 320), the ranking may not hold there
    tiny = [dict(r, render=32) for r in rows]
    far = recommend(tiny, model_render=320)
    assert far["options"] == "--backend auto -b 8 -r 320" and "`streamcolor bench -r 320` measures it" in far["why"]
    assert load_text({"load_average": [1.0, 0.5, 0.25], "load_average_after": [2.0, 1.0, 0.5]}) == \
        "before 1.00 0.50 0.25, after 2.00 1.00 0.50"


def test_bench_says_untrusted_int8_once_in_its_notes_not_as_a_warning(caplog):
    """The bench times int8 on purpose: where this CPU's int8 kernels give wrong colours, its notes
    say so (UNTRUSTED) and load_engine's "running int8 as asked" warning is not said as well."""
    from streamcolor.bench import UNTRUSTED, load_engines
    from streamcolor.engines import resolve_model
    from streamcolor.engines.select import kernel_check

    caplog.set_level(logging.WARNING, logger="streamcolor")
    engines, notes = load_engines("default", "cpu")
    try:
        assert "onnx-cpu-int8" in engines
        check = kernel_check(resolve_model("default"), "int8", engines["onnx-cpu-int8"])
        assert any(n.startswith(f"{UNTRUSTED} onnx-cpu-int8") for n in notes) == (not check.ok)
        assert "as asked" not in caplog.text
        assert not logging.getLogger("streamcolor.engines.select").filters  # the filter is taken off again
    finally:
        for e in engines.values():
            e.close()


def test_bench_refuses_a_json_name_that_is_not_json_and_a_render_size_out_of_range(tmp_path):
    from streamcolor.cli import cli

    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"my photo")
    for args, said in ((["--json", str(photo)], "ending in .json"), (["-r", "5000"], "8<=x<=1024")):
        res = CliRunner().invoke(cli, ["bench", "--no-video", *args])
        assert res.exit_code == 2 and said in res.output, res.output
    assert photo.read_bytes() == b"my photo"
    mine = tmp_path / "data.json"  # a JSON of the user's by that name is kept, said before measuring
    mine.write_text('{"mine": 1}')
    res = CliRunner().invoke(cli, ["bench", "--no-video", "-r", "64", "-b", "1", "--json", str(mine)])
    assert res.exit_code == 2 and "is kept" in res.output and mine.read_text() == '{"mine": 1}', res.output
    assert "images/s" not in res.output
    res = CliRunner().invoke(cli, ["bench", "--no-video", "-m", "nosuchmodel"])  # said before measuring anything
    assert res.exit_code == 2 and "unknown model" in res.output and "matmul peak" not in res.output, res.output


def test_a_photo_under_a_videos_name_is_named_for_its_format(tmp_path):
    """`image photo.mp4 -o out/` wrote out/photo.png while stdin gave JPEG: now both follow the header."""
    Image.fromarray(make_photo(40, 56)).convert("L").save(tmp_path / "photo.mp4", format="JPEG")
    Image.fromarray(make_photo(40, 56)).convert("L").save(tmp_path / "scan.dat", format="PNG")
    res = streamcolor("image", "photo.mp4", "scan.dat", "-o", "out/", "-r", "64", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.jpg", "scan.png"]
    assert Image.open(tmp_path / "out" / "photo.jpg").format == "JPEG"


@pytest.mark.parametrize("args", [["image", "", "-o", "OUT/"], ["batch", "", "-o", "OUT"],
                                  ["video", "", "-o", "OUT.mp4"], ["batch", "SRC", "-o", ""],
                                  ["image", "SRC/a.png", "-o", ""], ["collection", "", "OUT"], ["collection", "SRC", ""],
                                  ["report", "", "-o", "r.html"], ["bench", "--json", ""],
                                  ["train", "prepare", "SRC", "-o", ""], ["train", "fit", "SRC", "-r", ""],
                                  ["train", "export", "SRC", ""], ["train", "eval", "SRC", "--json", ""],
                                  ["train", "eval", "SRC", "--markdown", " "]])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, args):
    """pathlib reads "" as "."; `streamcolor batch "$SRC" -o out/` with $SRC unset colorized
    every photo under the folder the command ran in."""
    from streamcolor.cli import cli

    src = tmp_path / "SRC"
    src.mkdir()
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(src / "a.png")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "an empty path" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SRC"]  # nothing read into, or written beside, the cwd


def test_the_api_refuses_empty_paths(tmp_path, monkeypatch):
    import streamcolor
    from streamcolor.errors import InputError

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "a.png")
    for call, exc in ((lambda: streamcolor.colorize_archive("", tmp_path / "out"), InputError),
                      (lambda: streamcolor.colorize_archive(["a.png", " "], tmp_path / "out"), InputError),
                      (lambda: streamcolor.colorize_archive(tmp_path, ""), ValueError),
                      (lambda: streamcolor.colorize_video("", tmp_path / "o.mp4"), InputError),
                      (lambda: streamcolor.colorize_image("a.png", ""), ValueError)):
        with pytest.raises(exc, match="path is empty"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_verbs_whose_extra_is_missing_say_what_to_install(tmp_path):
    """Without Keras (the train extra), `train prepare` and `train fit` said a traceback; without
    aiohttp, `serve` exits 2 (it could not start).  Simulated by blocking the import."""
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((40, 50), 90, np.uint8)).save(tmp_path / "photos" / "a.jpg")
    (tmp_path / "shards").mkdir()
    runs = {"keras": [["train", "prepare", str(tmp_path / "photos"), "-o", str(tmp_path / "out")],
                      ["train", "fit", str(tmp_path / "shards"), "-r", str(tmp_path / "run"), "--steps", "1"]],
            "aiohttp": [["serve", "--port", "0"]]}
    for module, commands in runs.items():
        for args in commands:
            code = (f"import sys; sys.modules[{module!r}] = None; sys.modules['tensorflow'] = None; "
                    f"sys.argv = ['streamcolor', *{args!r}]; from streamcolor.cli import main; main()")
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            assert "Traceback" not in r.stderr and "pip install 'streamcolor[" in r.stderr, (args, r.stderr)
            assert r.returncode != 0 and (module != "aiohttp" or r.returncode == 2), (args, r.returncode)


@pytest.mark.parametrize("args", [
    ["image", "x.jpg", "--saturation", "nan"], ["image", "x.jpg", "--saturation", "1e39"],
    ["video", "x.mp4", "--saturation", "inf"], ["batch", "x", "-o", "y", "--saturation", "5"],
    ["batch", "x", "-o", "y", "--max-ratio", "nan"], ["video", "x.mp4", "--scene-cut", "nan"],
    ["serve", "--max-wait-ms", "nan"], ["collection", "x", "y", "--cpus-per-actor", "inf"],
])
def test_numbers_that_are_not_finite_or_out_of_range_are_usage_errors(args, tmp_path):
    """NaN passes click's range checks (--max-ratio nan turned the zip-bomb check off), and `image
    --saturation nan` ended in a traceback; a gain of 1e39 painted every pixel white."""
    from streamcolor.cli import cli

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert ("not a finite number" in res.output or "from 0 to 4" in res.output), res.output


def test_a_model_that_is_no_bundle_is_named_as_such(tmp_path):
    """-m given a photo said "'utf-8' codec can't decode", and a model.json holding a JSON list
    ended in an AttributeError traceback."""
    from streamcolor.cli import cli

    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    res = CliRunner().invoke(cli, ["image", str(photo), "-m", str(photo)])
    assert res.exit_code == 2 and "not a model bundle: give a bundle folder" in res.output, res.output
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("[]")
    res = CliRunner().invoke(cli, ["image", str(photo), "-m", str(bundle)])
    assert res.exit_code == 2 and "not a model manifest" in res.output and "Traceback" not in res.output, res.output


@pytest.mark.parametrize("verb", ["image", "batch", "report"])
@pytest.mark.parametrize("entry, said", [
    ({"variants": [1, 2]}, "variants must be a JSON object"),
    ({"render_size": "big"}, "render_size must be an int"),
    ({"render_size": 5000}, "render_size must be in [8, 1024]"),
    ({"saturation": -5}, "saturation must be a number from 0 to 4"),
    ({"size_multiple": 7}, "size_multiple must be a multiple of 8"),
    ({"files": ["colorizer.onnx"]}, "files must be a JSON object"),
])
def test_a_bad_value_in_model_json_is_named_by_every_verb(verb, entry, said, tmp_path):
    """A hand-edited model.json ("render_size": "big", "variants" as a list...) ended in a
    traceback in image and video, and in a line that did not name model.json in batch and
    report, which also left an empty OUT/.streamcolor behind.  Refused when the bundle loads
    now: exit 2, the file and the value named, nothing created."""
    from streamcolor.cli import cli
    from streamcolor.engines import resolve_model

    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_model("default").path, bundle)
    manifest = bundle / "model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **entry}))
    photo = tmp_path / "in" / "p.png"
    photo.parent.mkdir()
    Image.new("L", (40, 30), 128).save(photo)
    out = tmp_path / "out"
    args = {"image": ["image", str(photo), "-o", str(out / "p.png")],
            "batch": ["batch", str(photo.parent), "-o", str(out)],
            "report": ["report", str(photo.parent), "-o", str(out / "r.html"), "--no-speed"]}[verb]
    res = CliRunner().invoke(cli, [*args, "-m", str(bundle)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"{manifest}: {said}" in res.output, res.output
    assert not out.exists()


def test_video_refuses_an_image_name_for_its_output_before_any_work(tmp_path):
    """`video clip.mp4 -o still.jpg` colorized the whole clip, then failed as the image muxer
    refused the video codec: refused at once now (exit 2), nothing written."""
    from streamcolor.cli import cli
    from streamcolor.video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 64, 48, 3)
    res = CliRunner().invoke(cli, ["video", str(clip), "-o", str(tmp_path / "still.jpg")])
    assert res.exit_code == 2 and ".jpg is an image format" in res.output and "still.mp4" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    # a name FFmpeg knows no container by: exit 2 before any work (it was exit 1, an item failure)
    res = CliRunner().invoke(cli, ["video", str(clip), "-o", str(tmp_path / "notes.txt")])
    assert res.exit_code == 2 and "no video container by the name '.txt'" in res.output, res.output
    for sound in ("track.wav", "track.mp3"):  # containers of sound (and a cover picture): no video either
        res = CliRunner().invoke(cli, ["video", str(clip), "-o", str(tmp_path / sound)])
        assert res.exit_code == 2 and "holds no video" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_file_name_cannot_forge_a_line_of_the_tools_output(tmp_path, jpeg_bytes):
    """A name with a newline (or an escape sequence) is printed escaped, on one line: a log reader
    or a script reading stderr line by line cannot be told a file was fine when it failed."""
    from streamcolor.errors import one_line

    assert one_line("a\nerror: b\x1b[31m\u202e.jpg\t") == "a\\nerror: b\\x1b[31m\\u202e.jpg\\t"
    assert one_line(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg" and one_line("\ud800") == "\\ud800"
    assert one_line("Ünïcode name.jpg") == "Ünïcode name.jpg"
    src = tmp_path / "src"
    src.mkdir()
    (src / "evil\ninfo: all good.png").write_bytes(b"not an image")
    (src / "fine.jpg").write_bytes(jpeg_bytes)
    res = streamcolor("image", str(src / "evil\ninfo: all good.png"), str(src / "fine.jpg"), "-o", str(tmp_path / "o"),
                      "-r", "64", "-v")
    err = res.stderr.decode()
    assert res.returncode == 1, err
    assert "evil\\ninfo: all good.png: not an image file" in err
    assert not any(line.startswith("info: all good") for line in err.splitlines()), err
    assert (tmp_path / "o" / "fine.jpg").is_file()


def test_report_exits_1_through_the_console_entry_when_a_photo_is_skipped(tmp_path, jpeg_bytes):
    """The exit status as a shell sees it (`python -m streamcolor`, Click run with standalone_mode=False),
    not as CliRunner sees it: a page written without one of the user's photos is exit 1."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(jpeg_bytes)
    (photos / "b.jpg").write_bytes(jpeg_bytes[:40])
    res = streamcolor("report", str(photos), "-o", str(tmp_path / "r.html"), "--no-speed", "-r", "64")
    assert res.returncode == 1, res.stderr.decode()
    assert (tmp_path / "r.html").is_file() and "1 photo(s) skipped" in res.stderr.decode()


def test_image_overwrite_fails_only_the_input_whose_output_name_is_a_folder(tmp_path, jpeg_bytes, caplog):
    """`image a.jpg b.jpg -o ow/ --overwrite` with a folder ow/a.jpg of the user's: that input fails
    (the folder is kept), b.jpg is still done, exit 1 (it was exit 2 and b.jpg never written)."""
    from streamcolor.cli import cli

    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes)
    (tmp_path / "ow" / "a.jpg").mkdir(parents=True)
    (tmp_path / "ow" / "a.jpg" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["image", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "-o",
                                   str(tmp_path / "ow"), "--overwrite", "-r", "64"])
    assert res.exit_code == 1, res.output
    assert "a folder is in the way" in caplog.text
    assert (tmp_path / "ow" / "a.jpg" / "keep.txt").read_text() == "mine"
    assert Image.open(tmp_path / "ow" / "b.jpg").format == "JPEG"
    # without --overwrite: a~2.jpg beside the folder, said as such (it was called "a file of yours")
    res = CliRunner().invoke(cli, ["image", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "ow"), "-r", "64"])
    assert res.exit_code == 0 and "ow/a.jpg is a folder, so it is kept" in res.output, res.output
    assert Image.open(tmp_path / "ow" / "a~2.jpg").format == "JPEG"


def test_a_librarys_warning_is_one_log_line_and_quiet_hides_it(tmp_path):
    """Pillow warns about a broken EXIF block with Python's two lines (the second its own source
    line), even under -q; now one `warning:` line of the tool's, hidden by -q."""
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 48), 90, np.uint8)).save(buf, "JPEG")
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x0f\x01\x02\x00\x40\x00\x00\x00\x20\x00\x00\x00"
    data = buf.getvalue()
    src = tmp_path / "exif.jpg"
    src.write_bytes(data[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + data[2:])
    res = streamcolor("image", str(src), "-o", str(tmp_path / "a.jpg"), "-r", "64")
    err = res.stderr.decode()
    assert res.returncode == 0 and f"warning: {src}: Corrupt EXIF data" in err and "(UserWarning from PIL/" in err, err
    assert "warnings.warn" not in err
    res = streamcolor("-q", "image", str(src), "-o", str(tmp_path / "b.jpg"), "-r", "64")
    assert res.returncode == 0 and res.stderr.decode() == "", res.stderr.decode()


def test_a_librarys_warning_names_each_file_it_is_about(tmp_path):
    """Two photos with a broken EXIF block in one run: Python's filter said "Corrupt EXIF data"
    once, for neither file by name; now one line for each, naming it."""
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 48), 90, np.uint8)).save(buf, "JPEG")
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x0f\x01\x02\x00\x40\x00\x00\x00\x20\x00\x00\x00"
    data = buf.getvalue()
    for name in ("one.jpg", "two.jpg"):
        (tmp_path / name).write_bytes(data[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + data[2:])
    res = streamcolor("image", str(tmp_path / "one.jpg"), str(tmp_path / "two.jpg"), "-o", str(tmp_path / "out"),
                      "-r", "64")
    err = res.stderr.decode()
    assert res.returncode == 0, err
    for name in ("one.jpg", "two.jpg"):
        assert err.count(f"{tmp_path / name}: Corrupt EXIF data") == 1, err


def test_an_output_that_is_a_file_is_refused_before_any_rename_is_said(tmp_path):
    """`image a/x.png b/x.png -o FILE` said "writing FILE/x~2.png", then refused the run."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.new("L", (32, 32), 90).save(tmp_path / d / "x.png")
    (tmp_path / "ofile").write_text("mine")
    res = streamcolor("image", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "-o",
                      str(tmp_path / "ofile"))
    err = res.stderr.decode()
    assert res.returncode == 2 and "exists and is not a folder" in err and "x~2" not in err, err
    assert (tmp_path / "ofile").read_text() == "mine"
