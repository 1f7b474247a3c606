"""Folders, zip and tar archives of photos: ``colorize_archive``.

A job colorizes every image of one or more *sources* (a folder, searched
recursively; a ``.zip``; a ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz`` or
``.tar.bz2``) into an output folder ``OUT`` that mirrors the source tree.
With one source the tree goes straight into ``OUT``; with several, each goes
into ``OUT/<source name>/`` (the folder name, or the archive name without its
suffix; ``~2``, ``~3``... added to repeated names).  On request the finished
folder is also packed into ``OUT.zip`` / ``OUT.tar.gz``...

The job by part, one module each:

* :mod:`streamcolor.archive.listing`: :class:`BatchOptions`, the sources and
  their :class:`Item` s with safe, unique output names (reading the archives
  and their safety checks: :mod:`streamcolor.engines.archives`, shared with
  the trainer);
* :mod:`streamcolor.archive.job`: :class:`BatchJob`, the output folder
  (layout, lock, resume manifest, report, packing), shared with the Ray
  actor pool;
* :mod:`streamcolor.archive.pipeline`: :func:`colorize_archive`, the threaded
  pipeline, and :func:`process_items`, the same steps in a row;
* :mod:`streamcolor.archive.workers`: the pipeline's workers, threads or
  worker processes (``BatchOptions.processes``) that keep each photo where
  it was decoded.

Each item takes the one per-item path (:mod:`streamcolor.items`).

Safety: member names are sanitized (backslashes are separators, ``.`` parts
dropped); absolute names and names with ``..`` are refused, so nothing is ever
written outside ``OUT``.  Links (symbolic and hard), devices, FIFOs and
encrypted members are refused with a reason and never read.  Declared sizes
and zip compression ratios are checked before a member is read, reads are
capped, and decoded images are held to ``max_pixels``.
"""

from streamcolor.archive.job import LOCK_FILENAME, BatchJob, BatchReport, pack_outputs
from streamcolor.archive.listing import (ARCHIVE_SUFFIXES, OUTPUT_FORMATS, BatchOptions, Item, Source, list_items,
                                         open_source, output_key, output_name, read_item, safe_member_path,
                                         unique_name)
from streamcolor.archive.pipeline import colorize_archive, process_items
from streamcolor.items import REPORT_FILENAME, JobReport, Outcome

__all__ = ["ARCHIVE_SUFFIXES", "BatchJob", "BatchOptions", "BatchReport", "Item", "JobReport", "LOCK_FILENAME",
           "OUTPUT_FORMATS", "Outcome", "REPORT_FILENAME", "Source", "colorize_archive",
           "list_items", "open_source", "output_key", "output_name", "pack_outputs", "process_items", "read_item",
           "safe_member_path", "unique_name"]
