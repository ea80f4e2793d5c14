"""Pictures users give the Telegram bot: a photo, an image sent as a file, or the message replied to.

Sizes are checked from the message before anything is downloaded: bots on the Bot API cannot fetch
files over 20 MB (core.telegram.org/bots/api#getfile), and SakaiBot keeps that limit in both modes
so the same picture works everywhere. Downloads go to memory (``download_media(file=bytes)``),
never to disk; the engine then sniffs, checks and cleans the bytes.
"""

from __future__ import annotations

from typing import Any

from telethon import TelegramClient, errors, types

from core.chat.inputs import Fetch
from core.errors import InvalidRequest, SakaiError

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the Bot API's getFile limit


def picture_in(message: Any) -> bool:
    """Whether ``message`` itself carries a picture: a photo, or a document whose type is an image."""
    media = getattr(message, "media", None)
    if isinstance(media, types.MessageMediaPhoto):
        return isinstance(media.photo, types.Photo)
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        return str(media.document.mime_type).startswith("image/")
    return False


def not_a_picture(message: Any) -> bool:
    """A file that is not an image (a PDF with an /image caption): refused rather than silently ignored."""
    media = getattr(message, "media", None)
    return isinstance(media, types.MessageMediaDocument) and not picture_in(message)


async def picture_for(message: Any) -> Any | None:
    """The message whose picture a command uses: its own, else the one it replies to, else ``None``."""
    if picture_in(message):
        return message
    if getattr(message, "reply_to", None) is None:
        return None
    replied = await message.get_reply_message()
    return replied if picture_in(replied) else None


def check_size(message: Any) -> None:
    """Refuse a picture over the download limit, from the size Telegram states (nothing downloaded)."""
    size = message.file.size if message.file is not None else None
    if size is not None and size > DOWNLOAD_LIMIT:
        raise InvalidRequest(f"That picture is {size / 1024 / 1024:.1f} MB; bots can download at most "
                             f"{DOWNLOAD_LIMIT // 1024 // 1024} MB. Send a smaller one.")


def fetcher(client: TelegramClient, message: Any) -> Fetch:
    """Download ``message``'s picture into memory when called, after its size is checked."""
    async def fetch() -> bytes:
        check_size(message)
        try:
            data = await client.download_media(message, file=bytes)
        except (errors.RPCError, ValueError, ConnectionError) as exc:  # ValueError: a CDN redirect bots may not follow
            raise SakaiError("Telegram did not let me download that picture; send it again.",
                             detail=f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(data, bytes) or not data:
            raise InvalidRequest("That message has no picture I can download.")
        return data
    return fetch
