"""The U-Net colorizer (streamcolor.trainer.unet) end to end on a tiny set:
its encoder is the shipped Lite0 (same logits as the extractor), the training
model and the full model share weights, feature shards feed training, the
export is one graph that every engine runs at any multiple of 8, the int8
variant keeps its quality guard, and fine-tuning continues from a bundle
(``streamcolor train fit --init``), from the CLI as a user runs it.
"""

from __future__ import annotations

import json
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
    import shutil

    from streamcolor.trainer.cli import train

    cli = CliRunner()
    bundle = tmp_path / "base"
    shutil.copytree(shipped[0], bundle)
    mine = tmp_path / "mine-shards"
    res = cli.invoke(train, ["prepare", str(photos), "-o", str(mine), "--size", str(SIZE),
                             "--crops-per-photo", "2", "--shard-size", "8", "--val-fraction", "0.2",
                             "--random-extractor"])
    assert res.exit_code == 0, res.output
    # Widths on the command line are overridden by the model being fine-tuned.
    res = cli.invoke(train, ["fit", str(mine), "-r", str(tmp_path / "ft"), "--init", str(bundle), "--steps", "2",
                             "-b", "4", "--lr", "1e-4", "--widths", "64,64,64", "--sample-images", "0"])
    assert res.exit_code == 0, res.output
    start = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert start["unet"]["widths"] == [32, 24, 16]
    res = cli.invoke(train, ["export", str(tmp_path / "ft"), str(tmp_path / "ft-bundle"), "--ship", "--no-verify"])
    assert res.exit_code == 0, res.output
    # The fine-tuned model starts from the bundle's weights (not from scratch): close to it after 2 small steps.
    a = np.load(bundle / U.TRAINED_WEIGHTS)
    b = np.load(tmp_path / "ft-bundle" / U.TRAINED_WEIGHTS)
    assert a.files == b.files
    drift = max(float(np.abs(a[k].astype("float32") - b[k].astype("float32")).max()) for k in a.files)
    assert 0 < drift < 0.05
    # The seed model has no trainable weights in its bundle: a clear error.
    res = cli.invoke(train, ["fit", str(mine), "-r", str(tmp_path / "bad"), "--init", "seed", "--steps", "1"])
    assert res.exit_code != 0 and "only U-Net models can be fine-tuned" in res.output


def test_int8_variant_of_a_unet(shipped, photos, tmp_path):
    import shutil

    from streamcolor.engines import resolve_model
    from streamcolor.engines.select import guard
    from streamcolor.trainer.quantize import QuantizeOptions, quantize_bundle

    shutil.copytree(shipped[0], tmp_path / "b")
    rep = quantize_bundle(tmp_path / "b", photos, eval_photos=photos,
                          options=QuantizeOptions(n=8, size=64, batch=4, eval_size=64, speed=False))
    rec = rep.variants["int8"]
    assert rec["colorizer"] == "colorizer-int8.onnx" and rec["calibration_set"]["crops"] == 8
    info = resolve_model(tmp_path / "b")
    assert info.architecture == "unet" and guard(info, "int8")[0] == (rec["mse_rel"] <= 0.05)
    q = load_engine(tmp_path / "b", "onnx", precision="int8", device="cpu")
    l = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 1)).astype("float32")
    assert q.predict(l).shape == (1, 16, 16, 2)
