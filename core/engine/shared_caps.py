"""Per-user caps on pending jobs, counted across every front end of a cluster in Redis.

Each user has one sorted set, ``{P}:pending:<user>``: one member per pending job id, scored by a
deadline in Redis' own clock (ms). Why a sorted set of job ids and not a counter:

- *Idempotent per job id*: admitting a job already counted, or releasing one already released,
  changes nothing, so a retried call (a reply lost in a disconnect) or a second release (the worker
  and the front end both see the job end) never counts twice or gives back twice. A bare
  ``INCR``/``DECR`` counter cannot tell a replay from a new call.
- *Recovers from a crashed front end*: the front end that owns a job refreshes its deadline on a
  heartbeat; members whose owner stopped refreshing fall out (``ZREMRANGEBYSCORE``) at the next
  admission, so a dead process never pins its users' slots. A key per job with its own TTL would
  recover too, but could not be counted atomically with the admission (that needs ``SCAN``).
- *Atomic*: pruning, counting and adding are one Lua script, so two front ends cannot both take a
  user's last slot.

The price of recovery: after a front end dies, its users' still-waiting jobs stop counting once
their deadline passes, until that front end returns and holds them again (``hold``). And since a
refresh re-adds members (so a Redis that lost its data counts live jobs again), a job that ended
elsewhere just before a refresh is counted until its owner releases it, as it does on learning the end.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.engine.admission import cap_refusal
from core.engine.redis_link import RedisLink
from core.engine.shared_keys import key_root

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] the user's set; ARGV: cap (0: none), ttl ms, then the job's slots (one per image, the job id
# first). 1 admitted (or already counted), 0 refused.
ADMIT = _NOW + """
local key, cap, ttl = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, ARGV[3]) and cap > 0 and redis.call('ZCARD', key) + #ARGV - 2 > cap then
  return 0
end
for i = 3, #ARGV do
  redis.call('ZADD', key, now + ttl, ARGV[i])
end
redis.call('PEXPIRE', key, ttl)
return 1
"""

# KEYS[1] the sets' common start; ARGV: ttl ms, then (user, job id) pairs. Re-adds members Redis lost.
REFRESH = _NOW + """
local base, ttl = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local key = base .. ARGV[i]
  redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return (#ARGV - 1) / 2
"""

# KEYS[1] the user's set. Live members, counted after pruning.
COUNT = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


def slots(job_id: str, count: int = 1) -> list[str]:
    """The members one job holds in its user's set: one per image asked for (``--n``), the job id first."""
    return [job_id, *(f"{job_id}#{index}" for index in range(2, count + 1))]


class SharedCaps:
    """Counts each user's pending jobs cluster-wide; a job counts from ``admit`` until ``release``."""

    def __init__(self, link: RedisLink, prefix: str, ttl_seconds: float) -> None:
        self.link = link
        self.base = f"{key_root(prefix)}:pending:"
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._admit = link.client.register_script(ADMIT)
        self._refresh = link.client.register_script(REFRESH)
        self._count = link.client.register_script(COUNT)

    async def admit(self, user: str, job_id: str, cap: int | None, count: int = 1) -> None:
        """Count ``count`` images of ``job_id`` against ``user``'s cap, or raise ``QueueFull`` (``cap`` None:
        count, never refuse)."""
        members = slots(job_id, count)
        admitted = await self.link.call(
            lambda: self._admit(keys=[self.base + user], args=[cap or 0, self.ttl_ms, *members]))
        if not int(admitted):
            waiting = await self.count(user)
            raise cap_refusal(cap or 0, waiting, count)

    async def release(self, user: str, job_id: str, count: int = 1) -> bool:
        """Stop counting ``job_id``; ``False`` if it was not counted (released already, or expired)."""
        members = slots(job_id, count)
        removed = await self.link.call(lambda: self.link.client.zrem(self.base + user, *members))
        return bool(removed)

    async def refresh(self, jobs: Iterable[tuple[str, str, int]]) -> int:
        """Push back the deadlines of (user, job id, images) this process owns; re-adds any Redis lost."""
        args: list[str | int] = [self.ttl_ms]
        for user, job_id, count in jobs:
            for member in slots(job_id, count):
                args += [user, member]
        if len(args) == 1:
            return 0
        return int(await self.link.call(lambda: self._refresh(keys=[self.base], args=args)))

    async def count(self, user: str) -> int:
        """How many of ``user``'s jobs count now, across the cluster."""
        return int(await self.link.call(lambda: self._count(keys=[self.base + user], args=[])))
