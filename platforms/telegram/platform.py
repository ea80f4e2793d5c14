"""The Telegram adapter: Telegram messages in, engine replies and job events out. No business rules."""

from __future__ import annotations

import logging
from typing import Any

from telethon import TelegramClient, errors, events
from telethon.sessions import StringSession

from core import EventKind, GenerationOptions, JobEvent, Platform, Requester, SakaiError
from core.chat import ChatService, TextReply
from core.chat.commands import ImageCommand, parse_command
from core.chat.followers import Followers
from core.chat.messages import status_text
from core.engine import Engine
from core.engine.handle import JobHandle
from platforms.telegram import buttons
from platforms.telegram.access import Access
from platforms.telegram.delivery import send_image
from platforms.telegram.recall import recall
from platforms.telegram.settings import TelegramSettings
from platforms.telegram.status import StatusMessage

log = logging.getLogger(__name__)
REFUSAL = "Sorry, this bot is private."
MESSAGE_LIMIT = 4096


class TelegramPlatform(Platform):
    """A bot or userbot on Telethon; ``client`` may be injected (tests drive a real, offline client)."""

    name = "telegram"

    def __init__(self, settings: TelegramSettings, client: TelegramClient | None = None) -> None:
        self.settings = settings
        self.client = client
        self._owns_client = client is None
        self.userbot = settings.mode == "userbot"
        self.access = Access(self.userbot, frozenset(settings.allowed_users), frozenset(settings.allowed_chats),
                             frozenset(settings.admins))
        self.username: str | None = None
        self.followers = Followers("telegram")

    # ------------------------------------------------------------------ lifecycle
    async def start(self, engine: Engine) -> None:
        """Log in (unless a client was injected), learn our username, register handlers."""
        self.engine = engine
        self.chat = ChatService(engine)
        if self.client is None:
            self.client = await self._connect()
        me = await self.client.get_me()
        self.username = getattr(me, "username", None)
        self.client.add_event_handler(self._on_message, events.NewMessage(func=_looks_like_command))
        if not self.userbot:
            self.client.add_event_handler(self._on_button, events.CallbackQuery())
        for handle in await engine.resume(self.name):
            self._track(self._resume(handle), handle)
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
        """Stop following jobs and disconnect."""
        await self.followers.close()
        if self._owns_client and self.client is not None and self.client.is_connected():
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

    async def _on_message(self, event: events.NewMessage.Event) -> None:
        outgoing = bool(event.out)
        if not self.access.allows(event.sender_id, event.chat_id, outgoing):
            if not self.userbot and not outgoing and self.chat_can_answer(event.raw_text):
                await self._reply(event, REFUSAL)
            return
        try:
            command = parse_command(event.raw_text, self.username)
        except SakaiError as exc:
            await self._reply(event, self.engine.render_error(None, exc))
            return
        if isinstance(command, ImageCommand):
            await self._image(event, command)
        elif command is not None:
            reply = await self.chat.answer(command, self._requester(event), None)
            await self._reply(event, reply.text if isinstance(reply, TextReply) else "")

    async def _image(self, event: Any, command: ImageCommand) -> None:
        """Status message first, so a restart knows which message to keep updating."""
        message = await self._reply(event, "⏳ Queued")
        if message is None:
            return
        delivery = {"chat": str(event.chat_id), "status": str(message.id), "reply_to": str(event.id),
                    "owner": str(event.sender_id)}
        reply = await self.chat.answer(command, self._requester(event), delivery)
        status = StatusMessage(message, interval=self.settings.edit_interval,
                               max_flood_wait=self.settings.max_flood_wait)
        if isinstance(reply, TextReply):
            await status.show(f"❌ {reply.text}", None, now=True)
            return
        self._track(self._follow(reply.handle, status, event.chat_id, event.id, int(event.sender_id)), reply.handle)

    def _track(self, coroutine: Any, handle: JobHandle) -> None:
        self.followers.start(coroutine, handle)

    async def _resume(self, handle: JobHandle) -> None:
        """After a restart: find the job's status message again (or send a new one) and carry on."""
        target = handle.job.request.delivery
        if not {"chat", "status", "reply_to", "owner"} <= target.keys():
            log.warning("job %s has no Telegram delivery target; it runs but cannot be delivered", handle.id)
            return
        assert self.client is not None
        chat, reply_to = int(target["chat"]), int(target["reply_to"])
        message = await self.client.get_messages(chat, ids=int(target["status"]))
        if message is None:
            message = await self.client.send_message(chat, "⏳ Resumed after a restart", reply_to=reply_to)
        status = StatusMessage(message, interval=self.settings.edit_interval,
                               max_flood_wait=self.settings.max_flood_wait)
        await self._follow(handle, status, chat, reply_to, int(target["owner"]))

    def chat_can_answer(self, text: str) -> bool:
        """A refusal only for commands meant for us, never for chatter in a group."""
        try:
            return parse_command(text, self.username) is not None
        except SakaiError:
            return True

    async def _reply(self, event: Any, text: str, buttons: Any = None) -> Any:
        try:
            return await event.reply(text[:MESSAGE_LIMIT], buttons=buttons)
        except (errors.ChatWriteForbiddenError, errors.UserIsBlockedError, errors.ChatAdminRequiredError,
                errors.ChannelPrivateError) as exc:
            log.info("cannot answer in chat %s: %s", event.chat_id, type(exc).__name__)
        except errors.FloodWaitError as exc:
            log.warning("reply dropped: Telegram asks to wait %s s", exc.seconds)
        return None

    # ------------------------------------------------------------------ job events
    async def _follow(self, handle: JobHandle, status: StatusMessage, chat: Any, reply_to: int, owner: int) -> None:
        async for event in handle:
            if event.kind is EventKind.DONE:
                await self._deliver(event, status, chat, reply_to, owner)
            elif event.kind.final:
                await status.show(status_text(event), None, now=True)
            else:
                await status.show(status_text(event), self._live_buttons(event, owner))
        await status.close()

    def _live_buttons(self, event: JobEvent, owner: int) -> Any:
        if self.userbot:
            return None
        return buttons.cancel_buttons(event.job.id, owner)

    async def _deliver(self, event: JobEvent, status: StatusMessage, chat: Any, reply_to: int, owner: int) -> None:
        job = event.job
        as_file = job.request.options.as_file or self.settings.send_as_file
        markup = None if self.userbot else buttons.result_buttons(job.id, owner)
        assert self.client is not None
        try:
            await send_image(self.client, chat, job, reply_to=reply_to, as_file=as_file, buttons=markup,
                             max_flood_wait=self.settings.max_flood_wait)
        except errors.RPCError as exc:
            log.warning("could not deliver job %s: %s", job.id, exc)
            await status.show(f"❌ The image was made but Telegram refused it ({type(exc).__name__}).", None, now=True)
            return
        await self.engine.delivered(job.id)
        await status.delete()

    # ------------------------------------------------------------------ buttons
    async def _on_button(self, event: events.CallbackQuery.Event) -> None:
        press = buttons.decode(event.data)
        if press is None:
            return
        admin = self.access.is_admin(event.sender_id, False)
        if event.sender_id != press.owner_id and not admin:
            await event.answer("Only the person who asked can use these buttons.", alert=True)
            return
        if press.action == "cancel":
            await self._cancel(event, press.job_id)
        else:
            await self._again(event, press)

    async def _cancel(self, event: Any, job_id: str) -> None:
        try:
            await self.engine.cancel(job_id, self._requester(event))
        except SakaiError as exc:
            await event.answer(self.engine.render_error(None, exc)[:190], alert=True)
            return
        await event.answer("Cancelled.")

    async def _again(self, event: Any, press: buttons.Press) -> None:
        message = await event.get_message()
        old = recall(self.engine, press.job_id, getattr(message, "message", None))
        if old is None:
            await event.answer("That request is too old to repeat; send it again.", alert=True)
            return
        variation = press.action == "variation" and old.enhanced
        command = ImageCommand(old.enhanced if variation else old.prompt, old.model,
                               GenerationOptions(enhance=not variation))
        await event.answer("🔁 On it!" if press.action == "reroll" else "🎲 On it!")
        await self._image(_ButtonOrigin(event, message), command)


class _ButtonOrigin:
    """Makes a button press look like the message it was pressed under, for replies."""

    def __init__(self, event: Any, message: Any) -> None:
        self.sender_id = event.sender_id
        self.chat_id = event.chat_id
        self.id = getattr(message, "id", None)
        self._event = event

    async def reply(self, text: str, buttons: Any = None) -> Any:
        """Reply under the image whose button was pressed."""
        return await self._event.client.send_message(self.chat_id, text, reply_to=self.id, buttons=buttons)


def _looks_like_command(event: Any) -> bool:
    return bool(event.raw_text) and event.raw_text.lstrip().startswith("/")
