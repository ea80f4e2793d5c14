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
import math
import time
from collections.abc import Callable
from typing import Any

from telethon import TelegramClient, errors, types
from telethon.sessions import StringSession
from telethon.tl import functions

from core.chat.pacing import Clock

BOT_ID, BOT_HASH, BOT_NAME = 777, 7770, "SakaiTestBot"
SELF_USER_ID = 4242  # the userbot's own account


def user(uid: int, name: str, *, bot: bool = False, access_hash: int | None = None) -> types.User:
    """A Telegram user as the server would describe it."""
    return types.User(id=uid, access_hash=access_hash or uid * 10, first_name=name, username=name.lower(), bot=bot)


BOT = user(BOT_ID, BOT_NAME, bot=True, access_hash=BOT_HASH)
GROUP_LIMIT, GROUP_WINDOW = 20, 60.0  # Telegram: about 20 messages a minute in a group (core.telegram.org/bots/faq)
CAPTION_LIMIT, MESSAGE_LIMIT = 1024, 4096  # UTF-16 code units
WRITES = (functions.messages.SendMessageRequest, functions.messages.SendMediaRequest,
          functions.messages.EditMessageRequest)


class ScaledClock(Clock):
    """Time that runs ``scale`` times faster than the wall clock, for the adapter and the fake alike.

    Telethon remembers flood waits in wall-clock time; ``on_sleep`` lets the harness forget them
    once the scaled wait is over, as the real wait would have.
    """

    def __init__(self, scale: float = 1.0, on_sleep: Callable[[], None] | None = None) -> None:
        self.scale, self.on_sleep = scale, on_sleep
        self._origin = time.monotonic()

    def now(self) -> float:
        """Scaled seconds since the clock was made."""
        return (time.monotonic() - self._origin) * self.scale

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of scaled time."""
        await asyncio.sleep(max(0.0, seconds) / self.scale)
        if self.on_sleep is not None:
            self.on_sleep()


def utf16(text: str) -> int:
    """Telegram counts lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class FakeSender:
    """Answers Telethon's requests like Telegram would, records them, and raises scripted errors."""

    def __init__(self, me: types.User, clock: Clock) -> None:
        self.me = me
        self.clock = clock
        self.requests: list[Any] = []
        self.sent_at: list[float] = []
        self.errors: list[tuple[type, BaseException]] = []
        self._next_id = 1000
        self.messages: dict[int, types.Message] = {}
        self.floods: dict[type, float] = {}
        self.writes: dict[int, list[float]] = {}  # chat id -> clock times of accepted sends and edits
        self.ignored_waits: list[Any] = []  # requests made while Telegram had asked to wait
        self.group_limit = GROUP_LIMIT
        self.deleted: list[int] = []
        self.media_edit_gap = 0.0  # > 0: media edits of one message closer than this get FLOOD_WAIT
        self.media_edits: dict[int, list[float]] = {}  # message id -> clock times of accepted media edits
        self._told: dict[Any, float] = {}

    def flood(self, request_type: type, seconds: float) -> None:
        """From now on, refuse every ``request_type`` with FLOOD_WAIT until ``seconds`` have passed."""
        self.floods[request_type] = self.clock.now() + seconds

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
        refusal = self._refusal(request)
        if refusal is not None:
            future.set_exception(refusal)
        else:
            future.set_result(self.answer(request))
        return future

    def _refusal(self, request: Any) -> BaseException | None:
        """What Telegram would refuse: flood waits, per-group limits, over-long texts."""
        now = self.clock.now()
        for kind, until in self.floods.items():
            if isinstance(request, kind) and until > now:
                return self._wait(kind, until, request)
        if not isinstance(request, WRITES):
            return None
        text = getattr(request, "message", "") or ""
        limit = CAPTION_LIMIT if isinstance(request, functions.messages.SendMediaRequest) else MESSAGE_LIMIT
        if utf16(text) > limit:
            error = errors.MediaCaptionTooLongError if limit == CAPTION_LIMIT else errors.MessageTooLongError
            return error(request=None)
        media = self._media_refusal(request, now)
        if media is not None:
            return media
        chat = _chat_id(request.peer)
        recent = [t for t in self.writes.get(chat, []) if t > now - GROUP_WINDOW]
        if chat < 0 and len(recent) >= self.group_limit:
            return self._wait(chat, recent[0] + GROUP_WINDOW, request)
        self.writes.setdefault(chat, []).append(now)
        return None

    def _media_refusal(self, request: Any, now: float) -> BaseException | None:
        """A text message cannot get media by an edit; media edits of one message too close get FLOOD_WAIT."""
        if not isinstance(request, functions.messages.EditMessageRequest) or request.media is None:
            return None
        old = self.messages.get(request.id)
        if old is None:
            return errors.MessageIdInvalidError(request=None)
        if old.media is None:
            return errors.MediaPrevInvalidError(request=None)
        last = self.media_edits.get(request.id, [float("-inf")])[-1]
        if self.media_edit_gap > 0 and now < last + self.media_edit_gap:
            return self._wait(("media", request.id), last + self.media_edit_gap, request)
        self.media_edits.setdefault(request.id, []).append(now)
        return None

    def _wait(self, key: Any, until: float, request: Any) -> BaseException:
        """FLOOD_WAIT_X; a request made after being told to wait is noted as ignoring the wait."""
        if self._told.get(key, float("-inf")) > self.clock.now():
            self.ignored_waits.append(request)
        self._told[key] = until
        return errors.FloodWaitError(request=None, capture=max(1, math.ceil(until - self.clock.now())))

    def per_minute(self, chat: int) -> int:
        """The most sends and edits Telegram accepted in any 60 s of ``chat``."""
        times = self.writes.get(chat, [])
        return max((sum(1 for t in times if start <= t < start + GROUP_WINDOW) for start in times), default=0)

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
            self.deleted.extend(request.id)
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
        if getattr(request, "media", None) is not None:  # a send, or an edit that replaces the media
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
        if request.id in self.messages:  # an edit keeps what it replied to, and its media unless replaced
            message.reply_to = self.messages[request.id].reply_to
            message.media = message.media or self.messages[request.id].media
        self.messages[request.id] = message
        return types.Updates(updates=[types.UpdateEditMessage(message=message, pts=1, pts_count=1)],
                             users=[self.me], chats=[], date=dt.datetime.now(dt.UTC), seq=0)


def _chat_id(input_peer: Any) -> int:
    """Marked chat id, as Telethon's ``chat_id``: groups negative."""
    if isinstance(input_peer, types.InputPeerChat):
        return -input_peer.chat_id
    if isinstance(input_peer, types.InputPeerChannel):
        return -(10**12 + input_peer.channel_id)
    return getattr(input_peer, "user_id", SELF_USER_ID)


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

    def __init__(self, *, bot: bool = True, scale: float = 1.0) -> None:
        self.me = BOT if bot else user(SELF_USER_ID, "Me")
        # flood_sleep_threshold=0: Telethon never sleeps wall-clock time itself; the adapter handles every wait
        self.client = TelegramClient(StringSession(), api_id=1, api_hash="0" * 32, flood_sleep_threshold=0,
                                     receive_updates=True)
        self.clock = ScaledClock(scale, on_sleep=self.client._flood_waited_requests.clear)
        self.sender = FakeSender(self.me, self.clock)
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
