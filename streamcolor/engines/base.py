"""The one small interface every runtime implements.

A model on disk is a *bundle*: a folder with ``model.json`` (metadata) and the
exported graphs.  An :class:`Engine` owns its runtime session(s), built once
in the constructor, and turns batches of L into batches of a*b*:

* ``embed(l_ext)``: (N, S, S, 1) L in [-1, 1] at the extractor's square size
  S -> (N, E) embedding (the frozen ImageNet classifier's logits);
* ``colorize(l, embedding)``: (N, H, W, 1) L in [-1, 1], H and W multiples of
  8, plus (N, E) embedding -> (N, H, W, 2) a*b* in [-1, 1];
* ``predict(l)``: both, for callers that do not reuse embeddings.

The split lets video reuse one embedding across a scene and lets training
precompute embeddings once (method.md).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamcolor.engines import lab

log = logging.getLogger(__name__)

MANIFEST = "model.json"
BUNDLE_FORMAT = 1


class EngineError(RuntimeError):
    """A model bundle cannot be loaded or run."""


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

    @classmethod
    def load(cls, path: str | Path) -> "ModelInfo":
        path = Path(path)
        manifest = path / MANIFEST if path.is_dir() else path
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError as exc:
            raise EngineError(f"{path}: not a model bundle (no {MANIFEST})") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineError(f"{manifest}: unreadable model manifest: {exc}") from exc
        if data.get("format") != BUNDLE_FORMAT:
            raise EngineError(
                f"{manifest}: bundle format {data.get('format')!r}, this streamcolor reads {BUNDLE_FORMAT}"
            )
        try:
            return cls(
                path=manifest.parent,
                name=str(data["name"]),
                extractor=str(data["extractor"]),
                extractor_size=int(data["extractor_size"]),
                embed_dim=int(data["embed_dim"]),
                files=dict(data.get("files", {})),
                meta={k: v for k, v in data.items()
                      if k not in {"format", "name", "extractor", "extractor_size", "embed_dim", "files"}},
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
        return {"format": BUNDLE_FORMAT, "name": self.name, "extractor": self.extractor,
                "extractor_size": self.extractor_size, "embed_dim": self.embed_dim,
                "files": self.files, **self.meta}


class Engine(ABC):
    """A loaded model on one runtime.  Subclasses set :attr:`backend`."""

    backend: str = "?"

    def __init__(self, info: ModelInfo):
        self.info = info

    @property
    def name(self) -> str:
        """``backend:model`` (plus precision where a subclass has several)."""
        return f"{self.backend}:{self.info.name}"

    @property
    def extractor_size(self) -> int:
        return self.info.extractor_size

    @abstractmethod
    def embed(self, l_ext: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) float32 L in [-1, 1] -> (N, E) float32 embedding."""

    @abstractmethod
    def colorize(self, l: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) L in [-1, 1] and (N, E) embedding -> (N, H, W, 2) a*b* in [-1, 1]."""

    def extractor_input(self, l: np.ndarray) -> np.ndarray:
        """Letterbox a batch (N, H, W, 1) of scaled L to (N, S, S, 1) for :meth:`embed`."""
        return np.stack([lab.letterbox(x[..., 0], self.extractor_size) for x in l])[..., None]

    def predict(self, l: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) L in [-1, 1] -> (N, H, W, 2) a*b* in [-1, 1]."""
        l = check_l_batch(l)
        return self.colorize(l, self.embed(self.extractor_input(l)))

    def close(self) -> None:
        """Release the runtime session(s).  The engine is unusable afterwards."""

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
