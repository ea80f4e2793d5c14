"""Delivery marks: "delivering" before a platform sends a result, "delivered" after, at most one resend.

When the store fails, a platform is told to send anyway: an image sent twice beats an image never
sent, and the failure goes to the store's health (which stops admission until it recovers).
"""

from __future__ import annotations

from core.engine.health import StoreHealth
from core.engine.jobs import JobTable
from core.errors import StoreError
from core.store import JobStore
from core.types import Job


class Deliveries:
    """The engine's side of honest delivery, and the past jobs a platform repeats (Reroll, Variation)."""

    def __init__(self, store: JobStore | None, table: JobTable, health: StoreHealth) -> None:
        self.store = store
        self.table = table
        self.health = health

    async def begin(self, job_id: str) -> bool:
        """``True`` to send now; ``False`` if delivered already or resent once after a crash."""
        if self.store is None:
            return True
        try:
            return await self.store.begin_delivery(job_id)
        except StoreError as exc:
            self.health.failed(exc)
            return True

    async def note(self, job_id: str, fields: dict[str, str]) -> None:
        """Add to where a job is answered (e.g. a preview message), in memory and in the store."""
        job = self.table.get(job_id)
        if job is not None:
            job.request = job.request.model_copy(update={"delivery": {**job.request.delivery, **fields}})
        if self.store is not None:
            try:
                await self.store.note_delivery(job_id, fields)
            except StoreError as exc:
                self.health.failed(exc)

    async def done(self, job_id: str) -> bool:
        """The send succeeded; ``False`` if it had been recorded already."""
        if self.store is None:
            return True
        try:
            return await self.store.mark_delivered(job_id)
        except StoreError as exc:
            self.health.failed(exc)
            return True

    async def past_job(self, job_id: str) -> Job | None:
        """A job by exact id, live or finished, with its whole request: from memory, else the store."""
        job = self.table.recent(job_id)
        if job is not None and not self.table.lacks_inputs(job_id):
            return job
        if self.store is not None:
            return await self.store.job(job_id)
        return None  # its pictures are gone from memory and there is no store: a reroll would lose them
