"""Sending a finished image from memory, with a plain-text caption Telegram accepts."""

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


def image_file(job: Job) -> io.BytesIO:
    """The image as a named in-memory file: Telethon picks photo or document from the name."""
    assert job.result is not None
    buffer = io.BytesIO(job.result.data)
    buffer.name = f"sakaibot-{job.id}.{job.result.extension}"
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


async def _send(client: TelegramClient, chat: Any, job: Job, reply_to: int | None, as_file: bool,
                buttons: Any) -> Any:
    # A fresh BytesIO each time: an upload consumes it. No parse mode: prompts are shown as typed.
    return await client.send_file(chat, image_file(job), caption=image_caption(job), reply_to=reply_to,
                                  buttons=buttons, force_document=as_file, parse_mode=None)
