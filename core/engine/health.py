"""The job store's health as the engine sees it: failing stores stop admission until a write works again.

When a write fails, no new request is admitted (users get ``StoreUnavailable``) and no job starts
unrecorded; running jobs finish and are delivered. A probe retries a tiny write every few seconds and
reopens the door when it succeeds. Finished rows older than the retention are pruned in the background.

Before the door reopens, the probe also writes what the failure left owed, so the store says what users
were told: requests refused with ``StoreUncertain`` (their rows may be saved as queued) are cancelled,
and final writes that failed are sent again (else a restart would count the job as a crash and run it
once more). Both are kept in memory only: a bot that dies before the probe (or its graceful stop)
writes them leaves those rows as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from core.errors import StoreError, StoreUnavailable
from core.store import JobStore
from core.types import Job

log = logging.getLogger(__name__)
PROBE_EVERY = 5.0  # seconds between probes while the store fails
PRUNE_EVERY = 3600.0  # seconds between sweeps of old rows


class StoreHealth:
    """Whether the store takes writes; probes it back to health, writing what it owes first; prunes old rows."""

    def __init__(self, store: JobStore | None) -> None:
        self.store = store
        self.writable = asyncio.Event()
        self.writable.set()
        self.failure: StoreError | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._probing: asyncio.Task[None] | None = None
        self.probe_every = PROBE_EVERY
        self.refused: set[str] = set()  # ids refused to their users whose rows may be saved as queued
        self.unfinished: dict[str, Job] = {}  # jobs whose final write failed, or may have

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

    def refused_unsure(self, job_id: str) -> None:
        """A request was refused with ``StoreUncertain``: its row may be saved as queued, so it is cancelled in
        the store before new requests are taken again (``failed`` is told of the error itself)."""
        self.refused.add(job_id)

    def journal(self) -> Journal | None:
        """The store as the event path's journal (``None`` without one): a failed final write is kept here."""
        return None if self.store is None else Journal(self.store, self.unfinished)

    def start(self, retention_days: float) -> None:
        """Begin pruning rows older than ``retention_days``."""
        if self.store is not None:
            self._tasks.append(asyncio.create_task(self._prune(retention_days), name="store-prune"))

    async def stop(self) -> None:
        """Stop probing and pruning; what the store is owed gets one last try (a restart would not know it)."""
        tasks = [*self._tasks, *([self._probing] if self._probing else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._probing = None
        if self.refused or self.unfinished:
            try:
                await self._pay()
            except StoreError as exc:
                log.error("job store: %d refused request(s) and %d final write(s) are not on record and may run "
                          "again after the restart: %s", len(self.refused), len(self.unfinished), exc)

    async def _probe(self) -> None:
        while self.failure is not None:
            await asyncio.sleep(self.probe_every)
            failure = self.failure
            try:
                assert self.store is not None
                await self.store.probe()
                await self._pay()
            except StoreError as exc:
                log.warning("job store still failing: %s", exc)
                continue
            if self.failure is failure:  # nothing failed while the probe wrote: a later failure probes again
                log.warning("job store works again; taking new requests")
                self.failure = None
                self.writable.set()

    async def _pay(self) -> None:
        """What the failure left owed: refused rows cancelled (one write), lost final writes sent again."""
        assert self.store is not None
        refused = list(self.refused)
        if refused:
            ended = await self.store.end_refused(refused)
            self.refused.difference_update(refused)
            log.warning("job store: %d of %d refused request(s) were saved as queued; now cancelled", ended,
                        len(refused))
        for job in list(self.unfinished.values()):
            await self.store.finish_again(job)
            self.unfinished.pop(job.id, None)

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


class Journal:
    """The store's lifecycle writes for the event path; a final write that fails lands in ``unfinished``.

    The others hand back the store's own coroutine (no extra step on the hot path): a failed start or
    update is followed by a final write anyway.
    """

    def __init__(self, store: JobStore, unfinished: dict[str, Job]) -> None:
        self._store = store
        self._unfinished = unfinished

    def started(self, job: Job) -> Coroutine[Any, Any, None]:
        """``JobStore.started``."""
        return self._store.started(job)

    def update(self, job: Job) -> Coroutine[Any, Any, None]:
        """``JobStore.update``."""
        return self._store.update(job)

    def suspend(self, job: Job) -> Coroutine[Any, Any, None]:
        """``JobStore.suspend``."""
        return self._store.suspend(job)

    async def finish(self, job: Job) -> None:
        """The final write; if it fails (or may have), the job is kept for the probe to send again."""
        try:
            await self._store.finish(job)
        except StoreError:
            self._unfinished[job.id] = job
            raise
