"""The U-Net colorizer (streamcolor.trainer.unet) end to end on a tiny set:
its encoder is the shipped Lite0 (same logits as the extractor), the training
model and the full model share weights, feature shards feed training, the
export is one graph that every engine runs at any multiple of 8, the int8
variant keeps its quality guard, and fine-tuning continues from a bundle
(``streamcolor train fit --init``), from the CLI as a user runs it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from streamcolor.engines import load_engine  # noqa: E402
from streamcolor.engines.base import EngineError  # noqa: E402
from streamcolor.trainer import unet as U  # noqa: E402
from streamcolor.trainer.data import PrepareOptions, ShardBatches, ShardSet, prepare_shards  # noqa: E402
from streamcolor.trainer.train import FitOptions, fit, load_trained  # noqa: E402
from tests.test_trainer import colour_photo, write_jpg  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("unet-photos")
    for i in range(10):
        write_jpg(d / f"p{i:02d}.jpg", colour_photo(80 + 8 * (i % 4), 96 + 8 * i, 100 + i))
    return d


@pytest.fixture(scope="module")
def shards(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unet-shards") / "s"
    # Random encoder weights keep the module fast; test_encoder_is_the_shipped_classifier covers the real ones.
    opts = PrepareOptions(size=SIZE, model="unet", crops_per_photo=3, shard_size=12, val_fraction=0.2, workers=2,
                          extractor_weights=None)
    prepare_shards([photos], out, options=opts)
    return out


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("unet-run") / "r"
    fit(shards, run_dir, options=FitOptions(steps=6, batch_size=4, checkpoint_every=3, val_examples=6,
                                            sample_images=2, unet_widths=(32, 24, 16)))
    return run_dir


@pytest.fixture(scope="module")
def shipped(run, tmp_path_factory) -> tuple[Path, dict]:
    """The run exported once as a ship bundle (float16-stored weights), with the export report."""
    from streamcolor.trainer.export import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("unet-bundle") / "b"
    rep = export_bundle(run, out, options=ExportOptions(ship=True))
    return out, {"files": rep.files, "max_diff": rep.max_diff}


def test_encoder_is_the_shipped_classifier():
    """One forward pass gives the extractor's own logits (the embedding) and the skips."""
    from streamcolor.trainer.extractors import build_extractor

    unet = U.build_unet(U.UNetConfig(widths=(16, 16, 16)))
    full = unet.full_model()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 1)).astype("float32")
    logits = keras.Model(full.input, full.get_layer("embedding").output).predict(x, verbose=0)
    ref = build_extractor("efficientnet_lite0").predict(x, verbose=0)
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    taps = unet.bottom_model().predict(np.zeros((1, 96, 160, 1), "float32"), verbose=0)
    assert {k: v.shape for k, v in taps.items()} == {"s4": (1, 24, 40, 24), "s8": (1, 12, 20, 40),
                                                      "s16": (1, 6, 10, 112)}
    assert full.predict(np.zeros((1, 96, 160, 1), "float32"), verbose=0).shape == (1, 24, 40, 2)


def test_encoder_taps_are_the_last_block_at_each_stride():
    assert U.encoder_taps("efficientnet_lite0") == (U.TAPS, U.TAP_CHANNELS)
    assert U.encoder_taps("efficientnet_lite2") == ({"s4": "block3", "s8": "block6", "s16": "block14"},
                                                    {"s4": 24, "s8": 48, "s16": 120})
    with pytest.raises(ValueError, match="unknown U-Net encoder"):
        U.encoder_taps("resnet50")


def test_a_unet_on_lite2_prepares_trains_and_exports(photos, tmp_path, monkeypatch):
    """The U-Net on another Lite variant, end to end with random encoder weights (Lite2's ImageNet
    weights do not ship); asking for its real weights without the file is one clear error."""
    from streamcolor.trainer import extractors as ex
    from streamcolor.trainer.export import ExportOptions, export_bundle

    opts = PrepareOptions(size=SIZE, model="unet", extractor="efficientnet_lite2", crops_per_photo=1, shard_size=12,
                          val_fraction=0.2, workers=2, extractor_weights=None)
    prepare_shards([photos], tmp_path / "s", options=opts)
    x, _ = ShardSet(tmp_path / "s", "train").take([0])
    assert {k: v.shape[-1] for k, v in x.items()} == {"s4": 24, "s8": 48, "s16": 120}
    fit(tmp_path / "s", tmp_path / "r", options=FitOptions(steps=2, batch_size=4, val_examples=2, sample_images=0,
                                                           unet_widths=(16, 16, 16)))
    assert json.loads((tmp_path / "r" / "run.json").read_text())["unet"]["encoder"] == "efficientnet_lite2"
    export_bundle(tmp_path / "r", tmp_path / "b", options=ExportOptions(ship=True))
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert meta["extractor"] == "efficientnet_lite2" and meta["unet"]["encoder"] == "efficientnet_lite2"
    engine = load_engine(tmp_path / "b", "onnx", device="cpu")
    assert engine.predict(np.zeros((1, 64, 96, 1), "float32")).shape == (1, 16, 24, 2)
    monkeypatch.setattr(ex, "LITE0_WEIGHTS", tmp_path / "nowhere" / "efficientnet_lite0.weights.h5")
    with pytest.raises(RuntimeError, match="convert_lite0 --variant lite2"):
        ex.build_extractor("efficientnet_lite2")


def test_only_the_decoder_trains_unless_asked():
    frozen = U.build_unet(U.UNetConfig(widths=(16, 16, 16)), weights=None)
    top = U.build_unet(U.UNetConfig(widths=(16, 16, 16), train_top=True), weights=None)
    n_frozen = sum(int(np.prod(w.shape)) for w in frozen.train_model().trainable_weights)
    n_top = sum(int(np.prod(w.shape)) for w in top.train_model().trainable_weights)
    assert 0 < n_frozen < n_top
    names = {w.path.split("/")[0] for w in frozen.train_model().trainable_weights}
    assert not any(n.startswith(("block", "stem", "head_conv")) for n in names)
    # BatchNorm statistics never train, even with train_top.
    assert not any("_bn" in w.path for w in top.train_model().trainable_weights)


def test_feature_shards(shards):
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["model"] == "unet" and meta["inputs"] == ["s4", "s8", "s16"]
    train = ShardSet(shards, "train")
    x, ab = train.take([0, 1])
    assert x["s4"].shape == (2, SIZE // 4, SIZE // 4, 24) and x["s16"].shape == (2, SIZE // 16, SIZE // 16, 112)
    assert ab.shape == (2, SIZE // 4, SIZE // 4, 2) and np.abs(ab).max() <= 1
    assert train.take_l([0]).shape == (1, SIZE, SIZE, 1)
    with pytest.raises(ValueError, match="mirrored"):
        train.take([0], flip=np.array([True]))
    assert ShardBatches(train, 4, flip=True).flip is False  # mirrored when the crops were cut instead


def test_fit_resume_and_samples(run, shards):
    info = json.loads((run / "run.json").read_text())
    assert info["model"] == "unet" and info["unet"]["widths"] == [32, 24, 16] and info["step"] == 6
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step-00000003.png", "step-00000006.png"]
    # Resuming continues from the checkpoint, exactly where it stopped.
    res = fit(shards, run, options=FitOptions(steps=8, batch_size=4, checkpoint_every=3, val_examples=6,
                                              sample_images=0, unet_widths=(32, 24, 16)))
    assert res.resumed_from == 6 and res.step == 8


def test_export_one_graph_every_size(run, shipped):
    bundle, rep = shipped
    assert set(rep["files"]) == {"colorizer.onnx", U.TRAINED_WEIGHTS}
    assert rep["max_diff"]["ship_vs_fp32_ab"] < 1e-2 and rep["max_diff"]["ship_vs_keras_ab"] < 1e-2
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["architecture"] == "unet" and meta["size_multiple"] == 32
    engine = load_engine(bundle, "onnx", device="cpu")
    assert not engine.reuses_embedding and engine.size_multiple == 32
    l = np.random.default_rng(1).uniform(-1, 1, (2, 40, 72, 1)).astype("float32")  # multiples of 8, not of 32
    ab = engine.predict(l)
    assert ab.shape == (2, 10, 18, 2)
    model, _ = load_trained(run)
    padded = np.pad(l, ((0, 0), (0, 24), (0, 24), (0, 0)), mode="edge")
    ref = np.asarray(model(padded, training=False))[:, :10, :18]
    np.testing.assert_allclose(ab, ref, atol=1e-2)
    with pytest.raises(EngineError, match="one-graph"):
        engine.embed(np.zeros((1, 224, 224, 1), "float32"))
    with pytest.raises(ValueError, match="no embedding"):
        engine.predict(l, np.zeros((2, 1000), "float32"))


def test_colorize_image_with_a_unet_bundle(shipped, photos):
    from streamcolor import colorize_image

    engine = load_engine(shipped[0], "onnx", device="cpu")
    rgb = np.asarray(colorize_image(photos / "p03.jpg", engine=engine, render_size=96))
    from PIL import Image
    assert rgb.shape[:2] == Image.open(photos / "p03.jpg").size[::-1]


def test_fine_tune_from_a_bundle_cli(shipped, photos, tmp_path):
    """The README's recipe: export (here the module's ship bundle), then fit --init that bundle on
    other photos, export again."""

    from streamcolor.trainer.cli import train

    cli = CliRunner()
    bundle = tmp_path / "base"
    shutil.copytree(shipped[0], bundle)
    how = {"render_size": 96, "saturation": 1.1, "guided_upsampling": {"radius": 2, "eps": 0.001}}
    meta = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps({**meta, **how}))  # (how the shipped default is run)
    mine = tmp_path / "mine-shards"
    res = cli.invoke(train, ["prepare", str(photos), "-o", str(mine), "--size", str(SIZE),
                             "--crops-per-photo", "2", "--shard-size", "8", "--val-fraction", "0.2",
                             "--random-extractor"])
    assert res.exit_code == 0, res.output
    # The model being fine-tuned keeps its shape: other widths asked for are refused, not silently dropped.
    res = cli.invoke(train, ["fit", str(mine), "-r", str(tmp_path / "ft"), "--init", str(bundle), "--steps", "2",
                         "-b", "4", "--lr", "1e-4", "--widths", "64,64,64", "--sample-images", "0"])
    assert res.exit_code == 1 and "has widths 32,24,16; --widths 64,64,64 cannot apply" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "ft" / "checkpoints").exists()
    # What only trains differently (dropout) is taken from the command line.
    res = cli.invoke(train, ["fit", str(mine), "-r", str(tmp_path / "ft"), "--init", str(bundle), "--steps", "2",
                             "-b", "4", "--lr", "1e-4", "--dropout", "0.1", "--sample-images", "0"])
    assert res.exit_code == 0, res.output
    start = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert start["unet"]["widths"] == [32, 24, 16] and start["unet"]["dropout"] == 0.1
    res = cli.invoke(train, ["export", str(tmp_path / "ft"), str(tmp_path / "ft-bundle"), "--ship", "--no-verify"])
    assert res.exit_code == 0, res.output
    # it runs as the model it started from did (it ran at 256, bilinearly: eval against it measured that)
    got = json.loads((tmp_path / "ft-bundle" / "model.json").read_text())
    assert {k: got.get(k) for k in how} == how
    # The fine-tuned model starts from the bundle's weights (not from scratch): close to it after 2 small steps.
    a = np.load(bundle / U.TRAINED_WEIGHTS)
    b = np.load(tmp_path / "ft-bundle" / U.TRAINED_WEIGHTS)
    assert a.files == b.files
    drift = max(float(np.abs(a[k].astype("float32") - b[k].astype("float32")).max()) for k in a.files)
    assert 0 < drift < 0.05
    # The seed model has no trainable weights in its bundle: a clear error.
    res = cli.invoke(train, ["fit", str(mine), "-r", str(tmp_path / "bad"), "--init", "seed", "--steps", "1"])
    assert res.exit_code != 0 and "only U-Net models can be fine-tuned" in res.output


def test_the_trainer_never_removes_or_writes_over_a_users_files(shipped, photos, tmp_path, monkeypatch):
    """prepare --overwrite removed the whole -o folder (the photos too, when it was theirs) when any
    meta.json was there; export --overwrite removed any folder holding a model.json, notes included;
    fit -r appended to a user's log.csv; eval --json wrote over the photo being scored."""

    from streamcolor.trainer.cli import train

    cli = CliRunner()
    album = tmp_path / "album"
    shutil.copytree(photos, album)
    (album / "meta.json").write_text('{"title": "Holiday 2019"}')
    before = sorted(p.name for p in album.iterdir())
    common = ["--size", str(SIZE), "--crops-per-photo", "2", "--shard-size", "8", "--random-extractor"]
    for out in (album, album / "shards"):  # the photos' own folder, or one inside it
        res = cli.invoke(train, ["prepare", str(album), "-o", str(out), *common, "--overwrite"])
        assert res.exit_code != 0 and "overlap" in res.output, res.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "meta.json").write_text('{"title": "Holiday 2019"}')
    (elsewhere / "notes.txt").write_text("mine")
    res = cli.invoke(train, ["prepare", str(photos), "-o", str(elsewhere), *common, "--overwrite"])
    assert res.exit_code != 0 and "not a shard folder" in res.output, res.output
    assert sorted(p.name for p in album.iterdir()) == before and (elsewhere / "notes.txt").read_text() == "mine"
    # a real shard folder with a file of the user's: --overwrite with other options keeps the file
    shards = tmp_path / "shards"
    assert cli.invoke(train, ["prepare", str(photos), "-o", str(shards), *common]).exit_code == 0
    (shards / "README.txt").write_text("mine")
    (shards / "roll-00001").mkdir()  # (a folder of the user's named like a shard: "photos changed" removed it)
    (shards / "roll-00001" / "scan.jpg").write_bytes(b"mine")
    res = cli.invoke(train, ["prepare", str(photos), "-o", str(shards), *common[:2], "--crops-per-photo", "1",
                             "--shard-size", "8", "--random-extractor", "--overwrite"])
    assert res.exit_code == 0 and (shards / "README.txt").read_text() == "mine", res.output
    assert (shards / "roll-00001" / "scan.jpg").read_bytes() == b"mine"
    more = tmp_path / "more"
    shutil.copytree(photos, more)
    shutil.copy(next(p for p in sorted(photos.iterdir()) if p.suffix == ".jpg"), more / "again.jpg")
    from PIL import Image

    Image.fromarray(np.random.default_rng(9).integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(more / "n.jpg")
    res = cli.invoke(train, ["prepare", str(more), "-o", str(shards), *common[:2], "--crops-per-photo", "1",
                             "--shard-size", "8", "--random-extractor", "--overwrite"])  # the photos changed
    assert res.exit_code == 0 and (shards / "roll-00001" / "scan.jpg").read_bytes() == b"mine", res.output
    for meta, plan in (('{"format": 1, "title": "My holiday album"}', None), (None, '{"steps": ["scan"]}')):
        other = tmp_path / f"other-{bool(meta)}"
        other.mkdir()
        if meta:
            (other / "meta.json").write_text(meta)
        (other / "plan.json").write_text(plan or "{}")
        res = cli.invoke(train, ["prepare", str(photos), "-o", str(other), *common, "--overwrite"])
        assert res.exit_code != 0 and "not a shard folder" in res.output, res.output
    # fit -r: a folder of the user's
    folder = tmp_path / "accounts"
    folder.mkdir()
    (folder / "log.csv").write_text("date,amount\n2024-01-01,100\n")
    res = cli.invoke(train, ["fit", str(shards), "-r", str(folder), "--steps", "1", "-b", "4", "--sample-images", "0"])
    assert res.exit_code != 0 and "not a training run" in res.output, res.output
    assert (folder / "log.csv").read_text() == "date,amount\n2024-01-01,100\n"
    # export --overwrite: a bundle holding a file of the user's, another program's model.json
    run = tmp_path / "run"
    assert cli.invoke(train, ["fit", str(shards), "-r", str(run), "--steps", "1", "-b", "4",
                              "--sample-images", "0"]).exit_code == 0
    noted = tmp_path / "noted"
    shutil.copytree(shipped[0], noted)
    (noted / "NOTES.txt").write_text("mine")
    np.savez(noted / "my-measurements.npz", a=np.arange(3))
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "model.json").write_text('{"name": "my tfjs model"}')
    (webapp / "w.bin").write_text("weights")
    for out, why in ((noted, "not the bundle's"), (webapp, "not a streamcolor bundle")):
        res = cli.invoke(train, ["export", str(run), str(out), "--ship", "--no-verify", "--overwrite"])
        assert res.exit_code != 0 and why in res.output, res.output
    assert (noted / "NOTES.txt").read_text() == "mine" and (webapp / "w.bin").read_text() == "weights"
    (noted / "NOTES.txt").unlink()
    res = cli.invoke(train, ["export", str(run), str(noted), "--ship", "--no-verify", "--overwrite"])
    assert res.exit_code != 0 and "my-measurements.npz" in res.output, res.output  # (any .npz was taken as ours)
    # --init default: the shipped model, though a folder named default is here
    from streamcolor.engines import WEIGHTS_DIR
    from streamcolor.trainer.train import init_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    kind, where = init_source("default")
    assert kind == "bundle" and where.parent.resolve() == WEIGHTS_DIR.resolve()
    # eval --json / --markdown: only a report's name, and never over another file
    photo = next(p for p in sorted(photos.iterdir()) if p.suffix == ".jpg")
    data = photo.read_bytes()
    for option, name in (("--json", photo), ("--markdown", photo), ("--json", tmp_path / "notes.txt")):
        if name.suffix == ".txt":
            name.write_text("mine")
        res = cli.invoke(train, ["eval", "-m", str(shipped[0]), str(photos), "--size", str(SIZE), option, str(name)])
        assert res.exit_code == 2, res.output
    assert photo.read_bytes() == data and (tmp_path / "notes.txt").read_text() == "mine"
    res = cli.invoke(train, ["eval", "-m", str(shipped[0]), str(photos), "--size", str(SIZE), "--max-images", "0"])
    assert res.exit_code == 2 and "--max-images" in res.output


def test_prepare_refuses_a_photo_over_the_pixel_limit_alone(photos, tmp_path, monkeypatch):
    """No pixel limit: one PNG of 30000 x 30000 (3 MB) took 23 GB and the kernel killed the run."""

    from PIL import Image

    from streamcolor.trainer import data
    from streamcolor.trainer.cli import train

    monkeypatch.setattr(data, "MAX_PHOTO_PIXELS", 300 * 300)
    src = tmp_path / "src"
    shutil.copytree(photos, src)
    Image.new("RGB", (400, 400), (10, 200, 10)).save(src / "big.png")
    with pytest.raises(ValueError, match="more than 90,000"):
        data.decode_photo((src / "big.png").read_bytes())
    res = CliRunner().invoke(train, ["prepare", str(src), "-o", str(tmp_path / "s"), "--size", str(SIZE),
                                     "--crops-per-photo", "1", "--random-extractor"])
    assert "big.png" in res.output and "160,000 pixels" in res.output, res.output
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["counts"]["train"]["examples"] > 0


def test_int8_variant_of_a_unet(shipped, photos, tmp_path, caplog):

    from streamcolor.engines import resolve_model
    from streamcolor.engines.select import guard
    from streamcolor.trainer.quantize import QuantizeOptions, quantize_bundle

    shutil.copytree(shipped[0], tmp_path / "b")
    with caplog.at_level("WARNING"):
        rep = quantize_bundle(tmp_path / "b", photos, eval_photos=photos,
                              options=QuantizeOptions(n=8, size=64, batch=4, eval_size=64, speed=False))
    # The guard's photos are chosen before it scores them: no "split ignored" warning listing each one.
    assert "ignored" not in caplog.text
    rec = rep.variants["int8"]
    assert rec["colorizer"] == "colorizer-int8.onnx" and rec["calibration_set"]["crops"] == 8
    assert rec["extractor"] is None  # one graph: no extractor file to name (it named an absent extractor.onnx)
    assert json.loads((tmp_path / "b" / "model.json").read_text())["variants"]["int8"]["extractor"] is None
    info = resolve_model(tmp_path / "b")
    assert info.architecture == "unet" and guard(info, "int8")[0] == (rec["mse_rel"] <= 0.05)
    q = load_engine(tmp_path / "b", "onnx", precision="int8", device="cpu")
    l = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 1)).astype("float32")
    assert q.predict(l).shape == (1, 16, 16, 2)


def test_quantize_and_export_say_ordinary_mistakes_in_one_line(shipped, shards, tmp_path):
    """quantize on a folder that is no bundle gave a 14-frame traceback; export --eval-json with a
    broken file failed after the whole export, naming no file."""
    from streamcolor.trainer.cli import train
    from streamcolor.trainer.export import ExportError, eval_meta

    (tmp_path / "userdir").mkdir()
    res = CliRunner().invoke(train, ["quantize", str(tmp_path / "userdir"), "--calib", str(tmp_path), "--n", "2",
                                     "--no-speed"])
    assert res.exit_code == 1 and "not a model bundle" in res.output and "Traceback" not in res.output, res.output
    res = CliRunner().invoke(train, ["eval", "-m", str(shipped[0]), str(shards), "--stored-embeddings"])
    assert res.exit_code == 1 and "store feature maps, not embeddings" in res.output, res.output  # (KeyError)
    for text in ("{bad", "[1, 2]"):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ExportError, match="bad.json: not a report of `train eval --json`"):
            eval_meta(tmp_path / "bad.json")


def test_average_of_checkpoints_is_their_mean_and_never_resumed(shards, tmp_path):
    from streamcolor.trainer.cli import train
    from streamcolor.trainer.train import latest_checkpoint, list_checkpoints

    run_dir = tmp_path / "r"
    fit(shards, run_dir, options=FitOptions(steps=6, batch_size=4, checkpoint_every=2, keep_checkpoints=5,
                                            val_examples=0, sample_images=0, unet_widths=(32, 24, 16)))
    ckpts = list_checkpoints(run_dir)
    assert [c.name for c in ckpts] == ["ckpt-00000002", "ckpt-00000004", "ckpt-00000006"]
    res = CliRunner().invoke(train, ["average", str(run_dir), "--from-step", "3"])
    assert res.exit_code == 0, res.output
    folder = run_dir / "checkpoints" / "average-00000004-00000006"
    assert res.output.strip() == str(folder)
    assert json.loads((folder / "state.json").read_text())["averaged_steps"] == [4, 6]
    import h5py

    def arrays(folder: Path) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with h5py.File(folder / "colorizer.weights.h5", "r") as f:
            f.visititems(lambda name, node: found.update({name: node[()]}) if isinstance(node, h5py.Dataset) else None)
        return found

    a, b, mean = arrays(ckpts[1]), arrays(ckpts[2]), arrays(folder)
    assert sorted(mean) == sorted(a) and len(mean) > 10
    moved = [name for name in mean if not np.array_equal(a[name], b[name])]
    assert moved  # the decoder trained between the two steps, so the mean is neither of them
    for name in mean:
        if mean[name].dtype.kind == "f" and mean[name].shape:
            np.testing.assert_allclose(mean[name], (a[name].astype("float64") + b[name]) / 2, rtol=1e-6, atol=1e-7)
        else:  # counters and seeds: the last checkpoint's
            assert np.array_equal(mean[name], b[name])
    model, info = load_trained(folder)  # export and eval take it like any checkpoint
    assert info["checkpoint"] == folder.name and info["step"] == 6
    assert info["loss"] is None and info["val_loss"] is None  # (the last checkpoint's: not measured on the mean)
    assert latest_checkpoint(run_dir).name == "ckpt-00000006"
    res = CliRunner().invoke(train, ["average", str(run_dir), "--from-step", "6"])
    assert res.exit_code == 1 and "1 checkpoint(s) at step 6 or later" in res.output
    assert "Traceback" not in res.output
    # a checkpoint exported after the run was resumed with other options records its own, not the run's newest
    fit(shards, run_dir, options=FitOptions(steps=8, batch_size=4, checkpoint_every=2, keep_checkpoints=5,
                                            val_examples=0, sample_images=0, unet_widths=(32, 24, 16)))
    assert json.loads((run_dir / "run.json").read_text())["options"]["steps"] == 8
    assert load_trained(ckpts[1])[1]["options"]["steps"] == 6 and load_trained(folder)[1]["options"]["steps"] == 6


def test_a_run_is_not_resumed_on_other_shards(shards, photos, tmp_path):
    from streamcolor.trainer.cli import train

    other = tmp_path / "other"
    prepare_shards([photos], other, options=PrepareOptions(size=SIZE, model="unet", crops_per_photo=2, shard_size=12,
                                                            val_fraction=0.2, workers=2, extractor_weights=None))
    quick = FitOptions(steps=2, batch_size=4, val_examples=0, sample_images=0, unet_widths=(32, 24, 16))
    run_dir = tmp_path / "r"
    fit(shards, run_dir, options=quick)
    moved = tmp_path / "moved"  # the same shards in another folder still resume

    shutil.copytree(shards, moved)
    assert fit(moved, run_dir, options=replace(quick, steps=3)).resumed_from == 2
    res = CliRunner().invoke(train, ["fit", str(other), "-r", str(run_dir), "--steps", "4", "-b", "4",
                                     "--widths", "32,24,16", "--val-examples", "0", "--sample-images", "0"])
    assert res.exit_code == 1 and "was trained on other shards" in res.output and "Traceback" not in res.output
    assert sorted(c.name for c in (run_dir / "checkpoints").iterdir())[-1] == "ckpt-00000003"  # nothing written


def test_a_bundle_is_never_exported_into_checkpoints_and_pruning_keeps_what_it_did_not_write(shards, tmp_path):
    from streamcolor.trainer.cli import train
    from streamcolor.trainer.train import list_checkpoints

    run_dir = tmp_path / "r"
    quick = FitOptions(steps=2, batch_size=4, checkpoint_every=1, keep_checkpoints=1, val_examples=0,
                       sample_images=0, unet_widths=(32, 24, 16))
    fit(shards, run_dir, options=quick)
    (ckpt,) = list_checkpoints(run_dir)
    res = CliRunner().invoke(train, ["export", str(ckpt), str(ckpt / "b"), "--ship", "--no-verify"])
    assert res.exit_code == 1 and "inside the checkpoints of the run" in res.output and not (ckpt / "b").exists()
    # A file of the user's put into a checkpoint folder outlives the pruning of that checkpoint.
    (ckpt / "notes.txt").write_text("mine")
    fit(shards, run_dir, options=replace(quick, steps=3))
    assert (ckpt / "notes.txt").read_text() == "mine"
    assert [c.name for c in list_checkpoints(run_dir)] == ["ckpt-00000003"]  # (the old one is no checkpoint now)
    # Not a bundle: a run or a checkpoint is said to need exporting; a folder with no run, to be none.
    res = CliRunner().invoke(train, ["eval", "-m", str(run_dir), str(shards)])
    assert res.exit_code == 1 and "a training run or checkpoint, not a model bundle; export it first" in res.output
    res = CliRunner().invoke(train, ["average", str(shards)])
    assert res.exit_code == 1 and "not a training run with checkpoints" in res.output
    assert "AverageError" not in res.output  # (the message says what is wrong; no class name before it)


def test_a_run_resumes_from_the_init_it_started_from(shipped, shards, tmp_path):
    from streamcolor.trainer.cli import train

    run_dir = tmp_path / "ft"
    quick = FitOptions(steps=1, batch_size=4, val_examples=0, sample_images=0, init=str(shipped[0]))
    fit(shards, run_dir, options=quick)
    # Resumed without --init, it keeps its origin (in run.json, hence in the bundle).
    fit(shards, run_dir, options=replace(quick, steps=2, init=None))
    assert json.loads((run_dir / "run.json").read_text())["options"]["init"] == str(shipped[0])
    res = CliRunner().invoke(train, ["fit", str(shards), "-r", str(run_dir), "--steps", "3", "-b", "4",
                                     "--init", "default", "--val-examples", "0", "--sample-images", "0"])
    assert res.exit_code == 1 and f"started from --init {shipped[0]}, not from --init default" in res.output
    assert json.loads((run_dir / "run.json").read_text())["options"]["init"] == str(shipped[0])


def test_resuming_with_other_training_options_says_so(shards, tmp_path, caplog):
    """A forgotten --lr-schedule on resume silently trained the rest at a constant rate; it is said now,
    and Keras's notice about the optimizer variables it skipped (restored from optimizer.npz) is not."""
    import warnings

    run_dir = tmp_path / "r"
    quick = FitOptions(steps=2, batch_size=4, lr_schedule="cosine", warmup_steps=1, val_examples=0, sample_images=0,
                       unet_widths=(32, 24, 16))
    fit(shards, run_dir, options=quick)
    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(shards, run_dir, options=replace(quick, steps=3, lr_schedule="constant", warmup_steps=0))
    assert res.resumed_from == 2
    assert "other training options than it ran with: lr_schedule cosine -> constant, warmup_steps 1 -> 0" in caplog.text
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
