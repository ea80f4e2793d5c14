"""The queue interface the engine schedules through.

The engine owns one lane per model and as many workers per lane as the lane's concurrency; a
worker ``take``s a job, runs it, and calls ``done``. Implementations decide the order inside a
lane. The in-memory queue (``core.engine.memory_queue``) is the embedded default; a Redis queue can
share lanes across processes by claiming jobs in ``take`` with a lease and releasing it in
``done`` (a job whose worker died is delivered again), and a job store can refill a queue at
start-up through ``put``, all without the engine changing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from core.types import Job


class QueueOrder(enum.StrEnum):
    """How a lane orders its waiting jobs."""

    FAIR = "fair"
    FIFO = "fifo"


@dataclass(slots=True, frozen=True)
class QueuedJob:
    """One waiting job in a snapshot."""

    job_id: str
    user_key: str
    position: int


@dataclass(slots=True, frozen=True)
class LaneSnapshot:
    """A lane at one moment: who waits, in order."""

    name: str
    order: QueueOrder
    waiting: tuple[QueuedJob, ...]


@dataclass(slots=True, frozen=True)
class LaneLoad:
    """What ``/queue`` shows for one lane; cheap to build however long the lane is."""

    name: str
    waiting: int
    running: int
    concurrency: int


class JobQueue(Protocol):
    """Where queued jobs wait for a worker of their model's lane."""

    def add_lane(self, name: str, order: QueueOrder, capacity: int, concurrency: int | None = None) -> None:
        """Create the lane for one model, holding at most ``capacity`` waiting jobs.

        ``concurrency`` caps the lane's claimed jobs across every process sharing the queue (``None``:
        no cap beyond the workers). A queue of one process may ignore it: its worker count is the cap.
        """

    async def put(self, job: Job, *, force: bool = False) -> None:
        """Add a job to its lane (``job.model``); raise ``QueueFull`` at the cap unless ``force`` (restores)."""

    claims: bool  # True: a taken job is held (leased) until ``done``; False: ``done`` has nothing to do

    async def take(self, lane: str) -> Job:
        """Wait for and claim the next job of ``lane`` in the lane's order."""

    def take_nowait(self, lane: str) -> Job | None:
        """The next job of ``lane`` if one can be had without waiting, else ``None`` (then ``take``)."""

    async def done(self, job: Job) -> None:
        """Release the claim on a job that finished, failed or was cancelled."""

    async def remove(self, job_id: str) -> Job | None:
        """Take a waiting job out of its lane; ``None`` if it is not waiting."""

    def positions(self, lane: str) -> dict[str, int]:
        """The 1-based position of every waiting job in ``lane``."""

    def snapshot(self, lane: str) -> LaneSnapshot:
        """The waiting jobs of ``lane`` in the order they will run."""

    def waiting(self, lane: str) -> int:
        """How many jobs wait in ``lane``."""

    async def close(self) -> None:
        """Stop handing out jobs and release resources."""
