"""Where the Discord bot answers, who is an admin, and where NSFW-only models may run."""

from __future__ import annotations

from typing import Any

from platforms.discord.settings import DiscordSettings

NOT_HERE = "SakaiBot is not enabled here."


class Access:
    """Checks on an interaction, from config."""

    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings

    def refusal(self, interaction: Any) -> str | None:
        """Why this place is not served, or ``None``."""
        guilds, channels = self.settings.allowed_guilds, self.settings.allowed_channels
        if guilds and interaction.guild_id not in guilds:
            return NOT_HERE
        if channels and interaction.channel_id not in channels:
            return NOT_HERE
        return None

    def is_admin(self, interaction: Any) -> bool:
        """Admin by user id or by role."""
        user = interaction.user
        # Role ids come with the member in every guild interaction; ``Member.roles`` needs the guild
        # cached (a GUILD_CREATE seen), so read the ids the member payload carried.
        roles = {int(role) for role in getattr(user, "_roles", ())}
        return user.id in self.settings.admins or bool(roles & set(self.settings.admin_roles))

    def model_refusal(self, model: str | None, interaction: Any) -> str | None:
        """NSFW-only models run only in age-restricted channels."""
        if model not in self.settings.nsfw_models:
            return None
        channel = interaction.channel
        if channel is not None and getattr(channel, "is_nsfw", lambda: False)():
            return None
        return f"The {model} model is only available in age-restricted channels."
