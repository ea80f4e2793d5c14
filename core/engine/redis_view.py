"""Each lane's waiting order as this process last read it from Redis, kept fresh by pub/sub.

``positions``, ``snapshot`` and ``waiting`` of the ``JobQueue`` interface are synchronous; with
Redis they read this mirror. Every script that changes a lane's order publishes the lane's name;
the watcher marks that lane stale and re-reads it (one ``VIEW`` script, O(waiting)) at most every
``interval`` seconds, so a process sees another's changes within about ``interval`` plus a round trip.
Counts returned by this process's own scripts update ``waiting`` at once. After a lost connection
every lane is re-read, since changes published meanwhile were missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio.client import PubSub

from core.engine.queue import LaneSnapshot, QueuedJob, QueueOrder
from core.engine.redis_link import MAX_DELAY, OUTAGE, RedisLink

log = logging.getLogger(__name__)

IDLE_READ = 1.0  # seconds of waiting for a change notice before looking again


@dataclass(slots=True)
class LaneView:
    """One lane as last read: how many wait and run, and who waits in which order."""

    order: QueueOrder
    size: int = 0
    running: int = 0
    entries: tuple[tuple[str, str], ...] = ()  # (job id, user key) in the order they will run
    positions: dict[str, int] = field(default_factory=dict)


def parse_entry(entry: str) -> tuple[str, str]:
    """A list entry ``"<id> <user key>"`` as (id, user key)."""
    job_id, _, who = entry.partition(" ")
    return job_id, who


class LaneMirror:
    """The lanes' views, the pub/sub watcher that keeps them fresh, and ``refresh`` on demand."""

    def __init__(self, link: RedisLink, lane_key: Callable[[str], str], channel: str, interval: float,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.link = link
        self.lane_key = lane_key
        self.channel = channel
        self.interval = interval
        self.on_change = on_change
        self.views: dict[str, LaneView] = {}
        self._stale: set[str] = set()

    def add(self, lane: str, order: QueueOrder) -> None:
        """Start mirroring ``lane``; read at the watcher's first pass."""
        self.views[lane] = LaneView(order)
        self.mark(lane)

    def mark(self, lane: str) -> None:
        """``lane`` changed: re-read it at the next pass."""
        if lane in self.views:
            self._stale.add(lane)

    def note_size(self, lane: str, size: int) -> None:
        """A count this process's own script just returned."""
        self.views[lane].size = size

    def snapshot(self, lane: str) -> LaneSnapshot:
        """The lane's waiting jobs as last read."""
        view = self.views[lane]
        waiting = tuple(QueuedJob(job_id, who, n) for n, (job_id, who) in enumerate(view.entries, start=1))
        return LaneSnapshot(lane, view.order, waiting)

    async def refresh(self, lane: str) -> None:
        """Read ``lane`` from Redis now."""
        size, running, entries = await self.link.script("VIEW", [self.lane_key(lane)], [], patient=True)
        view = self.views[lane]
        parsed = tuple(parse_entry(entry) for entry in entries)
        changed = parsed != view.entries
        view.size, view.running, view.entries = int(size), int(running), parsed
        if changed:
            view.positions = {job_id: n for n, (job_id, _) in enumerate(parsed, start=1)}
            if self.on_change is not None:
                self.on_change(lane)

    async def run(self) -> None:
        """Watch the changes channel and re-read stale lanes, reconnecting after an outage."""
        delay = MAX_DELAY / 16
        while True:
            try:
                await self._watch()
            except OUTAGE as exc:
                log.warning("queue change feed lost (%s); resubscribing in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)

    async def _watch(self) -> None:
        pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            for lane in self.views:  # whatever changed while unsubscribed
                self.mark(lane)
            while True:
                if self._stale:
                    lanes, self._stale = self._stale, set()
                    for lane in lanes:
                        await self.refresh(lane)
                    await self._read(pubsub, self.interval, first_only=False)  # paces the passes
                else:
                    await self._read(pubsub, IDLE_READ, first_only=True)
        finally:
            with contextlib.suppress(*OUTAGE):
                await pubsub.aclose()

    async def _read(self, pubsub: PubSub, seconds: float, *, first_only: bool) -> None:
        """Collect lanes named on the channel for ``seconds``, or until the first (waits on the socket)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                self.mark(message["data"])
                if first_only:
                    return
