"""Benchmarks run in two modes.

* Smoke (default, inside the normal test suite): tiny sizes, each benchmark
  once (pyproject sets ``--benchmark-disable``), so they never rot.
* Full: ``STREAMCOLOR_BENCH_FULL=1 python -m pytest benchmarks --benchmark-enable
  --benchmark-json benchmarks/results/<name>.json``; real sizes and repeats.

Figures that are ratios (pipeline vs floor, int8 vs fp32...) are measured in
the same run and stored in each benchmark's ``extra_info``.
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("STREAMCOLOR_BENCH_FULL") == "1"


@pytest.fixture(scope="session")
def full() -> bool:
    return FULL
