"""One model on a ComfyUI server: queue the filled workflow, follow its websocket, fetch the image."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any

import aiohttp
import httpx

from core import (
    BackendAuthError,
    BackendUnavailable,
    Capabilities,
    CheckResult,
    CheckStatus,
    EngineView,
    GenerationRequest,
    Image,
    ImageModel,
    InputSupport,
    Progress,
    SakaiError,
    Size,
    sizes_for_area,
)
from core.http import send
from core.imaging import checked_image
from plugins.comfyui.errors import map_prompt_error
from plugins.comfyui.results import first_image, history_entry, json_object, missing_checkpoints, raise_for_status
from plugins.comfyui.run import PromptRun
from plugins.comfyui.settings import ComfyUISettings
from plugins.comfyui.uploads import upload_inputs

log = logging.getLogger(__name__)
SERVICE = "The ComfyUI server"
CANCEL_TIMEOUT = 5.0
HISTORY_POLL = 1.0


class ComfyUIModel(ImageModel):
    """Runs a workflow per request; capabilities follow the placeholders the workflow uses."""

    def __init__(self, name: str, settings: ComfyUISettings, engine: EngineView) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine  # only engine.http is used, and only once running (the client is made at start)
        self.workflow = settings.loaded_workflow
        self.base = settings.url.rstrip("/")
        self.description = settings.description or f"Your ComfyUI workflow at {self.base}."
        self.capabilities = _capabilities(settings, self.workflow.placeholders)
        self._session: aiohttp.ClientSession | None = None

    def values(self, request: GenerationRequest, uploads: dict[str, str] | None = None) -> dict[str, Any]:
        """What each placeholder becomes for ``request``; ``uploads`` names the pictures on the server."""
        settings = self.settings
        uploads = uploads or {}
        return {"prompt": request.prompt, "negative_prompt": request.negative_prompt or "",
                "seed": request.seed if request.seed is not None else 0, "width": request.size.width,
                "height": request.size.height, "steps": request.steps or settings.steps, "cfg": settings.cfg,
                "checkpoint": settings.checkpoint or "", "sampler": settings.sampler, "scheduler": settings.scheduler,
                "image": uploads.get("image", ""), "mask": uploads.get("mask", ""),
                "denoise": request.strength if request.strength is not None else settings.denoise}

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Upload the pictures, connect the websocket (so no message is missed), queue, follow, fetch the output."""
        uploads = await upload_inputs(self._send, request, self.workflow.placeholders)
        client_id = uuid.uuid4().hex
        run = PromptRun(str(uuid.uuid4()), progress)  # current ComfyUI takes our id, so a cancel can name it
        try:
            async with self._http_session().ws_connect(self._ws_url(client_id), heartbeat=30,
                                                       auth=self._ws_auth()) as socket:
                graph = self.workflow.fill(self.values(request, uploads))
                run.prompt_id = await self._queue(graph, client_id, run.prompt_id)
                await self._follow(socket, run)
            if not run.finished:
                await self._wait_in_history(run.prompt_id)
        except asyncio.CancelledError:
            if not run.finished:
                await self._cancel(run)
            raise
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc) from exc
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"{SERVICE} cannot be reached right now. Please try again later.",
                                     detail=f"{type(exc).__name__}: {exc}") from exc
        return await self._result(run.prompt_id, request)

    async def _follow(self, socket: aiohttp.ClientWebSocketResponse, run: PromptRun) -> None:
        """Read frames until our prompt ends; a dropped socket leaves the rest to ``/history``."""
        try:
            async for frame in socket:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    await run.on_text(frame.data)
                elif frame.type is aiohttp.WSMsgType.BINARY:
                    await run.on_binary(frame.data)
                if run.finished:
                    return
        except aiohttp.ClientError as exc:
            log.info("%s: websocket failed while following %s: %s", self.name, run.prompt_id, exc)

    async def _queue(self, graph: dict[str, Any], client_id: str, prompt_id: str) -> str:
        """Queue the graph; the id is ours on current builds, the server's own on older ones."""
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = await self._send("POST", "/prompt", json=body, timeout=60)
        if response.status_code != 200:
            raise map_prompt_error(response.status_code, response.text)
        answered = json_object(response).get("prompt_id")
        if not isinstance(answered, str):
            raise BackendUnavailable(detail=f"/prompt answered without a prompt_id: {response.text[:200]}")
        return answered

    async def _cancel(self, run: PromptRun) -> None:
        """Take a waiting prompt off the queue; interrupt it only if it is the one running."""
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                if not run.running:
                    await self._send("POST", "/queue", json={"delete": [run.prompt_id]}, timeout=CANCEL_TIMEOUT)
                    run.running = await self._is_running(run.prompt_id)
                if run.running:
                    await self._send("POST", "/interrupt", json={"prompt_id": run.prompt_id}, timeout=CANCEL_TIMEOUT)
        except (SakaiError, TimeoutError) as exc:
            log.warning("%s: could not cancel prompt %s: %s", self.name, run.prompt_id, exc)

    async def _is_running(self, prompt_id: str) -> bool:
        running = json_object(await self._send("GET", "/queue", timeout=CANCEL_TIMEOUT)).get("queue_running") or []
        return any(isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in running)

    async def _wait_in_history(self, prompt_id: str) -> None:
        """The websocket closed early (a restart, a proxy): wait for the prompt in ``/history``."""
        log.info("%s: websocket closed before prompt %s finished; polling /history", self.name, prompt_id)
        for _ in itertools.count():  # the engine's timeout bounds this wait
            if await self._history(prompt_id):
                return
            await asyncio.sleep(HISTORY_POLL)

    async def _history(self, prompt_id: str) -> dict[str, Any]:
        response = await self._send("GET", f"/history/{prompt_id}", timeout=30)
        if response.status_code != 200:
            raise map_prompt_error(response.status_code, response.text)
        return history_entry(json_object(response), prompt_id)

    async def _result(self, prompt_id: str, request: GenerationRequest) -> Image:
        entry = await self._history(prompt_id)
        raise_for_status(entry)
        reference = first_image(entry)
        response = await self._send("GET", "/view", params=reference, timeout=60)
        if response.status_code != 200:
            raise BackendUnavailable(detail=f"/view {reference}: HTTP {response.status_code}")
        seed = request.seed if "seed" in self.workflow.placeholders else None
        return await checked_image(response.content, model=self.name, seed=seed, backend="comfyui",
                                   prompt_id=prompt_id, filename=reference["filename"])

    async def check(self) -> CheckResult:
        """``/system_stats`` proves the address; ``/object_info`` shows whether the checkpoints exist."""
        try:
            response = await self._send("GET", "/system_stats", timeout=15)
            if response.status_code in (401, 403):
                return CheckResult(CheckStatus.BAD_CREDENTIALS, f"HTTP {response.status_code}: check auth_env")
            if response.status_code != 200:
                return CheckResult(CheckStatus.UNREACHABLE, f"HTTP {response.status_code} from /system_stats")
            missing = await self._missing_checkpoints()
        except SakaiError as exc:
            return CheckResult(CheckStatus.UNREACHABLE, exc.detail or exc.user_message)
        if missing:
            return CheckResult(CheckStatus.MISCONFIGURED, f"checkpoint(s) not on the server: {', '.join(missing)}")
        device = _device(json_object(response))
        return CheckResult(CheckStatus.OK, f"reachable; {device}; workflow {self.workflow.source}")

    async def _missing_checkpoints(self) -> list[str]:
        graph = self.workflow.fill(self.values(_SAMPLE))
        wanted = [n["inputs"].get("ckpt_name") for n in graph.values() if n["class_type"] == "CheckpointLoaderSimple"]
        if not wanted:
            return []
        response = await self._send("GET", "/object_info/CheckpointLoaderSimple", timeout=15)
        if response.status_code != 200:
            return []
        return missing_checkpoints(json_object(response), [str(w) for w in wanted])

    async def aclose(self) -> None:
        """Close the websocket session."""
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await send(self.engine.http, method, f"{self.base}{path}", service=SERVICE,
                          auth=self.settings.basic_auth(), **kwargs)

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    def _ws_url(self, client_id: str) -> str:
        scheme, rest = self.base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"

    def _ws_auth(self) -> aiohttp.BasicAuth | None:
        pair = self.settings.basic_auth()
        return aiohttp.BasicAuth(*pair) if pair else None


def _capabilities(settings: ComfyUISettings, names: frozenset[str]) -> Capabilities:
    sized = {"width", "height"} <= names
    stepped = "steps" in names
    inputs = InputSupport(image_to_image=True, edit=settings.edit, masks="mask" in names,
                          strength="denoise" in names) if "image" in names else None
    return Capabilities(
        inputs=inputs,
        sizes=sizes_for_area(settings.area, multiple=64) if sized else (Size(*settings.size),),
        max_prompt_length=settings.max_prompt_length, supports_seed="seed" in names,
        supports_negative_prompt="negative_prompt" in names, max_steps=settings.max_steps if stepped else None,
        default_steps=settings.steps if stepped else None, default_concurrency=1,
    )


def _handshake_error(exc: aiohttp.WSServerHandshakeError) -> SakaiError:
    detail = f"websocket handshake: HTTP {exc.status} {exc.message}"
    if exc.status in (401, 403):
        return BackendAuthError("The image server refused the bot's login. Tell the bot's admin (check auth_env).",
                                detail=detail)
    return BackendUnavailable(f"{SERVICE} cannot be reached right now. Please try again later.", detail=detail)




def _device(stats: dict[str, Any]) -> str:
    devices = stats.get("devices") or [{}]
    version = (stats.get("system") or {}).get("comfyui_version", "unknown version")
    return f"ComfyUI {version} on {devices[0].get('name', 'an unknown device')}"


_SAMPLE = GenerationRequest(prompt="check", size=Size(512, 512), seed=0, negative_prompt=None, steps=None,
                            original_prompt="check")
