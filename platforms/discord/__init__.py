"""Discord through discord.py: ``/image`` with progress, persistent buttons and limits handled.

discord.py is imported only when the platform is created, so commands that never start Discord
(``sakaibot models``, ``generate``) do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from core import PlatformType, hookimpl
from platforms.discord.settings import DiscordSettings

if TYPE_CHECKING:
    from platforms.discord.platform import DiscordPlatform


def create_platform(settings: DiscordSettings) -> DiscordPlatform:
    """The Discord adapter; imports discord.py on first use."""
    from platforms.discord.platform import DiscordPlatform

    return DiscordPlatform(settings)


@hookimpl
def register_platforms(register: Callable[[PlatformType], None]) -> None:
    """Offer the ``discord`` platform."""
    register(PlatformType("discord", create_platform, DiscordSettings,
                          "Discord bot with slash commands (discord.py); needs DISCORD_TOKEN."))
