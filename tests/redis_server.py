"""A real ``redis-server`` for tests: a free loopback port, data in a temporary folder, always stopped.

Tests that need it skip when redis-server is not installed, except in CI (``CI=true``), where a
missing server is a failure: ``.ci/system-packages`` installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_ATTEMPTS = 400  # x 25 ms: how long a starting server may take to answer PING


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server executable; skip (or, in CI, fail) without one."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server; CI runs .ci/system-packages)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class RedisServer:
    """One redis-server process that can be stopped and started again on the same port and data."""

    def __init__(self, executable: str, folder: Path, *, appendonly: bool = False) -> None:
        self.executable = executable
        self.folder = folder
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", *durability, "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(START_ATTEMPTS):
            if self.process.poll() is not None:
                break
            if self._answers():
                return
            time.sleep(0.025)
        self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the append-only file is flushed), killed if it hangs."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def running_server(tmp_path: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    """Start a server for one test and always stop it."""
    server = RedisServer(require_redis_server(), tmp_path, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()
