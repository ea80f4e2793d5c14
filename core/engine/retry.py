"""When and how long to wait before trying a failed generation again.

A small loop of our own rather than tenacity's ``AsyncRetrying``: most jobs succeed at the first
attempt, and building tenacity's retry state cost about half of the engine's per-job overhead
in the benchmark; we also need what it lacks, a wait that honours the delay a backend asked for
(``retry_after``) and giving up at once when that delay is longer than we are willing to wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from core.errors import retry_after_of

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, BaseException, float], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter on top."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 1.0

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Retry retryable errors, within the attempt budget and the delay we will wait."""
        if attempt >= self.max_attempts or not getattr(error, "retryable", False):
            return False
        asked = retry_after_of(error)
        return asked is None or asked <= self.max_delay

    def delay(self, attempt: int, error: BaseException) -> float:
        """Backoff after failed ``attempt`` (1-based), never shorter than the backend asked for."""
        backoff = min(self.initial_delay * 2 ** (attempt - 1) + random.uniform(0, self.jitter), self.max_delay)
        return max(backoff, retry_after_of(error) or 0.0)

    async def run(self, attempt: Callable[[], Awaitable[T]], sleep: Sleep, on_retry: OnRetry) -> T:
        """Call ``attempt`` until it succeeds or the policy gives up; the last error propagates."""
        try:
            return await attempt()
        except Exception as error:
            failed = error
        return await self.retry(failed, attempt, sleep, on_retry)

    async def retry(self, error: Exception, attempt: Callable[[], Awaitable[T]], sleep: Sleep,
                    on_retry: OnRetry) -> T:
        """``run`` once the first attempt failed with ``error`` (the runner makes that attempt inline)."""
        number = 1
        while True:
            if not self.should_retry(error, number):
                raise error
            wait = self.delay(number, error)
            await on_retry(number, error, wait)
            await sleep(wait)
            number += 1
            try:
                return await attempt()
            except Exception as failed:
                error = failed
