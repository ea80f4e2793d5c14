"""Answering chat commands, so that platform adapters only translate.

An adapter hands the text and the requester to ``ChatService.handle`` and gets back either
text to send or a ``JobHandle`` to follow; it never decides anything itself. Pictures come as a
way to fetch them (``core.chat.inputs``): fetched only when the request will use them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.chat import messages
from core.chat.account import AccountService
from core.chat.commands import (
    UPSCALE_USAGE,
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
    UpscaleCommand,
    parse_command,
)
from core.chat.inputs import UPSCALE_PROMPT, VARIATION_STRENGTH, Fetch, Inputs, takes_images, takes_strength, upscaler
from core.engine.handle import JobHandle
from core.errors import InvalidCommand, JobNotFound, SakaiError
from core.types import GenerationOptions, ImageRequest, Job, Requester

if TYPE_CHECKING:
    from core.engine import Engine
    from core.engine.cluster_registry import ClusterView


log = logging.getLogger(__name__)


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

    async def answer(self, command: Command, requester: Requester, delivery: dict[str, str] | None = None,
                     inputs: Inputs | None = None) -> Reply:
        """``execute``, with a refusal turned into its user message instead of raised.

        ``inputs`` fetches the command's pictures; it is called here, after the platform's first answer,
        and a picture that cannot be fetched is refused like any other request.
        """
        try:
            images = await inputs() if inputs is not None else ()
            return await self.execute(command, requester, delivery, images)
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)

    async def execute(self, command: Command, requester: Requester, delivery: dict[str, str] | None = None,
                      images: tuple[bytes, ...] = ()) -> Reply:
        """Carry out a parsed command; ``delivery`` tells where the platform will answer an image."""
        if isinstance(command, ImageCommand):
            command = await self.account.apply(command, requester)
            request = ImageRequest(prompt=command.prompt, model=command.model, requester=requester,
                                   options=command.options, images=images, delivery=delivery or {})
            return JobReply(await self.engine.submit(request))
        if isinstance(command, UpscaleCommand):
            return JobReply(await self.engine.submit(self._upscale(command, requester, images, delivery)))
        return TextReply(await self._text(command, requester))

    def _upscale(self, command: UpscaleCommand, requester: Requester, images: tuple[bytes, ...],
                 delivery: dict[str, str] | None) -> ImageRequest:
        if not images:
            raise InvalidCommand(UPSCALE_USAGE)
        name, factor = upscaler(self.engine.models, command.factor, command.model, only=command.model is not None)
        return ImageRequest(prompt=UPSCALE_PROMPT.format(factor=factor), model=name, requester=requester,
                            options=GenerationOptions(upscale=factor), images=images[:1], delivery=delivery or {})

    async def again(self, job_id: str, variation: bool, requester: Requester,
                    delivery: dict[str, str] | None = None, image: Fetch | None = None) -> Reply:
        """Reroll (``variation`` False) or Variation of a past job; refusals become their message.

        ``image`` fetches the result picture the button is under: a Variation starts from it where the
        job's model takes pictures.
        """
        try:
            return JobReply(await self.engine.submit(await self.repeat(job_id, variation, requester, delivery,
                                                                       image)))
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)

    async def upscale(self, job_id: str, requester: Requester, image: Fetch,
                      delivery: dict[str, str] | None = None) -> Reply:
        """Upscale one result picture of a past job (fetched by ``image``), by the upscaler that fits best."""
        try:
            job = await self._past(job_id)
            name, factor = upscaler(self.engine.models, None, job.model)
            request = ImageRequest(prompt=job.request.prompt, model=name, requester=requester,
                                   options=GenerationOptions(upscale=factor), images=(await image(),),
                                   delivery={**job.request.delivery, **(delivery or {})})
            return JobReply(await self.engine.submit(request))
        except SakaiError as exc:
            return TextReply(self.engine.render_error(None, exc), is_error=True)

    async def repeat(self, job_id: str, variation: bool, requester: Requester,
                     delivery: dict[str, str] | None = None, image: Fetch | None = None) -> ImageRequest:
        """The past job's whole request (its input pictures too) with a new seed.

        A Variation starts from the enhanced prompt, and from the result picture (``image``) where the
        model takes pictures: one image, moved ``VARIATION_STRENGTH`` away where the model takes a
        strength. Read from the engine (memory or job store), never from a caption: options, model,
        privacy and multi-line prompts all survive a restart.
        """
        job = await self._past(job_id)
        old = job.request
        changes: dict[str, object] = {"seed": None}
        prompt, images = old.prompt, old.images
        if variation and job.enhanced_prompt:
            prompt, changes["enhance"] = job.enhanced_prompt, False
        if variation and image is not None and takes_images(self.engine.models, job.model):
            images, changes["count"] = (await image(),), 1
            if takes_strength(self.engine.models, job.model):
                changes["strength"] = old.options.strength or VARIATION_STRENGTH
        return ImageRequest(prompt=prompt, model=job.model, requester=requester,
                            options=old.options.model_copy(update=changes), images=images, mask=old.mask,
                            delivery={**old.delivery, **(delivery or {})})

    async def _past(self, job_id: str) -> Job:
        job = await self.engine.past_job(job_id)
        if job is None:
            raise JobNotFound("That request is no longer kept; send it again.")
        return job

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

    async def _cluster(self) -> ClusterView | None:
        """The cluster's lanes and workers for ``/queue``; ``None`` (this process's view) if Redis is away."""
        try:
            return await self.engine.cluster_view()
        except SakaiError as exc:
            log.warning("/queue without the cluster view: %s", exc)
            return None

    async def _basic(self, command: Command, requester: Requester) -> str:
        if isinstance(command, CancelCommand):
            job = await self.engine.cancel(command.job_id, requester)
            return f"🚫 Cancelled job {job.id}."
        if isinstance(command, ModelsCommand):
            return messages.models_text(self.engine)
        if isinstance(command, QueueCommand):
            return messages.queue_text(self.engine, requester, await self._cluster())
        if isinstance(command, HelpCommand):
            return messages.help_text(self.engine)
        raise AssertionError(f"unhandled command {command!r}")
