"""The embedded in-memory queue: per-lane fair round-robin over users, or strict FIFO."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Iterator

from core.engine.queue import LaneSnapshot, QueuedJob, QueueOrder
from core.errors import QueueFull
from core.types import Job


class FifoLane:
    """Jobs in arrival order."""

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()

    def __len__(self) -> int:
        return len(self._jobs)

    def push(self, job: Job, front: bool = False) -> None:
        """Add a job at the back (or front, when handing one back)."""
        if front:
            self._jobs.appendleft(job)
        else:
            self._jobs.append(job)

    def pop(self) -> Job:
        """The next job to run."""
        return self._jobs.popleft()

    def remove(self, job: Job) -> None:
        """Drop a waiting job."""
        self._jobs.remove(job)

    def ordered(self) -> Iterator[Job]:
        """Waiting jobs in the order they will run."""
        return iter(self._jobs)


class FairLane:
    """Round-robin across users, each user's own jobs in arrival order.

    A user who just got a job served goes to the back of the rotation, so one user's many
    requests never stand in front of another user's first.
    """

    def __init__(self) -> None:
        self._users: OrderedDict[str, deque[Job]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, job: Job, front: bool = False) -> None:
        """Add a job to its user's queue (or hand it back to the front)."""
        key = job.user_key
        jobs = self._users.get(key)
        if jobs is None:
            jobs = self._users[key] = deque()
        if front:
            jobs.appendleft(job)
            self._users.move_to_end(key, last=False)
        else:
            jobs.append(job)
        self._size += 1

    def pop(self) -> Job:
        """The first user's oldest job; that user moves to the back."""
        key, jobs = next(iter(self._users.items()))
        job = jobs.popleft()
        if jobs:
            self._users.move_to_end(key)
        else:
            del self._users[key]
        self._size -= 1
        return job

    def remove(self, job: Job) -> None:
        """Drop a waiting job."""
        jobs = self._users[job.user_key]
        jobs.remove(job)
        if not jobs:
            del self._users[job.user_key]
        self._size -= 1

    def ordered(self) -> Iterator[Job]:
        """Waiting jobs in the order they will run: round r serves each user's r-th job."""
        rows = [(rank, turn, job) for turn, jobs in enumerate(self._users.values())
                for rank, job in enumerate(jobs)]
        rows.sort(key=lambda row: (row[0], row[1]))
        return (job for _, _, job in rows)


Lane = FifoLane | FairLane


class InMemoryQueue:
    """The default ``JobQueue``: one process, nothing to install."""

    claims = False  # a taken job is no longer held here

    def __init__(self) -> None:
        self._lanes: dict[str, Lane] = {}
        self._orders: dict[str, QueueOrder] = {}
        self._capacity: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[Job]]] = {}
        self._index: dict[str, Job] = {}

    def add_lane(self, name: str, order: QueueOrder, capacity: int, concurrency: int | None = None) -> None:
        """Create the lane for one model; ``concurrency`` is the scheduler's worker count here, not ours."""
        self._lanes[name] = FairLane() if order is QueueOrder.FAIR else FifoLane()
        self._orders[name] = order
        self._capacity[name] = capacity
        self._waiters[name] = deque()

    async def put(self, job: Job, *, force: bool = False) -> None:
        """Queue a job, or hand it straight to an idle worker of its lane."""
        lane = self._lanes[job.model]
        if len(lane) >= self._capacity[job.model] and not force:
            raise QueueFull(f"The {job.model} queue is full ({len(lane)} waiting). Try again in a few minutes.")
        if not self._hand_over(job):
            lane.push(job)
            self._index[job.id] = job

    def _hand_over(self, job: Job) -> bool:
        waiters = self._waiters[job.model]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(job)
                return True
        return False

    def take_nowait(self, lane: str) -> Job | None:
        """The next job in the lane's order, or ``None`` if the lane is empty."""
        jobs = self._lanes[lane]
        if not jobs:
            return None
        job = jobs.pop()
        del self._index[job.id]
        return job

    async def take(self, lane: str) -> Job:
        """The next job in the lane's order, waiting for one if the lane is empty."""
        job = self.take_nowait(lane)
        if job is not None:
            return job
        waiter: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._give_back(waiter)
            raise

    def _give_back(self, waiter: asyncio.Future[Job]) -> None:
        """A worker cancelled after being handed a job: the job goes back to the front."""
        if waiter.done() and not waiter.cancelled():
            job = waiter.result()
            if not self._hand_over(job):
                self._lanes[job.model].push(job, front=True)
                self._index[job.id] = job

    async def done(self, job: Job) -> None:
        """Nothing to release in memory: a taken job is no longer held here."""

    async def remove(self, job_id: str) -> Job | None:
        """Take a waiting job out of its lane."""
        job = self._index.pop(job_id, None)
        if job is not None:
            self._lanes[job.model].remove(job)
        return job

    def positions(self, lane: str) -> dict[str, int]:
        """1-based positions of the waiting jobs of ``lane``."""
        return {job.id: n for n, job in enumerate(self._lanes[lane].ordered(), start=1)}

    def snapshot(self, lane: str) -> LaneSnapshot:
        """The waiting jobs of ``lane`` in the order they will run."""
        waiting = tuple(QueuedJob(job.id, job.user_key, n)
                        for n, job in enumerate(self._lanes[lane].ordered(), start=1))
        return LaneSnapshot(lane, self._orders[lane], waiting)

    def waiting(self, lane: str) -> int:
        """How many jobs wait in ``lane``."""
        return len(self._lanes[lane])

    async def close(self) -> None:
        """Wake every idle worker with a cancellation."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
            waiters.clear()
