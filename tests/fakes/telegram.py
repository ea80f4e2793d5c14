"""A real Telethon ``TelegramClient`` driven offline: its MTProto sender is replaced by a fake.

Every request still goes through Telethon's own code (argument handling, entity resolution,
photo/document decisions, upload chunking, button building, flood-wait logic, result mapping);
only the socket is missing. Incoming traffic goes through ``client._dispatch_update``, Telethon's
real event dispatch. Files are real too: uploaded parts are assembled into photos and documents
(``messages.uploadMedia`` and ``messages.sendMultiMedia`` for albums), and ``upload.getFile`` serves
their bytes back in the chunks Telethon asks for, so downloads run through Telethon's own code.
This relies on private names (``_sender``, ``_dispatch_update``,
``_mb_entity_cache``, ``update._entities``), so Telethon is pinned to 1.45 and
``test_telethon_internals_canary`` fails loudly if they move.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from PIL import Image as PILImage
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
          functions.messages.EditMessageRequest, functions.messages.SendMultiMediaRequest)
PARTS = (functions.upload.SaveFilePartRequest, functions.upload.SaveBigFilePartRequest)
CHUNK_LIMIT = 1024 * 1024  # upload.getFile: limit at most 1 MB, a multiple of 4 KB (core.telegram.org/api/files)
_ids = itertools.count(900_000)


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
        self.parts: dict[int, dict[int, bytes]] = {}  # upload file id -> part number -> bytes
        self.files: dict[int, bytes] = {}  # photo or document id -> its bytes
        self.photos: dict[int, types.Photo] = {}
        self.documents: dict[int, types.Document] = {}

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
            try:
                future.set_result(self.answer(request))
            except errors.RPCError as error:  # what Telegram refuses only once it looks at the request
                future.set_exception(error)
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
        if isinstance(request, functions.messages.SendMultiMediaRequest):
            text = max((single.message for single in request.multi_media), key=utf16, default="")
            limit = CAPTION_LIMIT
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
            wanted = [self._wanted(i) for i in request.id]
            found = [self.messages[i] for i in wanted if i in self.messages]
            return types.messages.Messages(messages=found, topics=[], chats=[], users=[self.me])
        return self._file_answer(request)

    def _file_answer(self, request: Any) -> Any:
        """Uploads, uploaded media, albums and downloads."""
        if isinstance(request, PARTS):
            self.parts.setdefault(request.file_id, {})[request.file_part] = request.bytes
            return True
        if isinstance(request, functions.messages.UploadMediaRequest):
            return self.stored(request.media)
        if isinstance(request, functions.messages.SendMultiMediaRequest):
            return self._album(request)
        if isinstance(request, functions.upload.GetFileRequest):
            if request.limit > CHUNK_LIMIT or request.limit % 4096 or request.offset % 4096:
                raise errors.LimitInvalidError(request=None)
            data = self.files[request.location.id]
            return types.upload.File(type=types.storage.FileUnknown(), mtime=0,
                                     bytes=data[request.offset:request.offset + request.limit])
        return True  # SetBotCallbackAnswerRequest, ...

    def _wanted(self, item: Any) -> int:
        """A message id; ``InputMessageReplyTo(id)`` means the message that ``id`` replies to."""
        if isinstance(item, types.InputMessageReplyTo):
            replying = self.messages.get(item.id)
            header = getattr(replying, "reply_to", None)
            return getattr(header, "reply_to_msg_id", None) or -1
        return getattr(item, "id", item)

    def photo(self, data: bytes, stated_size: int | None = None) -> types.Photo:
        """A stored photo of ``data`` (``stated_size``: what Telegram claims its size is)."""
        with PILImage.open(io.BytesIO(data)) as picture:
            width, height = picture.size
        photo = types.Photo(id=next(_ids), access_hash=7, file_reference=b"ref", date=dt.datetime.now(dt.UTC),
                            sizes=[types.PhotoSize(type="y", w=width, h=height, size=stated_size or len(data))],
                            dc_id=0)  # 0: the session's own DC, so Telethon downloads without exporting
        self.photos[photo.id], self.files[photo.id] = photo, data
        return photo

    def document(self, data: bytes, mime_type: str, name: str = "file", stated_size: int | None = None
                 ) -> types.Document:
        """A stored document of ``data``."""
        document = types.Document(id=next(_ids), access_hash=7, file_reference=b"ref",
                                  date=dt.datetime.now(dt.UTC), mime_type=mime_type,
                                  size=stated_size or len(data), dc_id=0,
                                  attributes=[types.DocumentAttributeFilename(file_name=name)])
        self.documents[document.id], self.files[document.id] = document, data
        return document

    def _assembled(self, input_file: Any) -> bytes:
        parts = self.parts.pop(input_file.id)
        return b"".join(parts[n] for n in range(input_file.parts))

    def stored(self, media: Any) -> Any:
        """What Telegram keeps for an ``InputMedia``: uploaded files become photos and documents."""
        if isinstance(media, types.InputMediaUploadedPhoto):
            return types.MessageMediaPhoto(photo=self.photo(self._assembled(media.file)))
        if isinstance(media, types.InputMediaUploadedDocument):
            name = next((a.file_name for a in media.attributes
                         if isinstance(a, types.DocumentAttributeFilename)), "file")
            return types.MessageMediaDocument(document=self.document(self._assembled(media.file), media.mime_type,
                                                                     name))
        if isinstance(media, types.InputMediaPhoto):
            return types.MessageMediaPhoto(photo=self.photos[media.id.id])
        if isinstance(media, types.InputMediaDocument):
            return types.MessageMediaDocument(document=self.documents[media.id.id])
        raise errors.MediaInvalidError(request=None)

    def _album(self, request: Any) -> types.Updates:
        """``messages.sendMultiMedia``: one message per picture, grouped, each with its caption."""
        grouped, updates, messages = next(_ids), [], []
        for single in request.multi_media:
            self._next_id += 1
            message = types.Message(id=self._next_id, peer_id=_peer(request.peer), date=dt.datetime.now(dt.UTC),
                                    message=single.message, out=True, from_id=types.PeerUser(self.me.id),
                                    media=self.stored(single.media), reply_to=_header(request.reply_to),
                                    grouped_id=grouped)
            self.messages[message.id] = message
            messages.append(message)
            updates.append(types.UpdateMessageID(id=message.id, random_id=single.random_id))
        updates += [types.UpdateNewMessage(message=m, pts=1, pts_count=1) for m in messages]
        return types.Updates(updates=updates, users=[self.me], chats=[], date=dt.datetime.now(dt.UTC), seq=0)

    def _message(self, request: Any, message_id: int, text: str) -> types.Message:
        media = None
        if getattr(request, "media", None) is not None:  # a send, or an edit that replaces the media
            media = self.stored(request.media)
        reply_to = _header(getattr(request, "reply_to", None))
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


def _header(reply_to: Any) -> Any:
    """The reply header a sent message carries, from the ``InputReplyTo`` it was sent with."""
    if isinstance(reply_to, types.InputReplyToMessage):
        return types.MessageReplyHeader(reply_to_msg_id=reply_to.reply_to_msg_id)
    return reply_to


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
                      outgoing: bool = False, media: Any = None, reply_to: int | None = None) -> int:
        """Deliver a new message through Telethon's dispatch (with ``media``, replying to ``reply_to``); its id."""
        self.know(sender)
        self._message_id = max(self._message_id, self.sender._next_id) + 1
        peer = self._chat(chat_id) if chat_id else types.PeerUser(sender.id)
        header = types.MessageReplyHeader(reply_to_msg_id=reply_to) if reply_to else None
        message = types.Message(id=self._message_id, peer_id=peer, date=dt.datetime.now(dt.UTC), message=text,
                                out=outgoing, from_id=types.PeerUser(sender.id), media=media, reply_to=header)
        self.sender.messages[message.id] = message  # the server keeps it: replies and downloads find it
        self.sender._next_id = self._message_id
        update = types.UpdateNewMessage(message=message, pts=self._message_id, pts_count=1)
        update._entities = {**self.known, **self.known_chats}
        await self.client._dispatch_update(update)
        return self._message_id

    def photo(self, data: bytes, *, stated_size: int | None = None) -> types.MessageMediaPhoto:
        """A photo as a user's message carries it (``stated_size``: the size Telegram states)."""
        return types.MessageMediaPhoto(photo=self.sender.photo(data, stated_size))

    def file(self, data: bytes, mime_type: str, name: str, *, stated_size: int | None = None
             ) -> types.MessageMediaDocument:
        """A file (a document) as a user's message carries it."""
        return types.MessageMediaDocument(document=self.sender.document(data, mime_type, name, stated_size))

    async def press(self, data: bytes, *, sender: types.User, message_id: int, chat_id: int | None = None) -> None:
        """Press an inline button under ``message_id``."""
        self.know(sender)
        peer = self._chat(chat_id) if chat_id else types.PeerUser(sender.id)
        update = types.UpdateBotCallbackQuery(query_id=message_id * 1000 + sender.id, user_id=sender.id, peer=peer,
                                              msg_id=message_id, chat_instance=1, data=data)
        update._entities = {**self.known, **self.known_chats}
        await self.client._dispatch_update(update)
