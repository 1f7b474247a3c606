"""The training side end to end on a tiny set the tests make themselves:
prepare -> fit -> stop -> resume -> eval -> export -> ONNX == Keras, plus the
bad inputs (unreadable files, all-gray sets, a checkpoint of another shape).

The extractor is the real EfficientNet-Lite0 (its shipped ImageNet weights);
examples are 64 x 64 so the whole module stays well under two minutes on
two CPU cores.  Runs on whatever Keras backend is set (``KERAS_BACKEND=jax
pytest tests/test_trainer.py``); one test also runs training in a
subprocess on JAX with TensorFlow made unimportable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from streamcolor.engines import lab, load_engine  # noqa: E402
from streamcolor.trainer.data import (DataError, PrepareOptions, ShardBatches, ShardSet, keras_dataset,  # noqa: E402
                          prepare_shards)
from streamcolor.trainer.evaluate import EvalOptions, evaluate  # noqa: E402
from streamcolor.trainer.train import (CheckpointMismatch, FitOptions, build_model, fit, latest_checkpoint,  # noqa: E402
                           save_checkpoint)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
OPTS = PrepareOptions(size=SIZE, crops_per_photo=2, shard_size=8, val_fraction=0.15, workers=2)
FIT = FitOptions(batch_size=4, checkpoint_every=2, log_every=1, val_examples=8, sample_images=2)
ON_TF = keras.backend.backend() == "tensorflow"


def colour_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A colourful uint8 RGB picture: a random two-colour gradient with discs and bars."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.random(3), rng.random(3)
    t = (np.cos(rng.uniform(0, np.pi)) * x / w + np.sin(rng.uniform(0, np.pi)) * y / h)[..., None]
    img = c0 * (1 - t / 2) + c1 * (t / 2)
    for _ in range(5):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(6, max(8, h // 3))
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.random(3)
    img[:, int(rng.integers(0, w - 10)):][:, :6] = rng.random(3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_jpg(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


@pytest.fixture(scope="module")
def extractor():
    from streamcolor.trainer.extractors import build_extractor

    return build_extractor("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 colour photos in a folder (one nested), a zip with 2 more, a
    duplicate, a gray photo and a text file posing as a JPEG."""
    d = tmp_path_factory.mktemp("photos")
    for i in range(12):
        write_jpg(d / ("sub" if i % 4 == 0 else ".") / f"p{i:02d}.jpg", colour_photo(72 + 8 * (i % 5), 96 + 6 * i, i))
    (d / "copy-of-p01.jpg").write_bytes((d / "p01.jpg").read_bytes())
    write_jpg(d / "gray.jpg", np.repeat(colour_photo(80, 100, 99).mean(-1, keepdims=True), 3, -1).astype(np.uint8))
    (d / "notes.jpg").write_text("not an image")
    with zipfile.ZipFile(d / "more.zip", "w") as zf:
        for i in (20, 21):
            ok, buf = cv2.imencode(".png", colour_photo(90, 90, i))
            zf.writestr(f"inner/z{i}.png", buf.tobytes())
    return d


@pytest.fixture(scope="module")
def shards(photos, extractor, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = prepare_shards([photos], out, options=OPTS, extractor=extractor)
    return out, report


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    """A run stopped at step 4, then resumed to step 7."""
    run = tmp_path_factory.mktemp("run")
    first = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, "steps": 4}))
    ckpt4 = json.loads((latest_checkpoint(run) / "state.json").read_text())
    iters4 = int(np.load(latest_checkpoint(run) / "optimizer.npz")["v0000"])
    second = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, "steps": 7}))
    return run, first, second, ckpt4, iters4


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    """The resumed run exported; on another Keras backend the export runs in a
    TensorFlow subprocess (ONNX conversion needs it), the rest stays here."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    if ON_TF:
        from streamcolor.trainer.export import ExportOptions, export_bundle

        report = export_bundle(trained[0], out, options=ExportOptions(name="tiny"))
        return out, report.max_diff
    pytest.importorskip("tensorflow")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "streamcolor.trainer.cli", "-q", "export", str(trained[0]), str(out),
                           "--name", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "model.json").read_text())["export_check_max_abs_diff"]


_JAX_SCRIPT = """
import importlib.abc, json, os, sys
class NoTF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tf2onnx"):
            raise ImportError("TensorFlow is not installed here")
sys.meta_path.insert(0, NoTF())
os.environ["KERAS_BACKEND"] = "jax"
from streamcolor.trainer.train import FitOptions, fit
shards, run = sys.argv[1:3]
o = dict(batch_size=4, checkpoint_every=2, log_every=1, val_examples=4, sample_images=1)
a = fit(shards, run, options=FitOptions(steps=2, **o))
b = fit(shards, run, options=FitOptions(steps=3, mixed_precision=True, **o))
import keras
assert "tensorflow" not in sys.modules
print(json.dumps([keras.backend.backend(), a.step, b.resumed_from, b.step]))
"""


@pytest.fixture(scope="module")
def jax_job(shards, tmp_path_factory):
    """Training on JAX with TensorFlow made unimportable, in a subprocess
    started early so it overlaps the other tests (on a copy of the shards)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("jax") is None:
        yield None
        return
    root = tmp_path_factory.mktemp("jax")
    shutil.copytree(shards[0], root / "shards")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-c", _JAX_SCRIPT, str(root / "shards"), str(root / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    yield proc, root / "run"
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


# --------------------------------------------------------------------------- prepare


def test_prepare_counts_splits_and_meta(shards, jax_job):  # jax_job: start it early
    out, rep = shards
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and meta["embed_dim"] == 1000 and meta["extractor_size"] == 224
    assert meta["size"] == SIZE and meta["extractor"] == "efficientnet_lite0"
    # 12 folder photos + 2 in the zip; the copy is a duplicate, gray.jpg is gray, notes.jpg unreadable.
    assert rep.counts["train"]["photos"] + rep.counts["val"]["photos"] == 14
    assert rep.counts["train"]["examples"] + rep.counts["val"]["examples"] == 2 * 14
    assert rep.counts["val"]["examples"] >= 2 and rep.counts["train"]["examples"] >= 20
    plan = json.loads((out / "plan.json").read_text())
    assert any(e["key"].endswith("more.zip::inner/z20.png") for es in plan.values() for e in es)
    train, val = ShardSet(out, "train"), ShardSet(out, "val")
    assert len(train) == rep.counts["train"]["examples"]
    x, ab = train.take([0, len(train) - 1])
    assert x["l"].shape == (2, SIZE, SIZE, 1) and x["embedding"].shape == (2, 1000) and ab.shape == (2, SIZE, SIZE, 2)
    assert x["l"].dtype == np.float32 and -1 <= x["l"].min() and x["l"].max() <= 1
    assert np.abs(ab).max() <= 1 and np.abs(ab).mean() > 0.02  # colourful
    # Split by photo: no photo in both splits.
    keys = {s: {e["key"] for n, es in plan.items() if n.startswith(s) for e in es} for s in ("train", "val")}
    assert not keys["train"] & keys["val"]
    assert len(val) == rep.counts["val"]["examples"]


def test_prepare_reports_unreadable_gray_and_duplicates(shards):
    _, rep = shards
    assert [u["key"].rsplit("/", 1)[-1] for u in rep.unreadable] == ["notes.jpg"]
    assert "decodable" in rep.unreadable[0]["error"]
    assert [g.rsplit("/", 1)[-1] for g in rep.gray] == ["gray.jpg"]
    assert len(rep.duplicates) == 1 and {"copy-of-p01.jpg", "p01.jpg"} & {rep.duplicates[0].rsplit("/", 1)[-1]}


def test_prepare_rerun_resumes_and_refuses_other_options(shards, photos, extractor):
    out, first = shards
    (out / "val-00000" / "info.json").unlink()  # as if the process died while writing this shard
    again = prepare_shards([photos], out, options=OPTS, extractor=extractor)
    assert again.shards_written == 1 and again.shards_skipped == first.shards_written - 1
    assert again.counts == first.counts
    with pytest.raises(DataError, match="other options"):
        prepare_shards([photos], out, options=PrepareOptions(size=32), extractor=extractor)


def test_a_zip_member_named_in_utf8_without_the_flag_is_read(tmp_path):
    """Info-ZIP stores a UTF-8 name without the zip's UTF-8 flag; the listing decodes it as UTF-8
    ("é 日本.jpg"), while Python's zipfile files it under its CP437 reading: looked up by that name,
    the member was "unreadable".  It is read by its index."""
    from streamcolor.trainer.data import list_photos

    name, stand_in = "é 日本.jpg", "x" * len("é 日本".encode()) + ".jpg"
    assert len(name.encode()) == len(stand_in)
    path = tmp_path / "photos.zip"
    jpg = cv2.imencode(".jpg", colour_photo(40, 60, seed=3)[:, :, ::-1])[1].tobytes()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(stand_in, jpg)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(stand_in.encode(), name.encode()))  # (in both headers; the flag stays unset)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [name.encode().decode("cp437")]  # what zipfile makes of it
    photos, problems = list_photos([path])
    assert problems == [] and [p.key for p in photos] == [f"photos.zip::{name}"]
    assert photos[0].read_bytes() == jpg


def test_prepare_all_gray_is_a_clear_error(tmp_path, extractor):
    for i in range(3):
        g = colour_photo(64, 64, i).mean(-1).astype(np.uint8)
        write_jpg(tmp_path / "in" / f"g{i}.jpg", np.dstack([g, g, g]))
    with pytest.raises(DataError, match=r"no usable colour photos among 3 files: 3 near-gray"):
        prepare_shards([tmp_path / "in"], tmp_path / "out", options=OPTS, extractor=extractor)


def test_prepare_counts_shard_folders_with_no_colour_photo_apart(tmp_path, extractor):
    """A shard whose photos are all near-gray is written (a rerun must not do it again) but holds no
    example: the splits' shard counts leave it out, and the report says how many there are."""
    for i, gray in enumerate((False, True, False)):
        rgb = colour_photo(64, 64, i)
        write_jpg(tmp_path / "in" / f"p{i}.jpg", np.dstack([rgb.mean(-1).astype(np.uint8)] * 3) if gray else rgb)
    options = PrepareOptions(size=SIZE, crops_per_photo=1, shard_size=1, val_fraction=0.0, workers=1)
    rep = prepare_shards([tmp_path / "in"], tmp_path / "out", options=options, extractor=extractor,
                         splits=("train",))
    assert rep.shards_written == 3 and rep.counts["train"]["shards"] == 2 and rep.shards_unused == 1
    again = prepare_shards([tmp_path / "in"], tmp_path / "out", options=options, extractor=extractor,
                           splits=("train",))
    assert (again.shards_written, again.shards_skipped, again.shards_unused) == (0, 3, 1)


def test_prepare_empty_or_unreadable_only(tmp_path, extractor):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no photos found"):
        prepare_shards([tmp_path / "empty"], tmp_path / "o1", options=OPTS, extractor=extractor)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="1 unreadable"):
        prepare_shards([tmp_path / "bad"], tmp_path / "o2", options=OPTS, extractor=extractor)
    # (meta.json said "complete": true over the empty shards, which fit then took)
    assert json.loads((tmp_path / "o2" / "meta.json").read_text())["complete"] is False
    with zipfile.ZipFile(tmp_path / "whole.zip", "w") as zf:  # a zip cut short: its reason, not only "no photos"
        zf.writestr("a.jpg", b"x" * 5000)
    (tmp_path / "cut.zip").write_bytes((tmp_path / "whole.zip").read_bytes()[:3000])
    with pytest.raises(DataError, match="no photos found .*cut.zip: unreadable archive: .*cut short"):
        prepare_shards([tmp_path / "cut.zip"], tmp_path / "o3", options=OPTS, extractor=extractor)


def test_prepare_follows_a_manifest_split(tmp_path, extractor):
    d = tmp_path / "coll"
    entries = []
    for i in range(4):
        write_jpg(d / "img" / f"m{i}.jpg", colour_photo(64, 80, 40 + i))
        entries.append({"file": f"img/m{i}.jpg", "split": "val" if i == 3 else "train", "license": "CC0"})
    (d / "manifest.json").write_text(json.dumps(entries))
    write_jpg(d / "img" / "unlisted.jpg", colour_photo(64, 64, 50))
    rep = prepare_shards([d], tmp_path / "out", extractor=extractor,
                         options=PrepareOptions(size=SIZE, crops_per_photo=0, workers=1))
    assert rep.counts["train"]["photos"] == 3 and rep.counts["val"]["photos"] == 1
    assert rep.counts["train"]["examples"] == 3  # crops_per_photo=0: one letterboxed example per photo


def test_batches_are_deterministic_per_epoch(shards):
    train = ShardSet(shards[0], "train")
    a = ShardBatches(train, 4, seed=3)
    b = ShardBatches(train, 4, seed=3)
    n = len(a)
    np.testing.assert_array_equal(a.at(1)[1], b.at(1)[1])
    np.testing.assert_array_equal(a.at(n + 2)[0]["l"], b.at(n + 2)[0]["l"])
    assert not np.array_equal(a.at(0)[1], a.at(n)[1])  # the next epoch is shuffled anew
    ds = keras_dataset(ShardBatches(train, 4, seed=3))
    assert len(ds) == n
    np.testing.assert_array_equal(ds[0][1], a.at(0)[1])
    ds.on_epoch_end()
    np.testing.assert_array_equal(ds[0][1], a.at(n)[1])


# --------------------------------------------------------------------------- fit


def test_fit_stops_and_resumes_step_optimizer_and_data(trained, shards):
    run, first, second, ckpt4, iters4 = trained
    assert (first.step, first.resumed_from, first.stopped_by) == (4, 0, "steps")
    assert ckpt4["step"] == 4 and ckpt4["position"] == 4 and iters4 == 4
    assert (second.step, second.resumed_from) == (7, 4)
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    assert state["step"] == 7 and state["position"] == 7
    assert int(np.load(latest_checkpoint(run) / "optimizer.npz")["v0000"]) == 7  # Adam's iteration counter
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,loss,val_loss,examples_per_s")
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 8))
    assert (run / "samples" / "step-00000004.png").is_file() and (run / "colorizer.keras").is_file()
    grid = cv2.imread(str(run / "samples" / "step-00000006.png"))
    assert grid.shape == (2 * SIZE, 3 * SIZE, 3)
    assert len(list((run / "checkpoints").glob("ckpt-*"))) == 3  # keep_checkpoints
    # The resumed run ends where an uninterrupted one does: same weights.
    quiet = {"checkpoint_every": 100, "val_examples": 0, "sample_images": 0}  # only the final checkpoint
    straight = fit(shards[0], run.parent / "straight", options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 7}))
    resumed = keras.saving.load_model(second.model, compile=False).get_weights()
    direct = keras.saving.load_model(straight.model, compile=False).get_weights()
    for r, d in zip(resumed, direct):
        np.testing.assert_allclose(r, d, atol=2e-4)


def test_an_interrupt_after_an_update_is_counted_and_the_log_keeps_one_row_per_step(shards, tmp_path, monkeypatch):
    """Ctrl-C can land after a batch's update and before it is counted: the checkpoint must
    still say how many updates its weights hold, or the resumed run trains that batch twice.
    Rows a killed run logged past its checkpoint, and a rerun of a finished fit, add no rows."""
    run = tmp_path / "run"
    quiet = {"checkpoint_every": 100, "val_examples": 0, "sample_images": 0, "log_every": 1}
    real, calls = keras.Model.train_on_batch, []

    def train_then_interrupt(self, *args, **kwargs):  # the real update, then a Ctrl-C on the third
        out = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(keras.Model, "train_on_batch", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 7}))
    monkeypatch.undo()
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    assert state["step"] == state["position"] == 3
    assert int(np.load(latest_checkpoint(run) / "optimizer.npz")["v0000"]) == 3
    with (run / "log.csv").open("a") as fh:  # what a run killed after step 5, before its checkpoint, left
        fh.write("4,0.5,0.1,,1.0,0.001,1.0\n5,0.6,0.1,,1.0,0.001,1.2\n")
    resumed = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 7}))
    again = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 7}))
    assert (resumed.resumed_from, resumed.step, again.step) == (3, 7, 7)
    # a rerun with nothing left to train (here even asked for fewer steps) keeps the run's figures and options
    before = json.loads((run / "run.json").read_text())
    fewer = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 5}))
    after = json.loads((run / "run.json").read_text())
    assert fewer.step == 7 and fewer.loss == before["loss"] is not None
    assert (after["loss"], after["val_loss"], after["options"]["steps"]) == (before["loss"], before["val_loss"], 7)
    steps = [int(r.split(",")[0]) for r in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 8))
    straight = fit(shards[0], tmp_path / "straight", options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 7}))
    for r, d in zip(keras.saving.load_model(resumed.model, compile=False).get_weights(),
                    keras.saving.load_model(straight.model, compile=False).get_weights()):
        np.testing.assert_allclose(r, d, atol=2e-4)


def test_fit_time_budget_stops_cleanly(trained, shards):
    run = trained[0]
    res = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, "steps": 100, "max_minutes": 1e-9}))
    assert res.stopped_by == "time" and res.step == 7 and res.checkpoint is not None


def test_fit_by_epochs_says_epochs_ended_it(trained, shards, tmp_path):
    """--epochs, the tighter of two limits, is named as what ended the run (it said "steps")."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    per_epoch = len(ShardBatches(ShardSet(shards[0], "train"), FIT.batch_size))
    quiet = {"checkpoint_every": 100, "val_examples": 0, "sample_images": 0}
    res = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 100,
                                                    "epochs": 8.5 / per_epoch}))
    assert (res.step, res.stopped_by) == (9, "epochs")
    run_json = json.loads((run / "run.json").read_text())
    assert (run_json["stopped_by"], run_json["status"]) == ("epochs", "finished")
    again = fit(shards[0], run, options=FitOptions(**{**FIT.__dict__, **quiet, "steps": 9, "epochs": 100.0}))
    assert (again.step, again.stopped_by) == (9, "steps")  # nothing left: the figures of the run are kept
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_learning_rate_schedules():
    from streamcolor.trainer.train import learning_rate

    assert learning_rate(FitOptions(lr=0.01), None) == 0.01
    cos = learning_rate(FitOptions(lr=0.01, lr_schedule="cosine", warmup_steps=2), 12)
    lrs = [float(keras.ops.convert_to_numpy(cos(s))) for s in (0, 2, 7, 12)]
    assert lrs[0] == 0 and abs(lrs[1] - 0.01) < 1e-7 and abs(lrs[2] - 0.005) < 1e-6 and lrs[3] < 1e-9
    with pytest.raises(ValueError, match="cosine schedule needs"):
        learning_rate(FitOptions(lr_schedule="cosine", max_minutes=1), None)


def test_checkpoint_of_another_shape_is_refused(shards, tmp_path):
    other = build_model(16)
    other.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    other.optimizer.build(other.trainable_variables)
    save_checkpoint(tmp_path, other, {"step": 3, "position": 3, "extractor": "tiny16"})
    with pytest.raises(CheckpointMismatch, match="embedding size 16"):
        fit(shards[0], tmp_path, options=FitOptions(**{**FIT.__dict__, "steps": 5}))


# --------------------------------------------------------------------------- export, eval


def test_export_bundle_onnx_matches_keras(bundle):
    import onnx

    from streamcolor.engines.base import ModelInfo
    from streamcolor.trainer.export import sha256_file

    out, max_diff = bundle
    info = ModelInfo.load(out)
    assert (info.name, info.extractor, info.extractor_size, info.embed_dim) == ("tiny", "efficientnet_lite0", 224, 1000)
    assert set(info.files) == {"colorizer.onnx", "extractor.onnx", "colorizer.keras", "extractor.keras"}
    assert all(sha256_file(out / n) == h for n, h in info.files.items())
    assert info.meta["training"]["step"] == 7
    col = onnx.load(str(out / "colorizer.onnx")).graph
    assert [i.name for i in col.input] == ["l", "embedding"] and [o.name for o in col.output] == ["ab"]
    ext = onnx.load(str(out / "extractor.onnx")).graph
    assert [i.name for i in ext.input] == ["l_ext"] and [o.name for o in ext.output] == ["embedding"]
    assert max(max_diff.values()) < 1e-4
    # Through the engines: the same input on ONNX Runtime and on Keras.
    rng = np.random.default_rng(1)
    l = lab.scale_l(np.stack([lab.rgb_to_l(colour_photo(64, 96, s)) for s in (7, 8)])[..., None])
    l = np.clip(l + rng.normal(0, 0.01, l.shape).astype(np.float32), -1, 1)
    with load_engine(out, "onnx", device="cpu") as o, load_engine(out, "keras") as k:
        np.testing.assert_allclose(o.predict(l), k.predict(l), atol=1e-4)


def test_ship_storage_halves_size_and_keeps_output(bundle, tmp_path):
    import onnx
    import onnxruntime as ort

    from streamcolor.trainer.export import store_weights_fp16

    src = bundle[0] / "colorizer.onnx"
    ship = tmp_path / "colorizer.onnx"
    onnx.save(store_weights_fp16(onnx.load(str(src))), str(ship))
    assert ship.stat().st_size < 0.55 * src.stat().st_size
    feeds = {"l": np.random.default_rng(0).uniform(-1, 1, (1, 32, 48, 1)).astype(np.float32),
             "embedding": np.random.default_rng(1).normal(0, 2, (1, 1000)).astype(np.float32)}
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    b = ort.InferenceSession(str(ship), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert a.shape == b.shape == (1, 32, 48, 2) and np.abs(a - b).max() < 5e-3


def test_eval_on_shards_and_photos_through_engines(bundle, shards, photos, tmp_path):
    with load_engine(bundle[0], "onnx", device="cpu") as o, load_engine(bundle[0], "keras") as k:
        rep_o = evaluate(o, shards[0])
        rep_k = evaluate(k, shards[0])
        photos_rep = evaluate(o, [photos], options=EvalOptions(size=64))
        none = evaluate(o, [photos], options=EvalOptions(size=64, saturation=0.0))  # a*b* x 0: the gray baseline
        more = evaluate(o, [photos], options=EvalOptions(size=64, saturation=2.0))
    assert abs(none.model["mse_ab"] - none.gray["mse_ab"]) < 1e-9
    assert more.model["colorfulness"] > photos_rep.model["colorfulness"]
    assert rep_o.images == ShardSet(shards[0], "val").__len__()
    assert abs(rep_o.model["mse_ab"] - rep_k.model["mse_ab"]) < 1e-5
    assert rep_o.gray["colorfulness"] < 1.0 < rep_o.truth["colorfulness"]
    assert 0 < rep_o.model["mse_ab"] < 1 and rep_o.gray["mse_ab"] > 0
    assert 0 <= rep_o.colorfulness_ratio and 5 < rep_o.model["psnr"] < 100
    # 14 colour photos; gray.jpg and notes.jpg skipped, the duplicate is evaluated as a photo.
    assert photos_rep.images == 15 and len(photos_rep.skipped) == 2
    md = photos_rep.to_markdown()
    assert "| metric | model | gray baseline (ab = 0) | truth |" in md and "colorfulness ratio" in md
    assert json.loads(photos_rep.to_json())["images"] == 15


# --------------------------------------------------------------------------- CLI


def test_cli_help_and_errors(tmp_path, shards):
    from click.testing import CliRunner

    from streamcolor.trainer.cli import train

    runner = CliRunner()
    res = runner.invoke(train, ["--help"])
    assert res.exit_code == 0 and all(v in res.output for v in ("prepare", "fit", "eval", "export"))
    for verb in ("prepare", "fit", "eval", "export"):
        res = runner.invoke(train, [verb, "--help"])
        assert res.exit_code == 0, res.output
    assert "--crops-per-photo" in runner.invoke(train, ["prepare", "--help"]).output
    assert "--max-minutes" in runner.invoke(train, ["fit", "--help"]).output
    res = runner.invoke(train, ["fit", str(shards[0]), "-r", str(tmp_path / "r")])
    assert res.exit_code != 0 and "--steps" in res.output
    for option, value in (("--lr", "nan"), ("--epochs", "inf"), ("--max-minutes", "nan"), ("--max-minutes", "0")):
        res = runner.invoke(train, ["fit", str(shards[0]), "-r", str(tmp_path / "r"), "--steps", "1", option, value])
        assert res.exit_code == 2 and option in res.output, (option, value, res.output)  # refused before any work
    assert not (tmp_path / "r").exists()
    res = runner.invoke(train, ["prepare", str(tmp_path), "-o", str(tmp_path / "s"), "--val-fraction", "nan"])
    assert res.exit_code == 2 and "--val-fraction" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(train, ["prepare", str(tmp_path / "empty"), "-o", str(tmp_path / "s")])
    assert res.exit_code == 1 and "no photos found" in res.output


def test_cli_is_a_module_and_an_entry_point():
    proc = subprocess.run([sys.executable, "-m", "streamcolor.trainer.cli", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and "prepare" in proc.stdout
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="streamcolor.commands") if ep.name == "train"]
    if eps:  # installed (pip install -e .): the main command can load the group
        assert eps[0].value == "streamcolor.trainer.cli:train"


# --------------------------------------------------------------------------- JAX (last: it ran alongside)


def test_fit_runs_on_jax_without_tensorflow(jax_job):
    if jax_job is None:
        pytest.skip("jax is not installed")
    proc, run = jax_job
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == ["jax", 2, 2, 3]
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    assert state["backend"] == "jax" and state["step"] == 3 and state["position"] == 3
    assert (run / "colorizer.keras").is_file() and (run / "samples" / "step-00000002.png").is_file()


def test_export_overwrite_replaces_only_a_bundle(trained, bundle, tmp_path):
    """--overwrite replaces an earlier bundle; never the run itself, a folder holding it, or a
    folder or file of the user's (refused before anything is removed)."""
    from streamcolor.trainer.export import ExportError, ExportOptions, export_bundle

    run = trained[0]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("important")
    (tmp_path / "file.onnx").write_text("a file of yours")
    over = ExportOptions(name="tiny", overwrite=True)
    for out, why in ((mine, "not a model bundle"), (tmp_path / "file.onnx", "is a file"), (run, "would replace"),
                     (run.parent, "would replace")):
        with pytest.raises(ExportError, match=why):
            export_bundle(run, out, options=over)
    assert (mine / "notes.txt").read_text() == "important" and (run / "checkpoints").is_dir()
    assert (tmp_path / "file.onnx").read_text() == "a file of yours"
    if ON_TF:  # (the ONNX conversion needs TensorFlow in this process)
        copy = tmp_path / "copy"
        shutil.copytree(bundle[0], copy)
        assert export_bundle(run, copy, options=over).path == copy and (copy / "model.json").is_file()


def test_train_fit_stopped_by_sigterm_saves_its_checkpoint_and_exits_143(shards, tmp_path):
    """`kill` (systemd, docker stop) stops training as Ctrl-C does, and the exit status says which
    signal it was (128 + 15), as a shell and a service manager expect; the same command resumes."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "streamcolor", "train", "fit", str(shards[0]), "-r", str(run), "--steps", "100000",
           "-b", "4", "--checkpoint-every", "1", "--log-every", "1", "--val-examples", "8", "--sample-images", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while latest_checkpoint(run) is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no checkpoint in 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "checkpoint saved" in err and "rerun the same command to resume" in err
    assert latest_checkpoint(run) is not None
