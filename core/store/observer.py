"""The job store's link to the engine: a plugin that records job events and admits requests.

It uses the same hooks a third-party plugin would: ``on_job_event`` writes, ``admit_request``
refuses banned users and users over their daily quota.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import PermissionDenied, QuotaExceeded
from core.hookspecs import hookimpl
from core.store import JobStore, start_of_day
from core.types import EventKind, ImageRequest, JobEvent

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0  # seconds between sweeps of the archive for expired images
SAVED_ON = frozenset({EventKind.QUEUED, EventKind.ENHANCED, EventKind.GENERATING, EventKind.RETRYING,
                      EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED})


class StoreObserver:
    """Writes every state change; keeps finished images until delivered; archives if asked."""

    def __init__(self, store: JobStore, archive_dir: str | None, archive_days: int) -> None:
        self.store = store
        self.archive = Path(archive_dir) if archive_dir else None
        self.archive_days = archive_days
        self._pruned_at = 0.0

    @hookimpl
    async def on_job_event(self, event: JobEvent, engine: Engine) -> None:
        """Save the job on every change that matters after a restart."""
        if event.kind not in SAVED_ON:
            return
        job = event.job
        if event.kind is EventKind.DONE and job.result is not None:
            await self.store.keep_result(job.id, job.result.data)
            if self.archive is not None:
                await asyncio.to_thread(self._archive, f"{job.id}.{job.result.extension}", job.result.data)
        await self.store.save(job)

    def _archive(self, name: str, data: bytes) -> None:
        assert self.archive is not None
        self.archive.mkdir(parents=True, exist_ok=True)
        (self.archive / name).write_bytes(data)
        if time.time() - self._pruned_at < PRUNE_EVERY:  # listing the folder per image would grow with it
            return
        self._pruned_at = time.time()
        cutoff = self._pruned_at - self.archive_days * 86400
        for old in self.archive.iterdir():
            if old.is_file() and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)

    @hookimpl
    async def admit_request(self, request: ImageRequest, model: str, engine: Engine) -> None:
        """Bans first, then the daily quota of ``model``."""
        who = request.requester
        if await self.store.is_banned(f"{who.platform}:{who.user_id}"):
            raise PermissionDenied("You are banned from using this bot.")
        if engine.is_admin(who):
            return
        quota = engine.model_settings[model].daily_quota or engine.settings.engine.daily_quota
        if quota and await self.store.used_today(who.platform, who.user_id, model) >= quota:
            reset = datetime.fromtimestamp(start_of_day(), UTC) + timedelta(days=1)
            left = reset - datetime.now(UTC)
            hours, minutes = divmod(int(left.total_seconds() // 60), 60)
            raise QuotaExceeded(f"You have used your {quota} {model} images for today. Your quota resets at "
                                f"00:00 UTC (in {hours} h {minutes} min).", reset_at=reset)
