"""The Telegram status message: paced edits, FloodWait slept when short and skipped when long."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telethon import errors

from core.chat.pacing import PacedStatus

log = logging.getLogger(__name__)


class StatusMessage(PacedStatus):
    """One message edited as its job moves; nothing here raises."""

    def __init__(self, message: Any, *, interval: float, max_flood_wait: float) -> None:
        super().__init__(interval)
        self.message = message
        self.max_flood_wait = max_flood_wait
        self._shown = (getattr(message, "message", ""), None)

    async def apply(self, text: str, extra: Any, retried: bool = False) -> bool:
        """Edit with buttons ``extra``; a deleted message ends the editing."""
        try:
            await self.message.edit(text, buttons=extra)
            return True
        except errors.MessageNotModifiedError:
            return True
        except (errors.MessageIdInvalidError, errors.MessageEditTimeExpiredError, errors.ChatWriteForbiddenError):
            self.gone = True
        except errors.FloodWaitError as exc:
            if exc.seconds <= self.max_flood_wait and not retried:
                await asyncio.sleep(exc.seconds)
                return await self.apply(text, extra, retried=True)
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
