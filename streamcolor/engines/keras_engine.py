"""Keras 3 engine: the GPU path where ONNX Runtime has no CUDA provider, and
the reference runtime (it runs a model straight from training).

Backend: Keras picks it once per process, at its first import
(``KERAS_BACKEND``).  When Keras is not imported yet and the variable is
unset, this engine asks for JAX if JAX is installed: JAX/XLA is the backend
with GPU kernels in streamcolor's ``jax`` extra (and runs the same code on the
CPU, which is how the tests exercise this path).  On JAX a call is one
``jax.jit`` of the model (:func:`_jax_call`), compiled per input shape, so a
video's fixed render shape compiles once; other backends use ``predict_on_batch``.

Models: a bundle's ``colorizer.keras`` (and ``extractor.keras``) when it has
them; a shipped U-Net bundle (ONNX only) is rebuilt from its ``model.json``
configuration, the ImageNet Lite0 weights (``streamcolor/trainer/weights``; the trainer registers the builder, see BUILDERS_GROUP)
and the bundle's ``unet-trained.npz`` (the layers training changed).

Batches on a GPU: JAX compiles the model once per input shape, and a compile
costs seconds, so a job whose calls come in many batch sizes (a video's last
batch, a folder's shape groups) would spend more time compiling than computing.
On a GPU the engine therefore runs a batch of N as chunks of at most
:attr:`KerasEngine.chunk_rows` (:data:`GPU_BATCH`), each padded up to the next power
of two (:func:`batch_bucket`): at most seven compiled batch sizes per image shape,
for rows that cost the GPU next to nothing.  Up to :data:`MAX_IN_FLIGHT` chunks are
dispatched before the first result is read (JAX runs a call asynchronously), so one
chunk's copy to the GPU can overlap the previous chunk's network instead of waiting
for it; a call of one chunk (a video's batch of 64) still copies, computes and reads
back in series (on the H200, chunks of 32 were slower than 64 at batch 64 and above:
``benchmarks/results/pipeline-gpu-h200-2026-11-30-overlap.json``).
On a CPU every row costs its full time, so batches run as given.

Precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (Keras mixed precision:
compute in 16 bits, weights and outputs in float32), or ``"auto"``: bf16 on a
GPU, fp32 on a CPU (most CPUs have no fast 16-bit convolutions).

Copies to the GPU (JAX): each input is copied as :attr:`KerasEngine.transfer`, float32 by
default or ``"bfloat16"`` / ``"float16"`` (half the bytes; cast back to float32 on the GPU,
before the network, which computes in 16 bits under bf16/fp16 anyway; under fp32 a 16-bit
copy rounds the input), split over :attr:`KerasEngine.copy_threads` threads when more
than one (the cast and the copy of each part of the rows run in parallel; the parts are
joined on the GPU).  On the H200 a batch-64 call at 256 x 256 spent about a third of its
time copying 16.8 MB of float32 L from pageable memory, one thread at a time; in one
measurement :data:`GPU_COPY_THREADS` threads took batch 64 from 8,799 to 10,510 images/s
(256: 11,240 to 12,670), while 16-bit copies were slower (likely the cast on the CPU):
``benchmarks/results/pipeline-gpu-h200-2026-11-30-copies.json``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from streamcolor.engines.base import Engine, EngineError, ModelInfo

log = logging.getLogger(__name__)

#: precision name -> Keras dtype policy.
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
#: Frames per engine call on a GPU: enough to fill it at render 256-320 without a long wait for the first.
GPU_BATCH = 64
#: Threads that copy a batch's inputs to a GPU (JAX): of 1, 4 and 8, 4 did best in one measurement on the H200.
GPU_COPY_THREADS = 4
#: Bytes a copy thread takes at least: a smaller input is copied by fewer threads (a 256 x 256 row
#: of float32 L is 256 KiB; the threads and the join on the GPU cost tens of microseconds).
MIN_COPY_PART = 1 << 20
#: Dtypes the engine can copy its inputs to the GPU in (see :attr:`KerasEngine.transfer`).
TRANSFERS = ("float32", "bfloat16", "float16")
#: Chunks of one call on the device at once (the H200 figures ran batches of up to 4 chunks).
MAX_IN_FLIGHT = 4


def _import_keras():
    """Import Keras, choosing JAX as its backend when nothing else was chosen."""
    if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("jax"):
        os.environ["KERAS_BACKEND"] = "jax"
    try:
        import keras
    except ImportError as exc:
        raise ImportError("the Keras engine needs Keras 3 and a backend: pip install 'streamcolor[jax]' "
                          "(or 'streamcolor[train]' for TensorFlow)") from exc
    return keras


def on_gpu(keras) -> bool:
    """Whether Keras' backend computes on a GPU here."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # a backend that cannot list its devices runs on the CPU
        return False
    return False


class KerasEngine(Engine):
    """Runs ``extractor.keras`` and ``colorizer.keras`` of a bundle (``colorizer.keras``
    alone for a one-graph model, or the U-Net rebuilt from its weights)."""

    backend = "keras"

    def __init__(self, info: ModelInfo, *, colorizer_file: str = "colorizer.keras",
                 extractor_file: str = "extractor.keras", precision: str = "auto",
                 pad_batches: bool | None = None):
        """``pad_batches``: run batches as :func:`batch_bucket` sizes (see the module's
        docstring); ``None``: on a GPU only."""
        super().__init__(info)
        keras = _import_keras()
        import streamcolor.engines.keras_layers  # noqa: F401  (registers the fusion layer for loading)

        self.gpu = on_gpu(keras)
        self.pad_batches = self.gpu if pad_batches is None else bool(pad_batches)
        self._jax = keras.backend.backend() == "jax"
        self.chunk_rows = GPU_BATCH
        self.transfer = "float32"
        self.copy_threads = GPU_COPY_THREADS if self.gpu and self._jax else 1
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_lock = threading.Lock()  # (callers may share the engine across threads)
        if precision == "auto":
            precision = "bf16" if self.gpu else "fp32"
        if precision not in POLICIES:
            raise ValueError(f"unknown precision {precision!r} for the Keras engine; choose from "
                             f"{['auto', *POLICIES]}")
        self.precision = precision
        if colorizer_file == "colorizer.keras" and extractor_file == "extractor.keras" and not can_run(info):
            raise EngineError(f"{info.path}: {info.name} ships ONNX graphs only, which the Keras engine cannot "
                              "run (it runs bundles with .keras files, or the U-Net rebuilt from its weights); "
                              "use --backend onnx")
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(POLICIES[precision])
        try:
            if not info.two_stage and not (info.path / colorizer_file).is_file():
                self._extractor, self._colorizer = None, _rebuild(info)
            else:
                self._extractor = (keras.saving.load_model(info.file(extractor_file), compile=False)
                                   if info.two_stage else None)
                self._colorizer = keras.saving.load_model(info.file(colorizer_file), compile=False)
        except EngineError:
            raise
        except ImportError as exc:
            raise EngineError(f"{info.path}: the Keras engine cannot rebuild this model: {exc}") from exc
        except Exception as exc:
            raise EngineError(f"{info.path}: Keras cannot load the model: {exc}") from exc
        finally:
            keras.config.set_dtype_policy(previous)
        if self._jax:
            _keep_compiled_programs()
        inference = _jax_call if self._jax else (lambda model: model.predict_on_batch)
        # from here on, each model is kept as its inference function
        self._extractor = inference(self._extractor) if self._extractor is not None else None
        self._colorizer = inference(self._colorizer)
        log.info("Keras engine %s on %s (%s), %s", info.name, keras.backend.backend(),
                 "GPU" if self.gpu else "CPU", precision)

    @property
    def name(self) -> str:
        return f"keras-{'gpu' if self.gpu else 'cpu'}-{self.precision}:{self.info.name}"

    @property
    def chunk_rows(self) -> int:
        """Rows per dispatched chunk when :attr:`pad_batches` (see the module's docstring)."""
        return self._chunk_rows

    @chunk_rows.setter
    def chunk_rows(self, value: int) -> None:
        self._chunk_rows = _count("chunk_rows", value)

    @property
    def copy_threads(self) -> int:
        """Threads that cast and copy an input's rows to the device (JAX only; 1: the calling
        thread; :data:`GPU_COPY_THREADS` on a GPU)."""
        return self._copy_threads

    @copy_threads.setter
    def copy_threads(self, value: int) -> None:
        self._copy_threads = _count("copy_threads", value)

    @property
    def transfer(self) -> str:
        """Dtype of the inputs' copies to the device, one of :data:`TRANSFERS` (JAX only; a 16-bit
        copy rounds the input, which a bf16/fp16 network does anyway, an fp32 one does not)."""
        return self._transfer

    @transfer.setter
    def transfer(self, value: str) -> None:
        if value not in TRANSFERS:
            raise ValueError(f"transfer {value!r}: choose from {TRANSFERS}")
        self._transfer = value

    @property
    def preferred_batch_size(self) -> int:
        return GPU_BATCH if self.gpu else super().preferred_batch_size

    @property
    def on_gpu(self) -> bool:
        return self.gpu

    def forward(self, l: np.ndarray) -> np.ndarray:
        self._check_open()
        if self.info.two_stage:
            return super().forward(l)
        return self._run(self._colorizer, l)

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        self._check_open()
        if self._extractor is None:
            return super().embed(l_ext)
        return self._run(self._extractor, l_ext)

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        self._check_open()
        if not self.info.two_stage:
            return super().colorize(l, embedding)
        return self._run(self._colorizer, l, embedding)

    def _run(self, fn, *inputs: np.ndarray) -> np.ndarray:
        """A model's inference function ``fn`` on ``inputs`` (each (N, ...)), in float32; as padded
        chunks of :attr:`chunk_rows` when :attr:`pad_batches`, up to :data:`MAX_IN_FLIGHT` of them
        dispatched before the oldest is read."""
        xs = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]

        def call(batch: list[np.ndarray]):
            if self._jax and (self.transfer != "float32" or self.copy_threads > 1):
                batch = [self._to_device(x) for x in batch]
            return fn(batch[0] if len(batch) == 1 else batch)

        if not self.pad_batches:
            return _as_f32(call(xs))
        n, cap, pending, outs = len(xs[0]), self.chunk_rows, [], []
        for i in range(0, n, cap):
            chunk = [x[i:i + cap] for x in xs]
            k = len(chunk[0])
            extra = batch_bucket(k, cap) - k
            if extra:
                chunk = [np.concatenate([c, np.zeros((extra, *c.shape[1:]), np.float32)]) for c in chunk]
            if len(pending) == MAX_IN_FLIGHT:  # (so that a huge batch does not sit on the device whole)
                y, kept = pending.pop(0)
                outs.append(_as_f32(y)[:kept])
            pending.append((call(chunk), k))  # on JAX: queued, not waited for
        outs += [_as_f32(y)[:k] for y, k in pending]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _to_device(self, x: np.ndarray):
        """``x`` on JAX's default device, copied as :attr:`transfer` by :attr:`copy_threads` threads."""
        import jax
        import jax.numpy as jnp

        dtype = jnp.dtype(self.transfer)

        def put(part: np.ndarray):
            return jax.device_put(part.astype(dtype, copy=False))

        n = min(self.copy_threads, len(x), max(1, x.nbytes // MIN_COPY_PART))
        if n <= 1:
            return put(x)
        with self._pool_lock:
            if self._pool is None or self._pool_size < n:
                # a smaller pool is dropped, not shut down: a call in another thread may still be
                # handing it parts (its idle threads end once nothing refers to it)
                self._pool, self._pool_size = ThreadPoolExecutor(n, thread_name_prefix="streamcolor-copy"), n
            pool = self._pool
        cuts = np.linspace(0, len(x), n + 1).astype(int)
        return jnp.concatenate(list(pool.map(put, [x[a:b] for a, b in zip(cuts[:-1], cuts[1:])])))

    def close(self) -> None:
        self.closed = True
        self._extractor = self._colorizer = None
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


def _keep_compiled_programs() -> None:
    """Keep JAX's compiled programs on disk between runs: ``$STREAMCOLOR_CACHE/jax``
    (``~/.cache/streamcolor/jax``), unless the user named a folder (``JAX_COMPILATION_CACHE_DIR``).

    Why: JAX compiles the network once per input shape and batch size, in every process, and on
    a GPU XLA times candidate kernels while it compiles: on the H200 the engine-only figure
    (three batch sizes at 256 x 256, each timed in milliseconds) took 63 s, nearly all of it
    compiling (``benchmarks/results/pipeline-gpu-h200-2026-12-04.json``). With the programs
    kept, a later run of ``streamcolor`` on the same machine loads them instead (JAX keeps only
    those that took a second or more to compile)."""
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own folder (or an earlier engine's)
        return
    from streamcolor.engines.select import CACHE_DIR

    folder = CACHE_DIR / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):  # (JAX would warn at every compile)
            raise PermissionError(13, "not writable")
    except OSError as exc:  # a read-only home: compiled in each run, as before
        log.info("JAX's compiled programs are not kept between runs (%s: %s)", folder, exc.strerror or exc)
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    log.debug("JAX's compiled programs are kept in %s", folder)


def _jax_call(model):
    """``model``'s inference on JAX as one jitted function of the inputs, its weights bound once.

    Why not ``predict_on_batch``: per call, Keras gathers every variable of the model (about
    260 for the U-Net) into a state, runs, then assigns them all back, in Python: a few
    milliseconds a call, which on a GPU is most of a small batch's time (on the H200, batch 1
    ran at 170 images/s through it).  ``stateless_call`` under ``jax.jit`` computes the same
    graph with the weights passed as arrays that stay on the device."""
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def f32(x):  # inputs copied in 16 bits (KerasEngine.transfer) become float32 here, on the device
        return [jnp.asarray(a, jnp.float32) for a in x] if isinstance(x, list) else jnp.asarray(x, jnp.float32)

    run = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, f32(x), training=False)[0])
    return lambda x: run(trainable, frozen, x)


def _count(name: str, value: object) -> int:
    """``value`` as a count of at least 1, or a ValueError that names the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def batch_bucket(n: int, cap: int = GPU_BATCH) -> int:
    """The batch size a chunk of ``n`` (1..``cap``) rows runs as: the next power of two, at most ``cap``."""
    if not 1 <= n <= cap:
        raise ValueError(f"a chunk holds 1 to {cap} rows, not {n}")
    return min(cap, 1 << (n - 1).bit_length())


def _as_f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


#: Entry-point group of functions ``(ModelInfo) -> keras.Model`` that rebuild a bundle's model
#: by architecture name, for bundles shipped without ``.keras`` files (streamcolor's trainer
#: registers "unet"; this package imports no training code itself).
BUILDERS_GROUP = "streamcolor.keras_models"


def can_run(info: ModelInfo) -> bool:
    """Whether the Keras engine can run this bundle: it ships its ``.keras`` files, or it is a
    one-graph model whose architecture has a registered builder (the U-Net).  A two-graph bundle
    shipped as ONNX only (the seed model) cannot be rebuilt."""
    if info.two_stage:
        return all((info.path / f).is_file() for f in ("colorizer.keras", "extractor.keras"))
    if (info.path / "colorizer.keras").is_file():
        return True
    from importlib.metadata import entry_points

    return bool(entry_points(group=BUILDERS_GROUP, name=info.architecture))


def _rebuild(info: ModelInfo):
    """The bundle's model rebuilt by the builder registered for its architecture."""
    from importlib.metadata import entry_points

    found = entry_points(group=BUILDERS_GROUP, name=info.architecture)
    if not found:
        raise EngineError(f"{info.path}: no colorizer.keras, and no Keras builder for architecture "
                          f"{info.architecture!r} is installed (entry point group {BUILDERS_GROUP}; "
                          "reinstall streamcolor: pip install -e . / pip install streamcolor)")
    return next(iter(found)).load()(info)
