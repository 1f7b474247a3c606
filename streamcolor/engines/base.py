"""The one small interface every runtime implements.

A model on disk is a *bundle*: a folder with ``model.json`` (metadata) and the
exported graphs.  An :class:`Engine` owns its runtime session(s), built once
in the constructor, and turns batches of L into batches of a*b*.  The one call
every caller needs is

* ``predict(l)``: (N, H, W, 1) L in [-1, 1], H and W multiples of 8 ->
  (N, h, w, 2) a*b* in [-1, 1].  ``h, w`` is the model's output grid: the
  input size for the seed model, a quarter of it for the U-Net; callers
  upsample a*b* to the full-resolution image anyway.  A model whose grid is
  coarser than its input names in ``model.json`` how that grid is brought up
  to the input size (``"guided_upsampling"``, :mod:`streamcolor.engines.guided`):
  ``refine(l, ab)`` does it, after any work that is cheaper on the grid
  (a video's temporal smoothing).

Two architectures (``model.json`` ``"architecture"``):

* ``"koalarization"`` (method.md, the seed model): two graphs, a frozen
  classifier (``embed(l_ext)``: (N, S, S, 1) letterboxed L -> (N, E) logits)
  and the colorizer (``colorize(l, embedding)``).  The split lets video reuse
  one embedding across a scene and lets training precompute embeddings once;
  ``reuses_embedding`` is True and ``predict(l, embedding)`` accepts one.
* ``"unet"``: one graph, L -> a*b*, in which the ImageNet classifier is also
  the encoder: its feature maps are the U-Net's skips and its logits the
  embedding, all from one forward pass, so there is nothing to reuse.  Its
  input sides must be multiples of ``size_multiple`` (32); ``predict`` pads
  other multiples of 8 by edge replication and crops the output.
"""

from __future__ import annotations

import json
import logging
from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamcolor.engines import lab
from streamcolor.engines.guided import GuidedUpsampling, WorkArrays, refine_batch

log = logging.getLogger(__name__)

MANIFEST = "model.json"
BUNDLE_FORMAT = 1
#: Architectures a bundle can hold (``model.json`` ``"architecture"``; absent means the seed's).
KOALARIZATION, UNET = "koalarization", "unet"
ARCHITECTURES = (KOALARIZATION, UNET)
#: Images per engine call on a CPU (see :attr:`Engine.preferred_batch_size`).
CPU_BATCH = 8
#: Frames per engine call in a video job on a CPU (see :attr:`Engine.video_batch_size`).
CPU_VIDEO_BATCH = 2
_OWN_KEYS = {"format", "name", "extractor", "extractor_size", "embed_dim", "files", "architecture",
             "size_multiple", "guided_upsampling"}


class EngineError(RuntimeError):
    """A model bundle cannot be loaded or run."""


def interrupted(exc: BaseException) -> bool:
    """Whether a Ctrl-C (or SIGTERM turned into one) lies behind ``exc``, in its causes or contexts.

    Why: a native module whose initialization runs Python code turns an interruption that lands
    there into another error: pybind11's modules (ONNX Runtime's) raise ``ImportError("initialization
    failed")`` from the KeyboardInterrupt.  Taken at its word, a job stopped with SIGTERM as it loaded
    its engine said "error: initialization failed", exit 2, or fell back to another runtime and went on."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return False


@dataclass(frozen=True)
class ModelInfo:
    """What ``model.json`` says about a bundle."""

    path: Path  # the bundle folder
    name: str
    extractor: str  # e.g. "efficientnet_lite0"
    extractor_size: int  # square input side of the extractor, pixels
    embed_dim: int  # length of the embedding
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    meta: dict[str, Any] = field(default_factory=dict)  # training, quality, licence...
    architecture: str = KOALARIZATION  # "koalarization" (two graphs) or "unet" (one graph)
    size_multiple: int = lab.SIZE_MULTIPLE  # input sides must be multiples of this
    guided: GuidedUpsampling | None = None  # how the a*b* grid is brought up to the input size

    @property
    def two_stage(self) -> bool:
        """Whether the bundle has a separate extractor graph (embeddings can be reused)."""
        return self.architecture == KOALARIZATION

    @classmethod
    def load(cls, path: str | Path) -> "ModelInfo":
        path = Path(path)
        manifest = path / MANIFEST if path.is_dir() else path
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError as exc:
            if (path / "run.json").is_file() or (path / "state.json").is_file():  # (trainer's run and checkpoint)
                raise EngineError(f"{path}: a training run or checkpoint, not a model bundle; export it first: "
                                  f"streamcolor train export {path} BUNDLE") from exc
            raise EngineError(f"{path}: not a model bundle (no {MANIFEST})") from exc
        except (OSError, ValueError) as exc:  # (ValueError: JSON errors, and bytes that are not UTF-8 text)
            if manifest.name != MANIFEST:  # e.g. -m photo.jpg
                raise EngineError(f"{path}: not a model bundle: give a bundle folder (holding {MANIFEST}) "
                                  "or a shipped model's name") from exc
            raise EngineError(f"{manifest}: unreadable model manifest: {exc}") from exc
        if not isinstance(data, dict):
            raise EngineError(f"{manifest}: not a model manifest (a JSON object is expected, "
                              f"this is a JSON {type(data).__name__})")
        if data.get("format") != BUNDLE_FORMAT:
            raise EngineError(
                f"{manifest}: bundle format {data.get('format')!r}, this streamcolor reads {BUNDLE_FORMAT}"
            )
        architecture = data.get("architecture", KOALARIZATION)
        if architecture not in ARCHITECTURES:
            raise EngineError(f"{manifest}: architecture {architecture!r}, this streamcolor reads {ARCHITECTURES}")
        try:
            _check_manifest_values(data)
        except (TypeError, ValueError) as exc:
            raise EngineError(f"{manifest}: {exc}") from exc
        try:
            return cls(
                path=manifest.parent,
                name=str(data["name"]),
                extractor=str(data["extractor"]),
                extractor_size=int(data.get("extractor_size", 0) if architecture == UNET
                                   else data["extractor_size"]),
                embed_dim=int(data["embed_dim"]),
                files=dict(data.get("files", {})),
                meta={k: v for k, v in data.items() if k not in _OWN_KEYS},
                architecture=architecture,
                size_multiple=int(data.get("size_multiple", lab.SIZE_MULTIPLE)),
                guided=GuidedUpsampling.from_json(data.get("guided_upsampling")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{manifest}: incomplete model manifest: {exc}") from exc

    def file(self, name: str) -> Path:
        """Path of one file of the bundle; raises EngineError if it is missing."""
        p = self.path / name
        if not p.is_file():
            raise EngineError(f"model bundle {self.path} has no {name}")
        return p

    def dump(self) -> dict[str, Any]:
        """The manifest as a dict (inverse of :meth:`load`)."""
        own = {"format": BUNDLE_FORMAT, "name": self.name, "architecture": self.architecture,
               "extractor": self.extractor, "extractor_size": self.extractor_size,
               "embed_dim": self.embed_dim, "size_multiple": self.size_multiple, "files": self.files}
        if self.guided is not None:
            own["guided_upsampling"] = {"radius": self.guided.radius, "eps": self.guided.eps}
        return {**own, **self.meta}


def _check_manifest_values(data: dict[str, Any]) -> None:
    """TypeError / ValueError naming the first value of ``model.json`` that no
    engine or job could use.  Checked when the bundle is loaded, so a hand-edited
    manifest (``"render_size": "big"``, ``"variants": [...]``) is refused in one
    line by every verb, before a job creates its output folder, instead of a
    traceback from wherever the value is first read."""
    for key in ("extractor_size", "embed_dim", "size_multiple"):
        value = data.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
    multiple = data.get("size_multiple", lab.SIZE_MULTIPLE)
    if multiple < lab.SIZE_MULTIPLE or multiple % lab.SIZE_MULTIPLE:
        raise ValueError(f"size_multiple must be a multiple of {lab.SIZE_MULTIPLE} (8, 16, 32...), got {multiple}")
    lab.check_render_size(data.get("render_size"))
    lab.check_saturation(data.get("saturation"))
    for key in ("files", "variants"):
        value = data.get(key)
        if value is not None and not (isinstance(value, dict)
                                      and all(isinstance(v, dict if key == "variants" else str)
                                              for v in value.values())):
            kind = "name -> record objects" if key == "variants" else "file name -> sha256 strings"
            raise ValueError(f"{key} must be a JSON object of {kind}, got {value!r:.80}")


class Engine(ABC):
    """A loaded model on one runtime.  Subclasses set :attr:`backend`."""

    backend: str = "?"
    #: Set by :meth:`close`: the engine's sessions are gone.
    closed: bool = False

    def __init__(self, info: ModelInfo):
        self.info = info

    @property
    def name(self) -> str:
        """``backend:model`` (plus precision where a subclass has several)."""
        return f"{self.backend}:{self.info.name}"

    @property
    def extractor_size(self) -> int:
        return self.info.extractor_size

    @property
    def size_multiple(self) -> int:
        """Input sides the graph takes must be multiples of this (8 or 32)."""
        return self.info.size_multiple

    @property
    def preferred_batch_size(self) -> int:
        """Images per engine call that keep this runtime busy without hurting latency:
        :data:`CPU_BATCH` on CPUs (bigger batches gain little there); engines on a GPU
        return more.  Photo batch jobs use it when the caller sets no batch size; video
        jobs use :attr:`video_batch_size`."""
        return CPU_BATCH

    @property
    def on_gpu(self) -> bool:
        """Whether this engine runs on a GPU (its batch sizes then are the GPU's, see
        :attr:`video_batch_size`)."""
        return False

    @property
    def video_batch_size(self) -> int:
        """Frames per engine call in a video job when the caller sets none.

        On a CPU the engine shares the cores with the decoder, the encoder and the
        compose threads, and a batch's activations (about 2.6 MB a 320x256 frame in the
        U-Net's first layers) evict what those need from the caches: in
        ``benchmarks.pipeline_bound`` batch 2 gives more frames/s, with less CPU time,
        than :data:`CPU_BATCH`, although the engine alone is a little faster at 8.
        Engines on a GPU (:attr:`on_gpu`) use their :attr:`preferred_batch_size`."""
        return self.preferred_batch_size if self.on_gpu else min(self.preferred_batch_size, CPU_VIDEO_BATCH)

    @property
    def reuses_embedding(self) -> bool:
        """Whether :meth:`embed` exists and ``predict(l, embedding)`` can skip the classifier."""
        return self.info.two_stage

    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) float32 L in [-1, 1] -> (N, E) float32 embedding (two-graph models)."""
        self._check_open()
        raise EngineError(f"{self.name}: a one-graph model computes its embedding inside predict()")

    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) L in [-1, 1] and (N, E) embedding -> (N, H, W, 2) a*b* in [-1, 1] (two-graph models)."""
        self._check_open()
        raise EngineError(f"{self.name}: a one-graph model has no separate colorizer; use predict()")

    def forward(self, l: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) L in [-1, 1], sides multiples of :attr:`size_multiple` ->
        (N, h, w, 2) a*b* in [-1, 1] (one-graph models)."""
        self._check_open()
        raise EngineError(f"{self.name}: a two-graph model runs embed() and colorize()")

    def extractor_input(self, l: np.ndarray) -> np.ndarray:
        """Letterbox a batch (N, H, W, 1) of scaled L to (N, S, S, 1) for :meth:`embed`."""
        return np.stack([lab.letterbox(x[..., 0], self.extractor_size) for x in l])[..., None]

    def predict(self, l: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W, 1) L in [-1, 1] (H, W multiples of 8) -> (N, h, w, 2) a*b* in [-1, 1].

        ``embedding`` (N, E), when given, is reused instead of running the
        classifier (two-graph models only; see :attr:`reuses_embedding`).
        """
        self._check_open()
        l = check_l_batch(l)
        if self.info.two_stage:
            if embedding is None:
                if not len(l):  # (an empty batch: letterboxing stacks no image)
                    return np.zeros((0, *l.shape[1:3], 2), np.float32)
                embedding = self.embed(self.extractor_input(l))
            return self.colorize(l, embedding)
        if embedding is not None:
            raise ValueError(f"{self.name} computes its embedding in its one graph; pass no embedding")
        h, w = l.shape[1:3]
        m = self.size_multiple
        ph, pw = -h % m, -w % m
        if not (ph or pw):
            return self.forward(l)
        padded = np.pad(l, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        out = self.forward(padded)
        sh, sw = out.shape[1] * h // (h + ph), out.shape[2] * w // (w + pw)
        return np.ascontiguousarray(out[:, :sh, :sw])

    def refine(self, l: np.ndarray, ab: np.ndarray, *, work: WorkArrays | None = None) -> np.ndarray:
        """(N, H, W, 1) L in [-1, 1] and the (N, h, w, 2) a*b* that :meth:`predict` gave for it ->
        a*b* at the input size (N, H, W, 2), edge-aware, for a model whose bundle names a
        ``"guided_upsampling"``; other models' a*b* unchanged (see :mod:`streamcolor.engines.guided`;
        ``work``: where its render-size work arrays come from)."""
        return refine_batch(l, ab, self.info.guided, work=work)

    def close(self) -> None:
        """Release the runtime session(s).  The engine is unusable afterwards."""
        self.closed = True

    def _check_open(self) -> None:
        """EngineError, said plainly, for an engine used after :meth:`close` (or after its ``with``
        block): its sessions are gone, and the call failed on a None deep inside the runtime."""
        if self.closed:
            raise EngineError(f"{self.name}: this engine is closed (close() was called, or its with block ended); "
                              "load another with load_engine()")

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} from {self.info.path}>"


def check_l_batch(l: np.ndarray) -> np.ndarray:
    """Validate an (N, H, W, 1) L batch (H, W multiples of 8); returns float32 C-contiguous."""
    l = np.ascontiguousarray(l, dtype=np.float32)
    if l.ndim != 4 or l.shape[-1] != 1:
        raise ValueError(f"L batch must be (N, H, W, 1), got {l.shape}")
    if l.shape[1] % lab.SIZE_MULTIPLE or l.shape[2] % lab.SIZE_MULTIPLE:
        raise ValueError(f"L height and width must be multiples of {lab.SIZE_MULTIPLE}, got {l.shape[1:3]}")
    return l
