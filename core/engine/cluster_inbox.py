"""A front end's event stream, read with a consumer group so that nothing reported is lost.

Workers append the events of this front end's jobs to ``P:events:<node>``. The front end reads
them with ``XREADGROUP`` as consumer ``<node>`` of group ``frontend``, applies each, then
``XACK``s it: an entry read but not acknowledged (the process died while applying it) stays
pending and is read again, first thing, by the next start. Applying is idempotent (a job already
finished ignores a second final event), so reading an entry twice is harmless.

Redis going away is ridden out here rather than in ``RedisLink.call``: the inbox wants to know
about an outage (to tell waiting users, and afterwards to re-read pending entries and let the
front end re-queue what a restarted Redis forgot). A group that Redis lost is created again from
the start of the stream (``0``): entries already applied are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError

from core.engine.cluster_wire import GROUP, RemoteEvent, decode_event
from core.engine.redis_link import FIRST_DELAY, MAX_DELAY, OUTAGE, RedisLink

log = logging.getLogger(__name__)

BATCH = 200  # entries per read
OUTAGE_NOTICE_AFTER = 2.0  # seconds of outage before waiting users are told


class EventInbox:
    """Reads one front end's stream and hands each event to ``apply``, acknowledging it afterwards."""

    def __init__(self, link: RedisLink, stream: str, node: str, apply: Callable[[RemoteEvent], Awaitable[None]],
                 *, block_seconds: float, on_outage: Callable[[], Awaitable[None]],
                 on_recovery: Callable[[], Awaitable[None]]) -> None:
        self.link = link
        self.stream = stream
        self.node = node
        self.apply = apply
        self.block_ms = max(1, int(block_seconds * 1000))
        self.on_outage = on_outage
        self.on_recovery = on_recovery
        self.applied = 0

    async def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists; from ``0``, so nothing written earlier is skipped."""
        try:
            await self.link.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def catch_up(self) -> None:
        """Apply every pending entry, then every new one, without blocking: what arrived while this was down."""
        await self.link.call(self.ensure_group, patient=True)
        for start in ("0", ">"):
            while await self.link.call(lambda: self._pass(start, block=None), patient=True):  # noqa: B023
                pass

    async def run(self) -> None:
        """Read and apply entries until cancelled, riding out outages and a lost group."""
        delay, down_since, told = FIRST_DELAY, None, False
        loop = asyncio.get_running_loop()
        pending_first = False
        while True:
            try:
                if pending_first:
                    pending_first = await self._pass("0", block=None)
                else:
                    await self._pass(">", block=self.block_ms)
                if down_since is not None:
                    log.info("Redis is back after %.1f s; resuming the event stream", loop.time() - down_since)
                    down_since, told, delay = None, False, FIRST_DELAY
                    pending_first = True
                    while await self._pass("0", block=None):
                        pass
                    await self.on_recovery()
            except OUTAGE as exc:
                if down_since is None:
                    down_since = loop.time()
                    log.warning("event stream: Redis at %s unreachable (%s); retrying", self.link.where, exc)
                if not told and loop.time() - down_since >= OUTAGE_NOTICE_AFTER:
                    told = True
                    await self.on_outage()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("event stream %s lost its group (Redis lost data?); creating it again", self.stream)
                await self.ensure_group()
                pending_first = True

    async def _pass(self, start: str, *, block: int | None) -> bool:
        """One read of up to ``BATCH`` entries, each applied then acknowledged; ``True`` if any were read."""
        reply: Any = await self.link.client.xreadgroup(GROUP, self.node, {self.stream: start}, count=BATCH,
                                                       block=block)
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            if fields:  # a pending entry trimmed from the stream comes back without fields
                await self._apply(entry_id, fields)
            await self.link.client.xack(self.stream, GROUP, entry_id)
        return bool(entries)

    async def _apply(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            event = decode_event(fields)
        except (KeyError, ValueError) as exc:
            log.error("event %s in %s cannot be read (%s); skipped", entry_id, self.stream, exc)
            return
        try:
            await self.apply(event)
        except OUTAGE:
            raise  # not acknowledged: read again once Redis is back
        except Exception:  # a bug applying one event must not stop the stream (nor replay forever)
            log.exception("event %s of job %s could not be applied", event.kind, event.job_id)
            return
        self.applied += 1
