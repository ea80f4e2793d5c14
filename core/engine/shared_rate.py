"""Per-user request rates shared by every front end, counted by ``limits``' moving window in Redis.

The embedded engine tests the rate, then counts the request once it is queued (``UserRateLimiter``);
across processes that test-then-count would let two front ends both pass a user's last slot. Here
the count is ``limits``' atomic acquire (one Lua script: refuse if the window is full, else add the
entry), so a refused request counts nothing and no two front ends share a slot.

``limits.aio.storage.RedisStorage`` with ``implementation="redispy"`` drives redis-py's asyncio
client (installed for the queue), so no second Redis client (coredis) is needed; it shares this
process's connection pool. Its timestamps come from each front end's clock (``limits`` passes
``time.time()`` to the script), so machines should run NTP: a skew of *s* seconds shifts a window
by *s*.
"""

from __future__ import annotations

import time
from typing import Any

import limits
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from core.engine.redis_link import RedisLink
from core.engine.shared_keys import key_root
from core.errors import RateLimited


class SharedRateLimiter:
    """Admits at most ``rate`` (e.g. ``"5/minute"``) requests per user across the cluster."""

    def __init__(self, rate: str | None, link: RedisLink, url: str, prefix: str) -> None:
        self.rate = rate
        self.link = link
        self._item = limits.parse(rate) if rate else None
        # ``connection_pool`` is documented by RedisStorage but typed as a plain option (float | str | bool).
        shared: dict[str, Any] = {"connection_pool": link.client.connection_pool}
        storage = RedisStorage(f"async+{url}", implementation="redispy", key_prefix=f"{key_root(prefix)}:rate",
                               **shared)
        self._limiter = MovingWindowRateLimiter(storage)

    async def acquire(self, user_key: str) -> None:
        """Count one request of ``user_key``, or raise ``RateLimited`` and count nothing."""
        item = self._item
        if item is None:
            return
        if await self.link.call(lambda: self._limiter.hit(item, user_key)):
            return
        reset_at, _ = await self.link.call(lambda: self._limiter.get_window_stats(item, user_key))
        raise RateLimited(retry_after=max(0.0, reset_at - time.time()), limit=str(self.rate))
