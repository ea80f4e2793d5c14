"""The Discord adapter: slash commands and buttons in, deferred responses and follow-ups out."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands

from core import EventKind, GenerationOptions, Job, Platform, Requester, SakaiError
from core.chat import ChatService, JobReply, TextReply
from core.chat.commands import (
    SETTING_KEYS,
    BanCommand,
    CancelCommand,
    HelpCommand,
    HistoryCommand,
    ImageCommand,
    InfoCommand,
    ModelsCommand,
    QueueCommand,
    SettingsCommand,
    StatsCommand,
)
from core.chat.followers import Followers
from core.chat.messages import elapsed, status_text
from core.chat.pacing import PacedStatus
from core.engine import Engine
from core.engine.handle import JobHandle
from platforms.discord.access import Access
from platforms.discord.files import fit
from platforms.discord.settings import DiscordSettings
from platforms.discord.views import JobButton, job_view

log = logging.getLogger(__name__)
ASPECTS = [("1:1 square", "1:1"), ("16:9 wide", "16:9"), ("9:16 tall", "9:16"), ("4:3", "4:3"), ("3:4", "3:4"),
           ("3:2", "3:2"), ("2:3", "2:3"), ("21:9 cinema", "21:9")]
TOKEN_MARGIN = dt.timedelta(seconds=30)


class SakaiClient(discord.Client):
    """A discord.Client that knows its platform, so persistent buttons can reach the engine."""

    def __init__(self, platform: DiscordPlatform, **options: Any) -> None:
        super().__init__(intents=discord.Intents.default(), **options)
        self.platform = platform
        self.tree = app_commands.CommandTree(self)


class DiscordStatus(PacedStatus):
    """The deferred response, edited as the job moves."""

    def __init__(self, interaction: discord.Interaction, interval: float) -> None:
        super().__init__(interval)
        self.interaction = interaction

    async def apply(self, text: str, extra: Any) -> bool:
        """Edit the original response; an expired token ends the editing."""
        if self.interaction.is_expired():
            self.gone = True
            return False
        try:
            await self.interaction.edit_original_response(content=text, view=extra)
            return True
        except discord.NotFound:
            self.gone = True
        except discord.HTTPException as exc:
            log.warning("status edit failed: %s", exc)
        except (aiohttp.ClientError, RuntimeError) as exc:  # the client closed under us (shutdown)
            log.info("status edit dropped: %s", exc)
            self.gone = True
        return False


class DiscordPlatform(Platform):
    """Slash commands on discord.py; ``client_options`` are passed to the client (tests shorten waits)."""

    name = "discord"

    def __init__(self, settings: DiscordSettings, **client_options: Any) -> None:
        self.settings = settings
        self.access = Access(settings)
        self.client = SakaiClient(self, **client_options)
        self.followers = Followers("discord")
        self._runner: asyncio.Task[None] | None = None
        self._register_commands()
        self.client.add_dynamic_items(JobButton)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, engine: Engine) -> None:
        """Log in, sync commands (not on every reconnect), connect, wait until ready."""
        self.engine = engine
        self.chat = ChatService(engine)
        self._point_at_endpoints()
        assert self.settings.token is not None
        await self.client.login(self.settings.token.get_secret_value())
        if self.settings.sync_commands:
            await self._sync()
        self._runner = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        await self.client.wait_until_ready()
        for handle in await engine.resume(self.name):
            self._track(self._resume(handle), handle)
        log.info("discord ready as %s", self.client.user)

    def _point_at_endpoints(self) -> None:
        if self.settings.api_base:
            discord.http.Route.BASE = self.settings.api_base.rstrip("/")
        if self.settings.gateway:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.settings.gateway)

    async def _sync(self) -> None:
        tree = self.client.tree
        if self.settings.test_guild:
            guild = discord.Object(id=self.settings.test_guild)
            tree.copy_global_to(guild=guild)
            await tree.sync(guild=guild)
        else:
            await tree.sync()

    async def stop(self) -> None:
        """Stop following jobs and close the connection."""
        await self.followers.close()
        await self.client.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Serve until the gateway connection ends for good."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    # ------------------------------------------------------------------ commands
    def _register_commands(self) -> None:
        tree = self.client.tree

        @tree.command(name="image", description="Make an image from your words")
        @app_commands.describe(prompt="What to draw", model="Which model (default: the bot's default)",
                               aspect="Aspect ratio", seed="A number for repeatable results",
                               negative="What to leave out", enhance="Let an LLM improve the prompt first",
                               private="Only you see the answer")
        @app_commands.choices(aspect=[app_commands.Choice(name=n, value=v) for n, v in ASPECTS])
        async def image(interaction: discord.Interaction, prompt: str, model: str | None = None,
                        aspect: app_commands.Choice[str] | None = None,
                        seed: app_commands.Range[int, 0, 4294967295] | None = None,
                        negative: str | None = None, enhance: bool | None = None, private: bool = False) -> None:
            options = dict(aspect_ratio=aspect.value if aspect else None, seed=seed, negative_prompt=negative,
                           enhance=enhance)
            await self.run_image(interaction, prompt, model, options, private)

        @image.autocomplete("model")
        async def model_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return self.model_choices(current)

        @tree.command(name="models", description="List the models")
        async def models(interaction: discord.Interaction) -> None:
            await self.run_text(interaction, ModelsCommand())

        @tree.command(name="queue", description="What is waiting, and where your requests stand")
        async def queue(interaction: discord.Interaction) -> None:
            await self.run_text(interaction, QueueCommand())

        @tree.command(name="cancel", description="Cancel your newest request, or the one with this id")
        async def cancel(interaction: discord.Interaction, job: str | None = None) -> None:
            await self.run_text(interaction, CancelCommand(job))

        @tree.command(name="help", description="How to use SakaiBot")
        async def help_(interaction: discord.Interaction) -> None:
            await self.run_text(interaction, HelpCommand())

        self._register_account_commands(tree)

    def _register_account_commands(self, tree: app_commands.CommandTree[Any]) -> None:
        @tree.command(name="history", description="Your last jobs")
        async def history(interaction: discord.Interaction,
                          count: app_commands.Range[int, 1, 50] | None = None) -> None:
            await self.run_text(interaction, HistoryCommand(count))

        @tree.command(name="info", description="Everything about one job")
        async def info(interaction: discord.Interaction, job: str) -> None:
            await self.run_text(interaction, InfoCommand(job.lower()))

        @tree.command(name="settings", description="See or change your defaults (admins: chat defaults, pins)")
        @app_commands.choices(key=[app_commands.Choice(name=k, value=k) for k in SETTING_KEYS],
                              scope=[app_commands.Choice(name=n, value=v) for n, v in
                                     (("mine", "user"), ("this channel", "chat"), ("pinned here", "pin"))])
        async def settings(interaction: discord.Interaction, key: app_commands.Choice[str] | None = None,
                           value: str | None = None, scope: app_commands.Choice[str] | None = None) -> None:
            command = SettingsCommand(scope.value if scope else "user", key.value if key else None,
                                      value if key else None)
            await self.run_text(interaction, command)

        @tree.command(name="stats", description="Jobs, failures and latency per model (admins)")
        async def stats(interaction: discord.Interaction) -> None:
            await self.run_text(interaction, StatsCommand())

        @tree.command(name="ban", description="Refuse every request of a user (admins)")
        async def ban(interaction: discord.Interaction, user: discord.User) -> None:
            await self.run_text(interaction, BanCommand(str(user.id), True))

        @tree.command(name="unban", description="Lift a ban (admins)")
        async def unban(interaction: discord.Interaction, user: discord.User) -> None:
            await self.run_text(interaction, BanCommand(str(user.id), False))

    def model_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Models whose name or description contains ``current``; at most Discord's 25."""
        needle = current.lower()
        found = [(name, model.description) for name, model in sorted(self.engine.models.items())
                 if needle in name.lower() or needle in model.description.lower()]
        return [app_commands.Choice(name=f"{name} - {text}"[:100], value=name) for name, text in found[:25]]

    def _requester(self, interaction: discord.Interaction) -> Requester:
        return Requester(platform="discord", user_id=str(interaction.user.id), chat_id=str(interaction.channel_id),
                         group_id=str(interaction.guild_id) if interaction.guild_id else None,
                         display_name=interaction.user.display_name,
                         is_admin=self.access.is_admin(interaction))

    async def run_text(self, interaction: discord.Interaction, command: Any) -> None:
        """Commands answered with text, privately."""
        refusal = self.access.refusal(interaction)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        reply = await self.chat.answer(command, self._requester(interaction))
        assert isinstance(reply, TextReply)
        await interaction.response.send_message(reply.text[:2000], ephemeral=True)

    async def run_image(self, interaction: discord.Interaction, prompt: str, model: str | None,
                        options: dict[str, Any], private: bool) -> None:
        """Defer first (Discord's 3-second deadline), then queue and follow the job."""
        refusal = self.access.refusal(interaction) or self.access.model_refusal(model, interaction)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        try:
            await interaction.response.defer(thinking=True, ephemeral=private)
        except discord.NotFound:
            log.warning("interaction %s expired before we could answer", interaction.id)
            return
        try:
            command = ImageCommand(prompt, model.lower() if model else None, GenerationOptions(**options))
            delivery = {"channel": str(interaction.channel_id), "user": str(interaction.user.id)}
            reply = await self.chat.execute(command, self._requester(interaction), delivery)
        except (SakaiError, ValueError) as exc:
            await self._say(interaction, self.engine.render_error(None, exc))
            return
        assert isinstance(reply, JobReply)
        self.follow(interaction, reply.handle, private)

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        try:
            await interaction.edit_original_response(content=f"❌ {text}"[:2000])
        except discord.HTTPException as exc:
            log.warning("could not answer interaction %s: %s", interaction.id, exc)

    # ------------------------------------------------------------------ job events
    def follow(self, interaction: discord.Interaction, handle: JobHandle, private: bool) -> None:
        """Follow a job in the background, editing the deferred response."""
        self._track(self._follow(interaction, handle, private), handle)

    def _track(self, coroutine: Any, handle: JobHandle) -> None:
        self.followers.start(coroutine, handle)

    async def _follow(self, interaction: discord.Interaction, handle: JobHandle, private: bool) -> None:
        status = DiscordStatus(interaction, self.settings.edit_interval)
        owner = interaction.user.id
        async for event in handle:
            if event.kind is EventKind.DONE:
                await status.close()
                await self._deliver(interaction, event.job, private, status)
            elif event.kind.final:
                await status.show(status_text(event), None, now=True)
            else:
                await status.show(status_text(event), job_view(event.job.id, owner, "cx"))
        await status.close()

    async def _deliver(self, interaction: discord.Interaction, job: Job, private: bool,
                       status: DiscordStatus) -> None:
        result = await Result.of(job, interaction.user.id, interaction.filesize_limit)
        if _token_usable(interaction):
            try:
                await interaction.followup.send(file=result.file(), embed=result.embed, view=result.view,
                                                ephemeral=private)
                await self.engine.delivered(job.id)
                await status.show(f"✅ Done in {elapsed(job):.1f} s", None, now=True)
                return
            except discord.NotFound:
                pass  # the token died meanwhile: post in the channel instead
        await self._post_in_channel(interaction.channel, interaction.user.id, job, result)

    async def _post_in_channel(self, channel: Any, user_id: int, job: Job, result: Result | None,
                               text: str = "") -> None:
        """When the interaction token is dead (15 min, or a restart): a channel message that mentions the user."""
        if channel is None or not hasattr(channel, "send"):
            log.warning("job %s finished but there is no channel to post it in", job.id)
            return
        content = f"<@{user_id}> {text or 'your image is ready.'}"
        try:
            if result is None:
                await channel.send(content=content)
            else:
                await channel.send(content=content, file=result.file(), embed=result.embed, view=result.view)
                await self.engine.delivered(job.id)
        except discord.HTTPException as exc:
            log.warning("could not post job %s in its channel: %s", job.id, exc)

    async def _resume(self, handle: JobHandle) -> None:
        """After a restart the token is gone: post the outcome in the channel, mentioning the user."""
        target = handle.job.request.delivery
        if not {"channel", "user"} <= target.keys():
            return
        channel = self.client.get_partial_messageable(int(target["channel"]))
        user_id = int(target["user"])
        final = await handle.wait()
        job = final.job
        if final.kind is EventKind.DONE and job.result is not None:
            result = await Result.of(job, user_id, discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
            await self._post_in_channel(channel, user_id, job, result)
        elif final.kind is not EventKind.SUSPENDED:
            await self._post_in_channel(channel, user_id, job, None, status_text(final))

    # ------------------------------------------------------------------ buttons
    async def on_button(self, interaction: discord.Interaction, button: JobButton) -> None:
        """Reroll, Variation or Cancel; only the requester or an admin may press."""
        if interaction.user.id != button.owner_id and not self.access.is_admin(interaction):
            await interaction.response.send_message("Only the person who asked can use these buttons.",
                                                    ephemeral=True)
            return
        if button.action == "cx":
            await self.run_text(interaction, CancelCommand(button.job_id))
            return
        await self._again(interaction, button)

    async def _again(self, interaction: discord.Interaction, button: JobButton) -> None:
        old = self.engine.recent_job(button.job_id)
        original = _from_embed(interaction.message)
        if old is None and original is None:
            await interaction.response.send_message("That request is too old to repeat; run /image again.",
                                                    ephemeral=True)
            return
        model, prompt, enhanced = (old.model, old.request.prompt, old.enhanced_prompt) if old else original
        variation = button.action == "var" and enhanced
        options = {"enhance": not variation}
        await self.run_image(interaction, enhanced if variation else prompt, model, options, private=False)


@dataclass(frozen=True, slots=True)
class Result:
    """A finished image ready to post: bytes fitted to the upload limit, embed and buttons."""

    data: bytes
    filename: str
    embed: discord.Embed
    view: discord.ui.View

    @classmethod
    async def of(cls, job: Job, owner_id: int, limit: int) -> Result:
        """Fit ``job``'s image under ``limit`` bytes (off the loop) and dress it."""
        assert job.result is not None
        data, extension = await asyncio.to_thread(fit, job.result, limit)
        filename = f"sakaibot-{job.id}.{extension}"
        return cls(data, filename, result_embed(job, filename), job_view(job.id, owner_id, "rr", "var"))

    def file(self) -> discord.File:
        """A fresh file each time: a sent ``discord.File`` is spent."""
        return discord.File(io.BytesIO(self.data), filename=self.filename)


def result_embed(job: Job, filename: str) -> discord.Embed:
    """The prompt actually used (and the original when enhanced), model, seed and time."""
    embed = discord.Embed(description=job.generation.prompt[:4096], colour=discord.Colour.blurple())
    embed.add_field(name="Model", value=job.model)
    seed = job.result.seed if job.result and job.result.seed is not None else job.generation.seed
    embed.add_field(name="Seed", value=str(seed) if seed is not None else "-")
    embed.add_field(name="Time", value=f"{elapsed(job):.1f} s")
    if job.enhanced_prompt:
        embed.add_field(name="Your prompt", value=job.request.prompt[:1024], inline=False)
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=f"job {job.id}")
    return embed


def _from_embed(message: discord.Message | None) -> tuple[str, str, str | None] | None:
    """Model, original prompt and enhanced prompt from a result message, after a restart."""
    if message is None or not message.embeds:
        return None
    embed = message.embeds[0]
    fields = {f.name: f.value for f in embed.fields}
    if "Model" not in fields or not embed.description:
        return None
    original = fields.get("Your prompt")
    return str(fields["Model"]), str(original or embed.description), embed.description if original else None


def _token_usable(interaction: discord.Interaction) -> bool:
    return discord.utils.utcnow() < interaction.expires_at - TOKEN_MARGIN



