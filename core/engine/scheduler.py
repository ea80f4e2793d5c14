"""The lanes at work: one worker per unit of a model's concurrency, and coalesced position pushes.

Workers run jobs inline (no task per job on the hot path); cancelling one running job cancels its
worker, which notices the job is finished and keeps serving.

Position passes cost O(lane) each, so they are paced by what they cost: after a pass that took
``t`` seconds the next waits at least ``PASS_DUTY`` × ``t``, so pushes never take more than a small,
fixed share of the loop, however long the lane (a lane of 100,000 updates every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from core.engine.events import EventPath
from core.engine.jobs import JobTable
from core.engine.lanes import Lanes
from core.engine.queue import JobQueue
from core.engine.runner import JobRunner
from core.errors import JobCancelled, StoreError
from core.types import EventKind, Job, JobState

YIELD_EVERY = 0.005  # seconds a worker may run instant jobs back to back before yielding to the loop
PASS_DUTY = 20.0  # a position pass of t seconds is followed by at least 20 t seconds without one
STORE_RETRY = 5.0  # seconds between attempts to start a job while the store fails


class LaneScheduler:
    """Owns the worker tasks, knows which job each runs, and pushes queue positions."""

    def __init__(self, lanes: Lanes, queue: JobQueue, runner: JobRunner, events: EventPath, jobs: JobTable,
                 writable: asyncio.Event) -> None:
        self.lanes = lanes
        self.queue = queue
        self.runner = runner
        self.events = events
        self.jobs = jobs
        self.writable = writable  # cleared while the store fails: nothing starts unrecorded
        self.running: dict[str, asyncio.Task[None]] = {}
        self.position_interval = 0.25
        self._idle = asyncio.Event()  # set while no worker holds a job
        self._idle.set()
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    def start(self, *, workers: bool = True) -> None:
        """A worker per unit of each lane's concurrency (unless jobs run elsewhere), and the position loop."""
        for name in self.lanes.names if workers else []:
            self._tasks += [asyncio.create_task(self._worker(name), name=f"lane:{name}:{n}")
                            for n in range(self.lanes.concurrency(name))]
        self._tasks.append(asyncio.create_task(self._position_loop(), name="positions"))

    async def stop(self) -> None:
        """Cancel every worker and the position loop."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def drain(self, grace: float, before_cancel: Callable[[str], None]) -> None:
        """Wait until no worker holds a job (final writes included); cancel what outlives ``grace``."""
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for job_id, task in list(self.running.items()):
            before_cancel(job_id)
            task.cancel()
        await self._idle.wait()
        await self.events.settle()  # final steps still writing: their events go out before the store closes

    async def _worker(self, lane: str) -> None:
        me = asyncio.current_task()
        assert me is not None
        loop = asyncio.get_running_loop()
        yielded = loop.time()
        while True:
            if not self.writable.is_set():
                await self.writable.wait()
            job = self.queue.take_nowait(lane) or await self.queue.take(lane)
            self.mark_dirty(lane)
            if isinstance(job.error, JobCancelled) or job.id not in self.jobs:
                await self.events.finish(job, JobState.CANCELLED, job.error)
                await self.queue.done(job)  # a shared queue holds a lease on it until released
                continue
            await self._run(me, job)
            if loop.time() - yielded > YIELD_EVERY:  # a lane of instant jobs must not starve the loop
                await asyncio.sleep(0)
                yielded = loop.time()

    async def _run(self, me: asyncio.Task[None], job: Job) -> None:
        self.running[job.id] = me
        self._idle.clear()
        try:
            await self.runner.run(job)
        except StoreError:
            await self._hand_back(job)  # its start could not be recorded: it waits, unrun, for the store
        except asyncio.CancelledError:
            if self.stopping or not job.state.finished:
                raise
            me.uncancel()  # the cancel was for this job, which is now finished; keep serving
        finally:
            self.running.pop(job.id, None)
            if not self.running:
                self._idle.set()
            if self.queue.claims:
                await self.queue.done(job)

    async def _hand_back(self, job: Job) -> None:
        job.state, job.started_at = JobState.QUEUED, None
        await self.queue.put(job, force=True)
        self.mark_dirty(job.model)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writable.wait(), STORE_RETRY)

    def mark_dirty(self, lane: str) -> None:
        """Positions in ``lane`` may have changed."""
        self._dirty.add(lane)
        self._dirty_event.set()

    async def _position_loop(self) -> None:
        """Push positions at most every ``position_interval`` s, and paced by their own cost."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            lanes, self._dirty = self._dirty, set()
            began = time.perf_counter()
            for lane in lanes:
                await self._publish_positions(lane)
            await asyncio.sleep(max(self.position_interval, PASS_DUTY * (time.perf_counter() - began)))

    async def _publish_positions(self, lane: str) -> None:
        for job_id, position in self.queue.positions(lane).items():
            job = self.jobs.get(job_id)
            if job is not None and job.position != position and job.state is JobState.QUEUED:
                job.position = position
                await self.events.emit(job, EventKind.POSITION, position=position,
                                       eta=self.lanes.eta(lane, position))
