"""The job store's health as the engine sees it: failing stores stop admission until a write works again.

When a write fails, no new request is admitted (users get ``StoreUnavailable``) and no job starts
unrecorded; running jobs finish and are delivered. A probe retries a tiny write every few seconds and
reopens the door when it succeeds. Finished rows older than the retention are pruned in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.errors import StoreError, StoreUnavailable
from core.store import JobStore

log = logging.getLogger(__name__)
PROBE_EVERY = 5.0  # seconds between probes while the store fails
PRUNE_EVERY = 3600.0  # seconds between sweeps of old rows


class StoreHealth:
    """Whether the store takes writes; probes it back to health; prunes old rows."""

    def __init__(self, store: JobStore | None) -> None:
        self.store = store
        self.writable = asyncio.Event()
        self.writable.set()
        self.failure: StoreError | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._probing: asyncio.Task[None] | None = None
        self.probe_every = PROBE_EVERY

    @property
    def failing(self) -> bool:
        """True while the last write failed and no probe has succeeded since."""
        return self.failure is not None

    def check(self) -> None:
        """Refuse new work while the store fails."""
        if self.failure is not None:
            raise StoreUnavailable(detail=str(self.failure))

    def failed(self, error: StoreError) -> None:
        """A write failed: stop admitting and starting jobs, and probe until it works again."""
        if self.failure is None:
            log.error("job store is failing (%s): new requests are refused until it recovers", error)
        self.failure = error
        self.writable.clear()
        if self._probing is None or self._probing.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to probe from
                self._probing = asyncio.get_running_loop().create_task(self._probe(), name="store-probe")

    def start(self, retention_days: float) -> None:
        """Begin pruning rows older than ``retention_days``."""
        if self.store is not None:
            self._tasks.append(asyncio.create_task(self._prune(retention_days), name="store-prune"))

    async def stop(self) -> None:
        """Stop probing and pruning."""
        tasks = [*self._tasks, *([self._probing] if self._probing else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._probing = None

    async def _probe(self) -> None:
        assert self.store is not None
        while self.failure is not None:
            await asyncio.sleep(self.probe_every)
            try:
                await self.store.probe()
            except StoreError as exc:
                log.warning("job store still failing: %s", exc)
                continue
            log.warning("job store works again; taking new requests")
            self.failure = None
            self.writable.set()

    async def _prune(self, retention_days: float) -> None:
        assert self.store is not None
        while True:
            try:
                removed = await self.store.prune(retention_days)
            except StoreError as exc:
                self.failed(exc)
            else:
                if removed:
                    log.info("pruned %d job(s) older than %g days", removed, retention_days)
            await asyncio.sleep(PRUNE_EVERY)
