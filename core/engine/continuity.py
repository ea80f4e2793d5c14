"""Keeping jobs across a restart: crashed runs counted, poison jobs set aside, each platform's jobs resumed.

A job found running at start-up was interrupted by a crash (a graceful stop puts jobs back to
queued). The store counts such crashes; at ``max_crashes`` the job is failed instead of run again,
so one request that kills the process cannot block the line forever.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from core.engine.events import EventPath
from core.engine.handle import JobHandle
from core.engine.jobs import JobTable
from core.errors import SakaiError, UnknownModel
from core.store import JobStore
from core.store.transitions import CRASHED
from core.types import EventKind, Job, JobEvent, JobState

log = logging.getLogger(__name__)


class Continuity:
    """Reads the store at start-up and hands each platform what it left behind."""

    def __init__(self, store: JobStore, jobs: JobTable, events: EventPath, models: list[str],
                 requeue: Callable[[Job], Awaitable[JobHandle]], render: Callable[[Job, BaseException], str]) -> None:
        self.store = store
        self.jobs = jobs
        self.events = events
        self.models = models
        self.requeue = requeue
        self.render = render
        self._set_aside: set[str] = set()
        self._max_crashes = 0

    async def recover(self, max_crashes: int) -> None:
        """Count the runs a crash interrupted; fail the jobs that crashed ``max_crashes`` times."""
        self._max_crashes = max_crashes
        self._set_aside = set(await self.store.recover(max_crashes))
        if self._set_aside:
            log.warning("set aside %d job(s) that crashed the bot %d times: %s", len(self._set_aside),
                        max_crashes, ", ".join(sorted(self._set_aside)))

    async def resume(self, platform: str) -> list[JobHandle]:
        """Undelivered results and set-aside failures first, then waiting and interrupted jobs, in order."""
        handles = [self._ended(job) for job in await self.store.undelivered(platform)]
        handles += [self._ended(job) for job in await self._set_aside_of(platform)]
        for job in await self.store.unfinished(platform):
            if job.id in self.jobs:
                continue
            if job.model not in self.models:
                handles.append(await self._unknown_model(job))
                continue
            handles.append(await self.requeue(job))
        if handles:
            log.info("resumed %d %s job(s) from %s", len(handles), platform, self.store.path)
        return handles

    async def _set_aside_of(self, platform: str) -> list[Job]:
        found = [await self.store.job(job_id) for job_id in sorted(self._set_aside)]
        mine = [job for job in found if job is not None and job.request.requester.platform == platform]
        self._set_aside -= {job.id for job in mine}
        return mine

    def _ended(self, job: Job) -> JobHandle:
        """A handle that starts with the job's stored end, for the platform to deliver or report."""
        handle = JobHandle(job)
        kind = EventKind.DONE if job.state is JobState.DONE else EventKind.FAILED
        message = None
        if kind is EventKind.FAILED:
            job.error = job.error or SakaiError(CRASHED.format(n=self._max_crashes))
            message = self.render(job, job.error)
        handle.push(JobEvent(kind, job, message=message))
        self.jobs.remember(job)
        return handle

    async def _unknown_model(self, job: Job) -> JobHandle:
        handle = self.jobs.track(job)
        await self.events.finish(job, JobState.FAILED, UnknownModel(job.model, self.models))
        return handle
