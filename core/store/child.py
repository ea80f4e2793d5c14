"""The store's writer process: every SQLite write runs here, on the machine's other core.

The event loop sends one framed pickle per batch of writes over a socket, without waiting for the
batch before; this process runs every batch that has arrived in one transaction (``BEGIN
IMMEDIATE`` … ``COMMIT``) and answers once per batch, after the ``COMMIT``, so an acknowledged write
is durable. The loop never waits for a round trip to send, and the writes of every batch that
arrived during a transaction share the next one. A write that fails on its own (a bad value, a
constraint) fails alone: the batch is rolled back and run again one transaction per write, which
commits the others (cheaper than a savepoint per write, since failures are rare). A failure the
file shares (full disk, lock, failed ``COMMIT``) fails the whole batch, with SQLite's error name and
the diagnosis of ``faults.py``; the connection stays usable. Each batch carries the parent's
``RLIMIT_FSIZE``, applied here first, so a limit set on the bot's process holds for its writes.

Standard library only: ``process.py`` starts it as a fresh interpreter that loads this file,
``transitions.py`` and ``faults.py`` by path. It ignores SIGINT and SIGTERM (the parent stops it
after its last writes) and exits when its socket reaches end of file: when the parent closes the
store, or dies.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import socket
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

MERGE_AT_MOST = 64  # batches that may share one transaction
HEADER = struct.Struct("!I")  # every frame: its length, then a pickle
SHARED_FAILURES = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY",
                   "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN")
ErrorInfo = tuple[str, str | None, int | None, str, str]  # class, SQLite error name, code, message, detail
Diagnose = Callable[[Path, BaseException], str]


def describe(exc: BaseException) -> str:
    """SQLite's own words for a failure, with its error name (``SQLITE_FULL: database or disk is full``)."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"


def shared(exc: BaseException) -> bool:
    """A failure of the file or the connection, not of one write's values: it fails the whole batch."""
    return str(getattr(exc, "sqlite_errorname", "")).startswith(SHARED_FAILURES)


def frame(message: Any) -> bytes:
    """One message as sent on the socket."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def receive(sock: socket.socket) -> Any:
    """The next message, or ``None`` at end of file."""
    head = _exactly(sock, HEADER.size)
    if head is None:
        return None
    body = _exactly(sock, HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def error_info(exc: BaseException, path: Path, diagnose: Diagnose) -> ErrorInfo:
    """What the parent needs to raise the same error: class, name, code, words and diagnosis."""
    return (type(exc).__name__, getattr(exc, "sqlite_errorname", None), getattr(exc, "sqlite_errorcode", None),
            str(exc), describe(exc) + diagnose(path, exc))


class Writer:
    """Runs batches of named ops against one connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path, ops: dict[str, Callable[..., Any]],
                 diagnose: Diagnose) -> None:
        self.conn, self.path, self.ops, self.diagnose = conn, path, ops, diagnose

    def info(self, exc: BaseException) -> ErrorInfo:
        """What the parent needs to raise the same error (see ``error_info``)."""
        return error_info(exc, self.path, self.diagnose)

    def batch(self, ops: list[tuple[Any, tuple[Any, ...]]]) -> tuple[Any, ...]:
        """``("ok", results, failures, commits)`` or ``("failed", info)`` for a failure of the whole batch."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            return ("failed", self.info(exc))
        try:
            results = [self._call(op, args) for op, args in ops]
        except Exception as exc:
            self.rollback()
            return ("failed", self.info(exc)) if shared(exc) else self.one_by_one(ops)
        try:
            self.conn.execute("COMMIT")
        except Exception as exc:
            self.rollback()
            return ("failed", self.info(exc))
        return ("ok", results, {}, 1)

    def batches(self, groups: list[list[tuple[Any, tuple[Any, ...]]]]) -> list[tuple[Any, ...]]:
        """Several batches in one transaction, one answer each (a failure of the whole fails every one)."""
        if len(groups) == 1:
            return [self.batch(groups[0])]
        answer = self.batch([op for group in groups for op in group])
        if answer[0] != "ok":
            return [answer] * len(groups)
        _, results, failures, commits = answer
        answers, start = [], 0
        for group in groups:
            end = start + len(group)
            mine = {index - start: info for index, info in failures.items() if start <= index < end}
            answers.append(("ok", results[start:end], mine, commits))
            start, commits = end, 0  # the transaction counts once, with the first batch
        return answers

    def one_by_one(self, ops: list[tuple[Any, tuple[Any, ...]]]) -> tuple[Any, ...]:
        """After a write failed on its own: each write in its own transaction, so the others still commit."""
        results: list[Any] = [None] * len(ops)
        failures: dict[int, ErrorInfo] = {}
        commits = 0
        broken: ErrorInfo | None = None  # a failure of the file: the writes after it are not tried (each would wait)
        for index, (op, args) in enumerate(ops):
            if broken is not None:
                failures[index] = broken
                continue
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                results[index] = self._call(op, args)
                self.conn.execute("COMMIT")
                commits += 1
            except Exception as exc:
                self.rollback()
                failures[index] = self.info(exc)
                broken = failures[index] if shared(exc) else None
        return ("ok", results, failures, commits)

    def _call(self, op: Any, args: tuple[Any, ...]) -> Any:
        func = self.ops[op] if isinstance(op, str) else op  # a function by reference: tests inject failures
        return func(self.conn, *args)

    def rollback(self) -> None:
        """Undo an open transaction (SQLite may have rolled back already, after a full disk)."""
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error that made it necessary is the one reported
                self.conn.execute("ROLLBACK")


def connect(path: Path, busy_timeout: float, backstop_pages: int) -> sqlite3.Connection:
    """The writer's connection (the parent created, checked and migrated the file)."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: a commit survives a process crash
    conn.execute("PRAGMA cache_size = -16384")  # 16 MiB: a large batch stays in memory until its commit
    conn.execute(f"PRAGMA wal_autocheckpoint = {backstop_pages}")  # checkpoints run aside (checkpoints.py)
    return conn


def _no_wakeup_preemption() -> None:
    """``SCHED_BATCH``: a batch arriving must not preempt the event loop that sent it.

    Otherwise the kernel may switch to this process on the sender's core at every send (measured:
    ~190 µs per send on a busy 2-core machine), and the loop waits while its core runs this.
    """
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or refused: only slower
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _arrived(sock: socket.socket) -> list[Any]:
    """The batches already waiting on the socket (sent while the last transaction ran): they join the next."""
    found: list[Any] = []
    while len(found) < MERGE_AT_MOST and select.select([sock], [], [], 0)[0]:
        message = receive(sock)
        if message is None:  # end of file: the loop above sees it again and stops
            break
        found.append(message)
    return found


def _file_size_limit(soft: int) -> None:
    """The parent's ``RLIMIT_FSIZE`` as it is now: its writes meet the limit they would meet in the parent."""
    current, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != current:
        with contextlib.suppress(ValueError, OSError):  # above this process's hard limit: keep its own
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def serve(fd: int, path: str, busy_timeout: float, backstop_pages: int, ops: dict[str, Callable[..., Any]],
          diagnose: Diagnose) -> None:
    """Answer batches on socket ``fd`` until end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _no_wakeup_preemption()
    sock = socket.socket(fileno=fd)
    try:
        conn = connect(Path(path), busy_timeout, backstop_pages)
    except Exception as exc:
        sock.sendall(frame(("refused", error_info(exc, Path(path), diagnose))))
        return
    writer = Writer(conn, Path(path), ops, diagnose)
    sock.sendall(frame(("ready", os.getpid())))
    try:
        while (message := receive(sock)) is not None:
            messages = [message, *_arrived(sock)]
            _file_size_limit(messages[-1][0])
            answers = writer.batches([writes for _, writes in messages])
            sock.sendall(b"".join(frame(answer) for answer in answers))
    except (OSError, EOFError):  # the parent is gone
        pass
    finally:
        conn.close()
