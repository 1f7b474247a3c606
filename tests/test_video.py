"""colorize_video and `streamcolor video`: frames, timestamps and lightness
kept, audio and subtitles copied byte for byte, bad input rejected cleanly
with nothing left behind.

Every clip is made here with PyAV (a few dozen frames, up to 160x120, with a
sine tone), so the file needs no fixtures on disk.

Lightness tolerance.  Output L* is compared with the L* of the *decoded
input* (what the pipeline saw), frame by frame: mean |dL| < 2 and 99th
percentile < 6.  The pipeline itself keeps L exactly (``compose`` only pulls
out-of-gamut chroma towards gray); what moves it is lossy coding: x264 at
crf 18 quantises Y (about 1 L* unit on average), and 4:2:0 chroma, averaged
over 2x2 blocks and interpolated back on decode, shifts the RGB and so the L*
of pixels at sharp colour edges (the tail, hence the looser p99).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import streamcolor
from streamcolor.engines import lab
from streamcolor.engines.base import Engine
from streamcolor.errors import InputError, ItemOutputError, OutputError
from streamcolor.video import (ChromaStabilizer, VideoOptions, colorize_segment, default_output,
                               histogram_distance, join_segments, l_histogram, pick_codec, plan_segments,
                               video_keyframes)

RATE = 24
AUDIO_RATE = 44100


# --------------------------------------------------------------------------- clip maker


def _canvas(h: int, w: int, seed: int) -> np.ndarray:
    """A colourful uint8 RGB picture: gradients, a sine ripple, discs (a scene)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.2, 0.8)
    img = np.stack([x / w, y / h * base, 0.5 + 0.5 * np.sin((x * (1 + seed % 3) + y) / (7.0 + 5 * seed))], -1)
    for _ in range(8):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(max(2, h // 12), max(3, h // 4))
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.random(3)
    return (img * 255).astype(np.uint8)


def make_video(path: Path, *, frames: int = 24, size: tuple[int, int] = (96, 64), rate: int = RATE,
               audio: str | None = "aac", subtitles: bool = False, rotate: int | None = None,
               pts: list[int] | None = None, time_base: Fraction | None = None, codec: str = "libx264",
               pix_fmt: str = "yuv420p", scenes: int = 1, motion: int = 2, grain: float = 0.0,
               gray: bool = False, title: str | None = "test clip", preset: str = "ultrafast",
               gop: int | None = None, seed: int = 0) -> Path:
    """Write a short real video (colour or gray) with an optional sine-tone track and subtitles.

    size is (width, height).  ``scenes`` cuts the clip into that many shots of
    different pictures; within a shot the camera pans ``motion`` px a frame and
    a square moves; ``grain`` adds film-grain noise (std, 0..255 units).
    ``pts`` (in ``time_base``) gives variable frame timing; ``gop`` puts a
    keyframe every that many frames (libx264).
    """
    w, h = size
    path = Path(path)
    rng = np.random.default_rng(seed)
    span = max(1, frames) * abs(motion) + 1
    canvases = [_canvas(h + span // 2 + 1, w + span, seed + 17 * s) for s in range(scenes)]
    shot = max(1, -(-frames // scenes))
    grain_tiles = [rng.normal(0, grain, (h, w, 1)).astype(np.float32) for _ in range(7)] if grain else None
    with av.open(str(path), "w") as out:
        if title:
            out.metadata["title"] = title
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            vs.options = {"preset": preset, "crf": "10"}
            if gop:
                vs.options = {**vs.options, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if time_base is not None:
            vs.time_base = time_base
            vs.codec_context.time_base = time_base
        if rotate is not None:
            vs.set_display_rotation(rotate)
        astream = None
        if audio:
            astream = out.add_stream(audio, rate=AUDIO_RATE)
            astream.layout = "mono"
            astream.metadata["language"] = "eng"
        sub_in = sstream = None
        if subtitles:
            srt = path.with_suffix(".srt")
            srt.write_text("1\n00:00:00,040 --> 00:00:00,300\nHello, colour\n\n"
                           "2\n00:00:00,500 --> 00:00:00,800\nSecond line\n")
            sub_in = av.open(str(srt))
            sstream = out.add_stream_from_template(sub_in.streams.subtitles[0])
            sstream.metadata["language"] = "fra"
        for i in range(frames):
            s, k = divmod(i, shot)
            c = canvases[min(s, scenes - 1)]
            dx = k * motion if motion >= 0 else span - 1 + k * motion
            img = c[k * abs(motion) // 2: k * abs(motion) // 2 + h, dx: dx + w].copy()
            sq = max(2, h // 5)
            y0, x0 = (h // 2 + k) % max(1, h - sq), (3 * k) % max(1, w - sq)
            img[y0:y0 + sq, x0:x0 + sq] = (255, 220, 40)
            if grain_tiles is not None:
                img = np.clip(img + grain_tiles[i % 7], 0, 255).astype(np.uint8)
            if gray:
                img = np.repeat(img.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            if time_base is not None:
                frame.time_base = time_base
            elif pts is None:
                frame.time_base = Fraction(1, rate)
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        if astream is not None:
            fmt = astream.codec_context.format.name
            t = np.arange(int(AUDIO_RATE * frames / rate)) / AUDIO_RATE
            tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            for k in range(0, len(tone), 1024):
                chunk = tone[k:k + 1024][None]
                if fmt == "s16":
                    chunk = (chunk * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
                af.sample_rate, af.pts, af.time_base = AUDIO_RATE, k, Fraction(1, AUDIO_RATE)
                out.mux(astream.encode(af))
            out.mux(astream.encode())
        if sub_in is not None:
            for packet in sub_in.demux(sub_in.streams.subtitles[0]):
                if packet.size:
                    packet.stream = sstream
                    out.mux(packet)
            sub_in.close()
    return path


# --------------------------------------------------------------------------- readers


def read_video(path: Path) -> dict:
    """Decoded L* per frame, frame times (s), rotation, size, and copied-stream packets."""
    out: dict = {"l": [], "times": [], "packets": {}, "packet_times": {}}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out["size"] = (v.codec_context.width, v.codec_context.height)
        out["metadata"] = dict(c.metadata)
        out["streams"] = [(s.type, s.codec_context.name if s.codec_context else None, s.language)
                          for s in c.streams]
        out["duration"] = float(c.duration / 1e6) if c.duration else None
        for packet in c.demux():
            if packet.stream.type == "video":
                for frame in packet.decode():
                    out["l"].append(lab.rgb_to_l(frame.to_ndarray(format="rgb24")))
                    out["times"].append(float(frame.pts * frame.time_base))
                    out.setdefault("rotation", frame.rotation)
                    out.setdefault("rgb0", frame.to_ndarray(format="rgb24"))
            elif packet.size:
                key = f"{packet.stream.type}{packet.stream.index}"
                out["packets"].setdefault(key, []).append(bytes(packet))
                out["packet_times"].setdefault(key, []).append(float(packet.pts * packet.time_base))
    return out


def assert_lightness_kept(src: dict, res: dict, crop: tuple[int, int] | None = None) -> None:
    diffs = []
    for a, b in zip(src["l"], res["l"]):
        if crop is not None:
            b = b[:crop[0], :crop[1]]
        diffs.append(np.abs(a - b).ravel())
    d = np.concatenate(diffs)
    assert d.mean() < 2.0, f"mean |dL| {d.mean():.2f}"
    assert np.percentile(d, 99) < 6.0, f"p99 |dL| {np.percentile(d, 99):.2f}"


def leftovers(folder: Path, *keep: Path) -> list[str]:
    """Files in folder other than ``keep`` (temporary files included)."""
    names = {p.name for p in keep}
    return sorted(p.name for p in folder.iterdir() if p.name not in names and p.suffix != ".srt")


class CountingEngine(Engine):
    """The shipped model, instrumented: counts the frames passed to :meth:`embed`
    and can be told to fail after some :meth:`colorize` calls."""

    backend = "counting"

    def __init__(self, real: Engine):
        super().__init__(real.info)
        self.real = real
        self.embedded = 0
        self.colorized = 0  # frames
        self.fail_after: int | None = None
        self.calls = 0

    def embed(self, l_ext):
        self.embedded += len(l_ext)
        return self.real.embed(l_ext)

    def colorize(self, l, embedding):
        self.calls += 1
        self.colorized += len(l)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("engine failure (injected)")
        return self.real.colorize(l, embedding)


@pytest.fixture
def counted(seed_engine) -> "CountingEngine":
    return CountingEngine(seed_engine)


FAST = dict(render_size=64, progress=False)


# --------------------------------------------------------------------------- the contract


def test_mp4_aac_frames_timing_audio_lightness_rotation(engine, tmp_path):
    src = make_video(tmp_path / "clip.mp4", frames=32, size=(96, 64), rotate=90)
    dst = streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=engine, **FAST)
    assert dst == tmp_path / "out.mp4" and leftovers(tmp_path, src, dst) == []
    a, b = read_video(src), read_video(dst)
    assert len(b["l"]) == len(a["l"]) == 32
    assert b["size"] == a["size"]
    assert np.allclose(b["times"], a["times"], atol=1e-4)
    assert abs(b["duration"] - a["duration"]) <= 1 / RATE
    assert b["packets"]["audio1"] == a["packets"]["audio1"]  # byte for byte
    assert np.allclose(b["packet_times"]["audio1"], a["packet_times"]["audio1"], atol=1e-4)
    assert b["rotation"] == a["rotation"] == 90
    assert b["metadata"].get("title") == "test clip"
    assert ("audio", "aac", "eng") in b["streams"]
    assert_lightness_kept(a, b)


def test_mkv_pcm_subtitles_and_variable_frame_rate(counted, tmp_path):
    """VFR timestamps kept exactly; PCM audio and SRT subtitles copied byte for byte; vivid colour."""
    tb = Fraction(1, 1000)
    pts = list(np.cumsum([0] + [33, 50, 83, 42] * 6)[:24])
    src = make_video(tmp_path / "vfr.mkv", frames=24, size=(80, 64), audio="pcm_s16le", subtitles=True,
                     pts=pts, time_base=tb)
    dst = streamcolor.colorize_video(src, tmp_path / "vfr-out.mkv", engine=counted, **FAST)
    a, b = read_video(src), read_video(dst)
    assert b["times"] == a["times"] == [p / 1000 for p in pts]
    assert b["packets"]["audio1"] == a["packets"]["audio1"]
    assert b["packets"]["subtitle2"] == a["packets"]["subtitle2"] == [b"Hello, colour", b"Second line"]
    assert b["packet_times"]["subtitle2"] == a["packet_times"]["subtitle2"]
    assert ("subtitle", "subrip", "fra") in b["streams"] or ("subtitle", "srt", "fra") in b["streams"]
    chroma = np.abs(lab.rgb_to_lab(b["rgb0"])[..., 1:]).mean()
    assert chroma > 10, "the model's colour should survive encoding"
    assert_lightness_kept(a, b)


def test_odd_size_is_padded_by_one_edge_pixel(counted, tmp_path):
    src = make_video(tmp_path / "odd.mkv", frames=12, size=(65, 47), audio=None, codec="ffv1", pix_fmt="yuv444p")
    dst = streamcolor.colorize_video(src, engine=counted, **FAST)
    a, b = read_video(src), read_video(dst)
    assert a["size"] == (65, 47) and b["size"] == (66, 48)
    assert len(b["l"]) == 12
    assert_lightness_kept(a, b, crop=(47, 65))
    last = np.stack(b["l"])
    assert np.abs(last[:, :, -1] - last[:, :, -2]).mean() < 2  # the added column repeats the edge


def test_odd_size_kept_when_pixel_format_allows(counted, tmp_path):
    src = make_video(tmp_path / "odd.mkv", frames=6, size=(33, 25), audio=None, codec="ffv1", pix_fmt="yuv444p")
    dst = streamcolor.colorize_video(src, tmp_path / "odd-out.mkv", engine=counted,
                                     options=VideoOptions(codec="ffv1", pix_fmt="yuv444p"), **FAST)
    assert read_video(dst)["size"] == (33, 25)


def test_gray_source(counted, tmp_path):
    src = make_video(tmp_path / "gray.mkv", frames=10, size=(64, 48), codec="ffv1", pix_fmt="gray", audio=None)
    dst = streamcolor.colorize_video(src, engine=counted, **FAST)
    a, b = read_video(src), read_video(dst)
    assert len(b["l"]) == 10
    assert np.abs(lab.rgb_to_lab(b["rgb0"])[..., 1:]).mean() > 5  # coloured
    assert_lightness_kept(a, b)


def test_default_name_and_cli(tmp_path):
    from click.testing import CliRunner

    from streamcolor.cli import cli

    src = make_video(tmp_path / "film.mp4", frames=8, size=(64, 48))
    res = CliRunner().invoke(cli, ["video", str(src), "--render-size", "64", "--no-progress", "--crf", "23"])
    assert res.exit_code == 0, res.output
    assert default_output(src) == tmp_path / "film-colour.mp4"
    assert len(read_video(tmp_path / "film-colour.mp4")["l"]) == 8
    out = tmp_path / "named.mkv"
    res = CliRunner().invoke(cli, ["video", str(src), "-o", str(out), "-r", "64", "--no-progress",
                                   "--no-stabilize", "--embed-every", "4"])
    assert res.exit_code == 0, res.output
    assert read_video(out)["packets"]["audio1"] == read_video(src)["packets"]["audio1"]


def test_the_default_output_name_never_replaces_a_users_file(tmp_path, monkeypatch):
    """colorize_video(src) with no dst chooses the name itself, so a file of the user's there is kept
    and the output goes beside it; its own earlier output at that name is replaced by a rerun."""
    monkeypatch.setenv("STREAMCOLOR_CACHE", str(tmp_path / "cache"))
    src = make_video(tmp_path / "film.mp4", frames=4, size=(64, 48), audio=None)
    mine = tmp_path / "film-colour.mp4"
    mine.write_bytes(b"my edit")
    first = streamcolor.colorize_video(src, **FAST)
    assert mine.read_bytes() == b"my edit" and first == tmp_path / "film-colour~2.mp4"
    assert len(read_video(first)["l"]) == 4
    mine.unlink()
    again = streamcolor.colorize_video(src, **FAST)
    assert again == mine
    assert streamcolor.colorize_video(src, **FAST) == mine  # its own output: replaced, no ~3
    assert sorted(p.name for p in tmp_path.glob("film-colour*")) == ["film-colour.mp4", "film-colour~2.mp4"]


def test_one_inputs_streams_that_its_output_cannot_hold_fail_it_alone(tmp_path):
    """Subtitles a MOV cannot hold fail that input (exit 1, with a way out) and the other input is
    still done; a DV tape's placeholder frame rate (60000) is not written as the output's; a
    Matroska file without an extension stays Matroska, which holds its subtitles."""
    from click.testing import CliRunner

    from streamcolor.cli import cli

    subs = make_video(tmp_path / "subs.mkv", frames=6, size=(64, 48), subtitles=True)
    bare = tmp_path / "bare"  # (no extension: its output is .mkv, by its first bytes)
    bare.write_bytes(subs.read_bytes())
    subs = subs.rename(tmp_path / "withsubs.mov")  # (its output is .mov, which takes no SubRip)
    dv = tmp_path / "tape.dv"
    with av.open(str(dv), "w", format="dv") as out:
        v = out.add_stream("dvvideo", rate=25)
        v.width, v.height, v.pix_fmt = 720, 576, "yuv420p"
        for i in range(4):
            f = av.VideoFrame.from_ndarray(np.full((576, 720), 30 * i, np.uint8), format="gray").reformat(
                format="yuv420p")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode())
    with av.open(str(dv)) as c:
        assert c.streams.video[0].average_rate > 1000  # (what FFmpeg's DV reader says)
    res = CliRunner().invoke(cli, ["video", str(subs), str(dv), str(bare), "-o", str(tmp_path / "out"), "-r", "64",
                                   "--no-progress"])
    assert res.exit_code == 1, res.output
    assert not (tmp_path / "out" / "withsubs-colour.mov").exists()
    with av.open(str(tmp_path / "out" / "bare-colour.mkv")) as c:
        assert [s.type for s in c.streams][:3] == ["video", "audio", "subtitle"]
    with av.open(str(tmp_path / "out" / "tape-colour.mp4")) as c:
        assert c.streams.video[0].average_rate == 25 and c.streams.video[0].frames == 4


def test_video_glob_run_again_leaves_out_its_own_outputs_of_inputs_given(tmp_path, monkeypatch):
    """`video *.mp4` twice in one folder: the glob now holds a-colour.mp4, the first run's output of
    a.mp4; it is left out (it used to refuse the whole run: a.mp4's output would replace an input),
    while an output given without its input is colorized as any video."""
    from click.testing import CliRunner

    from streamcolor.cli import cli

    make_video(tmp_path / "a.mp4", frames=4, size=(64, 48), audio=None)
    monkeypatch.chdir(tmp_path)
    run = lambda *names: CliRunner().invoke(cli, ["video", *names, "-r", "64", "--no-progress"])  # noqa: E731
    assert run("a.mp4").exit_code == 0
    make_video(tmp_path / "b.mp4", frames=4, size=(64, 48), audio=None)
    res = run("a-colour.mp4", "a.mp4", "b.mp4")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-colour.mp4", "a.mp4", "b-colour.mp4", "b.mp4"]
    res = run("a-colour.mp4")  # alone: its input is not given
    assert res.exit_code == 0 and (tmp_path / "a-colour-colour.mp4").is_file(), res.output


def test_a_default_output_name_that_is_another_input_of_the_users_is_numbered(tmp_path, monkeypatch):
    """`video a.mp4 a-colour.mp4`, the second a film of the user's own: a.mp4's default output name is
    that input, and the whole run stopped ("would replace the input"); streamcolor picked the name, so it
    picks the next one (a-colour~2.mp4), and both are done.  A name the user gave stays refused."""
    from click.testing import CliRunner

    from streamcolor.cli import cli

    make_video(tmp_path / "a.mp4", frames=4, size=(64, 48), audio=None)
    make_video(tmp_path / "a-colour.mp4", frames=5, size=(64, 48), audio=None)
    mine = (tmp_path / "a-colour.mp4").read_bytes()
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["video", "a.mp4", "a-colour.mp4", "-r", "64", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a-colour.mp4").read_bytes() == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-colour-colour.mp4", "a-colour.mp4", "a-colour~2.mp4",
                                                          "a.mp4"]
    res = CliRunner().invoke(cli, ["video", "a-colour.mp4", "-o", "./a-colour.mp4", "--no-progress"])
    assert res.exit_code == 2 and "would replace that input itself" in res.output
    assert (tmp_path / "a-colour.mp4").read_bytes() == mine


def test_a_data_track_goes_only_into_the_container_it_came_in(engine, tmp_path):
    """KLV in a drone's MPEG-TS: Matroska takes the stream but refuses its first packet (the whole
    file failed, and no option dropped it); it is dropped with a warning there, kept in a .ts."""
    from fractions import Fraction

    src = tmp_path / "drone.ts"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        d = out.add_data_stream("klv")
        for i in range(6):
            f = av.VideoFrame.from_ndarray(np.full((48, 64), 30 * i, np.uint8), format="gray").reformat(
                format="yuv420p")
            f.pts = i
            out.mux(v.encode(f))
            p = av.Packet(b"\x06\x0e\x2b\x34" + bytes(12))
            p.stream, p.time_base = d, Fraction(1, 90000)
            p.pts = p.dts = i * 3600
            out.mux(p)
        out.mux(v.encode())
    for name, kept in (("c.mkv", False), ("c.ts", True)):
        streamcolor.colorize_video(src, tmp_path / name, engine=engine, render_size=64, progress=False)
        with av.open(str(tmp_path / name)) as c:
            assert [s.type for s in c.streams] == (["video", "data"] if kept else ["video"])


def test_an_animated_webp_is_colorized_as_a_video(engine, tmp_path):
    """FFmpeg reads an animated WebP's file but decodes none of its frames, so `image` sent it to
    `video` and `video` called it a still image: now its frames (decoded by Pillow) are a video,
    each at its own time, and no temporary file is left."""
    frames = [Image.fromarray(np.full((48, 64), 40 * i, np.uint8)) for i in range(4)]
    src = tmp_path / "anim.webp"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 200, 100, 300], lossless=True)
    before = set(Path(tempfile.gettempdir()).glob("streamcolor-animation-*"))
    dst = streamcolor.colorize_video(src, tmp_path / "anim.mp4", engine=engine, render_size=64, progress=False)
    with av.open(str(dst)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert times == pytest.approx([0.0, 0.1, 0.3, 0.4])
    assert set(Path(tempfile.gettempdir()).glob("streamcolor-animation-*")) == before
    with pytest.raises(InputError, match="are over the limit of 1,000"):  # (checked before any frame is decoded)
        streamcolor.colorize_video(src, tmp_path / "big.mp4", engine=engine, render_size=64, progress=False,
                                   options=VideoOptions(max_pixels=1000))


def test_frames_with_timestamps_that_do_not_move_on_are_said_once_then_counted(engine, tmp_path, caplog):
    """Every frame at or before its previous one is nudged a tick on; the log says the first one and
    the count at the end, not a line per frame (a file whose pts were all 0 said it for each)."""
    src = make_video(tmp_path / "stuck.mkv", frames=12, size=(64, 48), audio=None,
                     pts=[0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    with caplog.at_level(logging.WARNING, logger="streamcolor"):
        dst = streamcolor.colorize_video(src, tmp_path / "out.mkv", engine=engine, **FAST)
    said = [r.getMessage() for r in caplog.records if "nudged" in r.getMessage()]
    assert len(said) == 2 and "9 frames in all" in said[1], said
    with av.open(str(dst)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert len(pts) == 12 and pts == sorted(set(pts))


# --------------------------------------------------------------------------- bad input


def _truncated_mp4(p: Path) -> Path:
    make_video(p.with_name("full.mp4"), frames=12)
    data = p.with_name("full.mp4").read_bytes()
    p.with_name("full.mp4").unlink()
    p.write_bytes(data[: len(data) * 2 // 3])  # moov (index) is at the end: cut off
    return p


def _audio_only(p: Path) -> Path:
    with av.open(str(p), "w") as out:
        a = out.add_stream("pcm_s16le", rate=8000)
        a.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        out.mux(a.encode(f))
        out.mux(a.encode())
    return p


def _no_video_frames(p: Path) -> Path:
    """A Matroska file with a video track but no video packet (audio only)."""
    with av.open(str(p), "w") as out:
        v = out.add_stream("ffv1", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=8000)
        a.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        out.mux(a.encode(f))
        out.mux(a.encode())
    return p


BAD = {
    "missing": lambda p: p,
    "text": lambda p: (p.write_text("not a video at all\n" * 50), p)[1],
    "empty": lambda p: (p.write_bytes(b""), p)[1],
    "truncated": _truncated_mp4,
    "audio_only": _audio_only,
    "no_frames": _no_video_frames,
    "still_image": lambda p: (__import__("PIL.Image").Image.new("L", (32, 32)).save(p.with_suffix(".png")),
                              p.with_suffix(".png"))[1],
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_cleanly(counted, tmp_path, case):
    suffix = ".wav" if case == "audio_only" else ".mkv" if case == "no_frames" else ".mp4"
    src = BAD[case](tmp_path / f"bad-{case}{suffix}")
    before = set(tmp_path.iterdir())
    with pytest.raises(InputError) as err:
        streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=counted, **FAST)
    assert src.name in str(err.value)
    assert "Errno" not in str(err.value)  # FFmpeg's words without its error number
    if case == "empty":
        assert str(err.value).endswith("empty (0 bytes)")
    assert set(tmp_path.iterdir()) == before  # no output, no temporary file


def test_truncated_matroska_keeps_what_decodes(counted, tmp_path, caplog):
    full = make_video(tmp_path / "full.mkv", frames=24, audio="pcm_s16le")
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        dst = streamcolor.colorize_video(cut, engine=counted, **FAST)
    n = len(read_video(dst)["l"])
    assert 0 < n < 24
    assert "(damaged or truncated input?)" in caplog.text


@pytest.mark.parametrize("case", ["starts at 10 s", "variable rate", "variable rate, ms time base"])
def test_a_whole_matroska_is_no_sign_of_damage(counted, tmp_path, caplog, case):
    """Matroska has no frame count; FFmpeg writes each stream's end time as its ``DURATION`` tag,
    which was read as a length (a clip starting at 10 s "announced" 288 frames for its 48), and a
    variable frame rate made a frame count of the duration wrong (1000 "fps" in a 1/1000 time base).
    Whether the input ends early is now judged by time: what the frames cover against the span."""
    gaps = np.resize([1, 2, 1, 3], 47)
    pts = {"starts at 10 s": [240 + i for i in range(48)], "variable rate": np.cumsum([0, *gaps]).tolist(),
           "variable rate, ms time base": (10_000 + np.cumsum([0, *gaps]) * 41).tolist()}[case]
    tb = Fraction(1, 1000) if "ms" in case else Fraction(1, RATE)
    src = make_video(tmp_path / "v.mkv", frames=48, pts=pts, time_base=tb, audio=None)
    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        dst = streamcolor.colorize_video(src, engine=counted, **FAST)
    assert len(read_video(dst)["l"]) == 48
    assert "truncated" not in caplog.text


def test_subtitles_that_run_past_the_picture_are_no_sign_of_damage(counted, tmp_path, caplog):
    video = make_video(tmp_path / "v.mkv", frames=24, audio=None)  # 1 s of picture ...
    srt = tmp_path / "late.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:03,000\nThe end\n")  # ... and a subtitle until 3 s
    src = tmp_path / "multi.mkv"
    with av.open(str(video)) as vin, av.open(str(srt)) as sin, av.open(str(src), "w") as out:
        streams = {vin.streams.video[0]: out.add_stream_from_template(vin.streams.video[0]),
                   sin.streams.subtitles[0]: out.add_stream_from_template(sin.streams.subtitles[0])}
        for container, stream in ((vin, vin.streams.video[0]), (sin, sin.streams.subtitles[0])):
            for packet in container.demux(stream):
                if packet.size:
                    packet.stream = streams[stream]
                    out.mux(packet)
    with av.open(str(src)) as c:
        assert c.duration / 1e6 > 2.5 and c.streams.video[0].duration is None  # what misled the check
    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        dst = streamcolor.colorize_video(src, engine=counted, **FAST)
    assert len(read_video(dst)["l"]) == 24
    assert not [r for r in caplog.records if "truncated" in r.getMessage()], caplog.text


def test_container_that_cannot_hold_a_copied_stream(counted, tmp_path):
    src = make_video(tmp_path / "subs.mkv", frames=6, audio="pcm_s16le", subtitles=True)
    with pytest.raises(OutputError, match=r"cannot hold the (subrip|srt) subtitle stream"):
        streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=counted, **FAST)
    assert leftovers(tmp_path, src) == []


def test_failure_midway_leaves_nothing_and_stops_threads(counted, tmp_path):
    src = make_video(tmp_path / "clip.mp4", frames=40)
    counted.fail_after = 2
    with pytest.raises(RuntimeError, match="engine failure"):
        streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=counted, batch_size=4, **FAST)
    assert leftovers(tmp_path, src) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("streamcolor-")]


def test_unwritable_destination(counted, tmp_path):
    src = make_video(tmp_path / "clip.mp4", frames=4)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OutputError):
        streamcolor.colorize_video(src, tmp_path / "a-file" / "out.mp4", engine=counted, **FAST)
    with pytest.raises(OutputError):
        streamcolor.colorize_video(src, tmp_path / "out.unknownext", engine=counted, **FAST)
    assert leftovers(tmp_path, src, tmp_path / "a-file") == []


def test_missing_output_folder_is_created(counted, tmp_path):
    src = make_video(tmp_path / "clip.mp4", frames=4)
    out = streamcolor.colorize_video(src, tmp_path / "new" / "deeper" / "out.mp4", engine=counted, **FAST)
    assert out.is_file()


# --------------------------------------------------------------------------- scenes, embeddings, stability


def test_embedding_reused_within_a_scene(counted, tmp_path):
    """40 frames, cut at 20, embed_every=8: embeddings at 0, 8, 16, 20, 28, 36."""
    src = make_video(tmp_path / "two.mp4", frames=40, scenes=2, audio=None, motion=1)
    streamcolor.colorize_video(src, engine=counted, options=VideoOptions(embed_every=8), **FAST)
    assert counted.embedded == 6
    counted.embedded = 0
    streamcolor.colorize_video(src, tmp_path / "per-frame.mp4", engine=counted,
                               options=VideoOptions(embed_every=1), **FAST)
    assert counted.embedded == 40


def test_scene_cut_distance():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, -0.2, (48, 64))
    b = np.clip(a + rng.normal(0, 0.02, a.shape), -1, 1)
    c = rng.uniform(0.2, 1, (48, 64))
    assert histogram_distance(l_histogram(a), l_histogram(b)) < 0.1
    assert histogram_distance(l_histogram(a), l_histogram(c)) > 0.9


def test_stabilizer_damps_flicker_follows_motion_and_resets():
    rng = np.random.default_rng(1)
    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    stab = ChromaStabilizer(0.6)
    flick_in, flick_out, err = [], [], []
    prev_in = prev_out = None
    for t in range(12):
        l = np.sin((x - 2 * t) / 6.0) * np.cos(y / 5.0) * 0.6  # a texture moving 2 px a frame
        truth = np.stack([np.sin((x - 2 * t) / 6.0), np.cos((x - 2 * t) / 6.0 + y / 9.0)], -1) * 30
        noisy = truth + rng.normal(0, 8, (1, 1, 2)) + rng.normal(0, 3, truth.shape)  # global + local flicker
        out = stab(l, noisy)
        if prev_in is not None:  # change along the motion (the part that is flicker), away from the edges
            flick_in.append(np.abs(noisy[:, 10:-8] - prev_in[:, 8:-10]).mean())
            flick_out.append(np.abs(out[:, 10:-8] - prev_out[:, 8:-10]).mean())
            err.append((np.abs(noisy - truth)[:, 8:-8].mean(), np.abs(out - truth)[:, 8:-8].mean()))
        prev_in, prev_out = noisy, out
    assert np.mean(flick_out) < 0.6 * np.mean(flick_in)
    err_in, err_out = np.mean(err[3:], axis=0)
    assert err_out < err_in  # closer to the truth: follows the moving colours instead of smearing them
    cut = stab(-l, truth * 0 + 5, cut=True)
    assert np.allclose(cut, 5)


def test_options_are_checked_and_shortcuts_apply():
    with pytest.raises(ValueError):
        VideoOptions(batch_size=0)
    with pytest.raises(ValueError):
        VideoOptions(stabilize_strength=1.0)
    assert streamcolor.VideoOptions is VideoOptions


def test_codec_auto_is_a_working_encoder():
    codec = pick_codec("auto")
    assert codec in ("h264_nvenc", "libx264")
    assert pick_codec("libx265") == "libx265"


def test_why_an_encoder_does_not_open_is_said_in_ffmpegs_words():
    """FFmpeg says why NVENC cannot start only in its log (the exception: "Operation not permitted"):
    a child process reads that log (this process's PyAV logging is left alone: its level is the
    whole process's), and the reason is said with what it means."""
    import av.logging

    from streamcolor.video.codecs import encoder_error, explain_open_failure, ffmpeg_says

    before = av.logging.get_level()
    assert encoder_error("libx264") is None
    assert encoder_error("no-such-encoder") == "this PyAV build has no no-such-encoder"
    if "h264_nvenc" in av.codecs_available and not os.path.exists("/dev/nvidia0"):  # (no NVIDIA driver here)
        assert encoder_error("h264_nvenc") == "no NVIDIA GPU here"
        assert ffmpeg_says("h264_nvenc") == "Cannot load libcuda.so.1"  # (what a GPU machine's reason comes from)
    assert ffmpeg_says("libx264") is None  # (it opens: FFmpeg says nothing)
    assert av.logging.get_level() == before
    # what a GPU container without the driver's video capability says, and a message with no known cause
    said = explain_open_failure("h264_nvenc", "Cannot load libnvidia-encode.so.1")
    assert said.startswith("Cannot load libnvidia-encode.so.1: ") and "NVIDIA_DRIVER_CAPABILITIES" in said
    h200 = "OpenEncodeSessionEx failed: unsupported device (2): (no details); No capable devices found"  # (an H200's)
    assert "this GPU has no video encoder (NVENC)" in explain_open_failure("h264_nvenc", h200)
    assert explain_open_failure("h264_nvenc", "Something else") == "Something else"
    assert explain_open_failure("libx264", "Cannot load libcuda.so.1") == "Cannot load libcuda.so.1"


# --------------------------------------------------------------------------- segments (one video, several workers)


GOP = 8


@pytest.fixture
def gop_clip(tmp_path) -> Path:
    """32 frames, a keyframe every 8, two scenes, a sine-tone track."""
    return make_video(tmp_path / "gop.mp4", frames=32, gop=GOP, scenes=2)


def test_video_keyframes(gop_clip):
    keyframes, tb, packets = video_keyframes(gop_clip)
    assert packets == 32
    assert [round(float(k * tb) * RATE) for k in keyframes] == [0, 8, 16, 24]


def test_plan_segments():
    tb = Fraction(1, 12288)
    kf = [0, 6144, 12288, 18432, 24576]  # a keyframe every 0.5 s
    segs = plan_segments(kf, tb, segment_s=1.0, warmup_s=0.4)
    assert [(s.start, s.end, s.decode_from) for s in segs] == [(0, 12288, 0), (12288, 24576, 6144),
                                                              (24576, None, 18432)]
    assert [s.decode_from for s in plan_segments(kf, tb, segment_s=0.5, warmup_s=0)] == kf
    # what a segment keeps: the first one everything up to its end (frames before the first keyframe
    # too, as one pass keeps them); a later one from its start, after the warm-up's 0.4 s (4915.2
    # ticks), decoded from the keyframe before them; the frames between are only decoded
    assert not segs[0].warm_up(-100) and not segs[0].before(-100)
    assert segs[1].warm_from == 7372 and segs[1].before(7371) and not segs[1].before(7372)
    assert segs[1].warm_up(12287) and not segs[1].warm_up(12288)
    assert plan_segments([], tb) == []
    # count: about equal parts, cut at the keyframes nearest to each share (a keyframe every 12 of 100 frames)
    kf12 = list(range(0, 100, 12))
    sizes = lambda segs, end: [(s.end or end) - s.start for s in segs]  # noqa: E731
    assert sizes(plan_segments(kf12, tb, count=3), 100) == [36, 36, 28]  # (a greedy cut gave 48, 48, 4)
    assert sizes(plan_segments(kf12, tb, count=1), 100) == [100]
    assert len(plan_segments(kf12, tb, count=20)) == len(kf12)  # never more than the keyframes allow
    assert sizes(plan_segments([0, 24, 48, 72], tb, count=3), 96) == [24, 48, 24]
    with pytest.raises(ValueError):
        plan_segments(kf12, tb, count=0)


def test_colorize_segment_writes_its_frames_after_a_warm_up(counted, gop_clip, tmp_path):
    """Segment 2 keeps frames 16..23 (video alone, source pts); the GOP before it only warms up."""
    keyframes, tb, _ = video_keyframes(gop_clip)
    segs = plan_segments(keyframes, tb, segment_s=GOP / RATE, warmup_s=GOP / RATE)
    seg = segs[2]
    assert seg.decode_from == keyframes[1] and (seg.start, seg.end) == (keyframes[2], keyframes[3])
    info = colorize_segment(gop_clip, tmp_path / "seg.mp4", seg, engine=counted, options=VideoOptions(render_size=64))
    src, res = read_video(gop_clip), read_video(tmp_path / "seg.mp4")
    assert (info["frames"], info["first_pts"]) == (GOP, seg.start) and info["last_pts"] < seg.end
    # Video only (nothing copied); the source's frame times (a lone MP4 segment may shift them
    # by a few ticks of its edit list: join_segments reads the packets' own timestamps).
    assert np.allclose(res["times"], src["times"][16:24], atol=0.1 / RATE) and not res["packets"]
    assert counted.colorized == 2 * GOP  # the warm-up went through the network, then was dropped
    assert_lightness_kept({"l": src["l"][16:24]}, res)
    assert leftovers(tmp_path, gop_clip, tmp_path / "seg.mp4") == []


def test_join_segments_rebuilds_the_video(engine, gop_clip, tmp_path):
    keyframes, tb, _ = video_keyframes(gop_clip)
    segs = plan_segments(keyframes, tb, segment_s=2 * GOP / RATE, warmup_s=GOP / RATE)
    paths = [tmp_path / f"part{s.index}.mp4" for s in segs]
    for seg, path in zip(segs, paths):
        colorize_segment(gop_clip, path, seg, engine=engine, options=VideoOptions(render_size=64))
    out = join_segments(gop_clip, paths, tmp_path / "joined.mp4")
    src, res = read_video(gop_clip), read_video(out)
    # Every frame once, at the source's times (within the few ticks an MP4 segment may shift them).
    assert len(res["times"]) == len(src["times"]) and np.allclose(res["times"], src["times"], atol=0.1 / RATE)
    assert res["packets"] == src["packets"] and res["packets"]  # audio copied packet for packet
    assert_lightness_kept(src, res)
    with pytest.raises(OutputError, match="timestamps go back"):
        join_segments(gop_clip, paths[::-1], tmp_path / "backwards.mp4")
    assert leftovers(tmp_path, gop_clip, out, *paths) == []
    # the source's chapters, as colorize_video keeps them (the Ray path lost them)
    chaptered = _with_chapters(gop_clip, tmp_path / "chaptered.mp4")
    joined = join_segments(chaptered, paths, tmp_path / "joined-chapters.mp4")
    with av.open(str(joined)) as c:
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["One", "Two"]



def test_cover_art_is_kept_where_the_container_holds_it(counted, tmp_path, caplog):
    """A cover picture (a Matroska attachment, which FFmpeg reads as an attached-picture stream)
    stays cover art: an attached picture in .mp4, an attachment in .mkv (as a stream there it
    became a second, one-frame video track); .mov has no place for it, and a warning says so."""
    clip = make_video(tmp_path / "plain.mkv", frames=6, audio=None)
    src = tmp_path / "cover.mkv"
    picture = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(picture, "JPEG")
    with av.open(str(clip)) as inp, av.open(str(src), "w") as out:
        vs = out.add_stream_from_template(inp.streams.video[0])
        out.add_attachment("cover.jpg", "image/jpeg", picture.getvalue())
        for packet in inp.demux(video=0):
            if packet.size:
                packet.stream = vs
                out.mux(packet)

    def covers(path: Path) -> list[tuple[str, bytes]]:
        with av.open(str(path)) as c:
            streams = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
            return [(s.codec_context.name, next(bytes(p) for p in c.demux(s) if p.size)) for s in streams]

    assert covers(src) == [("mjpeg", picture.getvalue())]
    for suffix in (".mp4", ".mkv"):
        out = streamcolor.colorize_video(src, tmp_path / f"out{suffix}", engine=counted, **FAST)
        assert covers(out) == [("mjpeg", picture.getvalue())], suffix
        with av.open(str(out)) as c:
            assert len(c.streams.video) == 2  # the colorized video and the cover, nothing else
    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        out = streamcolor.colorize_video(src, tmp_path / "out.mov", engine=counted, **FAST)
    assert covers(out) == [] and "the cover picture (stream #1) is left out" in caplog.text


def test_a_camera_timecode_track_does_not_stop_the_video(counted, tmp_path):
    """A QuickTime timecode track (tmcd: a data stream of no codec FFmpeg knows) made every output
    fail at its first packet.  It is not copied; the timecode stays the video's tag, from which the
    QuickTime and MP4 muxers write their own timecode track."""
    clip = make_video(tmp_path / "plain.mp4", frames=6)
    src = tmp_path / "camera.mov"
    with av.open(str(clip)) as inp, av.open(str(src), "w") as out:
        vs = out.add_stream_from_template(inp.streams.video[0])
        vs.metadata["timecode"] = "01:00:00:00"  # (the muxer adds the tmcd track)
        aus = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux():
            if packet.size:
                packet.stream = vs if packet.stream.type == "video" else aus
                out.mux(packet)
    with av.open(str(src)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "data"]
    for suffix in (".mov", ".mp4", ".mkv"):
        out = streamcolor.colorize_video(src, tmp_path / f"out{suffix}", engine=counted, **FAST)
        res = read_video(out)
        assert len(res["times"]) == 6 and res["packets"], suffix  # every frame, and the audio
        with av.open(str(out)) as c:
            tags = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}
        assert tags.get("timecode") == "01:00:00:00", suffix


def test_join_segments_of_a_variable_frame_rate(engine, tmp_path):
    """Each segment is encoded alone, and x264 starts its decode times (dts) before its first
    frame by the B-frame delay, measured from its own first frames: where the frame rate varies,
    a segment's first dts fell at or before the previous segment's last, and the join refused a
    video whose frames are in order.  The dts are now moved just past (within the frames' pts)."""
    # frames 25 ms apart, but 60 ms apart at the start of segments 2 and 3 (keyframes 24 and 48): their
    # B-frame delay (the first frames' gaps) outgrows the previous segment's by more than the gap at the join
    gaps = [60 if i > 24 and i % 24 in (1, 2) else 25 for i in range(1, 72)]
    pts = np.concatenate([[0], np.cumsum(gaps)]).tolist()
    src = make_video(tmp_path / "vfr.mp4", frames=72, pts=pts, time_base=Fraction(1, 1000), gop=24)
    keyframes, tb, _ = video_keyframes(src)
    segs = plan_segments(keyframes, tb, count=3)
    assert len(segs) == 3
    paths = [tmp_path / f"part{s.index}.mp4" for s in segs]
    for seg, path in zip(segs, paths):
        colorize_segment(src, path, seg, engine=engine, options=VideoOptions(render_size=64))
    out = join_segments(src, paths, tmp_path / "joined.mp4")
    original, res = read_video(src), read_video(out)
    assert len(res["times"]) == 72 and np.allclose(res["times"], original["times"], atol=1e-3)
    with av.open(str(out)) as c:
        stamps = [(p.pts, p.dts) for p in c.demux(video=0) if p.size]
    assert all(b[1] > a[1] for a, b in zip(stamps, stamps[1:])) and all(d <= p for p, d in stamps)


# --------------------------------------------------------------------------- a long video in parts, resumable


PARTS = dict(render_size=64, checkpoint_s=1.0)  # 96 frames, a keyframe every 0.5 s: four parts of 24


@pytest.fixture
def long_clip(tmp_path) -> Path:
    """96 frames (4 s), a keyframe every 12, three scenes, a sine-tone track, gray."""
    return make_video(tmp_path / "long.mp4", frames=96, gop=12, scenes=3, gray=True)


def test_a_long_video_is_colorized_in_parts_like_one_pass(engine, long_clip, tmp_path, caplog):
    """Past two parts, a video is colorized a part at a time (kept beside the output) and joined:
    every frame once with the source's times, the audio byte for byte, the progress counted in
    frames (warm-up frames not counted), nothing left beside the output, and the colour of a
    single pass (the borders warmed up)."""
    calls = []
    with caplog.at_level(logging.INFO, logger="streamcolor.video"):
        dst = streamcolor.colorize_video(long_clip, tmp_path / "parts.mp4", engine=engine,
                                         options=VideoOptions(**PARTS), progress=lambda n, t: calls.append((n, t)))
    assert "in 4 parts" in caplog.text
    assert leftovers(tmp_path, long_clip, dst) == []  # the work folder is gone
    one = streamcolor.colorize_video(long_clip, tmp_path / "one.mp4", engine=engine,
                                     options=VideoOptions(render_size=64, checkpoint_s=0), progress=False)
    a, b = read_video(long_clip), read_video(dst)
    assert len(b["l"]) == 96 and np.allclose(b["times"], a["times"], atol=1e-6)
    assert b["packets"]["audio1"] == a["packets"]["audio1"]
    assert abs(b["duration"] - a["duration"]) <= 1 / RATE
    assert_lightness_kept(a, b)
    assert calls == [(n, 96) for n in range(1, 97)]
    with av.open(str(dst)) as x, av.open(str(one)) as y:
        diffs = [float(np.abs(f.to_ndarray(format="rgb24").astype(np.int16) - g.to_ndarray(format="rgb24")).mean())
                 for f, g in zip(x.decode(video=0), y.decode(video=0))]
    assert len(diffs) == 96 and float(np.median(diffs)) < 1.5 and max(diffs) < 6.0, diffs


def test_a_failed_long_video_resumes_from_its_last_part(counted, long_clip, tmp_path, caplog):
    """A run that stops in part 3 leaves nothing at the output and parts 1-2 in the work folder;
    the same call again colorizes only parts 3-4 (and one warm-up second) and joins all four."""
    dst = tmp_path / "out.mp4"
    # two frames a call: part 1 takes 12 calls, part 2 18 (its warm-up half second, then its own frames)
    counted.fail_after = 12 + 18 + 4
    options = VideoOptions(**PARTS, batch_size=2)
    with pytest.raises(RuntimeError, match="injected"):
        streamcolor.colorize_video(long_clip, dst, engine=counted, options=options, progress=False)
    work = tmp_path / ".out.mp4.segments"
    assert not dst.exists()
    parts = sorted(p.name for p in work.iterdir() if p.name.startswith("segment-"))
    assert parts[:2] == ["segment-00000.mp4", "segment-00001.mp4"] and len(parts) == 2, parts
    counted.fail_after, counted.colorized = None, 0
    with caplog.at_level(logging.INFO, logger="streamcolor.video"):
        streamcolor.colorize_video(long_clip, dst, engine=counted, options=options, progress=False)
    assert "resuming: 2 of 4 parts were done (48 frames)" in caplog.text
    assert counted.colorized == 48 + 2 * 12  # parts 3 and 4, each after its warm-up half second
    res = read_video(dst)
    assert len(res["l"]) == 96 and np.allclose(res["times"], read_video(long_clip)["times"], atol=1e-4)
    assert leftovers(tmp_path, long_clip, dst) == []


def test_parts_of_another_job_are_redone(counted, long_clip, tmp_path, caplog):
    """Parts left by a run with other options (here the colour gain) are removed, not joined."""
    dst = tmp_path / "out.mp4"
    counted.fail_after = 12 + 18 + 4  # (in part 3, as above)
    with pytest.raises(RuntimeError):
        streamcolor.colorize_video(long_clip, dst, engine=counted, options=VideoOptions(**PARTS, batch_size=2),
                                   progress=False)
    counted.fail_after, counted.colorized = None, 0
    with caplog.at_level(logging.INFO, logger="streamcolor.video"):
        streamcolor.colorize_video(long_clip, dst, engine=counted, options=VideoOptions(**PARTS, saturation=1.3),
                                   progress=False)
    assert "parts of another job" in caplog.text and "resuming" not in caplog.text
    assert counted.colorized == 96 + 3 * 12
    assert leftovers(tmp_path, long_clip, dst) == []


def test_the_work_folder_keeps_a_users_files_and_a_second_run_out(engine, long_clip, tmp_path):
    """A folder of the work folder's name holding a file streamcolor did not write refuses the run
    (the file kept); while one run holds the work folder, a second run for the same output is refused."""
    from streamcolor.video import segment_folder

    dst = tmp_path / "out.mp4"
    work = tmp_path / ".out.mp4.segments"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write.*notes.txt"):
        streamcolor.colorize_video(long_clip, dst, engine=engine, options=VideoOptions(**PARTS), progress=False)
    assert (work / "notes.txt").read_text() == "mine" and not dst.exists()
    (work / "notes.txt").unlink()
    keyframes, tb, _ = video_keyframes(long_clip)
    with segment_folder(long_clip, dst, {"held": True}, plan_segments(keyframes, tb, segment_s=1.0)):
        for options in (VideoOptions(**PARTS), VideoOptions(render_size=64, checkpoint_s=0)):  # (parts, one pass)
            with pytest.raises(OutputError, match="another streamcolor run is writing"):
                streamcolor.colorize_video(long_clip, dst, engine=engine, options=options, progress=False)
    assert not dst.exists()


def test_parts_of_another_encoder_are_redone_and_a_pin_keeps_the_plan(long_clip, tmp_path, caplog):
    """The Ray path learns the encoder (``codec="auto"``: NVENC on a GPU node, x264 elsewhere) only once
    its actors run, after the plan: a rerun on nodes that pick another encoder removes the parts of the
    first (they could not be joined by stream copy: it failed at the join); the same encoder keeps them,
    and a pinned value does not make the next run's plan another plan."""
    from streamcolor.video import segment_folder

    dst = tmp_path / "out.mp4"
    keyframes, tb, _ = video_keyframes(long_clip)
    plan = plan_segments(keyframes, tb, segment_s=1.0)
    with segment_folder(long_clip, dst, {"job": 1}, plan) as folder:
        assert not folder.pin("codec", "h264_nvenc")
        folder.paths[0].write_bytes(b"part")
    with segment_folder(long_clip, dst, {"job": 1}, plan) as folder:
        assert folder.paths[0].is_file()  # (the same plan: the part is kept)
        assert not folder.pin("codec", "h264_nvenc") and folder.paths[0].is_file()
        with caplog.at_level(logging.INFO, logger="streamcolor.video"):
            assert folder.pin("codec", "libx264")
        assert not folder.paths[0].exists() and "made with codec h264_nvenc removed" in caplog.text
        folder.paths[0].write_bytes(b"part")
    with segment_folder(long_clip, dst, {"job": 1}, plan) as folder:
        assert not folder.pin("codec", "libx264") and folder.paths[0].is_file()


def test_parts_of_an_output_with_the_longest_name_are_kept_under_a_short_one(engine, long_clip, tmp_path, caplog):
    """An output name of 250 bytes: its work folder ``.<name>.segments`` would be longer than a file
    name may be; the parts go to ``.streamcolor-<hash>.segments`` instead, and are resumed from there."""
    dst = tmp_path / ("v" * 246 + ".mp4")
    with caplog.at_level(logging.INFO, logger="streamcolor.video"):
        out = streamcolor.colorize_video(long_clip, dst, engine=engine, options=VideoOptions(**PARTS), progress=False)
    assert out == dst and "in 4 parts, kept in" in caplog.text and ".streamcolor-" in caplog.text
    assert leftovers(tmp_path, long_clip, dst) == [] and len(read_video(dst)["l"]) == 96


def test_a_video_being_written_by_another_run_is_refused(engine, long_clip, tmp_path):
    """One pass or parts, a second run for an output that a live run is writing (its locked temporary
    file beside it) is refused: both would finish, and the later rename would win."""
    from streamcolor import tempfiles

    dst = tmp_path / "out.mp4"
    staged = tempfiles.create(dst, keep_suffix=True)  # (what a running one-pass or join holds)
    try:
        for options in (VideoOptions(**PARTS), VideoOptions(render_size=64, checkpoint_s=0)):
            with pytest.raises(OutputError, match="another streamcolor run is writing"):
                streamcolor.colorize_video(long_clip, dst, engine=engine, options=options, progress=False)
    finally:
        staged.discard()
    assert streamcolor.colorize_video(long_clip, dst, engine=engine, options=VideoOptions(render_size=64),
                                      progress=False) == dst


def test_parts_keep_the_sources_timestamps_exactly(engine, tmp_path):
    """B-frames and x264's 1/12288 time base: a part that starts at 1.916667 s came back from its MP4 at
    1.916 s (the edit list in the movie's default 1/1000 s timescale), so frames drifted by up to 0.65 ms
    at each join; the movie timescale is now the video's own."""
    src = make_video(tmp_path / "b.mp4", frames=96, gop=23, scenes=2, gray=True, preset="medium")
    dst = streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=engine, options=VideoOptions(**PARTS),
                                     progress=False)

    def pts(path: Path) -> list[int]:
        with av.open(str(path)) as c:
            return sorted(p.pts for p in c.demux(video=0) if p.size)

    assert pts(dst) == pts(src)


def test_a_container_that_cannot_hold_the_copied_streams_is_refused_before_any_part(counted, tmp_path):
    """AAC cannot go into WebM: one pass refuses at once; the parts path said so only at the join,
    after colorizing every part."""
    src = make_video(tmp_path / "a.mp4", frames=96, gop=12)
    with pytest.raises(OutputError, match="webm format cannot hold the aac audio"):
        streamcolor.colorize_video(src, tmp_path / "out.webm", engine=counted, options=VideoOptions(**PARTS),
                                   progress=False)
    assert counted.colorized == 0 and not list((tmp_path / ".out.webm.segments").glob("segment-*"))


def test_a_plan_file_streamcolor_did_not_write_keeps_the_folder(engine, long_clip, tmp_path):
    """A folder of the work folder's name with files named like parts and a plan.json that is not one
    of streamcolor's is not emptied (it is not ours)."""
    work = tmp_path / ".out.mp4.segments"
    work.mkdir()
    (work / "plan.json").write_text("mine")
    (work / "segment-00000.mp4").write_bytes(long_clip.read_bytes())
    with pytest.raises(OutputError, match="not a plan streamcolor wrote"):
        streamcolor.colorize_video(long_clip, tmp_path / "out.mp4", engine=engine, options=VideoOptions(**PARTS),
                                   progress=False)
    assert (work / "plan.json").read_text() == "mine" and (work / "segment-00000.mp4").stat().st_size > 0


def test_parts_left_for_another_output_are_named(counted, long_clip, tmp_path, caplog):
    """Stopped, then started again with another -o: the first output's parts are not reused (they
    belong to that output), and the run says where they are kept."""
    counted.fail_after = 12 + 18 + 4
    with pytest.raises(RuntimeError):
        streamcolor.colorize_video(long_clip, tmp_path / "x.mp4", engine=counted,
                                   options=VideoOptions(**PARTS, batch_size=2), progress=False)
    counted.fail_after = None
    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        streamcolor.colorize_video(long_clip, tmp_path / "y.mp4", engine=counted,
                                   options=VideoOptions(**PARTS, batch_size=2), progress=False)
    assert f"kept in {tmp_path / '.x.mp4.segments'}" in caplog.text


def test_a_join_that_fails_on_the_videos_own_parts_is_that_videos_failure(counted, long_clip, tmp_path):
    """A join refused for the video's own streams (timestamps that go back, a packet its container
    refuses) raised a plain OutputError, which `streamcolor video` takes for the output location's
    fault: the run stopped (exit 2) and the other inputs were never done; one pass fails only that
    video.  The message said a rerun joins the parts again, which fails the same way each time."""
    counted.fail_after = 12 + 18 + 4  # (parts 0 and 1 done, then a failure)
    with pytest.raises(RuntimeError):
        streamcolor.colorize_video(long_clip, tmp_path / "x.mp4", engine=counted,
                                   options=VideoOptions(**PARTS, batch_size=2), progress=False)
    counted.fail_after = None
    work = tmp_path / ".x.mp4.segments"
    (work / "segment-00001.mp4").write_bytes((work / "segment-00000.mp4").read_bytes())  # (its times go back)
    with pytest.raises(ItemOutputError, match="timestamps go back at the join .*--checkpoint-every 0"):
        streamcolor.colorize_video(long_clip, tmp_path / "x.mp4", engine=counted,
                                   options=VideoOptions(**PARTS, batch_size=2), progress=False)
    assert not (tmp_path / "x.mp4").exists()


def test_killed_after_the_join_the_rerun_knows_the_output_is_its_own(counted, long_clip, tmp_path, monkeypatch):
    """Killed after the joined output was renamed into place but before the work folder was removed:
    the output was noted as streamcolor's only after that, so the rerun (at the default name) took it
    for a file of the user's, colorized the whole video again into ``~2`` and left the folder for good."""
    from streamcolor.video import segments

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    src = tmp_path / "film.mp4"
    src.write_bytes(long_clip.read_bytes())
    monkeypatch.setattr(segments, "_remove_ours", killed)
    with pytest.raises(Killed):
        streamcolor.colorize_video(src, engine=counted, options=VideoOptions(**PARTS), progress=False)
    monkeypatch.undo()
    assert (tmp_path / "film-colour.mp4").is_file() and (tmp_path / ".film-colour.mp4.segments").is_dir()
    before = counted.colorized
    out = streamcolor.colorize_video(src, engine=counted, options=VideoOptions(**PARTS), progress=False)
    assert out == tmp_path / "film-colour.mp4" and counted.colorized == before  # (the parts joined again)
    assert sorted(p.name for p in tmp_path.iterdir() if p != long_clip) == ["film-colour.mp4", "film.mp4"]


@pytest.mark.slow
def test_sigkill_during_a_long_video_then_the_same_command_resumes(tmp_path):
    """`streamcolor video` killed (SIGKILL) after some parts: nothing at the output, the finished
    parts kept; the same command again says it resumes, redoes the rest, and the film is whole."""
    import signal
    import time

    # (small frames at render 64: the parts, the kill and the resume are what is tested, not the engine)
    src = make_video(tmp_path / "film.mp4", frames=480, size=(160, 120), gop=24, scenes=4, gray=True)
    work = tmp_path / ".film-colour.mp4.segments"
    cmd = [sys.executable, "-m", "streamcolor", "video", str(src), "--checkpoint-every", "2", "--no-progress",
           "-r", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(list(work.glob("segment-*.mp4"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no part was finished"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    done = len(list(work.glob("segment-*.mp4")))
    assert 2 <= done < 10, "killed too late to test resuming"
    assert not (tmp_path / "film-colour.mp4").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {done} of 10 parts were done" in again.stderr, again.stderr
    a, b = read_video(src), read_video(tmp_path / "film-colour.mp4")
    assert len(b["l"]) == 480 and np.allclose(b["times"], a["times"], atol=1e-4)
    assert b["packets"]["audio1"] == a["packets"]["audio1"]
    assert leftovers(tmp_path, src, tmp_path / "film-colour.mp4") == []


@pytest.mark.slow
def test_a_stopped_run_in_parts_says_a_rerun_resumes_and_a_run_in_one_pass_removes_the_parts(tmp_path):
    """Stopped (SIGTERM, as Ctrl-C) after some parts: the message said only "every output already
    written is kept", not that the parts are kept and the same command resumes.  A rerun that takes one
    pass (--checkpoint-every 0) wrote the output and left the hidden parts folder behind for good."""
    import signal
    import time

    src = make_video(tmp_path / "film.mp4", frames=240, size=(160, 120), gop=24, gray=True)
    work = tmp_path / ".film-colour.mp4.segments"
    cmd = [sys.executable, "-m", "streamcolor", "video", str(src), "-r", "64", "--no-progress"]
    proc = subprocess.Popen([*cmd, "--checkpoint-every", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not list(work.glob("segment-*.mp4")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no part was finished"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"the finished parts of film-colour.mp4 are kept in {work}; the same command again resumes" in err.decode()
    again = subprocess.run([*cmd, "--checkpoint-every", "0"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film-colour.mp4", "film.mp4"]


@pytest.mark.parametrize("checkpoint_s", [0.0, 1.0])
def test_an_avi_with_b_frames_keeps_its_length(engine, tmp_path, checkpoint_s, caplog):
    """An AVI has frame slots in decode order, no timestamps: with H.264's B-frames the decoded frames'
    pts went back and forth (1, 3, 2, 6, 5, ...), each step back was taken for a restart of the
    timestamps, and a 4 s clip came out 8 s long; in parts, frames were nudged.  The frame times are
    now FFmpeg's best effort (the dts where the pts are the faulty ones)."""
    src = make_video(tmp_path / "b.avi", frames=96, gop=12, preset="medium", audio=None)
    with av.open(str(src)) as c:
        raw = [f.pts for f in c.decode(video=0)]
    assert raw != sorted(raw)  # (the frames' own pts out of order: the case)
    with caplog.at_level(logging.WARNING, logger="streamcolor.video"):
        dst = streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=engine, progress=False,
                                         options=VideoOptions(render_size=64, checkpoint_s=checkpoint_s))
    times = read_video(dst)["times"]
    assert len(times) == 96 and times == sorted(times)
    assert times[-1] - times[0] == pytest.approx(95 / RATE, abs=1.01 / RATE)  # (FFmpeg's guess: one slot off at most)
    assert "start again" not in caplog.text and "nudged" not in caplog.text


def test_an_avi_or_a_short_video_takes_one_pass(engine, long_clip, tmp_path, monkeypatch):
    """No parts where they cannot be joined (AVI: frame slots, no timestamps) or are not needed."""
    from streamcolor.video import job

    made = []
    real = job.segment_folder
    monkeypatch.setattr(job, "segment_folder", lambda *a, **k: made.append(a) or real(*a, **k))
    streamcolor.colorize_video(long_clip, tmp_path / "out.avi", engine=engine, options=VideoOptions(**PARTS),
                               progress=False)
    streamcolor.colorize_video(long_clip, tmp_path / "out.mkv", engine=engine,
                               options=VideoOptions(render_size=64, checkpoint_s=5.0), progress=False)  # (4 s)
    assert made == []
    streamcolor.colorize_video(long_clip, tmp_path / "out2.mkv", engine=engine, options=VideoOptions(**PARTS),
                               progress=False)
    assert len(made) == 1 and len(read_video(tmp_path / "out2.mkv")["l"]) == 96
    with pytest.raises(ValueError, match="checkpoint_s"):
        VideoOptions(checkpoint_s=-1)


def test_frames_go_to_the_engine_at_its_video_batch_size(counted, tmp_path):
    """On a CPU the video job calls the engine two frames at a time (Engine.video_batch_size, less than
    the preferred batch of photo jobs: the encoder shares the caches); an explicit batch_size wins."""
    from streamcolor.engines.base import CPU_BATCH, CPU_VIDEO_BATCH

    assert counted.video_batch_size == CPU_VIDEO_BATCH < counted.preferred_batch_size == CPU_BATCH
    src = make_video(tmp_path / "clip.mp4", frames=9, size=(96, 64))
    streamcolor.colorize_video(src, tmp_path / "a.mp4", engine=counted, **FAST)
    assert counted.colorized == 9 and counted.calls == 5  # 2+2+2+2+1
    counted.calls = counted.colorized = 0
    streamcolor.colorize_video(src, tmp_path / "b.mp4", engine=counted, batch_size=4, **FAST)
    assert counted.colorized == 9 and counted.calls == 3  # 4+4+1


def test_an_engine_on_a_gpu_takes_video_at_its_preferred_batch(engine):
    """``Engine.on_gpu`` is the one switch: a GPU engine's video batch is its preferred batch."""

    class OnGpu(CountingEngine):
        on_gpu = True
        preferred_batch_size = 48

    gpu = OnGpu(engine)
    assert gpu.video_batch_size == 48 and not engine.on_gpu and engine.video_batch_size == 2


def test_on_a_gpu_a_videos_last_batch_runs_at_the_full_batch(counted, tmp_path):
    """On a GPU the short last batch is filled up to the batch size (one compiled shape per video,
    whatever its length); the frames written are still the source's, each with its own colour."""

    class OnGpu(CountingEngine):
        on_gpu = True

    gpu = OnGpu(counted.real)
    src = make_video(tmp_path / "clip.mp4", frames=9, size=(96, 64))
    def frames(dst: Path) -> list[np.ndarray]:
        with av.open(str(dst)) as c:
            return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]

    # lossless (crf 0): x264 at crf 18 does not give the same bytes twice here when the decoder runs on
    # several threads (1-2 levels a frame apart from run to run), which would hide what is compared
    on_cpu = frames(streamcolor.colorize_video(src, tmp_path / "cpu.mp4", engine=counted, batch_size=4, quality=0,
                                               **FAST))
    on_gpu = frames(streamcolor.colorize_video(src, tmp_path / "gpu.mp4", engine=gpu, batch_size=4, quality=0, **FAST))
    assert counted.calls == gpu.calls == 3
    assert counted.colorized == 9 and gpu.colorized == 12  # 4+4+1 on a CPU, 4+4+(1 filled up to 4) on a GPU
    assert len(on_gpu) == len(on_cpu) == 9
    assert max(np.abs(a - b).mean() for a, b in zip(on_gpu, on_cpu)) < 0.5  # the same colours, frame by frame


def test_packets_held_before_the_first_frame_are_bounded(engine, tmp_path, monkeypatch):
    """Audio that comes before the first video frame waits for the encoder's first frame (the
    output's header); past a bound the video stream is taken as damaged: a clear error, not
    memory that grows with the file."""
    from streamcolor.video import pipeline

    src = make_video(tmp_path / "clip.mkv", frames=12, pts=[6 + i for i in range(12)], time_base=Fraction(1, RATE))
    monkeypatch.setattr(pipeline, "PENDING_LIMIT_BYTES", 1)
    with pytest.raises(streamcolor.InputError, match="no video frame could be decoded before"):
        streamcolor.colorize_video(src, tmp_path / "out.mkv", engine=engine, **FAST)
    assert leftovers(tmp_path, src) == []
    monkeypatch.undo()
    dst = streamcolor.colorize_video(src, tmp_path / "out.mkv", engine=engine, **FAST)
    assert read_video(dst)["packets"]["audio1"] == read_video(src)["packets"]["audio1"]


def test_a_container_that_cannot_hold_the_streams_is_named_with_them(engine, tmp_path):
    """Ogg holds no H.264 and no AAC: codec auto encodes VP8 (or Theora) into it, and a copied AAC
    track it cannot hold is named in the error (FFmpeg itself says only "Invalid argument")."""
    silent = make_video(tmp_path / "silent.mp4", frames=8, audio=None)
    dst = streamcolor.colorize_video(silent, tmp_path / "out.ogv", engine=engine, **FAST)
    assert len(read_video(dst)["l"]) == 8
    with_aac = make_video(tmp_path / "aac.mp4", frames=8)
    with pytest.raises(streamcolor.OutputError, match=r"the ogv format may not hold .* video, aac audio: write \.mkv"):
        streamcolor.colorize_video(with_aac, tmp_path / "aac.ogv", engine=engine, **FAST)
    assert leftovers(tmp_path, silent, dst, with_aac) == []


def test_the_default_name_beside_a_users_file_is_replaced_by_the_next_call(counted, tmp_path):
    """`colorize_video(src)` where src-colour.mp4 is a file of yours writes src-colour~2.mp4; each later
    call wrote another copy (~3, ~4...): a numbered name was taken only when free.  It now replaces its own."""
    src = make_video(tmp_path / "film.mp4", frames=8)
    (tmp_path / "film-colour.mp4").write_bytes(b"mine")
    for _ in range(2):
        assert streamcolor.colorize_video(src, engine=counted, **FAST) == tmp_path / "film-colour~2.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film-colour.mp4", "film-colour~2.mp4", "film.mp4"]
    assert (tmp_path / "film-colour.mp4").read_bytes() == b"mine"


def test_a_stream_the_output_cannot_finish_with_is_refused_before_the_work(counted, tmp_path):
    """PCM audio whose packets MP4 takes one by one but not at the end of the file ("Invalid argument"
    from the trailer): the whole video was colorized, then lost.  A trial file of the header, the first
    packets and the trailer finds it up front; the same source into .mkv is fine."""
    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=RATE)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=AUDIO_RATE)  # (stereo)
        for i in range(24):
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 9, np.uint8), format="rgb24")))
        out.mux(v.encode())
        for k in range(0, AUDIO_RATE, 1024):  # (mono float samples given to the stereo 16-bit encoder)
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = AUDIO_RATE, k
            out.mux(a.encode(sound))
        out.mux(a.encode())
    with pytest.raises(ItemOutputError, match="mp4 format cannot finish a file that holds the copied pcm_s16le audio"):
        streamcolor.colorize_video(src, tmp_path / "out.mp4", engine=counted, **FAST)
    assert counted.colorized == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["pcm.mkv"]
    assert streamcolor.colorize_video(src, tmp_path / "out.mkv", engine=counted, **FAST).is_file()


def test_timestamps_that_start_again_are_placed_after_the_earlier_frames(engine, tmp_path, caplog):
    """Two MPEG-TS clips joined byte for byte: the second's timestamps start again.  Each of its
    frames was nudged one tick after the previous one, so 2 s of picture played in 0.2 ms; now the
    second clip follows the first, a frame apart, and the output lasts as long as both.  Its audio
    starts again too, and follows on the same way (its decode times going back, the muxer refused
    the first packet of the second clip: "cannot write a copied audio packet", the video failed)."""

    def ts_clip(path: Path, n: int) -> bytes:
        with av.open(str(path), "w", format="mpegts") as out:
            s = out.add_stream("libx264", rate=10)
            s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
            a = out.add_stream("aac", rate=AUDIO_RATE)
            a.layout = "mono"
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 12 % 256, np.uint8), format="rgb24")
                for packet in s.encode(frame):
                    out.mux(packet)
            for packet in s.encode():
                out.mux(packet)
            for k in range(0, n * AUDIO_RATE // 10, 1024):
                sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                sound.sample_rate, sound.pts = AUDIO_RATE, k
                out.mux(a.encode(sound))
            out.mux(a.encode())
        return path.read_bytes()

    joined = tmp_path / "joined.ts"
    joined.write_bytes(ts_clip(tmp_path / "a.ts", 20) + ts_clip(tmp_path / "b.ts", 20))
    with caplog.at_level(logging.WARNING, logger="streamcolor"):
        dst = streamcolor.colorize_video(joined, tmp_path / "out.mp4", engine=engine, render_size=64, progress=False)
    with av.open(str(dst)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == 40 and all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] - times[0] == pytest.approx(3.9, abs=0.01)  # 40 frames at 10 fps (was about 1.9)
    assert "the timestamps start again at frame 20" in caplog.text and "nudged" not in caplog.text
    assert "the copied audio start again too" in caplog.text
    sound = read_video(dst)["packet_times"]["audio1"]
    assert sound == sorted(sound) and sound[-1] == pytest.approx(times[-1], abs=0.2)  # (in step with the picture)
    # Asked for parts, such a video cannot be cut and found again by time (the second clip's keyframe
    # comes before the first's): it takes the single pass (the parts kept only the first clip's frames).
    with caplog.at_level(logging.INFO, logger="streamcolor"):
        dst = streamcolor.colorize_video(joined, tmp_path / "parts.mp4", engine=engine, progress=False,
                                         options=VideoOptions(render_size=64, checkpoint_s=0.5))
    assert "timestamps start again; colorized in one pass" in caplog.text
    with av.open(str(dst)) as c:
        assert len([f.time for f in c.decode(video=0)]) == 40


def _with_chapters(src: Path, dst: Path) -> Path:
    """``src`` remuxed with two chapters (as HandBrake or yt-dlp --embed-chapters write them: the MP4
    muxer adds a chapter text track, which FFmpeg reads back as a bin_data data stream)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        out.set_chapters([{"id": 1, "start": 0, "end": 500, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "One"}},
                          {"id": 2, "start": 500, "end": 1000, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "Two"}}])
    return dst


def test_an_mp4_with_chapters_is_colorized_into_mp4_with_its_chapters(counted, tmp_path):
    """The chapter text track was copied as a data stream that the MP4 muxer refused: the default
    output of such a file failed ("cannot write a copied audio packet")."""
    src = _with_chapters(make_video(tmp_path / "plain.mp4", frames=12, size=(64, 48)), tmp_path / "film.mp4")
    with av.open(str(src)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "data"] and len(c.chapters()) == 2
    for name in ("film-colour.mp4", "film.mov", "film.mkv"):
        out = streamcolor.colorize_video(src, tmp_path / name, engine=counted, options=VideoOptions(render_size=64))
        with av.open(str(out)) as c:
            assert [ch["metadata"]["title"] for ch in c.chapters()] == ["One", "Two"], name
            assert c.streams.video[0].frames in (0, 12) and c.streams.audio


def test_an_input_its_encoder_refuses_fails_alone(tmp_path, caplog):
    """x264 refuses a frame 20000 wide: that input failed the whole run (exit 2, "check --preset,
    --crf and --pix-fmt"), the next one never done; now it fails alone, said as the video's."""
    from click.testing import CliRunner

    from streamcolor.cli import cli

    wide = make_video(tmp_path / "wide.mkv", frames=2, size=(20000, 16), codec="ffv1", pix_fmt="yuv444p", audio=None)
    plain = make_video(tmp_path / "plain.mp4", frames=4, size=(64, 48))
    res = CliRunner().invoke(cli, ["video", str(wide), str(plain), "-o", str(tmp_path / "out"), "-r", "64",
                                   "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "libx264 does not take this video (20000x16" in caplog.text + res.output, res.output
    assert (tmp_path / "out" / "plain-colour.mp4").is_file()
    res = CliRunner().invoke(cli, ["video", str(plain), "-o", str(tmp_path / "x.avi"), "--codec", "mjpeg",
                                   "-r", "64", "--no-progress"])
    assert res.exit_code == 2 and "try --pix-fmt yuvj420p" in caplog.text + res.output, res.output


def test_a_fifo_whose_name_says_nothing_is_refused_at_once(tmp_path):
    """Naming its output opened the FIFO to read its header: the run waited for a writer forever."""
    fifo = tmp_path / "scan0001"
    os.mkfifo(fifo)
    png = tmp_path / "ok.png"
    Image.fromarray(np.full((48, 64), 128, np.uint8)).save(png)
    for args in (["image", str(png), str(fifo), "-o", str(tmp_path / "out")], ["video", str(fifo)]):
        res = subprocess.run([sys.executable, "-m", "streamcolor", *args, "-r", "64"], capture_output=True,
                             timeout=120)
        assert res.returncode == 1 and b"not a regular file (a FIFO)" in res.stderr, res.stderr
    assert (tmp_path / "out" / "ok.png").is_file()


def test_a_rotation_the_container_cannot_keep_is_warned_of(counted, tmp_path, caplog):
    src = make_video(tmp_path / "phone.mp4", frames=4, size=(64, 48), rotate=90)
    with caplog.at_level(logging.WARNING):
        streamcolor.colorize_video(src, tmp_path / "phone.mkv", engine=counted, options=VideoOptions(render_size=64))
        assert "keeps no rotation" not in caplog.text
        streamcolor.colorize_video(src, tmp_path / "phone.avi", engine=counted, options=VideoOptions(render_size=64))
    assert "the avi format keeps no rotation" in caplog.text
