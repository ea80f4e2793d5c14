"""The lanes at work: one worker per unit of a model's concurrency, and coalesced position pushes.

Workers run jobs inline (no task per job on the hot path); cancelling one running job cancels its
worker, which notices the job is finished and keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.errors import JobCancelled
from core.types import EventKind, JobState

if TYPE_CHECKING:
    from core.engine import Engine

YIELD_EVERY = 0.005  # seconds a worker may run instant jobs back to back before yielding to the loop


class LaneScheduler:
    """Owns the worker tasks, knows which job each runs, and pushes queue positions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.running: dict[str, asyncio.Task[None]] = {}
        self.position_interval = 0.25
        self._idle = asyncio.Event()  # set while no worker holds a job
        self._idle.set()
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    def start(self) -> None:
        """A worker per unit of each lane's concurrency, and the position loop."""
        for name in self.engine.models:
            self._tasks += [asyncio.create_task(self._worker(name), name=f"lane:{name}:{n}")
                            for n in range(self.engine.concurrency(name))]
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

    async def _worker(self, lane: str) -> None:
        me = asyncio.current_task()
        assert me is not None
        loop = asyncio.get_running_loop()
        yielded = loop.time()
        engine = self.engine
        while True:
            job = await engine.queue.take(lane)
            self.mark_dirty(lane)
            if isinstance(job.error, JobCancelled) or job.id not in engine.jobs:
                await engine.finish(job, JobState.CANCELLED, job.error)
                continue
            self.running[job.id] = me
            self._idle.clear()
            try:
                await engine.runner.run(job)
            except asyncio.CancelledError:
                if self.stopping or not job.state.finished:
                    raise
                me.uncancel()  # the cancel was for this job, which is now finished; keep serving
            finally:
                self.running.pop(job.id, None)
                if not self.running:
                    self._idle.set()
                await engine.queue.done(job)
            if loop.time() - yielded > YIELD_EVERY:  # a lane of instant jobs must not starve the loop
                await asyncio.sleep(0)
                yielded = loop.time()

    def mark_dirty(self, lane: str) -> None:
        """Positions in ``lane`` may have changed."""
        self._dirty.add(lane)
        self._dirty_event.set()

    async def _position_loop(self) -> None:
        """Push positions at most every ``position_interval`` s, so bursts cost one pass."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            lanes, self._dirty = self._dirty, set()
            for lane in lanes:
                await self._publish_positions(lane)
            await asyncio.sleep(self.position_interval)

    async def _publish_positions(self, lane: str) -> None:
        engine = self.engine
        for job_id, position in engine.queue.positions(lane).items():
            job = engine.jobs.get(job_id)
            if job is not None and job.position != position:
                job.position = position
                await engine.emit(job, EventKind.POSITION, position=position)
