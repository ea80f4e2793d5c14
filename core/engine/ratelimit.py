"""Per-user request rates, counted in a moving window by the ``limits`` library."""

from __future__ import annotations

import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from core.errors import RateLimited


class UserRateLimiter:
    """Admits at most ``rate`` (e.g. ``"5/minute"``) requests per user."""

    def __init__(self, rate: str | None) -> None:
        self.rate = rate
        self._item = limits.parse(rate) if rate else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage()) if rate else None

    def check(self, user_key: str) -> None:
        """Raise ``RateLimited`` if one more request would exceed the rate; count nothing."""
        if self._item is None or self._limiter is None:
            return
        if not self._limiter.test(self._item, user_key):
            reset_at, _ = self._limiter.get_window_stats(self._item, user_key)
            raise RateLimited(retry_after=max(0.0, reset_at - time.time()), limit=str(self.rate))

    def hit(self, user_key: str) -> None:
        """Count one admitted request."""
        if self._item is not None and self._limiter is not None:
            self._limiter.hit(self._item, user_key)
