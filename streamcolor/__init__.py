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

from engines import available_backends, available_models, load_engine
from streamcolor.colorize import ColorOptions, colorize_image
from streamcolor.errors import InputError, OutputError, StreamcolorError

__version__ = "0.1.0"

#: Public names served from submodules on first use: name -> module.
_LAZY = {
    "colorize_video": "streamcolor.video",
    "VideoOptions": "streamcolor.video",
    "colorize_archive": "streamcolor.archive",
    "BatchOptions": "streamcolor.archive",
    "colorize_archive_ray": "streamcolor.cluster",
    "colorize_collection": "streamcolor.cluster",
    "colorize_video_ray": "streamcolor.cluster",
    "ClusterOptions": "streamcolor.cluster",
    "ColorizeBatch": "streamcolor.cluster",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamcolor' has no attribute {name!r}")


__all__ = ["ColorOptions", "InputError", "OutputError", "StreamcolorError", "__version__",
           "available_backends", "available_models", "colorize_image", "load_engine", *_LAZY]
