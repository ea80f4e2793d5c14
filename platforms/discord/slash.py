"""The slash commands, every option described; each only translates into a call on the platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from core.chat.commands import (
    SETTING_KEYS,
    BanCommand,
    CancelCommand,
    HelpCommand,
    HistoryCommand,
    InfoCommand,
    ModelsCommand,
    QueueCommand,
    SettingsCommand,
    StatsCommand,
)
from core.types import MAX_SEED

if TYPE_CHECKING:
    from platforms.discord.platform import DiscordPlatform

ASPECTS = [("1:1 square", "1:1"), ("16:9 wide", "16:9"), ("9:16 tall", "9:16"), ("4:3", "4:3"), ("3:4", "3:4"),
           ("3:2", "3:2"), ("2:3", "2:3"), ("21:9 cinema", "21:9")]
JOB = "The job id (under each image, and in /history)"


def register(tree: app_commands.CommandTree[Any], platform: DiscordPlatform) -> None:
    """Add every command to ``tree``."""
    _image(tree, platform)
    _basics(tree, platform)
    _account(tree, platform)


def _image(tree: app_commands.CommandTree[Any], platform: DiscordPlatform) -> None:
    @tree.command(name="image", description="Make an image from your words (and a picture, if you attach one)")
    @app_commands.describe(prompt="What to draw; options like --ar 16:9 --no text work here too",
                           model="Which model (default: the bot's default)", aspect="Aspect ratio",
                           seed="A number for repeatable results", negative="What to leave out",
                           enhance="Let an LLM improve the prompt first", private="Only you see the answer",
                           image="A picture to start from (PNG, JPEG, WebP or GIF)",
                           count="How many images at once (1 to 4)",
                           strength="With a picture: how far to move from it, 0 (keep) to 1 (ignore)")
    @app_commands.choices(aspect=[app_commands.Choice(name=n, value=v) for n, v in ASPECTS])
    async def image(interaction: discord.Interaction, prompt: str, model: str | None = None,
                    aspect: app_commands.Choice[str] | None = None,
                    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
                    negative: str | None = None, enhance: bool | None = None, private: bool = False,
                    image: discord.Attachment | None = None, count: app_commands.Range[int, 1, 4] | None = None,
                    strength: app_commands.Range[float, 0.0, 1.0] | None = None) -> None:
        options = {"aspect_ratio": aspect.value if aspect else None, "seed": seed, "negative_prompt": negative,
                   "enhance": enhance, "count": count, "strength": strength}
        await platform.run_image(interaction, prompt, model, options, private, image)

    @image.autocomplete("model")
    async def model_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return platform.model_choices(current)

    @tree.command(name="upscale", description="Make a picture bigger")
    @app_commands.describe(image="The picture (PNG, JPEG, WebP or GIF)", factor="How many times bigger",
                           private="Only you see the answer")
    @app_commands.choices(factor=[app_commands.Choice(name=f"{n}x", value=n) for n in (2, 3, 4)])
    async def upscale(interaction: discord.Interaction, image: discord.Attachment,
                      factor: app_commands.Choice[int] | None = None, private: bool = False) -> None:
        await platform.run_upscale(interaction, image, factor.value if factor else None, private)

    @tree.context_menu(name="Edit with SakaiBot")
    async def edit(interaction: discord.Interaction, message: discord.Message) -> None:
        await platform.ask_edit(interaction, message)


def _basics(tree: app_commands.CommandTree[Any], platform: DiscordPlatform) -> None:
    @tree.command(name="models", description="List the models")
    async def models(interaction: discord.Interaction) -> None:
        await platform.run_text(interaction, ModelsCommand())

    @tree.command(name="queue", description="What is waiting, and where your requests stand")
    async def queue(interaction: discord.Interaction) -> None:
        await platform.run_text(interaction, QueueCommand())

    @tree.command(name="cancel", description="Cancel your newest request, or the one with this id")
    @app_commands.describe(job=JOB)
    async def cancel(interaction: discord.Interaction, job: str | None = None) -> None:
        await platform.run_text(interaction, CancelCommand(job))

    @tree.command(name="help", description="How to use SakaiBot")
    async def help_(interaction: discord.Interaction) -> None:
        await platform.run_text(interaction, HelpCommand())


def _account(tree: app_commands.CommandTree[Any], platform: DiscordPlatform) -> None:
    @tree.command(name="history", description="Your last jobs")
    @app_commands.describe(count="How many jobs to list (1 to 50)")
    async def history(interaction: discord.Interaction, count: app_commands.Range[int, 1, 50] | None = None) -> None:
        await platform.run_text(interaction, HistoryCommand(count))

    @tree.command(name="info", description="Everything about one job")
    @app_commands.describe(job=JOB)
    async def info(interaction: discord.Interaction, job: str) -> None:
        await platform.run_text(interaction, InfoCommand(job.lstrip("#").lower()))

    @tree.command(name="settings", description="See or change your defaults (admins: chat defaults, pins)")
    @app_commands.describe(key="The setting to change (leave empty to see yours)",
                           value="The new value; \"default\" clears it", scope="Whose setting (admins: channel, pin)")
    @app_commands.choices(key=[app_commands.Choice(name=k, value=k) for k in SETTING_KEYS],
                          scope=[app_commands.Choice(name=n, value=v) for n, v in
                                 (("mine", "user"), ("this channel", "chat"), ("pinned here", "pin"))])
    async def settings(interaction: discord.Interaction, key: app_commands.Choice[str] | None = None,
                       value: str | None = None, scope: app_commands.Choice[str] | None = None) -> None:
        command = SettingsCommand(scope.value if scope else "user", key.value if key else None, value if key else None)
        await platform.run_text(interaction, command)

    @tree.command(name="stats", description="Jobs, failures and latency per model (admins)")
    async def stats(interaction: discord.Interaction) -> None:
        await platform.run_text(interaction, StatsCommand())

    @tree.command(name="ban", description="Refuse every request of a user (admins)")
    @app_commands.describe(user="The user to ban")
    async def ban(interaction: discord.Interaction, user: discord.User) -> None:
        await platform.run_text(interaction, BanCommand(str(user.id), True))

    @tree.command(name="unban", description="Lift a ban (admins)")
    @app_commands.describe(user="The user to unban")
    async def unban(interaction: discord.Interaction, user: discord.User) -> None:
        await platform.run_text(interaction, BanCommand(str(user.id), False))
