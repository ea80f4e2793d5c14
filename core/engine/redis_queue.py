"""A ``JobQueue`` in Redis: the embedded queue's semantics, shared by every process of a cluster.

One lane per model; inside a lane fair round-robin across users (or FIFO, a lane whose jobs all
share one rotation key), in exactly ``FairLane``'s order; a cap on waiting jobs per lane. ``take``
claims the next job atomically with a lease, and only while fewer than the lane's ``concurrency``
jobs are claimed across the whole cluster, however many workers ask. The process that holds a job
extends its lease on a heartbeat; if it dies, the lease runs out and the next ``take`` anywhere
hands the job back to the front of its lane and claims it: at-least-once. ``done`` releases the
claim. Idle takers block on a wake-up list (BLPOP) with a timeout bounded by the next lease
deadline: no polling. The keys and scripts are described in ``core.engine.redis_scripts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from core.engine.queue import LaneSnapshot, QueueOrder
from core.engine.redis_codec import dump_job, job_home, load_job
from core.engine.redis_link import QueueClosed, RedisLink
from core.engine.redis_view import LaneMirror
from core.errors import QueueFull
from core.types import Job

log = logging.getLogger(__name__)

FIFO_KEY = ""  # the one rotation key of a FIFO lane


class RedisQueue:
    """The ``JobQueue`` for several processes or machines sharing one Redis."""

    claims = True  # a taken job is leased until ``done``

    def __init__(self, url: str, *, prefix: str = "sakaibot", lease_seconds: float = 30.0,
                 heartbeat_seconds: float = 10.0, block_seconds: float = 5.0, patience: float = 10.0,
                 view_interval: float = 0.05, on_change: Callable[[str], None] | None = None,
                 home: str = "") -> None:
        self.consumer = uuid.uuid4().hex  # whose leases are whose
        self.home = home  # the front end this process is: jobs it puts send their events back to it
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.heartbeat_seconds = heartbeat_seconds
        self.block_seconds = block_seconds
        self.link = RedisLink(url, block_seconds=block_seconds, patience=patience)
        self._root = f"{{{prefix}}}"  # a hash tag: every key in one cluster slot, as scripts need
        self.channel = f"{self._root}:changes"
        self.mirror = LaneMirror(self.link, self._lane_key, self.channel, view_interval, on_change)
        self._orders: dict[str, QueueOrder] = {}
        self._capacity: dict[str, int] = {}
        self._limit: dict[str, int] = {}
        self._held: dict[str, str] = {}  # job id -> lane, the leases this process extends
        self._homes: dict[str, str] = {}  # job id -> the front end that owns a job this process holds
        self._takers: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._started = self._closed = False

    @property
    def root(self) -> str:
        """The hash-tagged prefix of every key, for the cluster's other keys (streams, results)."""
        return self._root

    def home_of(self, job_id: str) -> str:
        """The front end that owns a job this process holds (``""`` if unknown)."""
        return self._homes.get(job_id, "")

    def _lane_key(self, lane: str) -> str:
        return f"{self._root}:lane:{lane}"

    def _job_key(self, job_id: str) -> str:
        return f"{self._root}:job:{job_id}"

    # ----------------------------------------------------------------- the JobQueue interface
    def add_lane(self, name: str, order: QueueOrder, capacity: int, concurrency: int | None = None) -> None:
        """Create the lane for one model; ``concurrency`` caps its claimed jobs cluster-wide (None: no cap)."""
        self._orders[name] = order
        self._capacity[name] = capacity
        self._limit[name] = concurrency or 0
        self.mirror.add(name, order)

    async def put(self, job: Job, *, force: bool = False) -> None:
        """Queue a job (idempotent: a job already queued, or running elsewhere, is left alone)."""
        self._start()
        lane = job.model
        rkey = job.user_key if self._orders[lane] is QueueOrder.FAIR else FIFO_KEY
        status, size = await self.link.script(
            "PUT", [self._lane_key(lane), self._job_key(job.id), self.channel],
            [job.id, lane, rkey, f"{job.id} {job.user_key}", dump_job(job, self.home), self._capacity[lane],
             int(force), self.consumer])
        self.mirror.note_size(lane, int(size))
        if status == -1:
            raise QueueFull(f"The {lane} queue is full ({size} waiting). Try again in a few minutes.")
        if status == 1:
            self._held.pop(job.id, None)  # handed back by this process: no longer ours to extend

    def take_nowait(self, lane: str) -> Job | None:
        """Always ``None``: a claim is a round trip to Redis, made by ``take``."""
        return None

    async def take(self, lane: str) -> Job:
        """Claim the next job of ``lane``, waiting (without polling) until one can be claimed."""
        self._start()
        me = asyncio.current_task()
        if me is not None:
            self._takers.add(me)
        try:
            while True:
                job, wait_ms = await self._claim_shielded(lane)
                if job is not None:
                    return job
                await self._wait_for_wake(lane, wait_ms)
        except QueueClosed:
            raise asyncio.CancelledError() from None
        finally:
            if me is not None:
                self._takers.discard(me)

    async def done(self, job: Job) -> None:
        """Release the claim on ``job``; a claim lost to an expired lease is left to its new holder."""
        lane = self._held.pop(job.id, None)
        self._homes.pop(job.id, None)
        if lane is None:
            return
        try:
            released = await self.link.script("RELEASE", [self._lane_key(lane), self._job_key(job.id)],
                                              [job.id, self.consumer])
        except Exception:
            log.exception("could not release job %s; its lease will run out and it may run again", job.id)
            return
        if not released:
            log.warning("job %s finished after its lease ran out; another worker may have run it too", job.id)

    async def give_back(self, job: Job) -> None:
        """Hand a job this process holds, but will not finish, back to the front of its lane."""
        lane = self._held.get(job.id)
        if lane is not None:
            await self._give_back(job.id, lane)

    async def remove(self, job_id: str) -> Job | None:
        """Take a waiting job out of its lane, whichever process queued it."""
        self._start()
        data = await self.link.script("REMOVE", [self._job_key(job_id), self.channel],
                                      [job_id, f"{self._root}:lane:"])
        if data is None:
            return None
        job = load_job(data)
        self.mirror.mark(job.model)
        return job

    def positions(self, lane: str) -> dict[str, int]:
        """1-based positions of the waiting jobs of ``lane``, as last read from Redis."""
        return self.mirror.views[lane].positions

    def snapshot(self, lane: str) -> LaneSnapshot:
        """The waiting jobs of ``lane`` in the order they will run, as last read from Redis."""
        return self.mirror.snapshot(lane)

    def waiting(self, lane: str) -> int:
        """How many jobs wait in ``lane`` (cluster-wide), as last read or returned."""
        return self.mirror.views[lane].size

    def running(self, lane: str) -> int:
        """How many jobs of ``lane`` are claimed across the cluster, as last read."""
        return self.mirror.views[lane].running

    async def close(self) -> None:
        """Wake idle takers with a cancellation, hand back jobs still held, close the connection."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._takers):
            task.cancel()
        await cancel_all(set(self._background))
        for job_id, lane in list(self._held.items()):
            await self._give_back(job_id, lane)
        await self.link.aclose()

    # ----------------------------------------------------------------- beyond the interface
    async def refresh(self, lane: str | None = None) -> None:
        """Re-read one lane (or all) from Redis now, for ``positions``/``snapshot`` that must be current."""
        self._start()
        for name in [lane] if lane else list(self._orders):
            await self.mirror.refresh(name)

    async def heartbeat(self) -> list[str]:
        """Extend the leases of every job this process holds; returns the ids whose lease was lost."""
        by_lane: dict[str, list[str]] = {}
        for job_id, lane in list(self._held.items()):
            by_lane.setdefault(lane, []).append(job_id)
        lost: list[str] = []
        for lane, ids in by_lane.items():
            lost += await self.link.script("EXTEND", [self._lane_key(lane)],
                                           [f"{self._root}:job:", self.consumer, self.lease_ms, *ids])
        for job_id in lost:
            self._held.pop(job_id, None)
            log.warning("lease of job %s was lost (this process stalled past it); it may run twice", job_id)
        return lost

    # ----------------------------------------------------------------- internals
    def _start(self) -> None:
        if self._closed:
            raise asyncio.CancelledError()
        if self._started:
            return
        self._started = True
        self._spawn(self._heartbeat_loop(), "redis-queue-heartbeat")
        self._spawn(self.mirror.run(), "redis-queue-mirror")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _claim_shielded(self, lane: str) -> tuple[Job | None, int]:
        """Claim in a task of its own: a taker cancelled mid-claim hands the job back, never loses it."""
        claim = asyncio.ensure_future(self._claim(lane))
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            claim.add_done_callback(self._give_back_claimed)
            raise

    async def _claim(self, lane: str) -> tuple[Job | None, int]:
        reply = await self.link.script(
            "CLAIM", [self._lane_key(lane), self.channel],
            [lane, f"{self._root}:job:", self.consumer, self.lease_ms, self._limit[lane]], patient=True)
        self.mirror.note_size(lane, int(reply[-1]))
        if reply[0] == "":
            return None, int(reply[1])
        self._held[reply[0]] = lane
        self._homes[reply[0]] = job_home(reply[1])
        job = load_job(reply[1])
        job.attempts = max(job.attempts, int(reply[2]) - 1)  # claims before this one ended unfinished
        return job, 0

    def _give_back_claimed(self, claim: asyncio.Future[tuple[Job | None, int]]) -> None:
        if claim.cancelled() or claim.exception() is not None:
            return
        job = claim.result()[0]
        if job is not None and not self._closed:
            self._spawn(self._give_back(job.id, job.model), f"redis-queue-give-back:{job.id}")

    async def _give_back(self, job_id: str, lane: str) -> None:
        """A job this process claimed but will not run goes back to the front of its lane."""
        self._held.pop(job_id, None)
        self._homes.pop(job_id, None)
        with contextlib.suppress(Exception):
            await self.link.script("GIVE_BACK", [self._lane_key(lane), self.channel],
                                   [lane, f"{self._root}:job:", self.consumer, job_id])

    async def _wait_for_wake(self, lane: str, wait_ms: int) -> None:
        timeout = self.block_seconds if wait_ms < 0 else min(self.block_seconds, wait_ms / 1000)
        key = f"{self._lane_key(lane)}:wake"
        await self.link.call(lambda: self.link.client.blpop([key], timeout=max(timeout, 0.001)), patient=True)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.heartbeat()
            except Exception as exc:  # Redis away: the next beat tries again, before the lease runs out
                log.warning("queue heartbeat failed: %s", exc)


async def cancel_all(tasks: set[asyncio.Task[None]], rounds: int = 50) -> None:
    """Cancel tasks until they end: redis-py's read timeout can swallow one cancellation (an asyncio race)."""
    for _ in range(rounds):
        pending = {task for task in tasks if not task.done()}
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    await asyncio.gather(*tasks, return_exceptions=True)
