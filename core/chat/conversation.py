"""One conversation per job, the same on every platform: status, follow, deliver once, resume.

An adapter parses a platform event into a command, a requester and a reply target, and hands them
here. The conversation submits the command, shows the job's status through the target (paced),
follows the job's events, delivers the result once (``begin_delivery`` → ``deliver`` →
``delivered``), shows failures, and picks the same work up again after a restart. Adapters only
implement ``ReplyTarget``; optional capabilities (``Finishes``, ``ChatPaced``, ``ShowsPreview``) are
checked with ``isinstance`` at run time, with a plain fallback when a platform lacks them.

Previews (progress events that carry an image) go to a target that ``ShowsPreview`` through their
own pacer: one in flight, the newest wins, no more often than ``preview_interval``, inside the
chat's budget, held by the same platform waits as the status; none is shown once the job has
ended, and the preview is cleared after the final image (or the failure) is shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.chat.commands import Command, ImageCommand, UpscaleCommand
from core.chat.followers import Followers
from core.chat.inputs import Fetch, Inputs, offers_upscale
from core.chat.messages import elapsed, status_text
from core.chat.pacing import REAL_CLOCK, ChatBudget, Clock, Hold, PacedStatus, RetryAfter
from core.chat.service import ChatService, JobReply, Reply, TextReply
from core.engine.handle import JobHandle
from core.errors import SakaiError
from core.interfaces import ImageModel
from core.types import EventKind, Job, JobEvent, Requester

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Buttons:
    """Which buttons go under a message, for which job; each adapter renders them its own way."""

    job_id: str = ""
    actions: tuple[str, ...] = ()
    images: int = 1  # result pictures that "variation" and "upscale" each have one button for

    @classmethod
    def live(cls, job_id: str) -> Buttons:
        """Under a waiting or running job's status."""
        return cls(job_id, ("cancel",))

    @classmethod
    def result(cls, job_id: str, images: int = 1, *, upscale: bool = False) -> Buttons:
        """Under finished images: Reroll, a Variation per picture, and an Upscale per picture if offered."""
        return cls(job_id, ("reroll", "variation", "upscale") if upscale else ("reroll", "variation"), images)

    @classmethod
    def of(cls, job: Job, models: Mapping[str, ImageModel]) -> Buttons:
        """The result buttons ``job`` gets here: Upscale where a model upscales; none under an upscale (it is done)."""
        if job.request.options.upscale is not None:
            return cls(job.id, (), max(1, len(job.results)))
        return cls.result(job.id, max(1, len(job.results)), upscale=offers_upscale(models))


NONE = Buttons()
MakeReply = Callable[[dict[str, str]], Awaitable[Reply]]
Remember = Callable[[dict[str, str]], Awaitable[None]]
MAX_WAITS = 20  # platform waits in a row before a delivery is given up


class DeliveryRefused(SakaiError):
    """The platform refused the finished image for good (not a wait)."""

    default_message = "The image was made but could not be sent here."


class ReplyTarget(Protocol):
    """Where one job's conversation happens; each adapter implements it."""

    async def show(self, text: str, buttons: Buttons) -> bool:
        """Show the job's status (send it the first time, edit it after); ``False`` once it is gone for good.

        Raise ``RetryAfter`` when the platform asks to wait: the latest status is shown after the wait.
        """

    async def deliver(self, job: Job) -> None:
        """Send the finished images (``job.results``, one or several) with ``Buttons.of`` buttons;
        ``RetryAfter`` to be called again (pictures already sent are not sent twice), else ``DeliveryRefused``."""

    async def say(self, text: str) -> None:
        """Answer with text that is not a status (a refusal before any job exists)."""


@runtime_checkable
class Prepares(Protocol):
    """Optional: answer at once, before the job exists (a first status message, a deferral)."""

    async def prepare(self) -> dict[str, str]:
        """Answer now; return what to add to the job's delivery target (e.g. the status message id).

        Raise ``RetryAfter`` when the platform asks to wait: the command waits, then runs.
        """


@runtime_checkable
class Finishes(Protocol):
    """Optional: what happens to the status once the image is there (Telegram deletes it)."""

    async def finish(self, job: Job) -> None:
        """Tidy the status after a delivery."""


@runtime_checkable
class ChatPaced(Protocol):
    """Optional: the target's chat has a message budget shared by every job in it."""

    budget: ChatBudget | None
    chat_key: str


@runtime_checkable
class ShowsPreview(Protocol):
    """Optional: the target can show a preview image of the job being generated."""

    async def preview(self, image: bytes, text: str) -> bool:
        """Show ``image`` (the newest preview) with the status ``text``; ``False`` once previews cannot go here.

        Raise ``RetryAfter`` when the platform asks to wait: only the newest preview is shown after it.
        """

    def preview_ref(self) -> str:
        """What the job's record keeps once a preview is shown (a message id), so a restart can remove it."""

    async def clear_preview(self) -> None:
        """The job has ended: take the preview away (the final image or the failure replaces it).

        Raise ``RetryAfter`` when the platform asks to wait: it is called again after the wait.
        """


class Previews:
    """One job's previews: paced like a status (newest wins, one in flight), and none after ``end``."""

    def __init__(self, target: ShowsPreview, interval: float, *, budget: ChatBudget | None, key: str,
                 clock: Clock, hold: Hold, remember: Remember, shown: bool = False) -> None:
        self.target, self.shown, self.remember = target, shown, remember
        self.pacer = PacedStatus(self._apply, interval, budget=budget, key=key, clock=clock, hold=hold,
                                 background=True)

    async def _apply(self, text: str, image: bytes) -> bool:
        first = not self.shown
        still = await self.target.preview(image, text)
        self.shown = True
        if first:  # kept with the job, so that a restart can still take the preview away
            await self.remember({"preview": self.target.preview_ref()})
        return still

    async def show(self, text: str, image: bytes) -> None:
        """Show this preview when the pacing allows (a newer one replaces it while it waits)."""
        await self.pacer.show(text, image)

    async def end(self) -> None:
        """No preview from now on; one being sent has landed when this returns."""
        await self.pacer.stop()


@dataclass(slots=True)
class Pacers:
    """What paces one job's messages: its status, and its previews where the target shows them."""

    status: PacedStatus
    previews: Previews | None = None

    async def close(self) -> None:
        """The conversation stops following: nothing more is edited."""
        await self.status.close()
        if self.previews is not None:
            await self.previews.end()


class Conversation:
    """Drives reply targets for one platform; ``interval`` paces status edits, ``preview_interval`` previews."""

    def __init__(self, engine: Engine, platform: str, *, interval: float, clock: Clock = REAL_CLOCK,
                 preview_interval: float = 5.0) -> None:
        self.engine, self.platform, self.interval, self.clock = engine, platform, interval, clock
        self.preview_interval = preview_interval
        self.chat = ChatService(engine)
        self.followers = Followers(platform)
        self._waiting: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ entry points
    async def start(self, command: Command, requester: Requester, target: ReplyTarget,
                    delivery: dict[str, str] | None = None, inputs: Inputs | None = None) -> None:
        """Carry out ``command``; a job is followed in the background, a text or refusal is said.

        An image command is answered first (``Prepares``); if the platform asks to wait for that
        answer, the command waits in the background and runs when the platform allows. ``inputs``
        fetches the command's pictures after that first answer (a download may take a while).
        """
        async def make(where: dict[str, str]) -> Reply:
            return await self.chat.answer(command, requester, where, inputs)

        await self._begin(make, isinstance(command, ImageCommand | UpscaleCommand), target, dict(delivery or {}))

    async def again(self, job_id: str, variation: bool, requester: Requester, target: ReplyTarget,
                    delivery: dict[str, str] | None = None, image: Fetch | None = None) -> None:
        """Reroll or Variation of a past job: its whole request again, with a new seed (see ``ChatService``)."""
        async def make(where: dict[str, str]) -> Reply:
            return await self.chat.again(job_id, variation, requester, where, image)

        await self._begin(make, True, target, dict(delivery or {}))

    async def upscale(self, job_id: str, requester: Requester, target: ReplyTarget, image: Fetch,
                      delivery: dict[str, str] | None = None) -> None:
        """Upscale one result picture of a past job, fetched by ``image``."""
        async def make(where: dict[str, str]) -> Reply:
            return await self.chat.upscale(job_id, requester, image, where)

        await self._begin(make, True, target, dict(delivery or {}))

    async def _begin(self, make: MakeReply, prepare: bool, target: ReplyTarget, delivery: dict[str, str]) -> None:
        if prepare and isinstance(target, Prepares):
            try:
                delivery |= await target.prepare()
            except RetryAfter as wait:
                self._wait_then_begin(wait.seconds, make, target, delivery)
                return
        await self.reply(await make(delivery), target)

    def _wait_then_begin(self, seconds: float, make: MakeReply, target: ReplyTarget,
                         delivery: dict[str, str]) -> None:
        log.info("%s asks to wait %.0f s before answering; the command waits", self.platform, seconds)

        async def later() -> None:
            await self.clock.sleep(seconds)
            await self._begin(make, True, target, delivery)

        task = asyncio.create_task(later(), name=f"{self.platform}-waiting-command")
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def reply(self, reply: Reply, target: ReplyTarget) -> None:
        """Follow a job reply; say a text reply."""
        if isinstance(reply, JobReply):
            await self._follow_now(reply.handle, target)
        elif isinstance(reply, TextReply):
            await self.say(target, reply.text)

    def follow(self, handle: JobHandle, target: ReplyTarget) -> None:
        """Follow ``handle`` in the background, showing it through ``target``."""
        self.followers.start(self.run(handle, target), handle)

    async def resume(self, target_for: Callable[[Job], Awaitable[ReplyTarget | None]]) -> int:
        """After a restart: every job this platform left, followed again through the target it names."""
        handles = await self.engine.resume(self.platform)
        for handle in handles:
            self.followers.start(self._resumed(handle, target_for), handle)
        return len(handles)

    async def _resumed(self, handle: JobHandle, target_for: Callable[[Job], Awaitable[ReplyTarget | None]]) -> None:
        target = await target_for(handle.job)
        if target is None:
            log.warning("job %s has no %s reply target; it runs but cannot be delivered", handle.id, self.platform)
            await handle.wait()
            return
        await self.run(handle, target)

    async def close(self) -> None:
        """Stop following, giving deliveries a moment (see ``Followers.close``); drop waiting commands."""
        for task in list(self._waiting):
            task.cancel()
        await asyncio.gather(*self._waiting, return_exceptions=True)
        await self.followers.close()

    # ------------------------------------------------------------------ one job
    def _pacer(self, target: ReplyTarget, job: Job) -> Pacers:
        budget, key = (target.budget, target.chat_key) if isinstance(target, ChatPaced) else (None, "")
        hold = Hold()
        status = PacedStatus(target.show, self.interval, budget=budget, key=key, clock=self.clock, hold=hold)
        if not isinstance(target, ShowsPreview):
            return Pacers(status)

        async def remember(fields: dict[str, str]) -> None:
            await self.engine.note_delivery(job.id, fields)

        return Pacers(status, Previews(target, self.preview_interval, budget=budget, key=key, clock=self.clock,
                                       hold=hold, remember=remember, shown="preview" in job.request.delivery))

    async def run(self, handle: JobHandle, target: ReplyTarget) -> None:
        """Follow one job to its end through ``target``."""
        await self._rest(handle.events(), self._pacer(target, handle.job), target)

    async def _follow_now(self, handle: JobHandle, target: ReplyTarget) -> None:
        """The admitted status in the caller's task (not behind every other task), the rest in the background."""
        pacers = self._pacer(target, handle.job)
        events = handle.events()
        first = await anext(events)  # submit has published it already: no wait
        await self._on(first, pacers, target)
        if first.kind.final:
            await pacers.close()
            return
        self.followers.start(self._rest(events, pacers, target), handle)

    async def _rest(self, events: AsyncIterator[JobEvent], pacers: Pacers, target: ReplyTarget) -> None:
        try:
            async for event in events:
                await self._on(event, pacers, target)
        finally:
            await pacers.close()

    async def _on(self, event: JobEvent, pacers: Pacers, target: ReplyTarget) -> None:
        status = pacers.status
        if event.kind is EventKind.DONE:
            await status.close()
            await self._end_previews(pacers)
            await self.deliver(event.job, status, target)
            await self._clear_preview(pacers, target)
        elif event.kind.final:
            await self._end_previews(pacers)
            await status.show(status_text(event), NONE, now=True)
            await status.drain()
            await self._clear_preview(pacers, target)
        else:
            try:
                await status.show(status_text(event), Buttons.live(event.job.id))
                if event.preview is not None and pacers.previews is not None:
                    await pacers.previews.show(status_text(event), event.preview)
            except Exception:  # a status that failed to show must never stop the image from coming
                log.warning("job %s: a status update failed", event.job.id, exc_info=True)

    @staticmethod
    async def _end_previews(pacers: Pacers) -> None:
        if pacers.previews is not None:
            await pacers.previews.end()

    async def _clear_preview(self, pacers: Pacers, target: ReplyTarget) -> None:
        """After the final image (or the failure) is shown: the preview goes, through the platform's waits."""
        if pacers.previews is None or not pacers.previews.shown or not isinstance(target, ShowsPreview):
            return
        pacers.previews.shown = False
        if not await self._through_waits(target.clear_preview):
            log.warning("gave up removing a preview on %s after repeated waits", self.platform)

    async def deliver(self, job: Job, status: PacedStatus, target: ReplyTarget) -> None:
        """Send the result once: recorded as delivering before, delivered after."""
        if not await self.engine.begin_delivery(job.id):
            log.info("job %s was delivered already (or resent once after a crash): not sent again", job.id)
            return
        try:
            await self._send(job, target)
        except SakaiError as exc:
            log.warning("could not deliver job %s: %s", job.id, exc)
            await status.show(f"❌ {exc.user_message}", NONE, now=True)
            await status.drain()
            return
        await self.engine.delivered(job.id)
        if isinstance(target, Finishes):
            await target.finish(job)
        else:
            await status.show(f"✅ Done in {elapsed(job):.1f} s", NONE, now=True)
            await status.drain()

    async def _send(self, job: Job, target: ReplyTarget) -> None:
        """``target.deliver``, sleeping through the platform's waits and network faults: the image is kept."""
        for attempt in range(MAX_WAITS):
            try:
                await target.deliver(job)
                return
            except RetryAfter as wait:
                log.info("job %s: the platform asks to wait %.0f s before the image", job.id, wait.seconds)
                await self.clock.sleep(wait.seconds)
            except SakaiError:
                raise
            except Exception:  # a dropped connection or a timeout: try again shortly, with backoff
                log.warning("job %s: sending the image failed; trying again", job.id, exc_info=True)
                await self.clock.sleep(min(30.0, 2.0 ** attempt))
        raise DeliveryRefused("The image was made but the chat service kept failing; ask again later.")

    async def say(self, target: ReplyTarget, text: str) -> None:
        """``target.say``, sleeping through the platform's waits: a command is answered when allowed."""
        if not await self._through_waits(lambda: target.say(text)):
            log.warning("gave up answering on %s after repeated waits", self.platform)

    async def _through_waits(self, call: Callable[[], Awaitable[None]]) -> bool:
        """``call()``, sleeping through the platform's waits; ``False`` if it kept asking ``MAX_WAITS`` times."""
        for _ in range(MAX_WAITS):
            try:
                await call()
                return True
            except RetryAfter as wait:
                await self.clock.sleep(wait.seconds)
        return False
