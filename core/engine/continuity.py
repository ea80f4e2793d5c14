"""Keeping jobs across a restart: suspend them on the way down, resume them per platform on the way up."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.engine.handle import JobHandle
from core.errors import UnknownModel
from core.store import JobStore
from core.types import EventKind, Job, JobEvent, JobState

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)


async def resume(engine: Engine, store: JobStore, platform: str) -> list[JobHandle]:
    """``platform``'s stored jobs: undelivered results first, then waiting and interrupted ones, in order."""
    handles = []
    for job in await store.undelivered(platform):
        handle = JobHandle(job)
        handle.push(JobEvent(EventKind.DONE, job))
        engine.remember(job)
        handles.append(handle)
    for job in await store.unfinished(platform):
        if job.id in engine.jobs:
            continue
        if job.model not in engine.models:
            await engine.finish(job, JobState.FAILED, UnknownModel(job.model, list(engine.models)))
            continue
        handles.append(await engine.requeue(job))
    if handles:
        log.info("resumed %d %s job(s) from %s", len(handles), platform, store.path)
    return handles


async def suspend(engine: Engine, job: Job) -> None:
    """Keep ``job`` for the next start: saved as queued, its followers told, no final state."""
    job.state, job.started_at, job.position = JobState.QUEUED, None, None
    if engine.store is not None:
        await engine.store.save(job)
    handle = engine.handle(job.id)
    if handle is not None:
        handle.push(JobEvent(EventKind.SUSPENDED, job))
    engine.forget(job)
