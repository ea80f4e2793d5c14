"""Cancelling a job that runs on another process: a flag every worker checks, and a notice it hears.

The front end sets ``P:cancel:<id>`` (with a time to live) and publishes the id on ``P:cancels``.
The worker that holds the job hears the notice and cancels its run; a worker that claims the job
later (its holder died, or the notice raced the claim) finds the flag and skips it. A notice
published while a worker was disconnected is lost, but the flag is not: after resubscribing, the
worker checks the flags of every job it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from core.engine.cluster_wire import ClusterKeys
from core.engine.redis_link import MAX_DELAY, OUTAGE, RedisLink

log = logging.getLogger(__name__)

FLAG_TTL_MS = 86_400_000  # a cancel flag outlives any lease and any plausible wait in a lane


class CancelRequests:
    """Both sides of a cross-process cancel."""

    def __init__(self, link: RedisLink, keys: ClusterKeys) -> None:
        self.link = link
        self.keys = keys

    async def request(self, job_id: str) -> None:
        """Ask whichever worker holds (or will claim) ``job_id`` to cancel it; ``QueueUnavailable`` if Redis is away."""
        flag, channel = self.keys.cancel_flag(job_id), self.keys.cancels
        await self.link.call(lambda: self.link.client.set(flag, "1", px=FLAG_TTL_MS))
        await self.link.call(lambda: self.link.client.publish(channel, job_id))

    async def requested(self, job_id: str) -> bool:
        """True if ``job_id`` was cancelled (a worker asks before running it)."""
        flag = self.keys.cancel_flag(job_id)
        return bool(await self.link.call(lambda: self.link.client.exists(flag), patient=True))

    async def watch(self, on_cancel: Callable[[str], None], held: Callable[[], Iterable[str]]) -> None:
        """Call ``on_cancel(id)`` for every notice; after each (re)subscription, for held jobs already flagged."""
        delay = MAX_DELAY / 16
        while True:
            try:
                await self._listen(on_cancel, held)
            except OUTAGE as exc:
                log.warning("cancel notices lost (%s); resubscribing in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)

    async def _listen(self, on_cancel: Callable[[str], None], held: Callable[[], Iterable[str]]) -> None:
        pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.cancels)
            for job_id in list(held()):  # notices published while unsubscribed were missed
                if await self.requested(job_id):
                    on_cancel(job_id)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    on_cancel(str(message["data"]))
        finally:
            with contextlib.suppress(*OUTAGE):
                await pubsub.aclose()
