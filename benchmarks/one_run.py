"""What the one-run benchmark scripts (``spin``, ``int8_kernels``) share: their
command line (``--out FILE``, ``--quick``), the head of their results record,
the engine timing loop and the write."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse(module: str, doc: str, argv: list[str] | None, quick_help: str) -> argparse.Namespace:
    """``--out`` and ``--quick`` of ``python -m benchmarks.<module>``; logging set up."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results JSON to write")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return args


def machine() -> dict[str, Any]:
    """The CPU a record was measured on: its model name and the vector extensions that decide which
    kernels run (Linux's /proc/cpuinfo; elsewhere the platform's name only)."""
    info: dict[str, Any] = {"processor": platform.processor() or platform.machine(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model" not in info:
            info["model"] = value.strip()
        elif key.strip() == "flags" and "extensions" not in info:
            flags = set(value.split())
            info["extensions"] = sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8"})
    return info


def record(module: str, argv: list[str] | None, **fields: Any) -> dict[str, Any]:
    """The head of a results record: date, the command as typed, cores, the machine, the load now,
    then ``fields``."""
    given = sys.argv[1:] if argv is None else argv
    return {"date": datetime.date.today().isoformat(),
            "command": f"python -m benchmarks.{module} " + " ".join(given), "cpu_count": os.cpu_count(),
            "machine": machine(), **fields, "load_average": {"start": round(os.getloadavg()[0], 2)}}


def images_per_s(engine, x: np.ndarray, calls: int) -> float:
    """Images/s of ``engine.forward`` on the batch ``x`` over ``calls`` calls, after one untimed call."""
    engine.forward(x)
    t = time.perf_counter()
    for _ in range(calls):
        engine.forward(x)
    return calls * len(x) / (time.perf_counter() - t)


def write(out: Path, result: dict[str, Any], log: logging.Logger) -> None:
    """The record as indented JSON at ``out`` (folders made), with the load at the end."""
    result["load_average"]["end"] = round(os.getloadavg()[0], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("wrote %s", out)
