"""The handle ``Engine.submit`` returns: the job's events as they happen, then its result."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from core.types import EventKind, Image, Job, JobEvent

FINAL_EVENTS = frozenset(kind for kind in EventKind if kind.final)


class JobHandle:
    """Follows one job; iterate it for events, await ``result()`` for the image."""

    __slots__ = ("_final", "_finish_waiters", "_pending", "_waiter", "job")

    def __init__(self, job: Job) -> None:
        self.job = job
        self._pending: deque[JobEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._final: JobEvent | None = None
        self._finish_waiters: list[asyncio.Future[None]] = []  # one per ``wait()`` under way

    @property
    def id(self) -> str:
        """The job's id."""
        return self.job.id

    @property
    def finished(self) -> bool:
        """True once the final event has been pushed."""
        return self._final is not None

    def push(self, event: JobEvent) -> None:
        """Deliver an event; called by the engine only."""
        if self._final is not None:
            return
        self._pending.append(event)
        if self._waiter is not None:
            self._wake()
        if event.kind in FINAL_EVENTS:
            self._final = event
            for waiter in self._finish_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._finish_waiters.clear()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        # One future serves every waiter; shield it so one cancelled waiter spares the rest.
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event not yet consumed, ending with the final one."""
        while True:
            while self._pending:
                event = self._pending.popleft()
                yield event
                if event.kind.final:
                    return
            await self._wait()

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self.events()

    async def wait(self) -> JobEvent:
        """Wait for the final event without consuming the others; woken once, not per event.

        Each waiter has its own future, so one cancelled waiter spares the rest without a shield
        (a shield costs a future and a callback more on every job's way out).
        """
        if self._final is None:
            waiter = asyncio.get_running_loop().create_future()
            self._finish_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._finish_waiters:
                    self._finish_waiters.remove(waiter)
                raise
        assert self._final is not None
        return self._final

    async def result(self) -> Image:
        """The finished image; raises the job's error if it failed or was cancelled."""
        final = await self.wait()
        if final.kind is EventKind.DONE and self.job.result is not None:
            return self.job.result
        raise self.job.error or RuntimeError(f"job {self.job.id} ended without a result")
