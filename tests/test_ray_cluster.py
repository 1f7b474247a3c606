"""streamcolor against a Ray cluster started the way docs/ray.md says: ``ray start --head``
with token authentication, then ``ray job submit`` and ``streamcolor batch --ray-address``,
all as subprocesses, as a user runs them.

One head for the module, on free ports, with its own ``RAY_TMPDIR`` (so that it is
the cluster a plain ``ray.init()`` of these subprocesses would find, and no other
Ray on the machine sees it), stopped at the end by signalling the process that
started it.  Inputs are two 60x80 photos: what is tested is the plumbing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
#: A bound on each command (the harness's, not an assertion on speed): a hang fails the test.
COMMAND_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Head:
    """A ``ray start --head --block`` process and its addresses."""

    def __init__(self, root: Path):
        self.token = secrets.token_hex(16)
        self.port, self.dashboard = free_port(), free_port()
        self.tmpdir = tempfile.mkdtemp(prefix="scray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.home = root / "home"
        self.home.mkdir()
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(self.home),
                    "RAY_TMPDIR": self.tmpdir, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.log = root / "head.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(self.port),
                 "--dashboard-port", str(self.dashboard), "--include-dashboard", "true",
                 "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())],
                # Ray drains a node for up to 30 s on SIGTERM (when a job ran on it): a test head has nothing
                # to drain for, so 5 s bounds the module's teardown
                env={**self.env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "5"}, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while b"Ray runtime started" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"ray start --head did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM to the process we started (``--block`` then stops what it started); its
        session group is killed only if it has not gone after a minute.  Then its temp folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    h = Head(tmp_path_factory.mktemp("head"))
    yield h
    h.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(2):
        gray = (np.random.default_rng(i).random((60, 80)) * 255).astype(np.uint8)
        Image.fromarray(gray).save(root / f"p{i}.jpg", quality=90)
    return root


def run(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def batch(src: Path | str, out: str, *ray_args: str) -> list[str]:
    return [str(BIN / "streamcolor"), "batch", str(src), "-o", out, "--no-progress", "-r", "64", "--backend",
            "onnx", *ray_args]


def test_job_submit_as_the_docs_say(head, photos, tmp_path):
    """docs/ray.md: ``ray job submit --address http://HEAD:8265 -- python -m
    streamcolor.commands.collection SRC OUT ...``, with the token in the environment."""
    out = tmp_path / "colour"
    result = run([str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard}", "--",
                  "python", "-m", "streamcolor.commands.collection", str(photos), str(out), "--actors", "1",
                  "-r", "64", "--backend", "onnx"], head.env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 ok, 0 skipped, 0 failed" in result.stdout + result.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg", "p1.jpg"]


def test_batch_by_address_with_a_relative_output(head, photos, tmp_path):
    """The actors' working folder is the cluster session's: a relative -o must
    reach them as the driver's absolute path."""
    result = run(batch(photos, "rel-out", "--ray-address", head.address), head.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"joined the Ray cluster at {head.address}" in result.stderr
    assert sorted(p.name for p in (tmp_path / "rel-out").glob("*.jpg")) == ["p0.jpg", "p1.jpg"]


def test_bare_ray_does_not_join_the_running_cluster(head, photos, tmp_path):
    """With the head running (and findable: same RAY_TMPDIR), bare --ray starts a private Ray."""
    result = run(batch(photos, str(tmp_path / "out"), "--ray"), head.env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "started a private local Ray" in result.stderr and "joined" not in result.stderr


@pytest.mark.parametrize("case", ["no token", "wrong token", "nothing listening"])
def test_connection_errors_are_one_line(head, photos, tmp_path, case):
    """A refused token or an address nothing answers at: exit 2 with one error line (no
    Ray traceback, no retry log), well within the command's bound."""
    env = dict(head.env)
    address = head.address
    if case == "no token":
        del env["RAY_AUTH_MODE"], env["RAY_AUTH_TOKEN"]
    elif case == "wrong token":
        env["RAY_AUTH_TOKEN"] = "not-" + head.token
    else:
        address = f"127.0.0.1:{free_port()}"
    result = run(batch(photos, str(tmp_path / "out"), "--ray-address", address), env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {address}: ")
    expected = {"no token": "set RAY_AUTH_MODE=token", "wrong token": "refused this token",
                "nothing listening": "cannot reach the Ray cluster"}[case]
    assert expected in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jpg"))
