"""Sending a finished image from memory, with a caption Telegram accepts."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from telethon import TelegramClient, errors

from core import Job
from core.chat.messages import caption, truncate_words

log = logging.getLogger(__name__)
CAPTION_LIMIT = 1024
PHOTO_ERRORS = (errors.PhotoInvalidDimensionsError, errors.ImageProcessFailedError,
                errors.PhotoSaveFileInvalidError, errors.PhotoExtInvalidError, errors.FilePartsInvalidError)


def image_file(job: Job) -> io.BytesIO:
    """The image as a named in-memory file: Telethon picks photo or document from the name."""
    assert job.result is not None
    buffer = io.BytesIO(job.result.data)
    buffer.name = f"sakaibot-{job.id}.{job.result.extension}"
    return buffer


async def send_image(client: TelegramClient, chat: Any, job: Job, *, reply_to: int | None, as_file: bool,
                     buttons: Any, max_flood_wait: float) -> Any:
    """Send the result; fall back to a document when Telegram refuses it as a photo."""
    text = truncate_words(caption(job), CAPTION_LIMIT)
    try:
        return await _send(client, chat, job, text, reply_to, as_file, buttons, max_flood_wait)
    except PHOTO_ERRORS as exc:
        log.info("photo refused (%s); sending job %s as a file", type(exc).__name__, job.id)
        return await _send(client, chat, job, text, reply_to, True, buttons, max_flood_wait)


async def _send(client: TelegramClient, chat: Any, job: Job, text: str, reply_to: int | None, as_file: bool,
                buttons: Any, max_flood_wait: float) -> Any:
    async def once() -> Any:  # a fresh BytesIO each time: an upload consumes it
        return await client.send_file(chat, image_file(job), caption=text, reply_to=reply_to, buttons=buttons,
                                      force_document=as_file)

    try:
        return await once()
    except errors.FloodWaitError as exc:
        if exc.seconds > max_flood_wait:
            raise
        await asyncio.sleep(exc.seconds)
        return await once()
