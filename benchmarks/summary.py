"""Markdown summary of benchmark results.

    python -m benchmarks.summary benchmarks/results/cpu-<date>.json [more.json ...] > benchmarks/results/cpu-<date>.md

Each pytest-benchmark JSON gives a machine line, a headline table (every
figure next to the reference measured in the same run, and the ratio) and
one table per benchmark.  Other JSON files (``streamcolor bench --json``, the
GPU figures in ``benchmarks/results/gpu-*.json``) are appended as tables,
labelled with their file name.  ``--gpu`` adds every ``gpu-*.json`` found next
to the first file.  The tables come from :mod:`streamcolor.report`, which
``streamcolor report`` uses for its HTML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamcolor.report import load_results, to_markdown


def summary(paths: list[Path], *, gpu: bool = False) -> str:
    """The markdown text for ``paths`` (plus the GPU files next to the first with ``gpu``)."""
    paths = list(paths)
    if gpu and paths:
        paths += sorted(p for p in paths[0].parent.glob("gpu-*.json") if p not in paths)
    tables, machines = load_results(paths)
    head = ["# streamcolor benchmarks", ""]
    head += [f"- {m}" for m in machines]
    gpu_files = [p.name for p in paths if p.name.startswith("gpu-")]
    if gpu_files:
        head.append(f"- GPU figures ({', '.join(gpu_files)}): measured on an NVIDIA H200, not on this machine")
    return "\n".join(head) + "\n\n" + to_markdown(tables)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="pytest-benchmark JSON (or other results JSON) files")
    ap.add_argument("--gpu", action="store_true", help="append the gpu-*.json files next to the first file")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    sys.stdout.write(summary(args.results, gpu=args.gpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
