"""The handle ``Engine.submit`` returns: the job's events as they happen, then its result."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from core.types import EventKind, Image, Job, JobEvent


class JobHandle:
    """Follows one job; iterate it for events, await ``result()`` for the image."""

    __slots__ = ("_done", "_final", "_pending", "_waiter", "job")

    def __init__(self, job: Job) -> None:
        self.job = job
        self._pending: deque[JobEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._final: JobEvent | None = None
        self._done: asyncio.Future[None] | None = None

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
        self._wake()
        if event.kind.final:
            self._final = event
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

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
        """Wait for the final event without consuming the others; woken once, not per event."""
        if self._final is None:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._done)
        assert self._final is not None
        return self._final

    async def result(self) -> Image:
        """The finished image; raises the job's error if it failed or was cancelled."""
        final = await self.wait()
        if final.kind is EventKind.DONE and self.job.result is not None:
            return self.job.result
        raise self.job.error or RuntimeError(f"job {self.job.id} ended without a result")
