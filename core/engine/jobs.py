"""The job table: this process's live jobs, their handles, each user's pending images, recent requests.

Recent finished jobs are kept without their image bytes: Reroll and /info need the request, and the
job store holds the rest; a thousand 3 MB images must not sit in memory. For the same reason only
the newest ``RECENT_INPUTS`` of them keep the pictures their request was made from; older ones are
read back from the store (``lacks_inputs``).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from typing import Any

from core.engine.handle import JobHandle
from core.types import Job, JobState

RECENT_JOBS = 1000
RECENT_INPUTS = 50  # remembered jobs that keep their input pictures (a few MB each)
ID_BYTES = 6  # a job id is 12 hex digits
IDS_PER_DRAW = 256
RUNNING = (JobState.ENHANCING, JobState.GENERATING)


class JobTable:
    """Tracks live jobs; every pending slot is taken once on ``track`` and released once on ``release``."""

    def __init__(self, recent_limit: int = RECENT_JOBS) -> None:
        self.live: dict[str, Job] = {}
        self.pending: Counter[str] = Counter()
        self._handles: dict[str, JobHandle] = {}
        self._by_user: dict[str, dict[str, Job]] = {}
        self._recent: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._recent_limit = recent_limit
        self._with_inputs: deque[str] = deque()
        self._stripped: set[str] = set()
        self._ids = ""  # hex digits drawn in advance for new ids
        self._next_id = 0

    def __len__(self) -> int:
        return len(self.live)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.live

    def __iter__(self) -> Iterator[str]:
        return iter(self.live)

    def new_id(self) -> str:
        """A short id no live job has: 12 hex digits of ``secrets`` randomness, drawn in bulk.

        One draw of the OS's random source serves ``IDS_PER_DRAW`` ids: a system call per job was a
        visible share of the engine's cost per job.
        """
        while True:
            if self._next_id >= len(self._ids):
                self._ids, self._next_id = secrets.token_hex(ID_BYTES * IDS_PER_DRAW), 0
            start = self._next_id
            self._next_id = start + 2 * ID_BYTES
            job_id = self._ids[start:self._next_id]
            if job_id not in self.live:
                return job_id

    def track(self, job: Job) -> JobHandle:
        """Start tracking ``job``: each image it asks for counts against its user's pending cap from now on."""
        handle = JobHandle(job)
        self.live[job.id] = job
        self._handles[job.id] = handle
        self._by_user.setdefault(job.user_key, {})[job.id] = job
        self.pending[job.user_key] += job.request.options.count
        return handle

    def release(self, job: Job) -> None:
        """Stop tracking ``job``; a second call changes nothing, so a slot is never freed twice."""
        if self.live.pop(job.id, None) is None:
            return
        self._handles.pop(job.id, None)
        mine = self._by_user.get(job.user_key)
        if mine is not None:
            mine.pop(job.id, None)
            if not mine:
                del self._by_user[job.user_key]
        left = self.pending[job.user_key] - job.request.options.count
        if left > 0:
            self.pending[job.user_key] = left
        else:
            self.pending.pop(job.user_key, None)  # dict's own pop: Counter's ``del`` is Python code

    def get(self, job_id: str) -> Job | None:
        """A live job."""
        return self.live.get(job_id)

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a live job."""
        return self._handles.get(job_id)

    def of_user(self, user_key: str) -> list[Job]:
        """One user's live jobs, oldest first; costs what that user has, not what the table has."""
        return list(self._by_user.get(user_key, {}).values())

    def running(self, model: str | None = None) -> list[Job]:
        """Jobs being enhanced or generated now."""
        return [j for j in self.live.values() if j.state in RUNNING and model in (None, j.model)]

    def waiting(self) -> list[Job]:
        """Live jobs still in a queue."""
        return [j for j in self.live.values() if j.state is JobState.QUEUED]

    def remember(self, job: Job) -> None:
        """Keep a finished job's request (not its image) for buttons and /info, the last ``recent_limit``."""
        self._recent[job.id] = (job.request, job.model, job.generation, job.state, job.attempts, job.created_at,
                                job.started_at, job.finished_at, job.enhanced_prompt, job.error, job.timings)
        if job.request.images or job.request.mask is not None:
            self._with_inputs.append(job.id)
            if len(self._with_inputs) > RECENT_INPUTS:
                self._strip(self._with_inputs.popleft())
        if len(self._recent) > self._recent_limit:
            self._stripped.discard(self._recent.popitem(last=False)[0])

    def _strip(self, job_id: str) -> None:
        """Forget a remembered job's pictures (the store still has them)."""
        kept = self._recent.get(job_id)
        if kept is None:
            return
        request = kept[0].model_copy(update={"images": (), "mask": None})
        generation = dataclasses.replace(kept[2], images=(), mask=None)
        self._recent[job_id] = (request, kept[1], generation, *kept[3:])
        self._stripped.add(job_id)

    def lacks_inputs(self, job_id: str) -> bool:
        """Whether a remembered job's pictures were dropped from memory: read it from the store instead."""
        return job_id in self._stripped

    def recent(self, job_id: str) -> Job | None:
        """A live job, or a finished one still remembered (rebuilt without its image)."""
        live = self.live.get(job_id)
        if live is not None or job_id not in self._recent:
            return live
        (request, model, generation, state, attempts, created_at, started_at, finished_at, enhanced,
         error, timings) = self._recent[job_id]
        return Job(id=job_id, request=request, model=model, generation=generation, state=state, attempts=attempts,
                   created_at=created_at, started_at=started_at, finished_at=finished_at,
                   enhanced_prompt=enhanced, error=error, timings=dict(timings))

    def forget_recent(self) -> None:
        """Drop the remembered jobs (what a restart forgets)."""
        self._recent.clear()
        self._with_inputs.clear()
        self._stripped.clear()
