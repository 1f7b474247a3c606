"""streamcolor: colorize black-and-white photos, archives and videos.

>>> import streamcolor
>>> streamcolor.colorize_image("old.jpg", "colour.jpg")
>>> streamcolor.colorize_video("film.mp4", "film-colour.mp4")
>>> streamcolor.colorize_archive("album.zip", "album-colour/")

Heavy modules (PyAV, Ray) are imported only when their function is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public names served from submodules on first use: name -> module.  Everything is
#: lazy, so ``import streamcolor.engines`` (what the trainer does) loads nothing else.
_LAZY = {
    "available_backends": "streamcolor.engines",
    "available_models": "streamcolor.engines",
    "load_engine": "streamcolor.engines",
    "EngineError": "streamcolor.engines",
    "ColorOptions": "streamcolor.colorize",
    "colorize_image": "streamcolor.colorize",
    "InputError": "streamcolor.errors",
    "OutputError": "streamcolor.errors",
    "StreamcolorError": "streamcolor.errors",
    "colorize_video": "streamcolor.video",
    "VideoOptions": "streamcolor.video",
    "colorize_archive": "streamcolor.archive",
    "BatchOptions": "streamcolor.archive",
    "JobReport": "streamcolor.items",
    "colorize_archive_ray": "streamcolor.ray",
    "colorize_collection": "streamcolor.ray",
    "colorize_video_ray": "streamcolor.ray",
    "ClusterOptions": "streamcolor.ray",
    "ColorizeBatch": "streamcolor.ray",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamcolor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from streamcolor.archive import BatchOptions, colorize_archive
    from streamcolor.colorize import ColorOptions, colorize_image
    from streamcolor.engines import EngineError, available_backends, available_models, load_engine
    from streamcolor.errors import InputError, OutputError, StreamcolorError
    from streamcolor.items import JobReport
    from streamcolor.ray import ClusterOptions, ColorizeBatch, colorize_archive_ray, colorize_collection, \
        colorize_video_ray
    from streamcolor.video import VideoOptions, colorize_video

__all__ = ["__version__", *_LAZY]
