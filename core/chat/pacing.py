"""Pacing edits of one status message, shared by every platform adapter.

Chat services limit how often one message may be edited. Edits closer together than
``interval`` are merged (the latest text wins) and sent at the next free slot; identical text is
never re-sent. Subclasses say how to edit on their platform and which errors end the editing.
"""

from __future__ import annotations

import abc
import asyncio
import time
from typing import Any


class PacedStatus(abc.ABC):
    """Throttled edits of one message; ``apply`` is the platform's edit, returning success."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._shown: tuple[str, Any] | None = None
        self._wanted: tuple[str, Any] | None = None
        self._last = time.monotonic()
        self._flush: asyncio.Task[None] | None = None
        self.gone = False

    @abc.abstractmethod
    async def apply(self, text: str, extra: Any) -> bool:
        """Edit the message on the platform; set ``gone`` if it can never be edited again."""

    async def show(self, text: str, extra: Any = None, *, now: bool = False) -> None:
        """Show ``text``: at once if ``now`` or the interval has passed, else at the next slot."""
        if self.gone or (text, extra) == self._shown:
            self._wanted = None
            return
        self._wanted = (text, extra)
        wait = self._last + self.interval - time.monotonic()
        if now or wait <= 0:
            await self._apply()
        elif self._flush is None:
            self._flush = asyncio.create_task(self._later(wait))

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._flush = None
        await self._apply()

    async def _apply(self) -> None:
        wanted, self._wanted = self._wanted, None
        if wanted is None or self.gone:
            return
        self._last = time.monotonic()
        if await self.apply(*wanted):
            self._shown = wanted

    async def close(self) -> None:
        """Drop a pending edit."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
