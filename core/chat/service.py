"""Answering chat commands, so that platform adapters only translate.

An adapter hands the text and the requester to ``ChatService.handle`` and gets back either
text to send or a ``JobHandle`` to follow; it never decides anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.chat import messages
from core.chat.account import AccountService
from core.chat.commands import (
    BanCommand,
    CancelCommand,
    Command,
    HelpCommand,
    HistoryCommand,
    ImageCommand,
    InfoCommand,
    ModelsCommand,
    QueueCommand,
    SettingsCommand,
    StatsCommand,
    parse_command,
)
from core.engine.handle import JobHandle
from core.errors import JobNotFound, SakaiError
from core.types import ImageRequest, Requester

if TYPE_CHECKING:
    from core.engine import Engine


@dataclass(frozen=True, slots=True)
class TextReply:
    """Send this text back."""

    text: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class JobReply:
    """A job was queued; follow its events."""

    handle: JobHandle


Reply = TextReply | JobReply


class ChatService:
    """Turns a chat message into a reply, the same way on every platform."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.account = AccountService(engine)

    async def handle(self, text: str, requester: Requester, bot_username: str | None = None,
                     delivery: dict[str, str] | None = None) -> Reply | None:
        """The reply to ``text``; ``None`` if it is not a command for us. Never raises a SakaiError."""
        try:
            command = parse_command(text, bot_username)
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)
        return None if command is None else await self.answer(command, requester, delivery)

    async def answer(self, command: Command, requester: Requester, delivery: dict[str, str] | None = None) -> Reply:
        """``execute``, with a refusal turned into its user message instead of raised."""
        try:
            return await self.execute(command, requester, delivery)
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)

    async def execute(self, command: Command, requester: Requester, delivery: dict[str, str] | None = None) -> Reply:
        """Carry out a parsed command; ``delivery`` tells where the platform will answer an image."""
        if isinstance(command, ImageCommand):
            command = await self.account.apply(command, requester)
            request = ImageRequest(prompt=command.prompt, model=command.model, requester=requester,
                                   options=command.options, delivery=delivery or {})
            return JobReply(await self.engine.submit(request))
        return TextReply(await self._text(command, requester))

    async def again(self, job_id: str, variation: bool, requester: Requester,
                    delivery: dict[str, str] | None = None) -> Reply:
        """Reroll (``variation`` False) or Variation of a past job; refusals become their message."""
        try:
            return JobReply(await self.engine.submit(await self.repeat(job_id, variation, requester, delivery)))
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)

    async def repeat(self, job_id: str, variation: bool, requester: Requester,
                     delivery: dict[str, str] | None = None) -> ImageRequest:
        """The past job's whole request with a new seed; Variation starts from its enhanced prompt.

        Read from the engine (memory or job store), never from a caption: options, model, privacy and
        multi-line prompts all survive a restart.
        """
        job = await self.engine.past_job(job_id)
        if job is None:
            raise JobNotFound("That request is no longer kept; send it again.")
        old = job.request
        changes: dict[str, object] = {"seed": None}
        prompt = old.prompt
        if variation and job.enhanced_prompt:
            prompt, changes["enhance"] = job.enhanced_prompt, False
        return ImageRequest(prompt=prompt, model=job.model, requester=requester,
                            options=old.options.model_copy(update=changes),
                            delivery={**old.delivery, **(delivery or {})})

    async def _text(self, command: Command, requester: Requester) -> str:
        account = self.account
        if isinstance(command, HistoryCommand):
            return await account.history(command, requester)
        if isinstance(command, InfoCommand):
            return await account.info(command, requester)
        if isinstance(command, SettingsCommand):
            return await account.settings(command, requester)
        if isinstance(command, StatsCommand):
            return await account.stats(requester)
        if isinstance(command, BanCommand):
            return await account.ban(command, requester)
        return await self._basic(command, requester)

    async def _basic(self, command: Command, requester: Requester) -> str:
        if isinstance(command, CancelCommand):
            job = await self.engine.cancel(command.job_id, requester)
            return f"🚫 Cancelled job {job.id}."
        if isinstance(command, ModelsCommand):
            return messages.models_text(self.engine)
        if isinstance(command, QueueCommand):
            return messages.queue_text(self.engine, requester)
        if isinstance(command, HelpCommand):
            return messages.help_text(self.engine)
        raise AssertionError(f"unhandled command {command!r}")
