"""A worker in a cluster: claims jobs from the shared queue and runs them for whichever front end owns them.

It reuses the engine's own ``JobRunner`` (enhance, plugins' veto, generate with timeout and
retries), given an event path whose relay sends every event to the owner's stream. The lease on a
job is released only after the job's final event reached that stream; a job whose final event
could not be sent (Redis away while the worker stops) is handed back, to run again elsewhere.
Each lane gets as many serving tasks as the lane's concurrency; the cap that holds is the queue's,
cluster-wide. A cancel notice for a job this worker runs cancels that run; a job flagged as
cancelled before it started is reported cancelled without running. On stop, idle takers leave at
once, running jobs get ``grace`` seconds, and what is left is handed back, not failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence

from core.config import QueueSettings
from core.engine.cluster_cancel import CancelRequests
from core.engine.cluster_outbox import EventOutbox
from core.engine.cluster_registry import BEATS_TO_LIVE, WorkerRegistry
from core.engine.cluster_wire import ClusterKeys
from core.engine.events import EventPath
from core.engine.jobs import JobTable
from core.engine.lanes import Lanes
from core.engine.redis_queue import RedisQueue, cancel_all
from core.engine.runner import JobRunner
from core.errors import JobCancelled, StoreError
from core.hooks.index import HookIndex
from core.interfaces import Enhancer, ImageModel
from core.types import Job, JobState

log = logging.getLogger(__name__)

CANCEL_ROUNDS, CANCEL_EVERY = 100, 0.1  # a cancelled run is cancelled again until it notices (10 s at most)


def worker_id() -> str:
    """Unique per process: host, pid and a random tail (a pid can come back after a restart)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ClusterWorker:
    """Serves ``lanes`` of the shared queue with this process's models."""

    def __init__(self, queue: RedisQueue, serve: Sequence[str], *, models: dict[str, ImageModel],
                 enhancers: list[Enhancer], lanes: Lanes, hooks: HookIndex, view: object,
                 render: Callable[[Job | None, BaseException], str], sleep: Callable[[float], Awaitable[None]],
                 settings: QueueSettings) -> None:
        self.queue = queue
        self.serve = list(serve)
        self.lanes = lanes
        self.slots = settings.worker_slots  # this process's own capacity per lane, if smaller than the lane's
        self.id = worker_id()
        keys = ClusterKeys(queue.root)
        self.outbox = EventOutbox(queue.link, keys, queue.home_of, result_ttl=settings.result_ttl_seconds,
                                  max_len=settings.events_max_len)
        self.table = JobTable()
        self.events = EventPath(self.table, hooks, view, None, render, _no_store, relay=self.outbox.relay)
        self.runner = JobRunner(models, enhancers, lanes, self.events, hooks, view, sleep)
        self.cancels = CancelRequests(queue.link, keys)
        self.registry = WorkerRegistry(queue.link, settings.key_prefix, self.serve, worker_id=self.id,
                                       ttl_seconds=settings.heartbeat_seconds * BEATS_TO_LIVE)
        self.heartbeat = settings.heartbeat_seconds
        self.running: dict[str, asyncio.Task[None]] = {}
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._servers: list[asyncio.Task[None]] = []
        self._helpers: list[asyncio.Task[None]] = []
        self._cancelling: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """A serving task per unit of each lane's concurrency; the cancel watch; the registration."""
        for lane in self.serve:
            self._servers += [asyncio.create_task(self._serve(lane), name=f"worker:{lane}:{n}")
                              for n in range(self.slots or self.lanes.concurrency(lane))]
        self._helpers = [asyncio.create_task(self.cancels.watch(self._cancel, lambda: list(self.running)),
                                             name="worker-cancels"),
                         asyncio.create_task(self.registry.run(lambda: len(self.running), self.heartbeat),
                                             name="worker-registry")]
        log.info("worker %s serving %s", self.id, ", ".join(self.serve))

    async def stop(self, grace: float) -> None:
        """Idle takers leave now; running jobs get ``grace`` s; the rest are handed back; the queue closes."""
        self.stopping = True
        busy = set(self.running.values())
        for task in self._servers:
            if task not in busy:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        self.runner.parking = True  # an interrupted job is handed back, not failed
        await cancel_all(set(self._servers))
        await cancel_all({*self._helpers, *self._cancelling})
        try:
            await self.registry.unregister()
        except Exception as exc:  # Redis away: the registration expires by itself
            log.warning("worker %s not unregistered (its key expires by itself): %s", self.id, exc)
        await self.queue.close()
        log.info("worker %s stopped", self.id)

    def _cancel(self, job_id: str) -> None:
        """A cancel notice: stop the run of ``job_id`` if this worker holds it."""
        task = self.running.get(job_id)
        job = self.table.get(job_id)
        if task is None or job is None or self.events.finishing(job):
            return
        job.error = JobCancelled("Cancelled.")
        helper = asyncio.create_task(self._insist(task, job), name=f"worker-cancel:{job_id}")
        self._cancelling.add(helper)
        helper.add_done_callback(self._cancelling.discard)

    async def _insist(self, task: asyncio.Task[None], job: Job) -> None:
        """Cancel ``task`` until its job ends: redis-py can swallow a cancellation that lands mid-read."""
        for _ in range(CANCEL_ROUNDS):
            if self.events.finishing(job) or self.running.get(job.id) is not task:
                return
            task.cancel()
            await asyncio.sleep(CANCEL_EVERY)
        log.error("job %s ignored %d cancellations", job.id, CANCEL_ROUNDS)

    async def _serve(self, lane: str) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self.stopping:
            job = await self.queue.take(lane)
            self.running[job.id] = me  # before any await: stop() must not take this for an idle taker
            self._idle.clear()
            try:
                await self._run(me, job)
            finally:
                self.running.pop(job.id, None)
                if not self.running:
                    self._idle.set()

    async def _run(self, me: asyncio.Task[None], job: Job) -> None:
        """Run one claimed job; release its lease once its end was reported, else hand it back."""
        self.table.track(job)
        try:
            if await self.cancels.requested(job.id):
                await self.events.finish(job, JobState.CANCELLED, JobCancelled("Cancelled."))
            else:
                await self.runner.run(job)
        except asyncio.CancelledError:
            if self.stopping:
                raise
            while me.cancelling():  # cancel notices for this job: it ended (or ends here); keep serving
                me.uncancel()
            if not job.state.finished:
                await self.events.finish(job, JobState.CANCELLED, job.error or JobCancelled())
        finally:
            await self._settle(job)

    async def _settle(self, job: Job) -> None:
        await self.events.settled(job)
        if self.outbox.took_final(job.id):
            await self.queue.done(job)
        else:
            await self.queue.give_back(job)
        self.table.release(job)


def _no_store(error: StoreError) -> None:
    """A worker keeps no store: its events go to the owner, whose store records them."""
    log.error("unexpected store error in a worker: %s", error)
