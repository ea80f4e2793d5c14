"""``[platforms.discord]``: token from the environment, sync target, access lists, pacing."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, model_validator

from core import PlatformSettings
from core.config import from_environment


class DiscordSettings(PlatformSettings):
    """A bot account on discord.py; slash commands need no privileged intents."""

    token_env: str = "DISCORD_TOKEN"
    token: SecretStr | None = None
    test_guild: int | None = Field(default=None, description="sync commands to this guild only (instant)")
    sync_commands: bool = Field(default=True, description="sync slash commands at start-up")
    allowed_guilds: list[int] = Field(default_factory=list, description="empty: every guild and DMs")
    allowed_channels: list[int] = Field(default_factory=list, description="empty: every channel")
    admins: list[int] = Field(default_factory=list, description="user ids")
    admin_roles: list[int] = Field(default_factory=list, description="role ids")
    nsfw_models: list[str] = Field(default_factory=list, description="models allowed only in age-restricted channels")
    edit_interval: float = Field(default=1.5, ge=0, le=60)
    preview_interval: float = Field(default=2.0, ge=0.5, le=600, description="seconds between previews of one job")
    api_base: str | None = Field(default=None, description="REST base, e.g. a rate-limit proxy")
    gateway: str | None = Field(default=None, description="gateway URL override")

    @model_validator(mode="before")
    @classmethod
    def _token_from_environment(cls, data: Any) -> Any:
        return from_environment(data, "token", "token_env", "DISCORD_TOKEN")

    @model_validator(mode="after")
    def _token_present(self) -> DiscordSettings:
        if self.enabled and not self.token:
            raise ValueError(f"set {self.token_env} in the environment")
        return self
