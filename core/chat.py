"""Answering chat commands, so that platform adapters only translate.

An adapter hands the text and the requester to ``ChatService.handle`` and gets back either
text to send or a ``JobHandle`` to follow; it never decides anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import messages
from core.commands import (
    CancelCommand,
    Command,
    HelpCommand,
    ImageCommand,
    ModelsCommand,
    QueueCommand,
    parse_command,
)
from core.errors import SakaiError
from core.handle import JobHandle
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

    async def handle(self, text: str, requester: Requester, bot_username: str | None = None) -> Reply | None:
        """The reply to ``text``; ``None`` if it is not a command for us. Never raises a SakaiError."""
        try:
            command = parse_command(text, bot_username)
            if command is None:
                return None
            return await self.execute(command, requester)
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)

    async def execute(self, command: Command, requester: Requester) -> Reply:
        """Carry out a parsed command."""
        if isinstance(command, ImageCommand):
            request = ImageRequest(prompt=command.prompt, model=command.model, requester=requester,
                                   options=command.options)
            return JobReply(await self.engine.submit(request))
        if isinstance(command, CancelCommand):
            job = await self.engine.cancel(command.job_id, requester)
            return TextReply(f"🚫 Cancelled job {job.id}.")
        if isinstance(command, ModelsCommand):
            return TextReply(messages.models_text(self.engine))
        if isinstance(command, QueueCommand):
            return TextReply(messages.queue_text(self.engine, requester))
        if isinstance(command, HelpCommand):
            return TextReply(messages.help_text(self.engine))
        raise AssertionError(f"unhandled command {command!r}")
