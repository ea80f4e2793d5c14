"""Discord through discord.py: ``/image`` with progress, persistent buttons and limits handled."""

from __future__ import annotations

from collections.abc import Callable

from core import PlatformType, hookimpl
from platforms.discord.platform import DiscordPlatform
from platforms.discord.settings import DiscordSettings


@hookimpl
def register_platforms(register: Callable[[PlatformType], None]) -> None:
    """Offer the ``discord`` platform."""
    register(PlatformType("discord", DiscordPlatform, DiscordSettings,
                          "Discord bot with slash commands (discord.py); needs DISCORD_TOKEN."))
