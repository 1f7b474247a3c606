"""The GPU path as a user runs it, exercised on the CPU: the shipped default U-Net
through the Keras engine on JAX (``--backend keras``), in a fresh process
with TensorFlow made unimportable, as on a GPU machine with only the ``jax``
extra.  The same engine class runs on the GPU; only the device differs.

One subprocess does everything (JAX compiles the U-Net once per shape, which
is the slow part): predictions against ONNX Runtime's float32 graph of the
same model, ``colorize_image``, ``colorize_video`` and ``streamcolor batch``
through the engine, and the engine's bf16 mode.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import importlib.abc, json, logging, sys
class NoTF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tf2onnx"):
            raise ImportError("TensorFlow is not installed here")
sys.meta_path.insert(0, NoTF())
logging.basicConfig(level=logging.INFO)
from pathlib import Path
import numpy as np
from click.testing import CliRunner
import streamcolor
from streamcolor.cli import cli
from streamcolor.engines import load_engine
from streamcolor.video import VideoOptions, colorize_video, make_clip, video_size
work = Path(sys.argv[1])
out = {}
keras_eng = load_engine("default", "keras")
onnx_eng = load_engine("default", "onnx", device="cpu")
import keras
out["backend"] = keras.backend.backend()
out["name"] = keras_eng.name
out["batch"] = keras_eng.preferred_batch_size
out["video_batch"] = keras_eng.video_batch_size
out["onnx_video_batch"] = onnx_eng.video_batch_size
rng = np.random.default_rng(0)
from streamcolor.colorize import network_input, pixels_to_l
from streamcolor.image_io import read_image
photo = pixels_to_l(read_image(Path(streamcolor.__file__).parent / "samples" / "chenonceau-bw.jpg").pixels)
l = np.stack([network_input(photo, 160, 32), network_input(photo[:, ::-1], 160, 32)])
a, b = keras_eng.predict(l), onnx_eng.predict(l)
out["shape"] = list(a.shape)
out["max_diff"] = float(np.abs(a - b).max())
out["mean_diff"] = float(np.abs(a - b).mean())
out["ab_scale"] = float(np.abs(b).mean())
# a GPU's padded batches (forced here): 3 rows as chunks of 2 + 1, then as one chunk padded to 4
from streamcolor.engines import keras_engine
l3 = np.concatenate([l, l[:1]])
plain = keras_eng.predict(l3)
out["pad_on_cpu"] = keras_eng.pad_batches
keras_eng.pad_batches = True
keras_eng.chunk_rows = 2
chunked = keras_eng.predict(l3)
keras_eng.chunk_rows = 4
padded = keras_eng.predict(l3)
keras_eng.chunk_rows = 1  # six chunks: more than keras_engine.MAX_IN_FLIGHT at once
streamed = keras_eng.predict(np.concatenate([l3, l3]))
out["in_flight"] = keras_engine.MAX_IN_FLIGHT
out["stream_diff"] = float(np.abs(streamed - np.concatenate([plain, plain])).max())
keras_eng.pad_batches, keras_eng.chunk_rows = False, keras_engine.GPU_BATCH
out["pad_shapes"] = [list(chunked.shape), list(padded.shape)]
# copies in 16 bits, split over two threads (a GPU's copy settings; here the same code on the CPU device)
keras_eng.transfer, keras_eng.copy_threads = "bfloat16", 2
keras_engine.MIN_COPY_PART = 1  # (these rows are small: split them all the same)
out["copy16_diff"] = float(np.abs(keras_eng.predict(l3) - plain).max())
import threading
out["copy_threads_seen"] = sum(t.name.startswith("streamcolor-copy") for t in threading.enumerate())
out["bad_settings"] = []
for name, bad in [("transfer", "int8"), ("copy_threads", 0), ("copy_threads", 2.5), ("chunk_rows", 0)]:
    try:
        setattr(keras_eng, name, bad)
    except ValueError as exc:
        out["bad_settings"].append(str(exc))
keras_eng.transfer, keras_eng.copy_threads = "float32", 1
out["pad_diff"] = max(float(np.abs(plain - chunked).max()), float(np.abs(plain - padded).max()))
bf16 = load_engine("default", "keras", precision="bf16")
out["bf16_name"] = bf16.name
out["bf16_diff"] = float(np.abs(bf16.predict(l) - b).max())
# image, video and batch at render 160 on 4:3 pictures: the network input is the predictions' (128, 160),
# so JAX compiles no new input size for them (each costs seconds on the CPU)
gray = (rng.random((120, 160)) * 255).astype("uint8")
rgb = streamcolor.colorize_image(gray, engine=keras_eng, render_size=160)
out["image_shape"] = list(rgb.shape)
clip = make_clip(work / "clip.mp4", 160, 120, 12)
dst = colorize_video(clip, work / "clip-colour.mp4", engine=keras_eng, progress=False, render_size=160)
out["video_size"] = list(video_size(dst))
import av
with av.open(str(dst)) as c:
    out["video_frames"] = sum(1 for _ in c.decode(video=0))
    out["video_codec"] = c.streams.video[0].codec_context.name
(work / "photos").mkdir()
from PIL import Image
for i in range(3):
    Image.fromarray(gray).save(work / "photos" / f"p{i}.jpg")
res = CliRunner().invoke(cli, ["batch", str(work / "photos"), "-o", str(work / "out"), "--backend", "keras",
                               "-r", "160", "--no-progress"])
out["batch_exit"] = res.exit_code
out["batch_files"] = sorted(p.name for p in (work / "out").glob("*.jpg"))
from streamcolor.bench import load_engines
bench_engines, bench_notes = load_engines("default", "cpu", keras=True)
out["bench_engines"], out["bench_notes"] = sorted(bench_engines), bench_notes
out["tf_loaded"] = "tensorflow" in sys.modules
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory) -> dict:
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed (the jax extra)")
    work = tmp_path_factory.mktemp("keras-jax")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}  # the engine must pick JAX itself
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", STREAMCOLOR_CACHE=str(work / "cache"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(work)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "log": proc.stderr, "work": work}


def test_keras_engine_runs_the_default_unet_on_jax(jax_run):
    assert jax_run["backend"] == "jax" and not jax_run["tf_loaded"]
    assert jax_run["name"] == "keras-cpu-fp32:streamcolor-unet-lite0-v2"
    assert jax_run["batch"] == 8  # on a GPU: keras_engine.GPU_BATCH
    assert jax_run["video_batch"] == jax_run["onnx_video_batch"] == 2  # on a GPU: the preferred batch
    h, w = jax_run["shape"][1:3]
    assert jax_run["shape"][0] == 2 and jax_run["shape"][3] == 2 and max(h, w) == 160 // 4  # a quarter of the input
    # the same network as the shipped ONNX graph (whose weights are stored float16): equal to rounding,
    # far below the colour it predicts on a real photo
    assert jax_run["ab_scale"] > 0.01, jax_run
    assert jax_run["mean_diff"] < 0.05 * jax_run["ab_scale"], (jax_run["mean_diff"], jax_run["ab_scale"])
    assert jax_run["max_diff"] < 0.05, jax_run["max_diff"]  # 6 a*b* units at the very worst pixel


def test_bench_full_times_keras_for_the_default_unet(jax_run):
    """`streamcolor bench --full` said "Keras: the bundle has no .keras files" for the shipped U-Net,
    which the Keras engine runs (it rebuilds the network); it is timed now."""
    assert "keras-fp32" in jax_run["bench_engines"], jax_run["bench_notes"]
    assert not any(n.startswith("Keras:") for n in jax_run["bench_notes"]), jax_run["bench_notes"]


def test_keras_engine_keeps_jax_compiled_programs_between_runs(jax_run):
    """JAX compiles per input shape in every process (about 20 s a batch size on the H200): the
    engine keeps the compiled programs in streamcolor's cache folder, for the next run."""
    kept = list((jax_run["work"] / "cache" / "jax").iterdir())
    assert any(p.name.startswith("jit_") for p in kept), kept


def test_keras_engine_pads_batches_into_few_compiled_sizes():
    from streamcolor.engines.keras_engine import GPU_BATCH, batch_bucket

    assert [batch_bucket(n) for n in (1, 2, 3, 5, 8, 9, 33, 63, 64)] == [1, 2, 4, 8, 8, 16, 64, 64, 64]
    assert len({batch_bucket(n) for n in range(1, GPU_BATCH + 1)}) == 7
    assert batch_bucket(3, cap=4) == 4 and batch_bucket(1, cap=1) == 1
    for bad in (0, GPU_BATCH + 1):
        with pytest.raises(ValueError, match="1 to 64 rows"):
            batch_bucket(bad)


def test_keras_engine_padded_batches_give_the_same_colours(jax_run):
    """On a GPU a batch runs in chunks of at most GPU_BATCH rows, each padded to a bucket size:
    the rows a caller gets back are the ones it would get unpadded.  On a CPU nothing is padded."""
    assert jax_run["pad_on_cpu"] is False
    assert jax_run["pad_shapes"][0] == jax_run["pad_shapes"][1] == [3, *jax_run["shape"][1:]]
    assert jax_run["pad_diff"] < 1e-5, jax_run["pad_diff"]
    assert jax_run["in_flight"] < 6 and jax_run["stream_diff"] < 1e-5, jax_run["stream_diff"]


def test_keras_engine_bf16_stays_close_to_fp32(jax_run):
    assert jax_run["bf16_name"] == "keras-cpu-bf16:streamcolor-unet-lite0-v2"
    assert jax_run["bf16_diff"] < 0.1, jax_run["bf16_diff"]
    assert jax_run["bf16_diff"] > jax_run["max_diff"]  # it did compute in 16 bits


def test_keras_engine_serves_image_video_and_batch(jax_run):
    assert jax_run["image_shape"] == [120, 160, 3]
    assert jax_run["video_size"] == [160, 120] and jax_run["video_frames"] == 12
    assert jax_run["batch_exit"] == 0, jax_run["log"][-3000:]
    assert jax_run["batch_files"] == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_codec_auto_says_what_it_chose(jax_run):
    """--codec auto (now the default) logs its choice: NVENC on a GPU machine, x264 with the reason elsewhere."""
    assert jax_run["video_codec"] == "h264"  # what either encoder writes
    assert ("codec='auto': encoding with h264_nvenc on the GPU" in jax_run["log"]
            or "; encoding with libx264 on the CPU" in jax_run["log"]), jax_run["log"][-2000:]


def test_keras_engine_copies_in_16_bits_over_threads(jax_run):
    """``transfer="bfloat16"`` with two ``copy_threads``: half the bytes to copy, the rows cast and copied
    in parallel and joined on the device; the colours move by the input's bf16 rounding only.  A dtype
    it cannot copy in, or a count that is not a whole number >= 1, is refused when set, naming the setting."""
    assert 0 < jax_run["copy16_diff"] < 0.02, jax_run["copy16_diff"]  # 2.5 a*b* units at the worst pixel
    # the rows went to the copy pool, which exists only for a split (its threads start as work
    # waits for them, so a quick first part can leave the second to the same thread)
    assert 1 <= jax_run["copy_threads_seen"] <= 2, jax_run["copy_threads_seen"]
    transfer, *counts = jax_run["bad_settings"]
    assert "int8" in transfer and "bfloat16" in transfer
    assert [c.split()[0] for c in counts] == ["copy_threads", "copy_threads", "chunk_rows"], counts
