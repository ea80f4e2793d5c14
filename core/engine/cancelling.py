"""Finding a live job for a user, and cancelling it wherever it is: waiting, handed over, or running.

A waiting job leaves its lane; a running one has its worker cancelled and ends through the
runner's own cancellation path; a job whose end is already being written is not cancelled at all
("already finished"), so a cancel can never split a finished job's final step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.engine.events import EventPath
from core.engine.jobs import JobTable
from core.engine.queue import JobQueue
from core.engine.scheduler import LaneScheduler
from core.errors import JobCancelled, JobNotFound, UserError
from core.types import Job, JobState, Requester


class Canceller:
    """Looks jobs up by id prefix for their owner (or an admin) and cancels them."""

    def __init__(self, table: JobTable, queue: JobQueue, scheduler: LaneScheduler, events: EventPath,
                 is_admin: Callable[[Requester], bool],
                 remote: Callable[[Job], Awaitable[None]] | None = None) -> None:
        """``remote`` cancels a job that runs in another process (a cluster's worker)."""
        self.remote = remote
        self.table = table
        self.queue = queue
        self.scheduler = scheduler
        self.events = events
        self.is_admin = is_admin

    def find(self, job_id: str | None, by: Requester) -> Job:
        """A live job by id or unique id prefix; without an id, the caller's newest job."""
        mine = self.table.of_user(f"{by.platform}:{by.user_id}")
        candidates = list(self.table.live.values()) if self.is_admin(by) else mine
        visible = [j for j in candidates if not isinstance(j.error, JobCancelled)]
        if job_id:
            key = job_id.strip().lower()
            visible = [j for j in visible if j.id.startswith(key)]
        if not visible:
            raise JobNotFound("No such job of yours is waiting or running." if job_id else
                              "You have no job waiting or running.")
        if job_id and len(visible) > 1:
            raise JobNotFound(f"'{job_id}' matches several jobs; give more of the id.")
        return max(visible, key=lambda j: j.created_at)

    async def cancel(self, job_id: str | None, by: Requester) -> Job:
        """Cancel a waiting or running job of ``by`` (any job, for an admin); returns once it has ended."""
        job = self.find(job_id, by)
        if self.events.finishing(job):
            raise UserError(f"Job {job.id} has already finished.")
        mine = job.request.requester.user_id == by.user_id
        error = JobCancelled("Cancelled." if mine else "Cancelled by an admin.")
        if await self.queue.remove(job.id) is not None:
            self.scheduler.mark_dirty(job.model)
            await self.events.finish(job, JobState.CANCELLED, error)
            return job
        task = self.scheduler.running.get(job.id)
        if task is None and self.remote is not None:  # claimed by a worker somewhere in the cluster
            job.error = error
            await self.remote(job)
            return job
        if task is None:  # handed to a worker that has not started it yet: it will skip the job
            await self.events.finish(job, JobState.CANCELLED, error)
            return job
        handle = self.table.handle(job.id)
        job.error = error
        task.cancel()
        if handle is not None:
            await handle.wait()
        return job
