"""When and how long to wait before trying a failed generation again.

tenacity does the looping; this module adds what it lacks: a wait that honours the delay a
backend asked for (``retry_after``), and giving up at once when that delay is longer than
we are willing to wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.errors import retry_after_of

Sleep = Callable[[float], Awaitable[None]]
BeforeSleep = Callable[[RetryCallState], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 1.0

    def should_retry(self, error: BaseException) -> bool:
        """Retry only retryable errors whose requested delay we are willing to wait."""
        if not getattr(error, "retryable", False):
            return False
        asked = retry_after_of(error)
        return asked is None or asked <= self.max_delay

    def delay(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, but never shorter than the backend asked for."""
        backoff = wait_exponential_jitter(multiplier=self.initial_delay, max=self.max_delay, jitter=self.jitter)(state)
        outcome = state.outcome
        asked = retry_after_of(outcome.exception()) if outcome is not None and outcome.failed else None
        return max(backoff, asked or 0.0)

    def retrying(self, sleep: Sleep, before_sleep: BeforeSleep) -> AsyncRetrying:
        """A tenacity loop for one job: ``async for attempt in policy.retrying(...)``."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            retry=retry_if_exception(self.should_retry),
            wait=self.delay,
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
