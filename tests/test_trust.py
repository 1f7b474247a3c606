"""A user's files are never lost and one bad name never stops a run: outputs
that would replace inputs, same-named inputs, reused output folders, the
sweep of temporary files, names that are not UTF-8, names that collide with
the job's own files, formula-looking names, long names, a run killed between
write and record, and the wrong-output cases (arrays, 16-bit colour,
multi-frame images, video option errors).  Every input is made here."""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from streamcolor import image_io, tempfiles
from streamcolor.archive import BatchJob, BatchOptions, colorize_archive
from streamcolor.colorize import colorize_image
from streamcolor.engines import archives
from streamcolor.errors import InputError, OutputError
from streamcolor.items import REPORT_FILENAME, FolderSink, Problem, is_job_file, problems_csv
from streamcolor.manifest import DONE, Manifest
from streamcolor.outputs import plan_outputs
from tests.conftest import make_photo, odd_sized_video
from tests.icc_profiles import gray_profile

REPO = Path(__file__).resolve().parents[1]


def jpeg(seed: int = 0, size: tuple[int, int] = (48, 64)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_photo(*size, seed=seed)[..., 0]).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "streamcolor", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def outputs(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and not is_job_file(p.relative_to(out).as_posix())}


def report_rows(out: Path) -> list[dict[str, str]]:
    with open(out / REPORT_FILENAME, newline="", encoding="utf-8") as fh:  # strict UTF-8: must decode
        return list(csv.DictReader(fh))


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# ---------------------------------------------------------------------------------------------
# image and video: outputs never replace inputs, same-named inputs never share an output
# ---------------------------------------------------------------------------------------------


def test_plan_refuses_every_spelling_of_an_input(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    a = photos / "a.jpg"
    a.write_bytes(jpeg())
    os.link(a, tmp_path / "hard.jpg")
    (tmp_path / "link").symlink_to(photos)
    for proposed in (a, photos / "." / "a.jpg", tmp_path / "link" / "a.jpg", tmp_path / "hard.jpg"):
        with pytest.raises(OutputError, match="would replace"):
            plan_outputs([(a, proposed)])
    # another input's file is refused too (image b.png -> --format jpg would write over the input a.jpg)
    b = photos / "a.png"
    b.write_bytes(b"x")
    with pytest.raises(OutputError, match="the input"):
        plan_outputs([(a, tmp_path / "out" / "a.jpg"), (b, a)])


def test_plan_gives_same_named_inputs_their_own_outputs(tmp_path):
    out = tmp_path / "out"
    pairs = [(tmp_path / d / "x.jpg", out / "x.jpg") for d in ("a", "b", "c")] + [(tmp_path / "X.JPG", out / "X.JPG")]
    got = [p.dst.name for p in plan_outputs(pairs)]
    assert got == ["x.jpg", "x~2.jpg", "x~3.jpg", "X~4.JPG"]  # case-insensitive disks: X.JPG is x.jpg
    assert [p.dst.name for p in plan_outputs(pairs)] == got  # the same every run


def test_the_rename_note_offers_overwrite_only_for_the_name_asked_for(tmp_path):
    """--overwrite replaces a file at the name asked for, never at a ~N streamcolor picks (two inputs of
    one name): the note offered it for both."""
    from streamcolor.outputs import describe_renames

    out = tmp_path / "out"
    out.mkdir()
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jpg").write_bytes(jpeg(1))
    (out / "x~2.jpg").write_bytes(b"mine")
    pairs = [(tmp_path / d / "x.jpg", out / "x.jpg") for d in ("a", "b")]
    [note] = describe_renames(plan_outputs(pairs, keep_others=True, picked=True))
    assert "x~2.jpg is not its earlier output" in note and "x~3.jpg" in note and "--overwrite" not in note
    (out / "y.jpg").write_bytes(b"mine")
    [note] = describe_renames(plan_outputs([(tmp_path / "a" / "x.jpg", out / "y.jpg")], keep_others=True))
    assert "y.jpg is not its earlier output" in note and "(--overwrite replaces it)" in note


def test_plan_numbers_names_that_differ_only_in_unicode_form(tmp_path):
    """café.jpg typed as NFC and as NFD are one file on macOS (and in a zip unpacked there)."""
    out = tmp_path / "out"
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"
    pairs = [(tmp_path / "a" / nfc, out / nfc), (tmp_path / "b" / nfd, out / nfd),
             (tmp_path / "c" / "CAF\u00c9.jpg", out / "CAF\u00c9.jpg")]
    got = [p.dst.name for p in plan_outputs(pairs)]
    assert got == [nfc, "cafe\u0301~2.jpg", "CAF\u00c9~3.jpg"]
    assert plan_outputs(pairs[1:2])[0].dst.name == nfd  # alone, a name is kept as given


def test_image_cli_refuses_to_overwrite_its_inputs(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"p{i}.jpg").write_bytes(jpeg(i))
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    r = cli("image", *(str(p) for p in sorted(photos.iterdir())), "-o", str(photos))
    assert r.returncode == 2
    assert "would replace" in one_error_line(r.stderr)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before

    r = cli("image", str(photos / "p0.jpg"), "-o", str(photos / "new" / ".." / "p0.jpg"))  # via a folder to make
    assert r.returncode == 2 and "would replace" in one_error_line(r.stderr) and not (photos / "new").exists()

    # same-named inputs from two folders: two outputs; an unknown model: exit 2
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jpg").write_bytes(jpeg(3))
    r = cli("image", str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"), "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.jpg", "x~2.jpg"]
    for verb, src in (("image", tmp_path / "a" / "x.jpg"), ("batch", tmp_path / "a")):
        for bad_model in ("no-such-model", ""):  # refused before the output folder is made
            r = cli(verb, str(src), "-o", str(tmp_path / "o2" / verb), "-m", bad_model)
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
            assert "--model" in one_error_line(r.stderr), r.stderr
            assert not (tmp_path / "o2").exists()


def test_image_cli_keeps_a_file_it_did_not_write_and_replaces_only_its_own_unchanged_output(tmp_path):
    """A photo of the user's at an output's path is kept (the output takes ~2); a rerun replaces
    streamcolor's own output, but not once the user has changed it; --overwrite replaces anything."""
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "p.jpg"
    src.write_bytes(jpeg(1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.jpg").write_bytes(b"my own photo")
    r = cli("image", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "is kept" in r.stderr and "p~2.jpg" in r.stderr
    assert (out / "p.jpg").read_bytes() == b"my own photo"
    assert Image.open(out / "p~2.jpg").mode == "RGB"
    first = os.stat(out / "p~2.jpg")

    r = cli("image", str(src), "-o", str(out))  # its own output, unchanged: replaced, nothing new
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p.jpg", "p~2.jpg"]
    assert os.stat(out / "p~2.jpg").st_ino != first.st_ino  # (written again: a new file renamed into place)

    (out / "p~2.jpg").write_bytes(jpeg(7))  # the user retouches the output
    retouched = (out / "p~2.jpg").read_bytes()
    r = cli("image", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "p~2.jpg").read_bytes() == retouched and (out / "p~3.jpg").is_file()

    mine = tmp_path / "mine.jpg"  # a single output file named by -o: the same rule
    mine.write_bytes(b"precious")
    r = cli("image", str(src), "-o", str(mine))
    assert r.returncode == 0 and mine.read_bytes() == b"precious" and (tmp_path / "mine~2.jpg").is_file()

    mine2 = (tmp_path / "mine~2.jpg").read_bytes()
    r = cli("image", str(src), "-o", str(mine), "--skip-existing", "--overwrite")  # which wins? neither
    assert r.returncode == 2 and "contradict" in r.stderr and mine.read_bytes() == b"precious"
    r = cli("image", str(src), "-o", str(mine), "--skip-existing")
    assert r.returncode == 0 and mine.read_bytes() == b"precious" and (tmp_path / "mine~2.jpg").read_bytes() == mine2
    assert "skipped" in r.stderr and "exists (--skip-existing)" in r.stderr
    assert sorted(p.name for p in tmp_path.glob("mine*")) == ["mine.jpg", "mine~2.jpg"]
    (tmp_path / "new").mkdir()
    r = cli("image", str(src), "-o", str(tmp_path / "new" / "x" / ".." / ".." / "mine.jpg"))  # via a folder to make
    assert r.returncode == 0 and mine.read_bytes() == b"precious" and "mine~2.jpg" in r.stderr  # (its own: replaced)
    assert sorted(p.name for p in tmp_path.glob("mine*")) == ["mine.jpg", "mine~2.jpg"]

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("image", str(src), "-o", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "p.jpg").mode == "RGB" and before["p.jpg"] == b"my own photo"
    assert {n: (out / n).read_bytes() for n in before if n != "p.jpg"} == {n: b for n, b in before.items()
                                                                           if n != "p.jpg"}


def test_overwrite_never_reaches_a_number_streamcolor_picks(tmp_path):
    """Two inputs named p.jpg into one folder: the second output gets a number.  --overwrite is for
    the name asked for (p.jpg), so a file of the user's at p~2.jpg is kept and the output takes
    p~3.jpg; a rerun replaces its own outputs and makes no p~4.jpg."""
    for d, seed in (("a", 1), ("b", 2)):
        (tmp_path / d).mkdir()
        (tmp_path / d / "p.jpg").write_bytes(jpeg(seed))
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.jpg").write_bytes(b"replace me, I asked for it")
    (out / "p~2.jpg").write_bytes(b"my own photo")
    args = ("image", str(tmp_path / "a" / "p.jpg"), str(tmp_path / "b" / "p.jpg"), "-o", str(out), "--overwrite")
    for _ in range(2):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        assert "writing " + str(out / "p~3.jpg") in r.stderr
        assert (out / "p~2.jpg").read_bytes() == b"my own photo"
        assert Image.open(out / "p.jpg").mode == Image.open(out / "p~3.jpg").mode == "RGB"
        assert sorted(p.name for p in out.iterdir()) == ["p.jpg", "p~2.jpg", "p~3.jpg"]


def test_photos_piped_to_the_same_output_keep_each_other(tmp_path):
    """Bytes piped in are known by their content: other bytes piped to the same -o keep the first
    output (name~2), as two inputs of one name do; the same bytes again replace their own output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def pipe(data: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streamcolor", "image", "-", "-o", str(tmp_path / "c.png")],
                              input=data, capture_output=True, timeout=300, env=env)

    assert pipe(jpeg(1)).returncode == 0
    first = (tmp_path / "c.png").read_bytes()
    r = pipe(jpeg(2))
    assert r.returncode == 0 and b"c~2.png" in r.stderr, r.stderr
    assert (tmp_path / "c.png").read_bytes() == first
    second = (tmp_path / "c~2.png").read_bytes()
    assert second != first
    r = pipe(jpeg(1))  # the first photo again: its own output, replaced in place
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c~2.png"]
    assert (tmp_path / "c~2.png").read_bytes() == second


def test_an_endless_pipe_is_refused_as_it_arrives(tmp_path):
    """stdin past what any image within --max-pixels can take is refused while it is read (a pipe
    can be endless), with the reason, exit 1 and nothing written."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stream = b"\0" * ((64 << 20) + 8 * 1000 + 1)
    r = subprocess.run([sys.executable, "-m", "streamcolor", "image", "-", "-o", str(tmp_path / "c.png"),
                        "--max-pixels", "1000"], input=stream, capture_output=True, timeout=300, env=env)
    assert r.returncode == 1 and b"<stdin>: over 67,116,864 bytes" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
    r = subprocess.run([sys.executable, "-m", "streamcolor", "image", "-", "-o", str(tmp_path / "c.png")],
                       input=jpeg(3), capture_output=True, timeout=300, env=env)  # (in memory: a small one)
    assert r.returncode == 0 and Image.open(tmp_path / "c.png").size == (64, 48), r.stderr


def test_written_by_streamcolor_is_the_same_file_unchanged(tmp_path):
    from streamcolor.outputs import remember_written, written_by_streamcolor

    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    assert not written_by_streamcolor(f)
    remember_written(f)
    assert written_by_streamcolor(f)
    assert written_by_streamcolor(tmp_path / "." / "a.jpg")  # another spelling of it
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched (an editor saving it)
    assert not written_by_streamcolor(f)
    remember_written(f)
    link = tmp_path / "link.jpg"
    link.symlink_to(f)
    assert written_by_streamcolor(f) and not written_by_streamcolor(link)  # a link is never its own
    f.unlink()
    f.write_bytes(b"x")  # another file by the same name
    assert not written_by_streamcolor(f) and not written_by_streamcolor(tmp_path / "none.jpg")
    remember_written(f, tmp_path / "a" / "x.jpg")  # from an input: only a run from that input replaces it
    assert written_by_streamcolor(f, tmp_path / "a" / "x.jpg") and written_by_streamcolor(f)
    assert written_by_streamcolor(f, tmp_path / "a" / ".." / "a" / "x.jpg")  # (its real path)
    assert not written_by_streamcolor(f, tmp_path / "b" / "x.jpg")


# ---------------------------------------------------------------------------------------------
# temporary files: fixed length, swept only when this tool made them and their writer is gone
# ---------------------------------------------------------------------------------------------


def test_temporary_names_have_a_fixed_length_and_the_sweep_touches_only_abandoned_ones(tmp_path):
    long_name = "n" * 240 + ".jpg"
    with image_io.atomic_output(tmp_path / long_name) as tmp:
        assert len(tmp.name) == len(tempfiles.PREFIX) + 12 + 1 + 8 + len(".part")
        tmp.write_bytes(b"data")
    assert (tmp_path / long_name).read_bytes() == b"data"

    user_part = tmp_path / ".holiday.jpg.abc123.part"  # a user's file that looks like a temporary
    user_part.write_bytes(b"mine")
    alive = tempfiles.create(tmp_path / "a.jpg")  # a writer that is still running
    dead = tempfiles.create(tmp_path / "a.jpg")
    dead._release()  # its writer was killed: the lock is gone, the file stays
    other = tempfiles.create(tmp_path / "b.jpg")
    other._release()
    assert tempfiles.sweep(tmp_path, ["a.jpg"]) == 1
    assert not dead.path.exists()
    assert alive.path.exists() and other.path.exists() and user_part.exists()
    alive.discard()


def make_clip(path: Path, frames: int = 12) -> Path:
    from streamcolor.video import make_clip as clip

    return clip(path, 64, 48, frames)


def test_video_cli_errors_are_one_line_with_exit_2(tmp_path):
    clip = make_clip(tmp_path / "in.mp4")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (str(clip), str(clip), "-o", str(a_file)),  # several inputs into an existing file
        (str(clip), "-o", str(a_file / "sub") + "/"),  # a folder that cannot be created
        (str(clip), "-o", str(a_file / "v.mp4")),  # one output file whose folder's place is taken by a file
        (str(clip), "-o", str(tmp_path / "o.mp4"), "--pix-fmt", "nope"),
        (str(clip), "-o", str(tmp_path / "o.mp4"), "--codec", "aac"),
        (str(clip), "-o", str(tmp_path / "o.mp4"), "--codec", "no-such-codec"),
        (str(clip), "-o", str(clip)),  # the input itself
        (str(clip), "-o", str(tmp_path / "o.mp4"), "-m", "no-such-model"),
    ]
    for args in cases:
        r = cli("video", "--no-progress", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
    assert clip.stat().st_size > 0


def signalled_while_writing(args: list[str], writing, sig: int) -> tuple[int, str]:
    """Run ``streamcolor ARGS``, send ``sig`` once ``writing()`` says it has started writing its output;
    (exit status, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "streamcolor", *args, "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not writing():
            assert proc.poll() is None and time.monotonic() < deadline, f"{args[0]} never started writing"
            time.sleep(0.02)
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


def temp_file_written(folder: Path):
    """A check that one of our temporary files in ``folder`` has bytes in it."""
    return lambda: any(tempfiles.is_temp_name(p.name) and p.stat().st_size > 0 for p in folder.iterdir())


@pytest.mark.slow
def test_killed_video_leaves_a_temporary_that_the_next_run_sweeps(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=400)
    dst = tmp_path / "out" / "in-colour.mp4"
    (tmp_path / "out").mkdir()
    keep = tmp_path / "out" / "notes.part"  # the user's; not ours to delete
    keep.write_text("keep")
    signalled_while_writing(["video", str(clip), "-o", str(dst), "-b", "1"], temp_file_written(dst.parent),
                            signal.SIGKILL)
    assert [p for p in dst.parent.iterdir() if tempfiles.is_temp_name(p.name)]  # left by the kill
    r = cli("video", "--no-progress", str(make_clip(tmp_path / "short.mp4")), "-o", str(dst))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dst.parent.iterdir()) == ["in-colour.mp4", "notes.part"]


@pytest.mark.slow
def test_a_terminated_video_stops_cleanly_as_ctrl_c_does(tmp_path):
    """SIGTERM (kill, docker stop, systemd) unwinds like Ctrl-C: no temporary left, the earlier output kept."""
    clip = make_clip(tmp_path / "in.mp4", frames=400)
    dst = tmp_path / "out" / "in-colour.mp4"
    dst.parent.mkdir()
    dst.write_bytes(b"the earlier output")
    rc, err = signalled_while_writing(["video", str(clip), "-o", str(dst), "-b", "1"], temp_file_written(dst.parent),
                                      signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM and "terminated" in err and "Traceback" not in err, err
    assert sorted(p.name for p in dst.parent.iterdir()) == ["in-colour.mp4"]
    assert dst.read_bytes() == b"the earlier output"


def test_an_interruption_as_the_stage_threads_start_still_waits_for_them(engine, tmp_path, monkeypatch):
    """A SIGTERM landing after the pipeline's threads had started but before it waited on them
    left the reader demuxing while the caller closed the input: a segmentation fault (1 run in 15
    of `video` stopped at the start of a part).  The interruption now waits for every thread."""
    import threading

    from streamcolor.video import colorize_video, pipeline

    clip = make_clip(tmp_path / "in.mp4", frames=48)

    def interrupted(*a, **k):  # (what a signal's handler raises, at that moment)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "progress_bar", interrupted)
    with pytest.raises(KeyboardInterrupt):
        colorize_video(clip, tmp_path / "out.mp4", engine=engine, progress=False)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("streamcolor-")]
    assert alive == [], alive
    assert not (tmp_path / "out.mp4").exists()


def test_an_interruption_that_lands_in_a_finalizer_is_delivered_again():
    """Python drops an exception raised inside a finalizer (``__del__``, a weakref callback), the
    KeyboardInterrupt of a SIGTERM's handler too: `video` stopped with SIGTERM ran on to the end,
    exit 0, in 3 runs of 45.  The CLI raises it again once the finalizer is over."""
    script = textwrap.dedent("""
        import os, signal, time
        from streamcolor.cli import _handle_interruptions
        terminated = _handle_interruptions()
        class Finalized:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, inside the finalizer
                for _ in range(1000):
                    pass
        try:
            Finalized()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pass
            print("ran on")
        except KeyboardInterrupt:
            print("stopped", len(terminated))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["stopped", "2"], (r.stdout, r.stderr)  # (the signal, then its delivery again)
    assert "Exception ignored" not in r.stderr, r.stderr


def test_an_interruption_behind_another_error_is_found():
    from streamcolor.engines import interrupted

    def wrapped(cause: bool) -> BaseException:
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as ki:
                if cause:
                    raise ImportError("initialization failed") from ki  # (as pybind11 does)
                raise ImportError("initialization failed")  # (only its context)
        except ImportError as exc:
            return exc

    assert interrupted(wrapped(True)) and interrupted(wrapped(False))
    outer = RuntimeError("outer")
    outer.__context__ = wrapped(True)
    assert interrupted(outer)
    assert not interrupted(ImportError("no module named onnxruntime"))
    looped = ValueError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped  # (a cycle ends the walk)
    assert not interrupted(looped)


@pytest.mark.parametrize("verb", ["image", "batch"])
def test_an_interruption_as_the_runtime_loads_is_an_interruption_not_its_error(tmp_path, verb):
    """A SIGTERM that lands while ONNX Runtime's native module initializes comes back from pybind11
    as ``ImportError("initialization failed")``: `batch` said "error: initialization failed", exit 2
    (CI, 1 run), and auto precision could have taken it for a variant that cannot load and gone on.
    The runtime's load raises what pybind11 raises there (the race itself cannot be timed in a test)."""
    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(make_photo(64, 80, seed=1)[..., 0]).save(src / "a.jpg")
    out = tmp_path / "out"
    target = [str(src / "a.jpg"), "-o", str(out / "a.png")] if verb == "image" else [str(src), "-o", str(out)]
    script = textwrap.dedent(f"""
        import sys
        from streamcolor.engines import select

        def load_interrupted(*args, **kwargs):
            try:
                raise KeyboardInterrupt  # (the handler of SIGTERM, in the module's initialization)
            except KeyboardInterrupt as exc:
                raise ImportError("initialization failed") from exc

        select._load = load_interrupted
        from streamcolor.cli import main
        sys.argv = ["streamcolor", {verb!r}, *{target!r}]
        main()
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert r.stderr.startswith("aborted:") and "initialization failed" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not any(out.rglob("*.png")), r.stderr


# ---------------------------------------------------------------------------------------------
# batch: reused output folders, the user's files, the job's own files
# ---------------------------------------------------------------------------------------------


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_reused_output_folder_keeps_the_earlier_sources_outputs(engine, tmp_path):
    out = tmp_path / "out"
    opts = BatchOptions(workers=1)
    colorize_archive(zip_of(tmp_path / "cam1.zip", {"DSC0000.jpg": jpeg(1)}), out, engine=engine, options=opts,
                     progress=False)
    first = (out / "DSC0000.jpg").read_bytes()
    (out / "mine.jpg").write_bytes(b"the user's own file")
    (out / "old.part").write_bytes(b"the user's own .part file")
    cam2 = zip_of(tmp_path / "cam2.zip", {"DSC0000.jpg": jpeg(2), "mine.jpg": jpeg(3)})
    report = colorize_archive(cam2, out, engine=engine, options=opts, progress=False)
    assert report.ok and report.done_now == 2
    assert (out / "DSC0000.jpg").read_bytes() == first
    assert (out / "mine.jpg").read_bytes() == b"the user's own file"
    assert (out / "old.part").read_bytes() == b"the user's own .part file"
    assert set(outputs(out)) == {"DSC0000.jpg", "DSC0000~2.jpg", "mine.jpg", "mine~2.jpg", "old.part"}
    again = colorize_archive(cam2, out, engine=engine, options=opts, progress=False)  # resumes, renames nothing
    assert again.ok and again.done_now == 0 and again.done == 2


def test_members_named_like_the_jobs_files_do_not_block_it(engine, tmp_path):
    members = {f"{REPORT_FILENAME}/a.jpg": jpeg(1), ".streamcolor/manifest.sqlite/b.jpg": jpeg(2),
               ".STREAMCOLOR/lock.jpg": jpeg(3), "=cmd|' -c calc'!A0.png": b"not an image",
               "@sum(1).jpg": b"", "+1.jpg": b"", "-2.jpg": b""}
    src = zip_of(tmp_path / "evil.zip", members)
    out = tmp_path / "out"
    for _ in range(2):  # a rerun is not blocked either
        report = colorize_archive(src, out, engine=engine, options=BatchOptions(workers=1), progress=False)
        assert report.done == 1 and report.failed == 4  # (a .streamcolor/ folder is a job's state: left out)
    assert (out / REPORT_FILENAME).is_file()
    assert set(outputs(out)) == {f"{REPORT_FILENAME}~member/a.jpg"}
    cells = [row["member"] for row in report_rows(out)]
    assert sorted(cells) == sorted(["'=cmd|' -c calc'!A0.png", "'@sum(1).jpg", "'+1.jpg", "'-2.jpg"])
    assert all(not c.startswith(("=", "+", "-", "@")) for row in report_rows(out) for c in row.values())


def test_report_cells_are_never_formulas_and_always_utf8():
    data = problems_csv([Problem("failed", "=src.zip", "caf\udce9.jpg", "-reason")]).decode("utf-8")
    assert "'=src.zip" in data and "caf\\xe9.jpg" in data and "'-reason" in data


def test_names_that_are_not_utf8_are_processed(engine, tmp_path):
    latin1 = os.fsdecode(b"caf\xe9")  # a folder made on a Latin-1 system
    folder = tmp_path / "src" / latin1
    folder.mkdir(parents=True)
    (folder / os.fsdecode(b"\xe9t\xe9.jpg")).write_bytes(jpeg(1))
    (folder / os.fsdecode(b"=bad\xff.jpg")).write_bytes(b"")  # fails: reported
    tar_path = tmp_path / "gnu.tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo("d\xe9j\xe0.jpg")  # stored as Latin-1 bytes: not UTF-8
        data = jpeg(2)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    bad_flag = zip_of(tmp_path / "flag.zip", {"AAAA.jpg": jpeg(3), "ok.jpg": jpeg(4), "\u00fcber.jpg": jpeg(5)})
    raw = bytearray(bad_flag.read_bytes().replace(b"AAAA.jpg", b"\xff\xfe\xfd\xfc.jpg"))  # not UTF-8 ...
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # ... yet marked UTF-8 (bit 11)
        i = raw.find(sig)
        raw[i + flag_at + 1] |= 0x08
    bad_flag.write_bytes(bytes(raw))
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(bad_flag)  # the zip module alone refuses the whole archive
    out = tmp_path / "out"
    report = colorize_archive([tmp_path / "src", tar_path, bad_flag], out, engine=engine,
                              options=BatchOptions(workers=1), progress=False)
    assert report.done == 5 and report.failed == 1, report.problems
    names = set(outputs(out))
    assert os.fsdecode(b"src/caf\xe9/\xe9t\xe9.jpg") in names
    assert os.fsdecode("gnu/d\xe9j\xe0.jpg".encode("latin-1")) in names
    assert "flag/\u00fcber.jpg" in names and "flag/ok.jpg" in names
    rows = report_rows(out)  # valid UTF-8, the bytes shown as \xNN
    assert [r["member"] for r in rows] == ["caf\\xe9/=bad\\xff.jpg"]
    again = colorize_archive([tmp_path / "src", tar_path, bad_flag], out, engine=engine,
                             options=BatchOptions(workers=1), progress=False)
    assert again.done_now == 0 and again.done == 5


# ---------------------------------------------------------------------------------------------
# exactly once: an output renamed, then the run killed before the next record
# ---------------------------------------------------------------------------------------------


def test_an_output_staged_before_a_kill_is_renamed_not_written_again(engine, tmp_path):
    src = zip_of(tmp_path / "in.zip", {"a.jpg": jpeg(1), "b.jpg": jpeg(2)})
    out = tmp_path / "out"
    options = BatchOptions(workers=1)
    with BatchJob(src, out, options=options) as job:
        color = options.color_options(engine)
        from streamcolor.items import colorize_items

        item = job.todo[0]
        [outcome] = colorize_items([(item, job.read(item))], engine=engine, options=color,
                                   sink=FolderSink(out, staging=True))
        staged = outcome.staged
        job.manifest.mark(item.key, DONE, output=item.key, temp=staged.path.name)
        staged._release()  # killed here: recorded, not renamed; the writer's lock is gone
        inode = staged.path.stat().st_ino
    report = colorize_archive(src, out, engine=engine, options=options, progress=False)
    assert report.ok and report.done_now == 1  # only b.jpg was colorized
    assert (out / item.key).stat().st_ino == inode  # a.jpg is the file written before the kill
    assert not [p for p in out.rglob("*") if tempfiles.is_temp_name(p.name)]
    with Manifest.open(out) as m:
        assert m.pending_renames() == []


def test_a_redo_killed_before_its_rename_is_renamed_over_the_earlier_output(engine, tmp_path, monkeypatch):
    """With --redo (or a changed source) the new output replaces the item's earlier one.  Killed
    between recording it and the rename, the rerun renamed it only where nothing was there: it gave
    up, took the earlier output for the user's, wrote the item again as a~2.jpg and left the
    complete temporary behind for good."""
    src = zip_of(tmp_path / "in.zip", {"a.jpg": jpeg(1)})
    out = tmp_path / "out"
    colorize_archive(src, out, engine=engine, options=BatchOptions(render_size=32), progress=False)
    earlier = (out / "a.jpg").read_bytes()

    class Killed(BaseException):
        pass

    def killed(self, *args, **kwargs):
        self._release()  # (the writer's lock goes with the process)
        raise Killed

    options = BatchOptions(redo=True)  # (another render size: other bytes than the earlier output's)
    with BatchJob(src, out, options=options) as job:
        from streamcolor.items import colorize_items

        [item] = job.todo
        [outcome] = colorize_items([(item, job.read(item))], engine=engine, options=options.color_options(engine),
                                   sink=FolderSink(out, staging=True))
        staged = outcome.staged
        made = staged.path.read_bytes()
        monkeypatch.setattr(tempfiles.Staged, "commit", killed)
        with pytest.raises(Killed):
            job.record(outcome)
    monkeypatch.undo()
    assert made != earlier and (out / "a.jpg").read_bytes() == earlier
    report = colorize_archive(src, out, engine=engine, options=BatchOptions(), progress=False)
    assert report.ok and report.done_now == 0, report.problems  # (renamed, not colorized again)
    assert sorted(p.name for p in out.iterdir() if not is_job_file(p.name)) == ["a.jpg"]
    assert (out / "a.jpg").read_bytes() == made


def test_a_rerun_under_another_format_sweeps_what_a_killed_run_left(engine, tmp_path):
    """A killed run's temporaries are named for its outputs (a.jpg); a rerun with --format png
    lists other names (a.png), and still removes them: they are the job's, and abandoned."""
    src = zip_of(tmp_path / "in.zip", {"a.jpg": jpeg(1), "sub/b.jpg": jpeg(2)})
    out = tmp_path / "out"
    with BatchJob(src, out, options=BatchOptions()):
        pass  # (listed and recorded, then killed before any output)
    for key in ("a.jpg", "sub/b.jpg"):
        tempfiles.create(out / key)._release()  # its writer gone: abandoned
    assert len([p for p in out.rglob("*") if tempfiles.is_temp_name(p.name)]) == 2
    report = colorize_archive(src, out, engine=engine, options=BatchOptions(output_format="png"), progress=False)
    assert report.ok and set(outputs(out)) == {"a.png", "sub/b.png"}
    assert not [p for p in out.rglob("*") if tempfiles.is_temp_name(p.name)]


# ---------------------------------------------------------------------------------------------
# wrong output: arrays, 16-bit colour, multi-frame images
# ---------------------------------------------------------------------------------------------


def test_arrays_of_any_float_width_and_byte_order(engine):
    gray = make_photo(32, 48, seed=5)[..., 0]
    ref = colorize_image(gray, engine=engine)
    for arr in (gray.astype(np.float16) / 255, gray.astype(np.float64) / 255, gray.astype(np.float32) / 255):
        out = colorize_image(arr, engine=engine)
        assert out.dtype == arr.dtype and out.shape == (32, 48, 3)
        assert np.abs(out.astype(np.float32) * 255 - ref).mean() < 2.5  # not black
    big = (gray.astype(np.uint16) * 257).astype(">u2")
    out16 = colorize_image(big, engine=engine)
    assert out16.dtype == np.uint16 and np.abs(out16 / 257 - ref).mean() < 2
    nan = np.full((16, 16), np.nan, dtype=np.float32)
    with pytest.raises(InputError, match="NaN"):
        colorize_image(nan, engine=engine)
    with pytest.raises(InputError, match="list"):
        colorize_image([[0, 1], [1, 0]], engine=engine)


def test_16_bit_colour_stays_16_bit(engine, tmp_path):
    import cv2

    rgb = (make_photo(40, 56, seed=6).astype(np.uint16) * 257 + np.arange(56, dtype=np.uint16)[None, :, None])
    src = tmp_path / "in16.png"
    cv2.imwrite(str(src), rgb[..., ::-1])
    decoded = image_io.read_image(src)
    assert decoded.pixels.dtype == np.uint16 and np.array_equal(decoded.pixels, rgb)
    colorize_image(src, tmp_path / "out16.png", engine=engine)
    back = cv2.imread(str(tmp_path / "out16.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (40, 56, 3)
    assert len(np.unique(back)) > 256  # not 8-bit data scaled up


def test_multi_frame_images_are_reported_not_cut_to_their_first_frame(tmp_path):
    frames = [Image.fromarray(make_photo(24, 24, seed=i)[..., 0]) for i in range(3)]
    for name, kwargs in (("pages.tif", {}), ("anim.gif", {"duration": 50, "loop": 0}),
                         ("anim.png", {"duration": 50}), ("anim.webp", {"duration": 50})):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], **kwargs)
        with pytest.raises(InputError, match="3 (pages|frames)"):
            image_io.read_image(tmp_path / name)


def test_batch_refuses_an_output_inside_its_source_by_any_spelling(tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    (tmp_path / "link").symlink_to(src)
    for out in (tmp_path / "link" / "colour", src / "x" / "..", tmp_path / "link"):
        with pytest.raises(ValueError, match="overlap"):
            BatchJob(src, out)
    with pytest.raises(ValueError, match="overlap"):
        BatchJob(tmp_path / "link", src / "colour")
    # (`batch photos -o photos.zip`, the natural command: the message names a name that works)
    with pytest.raises(ValueError, match=r"scans.zip is packed from the folder .*scans, which is the source .*-o "
                                         r".*scans-colour.zip"):
        BatchJob(src, tmp_path / "scans.zip")


def test_batch_into_a_file_says_it_is_a_file(tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    (tmp_path / "outfile").write_bytes(b"mine")
    with pytest.raises(OutputError, match="outfile: a file, not a folder"):
        with BatchJob(src, tmp_path / "outfile"):
            pass
    assert (tmp_path / "outfile").read_bytes() == b"mine"


def test_batch_refuses_a_dash_for_stdin_or_stdout_and_takes_dot_slash_dash_as_a_folder(tmp_path):
    """`-o -` means stdout in `image`; `batch` writes a folder, so it says so instead of making a
    folder named "-" (and never reads a source "-" as one); ./- is that folder when it is meant."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(jpeg())
    for args in (["d", "-o", "-"], ["-", "-o", "out"]):
        r = cli("batch", *args, cwd=tmp_path)
        assert r.returncode == 2 and "not stdin or stdout ('-')" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    r = cli("-q", "batch", "d", "-o", "./-", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "-" / "a.jpg").is_file(), r.stderr


def test_the_api_refuses_to_write_over_its_input(engine, tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(jpeg())
    os.link(src, tmp_path / "b.jpg")
    with pytest.raises(OutputError, match="would replace"):
        colorize_image(src, tmp_path / "b.jpg", engine=engine)
    clip = make_clip(tmp_path / "in.mp4")
    os.link(clip, tmp_path / "same.mp4")
    from streamcolor.video import colorize_video

    with pytest.raises(OutputError, match="would replace"):
        colorize_video(clip, tmp_path / "same.mp4", engine=engine, progress=False)
    assert src.read_bytes() == jpeg()


def test_numbered_names_still_fit_the_filesystem(engine, tmp_path):
    src = zip_of(tmp_path / "long.zip", {"n" * 251 + ".jpg": jpeg(1), "N" * 251 + ".jpg": jpeg(2)})
    out = tmp_path / "out"
    report = colorize_archive(src, out, engine=engine, options=BatchOptions(workers=1), progress=False)
    assert report.ok, report.problems  # 255-byte names: their temporary names and their ~2 fit too
    assert sorted(len(n) for n in outputs(out)) == [255, 255]
    # a member name over the limit (tar and zip allow any) is shortened to fit, inside its folder
    src = zip_of(tmp_path / "longer.zip", {"d/" + "é" * 200 + ".jpg": jpeg(1), "d/ok.jpg": jpeg(2)})
    report = colorize_archive(src, tmp_path / "out3", engine=engine, progress=False, options=BatchOptions(workers=1))
    assert report.ok, report.problems
    assert sorted(outputs(tmp_path / "out3")) == ["d/ok.jpg", "d/" + "é" * 125 + ".jpg"]  # 254 bytes: whole letters
    # a longer suffix (.jpg -> .webp) shortens the stem, and the two names it makes one get ~2
    src = zip_of(tmp_path / "long2.zip", {"z" * 251 + ".jpg": jpeg(1), "z" * 250 + "y.jpg": jpeg(2)})
    report = colorize_archive(src, tmp_path / "out2", engine=engine, progress=False,
                              options=BatchOptions(workers=1, output_format="webp"))
    assert report.ok, report.problems
    assert sorted(outputs(tmp_path / "out2")) == ["z" * 250 + ".webp", "z" * 248 + "~2.webp"]


# --------------------------------------------------------------------------------------------- a new user's review
# (what a session trying the CLI as a new user, on inputs it made itself, found)


def test_the_report_keeps_the_problems_of_another_job_into_the_same_output(engine, tmp_path):
    """batch A -o OUT, batch B -o OUT (B has a bad file), batch A -o OUT: the report then held A's empty
    list, B's failure gone.  It is OUT's report: B's row stays, named by its source, while the job's
    own report (its problems) is A's alone."""
    out = tmp_path / "out"
    for name, files in (("a", {"p.jpg": jpeg(1)}), ("b", {"q.jpg": jpeg(2), "bad.jpg": b"not a photo"})):
        (tmp_path / name).mkdir()
        for f, data in files.items():
            (tmp_path / name / f).write_bytes(data)
    colorize_archive(tmp_path / "a", out, engine=engine, progress=False)
    colorize_archive(tmp_path / "b", out, engine=engine, progress=False)
    report = colorize_archive(tmp_path / "a", out, engine=engine, progress=False)
    assert report.problems == []
    rows = report_rows(out)
    assert [(r["member"], r["state"]) for r in rows] == [("bad.jpg", "failed")], rows
    assert rows[0]["source"] == str(tmp_path / "b")


def test_the_packed_archive_never_replaces_a_file_the_job_did_not_write(engine, tmp_path):
    """`batch SRC -o album.zip` renames the packed archive onto album.zip: a user's own
    album.zip stays as it is (refused before anything is made), the job's own archive of an
    earlier run is replaced, and one changed since is the user's again."""
    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    mine = tmp_path / "album.zip"
    mine.write_bytes(b"my precious notes")
    with pytest.raises(OutputError, match="album.zip exists and is a file this job has no record of packing "
                                          r"\(a file of yours"):
        colorize_archive(src, mine, engine=engine, progress=False)
    assert mine.read_bytes() == b"my precious notes" and not (tmp_path / "album").exists()
    with pytest.raises(OutputError, match="it is kept"):  # the folder + --archive spelling
        colorize_archive(src, tmp_path / "album", engine=engine, options=BatchOptions(archive="zip"), progress=False)
    assert mine.read_bytes() == b"my precious notes"

    ours = tmp_path / "ours.zip"
    for _ in range(2):  # a rerun replaces the archive it packed itself
        report = colorize_archive(src, ours, engine=engine, progress=False)
        assert report.ok and report.archive == ours
        assert zipfile.ZipFile(ours).namelist() == ["a.jpg"]
    ours.write_bytes(b"edited by hand")
    with pytest.raises(OutputError, match="changed since"):
        colorize_archive(src, ours, engine=engine, progress=False)
    assert ours.read_bytes() == b"edited by hand"


def test_the_packed_archive_of_other_sources_is_not_replaced(engine, tmp_path):
    """Two jobs of different sources into one ``-o colour.zip``: the second is refused before
    it does anything (the first one's archive is kept, and its report too), the first one's
    rerun replaces its own archive as before."""
    album1 = zip_of(tmp_path / "album1.zip", {"a1.jpg": jpeg(1), "a2.jpg": jpeg(2)})
    album2 = zip_of(tmp_path / "album2.zip", {"b1.jpg": jpeg(3), "a1.jpg": jpeg(4), "bad.jpg": b"x"})
    packed = tmp_path / "colour.zip"
    colorize_archive(album1, packed, engine=engine, progress=False)
    first, report = packed.read_bytes(), (tmp_path / "colour" / REPORT_FILENAME).read_bytes()
    with pytest.raises(OutputError, match=r"colour.zip exists and was packed from .*album1.zip, not from .*album2.zip"):
        colorize_archive(album2, packed, engine=engine, progress=False)
    assert packed.read_bytes() == first and (tmp_path / "colour" / REPORT_FILENAME).read_bytes() == report
    assert colorize_archive(album1, packed, engine=engine, progress=False).ok  # its own: replaced
    assert sorted(zipfile.ZipFile(packed).namelist()) == ["a1.jpg", "a2.jpg"]


def test_archives_of_other_sources_never_share_a_work_folder(engine, tmp_path):
    """``-o colour.zip`` for one album, then ``-o colour.tar`` for another: both would work in ``colour/``,
    the second job's outputs renamed around the first's and its report replacing the first's.  The
    second is refused before it does anything; the same album packed as tar too still shares it."""
    album1 = zip_of(tmp_path / "album1.zip", {"a1.jpg": jpeg(1), "bad.jpg": b"x"})
    album2 = zip_of(tmp_path / "album2.zip", {"a1.jpg": jpeg(3), "b2.jpg": jpeg(4)})
    colorize_archive(album1, tmp_path / "colour.zip", engine=engine, progress=False)
    report = (tmp_path / "colour" / REPORT_FILENAME).read_bytes()
    with pytest.raises(OutputError, match=r"colour is the work folder of .*colour.zip, packed from .*album1.zip; "
                                          r"this job's sources differ.*\(e.g. colour-2.tar\)"):
        colorize_archive(album2, tmp_path / "colour.tar", engine=engine, progress=False)
    assert not (tmp_path / "colour.tar").exists() and (tmp_path / "colour" / REPORT_FILENAME).read_bytes() == report
    assert sorted(outputs(tmp_path / "colour")) == ["a1.jpg"]
    again = colorize_archive(album1, tmp_path / "colour.tar", engine=engine, progress=False)  # same album, as tar
    assert again.archive == tmp_path / "colour.tar" and (tmp_path / "colour.zip").is_file()
    # a first job stopped before it packed has claimed its folder all the same
    from streamcolor.archive import BatchJob

    with BatchJob([album1], tmp_path / "sepia.zip") as job:
        assert job.items  # listed, nothing colorized or packed (as after a kill)
    with pytest.raises(OutputError, match=r"sepia is the work folder of .*sepia.zip, packed from .*album1.zip"):
        colorize_archive(album2, tmp_path / "sepia.tar", engine=engine, progress=False)


def test_the_packed_archive_keeps_the_sources_names(engine, tmp_path):
    """A file of the user's in OUT makes the job write ``p1~2.jpg`` there (theirs is kept), but
    the packed archive mirrors the source: its member is ``p1.jpg``, with the colorized photo."""
    album = zip_of(tmp_path / "album.zip", {"p1.jpg": jpeg(1), "p2.jpg": jpeg(2), "d/p1.jpg": jpeg(3)})
    out = tmp_path / "album-colour"
    (out / "d").mkdir(parents=True)
    (out / "p1.jpg").write_bytes(b"mine")
    (out / "d" / "p1.jpg").write_bytes(b"mine too")
    for kind in ("zip", "tar"):
        packed = tmp_path / f"album-colour.{kind}"
        report = colorize_archive(album, packed, engine=engine, progress=False)
        assert report.ok and report.archive == packed
        assert (out / "p1.jpg").read_bytes() == b"mine" and (out / "d" / "p1.jpg").read_bytes() == b"mine too"
        if kind == "zip":
            with zipfile.ZipFile(packed) as zf:
                members = {n: zf.read(n) for n in zf.namelist()}
        else:
            with tarfile.open(packed) as tf:
                members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        assert set(members) == {"p1.jpg", "p2.jpg", "d/p1.jpg"}
        assert members["p1.jpg"] == (out / "p1~2.jpg").read_bytes()
        assert members["d/p1.jpg"] == (out / "d" / "p1~2.jpg").read_bytes()
        assert members["p2.jpg"] == (out / "p2.jpg").read_bytes()


def test_a_cut_zip_is_not_read_as_a_zip_stored_inside_it(engine, tmp_path):
    """A zip cut short loses its own directory (at its end); Python's zipfile then finds the
    directory of a zip stored inside it and reads that inner zip as the whole archive.  The
    job says the archive is damaged instead of colorizing the wrong photos with exit 0."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("p1.jpg", jpeg(1))
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        zf.writestr("p2.jpg", jpeg(2))
        zf.writestr("old.zip", inner.getvalue(), compress_type=zipfile.ZIP_STORED)
        zf.writestr("p3.jpg", jpeg(3))
    data = whole.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[:data.index(b"PK\x05\x06") + 22 + 40])  # just past the inner zip's end record
    assert zipfile.ZipFile(cut).namelist() == ["p1.jpg"]  # what zipfile alone makes of it
    with pytest.raises(InputError, match="cut.zip: cannot open as zip .*cut short"):
        colorize_archive(cut, tmp_path / "out", engine=engine, progress=False)
    assert not (tmp_path / "out").exists()
    assert colorize_archive(whole, tmp_path / "out2", engine=engine, progress=False).done == 2  # the whole one reads


def test_a_zip_cut_short_is_named_as_such_with_the_way_to_recover_it(engine, tmp_path):
    """A zip whose download was interrupted said "cannot open as zip (File is not a zip file)",
    which reads as a wrong format.  It says the file was cut short now, and how to recover the
    members before the cut; the advice works (with Info-ZIP's zip, where it is installed)."""
    import shutil
    import subprocess

    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        for i in range(4):
            zf.writestr(f"p{i}.jpg", jpeg(i))
    data = whole.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[:data.index(b"PK\x03\x04", data.index(b"p2.jpg")) - 1])  # p0, p1 whole; p2 cut
    with pytest.raises(InputError, match=r"cut.zip: cannot open as zip \(it starts as a zip but its end.*cut short"
                                         r".*echo y \| zip -FF .*cut.zip --out fixed.zip"):
        colorize_archive(cut, tmp_path / "out", engine=engine, progress=False)
    assert not (tmp_path / "out").exists()
    if shutil.which("zip") is None:
        pytest.skip("Info-ZIP's zip is not installed: the advice is not tried")
    subprocess.run(f"echo y | zip -FF {cut} --out {tmp_path / 'fixed.zip'}", shell=True, check=True,
                   capture_output=True, timeout=60)
    report = colorize_archive(tmp_path / "fixed.zip", tmp_path / "out", engine=engine, progress=False)
    assert report.done >= 2 and (tmp_path / "out" / "p1.jpg").is_file()


def test_a_zip64_archive_is_read(engine, tmp_path, monkeypatch):
    """A zip with zip64 end records (any zip over 4 GiB or 65,535 entries: a photo export; ``zip -fz``)
    was refused whole as "cut short": the check for a cut zip took the 76 bytes of those records for a
    prefix.  Here the records are forced on a small zip, as zipfile writes them past its limit."""
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)  # (more entries than this: zip64 end records)
    path = zip_of(tmp_path / "z64.zip", {"p1.jpg": jpeg(1), "d/p2.jpg": jpeg(2)})
    monkeypatch.undo()
    assert b"PK\x06\x06" in path.read_bytes()[-120:]  # the zip64 end of central directory record
    report = colorize_archive(path, tmp_path / "out", engine=engine, progress=False)
    assert report.done == 2 and sorted(outputs(tmp_path / "out")) == ["d/p2.jpg", "p1.jpg"]


def _header(name: str, size: int, kind: bytes, **pax: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.pax_headers = size, kind, pax
    return info.tobuf(format=tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


@pytest.mark.parametrize("bomb", ["long name", "pax", "sparse map"])
def test_a_tar_header_is_not_read_whole_at_any_size_it_declares(engine, tmp_path, bomb):
    """tarfile reads a GNU long-name or pax header whole, at its declared size (a .tar.gz of a few MB
    declaring gigabytes took 700 MB to list, past every member limit), and a GNU sparse 1.0 map as
    many numbers as its first line says.  Over the bound the archive is corrupt from there: the
    photos before it are colorized, the rest reported lost.  A sparse member with a real map reads."""
    one, two = bytes(range(256)) * 2, bytes(range(255, -1, -1)) * 2  # (512 bytes each)
    mapped = _padded(b"2\n0\n512\n1024\n512\n") + one + two
    head = {"long name": _header("././@LongLink", 2 << 20, tarfile.GNUTYPE_LONGNAME) + b"\0" * (2 << 20),
            "pax": _header("big.jpg", 0, tarfile.REGTYPE, comment="x" * (2 << 20)),
            "sparse map": _header("s.jpg", len(mapped), tarfile.REGTYPE, **{
                "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s.bin",
                "GNU.sparse.realsize": "1536"}) + _padded(b"100000000\n")}[bomb]
    sparse = _header("s.bin", len(mapped), tarfile.REGTYPE, **{
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s.bin",
        "GNU.sparse.realsize": "1536"}) + mapped
    before = b"".join(_header(f"p{i}.jpg", len(jpeg(i)), tarfile.REGTYPE) + _padded(jpeg(i)) for i in (1, 2))
    src = tmp_path / "bomb.tar"
    src.write_bytes(before + sparse + head + _header("p3.jpg", len(jpeg(3)), tarfile.REGTYPE) + _padded(jpeg(3))
                    + b"\0" * 1024)
    with archives.Source(src) as source:
        members = source.members()
        assert [m.name for m in members[:3]] == ["p1.jpg", "p2.jpg", "s.bin"]
        assert source.read("s.bin", members[2].locator) == one + b"\0" * 512 + two  # (its hole as zeros)
        assert members[-1].broken and ("extended header of" in members[-1].refusal
                                       or "sparse file's map of b'100000000'" in members[-1].refusal), members[-1]
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False)
    assert report.done == 2 and sorted(outputs(tmp_path / "out")) == ["p1.jpg", "p2.jpg"]


def test_a_folder_entry_written_with_a_backslash_is_a_folder(engine, tmp_path):
    """Old Windows tools write a zip's folders as ``photos\\`` with MS-DOS's folder bit, not ``photos/``:
    it was read as an empty file, a failure in a clean archive (exit 1)."""
    path = tmp_path / "win.zip"
    with zipfile.ZipFile(path, "w") as zf:
        folder = zipfile.ZipInfo("photos\\")
        folder.external_attr = 0x10
        zf.writestr(folder, b"")
        zf.writestr("photos\\a.jpg", jpeg(1))
    report = colorize_archive(path, tmp_path / "out", engine=engine, progress=False)
    assert report.ok and report.total == 1 and list(outputs(tmp_path / "out")) == ["photos/a.jpg"], report.problems


def test_a_source_lists_at_most_max_members_entries(engine, tmp_path):
    """Each listed entry stays in memory for the job (a .tar.gz of 0.9 MB declaring 200,000 empty files
    took 168 MB to list): a tar or folder is listed up to the limit and the rest reported lost, a zip
    (whose directory zipfile reads whole) with more entries is refused before it is read."""
    photos = {f"p{i}.jpg": jpeg(i) for i in range(5)}
    tar = tmp_path / "a.tar"
    with tarfile.open(tar, "w") as tf:
        for name, data in photos.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    folder = tmp_path / "f"
    folder.mkdir()
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    options = BatchOptions(render_size=32, max_members=3)
    for src in (tar, folder):
        report = colorize_archive(src, tmp_path / f"out-{src.name}", engine=engine, options=options, progress=False)
        assert report.done == 3 and report.failed == 1, report.problems
        assert "over the limit of 3 entries in one source" in report.problems[0].reason
    with pytest.raises(InputError, match="holds 5 entries, over the limit of 3"):
        colorize_archive(zip_of(tmp_path / "a.zip", photos), tmp_path / "out-zip", engine=engine, options=options,
                         progress=False)
    assert colorize_archive(tar, tmp_path / "out-all", engine=engine, progress=False,
                            options=BatchOptions(render_size=32)).done == 5


def test_a_tar_named_zip_is_read_as_the_tar_it_is(engine, tmp_path):
    """A source's kind came from its name alone when it had an archive suffix: a tar saved as .zip
    failed whole ("cannot open as zip"), where a name with no archive suffix is read by its content."""
    path = tmp_path / "photos.zip"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("a.jpg")
        info.size = len(jpeg(1))
        tf.addfile(info, io.BytesIO(jpeg(1)))
    report = colorize_archive(path, tmp_path / "out", engine=engine, progress=False)
    assert report.ok and list(outputs(tmp_path / "out")) == ["a.jpg"]


def test_a_packed_tar_gz_keeps_the_name_it_is_given(engine, tmp_path):
    """The output's own suffix (.tgz stays .tgz), and gzip's header names the archive, not
    the temporary file it was written as (``gzip -dN`` restores that name)."""
    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    for name, header in (("x.tgz", b"x.tar"), ("y.tar.gz", b"y.tar")):
        report = colorize_archive(src, tmp_path / name, engine=engine, progress=False)
        assert report.archive == tmp_path / name
        raw = (tmp_path / name).read_bytes()
        assert raw[3] & 0x08, "no file name in the gzip header"  # FNAME flag
        assert raw[10:raw.index(b"\0", 10)] == header
        with tarfile.open(tmp_path / name) as tf:
            assert tf.getnames() == ["a.jpg"]
    assert not (tmp_path / "x.tar.gz").exists()


def test_a_packed_zip_holds_names_that_are_not_utf8(engine, tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    (src / os.fsdecode(b"caf\xe9.jpg")).write_bytes(jpeg(1))  # Latin-1 bytes: no zip can store them as they are
    (src / "caf\u00e9.jpg").write_bytes(jpeg(2))  # the name the first one reads as: it keeps its own
    report = colorize_archive(src, tmp_path / "out.zip", engine=engine, progress=False)
    assert report.done == 2 and report.archive is not None
    with zipfile.ZipFile(report.archive) as zf:
        assert sorted(zf.namelist()) == ["caf\u00e9.jpg", "caf\u00e9~2.jpg"]
        assert zf.read("caf\u00e9~2.jpg") == (tmp_path / "out" / os.fsdecode(b"caf\xe9.jpg")).read_bytes()


def test_zip_names_in_utf8_without_the_utf8_flag_are_read_as_utf8(engine, tmp_path):
    path = zip_of(tmp_path / "mac.zip", {"GrQQQQe.jpg": jpeg(1), "caf\u00e9.jpg": jpeg(2), "plain.jpg": jpeg(3)})
    raw = path.read_bytes().replace(b"GrQQQQe.jpg", "Gr\u00fc\u00dfe.jpg".encode("utf-8"))  # as macOS writes it
    path.write_bytes(raw)
    assert zipfile.ZipFile(path).infolist()[0].flag_bits & 0x800 == 0  # no UTF-8 flag: CP437 by the book
    report = colorize_archive(path, tmp_path / "out", engine=engine, progress=False)
    assert report.done == 3
    assert sorted(outputs(tmp_path / "out")) == ["Gr\u00fc\u00dfe.jpg", "caf\u00e9.jpg", "plain.jpg"]


def test_a_folder_is_never_numbered_onto_another_folder_of_the_archive(engine, tmp_path):
    """The folder a.jpg of a.jpg/b.jpg must be numbered (a file a.jpg is in the way: a member, or a
    file of the user's in OUT); a~2.jpg was taken although the archive holds a~2.jpg/b.jpg itself:
    two members had one output, one of them "failed", and a rerun wrote both again as b~2, b~3."""
    arc = zip_of(tmp_path / "a.zip", {"a.jpg": jpeg(0), "a.jpg/b.jpg": jpeg(1), "a~2.jpg/b.jpg": jpeg(2)})
    report = colorize_archive(arc, tmp_path / "out1", engine=engine, progress=False)
    assert report.done == 3 and sorted(outputs(tmp_path / "out1")) == ["a.jpg", "a~2.jpg/b.jpg", "a~3.jpg/b.jpg"]
    arc = zip_of(tmp_path / "b.zip", {"a.jpg/b.jpg": jpeg(1), "a~2.jpg/b.jpg": jpeg(2)})
    out = tmp_path / "out2"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"mine")
    for _ in range(2):  # (the rerun finds both done)
        report = colorize_archive(arc, out, engine=engine, progress=False)
        assert report.ok and report.done + report.skipped == 2, report.problems
        assert sorted(outputs(out)) == ["a.jpg", "a~2.jpg/b.jpg", "a~3.jpg/b.jpg"]
    assert (out / "a~2.jpg" / "b.jpg").read_bytes() != (out / "a~3.jpg" / "b.jpg").read_bytes()


def test_a_folder_numbered_past_a_file_is_not_numbered_onto_a_link(engine, tmp_path):
    """OUT/a.jpg is a file, so the member a.jpg/b.jpg goes to a folder a~2.jpg; OUT/a~2.jpg was a link
    to a folder outside OUT, looked at for links only under its listed name: b.jpg was written
    through it, outside OUT, with exit 0."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"mine")
    (out / "a~2.jpg").symlink_to(elsewhere)
    report = colorize_archive(zip_of(tmp_path / "a.zip", {"a.jpg/b.jpg": jpeg(1)}), out, engine=engine,
                              progress=False)
    assert report.done == 1 and list(elsewhere.iterdir()) == [] and (out / "a.jpg").read_bytes() == b"mine"
    assert list(outputs(out)) == ["a.jpg", "a~3.jpg/b.jpg"]


def test_outputs_are_never_written_through_a_link_inside_the_output_folder(engine, tmp_path):
    src = tmp_path / "scans"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x.jpg").write_bytes(jpeg(1))
    (src / "top.jpg").write_bytes(jpeg(2))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(src / "sub")  # OUT/sub leads into the source itself
    (out / "deep").mkdir()
    (out / "deep" / "er").symlink_to(elsewhere)
    (src / "deep" / "er").mkdir(parents=True)
    (src / "deep" / "er" / "y.jpg").write_bytes(jpeg(3))
    for _ in range(2):  # a rerun finds no new inputs in the source
        report = colorize_archive(src, out, engine=engine, progress=False)
        assert report.total == 3 and report.done == 1 and report.skipped == 2, report.problems
        assert sorted(p.name for p in src.rglob("*.jpg")) == ["top.jpg", "x.jpg", "y.jpg"]
        assert list(elsewhere.iterdir()) == []
        reasons = {r["member"]: r["reason"] for r in report_rows(out)}
        assert "out/sub is a link" in reasons["sub/x.jpg"] and "out/deep/er is a link" in reasons["deep/er/y.jpg"]


def test_link_loops_and_broken_links_in_a_folder_are_items_refused_not_the_job(engine, tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    (src / "good.jpg").write_bytes(jpeg())
    (src / "self.jpg").symlink_to("self.jpg")
    (src / "a.jpg").symlink_to("b.jpg")
    (src / "b.jpg").symlink_to("a.jpg")
    (src / "gone.jpg").symlink_to("missing.jpg")
    out = tmp_path / "out"
    report = colorize_archive(src, out, engine=engine, progress=False)
    assert report.done == 1 and report.skipped == 4 and list(outputs(out)) == ["good.jpg"]
    reasons = {r["member"]: r["reason"] for r in report_rows(out)}
    assert all("loop" in reasons[m] for m in ("self.jpg", "a.jpg", "b.jpg")), reasons
    assert "does not exist" in reasons["gone.jpg"] and "outside" not in reasons["gone.jpg"]
    with pytest.raises(InputError, match="a symbolic link loop"):  # given by name: said the same way
        image_io.read_image(src / "self.jpg")
    with pytest.raises(InputError, match="a broken symbolic link"):
        image_io.read_image(src / "gone.jpg")


def test_render_size_is_bounded_everywhere(tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli
    from streamcolor.colorize import ColorOptions
    from streamcolor.engines import lab
    from streamcolor.video import VideoOptions

    for make in (ColorOptions, VideoOptions, BatchOptions):
        make(render_size=lab.MAX_RENDER_SIZE)
        with pytest.raises(ValueError, match="render_size must be in"):
            make(render_size=100_000)
        with pytest.raises(TypeError, match="must be an int"):
            make(render_size="320")
    (tmp_path / "a.jpg").write_bytes(jpeg())
    for verb in ("image", "video", "batch"):
        res = CliRunner().invoke(cli, [verb, str(tmp_path / "a.jpg"), "-o", str(tmp_path / "o"), "-r", "100000"])
        assert res.exit_code == 2 and "100000 is not in the range" in res.output, res.output


def test_a_float_tiff_outside_0_1_is_refused_not_whitened(tmp_path):
    gray = make_photo(24, 32)[..., 0]
    Image.fromarray(gray.astype(np.float32)).save(tmp_path / "f255.tif")
    with pytest.raises(InputError, match=r"values in \[\d+, \d+\]"):
        image_io.read_image(tmp_path / "f255.tif")
    Image.fromarray((gray / 255.0).astype(np.float32)).save(tmp_path / "f01.tif")
    read = image_io.read_image(tmp_path / "f01.tif").pixels
    assert read.dtype == np.uint16 and np.abs(read / 257.0 - gray).max() < 0.51


def test_a_32_bit_integer_tiff_past_16_bits_is_refused_not_clipped(tmp_path):
    gray = make_photo(24, 32)[..., 0].astype(np.int32)
    Image.fromarray(gray * 1000).save(tmp_path / "i32.tif")  # up to 255,000: 87% was clipped to white
    with pytest.raises(InputError, match=r"a 32-bit integer image with values in \[\d+, \d+\]"):
        image_io.read_image(tmp_path / "i32.tif")
    Image.fromarray(gray * 257).save(tmp_path / "i16.tif")  # within 16 bits: read as they are
    read = image_io.read_image(tmp_path / "i16.tif").pixels
    assert read.dtype == np.uint16 and np.array_equal(read, gray * 257)


def test_the_api_names_a_wrong_argument(engine, tmp_path):
    from streamcolor.video import colorize_video

    gray = make_photo(24, 32)[..., 0]
    with pytest.raises(TypeError, match="engine must be an Engine"):
        colorize_image(gray, engine=3)
    assert colorize_image(gray, engine="default").shape == (24, 32, 3)  # a model name is loaded
    for bad in (b"x.zip", None, [tmp_path, 3]):
        with pytest.raises(TypeError, match="sources must be"):
            colorize_archive(bad, tmp_path / "o", engine=engine)
    with pytest.raises(TypeError, match="engine must be an Engine"):
        colorize_video(make_clip(tmp_path / "c.mp4"), tmp_path / "o.mp4", engine=object())
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="unknown model 'nope'"):  # said before the job folder is made
        colorize_archive(tmp_path / "src", tmp_path / "never", engine="nope")
    assert not (tmp_path / "never").exists()


def test_output_path_errors_say_the_path_once_and_the_real_reason(engine, tmp_path):
    gray = make_photo(24, 32)[..., 0]
    with pytest.raises(OutputError) as info:
        colorize_image(gray, tmp_path / "noext", engine=engine)
    assert str(info.value).count("noext:") == 1 and "no extension" in str(info.value)
    (tmp_path / "in.jpg").write_bytes(jpeg())
    with pytest.raises(OutputError, match=r"in\.jpg is a file, not a folder"):  # (mkdir said "File exists")
        colorize_image(gray, tmp_path / "in.jpg" / "out.jpg", engine=engine)


def test_an_output_named_like_a_file_but_ending_in_a_slash_is_a_folder(engine, tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli

    (tmp_path / "a.jpg").write_bytes(jpeg())
    res = CliRunner().invoke(cli, ["image", str(tmp_path / "a.jpg"), "-o", f"{tmp_path / 'z.jpg'}/"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "z.jpg").is_dir() and (tmp_path / "z.jpg" / "a.jpg").is_file()
    clip = make_clip(tmp_path / "c.mp4")
    res = CliRunner().invoke(cli, ["video", str(clip), "-o", f"{tmp_path / 'v.mp4'}/"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "v.mp4" / "c-colour.mp4").is_file()


def test_a_name_the_system_refuses_is_one_error_line(tmp_path):
    Image.fromarray(make_photo(24, 32)).save(tmp_path / "a.png")
    res = cli("image", str(tmp_path / "a.png"), "-o", str(tmp_path / ("d" * 300 + ".png")))
    assert res.returncode == 2 and "File name too long" in one_error_line(res.stderr)


def test_batch_quiet_prints_nothing_when_all_is_done_and_the_summary_when_not(engine, tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli

    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    res = CliRunner().invoke(cli, ["batch", "-q", str(src), "-o", str(tmp_path / "o1")])
    assert res.exit_code == 0 and res.stdout == "", res.output
    (src / "bad.jpg").write_bytes(b"not a jpeg")
    res = CliRunner().invoke(cli, ["batch", "-q", str(src), "-o", str(tmp_path / "o2")])
    assert res.exit_code == 1 and res.stdout == "" and "1 failed" in res.stderr, res.output


def test_batch_says_an_option_without_effect_and_sizes_by_their_option(engine, tmp_path, caplog):
    """--quality given for lossless outputs is said (as `image` says it), so are -j and --processes where
    they do nothing; a size of 0 is refused by
    its option's name, not by the Python field it fills (max_member_bytes)."""
    from click.testing import CliRunner

    from streamcolor.cli import cli

    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    res = CliRunner().invoke(cli, ["batch", str(src), "-o", str(tmp_path / "o1"), "--format", "png", "--quality", "50"])
    assert res.exit_code == 0 and "--quality ignored: PNG output is lossless" in caplog.text, res.output
    caplog.clear()
    res = CliRunner().invoke(cli, ["batch", str(src), "-o", str(tmp_path / "o2"), "--format", "png"])
    assert res.exit_code == 0 and "--quality" not in caplog.text, res.output
    res = CliRunner().invoke(cli, ["batch", str(src), "-o", str(tmp_path / "o3"), "--max-member-size", "0"])
    assert res.exit_code == 2 and "'--max-member-size': '0': give at least 1 byte" in res.output, res.output
    caplog.clear()  # -j does nothing with --processes, nor either on Ray (each actor has its own): said
    res = CliRunner().invoke(cli, ["batch", str(src), "-o", str(tmp_path / "o4"), "-j", "3", "--processes", "1"])
    assert res.exit_code == 0 and "-j/--workers ignored with --processes: the 1 worker processes" in caplog.text
    caplog.clear()
    res = CliRunner().invoke(cli, ["batch", str(src), "-o", str(tmp_path / "o5"), "-j", "3"])
    assert res.exit_code == 0 and "ignored" not in caplog.text, res.output
    res = CliRunner().invoke(cli, ["batch", str(src), "-o", "-", "--processes", "2", "--ray"])  # (refused before Ray starts)
    assert res.exit_code == 2 and "--processes ignored with --ray: each Ray actor" in caplog.text, res.output


def test_an_unwritable_record_of_outputs_gives_advice_every_verb_can_follow(tmp_path, monkeypatch, caplog):
    """The warning names what works for any verb (a writable $STREAMCOLOR_CACHE), not `--overwrite`,
    which `report` has not."""
    from streamcolor import outputs

    (tmp_path / "cachefile").write_text("x")
    monkeypatch.setenv("STREAMCOLOR_CACHE", str(tmp_path / "cachefile"))
    monkeypatch.setattr(outputs, "_UNRECORDED", [])
    (tmp_path / "r.html").write_text("<html></html>")
    with caplog.at_level(logging.WARNING, logger="streamcolor"):
        outputs.remember_written(tmp_path / "r.html")
    assert "set $STREAMCOLOR_CACHE to a folder that can be written" in caplog.text and "--overwrite" not in caplog.text


def test_an_odd_sized_video_says_that_it_is_padded(engine, tmp_path, caplog):
    import av

    from streamcolor.video import VideoOptions, colorize_video

    src = odd_sized_video(tmp_path / "odd.mkv")
    with caplog.at_level("WARNING", logger="streamcolor.video"):
        dst = colorize_video(src, tmp_path / "o.mp4", engine=engine, progress=False)
    assert "33x21 has an odd side" in caplog.text and "34x22" in caplog.text
    with av.open(str(dst)) as inp:
        assert (inp.streams.video[0].width, inp.streams.video[0].height) == (34, 22)
    caplog.clear()
    with caplog.at_level("WARNING", logger="streamcolor.video"):
        colorize_video(src, tmp_path / "o444.mp4", engine=engine, progress=False,
                       options=VideoOptions(pix_fmt="yuv444p"))
    assert "odd side" not in caplog.text


def test_codec_auto_encodes_a_webm_with_vp9(engine, tmp_path):
    """A .webm cannot hold H.264: codec="auto" picks VP9 there instead of failing."""
    import av

    from streamcolor.video import colorize_video

    dst = colorize_video(make_clip(tmp_path / "c.mp4", frames=6), tmp_path / "c.webm", engine=engine, progress=False)
    with av.open(str(dst)) as inp:
        assert inp.streams.video[0].codec_context.name == "vp9"
        assert sum(1 for _ in inp.decode(video=0)) == 6


# --------------------------------------------------------------------------------------------- a second review


def test_report_never_writes_over_a_photo_and_survives_a_bad_one(engine, tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli
    from streamcolor.report import write_report

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(jpeg(1))
    (photos / "b.jpg").write_bytes(jpeg(2)[:300])  # truncated
    (photos / "c.jpg").write_text("not a photo")
    res = CliRunner().invoke(cli, ["report", str(photos), "-o", str(photos / "a.jpg"), "--no-speed"])
    assert res.exit_code == 2 and "HTML page" in res.output and (photos / "a.jpg").read_bytes() == jpeg(1)
    with pytest.raises(ValueError, match="HTML page"):
        write_report(photos / "a.jpg", engine=engine, photos=photos)
    said: list[str] = []
    out = write_report(tmp_path / "r.html", engine=engine, photos=photos, progress=said.append)
    page = out.read_text()
    assert "skipped: " in page and "b.jpg" in page and "c.jpg" in page and page.count("<figure") >= 2
    (tmp_path / "gen.py").write_text("print('hi')\n")
    said.clear()
    with pytest.raises(ValueError, match="gen.py: not a JSON results file"):
        write_report(tmp_path / "r2.html", engine=engine, photos=photos, results=[tmp_path / "gen.py"],
                     progress=said.append)
    assert said == [] and not (tmp_path / "r2.html").exists()  # refused before any photo was colorized


def test_an_avi_is_written_frame_slot_by_frame_slot(engine, tmp_path):
    """AVI has no timestamps: frames counted at the frame rate (not hundreds of empty slots),
    no B-frames (which would show out of order)."""
    import av

    from streamcolor.video import colorize_video

    dst = colorize_video(make_clip(tmp_path / "c.mp4", frames=12), tmp_path / "c.avi", engine=engine, progress=False)
    with av.open(str(dst)) as inp:
        vs = inp.streams.video[0]
        assert vs.average_rate == 24 and vs.frames == 12
        times = [float(f.time) for f in inp.decode(video=0)]
    assert len(times) == 12 and all(b > a for a, b in zip(times, times[1:])), times
    from streamcolor.ray import colorize_video_ray

    with pytest.raises(OutputError, match="AVI cannot be joined"):  # said before Ray is started
        colorize_video_ray(tmp_path / "c.mp4", tmp_path / "r.avi")


def test_video_settings_the_encoder_cannot_take_are_said_plainly(engine, tmp_path):
    from streamcolor.video import VideoOptions, check_pix_fmt, codec_options, colorize_video

    with pytest.raises(ValueError, match="no colour channels"):
        VideoOptions(pix_fmt="gray")
    with pytest.raises(ValueError, match="libx264 cannot encode rgb24; it takes yuv420p"):
        check_pix_fmt("libx264", "rgb24")
    check_pix_fmt("libx264", "yuv444p")
    clip = make_clip(tmp_path / "c.mp4", frames=4)
    with pytest.raises(OutputError, match="libx264 does not open with .*'preset': 'nosuch'"):
        colorize_video(clip, tmp_path / "o.mp4", engine=engine, options=VideoOptions(preset="nosuch"), progress=False)
    with pytest.raises(OutputError, match="cannot encode rgb24"):
        colorize_video(clip, tmp_path / "o.mp4", engine=engine, options=VideoOptions(pix_fmt="rgb24"), progress=False)
    assert not (tmp_path / "o.mp4").exists()
    from streamcolor.video.codecs import encoder_opens

    if "h264_nvenc" in av.codecs_available and not encoder_opens("h264_nvenc"):  # (no NVIDIA GPU here)
        with pytest.raises(OutputError, match="h264_nvenc does not open here .*: it needs an NVIDIA GPU") as err:
            colorize_video(clip, tmp_path / "o.mp4", engine=engine, options=VideoOptions(codec="h264_nvenc"),
                           progress=False)
        if not os.path.exists("/dev/nvidia0"):  # the reason, not a bare "Operation not permitted"
            assert "h264_nvenc does not open here (no NVIDIA GPU here)" in str(err.value), err.value
    root = logging.getLogger()
    old = root.level
    try:
        for level, x265 in ((logging.ERROR, "log-level=error"), (logging.WARNING, "log-level=warning")):
            root.setLevel(level)
            assert codec_options("libx265", VideoOptions())["x265-params"] == x265
        opts = codec_options("libx265", VideoOptions(encoder_options={"x265-params": "aq-mode=3"}))
        assert opts["x265-params"] == "aq-mode=3:log-level=warning"
    finally:
        root.setLevel(old)


def test_a_crf_past_the_encoders_range_is_said(caplog):
    """x264 takes any crf above 51 (63 in 10 bits) as 51, without a word (the same bytes): said."""
    from streamcolor.video import VideoOptions, codec_options

    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        for quality, pix_fmt in ((51, "yuv420p"), (63, "yuv420p10le")):
            codec_options("libx264", VideoOptions(quality=quality, pix_fmt=pix_fmt))
        assert not caplog.text
        codec_options("libx264", VideoOptions(quality=60))
    assert "crf 60 is past libx264's lowest quality, 51, for yuv420p: 51 is used" in caplog.text
    # x265 refuses past 51 (its scale does not grow with 10 bits): 51 is what it is given, as said
    for pix_fmt in ("yuv420p", "yuv420p10le"):
        assert codec_options("libx265", VideoOptions(quality=60, pix_fmt=pix_fmt))["crf"] == "51"
    assert "crf 60 is past libx265's lowest quality, 51, for yuv420p10le: 51 is used" in caplog.text


def test_video_skip_existing_says_so_and_keeps_the_file(tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli

    clip = make_clip(tmp_path / "c.mp4", frames=4)
    (tmp_path / "c-colour.mp4").write_bytes(b"an earlier output")
    res = CliRunner().invoke(cli, ["video", str(clip), "--skip-existing"])
    assert res.exit_code == 0 and "skipped" in res.stderr and "exists" in res.stderr, res.output
    assert (tmp_path / "c-colour.mp4").read_bytes() == b"an earlier output"


def test_video_keeps_a_file_it_did_not_write(tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli

    clip = make_clip(tmp_path / "c.mp4", frames=4)
    (tmp_path / "c-colour.mp4").write_bytes(b"my own film")
    for _ in range(2):  # the second run replaces its own c-colour~2.mp4
        res = CliRunner().invoke(cli, ["video", str(clip)])
        assert res.exit_code == 0 and "is kept" in res.stderr, res.output
    assert (tmp_path / "c-colour.mp4").read_bytes() == b"my own film"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-colour.mp4", "c-colour~2.mp4", "c.mp4"]


def test_the_video_and_archive_api_name_a_wrong_path_type(engine, tmp_path):
    from streamcolor.video import colorize_video

    for src, dst in ((b"x.mp4", None), (None, None), (tmp_path / "c.mp4", 3)):
        with pytest.raises(TypeError, match="must be a path"):
            colorize_video(src, dst, engine=engine)
    with pytest.raises(TypeError, match="output must be a path"):
        colorize_archive(tmp_path, None, engine=engine)


def test_a_collection_into_a_file_is_refused_before_ray_starts(tmp_path):
    from streamcolor.ray import colorize_collection

    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    note = tmp_path / "notes.txt"
    note.write_text("mine")
    with pytest.raises(ValueError, match="is a file; OUTPUT is a folder"):
        colorize_collection(src, note)
    import ray

    assert note.read_text() == "mine" and not ray.is_initialized()  # refused before a Ray session


def test_a_collection_into_a_folder_it_cannot_write_is_one_error_line_before_ray_starts(tmp_path, monkeypatch):
    """A read-only output gave 90 lines of Ray traceback and exit 1 (each actor failing on its first
    photo); now OutputError, before a Ray session (the command's exit 2).  A remote error that does
    reach the driver is shown as raised there, not as Ray's wrapper (``remote_cause``)."""
    import tempfile

    import ray

    from streamcolor.errors import OutputError
    from streamcolor.ray import colorize_collection
    from streamcolor.ray.pool import remote_cause

    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(OutputError, match="cannot write here \\(Read-only file system\\)"):
        colorize_collection(src, tmp_path / "out")
    assert not ray.is_initialized()
    monkeypatch.undo()

    from ray.exceptions import RayTaskError

    original = OutputError("out/sub/p.jpg: cannot write here (Permission denied)")
    wrapped = RayTaskError("Worker.run", "Traceback (most recent call last): ...", original).as_instanceof_cause()
    assert isinstance(wrapped, OutputError) and "Permission denied" not in str(wrapped)  # (Ray's own text)
    assert remote_cause(wrapped) is original and remote_cause(original) is original
    # Ray Data's UserCodeException arrives without its cause: the error is read from the remote traceback
    from ray.exceptions import UserCodeException

    traceback = ('Traceback (most recent call last):\n  File "items.py", line 188, in finish_item\n'
                 "streamcolor.errors.OutputError: out/sub/b.jpg: cannot write here (Operation not permitted)\n\n"
                 "The above exception was the direct cause of the following exception:\n\n"
                 "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    data_error = RayTaskError("MapWorker.submit", traceback, UserCodeException("UDF failed")).as_instanceof_cause()
    found = remote_cause(data_error)
    assert type(found) is OutputError and str(found) == "out/sub/b.jpg: cannot write here (Operation not permitted)"


def test_an_output_path_without_a_format_says_why(engine, tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(jpeg())
    (tmp_path / "folder").mkdir()
    (tmp_path / "dir.png").mkdir()
    for dst, said in ((tmp_path / "folder", "a folder; give the output file's name"),
                      (f"{tmp_path / 'new'}/", "a folder; give the output file's name"),
                      (tmp_path / "dir.png", "a folder; give the output file's name"),
                      (f"{tmp_path / 'new.png'}/", "a folder; give the output file's name"),
                      (tmp_path / "noext", "no extension to pick the output format from"),
                      (tmp_path / "x.bmpx", "unsupported output format '.bmpx'")):
        with pytest.raises(OutputError, match=said):
            colorize_image(src, dst, engine=engine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "dir.png", "folder"]


def test_transparency_that_jpeg_or_bmp_cannot_hold_is_said(engine, tmp_path, caplog):
    gray = make_photo(40, 56, seed=3)[..., 0]
    for name, a in (("half.png", 128), ("opaque.png", 255)):
        Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, a)])).save(tmp_path / name)
    caplog.clear()
    colorize_image(tmp_path / "opaque.png", tmp_path / "opaque.jpg", engine=engine)
    colorize_image(tmp_path / "half.png", tmp_path / "half.webp", engine=engine)
    assert not [r for r in caplog.records if "transparency" in r.getMessage()]
    colorize_image(tmp_path / "half.png", tmp_path / "half.jpg", engine=engine)
    said = [r.getMessage() for r in caplog.records if "transparency" in r.getMessage()]
    assert len(said) == 1 and "half.jpg: its transparency is dropped: JPEG has none" in said[0]
    caplog.clear()  # a BMP's fourth byte is padding to its readers: written RGB, and said (it was silent)
    colorize_image(tmp_path / "half.png", tmp_path / "half.bmp", engine=engine)
    said = [r.getMessage() for r in caplog.records if "transparency" in r.getMessage()]
    assert len(said) == 1 and "half.bmp: its transparency is dropped: BMP has none" in said[0]
    with Image.open(tmp_path / "half.bmp") as im:
        assert im.mode == "RGB"


def test_an_input_given_twice_is_colorized_once(engine, tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg(1))
    report = colorize_archive([src, f"{src}/", tmp_path / "scans" / ".." / "scans"], tmp_path / "out",
                              engine=engine, progress=False)
    assert report.total == 1 and sorted(outputs(tmp_path / "out")) == ["a.jpg"]  # not scans~2/, scans~3/
    r = cli("image", str(src / "a.jpg"), str(tmp_path / "scans" / "." / "a.jpg"), "-o", str(tmp_path / "img") + "/",
            "-r", "64")
    assert r.returncode == 0 and "given more than once" in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["a.jpg"]
    (src / "latest.jpg").symlink_to("a.jpg")  # a link under its own name: its own output
    r = cli("image", str(src / "a.jpg"), str(src / "latest.jpg"), "-o", str(tmp_path / "img2") + "/", "-r", "64")
    assert r.returncode == 0 and "given more than once" not in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "img2").iterdir()) == ["a.jpg", "latest.jpg"]


def test_a_folder_whose_name_is_a_file_in_the_output_is_numbered_not_failed(engine, tmp_path):
    out = tmp_path / "out"
    first = colorize_archive(zip_of(tmp_path / "z1.zip", {"a.jpg": jpeg(1)}), out, engine=engine, progress=False)
    (out / "mine").write_text("the user's own file")
    z2 = zip_of(tmp_path / "z2.zip", {"a.jpg/b.jpg": jpeg(2), "a.jpg/c/d.jpg": jpeg(3), "mine/e.jpg": jpeg(4)})
    for _ in range(2):  # and a rerun resumes into the same names
        report = colorize_archive(z2, out, engine=engine, progress=False)
        assert first.ok and report.ok and report.done == 3, report.problems
    assert sorted(outputs(out)) == ["a.jpg", "a~2.jpg/b.jpg", "a~2.jpg/c/d.jpg", "mine", "mine~2/e.jpg"]
    assert (out / "mine").read_text() == "the user's own file"


def test_a_batch_says_once_how_many_outputs_lost_their_transparency(engine, tmp_path, caplog):
    src = tmp_path / "scans"
    src.mkdir()
    gray = make_photo(40, 56, seed=4)[..., 0]
    for name, a in (("a.png", 100), ("b.png", 0), ("c.png", 255)):
        Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, a)])).save(src / name)
    caplog.clear()
    report = colorize_archive(src, tmp_path / "out", engine=engine, progress=False,
                              options=BatchOptions(output_format="jpg"))
    said = [r.getMessage() for r in caplog.records if "transparency" in r.getMessage()]
    assert report.done == 3 and said == [
        "2 output(s) lost their transparency: JPEG and BMP have none (--format png, webp or tiff keeps it)"]


@pytest.mark.slow
def test_a_stopped_batch_says_what_is_kept_and_how_to_go_on(tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    for i in range(80):
        (src / f"p{i:02d}.jpg").write_bytes(jpeg(i, (240, 320)))
    out = tmp_path / "out"
    rc, err = signalled_while_writing(["batch", str(src), "-o", str(out), "-b", "1", "-j", "1"],
                                      lambda: out.is_dir() and any(out.glob("p*.jpg")), signal.SIGTERM)
    done = len(list(out.glob("p*.jpg")))
    assert rc == 128 + signal.SIGTERM and 0 < done < 80, (rc, done)
    assert f"stopped: {done} of 80 items are done and kept; run the same command again" in err, err
    r = cli("batch", str(src), "-o", str(out), "--no-progress")
    assert r.returncode == 0 and f"80 ok ({done} from an earlier run)" in r.stdout, (r.stdout, r.stderr)


# ---------------------------------------------------------------------------------------------
# a file that appears at an output's path while the run is going is kept
# ---------------------------------------------------------------------------------------------


def test_move_into_place_replaces_only_what_it_may(tmp_path, monkeypatch):
    final = tmp_path / "x.jpg"

    def staged(data: bytes) -> Path:
        tmp = tmp_path / f".streamcolor-tmp-{len(list(tmp_path.iterdir()))}"
        tmp.write_bytes(data)
        return tmp

    tmp = staged(b"new")
    tempfiles.move_into_place(tmp, final, replace=False)  # nothing there: moved
    assert final.read_bytes() == b"new" and not tmp.exists()

    final.write_bytes(b"the user's")
    for policy in (False, lambda p: False):
        tmp = staged(b"newer")
        with pytest.raises(FileExistsError, match="kept"):
            tempfiles.move_into_place(tmp, final, replace=policy)
        assert final.read_bytes() == b"the user's" and tmp.read_bytes() == b"newer"  # neither is lost
        tmp.unlink()
    seen = []
    tmp = staged(b"newest")
    tempfiles.move_into_place(tmp, final, replace=lambda p: seen.append(p) or True)
    assert final.read_bytes() == b"newest" and seen == [final] and not tmp.exists()

    tmp = staged(b"linked")  # an earlier commit made the link and stopped before removing the temporary
    final.unlink()
    os.link(tmp, final)
    tempfiles.move_into_place(tmp, final, replace=False)
    assert final.read_bytes() == b"linked" and not tmp.exists()

    def no_links(*a, **k):  # FAT, some network disks: no hard links, so a check and a rename
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    tmp = staged(b"on fat")
    with pytest.raises(FileExistsError):
        tempfiles.move_into_place(tmp, final, replace=False)
    assert final.read_bytes() == b"linked"
    final.unlink()
    tempfiles.move_into_place(tmp, final, replace=False)
    assert final.read_bytes() == b"on fat" and not tmp.exists()


def test_colorize_image_replace_false_keeps_a_file_there(tmp_path, engine):
    src, dst = tmp_path / "in.jpg", tmp_path / "out.jpg"
    src.write_bytes(jpeg())
    dst.write_bytes(b"mine")
    with pytest.raises(OutputError, match="kept"):
        colorize_image(src, dst, engine=engine, replace=False)
    assert dst.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["in.jpg", "out.jpg"]
    colorize_image(src, dst, engine=engine)  # the API's default replaces, as PIL's save does
    assert Image.open(dst).size == (64, 48)


def test_batch_keeps_a_file_that_appears_at_an_output_during_the_run(tmp_path, engine, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        (src / f"p{i}.jpg").write_bytes(jpeg(i))
    real_stage = FolderSink.stage

    def stage_while_the_user_saves(self, key, data):
        staged = real_stage(self, key, data)
        if key == "p2.jpg":  # the user (or another program) saves there after the job planned its outputs
            (self.root / key).write_bytes(b"saved by the user meanwhile")
        return staged

    monkeypatch.setattr(FolderSink, "stage", stage_while_the_user_saves)
    rep = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert (out / "p2.jpg").read_bytes() == b"saved by the user meanwhile"
    assert rep.done == 3 and rep.failed == 1
    (row,) = report_rows(out)
    assert row["member"] == "p2.jpg" and "kept" in row["reason"], row
    assert not [p for p in out.iterdir() if tempfiles.is_temp_name(p.name)]
    monkeypatch.undo()
    rep = colorize_archive(src, out, engine=engine, progress=False, options=BatchOptions(render_size=64))
    assert (rep.done, rep.failed, rep.done_now) == (4, 0, 1)
    assert (out / "p2.jpg").read_bytes() == b"saved by the user meanwhile"
    assert Image.open(out / "p2~2.jpg").size == (64, 48)  # the rerun writes it beside the user's file


def test_video_keeps_a_file_that_appears_at_its_output_during_the_run(tmp_path, engine):
    """The command line's policy (:func:`replace_policy`): the user's file is kept and the finished
    video goes beside it as name~2 (not thrown away); the API's default replaces; False refuses."""
    from streamcolor.outputs import replace_policy, written_by_streamcolor
    from streamcolor.video import colorize_video

    clip = make_clip(tmp_path / "in.mp4", frames=6)
    dst = tmp_path / "out.mp4"

    def user_saves_there(done, total):
        if done == 1:
            dst.write_bytes(b"a video of the user's")

    written = colorize_video(clip, dst, engine=engine, progress=user_saves_there, replace=replace_policy("keep", clip))
    assert written == tmp_path / "out~2.mp4" and dst.read_bytes() == b"a video of the user's"
    with av.open(str(written)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4", "out~2.mp4"]
    with pytest.raises(OutputError, match="kept"):
        colorize_video(clip, dst, engine=engine, progress=False, replace=False)
    assert dst.read_bytes() == b"a video of the user's"
    assert colorize_video(clip, dst, engine=engine, progress=False, replace=replace_policy("overwrite", clip)) == dst
    assert not written_by_streamcolor(dst)  # (the CLI notes what it wrote; the API does not)
    with av.open(str(dst)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_numbered_names_never_take_another_members_own_name(tmp_path, engine):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i, name in enumerate(["photo.jpg", "photo.png", "photo~2.png", "Photo~3.PNG"]):
        Image.fromarray(make_photo(48, 64, seed=i)[..., 0]).save(src / name)
    from streamcolor.archive import list_items, open_source

    keys = {it.member: it.key for it in list_items([open_source(src)], BatchOptions(output_format="png"))}
    # the files already named so keep their names; the converted JPEG gets the first free number
    assert keys == {"photo.png": "photo.png", "photo~2.png": "photo~2.png", "Photo~3.PNG": "Photo~3.PNG",
                    "photo.jpg": "photo~4.png"}
    rep = colorize_archive(src, out, engine=engine, progress=False,
                           options=BatchOptions(render_size=64, output_format="png"))
    assert rep.done == 4 and sorted(outputs(out)) == sorted(keys.values())

    pairs = [(tmp_path / d / n, tmp_path / "o" / n) for d, n in (("a", "x.jpg"), ("b", "x.jpg"), ("c", "x~2.jpg"))]
    assert [p.dst.name for p in plan_outputs(pairs)] == ["x.jpg", "x~3.jpg", "x~2.jpg"]


def test_an_output_over_a_formats_size_limit_fails_that_item_clearly(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 70000), dtype=np.uint8)).save(tmp_path / "w.png")
    Image.fromarray(make_photo(40, 56)[..., 0]).save(tmp_path / "ok.png")
    r = cli("-q", "image", str(tmp_path / "w.png"), str(tmp_path / "ok.png"), "-o", str(tmp_path / "out"),
            "--format", "jpg", "-r", "64")
    assert r.returncode == 1, r.stderr  # the item's failure, not the run's (exit 2)
    assert r.stderr.strip() == (f"error: {tmp_path / 'out' / 'w.jpg'}: 70000x8 is over what JPEG holds "
                                "(65,500 pixels a side); write PNG or TIFF (--format png)")  # and libjpeg's own line is never printed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.jpg"]


def test_sources_given_in_another_order_keep_their_folders(tmp_path):
    """`batch b/photos a/photos` resumes what `batch a/photos b/photos` began: the numbered
    folder (photos~2) goes by the sources' paths, not by the order given."""
    from streamcolor.archive import list_items, open_source

    for d in ("a", "b"):
        (tmp_path / d / "photos").mkdir(parents=True)
        (tmp_path / d / "photos" / f"{d}.jpg").write_bytes(jpeg())
    (tmp_path / "c" / "photos~2").mkdir(parents=True)  # a source whose own name is photos~2 keeps it
    (tmp_path / "c" / "photos~2" / "c.jpg").write_bytes(jpeg())
    srcs = [tmp_path / "a" / "photos", tmp_path / "b" / "photos", tmp_path / "c" / "photos~2"]

    def keys(order):
        return {it.source: it.key for it in list_items([open_source(srcs[i]) for i in order])}

    assert keys([0, 1, 2]) == keys([2, 1, 0]) == keys([1, 2, 0]) == {
        str(srcs[0]): "photos/a.jpg", str(srcs[1]): "photos~3/b.jpg", str(srcs[2]): "photos~2/c.jpg"}


def test_two_archives_packed_from_one_output_folder_are_both_the_jobs(tmp_path, engine):
    """`-o out.zip` and `-o out.tar.gz` share the folder out/: a rerun of either replaces its own
    archive (the job keeps a record of each), while a file the user put there is still kept."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg())
    opts = BatchOptions(render_size=64)
    for name in ("out.zip", "out.tar.gz", "out.zip", "out.tar.gz"):
        rep = colorize_archive(src, tmp_path / name, engine=engine, progress=False, options=opts)
        assert rep.archive == tmp_path / name and rep.ok
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert zf.namelist() == ["a.jpg"]
    (tmp_path / "out.tar.gz").unlink()
    (tmp_path / "out.tar.gz").write_bytes(b"the user's own")
    with pytest.raises(OutputError, match="not the archive this job packed"):
        colorize_archive(src, tmp_path / "out.tar.gz", engine=engine, progress=False, options=opts)
    assert (tmp_path / "out.tar.gz").read_bytes() == b"the user's own"


def test_image_runs_from_other_inputs_never_replace_each_others_outputs(tmp_path):
    """The record of what streamcolor wrote names the input: `image b/x.jpg -o out/` after
    `image a/x.jpg -o out/` writes x~2.jpg, and a rerun from a/x.jpg replaces its own x.jpg."""
    for d, seed in (("a", 1), ("b", 2)):
        (tmp_path / d).mkdir()
        Image.fromarray(make_photo(40, 56, seed=seed)[..., 0]).save(tmp_path / d / "x.jpg")
    out = tmp_path / "out"

    def run(*inputs: str, extra: tuple[str, ...] = ()) -> None:
        r = cli("image", *[str(tmp_path / i) for i in inputs], "-o", str(out) + "/", "-r", "64", *extra)
        assert r.returncode == 0, r.stderr

    run("a/x.jpg")
    first = (out / "x.jpg").read_bytes()
    run("b/x.jpg")
    assert (out / "x.jpg").read_bytes() == first and (out / "x~2.jpg").is_file()
    run("a/x.jpg", extra=("--saturation", "1.5"))  # its own output: replaced
    assert (out / "x.jpg").read_bytes() != first and sorted(p.name for p in out.iterdir()) == ["x.jpg", "x~2.jpg"]
    run("b/x.jpg", "a/x.jpg")  # given together, in either order: each keeps its own name
    run("a/x.jpg", "b/x.jpg")
    assert sorted(p.name for p in out.iterdir()) == ["x.jpg", "x~2.jpg"]

    # an input already named so keeps its name, whatever the order given
    e = tmp_path / "e"
    e.mkdir()
    for i, name in enumerate(["photo.jpg", "photo.png", "photo~2.png"]):
        Image.fromarray(make_photo(40, 56, seed=i)[..., 0]).save(e / name)
    for order in (["photo.jpg", "photo.png", "photo~2.png"], ["photo~2.png", "photo.png", "photo.jpg"]):
        r = cli("image", *[str(e / n) for n in order], "-o", str(tmp_path / "h") + "/", "--format", "png", "-r", "64")
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["photo.png", "photo~2.png", "photo~3.png"]
        for out_name, src_name in (("photo.png", "photo.png"), ("photo~2.png", "photo~2.png"), ("photo~3.png", "photo.jpg")):
            lum = np.asarray(Image.open(tmp_path / "h" / out_name).convert("L"), float)
            came_from = min(order, key=lambda n: np.abs(lum - np.asarray(Image.open(e / n).convert("L"), float)).mean())
            assert came_from == src_name, (order, out_name, came_from)

    # names that grow with the output's suffix or -colour are shortened to fit, never fail after the work
    long = tmp_path / "long"
    long.mkdir()
    Image.fromarray(make_photo(40, 56)[..., 0]).save(long / ("n" * 251 + ".jpg"))
    r = cli("image", str(long / ("n" * 251 + ".jpg")), "-o", str(tmp_path / "w") + "/", "--format", "webp", "-r", "64")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["n" * 250 + ".webp"]
    clip = make_clip(long / ("v" * 250 + ".mp4"), frames=4)
    r = cli("video", str(clip), "-o", str(tmp_path / "v") + "/", "-r", "64")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "v").iterdir()] == ["v" * 244 + "-colour.mp4"]


def test_an_output_written_under_a_number_keeps_it_when_the_folder_changes(tmp_path, engine):
    """Outputs never move: p~2.jpg (p.jpg was the user's then) stays the item's after the user
    moves p.jpg away, and photo.jpg's photo~3.png stays when a member named photo~3.png is added;
    finished items are not colorized again."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "p.jpg").write_bytes(jpeg(1))
    (out / "p.jpg").write_bytes(b"the user's")
    opts = BatchOptions(render_size=64)
    assert colorize_archive(src, out, engine=engine, progress=False, options=opts).done_now == 1
    assert sorted(outputs(out)) == ["p.jpg", "p~2.jpg"]
    (out / "p.jpg").unlink()
    rep = colorize_archive(src, out, engine=engine, progress=False, options=opts)
    assert (rep.done, rep.done_now) == (1, 0) and sorted(outputs(out)) == ["p~2.jpg"]

    src2, out2 = tmp_path / "src2", tmp_path / "out2"
    src2.mkdir()
    for i, name in enumerate(["photo.jpg", "photo.png", "photo~2.png"]):
        Image.fromarray(make_photo(40, 56, seed=i)[..., 0]).save(src2 / name)
    png = BatchOptions(render_size=64, output_format="png")
    assert colorize_archive(src2, out2, engine=engine, progress=False, options=png).done_now == 3
    first = (out2 / "photo~3.png").read_bytes()  # photo.jpg's
    Image.fromarray(make_photo(40, 56, seed=9)[..., 0]).save(src2 / "photo~3.png")
    rep = colorize_archive(src2, out2, engine=engine, progress=False, options=png)
    assert (rep.done, rep.done_now) == (4, 1)
    assert (out2 / "photo~3.png").read_bytes() == first
    assert sorted(outputs(out2)) == ["photo.png", "photo~2.png", "photo~3.png", "photo~3~2.png"]
    assert colorize_archive(src2, out2, engine=engine, progress=False, options=png).done_now == 0

    # another --format in between, then the user's file moved away: the numbered output stays the item's
    src3, out3 = tmp_path / "src3", tmp_path / "out3"
    src3.mkdir()
    out3.mkdir()
    (src3 / "p.jpg").write_bytes(jpeg(1))
    (out3 / "p.jpg").write_bytes(b"the user's")
    assert colorize_archive(src3, out3, engine=engine, progress=False, options=opts).done_now == 1  # p~2.jpg
    assert colorize_archive(src3, out3, engine=engine, progress=False,
                            options=BatchOptions(render_size=64, output_format="png")).done_now == 1  # p.png
    (out3 / "p.jpg").unlink()
    assert colorize_archive(src3, out3, engine=engine, progress=False, options=opts).done_now == 0
    assert sorted(outputs(out3)) == ["p.png", "p~2.jpg"]


def test_pdf_and_eps_documents_are_named_with_how_to_make_images_of_them(tmp_path):
    """FFmpeg called a PDF holding a JPEG a video, and Pillow's EPS failed as 'corrupt or truncated'
    without Ghostscript: both verbs say what the file is and how to export images from it."""
    Image.new("L", (60, 40), 120).save(tmp_path / "doc.pdf")
    (tmp_path / "doc.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 40\nshowpage\n")
    for name, what in (("doc.pdf", "a PDF document: export its pages as images"),
                       ("doc.eps", "a PostScript document: export it as an image")):
        with pytest.raises(InputError, match=what):
            image_io.read_image(tmp_path / name)
        for verb in ("image", "video"):
            r = cli(verb, str(tmp_path / name), "-o", str(tmp_path / "out" / f"{verb}.{'png' if verb == 'image' else 'mp4'}"))
            assert r.returncode == 1 and what in r.stderr and "run `streamcolor" not in r.stderr, r.stderr


def test_a_pixel_bomb_is_left_to_the_verbs_own_limit_not_sent_between_verbs(tmp_path, monkeypatch):
    """A GIF whose logical screen is over Pillow's pixel limit was 'an image' for `video` and
    'animated' for `image`: each sent it to the other.  Now each verb keeps it and says its own."""
    import struct

    from streamcolor.commands.common import check_medium

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's own (reading big images raises it)

    frames = [Image.fromarray(np.full((8, 8), 60 * i, np.uint8)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 16000, 16000)
    (tmp_path / "bomb.gif").write_bytes(bytes(data))
    assert image_io.image_kind(tmp_path / "bomb.gif") == "huge"
    for verb in ("image", "video"):
        assert check_medium([tmp_path / "bomb.gif"], verb) == [tmp_path / "bomb.gif"]


def test_a_jpeg_with_a_second_picture_is_a_photo_not_an_animation(engine, tmp_path):
    """Cameras and phones store a preview or a gain map after the photo (MPO): Pillow says it is
    'animated', and `image` sent such photos to `video` (which made a 2-frame film of them)."""
    from streamcolor.commands.common import check_medium

    photo = Image.fromarray(make_photo(60, 80, seed=4)).convert("RGB")
    photo.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[photo.resize((40, 30))])
    with Image.open(tmp_path / "phone.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert image_io.image_kind(tmp_path / "phone.jpg") == "image"
    assert check_medium([tmp_path / "phone.jpg"], "image") == [tmp_path / "phone.jpg"]
    out = colorize_image(tmp_path / "phone.jpg", tmp_path / "out.jpg", engine=engine)
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (80, 60)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_stdout_that_cannot_be_written_is_named(tmp_path):
    """`image p.jpg -o - > /dev/full` said "No space left on device" without saying of what."""
    src = tmp_path / "p.jpg"
    src.write_bytes(jpeg(3))
    with open("/dev/full", "wb") as full:
        r = subprocess.run([sys.executable, "-m", "streamcolor", "image", str(src), "-o", "-"], stdout=full,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert r.returncode == 2 and "<stdout>: cannot write the image (No space left on device)" in r.stderr, r.stderr


@pytest.mark.parametrize("fmt,size", [("JPEG", (60, 40)), ("JPEG", (900, 700)), ("PNG", (60, 40)),
                                      ("TIFF", (60, 40))])
def test_a_gray_scans_colour_profile_is_not_put_on_the_colour_output(tmp_path, engine, fmt, size):
    """A scan's gray ICC profile was copied onto the RGB output (JPEG, PNG, TIFF; the large-JPEG
    Y'CbCr route too): a file that colour-managed programs refuse.  It is dropped; an RGB profile
    on a colour input is still carried."""
    from PIL import ImageCms

    gray = Image.fromarray(np.random.default_rng(0).integers(0, 255, size[::-1], dtype=np.uint8))
    src = tmp_path / f"scan.{fmt.lower()}"
    gray.save(src, fmt, icc_profile=gray_profile("Gray Gamma 2.2", 2.2))
    assert Image.open(src).info.get("icc_profile")[16:20] == b"GRAY"
    out = Image.open(colorize_image(src, tmp_path / f"out.{fmt.lower()}", engine=engine))
    assert out.mode == "RGB" and "icc_profile" not in out.info
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(make_rgb_photo()).save(tmp_path / f"c.{fmt.lower()}", fmt, icc_profile=srgb)
    kept = Image.open(colorize_image(tmp_path / f"c.{fmt.lower()}", tmp_path / f"c-out.{fmt.lower()}", engine=engine))
    assert kept.info.get("icc_profile") == srgb
    ImageCms.profileToProfile(kept, ImageCms.ImageCmsProfile(io.BytesIO(srgb)), ImageCms.createProfile("sRGB"))


def make_rgb_photo() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)


def test_replacing_an_output_keeps_its_permissions(tmp_path, engine):
    """A private (0600) file replaced by its colorized version came back readable by all (0644)."""
    dst = tmp_path / "private.png"
    Image.new("L", (8, 8)).save(dst)
    os.chmod(dst, 0o600)
    colorize_image(np.zeros((24, 24), np.uint8), dst, engine=engine)
    assert oct(os.stat(dst).st_mode & 0o777) == oct(0o600)
    new = colorize_image(np.zeros((24, 24), np.uint8), tmp_path / "new.png", engine=engine)
    assert os.stat(new).st_mode & 0o777 == 0o666 & ~tempfiles.UMASK


def test_a_folder_named_like_a_shipped_model_does_not_hide_it(tmp_path, monkeypatch):
    """A folder called `default` in the working directory made every call fail ("default: not a
    model bundle"); a plain name is the shipped model, `./default` the folder."""
    from streamcolor.engines import EngineError, resolve_model

    monkeypatch.chdir(tmp_path)
    for name in ("default", "seed", "unet"):
        (tmp_path / name).mkdir()
        assert resolve_model(name).name.startswith("streamcolor-")
    with pytest.raises(EngineError, match="not a model bundle"):
        resolve_model("./default")
    import streamcolor

    assert streamcolor.EngineError is EngineError


@pytest.mark.parametrize("model", ["default", "seed"])
def test_an_engine_used_after_close_says_so(model):
    """After close() (or its with block) the engine failed on a None deep in the runtime, or said
    the seed model was a one-graph one."""
    from streamcolor.engines import EngineError, load_engine

    with load_engine(model, "onnx") as eng:
        pass
    with pytest.raises(EngineError, match="this engine is closed"):
        colorize_image(np.zeros((24, 24), np.uint8), engine=eng)
    l = np.zeros((1, 64, 64, 1), np.float32)
    for call in ((lambda: eng.forward(l)) if model == "default" else (lambda: eng.colorize(l, np.zeros((1, 1000)))),
                 lambda: eng.embed(l)):
        with pytest.raises(EngineError, match="this engine is closed"):
            call()


def test_names_longer_than_the_system_takes_are_input_and_output_errors(tmp_path):
    from streamcolor import colorize_video
    from streamcolor.errors import InputError, OutputError

    long = tmp_path / ("x" * 300 + ".png")
    with pytest.raises(InputError, match="File name too long"):
        colorize_image(long)
    with pytest.raises(OutputError, match="File name too long"):
        colorize_image(np.zeros((8, 8), np.uint8), long)
    with pytest.raises(InputError, match="File name too long"):
        colorize_video(tmp_path / ("y" * 300 + ".mp4"))


def test_a_folder_given_to_colorize_video_is_said_to_be_one(tmp_path, monkeypatch):
    """"." gave "PosixPath('.') has an empty name"; a folder as the output, "cannot write this container"."""
    from streamcolor import colorize_video
    from streamcolor.errors import InputError, OutputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="a folder, not a video"):
        colorize_video(".")
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"not read: the output is refused first")
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="a folder"):
        colorize_video(clip, tmp_path / "out")
