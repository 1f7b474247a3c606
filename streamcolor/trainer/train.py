"""Fit the colorizer on prepared shards, with checkpoints and exact resume.

method.md: MSE loss on a*b* in [-1, 1], Adam with learning rate 1e-3, batch
100, a checkpoint every N steps, resume from the latest checkpoint, a few
validation images colorized at each checkpoint.

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

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
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
    stopped_by: str  # "steps", "time" or "interrupt"


# --------------------------------------------------------------------------- model


def build_model(embed_dim: int, *, mixed_precision: bool = False):
    """The colorizer, not compiled.  Under ``mixed_precision`` its layers
    compute in bfloat16 except :data:`FLOAT32_LAYERS`, whose policy is set
    back to float32 (the tanh output); weights stay float32 either way, so
    checkpoints do not depend on the precision."""
    import keras

    from streamcolor.trainer.model import build_colorizer

    if not mixed_precision:
        return build_colorizer(embed_dim)
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_colorizer(embed_dim)
    finally:
        keras.mixed_precision.set_global_policy(old)
    for name in FLOAT32_LAYERS:
        model.get_layer(name).dtype_policy = "float32"
    return model


def _learning_rate(options: FitOptions, total_steps: int | None):
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
    state = {**state, "embed_dim": int(model.inputs[1].shape[-1]),
             "weight_shapes": _shapes(model.weights), "optimizer_slots": [v.path for v in slots],
             "backend": keras.backend.backend(), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
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
    embed_dim = int(model.inputs[1].shape[-1])
    if state.get("embed_dim") != embed_dim:
        raise CheckpointMismatch(
            f"{path} is a checkpoint of a colorizer with embedding size {state.get('embed_dim')} "
            f"(extractor {state.get('extractor')!r}); these shards give embedding size {embed_dim}. "
            "Use another --run-dir for a different extractor.")
    if state.get("weight_shapes") != _shapes(model.weights):
        raise CheckpointMismatch(f"{path} holds weights of another model shape than this colorizer; "
                                 "use another --run-dir")
    try:
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


def validation_loss(model, val: ShardSet, *, limit: int, batch_size: int) -> float | None:
    """Mean MSE over the first ``limit`` validation examples (None if none)."""
    n = min(limit, len(val))
    if n == 0:
        return None
    total = 0.0
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(n, i + batch_size))
        x, ab = val.take(idx)
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
    pred = np.asarray(model.predict_on_batch(x), np.float32)
    rows = []
    for i in range(n):
        l = x["l"][i]
        cells = [_to_rgb_u8(l, np.zeros_like(ab[i])), _to_rgb_u8(l, pred[i]), _to_rgb_u8(l, ab[i])]
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- fit


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
    train_set, val_set = ShardSet(shards, "train"), ShardSet(shards, "val")
    seq = ShardBatches(train_set, options.batch_size, seed=options.seed, flip=options.flip)
    batch = seq.batch_size
    per_epoch = len(seq)
    total = options.steps
    if options.epochs is not None:
        by_epochs = max(1, math.ceil(options.epochs * per_epoch))
        total = by_epochs if total is None else min(total, by_epochs)

    keras.utils.set_random_seed(options.seed)  # reproducible initial weights
    model = build_model(train_set.embed_dim, mixed_precision=options.mixed_precision)
    model.compile(optimizer=keras.optimizers.Adam(_learning_rate(options, total)), loss="mse")
    model.optimizer.build(model.trainable_variables)

    run_dir.mkdir(parents=True, exist_ok=True)
    meta = train_set.meta
    step = position = 0
    ckpt = latest_checkpoint(run_dir)
    resumed_from = 0
    if ckpt is not None:
        state = load_checkpoint(ckpt, model)
        step, position = int(state["step"]), int(state["position"])
        resumed_from = step
        if state.get("batch_size") not in (None, batch):
            position = position * int(state["batch_size"]) // batch  # keep the count of examples seen
            log.warning("batch size changed from %s to %d: data position rescaled to %d", state["batch_size"],
                        batch, position)
        if state.get("extractor") not in (None, meta["extractor"]):
            log.warning("resuming a run trained on extractor %s with shards of %s", state.get("extractor"),
                        meta["extractor"])
        log.info("resumed from %s: step %d, epoch %.2f, optimizer iteration %d", ckpt.name, step,
                 position / per_epoch, int(keras.ops.convert_to_numpy(model.optimizer.iterations)))
    _write_run(run_dir, shards, meta, options, batch, extra={"status": "running"})

    deadline = time.monotonic() + options.max_minutes * 60 if options.max_minutes else None
    started = time.monotonic()
    log_path = run_dir / LOG_FILE
    new_log = not log_path.is_file()
    val_loss: float | None = None
    last_loss: float | None = None
    stopped_by = "steps"
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
                 "loss": loss_now, "val_loss": val_loss, "options": asdict(options)}
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
        bar = tqdm(total=total, initial=step, desc="training", unit="step", dynamic_ncols=True)
        threads = options.loader_threads or min(8, os.cpu_count() or 1)
        stream = batch_stream(seq, position, prefetch=max(options.prefetch, threads), workers=threads)
        try:
            while total is None or step < total:
                if deadline is not None and time.monotonic() >= deadline:
                    stopped_by = "time"
                    break
                t0 = time.monotonic()
                pos, (x, y) = next(stream)
                loss = float(model.train_on_batch(x, y))
                dt = time.monotonic() - t0
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {step + 1}; lower --lr")
                step, position = step + 1, pos + 1
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
            log.warning("interrupted at step %d: saving a checkpoint", step)
        finally:
            stream.close()
            bar.close()
        if ckpt_path is None or ckpt_path.name != f"ckpt-{step:08d}":
            ckpt_path = checkpoint()
            if logged_step != step:
                log_row(val_loss)

    model_path = save_final_model(model, run_dir, train_set.embed_dim)
    eps = done_examples / train_t if train_t > 0 else None
    result = FitResult(run_dir=run_dir, step=step, epoch=position / per_epoch, loss=last_loss, val_loss=val_loss,
                       examples_per_s=eps, checkpoint=ckpt_path, model=model_path, resumed_from=resumed_from,
                       stopped_by=stopped_by)
    _write_run(run_dir, shards, meta, options, batch, extra={
        "status": "stopped" if stopped_by != "steps" else "finished", "step": step, "epoch": result.epoch,
        "examples_seen": position * batch, "loss": last_loss, "val_loss": val_loss,
        "examples_per_s": eps, "backend": keras.backend.backend(), "stopped_by": stopped_by})
    log.info("stopped by %s at step %d (epoch %.2f): loss %s, val_loss %s, %s examples/s; model %s", stopped_by,
             step, result.epoch, _fmt(last_loss), _fmt(val_loss), _fmt(eps, ".1f"), model_path)
    if stopped_by == "interrupt":
        raise KeyboardInterrupt
    return result


def save_final_model(model, run_dir: Path, embed_dim: int) -> Path:
    """Save the weights as a plain float32 colorizer (no optimizer, no mixed
    policy): ``colorizer.keras`` and ``colorizer.weights.h5`` in ``run_dir``."""
    import keras

    if any(layer.dtype_policy.name != "float32" for layer in model.layers):
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


def load_trained(source: str | Path):
    """A float32 colorizer from a ``.keras`` file, a ``.weights.h5`` file, a
    checkpoint folder or a run folder (its ``colorizer.keras``, else its newest
    checkpoint).  Returns (model, run info dict or {})."""
    import keras

    import streamcolor.engines.keras_layers  # noqa: F401  (registers Fusion)

    source = Path(source)
    info: dict[str, Any] = {}
    run_json = None
    if source.is_dir():
        if (source / STATE_FILE).is_file():  # a checkpoint folder
            state = json.loads((source / STATE_FILE).read_text())
            model = build_model(int(state["embed_dim"]))
            model.load_weights(source / WEIGHTS_FILE)
            run_json = source.parent.parent / RUN_FILE
            info = {"checkpoint": source.name, "step": state["step"], "epoch": state.get("epoch"),
                    "loss": state.get("loss"), "val_loss": state.get("val_loss"),
                    "examples_seen": state["position"] * state.get("batch_size", 0), "backend": state.get("backend")}
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
        model = build_model(int(json.loads(run_json.read_text())["embed_dim"]))
        model.load_weights(source)
    else:
        raise ValueError(f"{source}: expected a .keras file, a .weights.h5 file, a checkpoint or a run folder")
    if run_json is not None and run_json.is_file():
        run = json.loads(run_json.read_text())
        if "checkpoint" in info:  # the run's end state does not describe this checkpoint
            for key in ("stopped_by", "status", "examples_per_s"):
                run.pop(key, None)
        info = {**run, **info}  # a checkpoint's own figures win
    return model, info


def _write_run(run_dir: Path, shards, meta: dict, options: FitOptions, batch: int, extra: dict) -> None:
    path = run_dir / RUN_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    data = {**old, "shards": str(shards), "extractor": meta["extractor"],
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
