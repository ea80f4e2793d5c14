"""Sending finished images from memory, with a plain-text caption Telegram accepts.

One image goes as a photo with its caption and keyboard; several go as one album (``send_file``
with a list: Telethon uploads each with ``messages.uploadMedia`` and sends ``messages.sendMultiMedia``),
the caption on the first photo, which is where Telegram shows an album's caption. An album cannot
carry an inline keyboard (``sendMultiMedia`` has no ``reply_markup``), so its buttons go separately.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from telethon import TelegramClient, errors

from core import Job
from core.chat.messages import caption, truncate_utf16
from core.chat.pacing import RetryAfter

log = logging.getLogger(__name__)
CAPTION_LIMIT = 1024  # UTF-16 code units, after entity parsing (none: captions are plain text)
MESSAGE_LIMIT = 4096
PHOTO_ERRORS = (errors.PhotoInvalidDimensionsError, errors.ImageProcessFailedError,
                errors.PhotoSaveFileInvalidError, errors.PhotoExtInvalidError, errors.FilePartsInvalidError)
WAITS = (errors.FloodWaitError, errors.SlowModeWaitError, errors.FloodPremiumWaitError)


def image_file(job: Job, index: int = 0) -> io.BytesIO:
    """One image as a named in-memory file: Telethon picks photo or document from the name."""
    image = job.results[index]
    buffer = io.BytesIO(image.data)
    suffix = f"-{index + 1}" if len(job.results) > 1 else ""
    buffer.name = f"sakaibot-{job.id}{suffix}.{image.extension}"
    return buffer


def image_caption(job: Job) -> str:
    """Model, seed, time, job id and prompt, cut to Telegram's caption limit."""
    return truncate_utf16(caption(job, with_id=True), CAPTION_LIMIT)


async def send_image(client: TelegramClient, chat: Any, job: Job, *, reply_to: int | None, as_file: bool,
                     buttons: Any) -> Any:
    """Send the result; fall back to a document when Telegram refuses it as a photo.

    A flood wait becomes ``RetryAfter``: the caller keeps the image and sends it after the wait.
    """
    try:
        try:
            return await _send(client, chat, job, reply_to, as_file, buttons)
        except PHOTO_ERRORS as exc:
            log.info("photo refused (%s); sending job %s as a file", type(exc).__name__, job.id)
            return await _send(client, chat, job, reply_to, True, buttons)
    except WAITS as exc:
        raise RetryAfter(exc.seconds) from exc


async def send_album(client: TelegramClient, chat: Any, job: Job, *, reply_to: int | None, as_file: bool) -> list[Any]:
    """Send every image as one album (photos, or files), the caption on the first; the sent messages in order."""
    try:
        try:
            return await _album(client, chat, job, reply_to, as_file)
        except PHOTO_ERRORS as exc:
            log.info("album refused as photos (%s); sending job %s as files", type(exc).__name__, job.id)
            return await _album(client, chat, job, reply_to, True)
    except WAITS as exc:
        raise RetryAfter(exc.seconds) from exc


async def _album(client: TelegramClient, chat: Any, job: Job, reply_to: int | None, as_file: bool) -> list[Any]:
    files = [image_file(job, n) for n in range(len(job.results))]
    sent = await client.send_file(chat, files, caption=image_caption(job), reply_to=reply_to,
                                  force_document=as_file, parse_mode=None)
    return list(sent)


async def _send(client: TelegramClient, chat: Any, job: Job, reply_to: int | None, as_file: bool,
                buttons: Any) -> Any:
    # A fresh BytesIO each time: an upload consumes it. No parse mode: prompts are shown as typed.
    return await client.send_file(chat, image_file(job), caption=image_caption(job), reply_to=reply_to,
                                  buttons=buttons, force_document=as_file, parse_mode=None)
