"""Where one Discord job is answered: the deferred response, its follow-up, or the channel.

Implements ``core.chat.conversation.ReplyTarget`` (with ``Prepares`` and ``ShowsPreview``: the
deferred response is edited with the preview attached, and the attachment is removed once the
result has been sent, so only the result's image stays). The interaction token is
kept in the job's delivery target so that after a restart the original response is still finished
while the token is valid (15 minutes from the interaction); after that the image is posted in the
channel with a nonce Discord deduplicates (``enforce_nonce``), or sent by DM when it was private,
and the old status is marked as moved where Discord allows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import aiohttp
import discord

from core import Job
from core.chat.conversation import Buttons, DeliveryRefused
from core.chat.pacing import RetryAfter
from platforms.discord.result import Result, preview_file
from platforms.discord.sealing import seal, unseal
from platforms.discord.views import buttons_view

log = logging.getLogger(__name__)
TOKEN_LIFE = dt.timedelta(minutes=15)
TOKEN_MARGIN = dt.timedelta(seconds=30)
MOVED = "➡️ The result was posted below as a new message."


class Acknowledgements:
    """Deferrals in flight: status edits wait for them, so a burst never pushes one past Discord's 3 s."""

    def __init__(self) -> None:
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        """A deferral is about to be sent."""
        self._pending += 1
        self._idle.clear()

    def end(self) -> None:
        """It was sent (or failed)."""
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    async def quiet(self) -> None:
        """Until no deferral is waiting."""
        await self._idle.wait()


ACKS = Acknowledgements()


def token_usable(expires_at: dt.datetime) -> bool:
    """Whether an interaction token still has time for a request (15 minutes, less a margin)."""
    return discord.utils.utcnow() < expires_at - TOKEN_MARGIN


def nonce(job_id: str) -> str:
    """At most 25 characters, the same for every send of one job: Discord keeps only the first."""
    return f"sakai{job_id}"[:25]


class DiscordTarget:
    """One job's replies: through the interaction while its token lives, then in the channel."""

    budget = None
    chat_key = ""

    def __init__(self, client: discord.Client, *, interaction_id: int, token: str, channel_id: int,
                 user_id: int, private: bool, message_id: int | None = None,
                 interaction: discord.Interaction | None = None, upload_limit: int | None = None) -> None:
        self.client, self.interaction = client, interaction
        self.interaction_id, self.token, self.message_id = interaction_id, token, message_id
        self.channel_id, self.user_id, self.private = channel_id, user_id, private
        self.expires_at = discord.utils.snowflake_time(interaction_id) + TOKEN_LIFE
        self.upload_limit = upload_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        self.previewing = False

    @classmethod
    def live(cls, interaction: discord.Interaction, private: bool) -> DiscordTarget:
        """For an interaction being answered now."""
        return cls(interaction.client, interaction_id=interaction.id, token=interaction.token,
                   channel_id=interaction.channel_id or 0, user_id=interaction.user.id, private=private,
                   interaction=interaction, upload_limit=interaction.filesize_limit)

    @classmethod
    def resumed(cls, client: discord.Client, where: dict[str, str]) -> DiscordTarget:
        """After a restart, from the job's delivery target."""
        token = unseal(where.get("token", ""), client.http.token or "")
        target = cls(client, interaction_id=int(where.get("interaction") or 0), token=token,
                     channel_id=int(where["channel"]), user_id=int(where["user"]), private=where.get("private") == "1",
                     message_id=int(where["message"]) if where.get("message") else None)
        target.previewing = bool(where.get("preview"))  # a preview shown before the restart still goes
        return target

    @property
    def webhook(self) -> discord.Webhook:
        """The interaction's follow-up webhook, as ``Interaction.followup`` builds it."""
        data: Any = {"id": self.client.application_id, "type": 3, "token": self.token}
        return discord.Webhook.from_state(data=data, state=self.client._connection)

    def _token_alive(self) -> bool:
        return bool(self.token) and token_usable(self.expires_at)

    # ------------------------------------------------------------------ the conversation's calls
    async def prepare(self) -> dict[str, str]:
        """Defer within Discord's 3 seconds ("thinking…"), privately for a private request."""
        assert self.interaction is not None
        if not self.interaction.response.is_done():
            ACKS.begin()
            try:
                response = await self.interaction.response.defer(thinking=True, ephemeral=self.private)
            finally:
                ACKS.end()
            self.message_id = getattr(response, "message_id", None)
        return {"channel": str(self.channel_id), "user": str(self.user_id), "private": "1" if self.private else "0",
                "interaction": str(self.interaction_id), "token": seal(self.token, self.client.http.token or ""),
                "message": str(self.message_id or "")}

    async def show(self, text: str, buttons: Buttons) -> bool:
        """Edit the deferred response; ``False`` once its token or message is gone."""
        return await self._edit_response("status edit", content=text[:2000], view=self._view(buttons)) is not False

    async def _edit_response(self, what: str, **fields: Any) -> bool | None:
        """Edit the deferred response: ``True`` edited, ``None`` failed this once, ``False`` gone for good."""
        if not self._token_alive() or self.message_id is None:
            return False
        await ACKS.quiet()
        try:
            await self.webhook.edit_message(self.message_id, **fields)
            return True
        except discord.RateLimited as exc:
            raise RetryAfter(exc.retry_after) from exc
        except discord.NotFound:
            return False
        except discord.HTTPException as exc:
            log.warning("%s failed: %s", what, exc)
            return None
        except (aiohttp.ClientError, RuntimeError) as exc:  # the client closed under us (shutdown)
            log.info("%s dropped: %s", what, exc)
            return False

    async def preview(self, image: bytes, text: str) -> bool:
        """The deferred response with the preview attached (replacing the last); ``False`` once it is gone."""
        if not self._token_alive() or self.message_id is None:
            return False
        try:
            file = await asyncio.to_thread(preview_file, image, self.upload_limit)
        except OSError as exc:  # not an image Pillow knows: this preview is skipped
            log.info("preview skipped: %s", exc)
            return True
        edited = await self._edit_response("preview", content=text[:2000], attachments=[file])
        self.previewing = self.previewing or bool(edited)
        return edited is not False

    def preview_ref(self) -> str:
        """A preview rides on the deferred response itself: the record only needs to know there was one."""
        return "1"

    async def clear_preview(self) -> None:
        """The result is there: the preview attachment goes from the old response."""
        if not self.previewing or self.message_id is None:
            return
        try:
            if self._token_alive():
                await self.webhook.edit_message(self.message_id, attachments=[])
            elif not self.private:  # the bot may edit its own public message without the token
                channel = self.client.get_partial_messageable(self.channel_id)
                await channel.get_partial_message(self.message_id).edit(attachments=[])
            self.previewing = False
        except discord.RateLimited as exc:
            raise RetryAfter(exc.retry_after) from exc
        except discord.HTTPException as exc:
            log.info("preview %s not removed: %s", self.message_id, exc)
        except (aiohttp.ClientError, RuntimeError) as exc:  # the client closed under us (shutdown)
            log.info("preview %s not removed: %s", self.message_id, exc)

    async def deliver(self, job: Job) -> None:
        """A follow-up while the token lives; else a DM (private) or a deduplicated channel post."""
        models = getattr(getattr(self.client, "platform", None), "engine", None)
        result = await Result.of(job, self.user_id, self.upload_limit, models.models if models is not None else None)
        try:
            if self._token_alive() and await self._followup(result):
                return
            if self.private:
                await self._direct(result)
            else:
                await self._post(job, result)
        except discord.RateLimited as exc:
            raise RetryAfter(exc.retry_after) from exc
        except discord.HTTPException as exc:
            raise DeliveryRefused("The image was made but Discord refused it.", detail=str(exc)) from exc

    async def say(self, text: str) -> None:
        """A refusal, privately: the public "thinking…" goes and an ephemeral message says why."""
        content = f"❌ {text}"[:2000]
        interaction = self.interaction
        try:
            if interaction is not None and not interaction.response.is_done():
                await interaction.response.send_message(content, ephemeral=True)
                return
            if self.message_id is not None and not self.private:
                await self.webhook.delete_message(self.message_id)
                self.message_id = None
            elif self.message_id is not None:
                await self.webhook.edit_message(self.message_id, content=content)
                return
            await self.webhook.send(content, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer interaction %s: %s", self.interaction_id, exc)

    # ------------------------------------------------------------------ helpers
    def _view(self, buttons: Buttons) -> discord.ui.View | None:
        return buttons_view(buttons, self.user_id)

    async def _followup(self, result: Result) -> bool:
        try:
            await self.webhook.send(files=result.files(), embed=result.embed, ephemeral=self.private, wait=True,
                                    **_view(result))
            return True
        except discord.NotFound:
            return False  # the token died meanwhile: post in the channel instead

    async def _direct(self, result: Result) -> None:
        user = discord.Object(id=self.user_id)
        channel = await self.client.create_dm(user)
        await channel.send(content="Your private image is ready.", files=result.files(), embed=result.embed,
                           **_view(result))

    async def _post(self, job: Job, result: Result) -> None:
        channel = self.client.get_partial_messageable(self.channel_id)
        await channel.send(content=f"<@{self.user_id}> your image is ready.", files=result.files(),
                           embed=result.embed, nonce=nonce(job.id), **_view(result))
        await self._mark_moved(channel)

    async def _mark_moved(self, channel: discord.PartialMessageable) -> None:
        """Point the stale "thinking…" at the new message (the bot may edit its own public messages)."""
        if self.message_id is None:
            return
        try:
            await channel.get_partial_message(self.message_id).edit(content=MOVED, view=None)
        except discord.HTTPException as exc:
            log.info("old status %s not marked as moved: %s", self.message_id, exc)


def _view(result: Result) -> dict[str, Any]:
    """``view=`` only when there are buttons: discord.py refuses ``view=None`` on a new message."""
    return {"view": result.view} if result.view is not None else {}
