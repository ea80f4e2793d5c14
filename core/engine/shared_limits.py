"""Caps, daily quotas and rates counted in Redis: the ``UserLimits`` of a cluster's front ends.

In the embedded engine these are counted in one process (``LocalLimits``): a ``Counter`` of pending
jobs, a rate limiter in memory, and a quota reserved in the store's enqueue transaction. Several
front ends need them counted once for all, so each job is *reserved* in Redis as soon as it has an
id — cap slot, quota units, rate entry, in that order, each atomic — and *released* when it ends.

Both steps are idempotent per job id, so the front end and a worker may both release a job, and a
call replayed after a lost reply counts nothing twice. A reservation refused half-way gives back
what it took (the rate is taken last, since ``limits`` cannot give an entry back). The front end
refreshes its jobs' cap slots on a heartbeat (``keep_alive``), so the slots of a front end that
died run out after ``lease_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from core.config import Settings
from core.engine.redis_link import RedisLink, mask_url
from core.engine.shared_caps import SharedCaps
from core.engine.shared_quota import SharedQuotas
from core.engine.shared_rate import SharedRateLimiter
from core.errors import QueueFull
from core.types import Job, JobState

log = logging.getLogger(__name__)

PATIENCE = 10.0  # seconds a user's request waits for Redis before it is refused (as the queue's ``put``)
BLOCK_SECONDS = 5.0  # no call here blocks; this only sets the socket timeout, as for the queue


class SharedLimits:
    """Per-user caps, daily quotas and rates shared by every front end through one Redis."""

    shares_quota = True  # the store must not reserve the quota as well

    def __init__(self, link: RedisLink, url: str, *, prefix: str, cap: int, rate: str | None,
                 slot_seconds: float, refresh_seconds: float) -> None:
        self.link = link
        self.cap = cap
        self.refresh_seconds = refresh_seconds
        self.caps = SharedCaps(link, prefix, slot_seconds)
        self.quotas = SharedQuotas(link, prefix)
        self.rate = SharedRateLimiter(rate, link, url, prefix)

    async def check(self, user: str, count: int = 1) -> None:
        """Nothing to refuse before the job has an id: ``reserve`` checks and counts in one step."""

    def admitted(self, user: str) -> None:
        """Nothing to count here: ``reserve`` counted the rate atomically."""

    async def reserve(self, job: Job, quota: int | None, *, exempt: bool) -> None:
        """Count ``job`` against its user's cap, quota and rate, or raise the refusal and count nothing.

        ``exempt`` (an admin): the job still holds a slot, so the cluster's counts stay true, but
        nothing refuses it and neither quota nor rate is used.
        """
        user = job.user_key
        try:
            await self.caps.admit(user, job.id, None if exempt else self.cap, job.request.options.count)
            if quota is not None and not exempt:
                await self.quotas.reserve(job.id, user, job.model, quota, job.request.options.count)
            if not exempt:
                await self.rate.acquire(user)
        except QueueFull:
            raise  # the cap refused: nothing was taken
        except BaseException:  # refused later, Redis away, or cancelled: a lost reply may have counted
            await self._undo(job)
            raise

    async def hold(self, job: Job) -> None:
        """Count a job restored after a restart against its user's cap, without refusing it."""
        await self.caps.admit(job.user_key, job.id, None, job.request.options.count)

    async def release(self, job: Job) -> None:
        """``job`` ended (or was never accepted): free its slot; give its quota back unless it is done."""
        await self.caps.release(job.user_key, job.id, job.request.options.count)
        if job.state is not JobState.DONE:
            await self.quotas.release(job.id)

    async def keep_alive(self, live: Callable[[], Iterable[Job]]) -> None:
        """Refresh the slots of this front end's live jobs every ``refresh_seconds``, until cancelled."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.caps.refresh((job.user_key, job.id, job.request.options.count) for job in list(live()))
            except Exception as exc:  # Redis away: the next beat tries again before the slots run out
                log.warning("could not refresh the users' pending slots: %s", exc)

    async def aclose(self) -> None:
        """Close the connection (stops any call still retrying)."""
        await self.link.aclose()

    async def _undo(self, job: Job) -> None:
        """Give back whatever a refused or interrupted reservation took; a failure here is bounded
        (a slot runs out after ``slot_seconds``, a quota unit at the end of the day)."""
        with contextlib.suppress(Exception):
            await self.caps.release(job.user_key, job.id, job.request.options.count)
        with contextlib.suppress(Exception):
            await self.quotas.release(job.id)


def create_shared_limits(settings: Settings) -> SharedLimits:
    """The shared limits for ``[queue] backend = "redis"``, on their own connection to the queue's Redis."""
    queue, engine = settings.queue, settings.engine
    url = queue.url.get_secret_value()
    log.info("caps, quotas and rates shared through Redis at %s", mask_url(url))
    link = RedisLink(url, block_seconds=BLOCK_SECONDS, patience=PATIENCE)
    return SharedLimits(link, url, prefix=queue.key_prefix, cap=engine.max_pending_per_user,
                        rate=engine.rate_limit, slot_seconds=queue.lease_seconds,
                        refresh_seconds=queue.heartbeat_seconds)

