"""Group commit: every write of the job store, gathered into as few SQLite transactions as possible.

Writes submitted while a transaction is in flight wait together and run in the next one
(``BEGIN IMMEDIATE`` … ``COMMIT``) on the store's single thread. Each batch costs one hop to the
thread and one back; every writer resumes only after the ``COMMIT`` that holds its write, so an
acknowledged write is durable. Each write runs under its own savepoint: a write that fails on its
own (a bad value, a constraint) fails only its writer; a failure the whole file shares (a full
disk, a failed ``COMMIT``) fails the whole batch. Either way ``StoreError``, and the connection
stays usable.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from core.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
Op = Callable[..., Any]  # runs on the store thread inside the batch's transaction: op(conn, *args)


class _Outcome:
    """What the thread hands back for a batch: each write's result, or the error that failed them all."""

    __slots__ = ("detail", "error", "results")

    def __init__(self, results: list[Any] | None, error: BaseException | None, detail: str = "") -> None:
        self.results, self.error = results, error
        self.detail = detail or (describe(error) if error is not None else "")


class _Failed:
    """One write that failed on its own, inside a batch that committed the others."""

    __slots__ = ("detail", "error")

    def __init__(self, error: BaseException) -> None:
        self.error, self.detail = error, describe(error)


SHARED_FAILURES = frozenset({"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY",
                             "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN"})


def _shared(exc: BaseException) -> bool:
    """A failure of the file or the connection, not of one write's values: it fails the whole batch."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    return any(name.startswith(prefix) for prefix in SHARED_FAILURES)


class _BatchFuture(asyncio.Future[_Outcome]):
    """Shared by every writer of a batch: one writer's cancellation must not cancel the others' outcome.

    ``cancel()`` refuses, so a cancelled writer is interrupted as soon as its batch has committed
    (at most ``busy_timeout`` later), never while others still wait on the same future.
    """

    def cancel(self, msg: Any = None) -> bool:
        """Refuse: the write is already on its way to the disk."""
        return False


class _Batch:
    """Writes gathered for one transaction."""

    __slots__ = ("future", "ops")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ops: list[tuple[Op, tuple[Any, ...]]] = []
        self.future = _BatchFuture(loop=loop)


def describe(exc: BaseException) -> str:
    """SQLite's own words for a failure, with its error name (``SQLITE_FULL: database or disk is full``)."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"


def rollback(conn: sqlite3.Connection) -> None:
    """Undo an open transaction without ever hiding the error that made it necessary."""
    if not conn.in_transaction:  # SQLite already rolled back (after SQLITE_FULL, an I/O error, ...)
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.warning("job store: rollback failed: %s", describe(exc))


class GroupWriter:
    """Runs writes in shared transactions on ``executor`` (one thread) against ``conn``."""

    def __init__(self, executor: Executor, diagnose: Callable[[BaseException], str] = lambda exc: "") -> None:
        self.conn: sqlite3.Connection | None = None
        self.commits = 0  # transactions committed: writes / commits is the mean batch size
        self.writes = 0
        self.closed = False
        self._executor = executor
        self._diagnose = diagnose
        self._gathering: _Batch | None = None
        self._flying: _Batch | None = None
        self.after_commit: Callable[[int], None] | None = None  # told the commit count when a batch lands

    async def write(self, op: Op, *args: Any) -> Any:
        """Run ``op(conn, *args)`` in the next transaction; its result once that transaction is committed."""
        if self.closed:
            raise StoreError(detail="the job store is closed")
        batch = self._gathering
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._gathering = _Batch(loop)
            if self._flying is None:
                loop.call_soon(self._launch)
        index = len(batch.ops)
        batch.ops.append((op, args))
        outcome = await batch.future
        if outcome.error is not None:
            raise StoreError(detail=outcome.detail) from outcome.error
        result = outcome.results[index]  # type: ignore[index]
        if isinstance(result, _Failed):
            raise StoreError(detail=result.detail) from result.error
        return result

    async def drain(self) -> None:
        """Wait until every submitted write has landed."""
        while (batch := self._gathering or self._flying) is not None:
            await batch.future

    def _launch(self) -> None:
        batch = self._gathering
        if batch is None or self._flying is not None:
            return
        self._gathering, self._flying = None, batch
        try:
            self._executor.submit(self._execute, batch, asyncio.get_running_loop())
        except RuntimeError as exc:  # the thread was shut down
            self._landed(batch, _Outcome(None, exc))

    def _landed(self, batch: _Batch, outcome: _Outcome) -> None:
        self._flying = None
        batch.future.set_result(outcome)
        if self.after_commit is not None and outcome.error is None:
            self.after_commit(self.commits)
        if self._gathering is not None:  # gathered during the flight: after this turn's resumed writers add theirs
            batch.future.get_loop().call_soon(self._launch)

    # ------------------------------------------------------------ on the store thread
    def _execute(self, batch: _Batch, loop: asyncio.AbstractEventLoop) -> None:
        outcome = self._commit(batch.ops)
        try:
            loop.call_soon_threadsafe(self._landed, batch, outcome)
        except RuntimeError:  # the loop is gone: nobody is waiting any more
            log.debug("job store: a batch landed after its event loop closed")

    def _commit(self, ops: list[tuple[Op, tuple[Any, ...]]]) -> _Outcome:
        conn = self.conn
        if conn is None:
            return _Outcome(None, StoreError(detail="the job store is not open"))
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [_one(conn, op, args) for op, args in ops]
            conn.execute("COMMIT")
        except Exception as exc:  # a statement or the commit failed: the whole batch did
            rollback(conn)
            detail = describe(exc) + self._diagnose(exc)
            log.error("job store: a transaction of %d write(s) failed: %s", len(ops), detail)
            return _Outcome(None, exc, detail)
        self.commits += 1
        self.writes += len(ops)
        return _Outcome(results, None)


def _one(conn: sqlite3.Connection, op: Op, args: tuple[Any, ...]) -> Any:
    """Run one write under its own savepoint; its own failure is undone and returned, a shared one raised."""
    conn.execute("SAVEPOINT one_write")
    try:
        result = op(conn, *args)
    except Exception as exc:
        if _shared(exc):
            raise
        conn.execute("ROLLBACK TO one_write")
        conn.execute("RELEASE one_write")
        log.error("job store: a write failed on its own and was undone: %s", describe(exc))
        return _Failed(exc)
    conn.execute("RELEASE one_write")
    return result
