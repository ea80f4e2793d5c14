"""The event path: set a job's state, record it, tell observers, then the job's handle.

Rules it keeps for every job:
- the store has a state before any platform acts on it (journal first, observers next, handle last);
- the final state, its journal write and the final event are one step that cancellation cannot split;
- exactly one terminal event, and nothing after it; the job's pending slot is released exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from core.engine.jobs import JobTable
from core.errors import StoreError
from core.hooks.call import notify
from core.hooks.index import HookIndex
from core.interfaces import Progress
from core.types import EventKind, Job, JobEvent, JobState

log = logging.getLogger(__name__)
FINAL_KINDS = {JobState.DONE: EventKind.DONE, JobState.FAILED: EventKind.FAILED,
               JobState.CANCELLED: EventKind.CANCELLED}


class Journal(Protocol):
    """Where the lifecycle is written; each call returns once its write is durable."""

    async def started(self, job: Job) -> None:
        """A run begins (state and attempt recorded before the model is called)."""

    async def update(self, job: Job) -> None:
        """State, prompt or attempts changed."""

    async def finish(self, job: Job) -> None:
        """The final state (and the image until delivered)."""

    async def suspend(self, job: Job) -> None:
        """Back to queued for the next start (graceful stop)."""


class EventPath:
    """Moves jobs through their states; the only writer of ``job.state`` after admission."""

    def __init__(self, jobs: JobTable, hooks: HookIndex, view: object, journal: Journal | None,
                 render: Callable[[Job | None, BaseException], str],
                 on_store_error: Callable[[StoreError], None], *,
                 relay: Callable[[JobEvent], Awaitable[None]] | None = None,
                 ended: Callable[[Job], None] | None = None) -> None:
        """``relay`` (a cluster worker's) sends every event on to the job's owner instead of observers;
        its failure propagates, so a final event that was not relayed is known to the caller.
        ``ended`` hears of every job that ended here (not one suspended), once, after its slot is free."""
        self.jobs = jobs
        self.hooks = hooks
        self.hook = hooks.relay
        self.view = view
        self.journal = journal
        self.render = render
        self.on_store_error = on_store_error
        self.relay = relay
        self.ended = ended
        self._finishing: dict[str, asyncio.Future[None]] = {}

    def finishing(self, job: Job) -> bool:
        """True once the job's end is decided (being written, or written)."""
        return job.id in self._finishing or job.state.finished

    async def emit(self, job: Job, kind: EventKind, **fields: Any) -> None:
        """Observers, then the handle; a non-final event of a finishing job is dropped."""
        if not kind.final and self.finishing(job):
            return
        event = JobEvent(kind, job, **fields)
        if self._observed():
            await self._tell(event)
            if not kind.final and self.finishing(job):  # finished while observers ran
                return
        self._push(event)

    def emit_now(self, job: Job, kind: EventKind, **fields: Any) -> Awaitable[None] | None:
        """``emit`` without a coroutine when no observer listens: the handle gets the event at once.

        Returns ``None`` when that is done, else the ``emit`` to await (observers may be async).
        """
        if self._observed():
            return self.emit(job, kind, **fields)
        if kind.final or not self.finishing(job):
            self._push(JobEvent(kind, job, **fields))
        return None

    def _observed(self) -> bool:
        return self.relay is not None or self.hooks.has("on_job_event")

    async def _tell(self, event: JobEvent) -> None:
        """The relay (a worker: the job's owner observes it there), else this process's observers."""
        if self.relay is not None:
            await self.relay(event)
        else:
            await notify(self.hook.on_job_event, event=event, engine=self.view)

    def _push(self, event: JobEvent) -> None:
        handle = self.jobs.handle(event.job.id)
        if handle is not None:
            handle.push(event)

    async def start(self, job: Job, state: JobState, kind: EventKind) -> None:
        """A run begins: recorded durably (a crash from here on counts against the job), then told."""
        job.state, job.position, job.started_at = state, None, time.time()
        if self.journal is not None:
            await self._write(self.journal.started, job, raise_errors=True)
        told = self.emit_now(job, kind)
        if told is not None:
            await told

    async def set_state(self, job: Job, state: JobState, kind: EventKind, **fields: Any) -> None:
        """Move a running job to ``state``, record it, and tell everyone."""
        if self.finishing(job):
            return
        job.state, job.position = state, None
        await self._write(self.journal.update if self.journal else None, job)
        await self.emit(job, kind, **fields)

    async def record(self, job: Job, kind: EventKind, **fields: Any) -> None:
        """Record a change that keeps the state (enhanced prompt, a retry), then tell everyone."""
        if self.finishing(job):
            return
        await self._write(self.journal.update if self.journal else None, job)
        await self.emit(job, kind, **fields)

    async def finish(self, job: Job, state: JobState, error: BaseException | None = None) -> None:
        """End ``job`` once: state, journal, final event, release; a later call waits for the first."""
        pending = self.finish_soon(job, state, error)
        if pending is not None:
            await asyncio.shield(pending)

    def finish_soon(self, job: Job, state: JobState, error: BaseException | None = None) -> asyncio.Future[None] | None:
        """Begin ending ``job`` and return at once: a lane's slot is free while the store writes.

        The returned future (``None`` when it is already over) completes with the final event.
        """
        pending = self._finishing.get(job.id)
        if pending is not None or job.state.finished:
            return pending
        if self.journal is None and not self._observed():
            self._push(self._end(job, state, error))  # no await anywhere: nothing can split it
            self._release(job)
            return None
        pending = self._finishing[job.id] = asyncio.ensure_future(self._finish(job, state, error))
        return pending

    async def settled(self, job: Job) -> None:
        """Wait until ``job``'s final step (if one is under way) is over, whatever its outcome."""
        pending = self._finishing.get(job.id)
        if pending is not None:
            await asyncio.gather(asyncio.shield(pending), return_exceptions=True)

    async def settle(self) -> None:
        """Wait for every final step under way (before the store closes)."""
        while self._finishing:
            await asyncio.gather(*list(self._finishing.values()), return_exceptions=True)

    def _end(self, job: Job, state: JobState, error: BaseException | None) -> JobEvent:
        job.error, job.finished_at = error, time.time()
        message = self.render(job, error) if error is not None else None
        job.state = state
        return JobEvent(FINAL_KINDS[state], job, message=message)

    async def _finish(self, job: Job, state: JobState, error: BaseException | None) -> None:
        """The final step as its own task, so a cancelled caller cannot cut it in half."""
        try:
            event = self._end(job, state, error)
            await self._write(self.journal.finish if self.journal else None, job)
            if self._observed():
                await self._tell(event)
            self._push(event)
        finally:
            self._release(job)
            self._finishing.pop(job.id, None)

    def _release(self, job: Job) -> None:
        self.jobs.release(job)
        self.jobs.remember(job)
        if self.ended is not None:
            self.ended(job)

    async def suspend(self, job: Job) -> None:
        """Keep ``job`` for the next start: saved as queued, its followers told, no final state."""
        job.state, job.started_at, job.position = JobState.QUEUED, None, None
        await self._write(self.journal.suspend if self.journal else None, job)
        handle = self.jobs.handle(job.id)
        if handle is not None:
            handle.push(JobEvent(EventKind.SUSPENDED, job))
        self.jobs.release(job)

    def progress_for(self, job: Job) -> Progress:
        """The callback a model calls to report progress (and a preview) on ``job``."""
        async def progress(fraction: float, preview: bytes | None = None) -> None:
            await self.emit(job, EventKind.PROGRESS, progress=min(1.0, max(0.0, float(fraction))), preview=preview)
        return progress

    async def _write(self, write: Callable[[Job], Awaitable[None]] | None, job: Job, *,
                     raise_errors: bool = False) -> None:
        """Journal a change; a failing store is reported (the engine stops admitting) and, if asked, raised."""
        if write is None:
            return
        try:
            await write(job)
        except StoreError as exc:
            log.error("job store failed while recording job %s: %s", job.id, exc)
            self.on_store_error(exc)
            if raise_errors:
                raise
