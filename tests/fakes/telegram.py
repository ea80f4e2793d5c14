"""A real Telethon ``TelegramClient`` driven offline: its MTProto sender is replaced by a fake.

Every request still goes through Telethon's own code (argument handling, entity resolution,
photo/document decisions, upload chunking, button building, flood-wait logic, result mapping);
only the socket is missing. Incoming traffic goes through ``client._dispatch_update``, Telethon's
real event dispatch. This relies on private names (``_sender``, ``_dispatch_update``,
``_mb_entity_cache``, ``update._entities``), so Telethon is pinned to 1.45 and
``test_telethon_internals_canary`` fails loudly if they move.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from telethon import TelegramClient, types
from telethon.sessions import StringSession
from telethon.tl import functions

BOT_ID, BOT_HASH, BOT_NAME = 777, 7770, "SakaiTestBot"
SELF_USER_ID = 4242  # the userbot's own account


def user(uid: int, name: str, *, bot: bool = False, access_hash: int | None = None) -> types.User:
    """A Telegram user as the server would describe it."""
    return types.User(id=uid, access_hash=access_hash or uid * 10, first_name=name, username=name.lower(), bot=bot)


BOT = user(BOT_ID, BOT_NAME, bot=True, access_hash=BOT_HASH)


class FakeSender:
    """Answers Telethon's requests like Telegram would, records them, and raises scripted errors."""

    def __init__(self, me: types.User) -> None:
        self.me = me
        self.requests: list[Any] = []
        self.sent_at: list[float] = []
        self.errors: list[tuple[type, BaseException]] = []
        self._next_id = 1000
        self.messages: dict[int, types.Message] = {}

    def is_connected(self) -> bool:
        """Telethon asks before some calls."""
        return True

    def fail(self, request_type: type, error: BaseException) -> None:
        """Raise ``error`` on the next request of ``request_type``."""
        self.errors.append((request_type, error))

    def send(self, request: Any, ordered: bool = False) -> Any:
        """Record the request and answer it at once (a list of requests gets a list of futures)."""
        if isinstance(request, list):
            return [self.send(item) for item in request]
        self.requests.append(request)
        self.sent_at.append(time.perf_counter())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        for n, (kind, error) in enumerate(self.errors):
            if isinstance(request, kind):
                del self.errors[n]
                future.set_exception(error)
                return future
        future.set_result(self.answer(request))
        return future

    def of(self, kind: type) -> list[Any]:
        """The recorded requests of one type."""
        return [r for r in self.requests if isinstance(r, kind)]

    def answer(self, request: Any) -> Any:
        """What Telegram returns for each request the adapter makes."""
        if isinstance(request, functions.messages.SendMessageRequest | functions.messages.SendMediaRequest):
            return self._sent(request)
        if isinstance(request, functions.messages.EditMessageRequest):
            return self._edited(request)
        if isinstance(request, functions.messages.DeleteMessagesRequest):
            return types.messages.AffectedMessages(pts=1, pts_count=len(request.id))
        if isinstance(request, functions.users.GetUsersRequest):
            return [self.me]
        if isinstance(request, functions.messages.GetMessagesRequest):
            wanted = [getattr(i, "id", i) for i in request.id]
            found = [self.messages[i] for i in wanted if i in self.messages]
            return types.messages.Messages(messages=found, topics=[], chats=[], users=[self.me])
        return True  # SaveFilePartRequest, SetBotCallbackAnswerRequest, ...

    def _message(self, request: Any, message_id: int, text: str) -> types.Message:
        media = None
        if isinstance(request, functions.messages.SendMediaRequest):
            media = types.MessageMediaDocument(document=None) if isinstance(
                request.media, types.InputMediaUploadedDocument) else types.MessageMediaPhoto(photo=None)
        reply_to = getattr(request, "reply_to", None)
        return types.Message(id=message_id, peer_id=_peer(request.peer), date=dt.datetime.now(dt.UTC), message=text,
                             out=True, from_id=types.PeerUser(self.me.id), media=media,
                             reply_markup=getattr(request, "reply_markup", None), reply_to=reply_to)

    def _sent(self, request: Any) -> types.Updates:
        self._next_id += 1
        text = getattr(request, "message", "") or ""
        message = self._message(request, self._next_id, text)
        self.messages[message.id] = message
        return types.Updates(updates=[types.UpdateMessageID(id=message.id, random_id=request.random_id),
                                      types.UpdateNewMessage(message=message, pts=1, pts_count=1)],
                             users=[self.me], chats=[], date=dt.datetime.now(dt.UTC), seq=0)

    def _edited(self, request: Any) -> types.Updates:
        message = self._message(request, request.id, request.message or "")
        self.messages[request.id] = message
        return types.Updates(updates=[types.UpdateEditMessage(message=message, pts=1, pts_count=1)],
                             users=[self.me], chats=[], date=dt.datetime.now(dt.UTC), seq=0)


def _peer(input_peer: Any) -> Any:
    if isinstance(input_peer, types.InputPeerUser):
        return types.PeerUser(input_peer.user_id)
    if isinstance(input_peer, types.InputPeerChat):
        return types.PeerChat(input_peer.chat_id)
    if isinstance(input_peer, types.InputPeerChannel):
        return types.PeerChannel(input_peer.channel_id)
    return types.PeerUser(SELF_USER_ID)


class OfflineTelegram:
    """A never-connected client with a fake sender, and helpers to feed it updates."""

    def __init__(self, *, bot: bool = True) -> None:
        self.me = BOT if bot else user(SELF_USER_ID, "Me")
        self.client = TelegramClient(StringSession(), api_id=1, api_hash="0" * 32, flood_sleep_threshold=2,
                                     receive_updates=True)
        self.sender = FakeSender(self.me)
        self.client._sender = self.sender
        self.client._mb_entity_cache.set_self_user(self.me.id, bot, self.me.access_hash)
        self._message_id = 10
        self.known: dict[int, types.User] = {self.me.id: self.me}
        self.known_chats: dict[int, types.Chat] = {}

    def know(self, *users: types.User) -> None:
        """Put users into the entity cache, as the server's updates would."""
        self.known.update({u.id: u for u in users})
        self.client.session.process_entities(types.contacts.ResolvedPeer(
            peer=types.PeerUser(users[0].id), chats=[], users=list(users)))

    def _chat(self, chat_id: int) -> types.PeerChat:
        """A basic group the account is in, known to the entity cache."""
        chat = types.Chat(id=chat_id, title=f"group {chat_id}", photo=types.ChatPhotoEmpty(), participants_count=3,
                          date=dt.datetime.now(dt.UTC), version=1)
        self.client.session.process_entities(types.contacts.ResolvedPeer(
            peer=types.PeerChat(chat_id), chats=[chat], users=[]))
        self.known_chats[-chat_id] = chat
        return types.PeerChat(chat_id)

    async def message(self, text: str, *, sender: types.User, chat_id: int | None = None,
                      outgoing: bool = False) -> int:
        """Deliver a new message through Telethon's dispatch; returns its id."""
        self.know(sender)
        self._message_id += 1
        peer = self._chat(chat_id) if chat_id else types.PeerUser(sender.id)
        message = types.Message(id=self._message_id, peer_id=peer, date=dt.datetime.now(dt.UTC), message=text,
                                out=outgoing, from_id=types.PeerUser(sender.id))
        update = types.UpdateNewMessage(message=message, pts=self._message_id, pts_count=1)
        update._entities = {**self.known, **self.known_chats}
        await self.client._dispatch_update(update)
        return self._message_id

    async def press(self, data: bytes, *, sender: types.User, message_id: int, chat_id: int | None = None) -> None:
        """Press an inline button under ``message_id``."""
        self.know(sender)
        peer = self._chat(chat_id) if chat_id else types.PeerUser(sender.id)
        update = types.UpdateBotCallbackQuery(query_id=message_id * 1000 + sender.id, user_id=sender.id, peer=peer,
                                              msg_id=message_id, chat_instance=1, data=data)
        update._entities = {**self.known, **self.known_chats}
        await self.client._dispatch_update(update)
