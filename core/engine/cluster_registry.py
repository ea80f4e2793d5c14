"""Which workers are alive: each registers itself under a key that expires unless refreshed.

``P:worker:<id>`` is a hash (models, host, pid, started) with a time to live of three heartbeats;
a worker refreshes it on every beat and deletes it when it stops cleanly, so a worker that died
disappears from ``sakaibot queue`` within three heartbeats. Nothing depends on it for correctness:
leases, not registrations, decide who runs what.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from core.engine.cluster_wire import ClusterKeys
from core.engine.queue import LaneLoad
from core.engine.redis_link import RedisLink

log = logging.getLogger(__name__)

BEATS_TO_LIVE = 3


@dataclass(slots=True, frozen=True)
class WorkerInfo:
    """One live worker as ``sakaibot queue`` shows it."""

    worker_id: str
    models: tuple[str, ...]
    host: str
    pid: int


@dataclass(slots=True, frozen=True)
class ClusterView:
    """What ``sakaibot queue`` prints: every lane's load, and the workers alive (``None``: no cluster)."""

    lanes: list[LaneLoad]
    workers: list[WorkerInfo] | None


class WorkerRegistry:
    """Registers one worker and keeps its registration alive; lists every live worker."""

    def __init__(self, link: RedisLink, keys: ClusterKeys, heartbeat_seconds: float) -> None:
        self.link = link
        self.keys = keys
        self.heartbeat_seconds = heartbeat_seconds

    async def register(self, worker_id: str, models: list[str]) -> None:
        """Write (or refresh) ``worker_id``'s registration."""
        key = self.keys.worker(worker_id)
        fields: dict[Any, Any] = {"models": ",".join(models), "host": socket.gethostname(), "pid": str(os.getpid()),
                  "seen": str(time.time())}
        ttl = max(1000, int(self.heartbeat_seconds * BEATS_TO_LIVE * 1000))

        async def write() -> None:
            async with self.link.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.pexpire(key, ttl)
                await pipe.execute()
        await self.link.call(write, patient=True)

    async def keep_alive(self, worker_id: str, models: list[str]) -> None:
        """Refresh the registration every heartbeat until cancelled; an outage only delays a beat."""
        while True:
            try:
                await self.register(worker_id, models)
            except Exception as exc:
                log.warning("worker registration not refreshed: %s", exc)
            await asyncio.sleep(self.heartbeat_seconds)

    async def unregister(self, worker_id: str) -> None:
        """Remove the registration of a worker that stops cleanly (best effort)."""
        key = self.keys.worker(worker_id)
        try:
            await self.link.call(lambda: self.link.client.delete(key))
        except Exception as exc:
            log.warning("worker %s not unregistered (its key expires by itself): %s", worker_id, exc)

    async def alive(self) -> list[WorkerInfo]:
        """Every registered worker, by id."""
        async def read() -> list[WorkerInfo]:
            found = []
            async for key in self.link.client.scan_iter(match=self.keys.workers, count=500):
                fields: dict[str, str] = await self.link.client.hgetall(key)  # type: ignore[assignment]
                if fields:
                    found.append(WorkerInfo(str(key).rsplit(":", 1)[-1],
                                            tuple(m for m in fields.get("models", "").split(",") if m),
                                            fields.get("host", "?"), int(fields.get("pid", "0"))))
            return sorted(found, key=lambda w: w.worker_id)
        result: list[WorkerInfo] = await self.link.call(read)
        return result
