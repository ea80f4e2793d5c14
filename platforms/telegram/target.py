"""Where one Telegram job is answered: its status message, its image, its refusals.

Implements ``core.chat.conversation.ReplyTarget`` (with ``Prepares``, ``Finishes``, ``ChatPaced``
and ``ShowsPreview``): Telegram's errors become the conversation's signals here. A flood wait becomes
``RetryAfter`` (the conversation waits, keeping the image or the command), a message that can no
longer be edited ends the editing, and texts go out without a parse mode, as typed.

Previews: a text message cannot be edited into a photo, so the first preview is sent as a photo
replying to the command (the status message keeps its text and its Cancel button) and later
previews replace that photo's media and caption. Once the image is delivered, or the job ends
otherwise, the preview message is deleted: the result arrives as a new message, which notifies
the user (an edit would not) and keeps one delivery path for photos and files.

Several images (``--n``) go as one album; since an album cannot carry inline buttons, a short
message replying to it carries them, numbered like the photos. An album already sent is remembered,
so a flood wait before its buttons never sends the pictures twice.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image as PILImage
from telethon import TelegramClient, errors

from core import ImageModel, Job
from core.chat.conversation import NONE, Buttons, DeliveryRefused
from core.chat.messages import truncate_utf16
from core.chat.pacing import ChatBudget, RetryAfter
from platforms.telegram import buttons as keyboards
from platforms.telegram.delivery import CAPTION_LIMIT, MESSAGE_LIMIT, PHOTO_ERRORS, WAITS, send_album, send_image

log = logging.getLogger(__name__)
GONE = (errors.MessageIdInvalidError, errors.MessageEditTimeExpiredError, errors.ChatWriteForbiddenError,
        errors.UserIsBlockedError, errors.ChatAdminRequiredError, errors.ChannelPrivateError,
        errors.UserBannedInChannelError, errors.ChatRestrictedError)
ALBUM_BUTTONS = "🎲 Variation or 🔍 Upscale of one picture (numbered as in the album), or 🔁 Reroll them all."


@dataclass(frozen=True, slots=True)
class Outbox:
    """What every target of one platform shares: the client, the mode, the per-chat budget."""

    client: TelegramClient
    userbot: bool
    send_as_file: bool
    budget: ChatBudget
    models: Mapping[str, ImageModel] = field(default_factory=dict)  # decides which result buttons make sense


class TelegramTarget:
    """One job's replies in one chat, under the message that asked (``reply_to``)."""

    def __init__(self, outbox: Outbox, chat: int, reply_to: int | None, owner: int, status: Any = None) -> None:
        self.outbox, self.chat, self.reply_to, self.owner, self.status = outbox, chat, reply_to, owner, status
        self.chat_key = str(chat)
        self.budget: ChatBudget | None = outbox.budget if chat < 0 else None  # groups: about 20 a minute
        self.preview_message: Any = None
        self.album: list[Any] | None = None  # an album sent for this job, kept across a wait before its buttons

    # ------------------------------------------------------------------ the conversation's calls
    async def prepare(self) -> dict[str, str]:
        """The status message, before the job exists, so a restart finds it again."""
        await self.show("⏳ Queued", NONE)
        return {"chat": str(self.chat), "status": str(self.status.id), "reply_to": str(self.reply_to or ""),
                "owner": str(self.owner)}

    async def show(self, text: str, buttons: Buttons) -> bool:
        """Send the status the first time, edit it after; ``False`` once it cannot be edited."""
        markup = self._markup(buttons)
        try:
            if self.status is None:
                await self._take()
                self.status = await self._send(text, markup)
            else:
                await self.status.edit(truncate_utf16(text, MESSAGE_LIMIT), buttons=markup, parse_mode=None)
        except errors.MessageNotModifiedError:
            pass
        except WAITS as exc:
            raise self._refused(exc.seconds) from exc
        except GONE as exc:
            log.info("status in chat %s is gone: %s", self.chat, type(exc).__name__)
            return False
        except errors.RPCError as exc:
            log.warning("status edit failed: %s", exc)
        return True

    async def deliver(self, job: Job) -> None:
        """The image with its caption and buttons, or an album and then its buttons, as a reply to the command."""
        as_file = job.request.options.as_file or self.outbox.send_as_file
        wanted = Buttons.of(job, self.outbox.models)
        await self._take()
        try:
            if len(job.results) > 1:
                await self._deliver_album(job, as_file, wanted)
            else:
                await send_image(self.outbox.client, self.chat, job, reply_to=self.reply_to, as_file=as_file,
                                 buttons=self._markup(wanted))
        except RetryAfter as wait:
            self._refused(wait.seconds)
            raise
        except errors.RPCError as exc:
            raise DeliveryRefused(f"The image was made but Telegram refused it ({type(exc).__name__}).",
                                  detail=str(exc)) from exc

    async def _deliver_album(self, job: Job, as_file: bool, wanted: Buttons) -> None:
        """The album once, then its buttons on a message replying to it (an album cannot carry them)."""
        if self.album is None:
            self.album = await send_album(self.outbox.client, self.chat, job, reply_to=self.reply_to,
                                          as_file=as_file)
            await self._take()
        if self.outbox.userbot or not wanted.actions:
            return  # no inline buttons for user accounts
        markup = keyboards.album_buttons(wanted, self.owner, [message.id for message in self.album])
        try:
            await self.outbox.client.send_message(self.chat, ALBUM_BUTTONS, reply_to=self.album[0].id,
                                                  buttons=markup, parse_mode=None)
        except WAITS as exc:
            raise RetryAfter(exc.seconds) from exc
        except errors.RPCError as exc:  # the pictures are there: a missing keyboard is not a failed delivery
            log.warning("buttons for the album of job %s not sent: %s", job.id, exc)

    async def say(self, text: str) -> None:
        """A refusal: shown in the status message when there is one, else as a reply."""
        if self.status is not None:
            await self.show(f"❌ {text}", NONE)
            return
        try:
            await self._take()
            await self._send(text, None)
        except WAITS as exc:
            raise self._refused(exc.seconds) from exc
        except GONE as exc:
            log.info("cannot answer in chat %s: %s", self.chat, type(exc).__name__)

    async def finish(self, job: Job) -> None:
        """The image is there: the status message goes."""
        if self.status is None:
            return
        try:
            await self.status.delete()
        except errors.RPCError as exc:
            log.info("status message not deleted: %s", exc)

    async def preview(self, image: bytes, text: str) -> bool:
        """The preview photo: sent as a reply the first time, its media replaced after; ``False`` once gone."""
        try:
            photo = await asyncio.to_thread(preview_photo, image)
        except OSError as exc:  # not an image Pillow knows: this preview is skipped
            log.info("preview skipped: %s", exc)
            return True
        caption = truncate_utf16(text, CAPTION_LIMIT)
        try:
            if self.preview_message is None:
                self.preview_message = await self.outbox.client.send_file(
                    self.chat, photo, caption=caption, reply_to=self.reply_to, parse_mode=None)
            else:
                await self.preview_message.edit(caption, file=photo, parse_mode=None)
        except errors.MessageNotModifiedError:
            pass
        except WAITS as exc:
            raise self._refused(exc.seconds) from exc
        except GONE as exc:
            log.info("preview in chat %s is gone: %s", self.chat, type(exc).__name__)
            return False
        except PHOTO_ERRORS as exc:
            log.info("preview refused as a photo (%s); previews stop", type(exc).__name__)
            return False
        except errors.RPCError as exc:
            log.warning("preview failed: %s", exc)
        return True

    def preview_ref(self) -> str:
        """The preview photo's message id, kept with the job so that a restart can still delete it."""
        return str(getattr(self.preview_message, "id", ""))

    async def clear_preview(self) -> None:
        """The result (or the failure) is shown: the preview photo goes."""
        message, self.preview_message = self.preview_message, None
        if message is None:
            return
        try:
            await message.delete()
        except WAITS as exc:
            self.preview_message = message
            raise RetryAfter(exc.seconds) from exc
        except errors.RPCError as exc:
            log.info("preview message not deleted: %s", exc)

    # ------------------------------------------------------------------ helpers
    async def _send(self, text: str, markup: Any) -> Any:
        return await self.outbox.client.send_message(self.chat, truncate_utf16(text, MESSAGE_LIMIT),
                                                     reply_to=self.reply_to, buttons=markup, parse_mode=None)

    async def _take(self) -> None:
        if self.budget is not None:
            await self.budget.take(self.chat_key)

    def _refused(self, seconds: float) -> RetryAfter:
        """Telegram asked to wait: the chat's budget learns it, and the conversation gets the wait to raise."""
        if self.budget is not None:
            self.budget.refused(self.chat_key, seconds)
        return RetryAfter(seconds)

    def _markup(self, wanted: Buttons) -> Any:
        if self.outbox.userbot or not wanted.actions:
            return None  # userbots cannot send inline buttons
        if "cancel" in wanted.actions:
            return keyboards.cancel_buttons(wanted.job_id, self.owner)
        return keyboards.result_buttons(wanted, self.owner)


def preview_photo(image: bytes) -> io.BytesIO:
    """A named in-memory photo Telethon uploads as a photo: PNG and JPEG as they are, others as JPEG."""
    if image.startswith(b"\x89PNG"):
        name, data = "preview.png", image
    elif image.startswith(b"\xff\xd8"):
        name, data = "preview.jpg", image
    else:  # WebP and the like would go as a document or a sticker
        with PILImage.open(io.BytesIO(image)) as picture:
            buffer = io.BytesIO()
            picture.convert("RGB").save(buffer, format="JPEG", quality=85)
        name, data = "preview.jpg", buffer.getvalue()
    photo = io.BytesIO(data)
    photo.name = name
    return photo
