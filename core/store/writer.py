"""Group commit: every write of the job store, gathered into as few SQLite transactions as possible.

Writes submitted in one turn of the event loop go together as one batch, sent at once to the
writer process (``child.py``) as one message of op names and plain values; batches sent while a
transaction runs there share the next transaction. Every writer resumes
only after the ``COMMIT`` that holds its write, so an acknowledged write is durable. A write that
fails on its own fails only its writer; a failure the whole file shares (a full disk, a failed
``COMMIT``, a lock held past ``busy_timeout``, the writer process dying) fails the whole batch.
Either way ``StoreError``; ``StoreUncertain`` when the writer process died before it answered (the
batch may have committed). The next batch starts a new writer process if the last one died.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import StoreError, StoreUncertain
from core.store.child import describe, shared
from core.store.process import WriterGone, WriterProcess, rebuild

__all__ = ["GroupWriter", "describe", "shared"]
log = logging.getLogger(__name__)
# Batches sent and not yet answered, at most. Two: the writer process always has the next batch when it
# commits one (it merges what has arrived), and the loop gathers writes meanwhile instead of paying a
# message per turn (best of 1, 2 and unbounded in the engine benchmark: 2, by ~5%).
IN_FLIGHT = 2
Op = Any  # an op name of ``transitions.OPS``, or a module-level function (pickled by reference): op(conn, *args)


class _Outcome:
    """What the writer process answered for a batch: each write's result, or the error that failed them all."""

    __slots__ = ("detail", "error", "failures", "results")

    def __init__(self, results: list[Any] | None, error: BaseException | None, detail: str = "",
                 failures: dict[int, tuple[Exception, str]] | None = None) -> None:
        self.results, self.error, self.failures = results, error, failures or {}
        self.detail = detail or (describe(error) if error is not None else "")


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


class GroupWriter:
    """Sends writes in shared transactions to the writer process, batches in flight in order."""

    def __init__(self, process: WriterProcess, restart: Callable[[], Awaitable[None]]) -> None:
        self.process = process
        self.commits = 0  # transactions committed: writes / commits is the mean batch size
        self.writes = 0
        self.closed = False
        self._restart = restart  # starts the writer process again after it died
        self._gathering: _Batch | None = None
        self._flying: collections.deque[_Batch] = collections.deque()  # sent, in order, not yet answered
        self._restarting = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_flight = IN_FLIGHT
        self.after_commit: Callable[[int], None] | None = None  # told the commit count when a batch lands

    async def write(self, op: Op, *args: Any) -> Any:
        """Run ``op(conn, *args)`` in the next transaction; its result once that transaction is committed."""
        if self.closed:
            raise StoreError(detail="the job store is closed")
        batch = self._gathering
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._gathering = _Batch(loop)
            loop.call_soon(self._launch)
        index = len(batch.ops)
        batch.ops.append((op, args))
        outcome = await batch.future
        if outcome.error is not None:
            raise _kind(outcome.error)(detail=outcome.detail) from outcome.error
        failed = outcome.failures.get(index) if outcome.failures else None
        if failed is not None:
            raise StoreError(detail=failed[1]) from failed[0]
        return outcome.results[index]  # type: ignore[index]

    async def drain(self) -> None:
        """Wait until every submitted write has landed."""
        while (batch := self._gathering or (self._flying[-1] if self._flying else None)) is not None:
            await batch.future

    def _launch(self) -> None:
        batch = self._gathering
        if batch is None or len(self._flying) >= self.in_flight:
            return
        self._gathering = None
        self._flying.append(batch)
        if self.process.alive and not self._restarting.locked():
            self.process.send(batch.ops, lambda answer, exc: self._answered(batch, answer, exc))
        else:
            task = asyncio.get_running_loop().create_task(self._restart_and_send(batch))
            self._tasks.add(task)  # referenced until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _restart_and_send(self, batch: _Batch) -> None:
        try:
            async with self._restarting:  # in order: the batches that found it dead wait for one new process
                if not self.process.alive:
                    await self._restart()
            answer = await self.process.request(batch.ops)
        except Exception as exc:  # the process cannot be started: this batch fails, the next one tries again
            self._failed(batch, exc)
        else:
            self._landed(batch, self._outcome(batch, answer))

    def _answered(self, batch: _Batch, answer: Any, exc: BaseException | None) -> None:
        if exc is not None:
            self._failed(batch, exc)
        else:
            self._landed(batch, self._outcome(batch, answer))

    def _failed(self, batch: _Batch, exc: BaseException) -> None:
        """No answer from the writer process (it died, or could not start): the whole batch fails."""
        outcome = _Outcome(None, exc, _gone(exc))
        log.error("job store: a transaction of %d write(s) failed: %s", len(batch.ops), outcome.detail)
        self._landed(batch, outcome)

    def _outcome(self, batch: _Batch, answer: tuple[Any, ...]) -> _Outcome:
        if answer[0] == "failed":
            info = answer[1]
            log.error("job store: a transaction of %d write(s) failed: %s", len(batch.ops), info[4])
            return _Outcome(None, rebuild(info), info[4])
        _, results, failures, commits = answer
        self.commits += commits
        self.writes += len(batch.ops) - len(failures)
        if not failures:
            return _Outcome(results, None)
        for info in failures.values():
            log.error("job store: a write failed on its own and was undone: %s", info[4])
        return _Outcome(results, None, failures={i: (rebuild(info), info[4]) for i, info in failures.items()})

    def _landed(self, batch: _Batch, outcome: _Outcome) -> None:
        self._flying.remove(batch)
        if self._gathering is not None and len(self._flying) < self.in_flight:  # it waited for room: send it
            batch.future.get_loop().call_soon(self._launch)  # after this turn's resumed writers add theirs
        batch.future.set_result(outcome)
        if self.after_commit is not None and outcome.error is None:
            self.after_commit(self.commits)


def _kind(exc: BaseException) -> type[StoreError]:
    """``StoreUncertain`` when the writer process gave no answer (it may have committed first), else ``StoreError``."""
    return StoreUncertain if isinstance(exc, WriterGone) else StoreError


def _gone(exc: BaseException) -> str:
    """The detail of a batch the writer process could not answer."""
    return f"{describe(exc)} (the writes of this batch may or may not have been committed)" if isinstance(
        exc, WriterGone) else describe(exc)
