"""Daily quotas reserved atomically in Redis, shared by front ends that each keep their own SQLite store.

The embedded engine reserves a quota inside the store's enqueue transaction; with several front
ends, each store sees only its own jobs, so the count lives in Redis instead:

- ``{P}:quota:day:<model>:<user>:<day>`` hash: ``used`` (units reserved that UTC day) and one
  field ``j:<job id>`` per reservation holding its units; it expires an hour after the day ends.
- ``{P}:quota:job:<job id>`` string: the day key the job reserved in, so ``release`` needs only the
  job id, whichever process calls it and whatever day it is then.

The day is Redis' (``TIME`` inside the script): front ends whose clocks disagree still share one
day. Reserving is idempotent per job id (a replayed reservation counts nothing more), and so is
releasing: the job's field is deleted in the same script that gives its units back, so a second
release finds nothing to give. A Redis that loses its data (no ``appendonly``) forgets the day's
reservations; a release afterwards gives back nothing rather than going negative.
"""

from __future__ import annotations

from core.engine.redis_link import RedisLink
from core.engine.shared_keys import key_root
from core.store.rows import quota_refusal

EXPIRY_GRACE = 3600  # seconds a day's counts outlive the day, for releases arriving just after midnight

# KEYS[1] the quota keys' common start; ARGV: model, user, job id, units, quota, seconds kept after the day.
# Returns {1 reserved (or already reserved) | 0 refused, used, Redis' time in s}.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local day = math.floor(now / 86400)
local key = KEYS[1] .. 'day:' .. ARGV[1] .. ':' .. ARGV[2] .. ':' .. day
local field, units, quota = 'j:' .. ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local used = tonumber(redis.call('HGET', key, 'used') or '0')
if redis.call('HEXISTS', key, field) == 1 then return {1, used, now} end
if used + units > quota then return {0, used, now} end
local expires = (day + 1) * 86400 + tonumber(ARGV[6])
used = redis.call('HINCRBY', key, 'used', units)
redis.call('HSET', key, field, units)
redis.call('EXPIREAT', key, expires)
redis.call('SET', KEYS[1] .. 'job:' .. ARGV[3], key, 'EXAT', expires)
return {1, used, now}
"""

# KEYS[1] the quota keys' common start; ARGV: job id. Returns the units given back (0: none held).
RELEASE = """
local pointer = KEYS[1] .. 'job:' .. ARGV[1]
local key = redis.call('GET', pointer)
if not key then return 0 end
redis.call('DEL', pointer)
local field = 'j:' .. ARGV[1]
local units = tonumber(redis.call('HGET', key, field) or '0')
if units == 0 then return 0 end
redis.call('HDEL', key, field)
redis.call('HINCRBY', key, 'used', -units)
return units
"""

# KEYS[1] the quota keys' common start; ARGV: model, user. Units used today (Redis' day).
USED = """
local day = math.floor(tonumber(redis.call('TIME')[1]) / 86400)
return tonumber(redis.call('HGET', KEYS[1] .. 'day:' .. ARGV[1] .. ':' .. ARGV[2] .. ':' .. day, 'used') or '0')
"""


class SharedQuotas:
    """Each user's daily quota per model, reserved per job and given back for jobs that fail or are cancelled."""

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.base = f"{key_root(prefix)}:quota:"
        self._reserve = link.client.register_script(RESERVE)
        self._release = link.client.register_script(RELEASE)
        self._used = link.client.register_script(USED)

    async def reserve(self, job_id: str, user: str, model: str, quota: int, units: int = 1) -> None:
        """Take ``units`` of today's ``quota`` for ``job_id``, or raise ``QuotaExceeded`` and take nothing."""
        reserved, used, now = await self.link.call(
            lambda: self._reserve(keys=[self.base], args=[model, user, job_id, units, quota, EXPIRY_GRACE]))
        if not int(reserved):
            raise quota_refusal(quota, model, float(now), left=max(0, quota - int(used)))

    async def release(self, job_id: str) -> int:
        """Give back what ``job_id`` reserved; 0 if it holds nothing (released already, or never reserved)."""
        return int(await self.link.call(lambda: self._release(keys=[self.base], args=[job_id])))

    async def used(self, user: str, model: str) -> int:
        """Units ``user`` has reserved on ``model`` today, across the cluster."""
        return int(await self.link.call(lambda: self._used(keys=[self.base], args=[model, user])))
