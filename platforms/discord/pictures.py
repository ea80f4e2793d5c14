"""Pictures users give the Discord bot: an ``image`` option, a message's attachment, a result's picture.

Everything about an attachment that needs no I/O is checked before Discord's 3-second deadline:
its type (``content_type``, which Discord sets from the upload) and its ``size`` against the
interaction's per-attachment limit (``attachment_size_limit``: 10 MiB unless boosts or Nitro raise it).
The bytes are read (``Attachment.read``, from Discord's CDN, into memory) only after the deferral.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import discord

from core.chat.inputs import Fetch
from core.errors import InvalidRequest, SakaiError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def is_picture(attachment: discord.Attachment) -> bool:
    """An image by its content type, or by its name where Discord gave no type."""
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip().lower() in IMAGE_TYPES
    return attachment.filename.lower().endswith(IMAGE_EXTENSIONS)


def first_picture(message: discord.Message) -> discord.Attachment | None:
    """The first image attached to ``message``."""
    return next((attachment for attachment in message.attachments if is_picture(attachment)), None)


def check(attachment: discord.Attachment, limit: int) -> None:
    """Refuse what is not a picture or is over ``limit`` bytes, before anything is downloaded."""
    if not is_picture(attachment):
        raise InvalidRequest(f"{attachment.filename} is not a picture; attach a PNG, JPEG, WebP or GIF.")
    if attachment.size > limit:
        raise InvalidRequest(f"That picture is {attachment.size / 1024 / 1024:.1f} MB; the limit here is "
                             f"{limit / 1024 / 1024:.0f} MB. Attach a smaller one.")


def fetcher(attachment: discord.Attachment) -> Fetch:
    """Read the attachment into memory when called; Discord's refusals become a user message."""
    async def fetch() -> bytes:
        try:
            return await attachment.read()
        except discord.NotFound as exc:
            raise InvalidRequest("That picture was deleted from Discord; attach it again.") from exc
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            raise SakaiError("Discord did not let me download that picture; try again.", detail=str(exc)) from exc
    return fetch


def result_picture(message: Any, job_id: str, picture: int | None) -> discord.Attachment | None:
    """The result a button is about: ``sakaibot-<job>-<n>.*`` under several images, the only one otherwise."""
    attachments = list(getattr(message, "attachments", None) or [])
    if picture is None:
        return next((a for a in attachments if a.filename.startswith(f"sakaibot-{job_id}.")), None)
    return next((a for a in attachments if a.filename.startswith(f"sakaibot-{job_id}-{picture}.")), None)
