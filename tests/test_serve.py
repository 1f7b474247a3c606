"""`streamcolor serve`: a real server on a free local port, real HTTP, real images.

The API with concurrent clients (and proof that their network calls were
merged), bad uploads (each a 4xx with a JSON reason), static files that
cannot reach outside the page's folder, localhost by default, graceful
shutdown, and the page itself driven in headless Chromium over the DevTools
protocol (skipped when Chromium is not installed).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import tempfile
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

aiohttp = pytest.importorskip("aiohttp", reason="needs the serve extra (aiohttp)")

import streamcolor
from streamcolor import memory
from streamcolor.batching import BatchingEngine, BatchingOptions
from streamcolor.engines import EngineError
from streamcolor.serve import STATIC_DIR, ServeOptions, Server
from tests.conftest import make_photo, odd_sized_video, png_bytes

SAMPLE_PHOTO = Path(streamcolor.__file__).parent / "samples" / "chenonceau-bw.jpg"
#: Limits small enough that the tests can cross them cheaply.
MAX_UPLOAD = 2 * 1024 ** 2
MAX_PIXELS = 2_000_000


# --------------------------------------------------------------------------- helpers

def gray(seed: int = 0, h: int = 120, w: int = 170) -> np.ndarray:
    return make_photo(h, w, seed=seed).mean(axis=-1).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def chroma(rgb: np.ndarray) -> float:
    """Mean distance from gray: 0 for a gray image."""
    rgb = rgb.astype(np.float32)
    return float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean())


class Reply:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


async def _request(method: str, url: str, **kw) -> Reply:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, **kw) as r:
            return Reply(r.status, r.headers, await r.read())


def request(method: str, url: str, **kw) -> Reply:
    return asyncio.run(_request(method, url, **kw))


def form(data: bytes, filename: str = "photo.jpg", ctype: str = "image/jpeg", **fields) -> "aiohttp.FormData":
    f = aiohttp.FormData()
    for k, v in fields.items():
        f.add_field(k, str(v))
    f.add_field("file", data, filename=filename, content_type=ctype)
    return f


def post_file(url: str, data: bytes, filename: str = "photo.jpg", ctype: str = "image/jpeg", query: str = "",
              **fields) -> Reply:
    return request("POST", f"{url}/api/colorize{query}", data=form(data, filename, ctype, **fields))


def raw_http(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes exactly as given (no client-side path normalisation); (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_end = data.index(b"\r\n\r\n")
    return int(data.split(b" ", 2)[1]), data[head_end + 4:]


@pytest.fixture(scope="module")
def server(engine):
    """One server for the module: small limits, a generous batching window."""
    options = ServeOptions(port=0, batching=BatchingOptions(max_batch=8, max_wait_ms=100),
                           max_upload=MAX_UPLOAD, max_pixels=MAX_PIXELS)
    with Server(engine, options) as srv:
        yield srv


class SlowEngine:
    """Wraps a real engine: counts calls and their sizes, optionally sleeps in each."""

    def __init__(self, engine, delay: float = 0.0, fail: bool = False):
        self.engine, self.delay, self.fail = engine, delay, fail
        self.calls: list[int] = []
        self.info, self.size_multiple, self.name = engine.info, engine.size_multiple, "slow:" + engine.name
        self.reuses_embedding = engine.reuses_embedding
        self.refine = engine.refine  # (needs no runtime: not counted)

    def predict(self, l, embedding=None):
        self.calls.append(len(l))
        time.sleep(self.delay)
        if self.fail:
            raise EngineError("engine exploded")
        return self.engine.predict(l, embedding)


# --------------------------------------------------------------------------- the batcher alone

def test_batcher_merges_concurrent_calls_and_keeps_rows_apart(engine):
    slow = SlowEngine(engine, delay=0.05)
    inputs = [np.random.default_rng(i).uniform(-1, 1, (1, 32, 48, 1)).astype(np.float32) for i in range(6)]
    want = [engine.predict(x) for x in inputs]
    with BatchingEngine(slow, BatchingOptions(max_batch=4, max_wait_ms=200)) as batcher:
        barrier = threading.Barrier(len(inputs))
        got: dict[int, np.ndarray] = {}

        def client(i):
            barrier.wait()
            got[i] = batcher.predict(inputs[i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = batcher.stats()
    assert sum(slow.calls) == 6 and max(slow.calls) <= 4 and len(slow.calls) <= 3, slow.calls
    assert stats.calls == len(slow.calls) and stats.images == 6 and stats.requests == 6
    for i in range(6):  # each caller got its own rows back
        np.testing.assert_allclose(got[i], want[i], atol=1e-4)


def test_batcher_groups_shapes_and_passes_errors(engine):
    slow = SlowEngine(engine)
    with BatchingEngine(slow, BatchingOptions(max_batch=8, max_wait_ms=300)) as batcher:
        shapes = [(32, 48), (48, 32), (32, 48)]
        results = {}
        barrier = threading.Barrier(3)

        def client(i):
            barrier.wait()
            results[i] = batcher.predict(np.zeros((1, *shapes[i], 1), np.float32))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(slow.calls) == [1, 2]  # one call per shape
        assert results[0].shape[1:3] == results[2].shape[1:3] != results[1].shape[1:3]
    with pytest.raises(EngineError, match="closed"):
        batcher.predict(np.zeros((1, 32, 32, 1), np.float32))
    failing = BatchingEngine(SlowEngine(engine, fail=True), BatchingOptions(max_batch=1, max_wait_ms=0))
    with failing, pytest.raises(EngineError, match="exploded"):
        failing.predict(np.zeros((1, 32, 32, 1), np.float32))
    with pytest.raises(ValueError):
        BatchingOptions(max_batch=0)


# --------------------------------------------------------------------------- the API

def test_health_models_stats(server, engine):
    h = request("GET", server.url + "/api/health")
    assert h.status == 200
    body = h.json()
    assert body["status"] == "ok" and body["engine"] == engine.name
    assert body["batching"] == {"max_batch": 8, "max_wait_ms": 100}
    assert body["limits"]["max_upload"] == MAX_UPLOAD and body["limits"]["max_pixels"] == MAX_PIXELS
    m = request("GET", server.url + "/api/models").json()
    assert m["loaded"]["name"] == engine.info.name and "default" in m["shipped"] and "onnx" in m["backends"]
    s = request("GET", server.url + "/api/stats").json()
    assert set(s["batching"]) >= {"engine_calls", "images", "mean_batch", "batch_sizes"}


def test_colorize_multipart_keeps_format_and_size(server):
    src = gray(1)
    r = post_file(server.url, jpeg_bytes(src), "grandma.jpg")
    assert r.status == 200, r.body[:200]
    assert r.headers["Content-Type"] == "image/jpeg"
    assert 'filename="grandma-colour.jpg"' in r.headers["Content-Disposition"]
    out = decode(r.body)
    assert out.format == "JPEG" and out.size == (src.shape[1], src.shape[0]) and out.mode == "RGB"
    assert chroma(np.asarray(out)) > 1.0  # it has colour
    assert int(r.headers["X-Streamcolor-Batch"]) >= 1


def test_raw_body_and_output_format(server):
    src = gray(2)
    r = request("POST", server.url + "/api/colorize", data=png_bytes(src), headers={"Content-Type": "image/png"})
    assert r.status == 200 and decode(r.body).format == "PNG"
    r = request("POST", server.url + "/api/colorize?format=webp&quality=80", data=jpeg_bytes(src))
    assert r.status == 200 and r.headers["Content-Type"] == "image/webp" and decode(r.body).format == "WEBP"
    r = post_file(server.url, jpeg_bytes(src), format="png")  # parameters as form fields too
    assert r.status == 200 and decode(r.body).format == "PNG"


def test_same_result_as_colorize_image(server, engine):
    src = gray(3)
    r = request("POST", server.url + "/api/colorize?render_size=128", data=png_bytes(src))
    want = streamcolor.colorize_image(src, engine=engine, render_size=128)
    got = np.asarray(decode(r.body))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2


def test_a_jpeg_answer_is_the_cli_file_byte_for_byte(server, engine, tmp_path):
    """The server encoded through the RGB route, `streamcolor image` into a file through the photo's
    Y'CbCr planes: one photo, two JPEGs up to 14 codes apart.  Now one route for all."""
    jpeg = io.BytesIO()
    Image.fromarray(gray(5, 600, 800)).save(jpeg, "JPEG", quality=95)
    (tmp_path / "p.jpg").write_bytes(jpeg.getvalue())
    r = post_file(server.url, jpeg.getvalue(), query="?render_size=128")
    assert r.status == 200
    written = streamcolor.colorize_image(tmp_path / "p.jpg", tmp_path / "out.jpg", engine=engine, render_size=128)
    assert r.body == written.read_bytes() == streamcolor.colorize_image(jpeg.getvalue(), engine=engine,
                                                                       render_size=128)


def test_saturation_zero_gives_gray(server):
    r = post_file(server.url, png_bytes(gray(4)), "x.png", "image/png", query="?saturation=0&render_size=64")
    assert r.status == 200
    assert chroma(np.asarray(decode(r.body))) < 0.5


def test_concurrent_clients_are_batched_and_each_gets_its_own_image(engine):
    n = 8
    srcs = [gray(10 + i) for i in range(n)]
    wants = [streamcolor.colorize_image(s, engine=engine) for s in srcs]
    counted = SlowEngine(engine)
    options = ServeOptions(port=0, batching=BatchingOptions(max_batch=n, max_wait_ms=300))

    async def clients(url):
        async with aiohttp.ClientSession() as s:
            async def one(i):
                async with s.post(url + "/api/colorize", data=form(png_bytes(srcs[i]), f"p{i}.png", "image/png")) as r:
                    return r.status, int(r.headers.get("X-Streamcolor-Batch", 0)), await r.read()
            return await asyncio.gather(*(one(i) for i in range(n)))

    with Server(counted, options) as srv:
        replies = asyncio.run(clients(srv.url))
        stats = request("GET", srv.url + "/api/stats").json()["batching"]
    assert [status for status, _, _ in replies] == [200] * n
    for (_, _, body), want in zip(replies, wants):  # right image to the right client
        assert np.abs(np.asarray(decode(body)).astype(int) - want.astype(int)).max() <= 2
    # the public hook (the wrapped engine) and the stats endpoint agree: fewer calls than requests
    assert stats["requests"] == n and stats["images"] == n
    assert stats["engine_calls"] == len(counted.calls) < n, counted.calls
    assert stats["max_batch_seen"] >= 2 and max(b for _, b, _ in replies) >= 2


def test_busy_server_answers_503(engine):
    slow = SlowEngine(engine, delay=1.0)
    options = ServeOptions(port=0, max_pending=1, batching=BatchingOptions(max_batch=1, max_wait_ms=0))

    async def two(url):
        async with aiohttp.ClientSession() as s:
            async def one(delay):
                await asyncio.sleep(delay)
                async with s.post(url + "/api/colorize", data=png_bytes(gray(5, 40, 40))) as r:
                    body = await r.read()
                    return r.status, r.headers.get("Retry-After"), json.loads(body) if r.status != 200 else None
            return await asyncio.gather(one(0), one(0.3))

    with Server(slow, options) as srv:
        (s1, _, _), (s2, retry, body) = asyncio.run(two(srv.url))
    assert (s1, s2, retry) == (200, 503, "1") and "busy" in body["error"]


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes(gray(6, 200, 260))
    return data[: len(data) // 2]


def _pixel_bomb() -> bytes:
    """A 2000 x 1500 PNG (3 Mpx, over the module's 2 Mpx limit) that is a few KB on the wire."""
    return png_bytes(np.zeros((1500, 2000), np.uint8), optimize=True)


BAD_UPLOADS = {
    # name: (method, path+query, kwargs, status, words in the reason)
    "not an image": ("POST", "/api/colorize", {"data": b"just some text, not a picture\n" * 20}, 400,
                     "not an image"),
    "text file named .jpg": ("POST", "/api/colorize", {"data": form(b"hello", "photo.jpg")}, 400, "not an image"),
    "truncated jpeg": ("POST", "/api/colorize", {"data": form(_truncated_jpeg(), "cut.jpg")}, 400, "truncated"),
    "empty body": ("POST", "/api/colorize", {"data": b""}, 400, "empty"),
    "pixel bomb": ("POST", "/api/colorize", {"data": form(_pixel_bomb(), "bomb.png", "image/png")}, 400,
                   "over the limit"),
    "too large (declared)": ("POST", "/api/colorize", {"data": b"\0" * (MAX_UPLOAD + 1)}, 413, "over the limit"),
    "too large multipart": ("POST", "/api/colorize", {"data": form(b"\xff" * (MAX_UPLOAD + 1))}, 413,
                            "over the limit"),
    "form without file": ("POST", "/api/colorize",
                          {"data": aiohttp.FormData({"render_size": "64"}, default_to_multipart=True)}, 400, "no file"),
    "malformed multipart": ("POST", "/api/colorize", {"data": b"no boundary here",
                            "headers": {"Content-Type": "multipart/form-data; boundary=XYZ"}}, 400, "malformed"),
    "unknown form field": ("POST", "/api/colorize", {"data": form(b"x", extra="1")}, 400, "unknown form field"),
    "a form field twice": ("POST", "/api/colorize", {"data": b"".join((
        b"--B\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\npng\r\n" * 2,
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nx\r\n--B--\r\n")),
        "headers": {"Content-Type": "multipart/form-data; boundary=B"}}, 400, "given twice"),
    # (a body its Content-Encoding does not decode: 500 and two tracebacks, from aiohttp's RequestPayloadError)
    "gzip body that is not gzip": ("POST", "/api/colorize", {"data": b"notgzip",
                                   "headers": {"Content-Encoding": "gzip", "Content-Type": "image/png"}}, 400,
                                   "malformed body"),
    "gzip multipart that is not gzip": ("POST", "/api/colorize", {"data": b"notgzip", "headers": {
        "Content-Encoding": "gzip", "Content-Type": "multipart/form-data; boundary=B"}}, 400, "malformed"),
    "bad render_size": ("POST", "/api/colorize?render_size=huge", {"data": b"x"}, 400, "render_size"),
    "render_size too big": ("POST", "/api/colorize?render_size=100000", {"data": b"x"}, 400, "render_size"),
    "bad saturation": ("POST", "/api/colorize?saturation=nan", {"data": b"x"}, 400, "saturation"),
    "bad format": ("POST", "/api/colorize?format=gif", {"data": b"x"}, 400, "format"),
    "unknown parameter": ("POST", "/api/colorize?rendersize=64", {"data": b"x"}, 400, "unknown parameter"),
    "wrong method": ("GET", "/api/colorize", {}, 405, "use POST"),
    "wrong method on the page": ("DELETE", "/", {}, 405, "not allowed"),
    "unknown path": ("GET", "/api/nothing", {}, 404, "not found"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_requests_get_a_4xx_with_a_reason(server, case):
    method, path, kw, status, words = BAD_UPLOADS[case]
    r = request(method, server.url + path, **kw)
    assert r.status == status, (case, r.status, r.body[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status and words in body["error"], body
    if status == 405:
        assert r.headers["Allow"]
    assert request("GET", server.url + "/api/health").status == 200  # still serving


def test_too_large_chunked_body_without_length(server):
    async def chunks():
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"\0" * 65536

    r = request("POST", server.url + "/api/colorize", data=chunks())
    assert r.status == 413 and "over the limit" in r.json()["error"]


def test_too_large_chunked_multipart_body_outside_its_file(server):
    """Only the file part and each field were counted: a chunked form with megabytes around them (here
    before the first part, where a form's preamble goes) was read to its end, as long as the client
    sent, and answered 200."""
    async def chunks():
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"junk\r\n" * 13107
        yield b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        yield png_bytes(gray(1)) + b"\r\n--B--\r\n"

    r = request("POST", server.url + "/api/colorize", data=chunks(),
                headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert r.status == 413 and "over the limit" in r.json()["error"], r.body[:200]


TRAVERSALS = [
    "/static/../pyproject.toml", "/static/../../README.md", "/static/..%2f..%2fpyproject.toml",
    "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/%2e%2e%2f__init__.py", "/static/..%5c__init__.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/../../../../etc/passwd", "/static/./../serve.py",
    "/static/index.html/../../serve.py", "/static/.", "/static/", "/static/%00", "/web/index.html",
    "/streamcolor/serve.py", "/static/..", "/%2e%2e/%2e%2e/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_file_outside_the_static_folder(server, path):
    port = int(server.url.rsplit(":", 1)[1])
    status, body = raw_http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert 400 <= status < 500, (path, status)
    for secret in (b"[project]", b"root:x:", b"def ", b"import ", b"<html"):  # nothing of any file
        assert secret not in body, (path, body[:200])


def test_page_and_its_static_files(server):
    r = request("GET", server.url + "/")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert b"http://" not in r.body and b"https://" not in r.body  # nothing from the internet
    r = request("GET", server.url + "/static/index.html")
    assert r.status == 200 and r.body == (STATIC_DIR / "index.html").read_bytes()
    assert r.headers["Content-Security-Policy"] == csp and "charset=utf-8" in r.headers["Content-Type"]


def test_localhost_by_default(server):
    assert ServeOptions().host == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")
    from streamcolor.commands.serve import command

    assert next(p for p in command.params if p.name == "host").default == "127.0.0.1"


def test_graceful_stop_finishes_requests_in_progress(engine):
    slow = SlowEngine(engine, delay=1.0)
    srv = Server(slow, ServeOptions(port=0)).start()
    result = {}

    def client():
        result["r"] = request("POST", srv.url + "/api/colorize", data=png_bytes(gray(7)))

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 10
    while not slow.calls and time.monotonic() < deadline:  # the request reached the engine
        time.sleep(0.02)
    srv.stop()
    t.join()
    assert result["r"].status == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])), timeout=2)


def _head(port: int, body_length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST /api/colorize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 f"Content-Length: {body_length}\r\n\r\n".encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the one answer on ``sock`` (read up to its Content-Length, not to
    the end: aiohttp lingers up to 10 s before it closes a connection whose body was not all read)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection without a whole answer"
        data += chunk
    sock.close()
    return int(data.split(b" ", 2)[1]), data[data.index(b"\r\n\r\n") + 4:]


def _length(data: bytes) -> int:
    for line in data[:data.index(b"\r\n\r\n")].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError("no Content-Length in the answer")


def test_graceful_stop_lets_an_upload_still_arriving_finish(engine):
    """aiohttp's own shutdown stops reading open connections: an upload half sent when
    SIGTERM came never completed and its client got no answer at all."""
    data = png_bytes(gray(8, 200, 300))
    srv = Server(engine, ServeOptions(port=0)).start()
    port = int(srv.url.rsplit(":", 1)[1])
    sock = _head(port, len(data))
    sock.sendall(data[: len(data) // 2])
    deadline = time.monotonic() + 10
    while srv.stats()["in_flight"] == 0 and time.monotonic() < deadline:  # the handler reads the body
        time.sleep(0.02)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    time.sleep(0.5)  # shutdown has begun: the socket no longer listens
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(data[len(data) // 2:])
    status, body = _answer(sock)
    stopper.join()
    assert status == 200 and decode(body).size == (300, 200)


def test_a_stalled_upload_gets_408_and_frees_its_slot(engine):
    options = ServeOptions(port=0, max_pending=1, upload_timeout=0.5)
    with Server(engine, options) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        sock = _head(port, 10_000)
        sock.sendall(b"\x89PNG\r\n\x1a\n")  # and then nothing
        t0 = time.monotonic()
        status, body = _answer(sock)
        assert status == 408 and "stalled" in json.loads(body)["error"] and time.monotonic() - t0 < 10
        ok = request("POST", srv.url + "/api/colorize", data=png_bytes(gray(9, 40, 40)))
    assert ok.status == 200  # the one slot is free again (it was held until the server stopped)


def test_a_trickling_upload_gets_408_and_frees_its_slot(engine):
    """A byte now and then never tripped the stall timeout: two such clients held --max-pending 2 for good."""
    options = ServeOptions(port=0, max_pending=1, upload_timeout=0.6)
    with Server(engine, options) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        sock = _head(port, 10_000)
        t0 = time.monotonic()
        import select

        while time.monotonic() - t0 < 10 and not select.select([sock], [], [], 0.2)[0]:  # until it answers
            sock.sendall(b"\x00")  # never silent for 0.6 s, but far under the slowest rate taken
        status, body = _answer(sock)
        assert status == 408 and "too slow" in json.loads(body)["error"] and time.monotonic() - t0 < 10
        ok = request("POST", srv.url + "/api/colorize", data=png_bytes(gray(9, 40, 40)))
    assert ok.status == 200


@pytest.mark.parametrize("sent", [b"", b"POST /api/colorize HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half headers"])
def test_a_connection_without_a_whole_request_is_closed(engine, sent):
    """Slow headers and idle connections were never timed out: enough of them used up the file descriptors."""
    with Server(engine, ServeOptions(port=0, upload_timeout=0.5)) as srv:
        sock = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])), timeout=10)
        sock.sendall(sent)
        t0 = time.monotonic()
        assert sock.recv(100) == b"" and time.monotonic() - t0 < 5  # closed by the server, without an answer
        sock.close()


def test_an_answer_the_client_does_not_read_keeps_its_slot_then_is_dropped(engine):
    """A client that never read its (big) answer left it in the server's memory for good, counted nowhere."""
    options = ServeOptions(port=0, upload_timeout=1.0)
    data = png_bytes(gray(3, 1500, 2000))
    with Server(engine, options) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"POST /api/colorize?format=bmp HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)  # a 9 MB answer, never read
        deadline = time.monotonic() + 30
        while srv.stats()["memory"]["used"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        held = srv.stats()
        assert held["in_flight"] == 1 and held["memory"]["used"] > 0  # counted while the answer waits
        while srv.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        after = srv.stats()
        assert after["in_flight"] == 0 and after["memory"]["used"] == 0
        got = b""
        sock.settimeout(10)
        try:
            while chunk := sock.recv(1 << 16):
                got += chunk
        except ConnectionResetError:
            pass
        sock.close()
    assert 0 < len(got) < 9_000_000  # cut off: the rest of the answer was dropped, not kept


def test_a_slow_steady_reader_gets_its_whole_answer_and_one_that_leaves_is_no_error(engine, caplog):
    """Each 1 MiB of an answer had to drain within --upload-timeout: a steady 24 KiB/s reader was cut
    off; and a client leaving mid-answer was logged as an internal error (500) with a traceback.
    (On this machine's loopback the kernel's socket buffers take most of a 1.4 MB answer, so the
    reader's part also passes with a 1 MiB send step: it checks that a slow reader gets every byte.)"""
    import logging

    options = ServeOptions(port=0, upload_timeout=1.0)
    data = png_bytes(gray(4, 600, 800))  # a 1.4 MB BMP answer
    head = (f"POST /api/colorize?format=bmp HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with caplog.at_level(logging.INFO, logger="streamcolor.serve"), Server(engine, options) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", port))
        sock.sendall(head + data)
        got, t0 = b"", time.monotonic()
        sock.settimeout(30)
        rate = 400 << 10  # bytes a second at most: each 1 MiB takes 2.5 s, over the 1 s --upload-timeout
        while len(got) < 1_440_054 + 100 and time.monotonic() - t0 < 60:
            chunk = sock.recv(24 << 10)
            if not chunk:
                break
            got += chunk
            time.sleep(max(0.0, len(got) / rate - (time.monotonic() - t0)))
        sock.close()
        assert len(got) - got.index(b"\r\n\r\n") - 4 == 800 * 600 * 3 + 54, len(got)

        leaver = socket.create_connection(("127.0.0.1", port))
        leaver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        leaver.sendall(head + data)
        leaver.settimeout(30)
        assert leaver.recv(12).startswith(b"HTTP/1.1 200")
        leaver.close()  # gone mid-answer
        deadline = time.monotonic() + 10
        while srv.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.stats()["responses"].get("5xx", 0) == 0
    assert "internal error" not in caplog.text and "Traceback" not in caplog.text


def test_a_gif_is_never_taken_for_an_mpeg_ts_video():
    from streamcolor.serve import looks_like_image, looks_like_video

    gif = bytearray(b"GIF89a" + bytes(500))
    gif[188] = gif[376] = 0x47  # palette bytes that happen to equal MPEG-TS's sync byte
    assert looks_like_image(bytes(gif)) and not looks_like_video(bytes(gif))
    ts = bytearray(188 * 5)  # (four sync bytes, 188 apart)
    ts[0] = ts[188] = ts[376] = ts[564] = 0x47
    assert looks_like_video(bytes(ts))


def test_big_images_wait_for_each_other_under_the_memory_budget(engine):
    from streamcolor import memory

    from streamcolor.colorize import model_options

    photos = [png_bytes(gray(i, 600, 800)) for i in range(4)]
    size = model_options(engine).render_size  # (each is counted with the engine's share at its render size)
    one = memory.encoded_bytes(photos[0], size)
    options = ServeOptions(port=0, memory_budget=int(one * 1.5), max_pixels=MAX_PIXELS,
                           batching=BatchingOptions(max_batch=4, max_wait_ms=50))

    async def all_at_once(url):
        async with aiohttp.ClientSession() as s:
            async def one_(data):
                async with s.post(url + "/api/colorize", data=data) as r:
                    return r.status
            return await asyncio.gather(*(one_(d) for d in photos))

    with Server(SlowEngine(engine, delay=0.2), options) as srv:
        statuses = asyncio.run(all_at_once(srv.url))
        deadline = time.monotonic() + 10  # the last answer is on the wire a moment before its handler returns
        while srv.stats()["memory"]["used"] and time.monotonic() < deadline:
            time.sleep(0.02)
        mem = srv.stats()["memory"]
    assert statuses == [200] * 4
    # one image's working estimate at a time, beside (at most) the answers of others being sent
    assert max(memory.encoded_bytes(d, size) for d in photos) <= mem["peak"] <= options.memory_budget
    assert mem["used"] == 0 and mem["waiting"] == 0


def test_video_round_trip(server, tmp_path):
    from streamcolor.video import make_clip, video_size

    clip = make_clip(tmp_path / "clip.mp4", 96, 64, 12)
    r = post_file(server.url, clip.read_bytes(), "clip.mp4", "video/mp4", query="?render_size=64")
    assert r.status == 200, r.body[:300]
    assert r.headers["Content-Type"] == "video/mp4" and 'filename="clip-colour.mp4"' in r.headers["Content-Disposition"]
    out = tmp_path / "out.mp4"
    out.write_bytes(r.body)
    assert video_size(out) == (96, 64)
    bad = post_file(server.url, b"\0\1\2 not a video" * 50, "broken.mp4", "video/mp4")
    assert bad.status == 400 and bad.json()["error"]
    side = int(MAX_PIXELS ** 0.5) // 2 * 2 + 2  # frames just over the server's pixel limit, as images are refused
    big = make_clip(tmp_path / "big.mp4", side, side, 1)
    r = post_file(server.url, big.read_bytes(), "big.mp4", "video/mp4", query="?render_size=64")
    assert r.status == 400 and "over the limit" in r.json()["error"], r.body[:300]


def test_a_video_answer_is_sent_from_its_file_and_its_folder_removed(engine, tmp_path, monkeypatch):
    """A colorized video can be many times its upload, so it is sent from disk a chunk at a time,
    and its working folder is gone once the answer is out, after an error too."""
    from streamcolor.video import make_clip

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    clip = make_clip(tmp_path / "clip.mp4", 96, 64, 40)
    data = clip.read_bytes()
    read_whole = []
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        read_whole.append(self.name)
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with Server(engine, ServeOptions(port=0)) as srv:
        r = post_file(srv.url, data, "clip.mp4", "video/mp4", query="?render_size=64")
        assert r.status == 200, r.body[:300]
        assert not [n for n in read_whole if n.startswith("colour.")]  # (sent a chunk at a time)
        assert len(r.body) == int(r.headers["Content-Length"]) and r.body[4:8] == b"ftyp"
        bad = post_file(srv.url, data[:300], "cut.mp4", "video/mp4")
        assert bad.status == 400
        # (the first answer's folder goes once its last chunk is written, which the client may see first:
        # the handler's removal can still be on its way when the second answer arrives on a loaded machine)
        for _ in range(100):
            if not list((tmp_path / "tmp").iterdir()):
                break
            time.sleep(0.1)
        assert list((tmp_path / "tmp").iterdir()) == []


def test_an_animated_gif_comes_back_as_a_video(server, engine, tmp_path):
    """Frames in time are a video's job, as `streamcolor video` takes an animated GIF: the answer is an MP4
    of as many frames (a still GIF stays an image)."""
    import av

    frames = [Image.fromarray(gray(seed=i)) for i in range(5)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    r = post_file(server.url, buf.getvalue(), "anim.gif", "image/gif", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4", r.body[:300]
    assert 'filename="anim-colour.mp4"' in r.headers["Content-Disposition"]
    (tmp_path / "out.mp4").write_bytes(r.body)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
    webp = io.BytesIO()  # (FFmpeg decodes no frame of an animated WebP: Pillow does)
    frames[0].save(webp, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    r = post_file(server.url, webp.getvalue(), "anim.webp", "image/webp", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4", r.body[:300]
    with Server(engine, ServeOptions(port=0, max_video_frames=4)) as small:  # (counted from its header)
        r = post_file(small.url, webp.getvalue(), "anim.webp", "image/webp", query="?render_size=64")
        assert r.status == 413 and "more than 4 frames, over this server's limit of 4" in r.json()["error"], r.body[:300]
    still = io.BytesIO()
    frames[0].save(still, format="GIF")
    r = post_file(server.url, still.getvalue(), "still.gif", "image/gif", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"].startswith("image/"), r.body[:300]


def test_a_video_without_a_name_or_type_is_known_by_its_content(server, tmp_path):
    """A raw body (curl --data-binary @film.mp4) or a name without a suffix is sniffed, and the
    content wins over a wrong name or type; errors are said in the upload's own words, not the
    server's temp path."""
    from streamcolor.serve import looks_like_video
    from streamcolor.video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 96, 64, 6).read_bytes()
    r = request("POST", f"{server.url}/api/colorize?render_size=64", data=clip)
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4", r.body[:300]
    r = post_file(server.url, clip, "clip", "application/octet-stream", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4", r.body[:300]
    # what it is wins over what it is called: a photo named like a video, a clip sent as a JPEG
    r = post_file(server.url, jpeg_bytes(gray()), "photo.mp4", "video/mp4", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg", r.body[:300]
    r = post_file(server.url, clip, "x.jpg", "image/jpeg", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"] == "video/mp4", r.body[:300]
    r = post_file(server.url, clip[:200], "cut.mp4", "video/mp4")  # said in the upload's own words
    error = r.json()["error"]
    assert r.status == 400 and error.startswith("cut.mp4: "), error
    assert "streamcolor-serve" not in error and "`" not in error
    assert not looks_like_video(jpeg_bytes(gray())) and not looks_like_video(b"\0\0\0\x18ftypheic" + b"\0" * 64)


def test_a_video_is_counted_by_its_frames_against_the_memory_budget(engine, tmp_path):
    """A video holds its frames' working memory (frames in flight) while it runs; one over the
    budget runs alone, as a big image does; one whose frames need more than VIDEO_OVER_BUDGET
    times the budget is refused (413), whatever its length."""
    from streamcolor.serve import VIDEO_OVER_BUDGET
    from streamcolor.video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 96, 64, 6).read_bytes()
    need = memory.video_bytes(96, 64)
    for budget in (need * 4, need - 1):
        with Server(engine, ServeOptions(port=0, memory_budget=budget)) as srv:
            r = post_file(srv.url, clip, "clip.mp4", "video/mp4", query="?render_size=64")
            assert r.status == 200, r.body[:300]
            assert srv.stats()["memory"]["peak"] >= need
    with Server(engine, ServeOptions(port=0, memory_budget=need // VIDEO_OVER_BUDGET - 1)) as srv:
        r = post_file(srv.url, clip, "clip.mp4", "video/mp4", query="?render_size=64")
        assert r.status == 413 and "frames of 96x64 need about" in r.json()["error"], r.body[:300]
        assert srv.stats()["memory"]["used"] == 0


def test_a_video_over_the_frame_limit_is_refused(engine, tmp_path):
    """A small upload can hold a long film: past --max-video-frames it is a 413 (from the
    container's count before any work, or counted as it runs when the count is not known)."""
    from streamcolor.video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 96, 64, 12).read_bytes()
    with Server(engine, ServeOptions(port=0, max_video_frames=5)) as srv:
        r = post_file(srv.url, clip, "clip.mp4", "video/mp4", query="?render_size=64")
        assert r.status == 413 and "more than 5 frames, over this server's limit of 5" in r.json()["error"], r.body[:300]
        assert srv.stats()["memory"]["used"] == 0
    with Server(engine, ServeOptions(port=0, max_video_frames=12)) as srv:
        assert post_file(srv.url, clip, "clip.mp4", "video/mp4", query="?render_size=64").status == 200


def test_a_video_whose_container_understates_its_length_is_counted_before_any_work(engine, tmp_path):
    """300 frames 1 ms apart in a stream declared at 1 fps: the container says about one frame,
    so the upload passed the limit and was colorized for as long as it took (minutes for 20,000
    frames, the one video slot held).  Its packets are counted first: 413, no frame colorized."""
    import av

    path = tmp_path / "lie.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "gray"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(300):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16), i % 256, np.uint8), format="gray")
            frame.pts, frame.time_base = i, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert (v.frames or 0) <= 1 and float(c.duration or 0) / 1e6 < 2  # (what a header sees: ~1 frame at 1 fps)
    with Server(engine, ServeOptions(port=0, max_video_frames=100)) as srv:
        r = post_file(srv.url, path.read_bytes(), "lie.mkv", "video/x-matroska", query="?render_size=64")
        # ("more than": counted from its packets; while colorizing, the limit said "over 100")
        assert r.status == 413 and "more than 100 frames" in r.json()["error"], r.body[:300]


def test_shutdown_cuts_off_a_video_in_progress_at_its_next_frame(engine, tmp_path):
    """Past the shutdown timeout a video being colorized stops at its next frame (it used to run
    to its end, holding the worker threads and the process, through further signals)."""
    from streamcolor.video import make_clip

    clip = make_clip(tmp_path / "long.mp4", 96, 64, 3000).read_bytes()
    got: list = []
    srv = Server(engine, ServeOptions(port=0, shutdown_timeout=0.5)).start()
    sender = threading.Thread(target=lambda: got.append(
        post_file(srv.url, clip, "long.mp4", "video/mp4", query="?render_size=64")))
    sender.start()
    deadline = time.monotonic() + 60
    while srv.stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # (colorizing by now)
    srv.stop(timeout=120)
    sender.join(120)
    assert got and got[0].status == 503 and "cut off by the server's shutdown" in got[0].json()["error"], got


def test_a_video_whose_client_left_stops_at_its_next_frame(engine, tmp_path, caplog):
    """Videos run one at a time: one whose client left went on to its end, holding the slot
    from every later upload for nobody."""
    import logging

    from streamcolor.video import make_clip

    clip = make_clip(tmp_path / "long.mp4", 96, 64, 3000).read_bytes()
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n" + clip + b"\r\n--b--\r\n")
    head = (f"POST /api/colorize?render_size=64 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n").encode()
    with caplog.at_level(logging.INFO, logger="streamcolor"), Server(engine, ServeOptions(port=0)) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head + body)
        deadline = time.monotonic() + 60  # (bounds on waiting, not speed figures)
        while srv.stats()["in_flight"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # (colorizing by now: 3,000 frames take far longer)
        sock.close()
        deadline = time.monotonic() + 120
        while srv.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.stats()["in_flight"] == 0
    assert "long.mp4: its client left; stopped" in caplog.text


def test_a_videos_warnings_name_the_upload_not_the_servers_temporary_file(engine, tmp_path, caplog):
    import logging

    src = odd_sized_video(tmp_path / "odd.mkv")  # an odd side: the pipeline warns that it pads it, naming the video
    with caplog.at_level(logging.WARNING, logger="streamcolor"), Server(engine, ServeOptions(port=0)) as srv:
        r = post_file(srv.url, src.read_bytes(), "film.mkv", "video/x-matroska", query="?render_size=64")
    assert r.status == 200
    assert "film.mkv: 33x21 has an odd side" in caplog.text, caplog.text
    assert "input.mkv" not in caplog.text and "streamcolor-" not in caplog.text


def test_video_turned_off(engine):
    with Server(engine, ServeOptions(port=0, video=False)) as srv:
        r = post_file(srv.url, b"\0" * 100, "clip.mp4", "video/mp4")
    assert r.status == 415 and "turned off" in r.json()["error"]


def test_cli_help_has_examples():
    from click.testing import CliRunner

    from streamcolor.cli import cli

    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "Examples:" in out and "curl -F file=@" in out and "127.0.0.1" in out


def test_cli_listens_on_localhost_and_stops_on_sigint(tmp_path):
    """The real command: logs its URL, binds 127.0.0.1 only, exits 0 on Ctrl-C."""
    log_file = tmp_path / "serve.log"
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamcolor", "serve", "--port", "0", "--backend", "onnx"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "listening on" not in log_file.read_text():
            assert proc.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.1)
        text = log_file.read_text()
        url = text.split("listening on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        import psutil

        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
        assert request("GET", url + "/api/health").json()["status"] == "ok"
        r = post_file(url, jpeg_bytes(gray(8)))
        assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_file.read_text()
    assert "shutting down" in text and "stopped" in text and "POST /api/colorize 200" in text
    assert "Traceback" not in text


# --------------------------------------------------------------------------- the page in headless Chromium

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class DevTools:
    """The smallest Chrome DevTools Protocol client that drives one page (over aiohttp)."""

    def __init__(self, ws):
        self.ws, self.n, self.events = ws, 0, []

    async def call(self, method: str, **params):
        self.n += 1
        my = self.n
        await self.ws.send_json({"id": my, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 60)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def js(self, expression: str):
        r = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := await self.js(expression):
                return value
            await asyncio.sleep(0.1)
        raise TimeoutError(expression)

    async def drop_files(self, selector: str, paths: list[str]) -> None:
        """A real drag and drop of files onto the element (Input.dispatchDragEvent)."""
        x, y = await self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                             ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        data = {"items": [], "files": paths, "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            await self.call("Input.dispatchDragEvent", type=kind, x=x, y=y, data=data)

    async def choose_files(self, selector: str, paths: list[str]) -> None:
        """Files chosen in an <input type=file> (what the file dialog does)."""
        root = await self.call("DOM.getDocument")
        node = await self.call("DOM.querySelector", nodeId=root["root"]["nodeId"], selector=selector)
        await self.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=paths)


async def _drive_page(url: str, photo: Path, bad: Path, screenshot: Path | None) -> dict:
    exe = _chromium()
    with tempfile.TemporaryDirectory(prefix="streamcolor-chromium-") as profile:
        proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                 "--disable-component-update", "--no-first-run", "--disable-extensions",
                                 f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,1000",
                                 "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                assert proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
                await asyncio.sleep(0.1)
            port = port_file.read_text().split()[0]
            async with aiohttp.ClientSession() as s:
                targets = await (await s.get(f"http://127.0.0.1:{port}/json/list")).json()
                target = next(t for t in targets if t["type"] == "page")
                async with s.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    return await _page_checks(DevTools(ws), url, photo, bad, screenshot)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _page_checks(dt: DevTools, url: str, photo: Path, bad: Path, screenshot: Path | None) -> dict:
    await dt.call("Network.enable")
    await dt.call("Page.enable")
    await dt.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
    await dt.call("Page.navigate", url=url)
    await dt.wait_for("window.streamcolorReady === true")
    out: dict = {"status": await dt.js("document.querySelector('#status').textContent")}

    await dt.drop_files("#drop", [str(photo)])
    await dt.wait_for("!!document.querySelector('.card.failed') || [...document.querySelectorAll('.card.done img')]"
                      ".filter(i => i.complete && i.naturalWidth > 0).length === 2")
    out["card"] = await dt.js("""(() => {
        const card = document.querySelector('.card');
        const after = card.querySelector('img.after'), link = card.querySelector('a[download]');
        return {cls: card.className, text: card.textContent, w: after && after.naturalWidth, h: after && after.naturalHeight,
                download: link && link.getAttribute('download'), href: link && link.href.slice(0, 5)};
    })()""")
    out["colour"] = await dt.js("""(() => {   // how far from gray the shown result is
        const img = document.querySelector('.card img.after'), c = document.createElement('canvas');
        c.width = 64; c.height = 48; const g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 48);
        const d = g.getImageData(0, 0, 64, 48).data; let s = 0;
        for (let i = 0; i < d.length; i += 4) { const m = (d[i] + d[i+1] + d[i+2]) / 3;
          s += Math.abs(d[i] - m) + Math.abs(d[i+1] - m) + Math.abs(d[i+2] - m); }
        return s / (d.length / 4) / 3; })()""")
    out["download_bytes"] = await dt.js("fetch(document.querySelector('.card a[download]').href)"
                                        ".then(r => r.blob()).then(b => b.size)")
    # the slider: move it by keyboard-free input, as a drag does
    out["clip"] = await dt.js("""(() => {
        const range = document.querySelector('.card .compare input[type=range]');
        range.value = 30; range.dispatchEvent(new Event('input'));
        return getComputedStyle(document.querySelector('.card img.after')).clipPath; })()""")
    if screenshot is not None:
        await dt.js("(() => { const r = document.querySelector('.card .compare input[type=range]');"
                    " r.value = 50; r.dispatchEvent(new Event('input')); })()")
        shot = await dt.call("Page.captureScreenshot", format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))

    await dt.choose_files("#file", [str(bad)])
    await dt.wait_for("document.querySelectorAll('.card').length === 2 && "
                      "!document.querySelector('.card.busy')")
    out["error"] = await dt.js("(document.querySelector('.card.failed .error') || {}).textContent")
    out["requests"] = sorted({e["params"]["request"]["url"] for e in dt.events
                              if e.get("method") == "Network.requestWillBeSent"})
    return out


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_page_in_headless_chromium(server, tmp_path):
    """Drop a photo on the page, see it colorized with a slider and a download link;
    a bad file shows its reason; the page asks nothing of the internet."""
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo\n")
    out = asyncio.run(_drive_page(server.url + "/", SAMPLE_PHOTO, bad, None))
    assert "streamcolor" in out["status"] and "batches of up to 8" in out["status"]
    card = out["card"]
    assert "done" in card["cls"], card
    assert (card["w"], card["h"]) == Image.open(SAMPLE_PHOTO).size
    assert card["download"] == "chenonceau-bw-colour.jpg" and card["href"] == "blob:"
    assert out["download_bytes"] > 10_000
    assert out["colour"] > 1.0  # the shown result has colour
    assert out["clip"] == "inset(0px 0px 0px 30%)"
    assert out["error"] and "not an image" in out["error"]
    local = (server.url, "blob:" + server.url, "data:")
    assert all(u.startswith(local) for u in out["requests"]), out["requests"]


@pytest.mark.skipif(not os.environ.get("STREAMCOLOR_SCREENSHOT"), reason="set STREAMCOLOR_SCREENSHOT=docs/serve.png")
@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_screenshot(tmp_path):
    """``STREAMCOLOR_SCREENSHOT=docs/serve.png pytest tests/test_serve.py -k screenshot``: the page as
    `streamcolor serve` shows it by default (default engine and limits), after one photo."""
    from streamcolor.engines import load_engine

    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo\n")
    shot = Path(os.environ["STREAMCOLOR_SCREENSHOT"])
    with load_engine("default") as eng, Server(eng, ServeOptions(port=0)) as srv:
        out = asyncio.run(_drive_page(srv.url + "/", SAMPLE_PHOTO, bad, shot))
    assert "done" in out["card"]["cls"] and Image.open(shot).size == (1280, 1000)


def test_the_download_keeps_the_uploads_name_in_any_script(server):
    f = aiohttp.FormData(quote_fields=False)  # the name as browsers and curl send it: UTF-8, not %-quoted
    f.add_field("file", jpeg_bytes(gray()), filename="été à Nice 日本.jpg", content_type="image/jpeg")
    r = request("POST", f"{server.url}/api/colorize?render_size=64", data=f)
    assert r.status == 200
    cd = r.headers["Content-Disposition"]
    assert cd.startswith('inline; filename="ete_a_Nice-colour.jpg"')  # for old clients: ASCII, accents dropped
    assert "filename*=UTF-8''" in cd
    assert urllib.parse.unquote(cd.split("filename*=UTF-8''")[1]) == "été à Nice 日本-colour.jpg"


def test_a_malformed_file_name_parameter_is_no_warning_on_the_servers_stderr(engine):
    """aiohttp warns with the client's own text when a filename* parameter is malformed; the server
    takes such an upload as one without a name and prints nothing of it.  (Its own server: pytest
    puts back the warning filters after each test, the one a module's server set up included.)"""
    body = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8\'\'bad%0Aname:%20x.jpg\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg_bytes(gray()) + b"\r\n--XX--\r\n")
    with Server(engine, ServeOptions(port=0)) as server, warnings.catch_warnings(record=True) as seen:
        port = urllib.parse.urlsplit(server.url).port
        status, _ = raw_http(port, "POST /api/colorize?render_size=64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             "Content-Type: multipart/form-data; boundary=XX\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n", body)
    assert status == 200
    assert not [w for w in seen if "ContentDisposition" in type(w.message).__name__], [str(w.message) for w in seen]


def test_folders_a_killed_server_left_are_swept_and_no_others(tmp_path):
    from streamcolor.serve import TEMP_PREFIX, sweep_abandoned_folders

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = {"dead": f"{TEMP_PREFIX}{gone.pid}-k3x9", "alive": f"{TEMP_PREFIX}{os.getppid()}-a1b2",
             "own": f"{TEMP_PREFIX}{os.getpid()}-z0z0", "user's": f"{TEMP_PREFIX}notes"}
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "input.mp4").write_bytes(b"x" * 100)
    (tmp_path / f"{TEMP_PREFIX}{gone.pid}-file").write_bytes(b"a file, not a folder: not ours")
    assert sweep_abandoned_folders(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["alive"], names["own"], names["user's"], f"{TEMP_PREFIX}{gone.pid}-file"])


@pytest.mark.parametrize("name, fmt, codec, options", [("old.wmv", "asf", "wmv2", {}),
                                                       ("old.m2ts", "mpegts", "mpeg2video", {"mpegts_m2ts_mode": "1"}),
                                                       ("old.flv", "flv", "flv", {}), ("tape.dv", "dv", "dvvideo", {})])
def test_wmv_m2ts_flv_and_dv_uploads_are_known_as_videos(name, fmt, codec, options, tmp_path):
    """By their first bytes, as MP4 and Matroska are (they got 400 'not an image file'); and by
    name, with the command line's list of video suffixes."""
    import av

    from streamcolor.serve import VIDEO_SUFFIXES, looks_like_video

    path = tmp_path / name
    with av.open(str(path), "w", format=fmt, options=options) as out:
        v = out.add_stream(codec, rate=25)
        w, h = (720, 576) if codec == "dvvideo" else (64, 48)  # (DV has fixed frame sizes)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((h, w), 40 * i, np.uint8), format="gray").reformat(
                format="yuv420p")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode())
    assert looks_like_video(path.read_bytes()[:1024])
    assert path.suffix in VIDEO_SUFFIXES and ".dv" in VIDEO_SUFFIXES


def test_cli_on_a_port_in_use_exits_2_saying_so():
    """The server could not start: exit 2, as the README's exit codes say (it was 1)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "streamcolor", "serve", "--port", str(port), "--backend", "onnx"],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr


def test_a_photo_whose_header_bytes_look_like_ts_sync_is_still_a_photo(engine):
    """A BMP's size field (byte 4) and its gray-71 rows held 0x47 where M2TS has its sync bytes:
    the photo went to the video pipeline (400); an image's own header now wins."""
    from streamcolor.serve import looks_like_video

    buf = io.BytesIO()
    Image.fromarray(np.full((1560, 1000, 3), 71, np.uint8)).save(buf, format="BMP")
    data = buf.getvalue()
    assert data[4] == 0x47 and not looks_like_video(data)
    with Server(engine, ServeOptions(port=0, max_upload=8 << 20)) as srv:
        r = post_file(srv.url, data, "scan.bmp", "image/bmp", query="?render_size=64")
    assert r.status == 200 and r.headers["Content-Type"] == "image/bmp", r.body[:300]


def test_a_request_that_is_not_http_is_one_warning_line(caplog):
    """aiohttp logged a negative Content-Length as an error with its parser's traceback."""
    import logging

    from aiohttp.http_exceptions import BadHttpMessage

    from streamcolor import serve

    serve.one_line_protocol_errors()
    serve.one_line_protocol_errors()  # (once: the filter is not added twice)
    server = logging.getLogger("aiohttp.server")
    assert sum(isinstance(f, serve.ProtocolErrorLine) for f in server.filters) == 1
    try:
        raise BadHttpMessage("Invalid character in Content-Length:\n\n  b'Content-Length: -5'\n    ^")
    except BadHttpMessage:
        with caplog.at_level(logging.INFO, logger="aiohttp.server"):
            server.exception("Error handling request from %s", "127.0.0.1")
    rec = caplog.records[-1]
    assert rec.levelno == logging.WARNING and rec.exc_info is None
    assert rec.getMessage() == ("a request that is not valid HTTP from 127.0.0.1 (answered 400): Invalid character "
                                "in Content-Length: b'Content-Length: -5'")
    try:
        raise RuntimeError("a real error")
    except RuntimeError:
        server.exception("Error handling request from %s", "127.0.0.1")
    assert caplog.records[-1].exc_info is not None  # (a real error keeps its traceback)
