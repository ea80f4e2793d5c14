"""Pacing what a bot sends, shared by every platform adapter.

Chat services limit how often one message may be edited and how many messages one chat may get
per minute, and answer a burst with "wait N seconds". ``PacedStatus`` edits one status message:
edits closer together than ``interval`` are merged (the latest text wins), identical text is never
re-sent, one edit is in flight at a time (so older text never lands after newer), and a refusal
with a wait (``RetryAfter``) holds every edit of that message until the wait is over. ``ChatBudget``
counts messages per chat: sends wait for a free slot, status edits use only what sends leave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Apply = Callable[[str, Any], Awaitable[bool]]

log = logging.getLogger(__name__)


class RetryAfter(Exception):
    """The platform refused for now and named a wait in seconds; nothing was sent."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = max(0.0, float(seconds))


class Clock:
    """Monotonic time and sleeping; tests pass a faster one so minutes of pacing take milliseconds."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""
        await asyncio.sleep(max(0.0, seconds))


REAL_CLOCK = Clock()


class ChatBudget:
    """At most ``limit`` messages per ``window`` seconds in one chat (Telegram: about 20 a minute in a group)."""

    def __init__(self, limit: int, window: float = 60.0, *, clock: Clock = REAL_CLOCK) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._sent: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        sent = self._sent.setdefault(key, deque())
        horizon = self.clock.now() - self.window
        while sent and sent[0] <= horizon:
            sent.popleft()
        if not sent:
            del self._sent[key]
            return self._sent.setdefault(key, deque())
        return sent

    def wait(self, key: str, keep: int = 0) -> float:
        """Seconds until a message may go while ``keep`` slots stay free for others; 0 when it may go now."""
        sent = self._recent(key)
        room = self.limit - keep
        if len(sent) < room:
            return 0.0
        if room <= 0:
            return self.window
        return max(0.001, sent[len(sent) - room] + self.window - self.clock.now())

    def take_now(self, key: str, keep: int = 0) -> float:
        """Use a slot if one is free (0 returned), else say how long to wait; nothing is used then."""
        wait = self.wait(key, keep)
        if wait == 0:
            self._sent[key].append(self.clock.now())
        return wait

    async def take(self, key: str) -> None:
        """Wait for a free slot and use it: for messages that must go (a first answer, an image)."""
        while (wait := self.take_now(key)) > 0:
            await self.clock.sleep(wait)

    def refused(self, key: str, seconds: float) -> None:
        """The service said the chat is full for ``seconds``: count the window as used until then."""
        sent = self._recent(key)
        until = self.clock.now() + seconds - self.window
        while len(sent) < self.limit:
            sent.append(until)


class Hold:
    """A platform wait shared by the pacers of one job: a refused status edit holds its previews too."""

    def __init__(self) -> None:
        self.until = float("-inf")


class PacedStatus:
    """Throttled edits of one message through ``apply`` (the platform's edit, returning "still editable").

    ``apply`` may raise ``RetryAfter``: the latest wanted text is then shown once the wait is over.
    With a ``budget``, an edit goes only while half of the chat's budget stays free for sends.
    Pacers given the same ``hold`` all wait when any of them is told to wait. With ``background``,
    ``show`` never waits for the edit itself (a slow upload must not hold up the job's other events).
    """

    def __init__(self, apply: Apply, interval: float, *, budget: ChatBudget | None = None, key: str = "",
                 clock: Clock = REAL_CLOCK, hold: Hold | None = None, background: bool = False) -> None:
        self._edit, self.interval, self.budget, self.key, self.clock = apply, interval, budget, key, clock
        self.hold, self.background = hold or Hold(), background
        self._shown: tuple[str, Any] | None = None
        self._wanted: tuple[str, Any] | None = None
        self._last = float("-inf")
        self._flush: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.gone = False

    def _due(self, now_wanted: bool) -> float:
        """Seconds until the next edit may go."""
        now = self.clock.now()
        due = max(self.hold.until, now if now_wanted else self._last + self.interval) - now
        if due <= 0 and self.budget is not None:
            due = self.budget.wait(self.key, keep=self.budget.limit // 2)
        return max(0.0, due)

    async def show(self, text: str, extra: Any = None, *, now: bool = False) -> None:
        """Show ``text``: at once if ``now`` or the interval has passed (and no wait holds), else later."""
        if self.gone or (text, extra) == self._shown:
            self._wanted = None
            return
        self._wanted = (text, extra)
        due = self._due(now)
        if due <= 0 and not self._lock.locked() and not self.background:
            await self._apply()
        else:
            self._schedule(max(due, 0.0))

    def _schedule(self, wait: float) -> None:
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._later(wait))

    async def _later(self, wait: float) -> None:
        await self.clock.sleep(wait)
        self._flush = None
        due = self._due(False)
        if due > 0:
            self._schedule(due)
            return
        await self._apply()

    async def _apply(self) -> None:
        async with self._lock:
            wanted, self._wanted = self._wanted, None
            if wanted is None or self.gone or wanted == self._shown:
                return
            if self.budget is not None and self.budget.take_now(self.key, keep=self.budget.limit // 2) > 0:
                self._hold(wanted, self._due(False))
                return
            self._last = self.clock.now()
            try:
                still = await self._edit(*wanted)
            except RetryAfter as wait:
                self.hold.until = max(self.hold.until, self.clock.now() + wait.seconds)
                self._hold(wanted, wait.seconds)
                return
            except Exception:  # a network fault: this edit is lost, the next one tries again
                log.warning("a status edit failed; the next change will try again", exc_info=True)
                return
            self._last = self.clock.now()  # counted from when it landed: a slow upload is not followed at once
            self._shown = wanted
            self.gone = self.gone or not still  # ``stop`` may have ended it meanwhile

    def _hold(self, wanted: tuple[str, Any], wait: float) -> None:
        """Keep ``wanted`` unless something newer came meanwhile, and try again after ``wait``."""
        if self._wanted is None:
            self._wanted = wanted
        self._schedule(wait)

    @property
    def pending(self) -> bool:
        """Whether an edit is waiting to be shown."""
        return self._wanted is not None and not self.gone

    async def drain(self) -> None:
        """Wait until the latest wanted text is shown (a final status must not be dropped)."""
        while self.pending:
            flush = self._flush
            if flush is None or flush.done():
                await self._apply()
                if self.pending and (self._flush is None or self._flush.done()):
                    return  # could not be scheduled: nothing more to wait for
            else:
                await asyncio.wait({flush})

    async def close(self) -> None:
        """Drop a pending edit."""
        self._wanted = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    async def stop(self) -> None:
        """No edit from now on, and none still in flight when this returns (nothing lands after the end)."""
        self.gone, self._wanted = True, None
        async with self._lock:  # an edit being sent finishes first; it is never cut off half-way
            pass
        await self.close()
