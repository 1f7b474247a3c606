"""Scale-out on Ray: a thin layer over the per-item path, the archive job and the video segments.

One callable class, :class:`ColorizeBatch` (``__init__`` loads the engine
once; ``__call__`` maps a ``dict[str, np.ndarray]`` batch to one with the
result added), serves every path:

* :func:`colorize_archive_ray` (``streamcolor batch SRC -o OUT --ray``): the
  plain batch job with the colorizing done by a pool of actors
  (:mod:`streamcolor.ray.archive`);
* :func:`colorize_collection` (``python -m streamcolor.commands.collection
  SRC OUT``, for ``ray job submit``): a Ray Data pipeline for collections on
  any filesystem pyarrow understands (:mod:`streamcolor.ray.collection`);
* :func:`colorize_video_ray`: a long video split at keyframes, colorized on
  different actors and joined by stream copy (:mod:`streamcolor.ray.video`).

:mod:`streamcolor.ray.pool` is the only module that imports ``ray`` (on first
use: Ray is an extra, ``pip install streamcolor[ray]``); nothing here uses a
private name of another streamcolor module.  :func:`ray_session` decides which
Ray a job uses (a private local one unless an address is given) and turns a
failed connection into a one-line :class:`ClusterError`.
"""

from streamcolor.ray.archive import colorize_archive_ray
from streamcolor.ray.batch import ColorizeBatch
from streamcolor.ray.collection import colorize_collection
from streamcolor.ray.pool import ClusterError, ClusterOptions, ray_session
from streamcolor.ray.video import colorize_video_ray

__all__ = ["ClusterError", "ClusterOptions", "ColorizeBatch", "colorize_archive_ray", "colorize_collection", "colorize_video_ray",
           "ray_session"]
