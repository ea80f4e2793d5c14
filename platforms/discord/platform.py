"""The Discord adapter: slash commands and buttons in, a conversation per job out. No business rules.

An interaction becomes (command, requester, reply target); ``core.chat.conversation`` does the
rest. Everything but an image and its status is answered privately, and the command tree's error
handler answers whatever fails, so no interaction is left unanswered. Pictures (an ``image``
option, the message "Edit with SakaiBot" was used on, the result a button is under) are checked
before the deferral and read after it (``platforms.discord.pictures``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import yarl
from discord import app_commands

from core import Engine, Job, Platform, Requester, SakaiError
from core.chat import ChatService, TextReply
from core.chat.commands import CancelCommand, Command, ImageCommand, UpscaleCommand, image_command
from core.chat.conversation import Conversation
from core.chat.inputs import Inputs
from core.chat.pacing import REAL_CLOCK, Clock
from core.errors import InvalidCommand, InvalidRequest, PermissionDenied
from core.types import MAX_SEED, GenerationOptions, ImageRequest
from platforms.discord.access import Access
from platforms.discord.modals import EditModal
from platforms.discord.pictures import check, fetcher, first_picture, result_picture
from platforms.discord.settings import DiscordSettings
from platforms.discord.slash import register
from platforms.discord.target import DiscordTarget
from platforms.discord.views import JobButton

log = logging.getLogger(__name__)
TRY_AGAIN = "Something went wrong on our side; it was logged. Try again in a moment."


class SakaiClient(discord.Client):
    """A discord.Client that knows its platform, so persistent buttons can reach the engine."""

    def __init__(self, platform: DiscordPlatform, **options: Any) -> None:
        super().__init__(intents=discord.Intents.default(), **options)
        self.platform = platform
        self.tree = app_commands.CommandTree(self)


class DiscordPlatform(Platform):
    """Slash commands on discord.py; ``client_options`` are passed to the client (tests shorten waits)."""

    name = "discord"

    def __init__(self, settings: DiscordSettings, *, clock: Clock = REAL_CLOCK, **client_options: Any) -> None:
        self.settings = settings
        self.clock = clock
        self.access = Access(settings)
        self.client = SakaiClient(self, **client_options)
        self._runner: asyncio.Task[None] | None = None
        register(self.client.tree, self)
        self.client.tree.on_error = self.on_command_error  # type: ignore[method-assign]
        self.client.add_dynamic_items(JobButton)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, engine: Engine) -> None:
        """Log in, sync commands (not on every reconnect), connect, wait until ready, resume."""
        self.engine = engine
        self.chat = ChatService(engine)
        self.conversation = Conversation(engine, self.name, interval=self.settings.edit_interval, clock=self.clock,
                                         preview_interval=self.settings.preview_interval)
        self._point_at_endpoints()
        assert self.settings.token is not None
        await self.client.login(self.settings.token.get_secret_value())
        if self.settings.sync_commands:
            await self._sync()
        self._runner = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        await self.client.wait_until_ready()
        await self.conversation.resume(self._target_for)
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
        if hasattr(self, "conversation"):
            await self.conversation.close()
        await self.client.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Serve until the gateway connection ends for good."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def _target_for(self, job: Job) -> DiscordTarget | None:
        where = job.request.delivery
        return DiscordTarget.resumed(self.client, where) if {"channel", "user"} <= where.keys() else None

    # ------------------------------------------------------------------ commands
    def model_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Models whose name or description contains ``current``; at most Discord's 25."""
        needle = current.lower()
        found = [(name, model.description) for name, model in sorted(self.engine.models.items())
                 if needle in name.lower() or needle in model.description.lower()]
        return [app_commands.Choice(name=f"{name} - {text}"[:100], value=name) for name, text in found[:25]]

    def _requester(self, interaction: discord.Interaction) -> Requester:
        return Requester(platform="discord", user_id=str(interaction.user.id), chat_id=str(interaction.channel_id),
                         group_id=str(interaction.guild_id) if interaction.guild_id else None,
                         display_name=interaction.user.display_name, is_admin=self.access.is_admin(interaction))

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
                        options: dict[str, Any], private: bool, picture: discord.Attachment | None = None) -> None:
        """Check what needs no I/O (refused privately at once), then defer, read the picture, queue, follow."""
        try:
            command = self.image_command(prompt, model, options)
            self.engine.choose_model(ImageRequest(prompt=command.prompt, model=command.model,
                                                  requester=self._requester(interaction)))
            inputs = self._inputs(interaction, picture)
        except SakaiError as exc:
            await interaction.response.send_message(self.engine.render_error(None, exc)[:2000], ephemeral=True)
            return
        await self._run(interaction, command, command.model, private, inputs)

    async def run_upscale(self, interaction: discord.Interaction, picture: discord.Attachment,
                          factor: int | None, private: bool) -> None:
        """``/upscale``: the attached picture, by the upscaler that offers ``factor``."""
        try:
            inputs = self._inputs(interaction, picture)
        except SakaiError as exc:
            await interaction.response.send_message(self.engine.render_error(None, exc)[:2000], ephemeral=True)
            return
        await self._run(interaction, UpscaleCommand(factor), None, private, inputs)

    async def _run(self, interaction: discord.Interaction, command: Command, model: str | None, private: bool,
                   inputs: Inputs | None) -> None:
        refusal = self.access.refusal(interaction) or self.access.model_refusal(model, interaction)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        target = DiscordTarget.live(interaction, private)
        try:
            await self.conversation.start(command, self._requester(interaction), target, inputs=inputs)
        except discord.NotFound:
            log.warning("interaction %s expired before we could answer", interaction.id)

    @staticmethod
    def _inputs(interaction: discord.Interaction, picture: discord.Attachment | None) -> Inputs | None:
        """The picture checked now (type, size against this interaction's limit), read after the deferral."""
        if picture is None:
            return None
        check(picture, interaction.filesize_limit)
        fetch = fetcher(picture)

        async def inputs() -> tuple[bytes, ...]:
            return (await fetch(),)
        return inputs

    async def ask_edit(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """"Edit with SakaiBot" on a message: its first picture, checked, then the instruction in a modal."""
        try:
            picture = self._editable(interaction, message)
        except SakaiError as exc:
            await interaction.response.send_message(exc.user_message[:2000], ephemeral=True)
            return
        await interaction.response.send_modal(EditModal(self, picture))

    def _editable(self, interaction: discord.Interaction, message: discord.Message) -> discord.Attachment:
        """The picture to edit, or the refusal: a place not served, no picture, or one too large."""
        refusal = self.access.refusal(interaction)
        if refusal:
            raise PermissionDenied(refusal)
        picture = first_picture(message)
        if picture is None:
            raise InvalidRequest("That message has no picture to edit (PNG, JPEG, WebP or GIF).")
        check(picture, interaction.filesize_limit)
        return picture

    @staticmethod
    def image_command(prompt: str, model: str | None, options: dict[str, Any]) -> ImageCommand:
        """Flags typed in the prompt field parsed as on Telegram; the slash command's own options win."""
        seed = options.get("seed")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise InvalidCommand(f"The seed must be a whole number from 0 to {MAX_SEED}, not {seed}.")
        typed = image_command(prompt)
        chosen = {k: v for k, v in options.items() if v is not None}
        merged = GenerationOptions.model_validate(typed.options.model_dump() | chosen)
        return ImageCommand(typed.prompt, model.lower() if model else typed.model, merged)

    async def on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """Whatever failed, before or after the defer: a private answer with a user message."""
        await self.answer_failure(interaction, error)

    async def answer_failure(self, interaction: discord.Interaction, error: Exception) -> None:
        """A private answer to a failed command or modal: the user message, or "try again" (logged)."""
        cause = error.__cause__ if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(cause, SakaiError):
            text = self.engine.render_error(None, cause)
        elif isinstance(error, app_commands.TransformerError):
            text = f"'{error.value}' is not one of the choices for that option; pick one from the list."
        else:
            log.error("command %s failed", getattr(interaction.command, "name", "?"), exc_info=error)
            text = TRY_AGAIN
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text[:2000], ephemeral=True)
            else:
                await interaction.response.send_message(text[:2000], ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer interaction %s: %s", interaction.id, exc)

    # ------------------------------------------------------------------ buttons
    async def on_button(self, interaction: discord.Interaction, button: JobButton) -> None:
        """Reroll, Variation or Cancel: the same access rules as a typed command, then the owner (or an admin)."""
        refusal = self.access.refusal(interaction)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        if interaction.user.id != button.owner_id and not self.access.is_admin(interaction):
            await interaction.response.send_message("Only the person who asked can use these buttons.",
                                                    ephemeral=True)
            return
        if button.action == "cx":
            await self.run_text(interaction, CancelCommand(button.job_id))
            return
        await self._again(interaction, button)

    async def _again(self, interaction: discord.Interaction, button: JobButton) -> None:
        message = interaction.message  # the result the button is under: its model, privacy and pictures
        refusal = self.access.model_refusal(_embed_model(message), interaction)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        private = bool(message is not None and message.flags.ephemeral)
        target = DiscordTarget.live(interaction, private)
        requester = self._requester(interaction)
        picture = result_picture(message, button.job_id, button.picture)
        fetch = fetcher(picture) if picture is not None else None
        try:
            if button.action == "up":
                await self.conversation.upscale(button.job_id, requester, target, fetch or _gone)
            else:
                await self.conversation.again(button.job_id, button.action == "var", requester, target,
                                              image=fetch if button.action == "var" else None)
        except discord.NotFound:
            log.warning("interaction %s expired before we could answer", interaction.id)


async def _gone() -> bytes:
    raise InvalidCommand("That picture is no longer on the message; send it with /upscale instead.")


def _embed_model(message: discord.Message | None) -> str | None:
    """The model named under a result (no I/O before Discord's 3-second deadline)."""
    if message is None or not message.embeds:
        return None
    return next((str(f.value) for f in message.embeds[0].fields if f.name == "Model"), None)
