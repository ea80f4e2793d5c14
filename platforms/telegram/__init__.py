"""Telegram through Telethon: ``/image=<model>=<prompt>`` for bots and userbots.

Telethon is imported only when the platform is created, so commands that never start Telegram
(``sakaibot models``, ``generate``) do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from core import PlatformType, hookimpl
from platforms.telegram.settings import TelegramSettings

if TYPE_CHECKING:
    from platforms.telegram.platform import TelegramPlatform


def create_platform(settings: TelegramSettings) -> TelegramPlatform:
    """The Telegram adapter; imports Telethon on first use."""
    from platforms.telegram.platform import TelegramPlatform

    return TelegramPlatform(settings)


@hookimpl
def register_platforms(register: Callable[[PlatformType], None]) -> None:
    """Offer the ``telegram`` platform."""
    register(PlatformType("telegram", create_platform, TelegramSettings,
                          "Telegram bot or userbot (Telethon); needs TELEGRAM_API_ID and TELEGRAM_API_HASH."))
