"""The background side of a cluster front end's shared limits: give back, keep counted, close.

Caps, quotas and rates live in Redis there (``core.engine.shared_limits``). Giving back what an
ended job held must never hold up its final event, so it runs as a task; live jobs' cap slots have
deadlines, so they are refreshed while the front end lives (a dead front end's slots run out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from core.engine.admission import Admission
from core.engine.redis_queue import cancel_all
from core.types import Job

log = logging.getLogger(__name__)
RELEASE_GRACE = 2.0  # seconds a stopping front end waits to give back shared limits (they expire anyway)


class LimitsKeeper:
    """Runs the shared limits' releases and refreshes of one front end."""

    def __init__(self, admission: Admission, live: Callable[[], Iterable[Job]]) -> None:
        self.admission = admission
        self.live = live
        self._releases: set[asyncio.Task[None]] = set()
        self._keep_alive: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Keep this front end's live jobs counted until ``close``."""
        self._keep_alive = asyncio.create_task(self.admission.limits.keep_alive(self.live), name="shared-limits")

    def release(self, job: Job) -> None:
        """``job`` ended: give back its cap slots (and quota, unless done) in the background."""
        task = asyncio.create_task(self._quietly_release(job), name=f"release:{job.id}")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def close(self) -> None:
        """Stop refreshing, give the releases under way a moment, close the limits' connection."""
        if self._keep_alive is not None:
            await cancel_all({self._keep_alive})
        if self._releases:
            await asyncio.wait(set(self._releases), timeout=RELEASE_GRACE)
        try:
            await self.admission.limits.aclose()
        except Exception as exc:
            log.warning("the shared limits failed to close: %s", exc)

    async def _quietly_release(self, job: Job) -> None:
        try:
            await self.admission.release(job)
        except Exception as exc:  # Redis away: the slots run out by themselves (shared_caps ttl)
            log.warning("shared limits of job %s not given back: %s", job.id, exc)
