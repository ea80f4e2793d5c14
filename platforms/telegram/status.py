"""One status message per job, edited as the job moves, paced for Telegram's limits.

Edits closer together than ``interval`` are merged (the latest text wins); a short FloodWait is
slept through, a long one skips that edit; a deleted message ends the editing. Nothing here raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from telethon import errors

log = logging.getLogger(__name__)


class StatusMessage:
    """Throttled edits of one message."""

    def __init__(self, message: Any, *, interval: float, max_flood_wait: float) -> None:
        self.message = message
        self.interval = interval
        self.max_flood_wait = max_flood_wait
        self._shown: tuple[str, Any] = (getattr(message, "message", ""), None)
        self._wanted: tuple[str, Any] | None = None
        self._last = time.monotonic()
        self._flush: asyncio.Task[None] | None = None
        self.gone = False

    async def show(self, text: str, buttons: Any = None, *, now: bool = False) -> None:
        """Show ``text``: at once if ``now`` or the interval has passed, else at the next slot."""
        if self.gone or (text, buttons) == self._shown:
            self._wanted = None
            return
        self._wanted = (text, buttons)
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
        if await self._edit(*wanted):
            self._shown = wanted

    async def _edit(self, text: str, buttons: Any, retried: bool = False) -> bool:
        try:
            await self.message.edit(text, buttons=buttons)
            return True
        except errors.MessageNotModifiedError:
            return True
        except (errors.MessageIdInvalidError, errors.MessageEditTimeExpiredError, errors.ChatWriteForbiddenError):
            self.gone = True
        except errors.FloodWaitError as exc:
            if exc.seconds <= self.max_flood_wait and not retried:
                await asyncio.sleep(exc.seconds)
                return await self._edit(text, buttons, retried=True)
            log.warning("status edit skipped: Telegram asks to wait %s s", exc.seconds)
        except errors.RPCError as exc:
            log.warning("status edit failed: %s", exc)
        return False

    async def delete(self) -> None:
        """Remove the status message once the result is there."""
        await self.close()
        try:
            await self.message.delete()
        except errors.RPCError as exc:
            log.info("status message not deleted: %s", exc)
        self.gone = True

    async def close(self) -> None:
        """Drop a pending edit."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
