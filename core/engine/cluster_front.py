"""A front end in a cluster: its jobs run on workers; their events come back and go down its event path.

Every event a worker reports is applied here exactly as if a local worker had caused it: the
store first, then observers, then the job's handle, where the platform's delivery rules (keyed by
job id) take over. A final event for a job already finished is ignored, so a job that ran twice
(its first worker died after reporting) is delivered once. A final event for a job this process
does not track (it restarted and the platform has not resumed yet) is written to the store, where
the platform's ``resume`` finds it as an undelivered result; ``resuming`` keeps the two from
crossing. A ``done`` whose images Redis no longer has (it lost them) puts the job back in its lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from core.engine.cluster_cancel import CancelRequests
from core.engine.cluster_inbox import EventInbox
from core.engine.cluster_wire import ClusterKeys, RemoteEvent, decode_images
from core.engine.events import EventPath
from core.engine.jobs import JobTable
from core.engine.redis_link import QueueUnavailable
from core.engine.redis_queue import RedisQueue, cancel_all
from core.errors import BackendError, JobCancelled, SakaiError
from core.store import JobStore
from core.types import EventKind, Image, Job, JobState

log = logging.getLogger(__name__)
MAX_PUT_BACK_DELAY = 30.0  # seconds between tries to queue a restored job while Redis is away

CANCEL_WAIT = 5.0  # seconds a cancel waits for the worker holding the job to confirm
OUTAGE_MESSAGE = "the shared queue is unreachable for now; your request is kept and goes on when it is back"
RUNNING_STATES = {EventKind.ENHANCING: JobState.ENHANCING, EventKind.GENERATING: JobState.GENERATING}
FINAL_STATES = {EventKind.DONE: JobState.DONE, EventKind.FAILED: JobState.FAILED,
                EventKind.CANCELLED: JobState.CANCELLED}


class ClusterFront:
    """Applies workers' events to this front end's jobs; cancels jobs running elsewhere."""

    def __init__(self, queue: RedisQueue, node: str, table: JobTable, events: EventPath, store: JobStore | None,
                 requeue: Callable[[Job], Awaitable[object]]) -> None:
        self.queue = queue
        self.node = node
        self.table = table
        self.events = events
        self.store = store
        self.requeue = requeue
        self.keys = ClusterKeys(queue.root)
        self.cancels = CancelRequests(queue.link, self.keys)
        self.inbox = EventInbox(queue.link, self.keys.events(node), node, self.apply,
                                block_seconds=queue.block_seconds, on_outage=self._tell_outage,
                                on_recovery=self._put_back_forgotten)
        self.resuming = asyncio.Lock()  # a platform's resume and untracked final events never cross
        self._task: asyncio.Task[None] | None = None
        self._later: set[asyncio.Task[None]] = set()  # jobs waiting for Redis to be queued again

    async def catch_up(self) -> None:
        """Before platforms resume: apply what workers reported while this front end was away."""
        await self.inbox.catch_up()

    def start(self) -> None:
        """Read the event stream in the background."""
        self._task = asyncio.create_task(self.inbox.run(), name=f"cluster-events:{self.node}")

    async def stop(self) -> None:
        """Stop reading; unread entries wait in the stream for the next start."""
        if self._task is not None:
            await cancel_all({self._task})  # once may not be enough: redis-py can swallow one mid-read
            self._task = None
        await cancel_all(set(self._later))

    async def leave(self, reason: JobCancelled) -> None:
        """The front end stops: live jobs are kept (with a store) for its return, else cancelled everywhere."""
        reachable = True  # after one failure, no other job waits out Redis' patience
        for job in list(self.table.live.values()):
            if self.store is not None:
                await self.events.suspend(job)  # its events wait in the stream; resume picks it up
                continue
            if reachable:
                reachable = await self._withdraw(job)
            await self.events.finish(job, JobState.CANCELLED, reason)

    async def _withdraw(self, job: Job) -> bool:
        """Take a job given up out of the cluster: out of its lane, or cancelled on the worker holding it
        (nobody would read its results). ``False`` if Redis did not answer."""
        try:
            if await self.queue.remove(job.id) is None:
                await self.cancels.request(job.id)
        except Exception as exc:
            log.warning("could not withdraw job %s from the cluster: %s", job.id, exc)
            return False
        return True

    def put_when_back(self, job: Job) -> None:
        """Queue a restored job once Redis answers again; it stays saved and tracked meanwhile."""
        task = asyncio.create_task(self._put_when_back(job), name=f"put-back:{job.id}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _put_when_back(self, job: Job) -> None:
        delay = 1.0
        while job.id in self.table and not self.events.finishing(job):
            try:
                await self.queue.put(job, force=True)
                log.info("job %s is queued again now that Redis answers", job.id)
                return
            except QueueUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_PUT_BACK_DELAY)

    # ----------------------------------------------------------------- applying events
    async def apply(self, event: RemoteEvent) -> None:
        """One worker event on its job: through the event path if tracked, else into the store."""
        job = self.table.get(event.job_id)
        if job is None:
            if event.kind.final:
                await self._finish_untracked(event)
            return
        if self.events.finishing(job):
            return  # already ended here: a second final event (a job run twice) is not delivered again
        job.attempts = max(job.attempts, event.attempts)
        if event.kind in RUNNING_STATES:
            job.started_at = job.started_at or time.time()
            await self.events.set_state(job, RUNNING_STATES[event.kind], event.kind)
        elif event.kind is EventKind.ENHANCED and event.prompt:
            job.enhanced_prompt = event.prompt
            job.generation = dataclasses.replace(job.generation, prompt=event.prompt)
            await self.events.record(job, EventKind.ENHANCED, message=event.prompt)
        elif event.kind is EventKind.PROGRESS:
            await self.events.emit(job, EventKind.PROGRESS, progress=event.progress, preview=event.preview)
        elif event.kind is EventKind.RETRYING:
            await self.events.record(job, EventKind.RETRYING, message=event.message)
        elif event.kind in FINAL_STATES:
            await self._finish(job, event)

    async def _finish(self, job: Job, event: RemoteEvent) -> None:
        job.timings.update(event.timings)
        if event.kind is EventKind.DONE:
            images = await self._images(event)
            if images is None:
                await self._run_again(job)
                return
            job.results = images
            await self.events.finish(job, JobState.DONE)
            await self._forget_images(job.id)
            return
        await self.events.finish(job, FINAL_STATES[event.kind], self._error(job, event))

    def _error(self, job: Job, event: RemoteEvent) -> SakaiError:
        if event.kind is EventKind.CANCELLED:
            if isinstance(job.error, JobCancelled):
                return job.error  # the canceller's own words ("Cancelled by an admin.")
            return event.error or JobCancelled()
        return event.error or BackendError()

    async def _images(self, event: RemoteEvent) -> list[Image] | None:
        key = self.keys.result(event.job_id)
        data = await self.queue.link.client.get(key)
        if data is None:
            return None if event.images else []
        return await asyncio.to_thread(decode_images, str(data))

    async def _forget_images(self, job_id: str) -> None:
        key = self.keys.result(job_id)
        with contextlib.suppress(Exception):  # they expire anyway
            await self.queue.link.client.delete(key)

    async def _run_again(self, job: Job) -> None:
        log.warning("job %s finished but Redis no longer has its images; running it again", job.id)
        job.state, job.position, job.started_at = JobState.QUEUED, None, None
        await self.queue.put(job, force=True)

    async def _finish_untracked(self, event: RemoteEvent) -> None:
        """A final event for a job not live here: recorded in the store for the platform's resume."""
        async with self.resuming:
            if event.job_id in self.table:
                await self.apply(event)
                return
            if self.store is None:
                return
            job = await self.store.job(event.job_id)
            if job is None or job.state.finished:
                return
            if event.kind is EventKind.DONE:
                images = await self._images(event)
                if images is None:
                    return  # the job is still unfinished in the store: its platform's resume runs it again
                job.results = images
            job.attempts = max(job.attempts, event.attempts)
            job.timings.update(event.timings)
            job.state, job.finished_at = FINAL_STATES[event.kind], time.time()
            job.error = None if event.kind is EventKind.DONE else self._error(job, event)
            await self.store.finish(job)
            await self._forget_images(job.id)
            if self.events.ended is not None:  # its shared cap slots, and its quota unless done, come back
                self.events.ended(job)

    # ----------------------------------------------------------------- outages
    async def _tell_outage(self) -> None:
        for job in list(self.table.live.values()):
            await self.events.emit(job, EventKind.RETRYING, message=OUTAGE_MESSAGE)

    async def _put_back_forgotten(self) -> None:
        """After an outage: every unfinished job goes back to Redis unless it still knows it (put is idempotent)."""
        again = 0
        for job in list(self.table.live.values()):
            if self.events.finishing(job):
                continue
            try:
                await self.queue.put(job, force=True)
                again += 1
            except SakaiError as exc:
                log.error("job %s could not be put back after the outage: %s", job.id, exc)
        if again:
            log.info("checked %d unfinished job(s) against Redis after the outage", again)

    # ----------------------------------------------------------------- cancel
    async def cancel_running(self, job: Job) -> None:
        """Cancel ``job`` on whichever worker holds (or will claim) it; ends here within ``CANCEL_WAIT``."""
        await self.cancels.request(job.id)
        handle = self.table.handle(job.id)
        if handle is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.wait(), CANCEL_WAIT)
        await self.events.finish(job, JobState.CANCELLED, job.error or JobCancelled())
