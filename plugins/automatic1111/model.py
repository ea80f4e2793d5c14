"""One model on an AUTOMATIC1111-compatible WebUI: txt2img, progress polling, interrupt on cancel."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx

from core import (
    BackendError,
    Capabilities,
    CheckResult,
    CheckStatus,
    GenerationRequest,
    Image,
    ImageModel,
    InvalidImage,
    JobCancelled,
    Progress,
    SakaiError,
    sizes_for_area,
)
from core.http import send
from core.imaging import checked_image, sniff
from plugins.automatic1111.errors import map_error, parse_body
from plugins.automatic1111.settings import Automatic1111Settings
from plugins.automatic1111.watch import JobWatch, ServerState

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)
SERVICE = "The image server"
INTERRUPT_TIMEOUT = 5.0


class Automatic1111Model(ImageModel):
    """Sends txt2img, reports progress and previews while it runs, interrupts only its own job."""

    def __init__(self, name: str, settings: Automatic1111Settings, engine: Engine) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine  # only engine.http is used, and only once running (the client is made at start)
        self.base = settings.url.rstrip("/")
        self.description = settings.description or f"Stable Diffusion on your WebUI at {self.base}."
        self.capabilities = Capabilities(
            sizes=sizes_for_area(settings.area, multiple=64), max_prompt_length=settings.max_prompt_length,
            supports_seed=True, supports_negative_prompt=True, max_steps=settings.max_steps,
            default_steps=settings.steps, default_concurrency=1,
        )

    def payload(self, request: GenerationRequest) -> dict[str, Any]:
        """The txt2img body: the request's values over the configured defaults."""
        body: dict[str, Any] = {
            "prompt": request.prompt, "negative_prompt": request.negative_prompt or "",
            "seed": request.seed if request.seed is not None else -1,
            "steps": request.steps or self.settings.steps, "cfg_scale": self.settings.cfg_scale,
            "width": request.size.width, "height": request.size.height,
            "batch_size": 1, "n_iter": 1, "send_images": True, "save_images": False,
        }
        for key, value in (("sampler_name", self.settings.sampler), ("scheduler", self.settings.scheduler)):
            if value:
                body[key] = value
        if self.settings.checkpoint:
            body["override_settings"] = {"sd_model_checkpoint": self.settings.checkpoint}
        return body

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Run txt2img while a poller reports progress; on cancel, interrupt the server if ours runs."""
        body = self.payload(request)
        watch = JobWatch(body["steps"])
        watch.before(await self._state(previews=False))
        poller = asyncio.create_task(self._follow(watch, progress), name=f"{self.name}-progress")
        try:
            response = await self._send("POST", "/sdapi/v1/txt2img", json=body, timeout=self.settings.timeout)
        except asyncio.CancelledError:
            await self._interrupt_if_ours(watch)
            raise
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if response.status_code >= 400:
            raise map_error(response.status_code, response.text)
        await self._raise_if_interrupted(watch)
        return await self._image(response, request)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await send(self.engine.http, method, f"{self.base}{path}", service=SERVICE,
                          auth=self.settings.basic_auth(), **kwargs)

    async def _state(self, *, previews: bool) -> ServerState:
        response = await self._send("GET", "/sdapi/v1/progress", timeout=30,
                                    params={"skip_current_image": "false" if previews else "true"})
        if response.status_code >= 400:
            raise map_error(response.status_code, response.text)
        return ServerState.parse(parse_body(response.text))

    async def _follow(self, watch: JobWatch, progress: Progress) -> None:
        """Poll until cancelled; failures here are left to the txt2img request to report."""
        reported, last_image = 0.0, None
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                state = await self._state(previews=self.settings.previews)
            except SakaiError as exc:
                log.debug("progress poll failed: %s", exc)
                continue
            if not watch.observe(state):
                continue
            preview = _preview(state.image) if state.image != last_image else None
            last_image = state.image or last_image
            reported = max(reported, min(state.progress, 1.0))
            await progress(reported, preview)

    async def _interrupt_if_ours(self, watch: JobWatch) -> None:
        """Stop the server's current job, but only after a fresh look shows it is still ours."""
        try:
            async with asyncio.timeout(INTERRUPT_TIMEOUT):
                if watch.observe(await self._state(previews=False)):
                    await self._send("POST", "/sdapi/v1/interrupt", timeout=INTERRUPT_TIMEOUT)
                    log.info("%s: interrupted our job %s on %s", self.name, watch.ours, self.base)
                else:
                    log.info("%s: cancelled while another job ran on %s; not interrupting it", self.name, self.base)
        except (SakaiError, TimeoutError) as exc:
            log.warning("%s: could not interrupt the server: %s", self.name, exc)

    async def _raise_if_interrupted(self, watch: JobWatch) -> None:
        """A job interrupted on the server (from its UI) returns a half-made picture: do not deliver it."""
        try:
            state: ServerState | None = await self._state(previews=False)
        except SakaiError:
            state = None
        if any(seen is not None and watch.interrupted(seen) for seen in (state, watch.last)):
            raise JobCancelled("The job was stopped on the image server.")

    async def _image(self, response: httpx.Response, request: GenerationRequest) -> Image:
        body = parse_body(response.text)
        images = body.get("images") or []
        if not images or not isinstance(images[0], str):
            raise InvalidImage("The image server answered without a picture.", detail=response.text[:300])
        info = _info(body.get("info"))
        seed = info.get("seed", request.seed)
        return await checked_image(_decode(images[0]), model=self.name, seed=seed if isinstance(seed, int) else None,
                                   backend="automatic1111", checkpoint=info.get("sd_model_name"),
                                   sampler=info.get("sampler_name"))

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
        return self._checkpoints(response.text)

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


def _decode(value: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(detail=f"bad base64 image: {exc}") from exc


def _preview(value: str | None) -> bytes | None:
    """The live preview's bytes, or ``None`` when absent or not an image."""
    if not value:
        return None
    try:
        data = _decode(value)
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
