"""Who serves the cluster and how loaded it is: the worker registry and the view ``sakaibot queue`` shows.

A worker process registers ``{P}:worker:<id>``, a hash of its models, host, pid, start time and
running count, and lists its id in ``{P}:workers``, a sorted set scored by a deadline in Redis'
clock. Its heartbeat rewrites both (so a Redis that lost its data learns the worker again) and
pushes the deadline ``ttl`` ahead; a clean stop deletes them. A worker that died simply stops
beating: its hash expires and its index entry is pruned by the next view. An index scored by
deadline, rather than ``SCAN`` over ``worker:*``, keeps a view O(workers) and inside the one
hash-tagged slot every other key of the bot lives in.

``cluster_view`` reads each lane from the ``RedisQueue``'s own keys (see ``core.engine.redis_scripts``):
*waiting* is the lane's ``size`` plus claims whose lease ran out (they go back to the front of the
lane at the next claim), *running* the claims whose lease is still alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.engine.queue import LaneLoad
from core.engine.redis_link import RedisLink
from core.engine.shared_keys import key_root

log = logging.getLogger(__name__)

BEATS_TO_LIVE = 3  # a worker that misses this many heartbeats leaves the view

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] the worker's hash, KEYS[2] the index; ARGV: id, ttl ms, then field/value pairs.
BEAT = _NOW + """
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
return now
"""

# KEYS[1] the bot's root ({P}); ARGV: lane names.
# Returns {now ms, {size, live leases, expired leases} per lane..., then each live worker's HGETALL}.
VIEW = _NOW + """
local root = KEYS[1]
local reply = {now}
for i = 1, #ARGV do
  local base = root .. ':lane:' .. ARGV[i]
  local size = tonumber(redis.call('HGET', base .. ':meta', 'size') or '0')
  local live = redis.call('ZCOUNT', base .. ':leases', now, '+inf')
  local expired = redis.call('ZCOUNT', base .. ':leases', '-inf', '(' .. now)
  reply[#reply + 1] = {size, live, expired}
end
redis.call('ZREMRANGEBYSCORE', root .. ':workers', '-inf', '(' .. now)
for _, id in ipairs(redis.call('ZRANGE', root .. ':workers', 0, -1)) do
  local fields = redis.call('HGETALL', root .. ':worker:' .. id)
  if #fields > 0 then reply[#reply + 1] = fields end
end
return reply
"""


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker process as it last described itself."""

    id: str
    models: tuple[str, ...]
    host: str
    pid: int
    started: float  # Unix time, the worker's clock
    running: int


@dataclass(frozen=True)
class ClusterView:
    """Every lane's load across the cluster and the workers alive, read at ``now`` (Redis' clock, s)."""

    lanes: list[LaneLoad]
    workers: list[WorkerInfo] | None  # None: no cluster (the embedded queue; this process does the work)
    now: float


class WorkerRegistry:
    """Keeps one worker process listed while it lives: ``register``, ``beat`` on a timer, ``unregister``."""

    def __init__(self, link: RedisLink, prefix: str, models: Sequence[str], *, ttl_seconds: float,
                 worker_id: str | None = None) -> None:
        self.link = link
        self.models = tuple(models)
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = worker_id or f"{self.host}-{self.pid}-{uuid.uuid4().hex[:6]}"
        self.started = time.time()
        root = key_root(prefix)
        self.key = f"{root}:worker:{self.id}"
        self.index = f"{root}:workers"
        self._beat = link.client.register_script(BEAT)

    async def beat(self, running: int = 0) -> None:
        """Say this worker is alive (with ``running`` jobs) for another ``ttl``; registers it the first time."""
        fields: dict[str, str | int] = {"id": self.id, "models": ",".join(self.models), "host": self.host,
                                        "pid": self.pid, "started": repr(self.started), "running": running}
        args: list[str | int] = [self.id, self.ttl_ms]
        for name, value in fields.items():
            args += [name, value]
        await self.link.call(lambda: self._beat(keys=[self.key, self.index], args=args))

    async def unregister(self) -> None:
        """Leave the cluster view at once (a clean stop); a crash leaves it when the ttl runs out."""
        await self.link.call(lambda: self.link.client.delete(self.key))  # the view skips an id without a hash
        await self.link.call(lambda: self.link.client.zrem(self.index, self.id))

    async def run(self, running: Callable[[], int], interval: float) -> None:
        """Beat every ``interval`` seconds with the current running count, until cancelled."""
        while True:
            try:
                await self.beat(running())
            except Exception as exc:  # Redis away: the next beat tries again before the ttl runs out
                log.warning("worker %s could not renew its registration: %s", self.id, exc)
            await asyncio.sleep(interval)


async def cluster_view(link: RedisLink, prefix: str, concurrency: Mapping[str, int]) -> ClusterView:
    """The lanes of ``concurrency`` (lane -> cluster-wide limit) plus any a live worker serves, and the workers."""
    limits = dict(concurrency)
    now, lanes, workers = await _read(link, prefix, limits)
    served = {model for worker in workers for model in worker.models} - set(limits)
    if served:  # lanes this process has no config for: read them too, with an unknown limit (0)
        _, extra, _ = await _read(link, prefix, dict.fromkeys(sorted(served), 0))
        lanes += extra
    return ClusterView(sorted(lanes, key=lambda lane: lane.name), workers, now)


async def _read(link: RedisLink, prefix: str, limits: dict[str, int]) -> tuple[float, list[LaneLoad], list[WorkerInfo]]:
    script = link.client.register_script(VIEW)  # computes the digest only; runs as EVALSHA
    reply = await link.call(lambda: script(keys=[key_root(prefix)], args=list(limits)))
    loads, rows = reply[1:1 + len(limits)], reply[1 + len(limits):]
    lanes = [LaneLoad(name, int(size) + int(expired), int(live), limits[name])
             for name, (size, live, expired) in zip(limits, loads, strict=True)]
    workers = sorted((_worker(row) for row in rows), key=lambda worker: worker.id)
    return int(reply[0]) / 1000, lanes, workers


def _worker(row: Sequence[str]) -> WorkerInfo:
    fields = dict(zip(row[::2], row[1::2], strict=True))
    return WorkerInfo(id=fields.get("id", "?"), models=tuple(m for m in fields.get("models", "").split(",") if m),
                      host=fields.get("host", "?"), pid=int(fields.get("pid", 0)),
                      started=float(fields.get("started", 0)), running=int(fields.get("running", 0)))


# ----------------------------------------------------------------- text for `sakaibot queue` and `/queue`
def lane_lines(lanes: Iterable[LaneLoad]) -> list[str]:
    """One line per lane, in the words chat's ``/queue`` already uses."""
    return [f"• {lane.name}: {lane.running}/{lane.concurrency or '?'} running, {lane.waiting} waiting"
            for lane in sorted(lanes, key=lambda lane: lane.name)]


def worker_lines(workers: Iterable[WorkerInfo], now: float) -> list[str]:
    """One line per live worker: where it runs, what it serves, how busy, for how long."""
    return [f"• {w.id} on {w.host} (pid {w.pid}): {', '.join(w.models) or 'no models'}; "
            f"{w.running} running, up {_duration(now - w.started)}" for w in workers]


def render_cluster(view: ClusterView) -> str:
    """The cluster as plain text: lanes, then the workers alive."""
    lanes = lane_lines(view.lanes)
    text = "Queue:\n" + "\n".join(lanes) if lanes else "The queue is empty."
    if not view.workers:
        return text + "\nNo workers alive: waiting jobs start when a worker joins."
    count = len(view.workers)
    return text + f"\nWorkers ({count} alive):\n" + "\n".join(worker_lines(view.workers, view.now))


def _duration(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"
