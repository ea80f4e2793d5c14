"""Telegram through Telethon: ``/image=<model>=<prompt>`` for bots and userbots."""

from __future__ import annotations

from collections.abc import Callable

from core import PlatformType, hookimpl
from platforms.telegram.platform import TelegramPlatform
from platforms.telegram.settings import TelegramSettings


@hookimpl
def register_platforms(register: Callable[[PlatformType], None]) -> None:
    """Offer the ``telegram`` platform."""
    register(PlatformType("telegram", TelegramPlatform, TelegramSettings,
                          "Telegram bot or userbot (Telethon); needs TELEGRAM_API_ID and TELEGRAM_API_HASH."))
