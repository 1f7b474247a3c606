"""`streamcolor serve` under concurrent load: requests/s and latency, batching on and off.

The real command runs in its own process (``python -m streamcolor serve
--port 0``, the engine ``auto`` picks, as users get it), once with dynamic
batching (``--max-batch 16 --max-wait-ms 5``, the defaults) and once without
(``--max-batch 1``: one image per engine call, in arrival order).  Both
servers run side by side; at 1, 4 and 16 clients, each posting gray JPEGs
back to back over keep-alive connections, the two are measured in turn (on,
off, off, on; 10 s each in full mode), so a change in the machine's load
falls on both.  Every request must come back 200.

Figures, in the benchmark's ``extra_info`` (and printed with ``-s``):

* ``cells``: one row per (batching, clients): ``requests``, ``rps``
  (completed requests per second), ``p50_ms`` / ``p95_ms`` latency, and
  ``mean_batch`` (images per engine call, from ``GET /api/stats``);
* flat keys ``rps_on_16``, ``p95_ms_off_4``...; ``speedup_<n>`` = rps with
  batching / rps without at n clients, measured in the same run.

Smoke mode (the normal suite): tiny images, a few requests per cell.  Full mode::

    STREAMCOLOR_BENCH_FULL=1 python -m pytest benchmarks/bench_serve.py \\
        --benchmark-enable -s --benchmark-json=bench-serve.json
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_photo

aiohttp = pytest.importorskip("aiohttp", reason="needs the serve extra (aiohttp)")

FULL = os.environ.get("STREAMCOLOR_BENCH_FULL") == "1"
CLIENTS = (1, 4, 16)
#: name -> extra `streamcolor serve` arguments
MODES = {"on": ["--max-batch", "16", "--max-wait-ms", "5"], "off": ["--max-batch", "1", "--max-wait-ms", "0"]}
#: photo height, width; seconds measured per cell (full) or requests per client (smoke); warm-up seconds
H, W = (480, 640) if FULL else (48, 64)
SECONDS, WARMUP = (10.0, 2.0) if FULL else (0.0, 0.0)
SMOKE_REQUESTS = 2


def _photos(n: int = 8) -> list[bytes]:
    """n different gray JPEGs of H x W with grain (same size: batchable)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        gray = make_photo(H, W, seed=i).mean(axis=-1)
        gray = np.clip(gray + rng.normal(0, 6, gray.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(gray).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class _ServerProcess:
    """`python -m streamcolor serve --port 0 ...` in a child process; the URL from its log."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        with open(log, "w") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "serve", "--port", "0", *args],
                                         stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "listening on " not in (text := log.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"streamcolor serve did not start:\n{text}")
            time.sleep(0.1)
        self.url = text.split("listening on ", 1)[1].split()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _load(url: str, photos: list[bytes], clients: int, seconds: float, requests: int) -> dict:
    """``clients`` loops posting photos for ``seconds`` (or ``requests`` each when 0):
    latencies (s), elapsed (s), and the engine calls and images it caused."""
    latencies: list[float] = []
    failures: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        before = (await (await s.get(url + "/api/stats")).json())["batching"]
        start = time.perf_counter()
        deadline = start + seconds

        async def client(c: int) -> None:
            i = c
            sent = 0
            while (time.perf_counter() < deadline) if seconds else sent < requests:
                t0 = time.perf_counter()
                async with s.post(url + "/api/colorize", data=photos[i % len(photos)],
                                  headers={"Content-Type": "image/jpeg"}) as r:
                    body = await r.read()
                    if r.status != 200:
                        failures.append(f"{r.status}: {body[:200]!r}")
                latencies.append(time.perf_counter() - t0)
                i += clients
                sent += 1

        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - start
        after = (await (await s.get(url + "/api/stats")).json())["batching"]
    assert not failures, failures[:3]
    return {"latencies": latencies, "elapsed": elapsed, "calls": after["engine_calls"] - before["engine_calls"],
            "images": after["images"] - before["images"]}


def _cell(mode: str, clients: int, runs: list[dict]) -> dict:
    ms = sorted(x * 1e3 for r in runs for x in r["latencies"])
    elapsed = sum(r["elapsed"] for r in runs)
    calls, images = sum(r["calls"] for r in runs), sum(r["images"] for r in runs)
    return {"batching": mode, "clients": clients, "requests": len(ms), "seconds": round(elapsed, 2),
            "rps": round(len(ms) / elapsed, 2), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))], 1),
            "mean_batch": round(images / calls, 2) if calls else 0.0}


def _measure(tmp_path: Path) -> dict:
    """Both servers up at once; at each client count the modes alternate (on, off, off, on in
    full mode), so a change in the machine's load hits both alike."""
    photos = _photos()
    load_start = os.getloadavg()[0]
    servers = {}
    try:
        for mode, args in MODES.items():
            servers[mode] = _ServerProcess(args, tmp_path / f"serve-{mode}.log")
        engine = asyncio.run(_health(servers["on"].url))
        order = ["on", "off", "off", "on"] if FULL else ["on", "off"]
        cells = []
        for clients in CLIENTS:
            runs: dict[str, list[dict]] = {m: [] for m in MODES}
            for mode in MODES:
                if WARMUP:
                    asyncio.run(_load(servers[mode].url, photos, clients, WARMUP, 0))
            for mode in order:
                runs[mode].append(asyncio.run(_load(servers[mode].url, photos, clients, SECONDS, SMOKE_REQUESTS)))
            for mode in MODES:
                cell = _cell(mode, clients, runs[mode])
                cells.append(cell)
                print(f"batching {mode:3s} clients {clients:2d}: {cell['rps']:6.2f} req/s  "
                      f"p50 {cell['p50_ms']:7.1f} ms  p95 {cell['p95_ms']:7.1f} ms  "
                      f"mean batch {cell['mean_batch']:.2f}  ({cell['requests']} requests)", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    info: dict = {"engine": engine, "photo": f"{W}x{H} gray JPEG", "seconds_per_cell": SECONDS * order.count("on"),
                  "order": "-".join(order), "cpu_count": os.cpu_count(),
                  "load_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # at start, at end
                  "cells": cells}
    for c in cells:
        for key in ("rps", "p50_ms", "p95_ms", "mean_batch"):
            info[f"{key}_{c['batching']}_{c['clients']}"] = c[key]
    for n in CLIENTS:
        off = info[f"rps_off_{n}"]
        info[f"speedup_{n}"] = round(info[f"rps_on_{n}"] / off, 3) if off else None
    return info


async def _health(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        return (await (await s.get(url + "/api/health")).json())["engine"]


def test_serve_throughput_batching_on_vs_off(benchmark, tmp_path):
    results = []
    benchmark.pedantic(lambda: results.append(_measure(tmp_path)), rounds=1, iterations=1, warmup_rounds=0)
    info = results[0]
    benchmark.extra_info.update(info)
    assert len(info["cells"]) == len(MODES) * len(CLIENTS)
    assert all(c["requests"] > 0 for c in info["cells"])
    assert all(c["mean_batch"] == 1.0 for c in info["cells"] if c["batching"] == "off")
    print("\nserve:", {k: v for k, v in info.items() if k != "cells"})
