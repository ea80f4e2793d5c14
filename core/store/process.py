"""The event loop's side of the writer process (``child.py``): start it, send batches, read answers.

One socket carries both ways: a framed pickle per batch out, one per answer back, read by the
event loop itself (no thread hop). The child is a fresh interpreter that loads only ``child.py``,
``transitions.py`` and ``faults.py`` (standard library), holds the store's lock file with the parent
(so no other SakaiBot takes the file while its last batch lands), and inherits this process's
ignored signals (``SIGXFSZ``); every batch carries this process's ``RLIMIT_FSIZE`` as it is now,
which the child applies before writing.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pickle
import resource
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.store.child import HEADER, ErrorInfo, frame

HERE = Path(__file__).resolve().parent
STOP_WAIT = 10.0  # seconds a stopping child may take to finish its last batch before it is killed
BOOT = """
import importlib.util, sys
def load(name, file):
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
here, fd, path, timeout, pages = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
sys.path[1:1] = sys.argv[6:]  # the parent's: a function sent by reference (a test's injected fault) imports
faults = load("sakaibot_store_faults", here + "/faults.py")
ops = load("sakaibot_store_transitions", here + "/transitions.py")
child = load("sakaibot_store_child", here + "/child.py")
child.serve(fd, path, timeout, pages, ops.OPS, faults.diagnose)
"""


class WriterGone(ConnectionError):
    """The writer process stopped before it answered."""


def rebuild(info: ErrorInfo) -> Exception:
    """The child's error as an exception of the same kind here, with SQLite's error name and code."""
    kind, name, code, message, _ = info
    found = getattr(sqlite3, kind, None)
    exc = found(message) if isinstance(found, type) and issubclass(found, Exception) else RuntimeError(
        f"{kind}: {message}")
    if name is not None:
        exc.sqlite_errorname = name  # type: ignore[attr-defined]
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


Reply = Callable[[Any, BaseException | None], None]  # called with the answer, or with the error instead


class _Answers(asyncio.Protocol):
    """Cuts the byte stream into answers; each goes to the oldest waiting reply, called right here.

    No future and no extra turn of the loop per batch: the writers of the batch wake in this turn.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiting: collections.deque[Reply] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write batches on."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Answers, as many as have arrived whole."""
        buffer = self.buffer
        buffer += data
        while len(buffer) >= HEADER.size:
            end = HEADER.size + HEADER.unpack_from(buffer)[0]
            if len(buffer) < end:
                return
            answer = _loads(memoryview(buffer)[HEADER.size:end])
            del buffer[:end]
            self.waiting.popleft()(answer, None)

    def connection_lost(self, exc: Exception | None) -> None:
        """Every reply still waiting learns that no answer will come."""
        self.lost = True
        while self.waiting:
            self.waiting.popleft()(None, WriterGone("the store's writer process stopped"))


def _loads(view: memoryview) -> Any:
    with view:
        return pickle.loads(view)


class WriterProcess:
    """One child writing to ``path``; ``start`` again after it died."""

    def __init__(self, path: Path, busy_timeout: float, backstop_pages: int) -> None:
        self.path, self.busy_timeout, self.backstop_pages = path, busy_timeout, backstop_pages
        self.process: subprocess.Popen[bytes] | None = None
        self._answers: _Answers | None = None

    @property
    def alive(self) -> bool:
        """Whether batches can be sent."""
        return self._answers is not None and not self._answers.lost

    async def start(self, lock_fd: int | None) -> None:
        """Start the child and wait until its connection is open; ``sqlite3.Error`` (rebuilt) if it cannot be."""
        loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair()
        try:
            fds = (theirs.fileno(), *(() if lock_fd is None else (lock_fd,)))
            self.process = await loop.run_in_executor(None, self._spawn, theirs.fileno(), fds)
            theirs.close()
            answers = _Answers()
            await loop.create_unix_connection(lambda: answers, sock=mine)
            self._answers = answers
            hello = await self.ask(None)
            if hello[0] != "ready":
                raise rebuild(hello[1])
        except BaseException:
            await self.stop()  # the transport first, if it took the socket; closing twice is harmless
            theirs.close()
            mine.close()
            raise

    def _spawn(self, fd: int, fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-I", "-S", "-c", BOOT, str(HERE), str(fd), str(self.path), str(self.busy_timeout),
                str(self.backstop_pages), *sys.path]
        return subprocess.Popen(args, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                restore_signals=False)

    def send(self, ops: list[tuple[Any, tuple[Any, ...]]], reply: Reply) -> None:
        """Send one batch; ``reply`` gets the child's answer, or ``WriterGone``."""
        self.post(_message(ops), reply)

    def request(self, ops: list[tuple[Any, tuple[Any, ...]]]) -> asyncio.Future[Any]:
        """``send`` with a future for the answer."""
        return self.ask(_message(ops))

    def post(self, message: Any, reply: Reply) -> None:
        """Queue ``reply`` for the next answer; send ``message`` unless it is ``None`` (the greeting)."""
        answers = self._answers
        if answers is None or answers.lost or answers.transport is None:
            asyncio.get_running_loop().call_soon(reply, None, WriterGone("the store's writer process is not running"))
            return
        answers.waiting.append(reply)
        if message is not None:
            answers.transport.write(frame(message))

    def ask(self, message: Any) -> asyncio.Future[Any]:
        """``post`` with a future for the answer."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def reply(answer: Any, exc: BaseException | None) -> None:
            if not future.done():
                future.set_result(answer) if exc is None else future.set_exception(exc)

        self.post(message, reply)
        return future

    async def stop(self) -> None:
        """Close the socket (the child ends after its batch under way) and wait for the child to exit."""
        answers, self._answers = self._answers, None
        if answers is not None and answers.transport is not None:
            answers.transport.close()
        process, self.process = self.process, None
        if process is not None:
            await asyncio.get_running_loop().run_in_executor(None, _reap, process)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` from ``/proc`` (0.0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _message(ops: list[tuple[Any, tuple[Any, ...]]]) -> tuple[int, list[tuple[Any, tuple[Any, ...]]]]:
    """A batch as sent: this process's file-size limit as it is now (the child applies it), then the ops."""
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0], ops


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
