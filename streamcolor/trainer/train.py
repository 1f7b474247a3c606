"""Fit the colorizer on prepared shards, with checkpoints and exact resume.

method.md: MSE loss on a*b* in [-1, 1], Adam with learning rate 1e-3, batch
100, a checkpoint every N steps, resume from the latest checkpoint, a few
validation images colorized at each checkpoint.

Two networks train here, chosen by the shards (``streamcolor train prepare
--model``): the seed (method.md; inputs L and the classifier embedding) and
the U-Net of :mod:`streamcolor.trainer.unet` (inputs the frozen encoder's
feature maps; only the decoder, and optionally Lite0's top blocks, train).
``FitOptions.init`` starts from a trained model instead of from scratch:
fine-tuning a shipped model on one's own photos.

Run folder (``run_dir``)::

    run.json                   shards, extractor, options, final figures
    log.csv                    step, epoch, loss, val_loss, examples/s, lr, elapsed
    checkpoints/ckpt-00000500/ colorizer.weights.h5, optimizer.npz, state.json
    samples/step-00000500.png  rows: gray input | prediction | truth
    colorizer.keras            the final model (float32, no optimizer)
    colorizer.weights.h5

The loop is ``model.train_on_batch`` over a read-ahead stream of
:class:`streamcolor.trainer.data.ShardBatches` rather than ``model.fit``: it
gives an exact data position to resume from and clean stops at a step count
or a wall-clock budget, identically on the TensorFlow and JAX backends.
This module imports Keras and NumPy only (no TensorFlow).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamcolor.engines import lab
from streamcolor.trainer.data import DataError, ShardBatches, ShardSet, batch_stream

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
WEIGHTS_FILE = "colorizer.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
RUN_FILE = "run.json"
LOG_FILE = "log.csv"
MODEL_FILE = "colorizer.keras"
#: Layers kept in float32 under mixed precision (the tanh output and its upsampling).
FLOAT32_LAYERS = ("decoder_conv4", "ab")
LR_SCHEDULES = ("constant", "cosine")
#: "mse": method.md's loss.  "rebalanced": MSE weighted per pixel by the rarity
#: of its true colour in the training set (Zhang et al. 2016's class
#: rebalancing, on a*b* bins), which counters MSE's pull towards gray-brown.
LOSSES = ("mse", "rebalanced")
#: Bins per a*b* axis of the rebalancing histogram (over [-1, 1]).
REBALANCE_BINS = 16
#: Options whose change on resume is said (the shape of the run: rate, schedule, loss, regularisation).
RESUME_OPTIONS = ("lr", "lr_schedule", "warmup_steps", "loss", "weight_decay", "dropout", "flip", "seed")
_LOG_FIELDS = ("step", "epoch", "loss", "val_loss", "examples_per_s", "lr", "elapsed_s")


class CheckpointMismatch(RuntimeError):
    """A checkpoint belongs to another model shape and cannot be resumed."""


@dataclass(frozen=True)
class FitOptions:
    """Knobs of :func:`fit`.  Give ``steps``, ``epochs`` or ``max_minutes`` (or several: first reached stops)."""

    steps: int | None = None  # total optimizer steps of the run (resumed runs count from 0)
    epochs: float | None = None  # total passes over the training shards (converted to steps)
    max_minutes: float | None = None  # wall-clock budget of this invocation; stops cleanly with a checkpoint
    batch_size: int = 100  # examples per step (method.md)
    lr: float = 1e-3  # Adam learning rate (method.md); peak rate for "cosine"
    lr_schedule: str = "constant"  # "constant" or "cosine" (to 0 at the last step; needs steps or epochs)
    warmup_steps: int = 0  # linear warm-up steps for "cosine"
    flip: bool = True  # augmentation: mirror examples left-right with probability 1/2
    seed: int = 0  # shuffling and augmentation (deterministic per epoch)
    checkpoint_every: int = 500  # steps between checkpoints (one more at the end)
    keep_checkpoints: int = 3  # older checkpoints are deleted
    log_every: int = 50  # steps between log.csv rows
    val_examples: int = 500  # validation examples scored at each checkpoint (0: none)
    sample_images: int = 4  # validation images in each checkpoint's PNG grid (0: none)
    mixed_precision: bool = False  # mixed_bfloat16 compute; last layers and weights stay float32
    prefetch: int = 8  # batches read ahead
    loader_threads: int = 0  # threads reading and converting batches (0: min(8, CPU cores))
    loss: str = "mse"  # one of LOSSES
    rebalance_lambda: float = 0.5  # "rebalanced": mix of the colour histogram with uniform (1: no rebalancing)
    unet_widths: tuple[int, int, int] = (192, 128, 64)  # U-Net decoder widths at strides 16, 8, 4
    convs_per_level: int = 1  # U-Net: 3x3 convolutions per decoder level
    train_top: bool = False  # U-Net: also fine-tune Lite0's stride-32 blocks and head
    dropout: float = 0.0  # U-Net: spatial dropout on the decoder's inputs (regularisation on small data)
    skips: tuple[str, ...] = ("s16", "s8", "s4")  # U-Net: encoder taps the decoder concatenates
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) when > 0, else Adam (method.md)
    init: str | None = None  # start from this trained model (shipped name, bundle, run): fine-tuning


@dataclass
class FitResult:
    """Where a :func:`fit` run ended."""

    run_dir: Path
    step: int  # optimizer steps done in total (across resumes)
    epoch: float  # passes over the training examples
    loss: float | None  # mean training loss of the last log window
    val_loss: float | None  # at the last checkpoint
    examples_per_s: float | None  # training throughput of this invocation
    checkpoint: Path | None
    model: Path  # the final .keras file
    resumed_from: int  # step of the checkpoint this invocation started from (0: fresh)
    stopped_by: str  # "steps" or "epochs" (trained to the end), "time" or "interrupt"


# --------------------------------------------------------------------------- model


def build_model(embed_dim: int, *, mixed_precision: bool = False):
    """The seed colorizer, not compiled.  Under ``mixed_precision`` its layers
    compute in bfloat16 except :data:`FLOAT32_LAYERS`, whose policy is set
    back to float32 (the tanh output); weights stay float32 either way, so
    checkpoints do not depend on the precision."""
    from streamcolor.trainer.model import build_colorizer

    return _with_policy(lambda: build_colorizer(embed_dim), mixed_precision)


def _with_policy(make, mixed_precision: bool):
    import keras

    if not mixed_precision:
        return make()
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        built = make()
    finally:
        keras.mixed_precision.set_global_policy(old)
    model = built.train_model() if hasattr(built, "train_model") else built
    for name in FLOAT32_LAYERS:
        try:
            model.get_layer(name).dtype_policy = "float32"
        except ValueError:
            pass
    return built


def unet_config(options: "FitOptions | dict"):
    """The U-Net configuration a run trains (from FitOptions or a saved options dict)."""
    from streamcolor.trainer.unet import UNetConfig

    get = options.get if isinstance(options, dict) else lambda k, d=None: getattr(options, k, d)
    return UNetConfig(widths=tuple(get("unet_widths", UNetConfig.widths)),
                      convs_per_level=int(get("convs_per_level", UNetConfig.convs_per_level)),
                      train_top=bool(get("train_top", UNetConfig.train_top)),
                      skips=tuple(get("skips", UNetConfig.skips)),
                      dropout=float(get("dropout", UNetConfig.dropout)))


def build_unet_for(config, *, extractor_weights: str | None = "default", mixed_precision: bool = False):
    """A :class:`~streamcolor.trainer.unet.UNet` (ImageNet encoder) under the given precision."""
    from streamcolor.trainer.unet import build_unet

    return _with_policy(lambda: build_unet(config, weights=extractor_weights), mixed_precision)


def rebalance_weights(train: ShardSet, *, lam: float = 0.5, bins: int = REBALANCE_BINS,
                      sample: int = 2000, sigma: float = 1.0) -> np.ndarray:
    """Per-bin loss weights (bins * bins,) from the training set's a*b* histogram:
    w = 1 / ((1 - lam) * p + lam / Q), p smoothed with a Gaussian of ``sigma``
    bins, Q the number of bins seen, normalised so that the expected weight
    of a training pixel is 1 (the loss keeps MSE's scale)."""
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(train), size=min(sample, len(train)), replace=False))
    _, ab = train.take(idx)
    q = np.clip(((ab + 1.0) * 0.5 * bins).astype(np.int64), 0, bins - 1)
    flat = q[..., 0] * bins + q[..., 1]
    hist = np.bincount(flat.ravel(), minlength=bins * bins).astype(np.float64)
    p = cv2.GaussianBlur(hist.reshape(bins, bins), (0, 0), sigma).ravel()
    p /= p.sum()
    seen = max(1, int((hist > 0).sum()))
    w = 1.0 / ((1.0 - lam) * p + lam / seen)
    w /= float((w * (hist / hist.sum())).sum())
    return w.astype(np.float32)


def make_loss(options: FitOptions, train: ShardSet):
    """The loss of the run: "mse" (the string Keras knows) or a rebalanced MSE."""
    if options.loss == "mse":
        return "mse"
    if options.loss != "rebalanced":
        raise ValueError(f"loss must be one of {LOSSES}, got {options.loss!r}")
    import keras
    from keras import ops

    weights = keras.ops.convert_to_tensor(rebalance_weights(train, lam=options.rebalance_lambda))
    bins = REBALANCE_BINS

    def rebalanced_mse(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        q = ops.clip(ops.cast(ops.floor((y_true + 1.0) * 0.5 * bins), "int32"), 0, bins - 1)
        w = ops.take(weights, q[..., 0] * bins + q[..., 1])
        return ops.mean(w * ops.mean(ops.square(y_pred - y_true), axis=-1), axis=(1, 2))

    return rebalanced_mse


def learning_rate(options: FitOptions, total_steps: int | None):
    import keras

    if options.lr_schedule == "constant":
        return options.lr
    if options.lr_schedule == "cosine":
        if not total_steps:
            raise ValueError("the cosine schedule needs --steps or --epochs (it decays to 0 at the last step)")
        warm = max(0, options.warmup_steps)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warm else options.lr, decay_steps=max(1, total_steps - warm), alpha=0.0,
            warmup_target=options.lr if warm else None, warmup_steps=warm)
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {options.lr_schedule!r}")


def _current_lr(optimizer) -> float:
    import keras

    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


def _optimizer_slots(optimizer) -> list:
    """Optimizer variables that make up its state (iterations, moments), in a
    stable order; the learning rate is left out: it comes from the options."""
    return [v for v in optimizer.variables if not v.path.endswith("/learning_rate")]


def _shapes(variables) -> list[list[int]]:
    return [list(map(int, v.shape)) for v in variables]


# --------------------------------------------------------------------------- checkpoints


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first."""
    d = Path(run_dir) / CHECKPOINTS
    return sorted(p for p in d.glob("ckpt-*") if (p / STATE_FILE).is_file()) if d.is_dir() else []


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _iterations(model) -> int:
    """The optimizer's count of updates applied (restored with its checkpoint)."""
    import keras

    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _trim_log(log_path: Path, last_step: int) -> None:
    """Drop the log rows after ``last_step`` (the checkpoint a run resumes from):
    a killed run logged them, and the resumed run trains and logs those steps again."""
    try:
        with log_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return
    keep = [r for r in rows if not (r.get("step") or "").isdigit() or int(r["step"]) <= last_step]
    if len(keep) == len(rows):
        return
    tmp = log_path.with_name(f".tmp-{log_path.name}")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
    os.replace(tmp, log_path)


def save_checkpoint(run_dir: Path, model, state: dict[str, Any], *, keep: int = 3) -> Path:
    """Write model weights, optimizer variables and ``state`` (step, position...)
    into ``checkpoints/ckpt-<step>/`` atomically; keep the ``keep`` newest."""
    import keras

    final = Path(run_dir) / CHECKPOINTS / f"ckpt-{state['step']:08d}"
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_weights(tmp / WEIGHTS_FILE)
    slots = _optimizer_slots(model.optimizer)
    np.savez(tmp / OPTIMIZER_FILE, **{f"v{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(slots)})
    state = {"embed_dim": int(model.inputs[1].shape[-1]) if len(model.inputs) == 2 else None, **state,
             "weight_shapes": _shapes(model.weights), "optimizer_slots": [v.path for v in slots],
             "backend": keras.backend.backend(), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-max(1, keep)]:
        remove_checkpoint(old)
    return final


def remove_checkpoint(folder: Path) -> None:
    """Delete an old checkpoint: the files :func:`save_checkpoint` wrote, then the folder if that
    leaves it empty.  Anything else in it (a bundle exported into it, a user's notes) is kept,
    with a warning, so pruning never takes a file it did not write."""
    for name in (STATE_FILE, WEIGHTS_FILE, OPTIMIZER_FILE):  # state first: a half-removed one is no checkpoint
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    try:
        folder.rmdir()
    except FileNotFoundError:  # (gone already)
        pass
    except OSError:
        log.warning("old checkpoint %s removed, but its folder holds other files, which were kept: %s", folder.name,
                    ", ".join(sorted(p.name for p in folder.iterdir())[:5]))


class AverageError(ValueError):
    """Checkpoints that cannot be averaged (too few, or of different shapes)."""


def average_checkpoints(run_dir: str | Path, *, from_step: int = 0) -> Path:
    """Average the weights of a run's checkpoints from ``from_step`` on into one checkpoint folder.

    The mean of the weights along the end of a run (Izmailov et al.'s stochastic weight averaging,
    taken after the fact from the checkpoints fit kept) lands in a flatter region than the last
    step: the shipped model is such a mean.  Written as ``checkpoints/average-<first>-<last>/``
    (atomically; ``export`` and ``eval`` take it like any checkpoint).  It holds no optimizer
    state and is not named ``ckpt-*``, so ``fit`` never resumes from it.
    """
    import h5py

    found = list_checkpoints(run_dir)
    if not found:
        raise AverageError(f"{run_dir}: not a training run with checkpoints (no {CHECKPOINTS}/ckpt-*); give the "
                           "folder that fit -r wrote")

    def state_of(ckpt: Path) -> dict[str, Any]:
        try:
            state = json.loads((ckpt / STATE_FILE).read_text())
            int(state["step"])
            return state
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AverageError(f"{ckpt / STATE_FILE}: unreadable checkpoint state ({exc}); remove that checkpoint "
                               "or average from a later step") from exc

    every = [(c, state_of(c)) for c in found]  # (each state read once)
    chosen = [c for c, state in every if int(state["step"]) >= from_step]
    states = [state for _, state in every if int(state["step"]) >= from_step]
    if len(chosen) < 2:
        raise AverageError(f"{run_dir}: {len(chosen)} checkpoint(s) at step {from_step} or later (its last is at "
                           f"step {every[-1][1]['step']}); averaging needs two or more (fit --checkpoint-every N "
                           "--keep-checkpoints K keeps them)")
    if any(s.get("weight_shapes") != states[-1].get("weight_shapes") for s in states):
        raise AverageError(f"{run_dir}: the checkpoints hold different model shapes")
    steps = [int(s["step"]) for s in states]
    final = Path(run_dir) / CHECKPOINTS / f"average-{steps[0]:08d}-{steps[-1]:08d}"
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(chosen[-1] / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
    sources = [h5py.File(c / WEIGHTS_FILE, "r") for c in chosen]
    try:
        with h5py.File(tmp / WEIGHTS_FILE, "r+") as out:
            def mean(name: str, node) -> None:
                if isinstance(node, h5py.Dataset) and node.dtype.kind == "f" and node.shape:
                    node[...] = np.mean([np.asarray(f[name], np.float64) for f in sources], axis=0)
            out.visititems(mean)
    finally:
        for f in sources:
            f.close()
    # (the last checkpoint's loss and val_loss were measured on its own weights, not on their mean)
    state = {**states[-1], "averaged_steps": steps, "loss": None, "val_loss": None}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    log.info("averaged %d checkpoints (steps %s)", len(steps), ", ".join(map(str, steps)))
    return final


def load_checkpoint(path: Path, model) -> dict[str, Any]:
    """Restore weights and optimizer state from a checkpoint into a compiled
    ``model`` (optimizer built); returns its state dict.

    Raises
    ------
    CheckpointMismatch
        The checkpoint holds another model shape (e.g. another embedding size).
    """
    path = Path(path)
    state = json.loads((path / STATE_FILE).read_text())
    kind = "unet" if len(model.inputs) != 2 else "koalarization"
    if state.get("model", "koalarization") != kind:
        raise CheckpointMismatch(f"{path} is a checkpoint of the {state.get('model', 'koalarization')} model; "
                                 f"these shards train the {kind} model. Use another --run-dir.")
    embed_dim = int(model.inputs[1].shape[-1]) if kind == "koalarization" else state.get("embed_dim")
    if state.get("embed_dim") != embed_dim:
        raise CheckpointMismatch(
            f"{path} is a checkpoint of a colorizer with embedding size {state.get('embed_dim')} "
            f"(extractor {state.get('extractor')!r}); these shards give embedding size {embed_dim}. "
            "Use another --run-dir for a different extractor.")
    if state.get("weight_shapes") != _shapes(model.weights):
        raise CheckpointMismatch(f"{path} holds weights of another model shape than this colorizer; "
                                 "use another --run-dir")
    try:
        with warnings.catch_warnings():
            # (the .weights.h5 holds the optimizer too, whose variables count the learning rate a schedule
            # adds or drops: its state is restored below from optimizer.npz, so Keras's notice is noise)
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(path / WEIGHTS_FILE)
    except ValueError as exc:
        raise CheckpointMismatch(f"{path}: weights do not fit this colorizer: {exc}") from exc
    slots = _optimizer_slots(model.optimizer)
    with np.load(path / OPTIMIZER_FILE) as saved:
        arrays = [saved[f"v{i:04d}"] for i in range(len(saved.files))]
    if len(arrays) != len(slots) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, slots)):
        raise CheckpointMismatch(f"{path}: optimizer state does not fit this colorizer")
    for v, a in zip(slots, arrays):
        v.assign(a.astype(v.dtype))
    return state


# --------------------------------------------------------------------------- samples, validation


def model_inputs(model, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a shard batch that ``model`` takes (a U-Net without some skips takes fewer)."""
    names = [t.name for t in model.inputs]
    return x if len(names) == len(x) else {k: x[k] for k in names}


def validation_loss(model, val: ShardSet, *, limit: int, batch_size: int) -> float | None:
    """Mean MSE over the first ``limit`` validation examples (None if none)."""
    n = min(limit, len(val))
    if n == 0:
        return None
    total = 0.0
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(n, i + batch_size))
        x, ab = val.take(idx)
        x = model_inputs(model, x)
        pad = batch_size - len(idx)  # fixed shape: one compiled predict
        if pad:
            x = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in x.items()}
        pred = np.asarray(model.predict_on_batch(x), np.float32)[:len(idx)]
        total += float(((pred - ab) ** 2).mean(axis=(1, 2, 3)).sum())
    return total / n


def _to_rgb_u8(l_scaled: np.ndarray, ab_scaled: np.ndarray) -> np.ndarray:
    labim = np.concatenate([lab.unscale_l(l_scaled), lab.unscale_ab(ab_scaled)], axis=-1)
    return np.rint(lab.lab_to_rgb(labim) * 255).astype(np.uint8)


def sample_grid(model, val: ShardSet, n: int) -> np.ndarray | None:
    """RGB uint8 grid: one row per validation image, gray input | prediction | truth."""
    n = min(n, len(val))
    if n == 0:
        return None
    x, ab = val.take(np.arange(n))
    pred = np.asarray(model.predict_on_batch(model_inputs(model, x)), np.float32)
    ls = x["l"] if "l" in x else val.take_l(np.arange(n))
    if pred.shape[1:3] != ls.shape[1:3]:  # the U-Net predicts at a quarter size: upsample as streamcolor does
        size = (ls.shape[2], ls.shape[1])
        pred = np.stack([cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in pred])
        ab = np.stack([cv2.resize(a, size, interpolation=cv2.INTER_LINEAR) for a in ab])
    rows = []
    for i in range(n):
        l = ls[i]
        cells = [_to_rgb_u8(l, np.zeros_like(ab[i])), _to_rgb_u8(l, pred[i]), _to_rgb_u8(l, ab[i])]
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- fit


def _resumed_init(run_dir: Path, options: FitOptions) -> FitOptions:
    """The options with the ``init`` the run started from, when it resumes: its weights come from its
    checkpoint, so another ``--init`` would only be written into run.json and the bundle as a false
    origin (refused), and none at all keeps the one it started from."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return options
    try:
        started = (json.loads((ckpt / STATE_FILE).read_text()).get("options") or {}).get("init")
    except (OSError, ValueError):
        return options  # (load_checkpoint says what is wrong with it)
    if options.init is None or options.init == started:
        if started and options.init is None:
            log.info("resuming %s, which started from --init %s", run_dir, started)
        return replace(options, init=started)
    raise CheckpointMismatch(
        f"{run_dir} started from {'--init ' + started if started else 'scratch'}, not from --init {options.init}; "
        f"resume it {'with --init ' + started + ' or ' if started else ''}without --init, or fit from "
        f"{options.init} into a new run folder")


def shards_fingerprint(meta: dict[str, Any]) -> str:
    """What identifies a shard set's content: its prepare options and its counts (not its path, which may move)."""
    key = json.dumps({"options": meta.get("options"), "counts": meta.get("counts")}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def fit(shards: str | Path, run_dir: str | Path, *, options: FitOptions = FitOptions()) -> FitResult:
    """Train the colorizer on ``shards`` (from :func:`streamcolor.trainer.data.prepare_shards`).

    Resumes from the newest checkpoint in ``run_dir`` when there is one: the
    weights, the optimizer's moments and iteration counter, the step counter
    and the data position all continue.  Stops at ``options.steps`` /
    ``options.epochs``, when ``options.max_minutes`` have passed, or on
    Ctrl-C, always with a checkpoint; then writes ``colorizer.keras``.

    Raises
    ------
    CheckpointMismatch
        ``run_dir`` holds a checkpoint of another model shape.
    DataError
        The shards are missing, unfinished or empty.
    """
    import keras

    if options.steps is None and options.epochs is None and options.max_minutes is None:
        raise ValueError("give steps, epochs or max_minutes")
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, Path(shards))
    options = _resumed_init(run_dir, options)
    train_set, val_set = ShardSet(shards, "train"), ShardSet(shards, "val")
    seq = ShardBatches(train_set, options.batch_size, seed=options.seed, flip=options.flip)
    batch = seq.batch_size
    per_epoch = len(seq)
    total = options.steps
    limit = "steps"  # what ends the run when it trains to the end: said in its result and run.json
    if options.epochs is not None:
        by_epochs = max(1, math.ceil(options.epochs * per_epoch))
        if total is None or by_epochs < total:
            total, limit = by_epochs, "epochs"

    keras.utils.set_random_seed(options.seed)  # reproducible initial weights
    meta = train_set.meta
    kind = train_set.model
    unet = None
    if kind == "unet":
        config = replace(unet_config(options), encoder=meta.get("extractor", "efficientnet_lite0"))
        if options.init:
            config = _init_config(options.init, config)
            if config.encoder != meta.get("extractor", "efficientnet_lite0"):
                raise ValueError(f"--init {options.init} is built on {config.encoder}, these shards hold the "
                                 f"features of {meta.get('extractor')}: prepare them with --extractor {config.encoder}")
        unet = build_unet_for(config, extractor_weights=meta.get("extractor_weights", "default"),
                              mixed_precision=options.mixed_precision)
        model = unet.train_model()
    else:
        if options.init:
            raise ValueError("--init (fine-tuning) needs U-Net shards (prepare --model unet): the seed "
                             "model's bundles carry no trainable weights")
        model = build_model(train_set.embed_dim, mixed_precision=options.mixed_precision)
    lr = learning_rate(options, total)
    optimizer = (keras.optimizers.AdamW(lr, weight_decay=options.weight_decay) if options.weight_decay > 0
                 else keras.optimizers.Adam(lr))
    model.compile(optimizer=optimizer, loss=make_loss(options, train_set))
    model.optimizer.build(model.trainable_variables)

    run_dir.mkdir(parents=True, exist_ok=True)
    if unet is not None and options.init and latest_checkpoint(run_dir) is None:
        init_weights(unet, options.init)
    step = position = 0
    ckpt = latest_checkpoint(run_dir)
    resumed_from = 0
    if ckpt is not None:
        state = load_checkpoint(ckpt, model)
        step, position = int(state["step"]), int(state["position"])
        resumed_from = step
        before = state.get("options") or {}
        changed = [f"{k} {before[k]} -> {getattr(options, k)}" for k in RESUME_OPTIONS
                   if k in before and before[k] != getattr(options, k)]
        if changed:  # (allowed: a user may mean it; said, so that a forgotten flag is not silent)
            log.warning("resuming %s with other training options than it ran with: %s (from step %d on)", run_dir,
                        ", ".join(changed), step)
        if state.get("batch_size") not in (None, batch):
            position = position * int(state["batch_size"]) // batch  # keep the count of examples seen
            log.warning("batch size changed from %s to %d: data position rescaled to %d", state["batch_size"],
                        batch, position)
        if state.get("extractor") not in (None, meta["extractor"]):
            log.warning("resuming a run trained on extractor %s with shards of %s", state.get("extractor"),
                        meta["extractor"])
        if state.get("shards_fingerprint") not in (None, shards_fingerprint(meta)):
            # Its data position counts examples of the other shards: resumed here it would skip or repeat
            # examples, and its cosine schedule was sized for the other set.
            raise CheckpointMismatch(
                f"{run_dir} was trained on other shards ({state.get('shards')}, prepared with other options or "
                f"photos) than {shards}; resume it with those, or fit these into a new run folder")
        log.info("resumed from %s: step %d, epoch %.2f, optimizer iteration %d", ckpt.name, step,
                 position / per_epoch, int(keras.ops.convert_to_numpy(model.optimizer.iterations)))
    model_extra = {"unet": unet.config.to_json()} if unet is not None else {}
    # what run.json said before this invocation: a rerun that has nothing left to train keeps its figures
    previous = json.loads((run_dir / RUN_FILE).read_text()) if ckpt is not None and (run_dir / RUN_FILE).is_file() \
        else {}
    _write_run(run_dir, shards, meta, options, batch, extra={"status": "running", **model_extra})

    deadline = time.monotonic() + options.max_minutes * 60 if options.max_minutes else None
    started = time.monotonic()
    log_path = run_dir / LOG_FILE
    new_log = not log_path.is_file()
    if not new_log:
        _trim_log(log_path, resumed_from)  # rows a killed run wrote past its last checkpoint come again now
    val_loss: float | None = None
    last_loss: float | None = None
    stopped_by = limit
    window_loss, window_n, window_t = 0.0, 0, 0.0  # window_t: seconds spent fetching and training
    done_examples, train_t = 0, 0.0

    def checkpoint() -> Path:
        nonlocal val_loss
        val_loss = validation_loss(model, val_set, limit=options.val_examples, batch_size=batch)
        grid = sample_grid(model, val_set, options.sample_images) if options.sample_images else None
        if grid is not None:
            _write_png(run_dir / "samples" / f"step-{step:08d}.png", grid)
        loss_now = window_loss / window_n if window_n else last_loss
        state = {"step": step, "position": position, "epoch": position / per_epoch, "batch_size": batch,
                 "seed": options.seed, "extractor": meta["extractor"], "shards": str(shards),
                 "shards_fingerprint": shards_fingerprint(meta),
                 "loss": loss_now, "val_loss": val_loss, "options": asdict(options), "model": kind,
                 "embed_dim": train_set.embed_dim,
                 **({"unet": unet.config.to_json()} if unet is not None else {})}
        path = save_checkpoint(run_dir, model, state, keep=options.keep_checkpoints)
        log.info("step %d: checkpoint %s (val_loss %s)", step, path.name,
                 "-" if val_loss is None else f"{val_loss:.5f}")
        return path

    from tqdm.auto import tqdm

    ckpt_path = None
    with log_path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_LOG_FIELDS)
        if new_log:
            writer.writeheader()

        def log_row(val: float | None) -> None:
            nonlocal window_loss, window_n, window_t, last_loss, logged_step
            now = time.monotonic()
            if window_n:
                last_loss = window_loss / window_n
            writer.writerow({"step": step, "epoch": f"{position / per_epoch:.4f}",
                             "loss": "" if not window_n else f"{last_loss:.6f}",
                             "val_loss": "" if val is None else f"{val:.6f}",
                             "examples_per_s": "" if not window_t else f"{window_n * batch / window_t:.2f}",
                             "lr": f"{_current_lr(model.optimizer):.3g}",
                             "elapsed_s": f"{now - started:.1f}"})
            fh.flush()
            window_loss, window_n, window_t, logged_step = 0.0, 0, 0.0, step

        logged_step = -1
        bar = tqdm(total=total, initial=step, desc="training", unit="step", dynamic_ncols=True, disable=None)
        threads = options.loader_threads or min(8, os.cpu_count() or 1)
        stream = batch_stream(seq, position, prefetch=max(options.prefetch, threads), workers=threads)
        base_iterations = _iterations(model) - step  # so that the optimizer's count says which updates happened
        pending: int | None = None  # the data position of a batch being trained, until it is counted
        try:
            while total is None or step < total:
                if deadline is not None and time.monotonic() >= deadline:
                    stopped_by = "time"
                    break
                t0 = time.monotonic()
                pos, (x, y) = next(stream)
                pending = pos
                loss = float(model.train_on_batch(model_inputs(model, x), y))
                dt = time.monotonic() - t0
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {step + 1}; lower --lr")
                step, position, pending = step + 1, pos + 1, None
                if step > resumed_from + 1:  # the first step compiles: leave it out of the throughput
                    done_examples += batch
                    train_t += dt
                window_loss += loss
                window_n += 1
                window_t += dt
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if step % options.checkpoint_every == 0 or step == total:
                    ckpt_path = checkpoint()
                    log_row(val_loss)
                elif step % options.log_every == 0:
                    log_row(None)
        except KeyboardInterrupt:
            stopped_by = "interrupt"
            if pending is not None and _iterations(model) - base_iterations == step + 1:
                # Ctrl-C landed after the batch's update (one call: it is applied whole or not at all) but
                # before it was counted: count it, so the checkpoint's step matches the weights it holds
                step, position = step + 1, pending + 1
            log.warning("interrupted at step %d: saving a checkpoint", step)
        finally:
            stream.close()
            bar.close()
        if step == resumed_from and ckpt is not None:  # nothing trained in this run (already finished): no new row
            ckpt_path = ckpt
        elif ckpt_path is None or ckpt_path.name != f"ckpt-{step:08d}":
            ckpt_path = checkpoint()
            if logged_step != step:
                log_row(val_loss)

    model_path = save_final_model(unet if unet is not None else model, run_dir, train_set.embed_dim)
    eps = done_examples / train_t if train_t > 0 else None
    kept = {}
    if step == resumed_from and previous and stopped_by == limit:
        # nothing trained now (the run is past --steps already): its own figures and options stay in
        # run.json (and so in an export of it), not this invocation's "-" and --steps
        last_loss = previous.get("loss") if last_loss is None else last_loss
        val_loss = previous.get("val_loss") if val_loss is None else val_loss
        eps = previous.get("examples_per_s")
        kept = {k: previous[k] for k in ("options", "batch_size") if k in previous}
        log.info("nothing to train: %s is at step %d already; its figures and options are kept", run_dir, step)
    result = FitResult(run_dir=run_dir, step=step, epoch=position / per_epoch, loss=last_loss, val_loss=val_loss,
                       examples_per_s=eps, checkpoint=ckpt_path, model=model_path, resumed_from=resumed_from,
                       stopped_by=stopped_by)
    _write_run(run_dir, shards, meta, options, batch, extra={**model_extra,
        "status": "stopped" if stopped_by != limit else "finished", "step": step, "epoch": result.epoch,
        "examples_seen": position * batch, "loss": last_loss, "val_loss": val_loss,
        "examples_per_s": eps, "backend": keras.backend.backend(), "stopped_by": stopped_by, **kept})
    log.info("stopped by %s at step %d (epoch %.2f): loss %s, val_loss %s, %s examples/s; model %s", stopped_by,
             step, result.epoch, _fmt(last_loss), _fmt(val_loss), _fmt(eps, ".1f"), model_path)
    if stopped_by == "interrupt":
        raise KeyboardInterrupt
    return result


def save_final_model(model, run_dir: Path, embed_dim: int) -> Path:
    """Save the weights as a plain float32 colorizer (no optimizer, no mixed
    policy): ``colorizer.keras`` and ``colorizer.weights.h5`` in ``run_dir``.
    ``model`` is the seed's Keras model or a :class:`~streamcolor.trainer.unet.UNet`,
    whose whole graph (L -> a*b*) is saved."""
    import keras

    if hasattr(model, "full_model"):  # a U-Net: save the whole graph, in float32
        trained = model.full_model()
        if any(layer.dtype_policy.name != "float32" for layer in trained.layers):
            from streamcolor.trainer.unet import build_unet
            plain = build_unet(model.config, weights=None).full_model()
            plain.set_weights(trained.get_weights())
        else:
            plain = trained
    elif any(layer.dtype_policy.name != "float32" for layer in model.layers):
        plain = build_model(embed_dim)
        plain.set_weights(model.get_weights())
    else:  # the same layers, without the compiled optimizer
        plain = keras.Model(model.inputs, model.outputs, name=model.name)
    path = run_dir / MODEL_FILE
    tmp = run_dir / f".tmp-{MODEL_FILE}"
    plain.save(tmp)
    os.replace(tmp, path)
    tmpw = run_dir / f".tmp-{WEIGHTS_FILE}"
    plain.save_weights(tmpw)
    os.replace(tmpw, run_dir / WEIGHTS_FILE)
    return path


def is_unet(model) -> bool:
    """Whether a loaded Keras colorizer is the U-Net (one input, L) rather than the seed (L and embedding)."""
    return len(model.inputs) == 1


def load_trained(source: str | Path):
    """A float32 colorizer from a ``.keras`` file, a ``.weights.h5`` file, a
    checkpoint folder or a run folder (its ``colorizer.keras``, else its newest
    checkpoint).  Returns (model, run info dict or {}); for the U-Net the
    model is its whole graph (L -> a*b*) and the info holds ``"model":
    "unet"`` and its configuration under ``"unet"``."""
    import keras

    import streamcolor.engines.keras_layers  # noqa: F401  (registers Fusion)
    from streamcolor.trainer.unet import UNetConfig, build_unet

    source = Path(source)
    info: dict[str, Any] = {}
    run_json = None
    if source.is_dir():
        if (source / STATE_FILE).is_file():  # a checkpoint folder
            state = json.loads((source / STATE_FILE).read_text())
            if state.get("model") == "unet":
                unet = build_unet(UNetConfig.from_json(state["unet"]),
                                  weights=_run_extractor_weights(source.parent.parent))
                unet.train_model().load_weights(source / WEIGHTS_FILE)
                model = unet.full_model()
                info = {"model": "unet", "unet": state["unet"]}
            else:
                model = build_model(int(state["embed_dim"]))
                model.load_weights(source / WEIGHTS_FILE)
            run_json = source.parent.parent / RUN_FILE
            # the checkpoint's own training options (a run resumed later with others records those)
            info.update({k: state[k] for k in ("options", "batch_size") if k in state})
            info.update({"checkpoint": source.name, "step": state["step"], "epoch": state.get("epoch"),
                         "loss": state.get("loss"), "val_loss": state.get("val_loss"),
                         "examples_seen": state["position"] * state.get("batch_size", 0),
                         "backend": state.get("backend")})
        else:
            ckpt = latest_checkpoint(source)
            run_file = source / RUN_FILE
            run_step = json.loads(run_file.read_text()).get("step", -1) if run_file.is_file() else -1
            ckpt_step = json.loads((ckpt / STATE_FILE).read_text())["step"] if ckpt else -1
            if (source / MODEL_FILE).is_file() and run_step >= ckpt_step:
                model = keras.saving.load_model(source / MODEL_FILE, compile=False)
                run_json = source / RUN_FILE
            elif ckpt is not None:  # no final model, or a newer checkpoint (the run was killed)
                return load_trained(ckpt)
            else:
                raise FileNotFoundError(f"{source}: no {MODEL_FILE} and no checkpoint in this folder")
    elif source.suffix == ".keras":
        model = keras.saving.load_model(source, compile=False)
        run_json = source.parent / RUN_FILE
    elif source.name.endswith(".weights.h5"):
        run_json = source.parent / RUN_FILE
        if not run_json.is_file():
            raise FileNotFoundError(f"{source}: a bare weights file needs the {RUN_FILE} beside it (embedding size)")
        run = json.loads(run_json.read_text())
        if run.get("model") == "unet":
            model = build_unet(UNetConfig.from_json(run["unet"]), weights=None).full_model()
        else:
            model = build_model(int(run["embed_dim"]))
        model.load_weights(source)
    else:
        raise ValueError(f"{source}: expected a .keras file, a .weights.h5 file, a checkpoint or a run folder")
    if run_json is not None and run_json.is_file():
        run = json.loads(run_json.read_text())
        if "checkpoint" in info:  # the run's end state does not describe this checkpoint
            for key in ("stopped_by", "status", "examples_per_s"):
                run.pop(key, None)
        info = {**run, **info}  # a checkpoint's own figures win
    if is_unet(model):
        info.setdefault("model", "unet")
    return model, info


def _run_extractor_weights(run_dir: Path) -> str | None:
    run = run_dir / RUN_FILE
    return json.loads(run.read_text()).get("extractor_weights", "default") if run.is_file() else "default"


def init_source(init: str) -> tuple[str, Path]:
    """("bundle", folder) for a shipped model name or a bundle folder; ("run", path) otherwise."""
    from streamcolor.engines import WEIGHTS_DIR, resolve_model

    path = Path(init)
    if "/" not in init and os.sep not in init:  # a plain name is a shipped model first, as `-m NAME` is
        with contextlib.suppress(ValueError):
            shipped = resolve_model(init).path
            if shipped.parent.resolve() == WEIGHTS_DIR.resolve():
                return "bundle", shipped
    if path.exists() and not (path / "model.json").is_file():
        return "run", path
    try:
        return "bundle", resolve_model(init).path
    except ValueError as exc:
        raise ValueError(f"--init {init!r}: not a shipped model, a bundle, a run, a checkpoint or a .keras file") \
            from exc


def _init_config(init: str, asked):
    """The U-Net configuration of the model ``init`` names (a fine-tuned model keeps its shape)."""
    from streamcolor.trainer.unet import TRAINED_WEIGHTS, UNetConfig

    kind, path = init_source(init)
    if kind == "bundle":
        meta = json.loads((path / "model.json").read_text())
        if meta.get("architecture") != "unet" or not (path / TRAINED_WEIGHTS).is_file():
            raise ValueError(f"--init {init}: {path} is not a U-Net bundle with trained weights "
                             f"({TRAINED_WEIGHTS}); only U-Net models can be fine-tuned")
        config = UNetConfig.from_json(meta["unet"])
    else:
        _, info = load_trained(path)
        if info.get("model") != "unet":
            raise ValueError(f"--init {init}: not a U-Net model")
        config = UNetConfig.from_json(info["unet"]) if "unet" in info else unet_config(info.get("options", {}))
    # A fine-tuned model keeps its shape (its trained weights must fit); what only trains differently is asked.
    config = replace(config, train_top=asked.train_top, dropout=asked.dropout)
    shape = {"widths": "--widths", "convs_per_level": "--convs-per-level", "skips": "--skips"}
    default = UNetConfig()
    for field_name, flag in shape.items():
        wanted, kept = getattr(asked, field_name), getattr(config, field_name)
        if wanted != kept and wanted != getattr(default, field_name):
            raise ValueError(f"--init {init} has {field_name} {_plain(kept)}; {flag} {_plain(wanted)} cannot "
                             f"apply: a fine-tuned model keeps its shape (leave {flag} out, or train from scratch)")
    if config != replace(asked, encoder=config.encoder):
        log.info("--init %s: using its shape %s", init, config)
    return config


def _plain(value) -> str:
    """A configuration value as the command line writes it (192,128,64; s16,s8)."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def init_weights(unet, init: str) -> None:
    """Load the trained layers of the model ``init`` names into ``unet`` (fine-tuning start)."""
    from streamcolor.trainer.unet import TRAINED_WEIGHTS, load_trained_npz

    kind, path = init_source(init)
    if kind == "bundle":
        n = load_trained_npz(unet, path / TRAINED_WEIGHTS)
    else:
        model, _ = load_trained(path)
        unet.full_model().set_weights(model.get_weights())
        n = len(model.layers)
    log.info("fine-tuning: started from %s (%d layers)", path, n)


def _check_run_dir(run_dir: Path, shards: Path) -> None:
    """ValueError when ``run_dir`` is a folder of other files than a run's (its log.csv was appended
    to and its run.json rewritten), or the shard folder itself: a run goes into a new or empty
    folder, or its own earlier one (which it resumes)."""
    if run_dir.resolve() == shards.resolve():
        raise ValueError(f"the run folder {run_dir} is the shard folder; give the run a folder of its own (-r)")
    if not run_dir.is_dir() or not any(run_dir.iterdir()) or latest_checkpoint(run_dir) is not None:
        return  # (new, empty, or a run's: its checkpoints are its own, with or without its run.json)
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        run = None
    if not (isinstance(run, dict) and "shards" in run and "options" in run):
        raise ValueError(f"{run_dir} holds files that are not a training run's (no run.json of streamcolor's); "
                         "give the run a new or empty folder (-r), nothing there was touched")


def _write_run(run_dir: Path, shards, meta: dict, options: FitOptions, batch: int, extra: dict) -> None:
    path = run_dir / RUN_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    data = {**old, "shards": str(shards), "model": meta.get("model", "koalarization"), "extractor": meta["extractor"],
            "extractor_weights": meta.get("extractor_weights"), "extractor_size": meta["extractor_size"],
            "embed_dim": meta["embed_dim"], "size": meta["size"], "data_counts": meta.get("counts"),
            "data_sources": meta.get("sources"),
            "batch_size": batch, "options": asdict(options), **extra}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _fmt(x, spec: str = ".5f") -> str:
    return "-" if x is None else format(x, spec)


__all__ = ["FitOptions", "FitResult", "CheckpointMismatch", "DataError", "fit", "build_model",
           "save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints", "load_trained",
           "validation_loss", "sample_grid"]
