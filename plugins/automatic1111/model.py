"""One model on an AUTOMATIC1111-compatible WebUI: txt2img, img2img, upscaling, progress, interrupt on cancel."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

import httpx

from core import (
    BackendError,
    Capabilities,
    CheckResult,
    CheckStatus,
    EngineView,
    GenerationRequest,
    Image,
    ImageModel,
    InputSupport,
    InvalidImage,
    JobCancelled,
    Progress,
    SakaiError,
    sizes_for_area,
)
from core.http import send
from core.imaging import checked_image, decode_base64, sniff
from core.types import MAX_SEED
from plugins.automatic1111.bodies import EXTRAS, request_body, upscale_body
from plugins.automatic1111.errors import map_error, parse_body
from plugins.automatic1111.settings import Automatic1111Settings
from plugins.automatic1111.tracking import JobTracker, Mode
from plugins.automatic1111.watch import ServerState

log = logging.getLogger(__name__)
SERVICE = "The image server"
INTERRUPT_TIMEOUT = 5.0


class Automatic1111Model(ImageModel):
    """Sends txt2img or img2img (batches natively), upscales with extras; interrupts only its own job."""

    def __init__(self, name: str, settings: Automatic1111Settings, engine: EngineView) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine  # only engine.http is used, and only once running (the client is made at start)
        self.base = settings.url.rstrip("/")
        self._mode = Mode.PROBING  # learnt on the first job: does the server track our task id?
        self._deferred: set[asyncio.Task[None]] = set()
        self.description = settings.description or f"Stable Diffusion on your WebUI at {self.base}."
        self.capabilities = Capabilities(
            sizes=sizes_for_area(settings.area, multiple=64), max_prompt_length=settings.max_prompt_length,
            supports_seed=True, supports_negative_prompt=True, max_steps=settings.max_steps,
            default_steps=settings.steps, default_concurrency=1,
            inputs=InputSupport(image_to_image=True, masks=True, strength=True),
            upscale_factors=tuple(settings.upscale_factors) if settings.upscaler else (),
            max_batch=settings.max_batch,
        )

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """One image: an upscale, an img2img or a txt2img."""
        if request.upscale:
            return await self._upscale(request, progress)
        return (await self._generate(request, 1, progress))[0]

    async def generate_batch(self, request: GenerationRequest, count: int, progress: Progress) -> list[Image]:
        """``count`` images in calls of at most ``max_batch`` (the WebUI's ``batch_size``, seeds seed, seed + 1, …)."""
        if request.upscale or count <= 1:
            return await super().generate_batch(request, count, progress)
        images: list[Image] = []
        for start in range(0, count, self.settings.max_batch):
            seed = None if request.seed is None else (request.seed + start) % (MAX_SEED + 1)
            part = dataclasses.replace(request, seed=seed)
            images += await self._generate(part, min(self.settings.max_batch, count - start), progress)
        return images

    async def _upscale(self, request: GenerationRequest, progress: Progress) -> Image:
        """``extra-single-image`` with the configured upscaler; it holds the server's lock like a generation."""
        response = await self._send("POST", EXTRAS, json=upscale_body(self.settings, request),
                                    timeout=self.settings.timeout)
        if response.status_code >= 400:
            raise map_error(response.status_code, response.text)
        data = await asyncio.to_thread(_upscaled, response.text)
        await progress(1.0)
        return await checked_image(data, model=self.name, seed=None, backend="automatic1111",
                                   upscaler=self.settings.upscaler, upscale=request.upscale)

    async def _generate(self, request: GenerationRequest, batch: int, progress: Progress) -> list[Image]:
        """Run txt2img or img2img while a poller reports progress; on cancel, stop our job on the server."""
        path, body = await request_body(self.settings, request, batch)
        body["force_task_id"] = f"sakaibot-{uuid.uuid4().hex}"  # servers that do not know it ignore it
        tracker = JobTracker(self._send, body["force_task_id"], body["steps"], self._mode)
        await tracker.begin()
        poller = asyncio.create_task(self._follow(tracker, progress), name=f"{self.name}-progress")
        try:
            response = await self._send("POST", path, json=body, timeout=self.settings.timeout)
        except asyncio.CancelledError:
            await self._stop(tracker)
            raise
        finally:
            await _stopped(poller)
            self._mode = tracker.mode if tracker.mode is not Mode.PROBING else self._mode
        if response.status_code >= 400:
            raise map_error(response.status_code, response.text)
        await self._raise_if_interrupted(tracker)
        return await self._images(response, request, batch)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await send(self.engine.http, method, f"{self.base}{path}", service=SERVICE,
                          auth=self.settings.basic_auth(), **kwargs)

    async def _follow(self, tracker: JobTracker, progress: Progress) -> None:
        """Poll until cancelled; failures here are left to the txt2img request to report."""
        reported, last_image = 0.0, None
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                ours, state = await tracker.poll(previews=self.settings.previews)
            except SakaiError as exc:
                log.debug("progress poll failed: %s", exc)
                continue
            if not ours:
                continue
            preview = await asyncio.to_thread(_preview, state.image) if state.image != last_image else None
            last_image = state.image or last_image
            reported = max(reported, min(state.progress, 1.0))
            await progress(reported, preview)

    async def _stop(self, tracker: JobTracker) -> None:
        """Interrupt our job if it runs; if it still waits for the server's lock, interrupt it once it starts."""
        try:
            async with asyncio.timeout(INTERRUPT_TIMEOUT):
                if await tracker.ours_running():
                    await self._interrupt(tracker)
                    return
                status = await tracker.task_status()
        except (SakaiError, TimeoutError) as exc:
            log.warning("%s: could not interrupt the server: %s", self.name, exc)
            return
        if status is not None and status.queued:
            self._later(self._interrupt_when_started(tracker))
        else:
            log.info("%s: cancelled while another job ran on %s; not interrupting it", self.name, self.base)

    async def _interrupt(self, tracker: JobTracker) -> None:
        await self._send("POST", "/sdapi/v1/interrupt", timeout=INTERRUPT_TIMEOUT)
        log.info("%s: interrupted our job on %s (%s)", self.name, self.base, tracker.describe())

    async def _interrupt_when_started(self, tracker: JobTracker) -> None:
        """The server runs a request even after we hung up: stop ours when it gets the lock."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                while (status := await tracker.task_status()) is not None and not status.completed:
                    if status.active and await tracker.ours_running():
                        await self._interrupt(tracker)
                        return
                    await asyncio.sleep(self.settings.poll_interval)
        except (SakaiError, TimeoutError) as exc:
            log.warning("%s: gave up waiting to interrupt a cancelled job: %s", self.name, exc)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{self.name}-deferred-interrupt")
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

    async def _raise_if_interrupted(self, tracker: JobTracker) -> None:
        """A job interrupted on the server (from its UI) returns a half-made picture: do not deliver it."""
        try:
            state: ServerState | None = await tracker.state(previews=False)
        except SakaiError:
            state = None
        watch = tracker.watch
        if any(seen is not None and watch.interrupted(seen) for seen in (state, watch.last)):
            raise JobCancelled("The job was stopped on the image server.")

    async def aclose(self) -> None:
        """Stop waiting to interrupt cancelled jobs."""
        for task in list(self._deferred):
            task.cancel()
        await asyncio.gather(*self._deferred, return_exceptions=True)

    async def _images(self, response: httpx.Response, request: GenerationRequest, batch: int) -> list[Image]:
        # An answer is megabytes of JSON and base64: parsed off the event loop.
        pictures, info = await asyncio.to_thread(_pictures, response.text, batch)
        listed = info.get("all_seeds")
        seeds: list[Any] = listed if isinstance(listed, list) else [info.get("seed", request.seed)]
        images = []
        for index, data in enumerate(pictures):
            seed = seeds[index] if index < len(seeds) else None
            images.append(await checked_image(data, model=self.name, seed=seed if isinstance(seed, int) else None,
                                              backend="automatic1111", checkpoint=info.get("sd_model_name"),
                                              sampler=info.get("sampler_name")))
        return images

    async def check(self) -> CheckResult:
        """List the server's checkpoints: proves the address, the login and the configured checkpoint."""
        try:
            response = await self._send("GET", "/sdapi/v1/sd-models", timeout=15)
        except SakaiError as exc:
            return CheckResult(CheckStatus.UNREACHABLE, exc.detail or exc.user_message)
        status = response.status_code
        if status in (401, 403):
            variable = self.settings.auth_env or "auth_env"
            return CheckResult(CheckStatus.BAD_CREDENTIALS, f"HTTP {status}: check {variable}")
        if status >= 400:
            return CheckResult(CheckStatus.UNREACHABLE, f"HTTP {status} (is the WebUI started with --api?)")
        result = self._checkpoints(response.text)
        if result.status is not CheckStatus.OK:
            return result
        return await self._upscaler_missing() or result

    async def _upscaler_missing(self) -> CheckResult | None:
        """MISCONFIGURED when the configured upscaler is not in ``/sdapi/v1/upscalers``."""
        wanted = self.settings.upscaler
        if not wanted:
            return None
        try:
            response = await self._send("GET", "/sdapi/v1/upscalers", timeout=15)
        except SakaiError as exc:
            return CheckResult(CheckStatus.UNREACHABLE, exc.detail or exc.user_message)
        items = parse_list(response.text) if response.status_code == 200 else []
        names = [str(item.get("name")) for item in items if isinstance(item, dict)]
        if wanted in names:
            return None
        return CheckResult(CheckStatus.MISCONFIGURED, f"upscaler {wanted!r} is not on the server; it has: "
                                                      f"{', '.join(names[:10]) or 'none listed'}")

    def _checkpoints(self, text: str) -> CheckResult:
        try:
            items = json.loads(text)
        except ValueError:
            return CheckResult(CheckStatus.MISCONFIGURED, "not a WebUI API answer (is the WebUI started with --api?)")
        titles = [str(i.get("title")) for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        names = set(titles) | {str(i.get("model_name")) for i in items if isinstance(i, dict)}
        listed = ", ".join(titles[:10]) + (" …" if len(titles) > 10 else "")
        wanted = self.settings.checkpoint
        if wanted and wanted not in names:
            missing = f"checkpoint {wanted!r} is not on the server; it has: {listed}"
            return CheckResult(CheckStatus.MISCONFIGURED, missing)
        return CheckResult(CheckStatus.OK, f"{len(titles)} checkpoint(s): {listed}")


def parse_list(text: str) -> list[Any]:
    """A JSON list answer, or ``[]``."""
    try:
        items = json.loads(text)
    except ValueError:
        return []
    return items if isinstance(items, list) else []


async def _stopped(task: asyncio.Task[None]) -> None:
    """Cancel the poller and wait for it, without mistaking its cancellation for ours."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.warning("the progress poller failed", exc_info=task.exception())



def _pictures(text: str, batch: int) -> tuple[list[bytes], dict[str, Any]]:
    """The batch's image bytes and the generation info; ``InvalidImage`` unless all of them came back.

    A grid comes first only when ``save_images`` is on (we send it off), so the last ``batch``
    images are the batch either way.
    """
    body = parse_body(text)
    images = body.get("images") or []
    if len(images) < batch or not all(isinstance(image, str) for image in images):
        raise InvalidImage("The image server answered without a picture (or fewer than asked for).", detail=text[:300])
    return [decode_base64(image) for image in images[-batch:]], _info(body.get("info"))


def _upscaled(text: str) -> bytes:
    """The picture in an ``extra-single-image`` answer (``{"html_info", "image"}``)."""
    image = parse_body(text).get("image")
    if not isinstance(image, str) or not image:
        raise InvalidImage("The image server answered without a picture.", detail=text[:300])
    return decode_base64(image)


def _preview(value: str | None) -> bytes | None:
    """The live preview's bytes, or ``None`` when absent or not an image."""
    if not value:
        return None
    try:
        data = decode_base64(value)
    except BackendError:
        return None
    return data if sniff(data) else None


def _info(value: Any) -> dict[str, Any]:
    """``info`` is a JSON *string* inside the JSON answer."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
