"""The Telegram adapter: Telegram updates in, a conversation per job out. No business rules.

A message or a button press becomes (command, requester, reply target); ``core.chat.conversation``
does the rest: status, following, delivering once, resuming after a restart. A picture (the
command's own photo or image file, or the one it replies to; the result a Variation or Upscale
button belongs to) is handed over as a way to download it (``platforms.telegram.pictures``).
"""

from __future__ import annotations

import logging
from typing import Any

from telethon import TelegramClient, errors, events
from telethon.sessions import StringSession

from core import Engine, Platform, Requester, SakaiError
from core.chat.commands import Command, ImageCommand, UpscaleCommand, parse_command
from core.chat.conversation import Conversation
from core.chat.inputs import Fetch, Inputs
from core.chat.pacing import REAL_CLOCK, ChatBudget, Clock
from core.errors import InvalidRequest
from core.types import Job
from platforms.telegram import buttons
from platforms.telegram.access import Access
from platforms.telegram.pictures import check_size, fetcher, not_a_picture, picture_for, picture_in
from platforms.telegram.settings import TelegramSettings
from platforms.telegram.target import Outbox, TelegramTarget

log = logging.getLogger(__name__)
REFUSAL = "Sorry, this bot is private."
GROUP_WINDOW = 60.0  # Telegram's group limit is counted per minute


class TelegramPlatform(Platform):
    """A bot or userbot on Telethon; ``client`` may be injected (tests drive a real, offline client)."""

    name = "telegram"

    def __init__(self, settings: TelegramSettings, client: TelegramClient | None = None, *,
                 clock: Clock = REAL_CLOCK) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self._owns_client = client is None
        self.userbot = settings.mode == "userbot"
        self.access = Access(self.userbot, frozenset(settings.allowed_users), frozenset(settings.allowed_chats),
                             frozenset(settings.admins))
        self.username: str | None = None
        self.budget = ChatBudget(settings.group_messages_per_minute, GROUP_WINDOW, clock=clock)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, engine: Engine) -> None:
        """Log in (unless a client was injected), learn our username, register handlers, resume."""
        self.engine = engine
        self.conversation = Conversation(engine, self.name, interval=self.settings.edit_interval, clock=self.clock,
                                         preview_interval=self.settings.preview_interval)
        if self.client is None:
            self.client = await self._connect()
        self.outbox = Outbox(self.client, self.userbot, self.settings.send_as_file, self.budget, engine.models)
        me = await self.client.get_me()
        self.username = getattr(me, "username", None)
        self.client.add_event_handler(self._on_message, events.NewMessage(func=_looks_like_command))
        if not self.userbot:
            self.client.add_event_handler(self._on_button, events.CallbackQuery())
        await self.conversation.resume(self._target_for)
        log.info("telegram %s @%s ready", self.settings.mode, self.username)

    async def _connect(self) -> TelegramClient:
        settings = self.settings
        session = StringSession(settings.session.get_secret_value() if settings.session else None)
        assert settings.api_id is not None and settings.api_hash is not None
        client = TelegramClient(session, settings.api_id, settings.api_hash.get_secret_value(),
                                flood_sleep_threshold=settings.flood_sleep_threshold)
        if self.userbot:
            await client.connect()
            if not await client.is_user_authorized():
                raise SakaiError("The Telegram session is not valid; run: python -m platforms.telegram.login")
        else:
            assert settings.bot_token is not None
            await client.start(bot_token=settings.bot_token.get_secret_value())
        return client

    async def stop(self) -> None:
        """Stop following jobs, remove our handlers, disconnect a client we made."""
        await self.conversation.close()
        if self.client is None:
            return
        self.client.remove_event_handler(self._on_message)
        self.client.remove_event_handler(self._on_button)
        if self._owns_client and self.client.is_connected():
            await self.client.disconnect()

    async def wait_closed(self) -> None:
        """Serve until disconnected."""
        assert self.client is not None
        await self.client.disconnected

    # ------------------------------------------------------------------ incoming
    def _requester(self, event: Any) -> Requester:
        outgoing = bool(getattr(event, "out", False))
        return Requester(platform="telegram", user_id=str(event.sender_id), chat_id=str(event.chat_id),
                         is_admin=self.access.is_admin(event.sender_id, outgoing))

    def _target(self, chat: int, reply_to: int | None, owner: int, status: Any = None) -> TelegramTarget:
        return TelegramTarget(self.outbox, chat, reply_to, owner, status)

    async def _on_message(self, event: events.NewMessage.Event) -> None:
        outgoing = bool(event.out)
        target = self._target(event.chat_id, event.id, int(event.sender_id or 0))
        if not self.access.allows(event.sender_id, event.chat_id, outgoing):
            if not self.userbot and not outgoing and self.chat_can_answer(event.raw_text):
                await self.conversation.say(target, REFUSAL)
            return
        try:
            command = parse_command(event.raw_text, self.username)
            inputs = await self._pictures(event.message, command) if command is not None else None
        except SakaiError as exc:
            await self.conversation.say(target, self.engine.render_error(None, exc))
            return
        if command is not None:
            await self.conversation.start(command, self._requester(event), target, inputs=inputs)

    async def _pictures(self, message: Any, command: Command) -> Inputs | None:
        """The command's picture, its size checked now (nothing downloaded yet); fetched after the status."""
        if not isinstance(command, ImageCommand | UpscaleCommand):
            return None
        if not_a_picture(message):
            raise InvalidRequest("That file is not a picture; send a photo or an image file.")
        try:
            source = await picture_for(message)
        except errors.RPCError as exc:
            log.info("the message replied to could not be read: %s", exc)
            raise SakaiError("I could not read the message you replied to; send the picture again.") from exc
        if source is None:
            return None
        check_size(source)
        fetch = fetcher(self._client, source)

        async def inputs() -> tuple[bytes, ...]:
            return (await fetch(),)
        return inputs

    def chat_can_answer(self, text: str) -> bool:
        """A refusal only for commands meant for us, never for chatter in a group."""
        try:
            return parse_command(text, self.username) is not None
        except SakaiError:
            return True

    async def _target_for(self, job: Job) -> TelegramTarget | None:
        """After a restart: the job's status message found again (a new one is sent if it is gone)."""
        where = job.request.delivery
        if not {"chat", "status", "owner"} <= where.keys():
            return None
        assert self.client is not None
        chat = int(where["chat"])
        reply_to = int(where["reply_to"]) if where.get("reply_to") else None
        try:
            status = await self.client.get_messages(chat, ids=int(where["status"]))
            preview = await self.client.get_messages(chat, ids=int(where["preview"])) if where.get("preview") else None
        except errors.RPCError as exc:  # a flood wait or a chat we left: a new status message will do
            log.info("status of job %s not found again: %s", job.id, exc)
            status = preview = None
        target = self._target(chat, reply_to, int(where["owner"]), status)
        target.preview_message = preview  # a preview shown before the restart is still removed at the end
        return target

    # ------------------------------------------------------------------ buttons
    async def _on_button(self, event: events.CallbackQuery.Event) -> None:
        press = buttons.decode(event.data)
        if press is None:
            return
        if not self.access.allows(event.sender_id, event.chat_id, False):
            await event.answer(REFUSAL, alert=True)  # the allow list as it is today, not when the image was made
            return
        if event.sender_id != press.owner_id and not self.access.is_admin(event.sender_id, False):
            await event.answer("Only the person who asked can use these buttons.", alert=True)
            return
        if press.action == "cancel":
            await self._cancel(event, press.job_id)
            return
        await self._redo(event, press)

    async def _redo(self, event: Any, press: buttons.Press) -> None:
        """Reroll, Variation or Upscale, answered under the message the button is on."""
        await event.answer({"reroll": "🔁 On it!", "variation": "🎲 On it!"}.get(press.action, "🔍 On it!"))
        target = self._target(event.chat_id, event.message_id, int(event.sender_id))
        requester = self._requester(event)
        if press.action == "upscale":
            await self.conversation.upscale(press.job_id, requester, target, self._result_picture(event, press))
            return
        image = self._result_picture(event, press) if press.action == "variation" else None
        await self.conversation.again(press.job_id, press.action == "variation", requester, target, image=image)

    def _result_picture(self, event: Any, press: buttons.Press) -> Fetch:
        """The result a button is about: the photo it is under, or the album photo its data names."""
        async def fetch() -> bytes:
            if press.photo is not None:
                message = await self._client.get_messages(event.chat_id, ids=press.photo)
            else:
                message = await event.get_message()
            if message is None or not picture_in(message):
                raise InvalidRequest("That picture is no longer in this chat.")
            return await fetcher(self._client, message)()
        return fetch

    @property
    def _client(self) -> TelegramClient:
        assert self.client is not None
        return self.client

    async def _cancel(self, event: Any, job_id: str) -> None:
        try:
            await self.engine.cancel(job_id, self._requester(event))
        except SakaiError as exc:
            await event.answer(self.engine.render_error(None, exc)[:190], alert=True)
            return
        await event.answer("Cancelled.")


def _looks_like_command(event: Any) -> bool:
    return bool(event.raw_text) and event.raw_text.lstrip().startswith("/")
