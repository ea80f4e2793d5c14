"""A fake AUTOMATIC1111 WebUI on 127.0.0.1 that behaves like ``modules/api/api.py``.

What it copies from the WebUI's source, and why each matters to a client:

- one job at a time: txt2img takes a lock (the WebUI's ``queue_lock``); a second request waits;
- ``shared.state``: ``begin()`` stamps ``job_timestamp`` (``%Y%m%d%H%M%S``, second resolution),
  resets ``interrupted``; ``end()`` clears ``job`` and ``job_count`` but leaves ``interrupted``;
- ``/sdapi/v1/progress``: 0 when idle (``job_count == 0``); else ``0.01 + job_no/job_count +
  step/steps/job_count`` capped at 1, with ``current_image`` (base64, no ``data:`` prefix) once
  a live preview exists, unless ``skip_current_image=true``;
- ``/sdapi/v1/interrupt`` sets ``interrupted``: the running txt2img stops sampling and still
  answers 200 with the unfinished picture; the answer is ``{}``;
- ``--api-auth``: HTTP basic on every route; the error middleware answers 401 with
  ``{"error": "HTTPException", "detail": ..., "body": "", "errors": ...}`` and drops the
  ``WWW-Authenticate`` header; with no credentials at all the detail is "Not authenticated";
- FastAPI validation: wrong types give 422 ``{"detail": [{"loc", "msg", "type"}]}``; unknown
  fields are ignored (the generated pydantic model does not forbid extras);
- runtime errors: 500 ``{"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory…"}``;
- output size is ``width // 8 * 8`` × ``height // 8 * 8``; ``info`` is a JSON string;
- task ids (A1111 1.6+, ``modules/progress.py``): txt2img registers ``force_task_id`` as pending
  before taking the lock, makes it current after ``begin()``, finished after processing (not on
  an exception); ``POST /internal/progress {"id_task"}`` answers ``active``/``queued``/``completed``.
  ``task_ids=False`` is an older server that ignores the field.
- img2img (``modules/api/api.py``): ``init_images`` missing is 404 "Init image not found"; an
  ``init_images`` entry or ``mask`` that is not a base64 image is 500 "Invalid encoded image"
  (``decode_base64_to_image``); ``batch_size`` images come back, seeds seed, seed + 1, …
- ``/sdapi/v1/extra-single-image``: ``upscaling_resize`` outside 1-8 is a 422; an ``upscaler_1``
  the server does not have is the middleware's 500 ``AssertionError`` "could not find upscaler
  named …"; the answer is ``{"html_info", "image"}`` scaled by the factor.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image as PILImage

from tests.fakes import serve_locally

USER, PASSWORD = "bot", "s3cret:pass"
CHECKPOINTS = [
    {"title": "v1-5-pruned-emaonly.safetensors [6ce0161689]", "model_name": "v1-5-pruned-emaonly",
     "hash": "6ce0161689", "sha256": "6ce0161689b3", "filename": "/models/v1-5-pruned-emaonly.safetensors",
     "config": None},
    {"title": "sd_xl_base_1.0.safetensors [31e35c80fc]", "model_name": "sd_xl_base_1.0", "hash": "31e35c80fc",
     "sha256": "31e35c80fc4829", "filename": "/models/sd_xl_base_1.0.safetensors", "config": None},
]
TYPES: dict[str, tuple[type, ...]] = {
    "prompt": (str,), "negative_prompt": (str,), "seed": (int,), "steps": (int,), "cfg_scale": (int, float),
    "width": (int,), "height": (int,), "batch_size": (int,), "n_iter": (int,), "sampler_name": (str,),
    "scheduler": (str,), "override_settings": (dict,), "send_images": (bool,), "save_images": (bool,),
    "init_images": (list,), "mask": (str,), "denoising_strength": (int, float), "mask_blur": (int,),
    "inpainting_fill": (int,), "inpaint_full_res": (bool,), "inpainting_mask_invert": (int,), "resize_mode": (int,),
    "include_init_images": (bool,), "image": (str,), "upscaling_resize": (int, float), "upscaler_1": (str,),
    "show_extras_results": (bool,),
}
UPSCALERS = ["None", "Lanczos", "Nearest", "R-ESRGAN 4x+"]


def png(size: tuple[int, int], color: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """A real PNG of ``size``."""
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def api_error(status: int, error: str, detail: str, errors: str = "") -> web.Response:
    """The WebUI's error middleware body (headers of the original exception are lost)."""
    return web.json_response({"error": error, "detail": detail, "body": "", "errors": errors or detail},
                             status=status)


@dataclass
class State:
    """The WebUI's ``shared.state``, reduced to what the API shows."""

    job: str = ""
    job_count: int = 0
    job_no: int = 0
    job_timestamp: str = "0"
    sampling_step: int = 0
    sampling_steps: int = 0
    interrupted: bool = False
    skipped: bool = False
    current_image: bytes | None = None
    time_start: float = 0.0

    def dict(self) -> dict[str, Any]:
        """``State.dict()``."""
        return {"skipped": self.skipped, "interrupted": self.interrupted, "stopping_generation": False,
                "job": self.job, "job_count": self.job_count, "job_timestamp": self.job_timestamp,
                "job_no": self.job_no, "sampling_step": self.sampling_step, "sampling_steps": self.sampling_steps}


@dataclass
class FakeAutomatic1111:
    """Start it, point ``url`` at ``self.url``; script faults; read ``requests`` and ``interrupts``."""

    step_time: float = 0.01
    preview_every: int = 2
    auth: bool = False
    fail_next: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[str] = field(default_factory=list)  # job_timestamp running when each arrived
    progress_polls: int = 0
    task_ids: bool = True
    state: State = field(default_factory=State)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._stamp = 0
        self.started = asyncio.Event()
        self.pending_tasks: dict[str, float] = {}
        self.current_task: str | None = None
        self.finished_tasks: list[str] = []
        self.init_sizes: list[tuple[int, int]] = []
        self.mask_size: tuple[int, int] | None = None

    async def start(self) -> FakeAutomatic1111:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._basic_auth])
        app.router.add_post("/sdapi/v1/txt2img", self._txt2img)
        app.router.add_post("/sdapi/v1/img2img", self._img2img)
        app.router.add_post("/sdapi/v1/extra-single-image", self._extras)
        app.router.add_get("/sdapi/v1/progress", self._progress)
        app.router.add_post("/sdapi/v1/interrupt", self._interrupt)
        app.router.add_get("/sdapi/v1/sd-models", self._sd_models)
        app.router.add_get("/sdapi/v1/upscalers", self._upscalers)
        app.router.add_post("/internal/progress", self._internal_progress)
        self._runner, self.url = await serve_locally(app)
        return self

    async def stop(self) -> None:
        """Close the server."""
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _basic_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.auth:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return api_error(401, "HTTPException", "Not authenticated", "401: Not authenticated")
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if (user, password) != (USER, PASSWORD):
            return api_error(401, "HTTPException", "Incorrect username or password",
                             "401: Incorrect username or password")
        return await handler(request)

    async def _txt2img(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (refused := _invalid(body)) is not None:
            return refused
        self.requests.append(body)
        return await self._queued(body)

    async def _img2img(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (refused := _invalid(body)) is not None:
            return refused
        if body.get("init_images") is None:
            return api_error(404, "HTTPException", "Init image not found", "404: Init image not found")
        try:
            self.init_sizes = [decoded_size(image) for image in body["init_images"]]
            self.mask_size = decoded_size(body["mask"]) if body.get("mask") else None
        except ValueError:
            return api_error(500, "HTTPException", "Invalid encoded image", "500: Invalid encoded image")
        if not self.init_sizes:
            return api_error(500, "IndexError", "", "list index out of range")
        self.requests.append({**body, "route": "img2img"})
        return await self._queued(body)

    async def _extras(self, request: web.Request) -> web.Response:
        body = await request.json()
        factor = body.get("upscaling_resize", 2)
        if (refused := _invalid(body)) is not None:
            return refused
        if not 1 <= factor <= 8:
            return web.json_response({"detail": [{"loc": ["body", "upscaling_resize"], "type": "value_error",
                                                  "msg": "ensure this value is less than or equal to 8"}]}, status=422)
        try:
            width, height = decoded_size(body.get("image", ""))
        except ValueError:
            return api_error(500, "HTTPException", "Invalid encoded image", "500: Invalid encoded image")
        self.requests.append({**body, "route": "extras"})
        upscaler = body.get("upscaler_1", "None")
        if upscaler not in UPSCALERS:
            return api_error(500, "AssertionError", "", f"could not find upscaler named {upscaler}")
        async with self._lock:
            scale = factor if upscaler != "None" else 1
            image = base64.b64encode(png((round(width * scale), round(height * scale)))).decode()
            return web.json_response({"html_info": "<p>upscaled</p>", "image": image})

    async def _queued(self, body: dict[str, Any]) -> web.Response:
        task = str(body.get("force_task_id") or "") if self.task_ids else ""
        task = task or f"task(txt2img-{len(self.requests)})"
        self.pending_tasks[task] = time.monotonic()
        async with self._lock:
            return await self._run(body, task)

    async def _run(self, body: dict[str, Any], task: str) -> web.Response:
        self._begin(int(body.get("steps", 50)))
        self.current_task = task
        self.pending_tasks.pop(task, None)
        try:
            if self.fail_next:
                status, error = self.fail_next.pop(0)
                return web.json_response(error, status=status)
            await self._sample(int(body.get("width", 512)), int(body.get("height", 512)))
            self.finished_tasks.append(task)
            self.current_task = None if self.current_task == task else self.current_task
            return self._answer(body)
        finally:
            self.state.job, self.state.job_count = "", 0

    def _begin(self, steps: int) -> None:
        self._stamp += 1  # real stamps are wall-clock seconds; a counter keeps tests exact
        self.state = State(job="scripts_txt2img", job_count=1, job_timestamp=f"20260101{self._stamp:06d}",
                           sampling_steps=steps, time_start=time.monotonic(), current_image=None)
        self.started.set()

    async def _sample(self, width: int, height: int) -> None:
        state = self.state
        for step in range(1, state.sampling_steps + 1):
            await asyncio.sleep(self.step_time)
            if state.interrupted:
                return
            state.sampling_step = step
            if self.preview_every and step % self.preview_every == 0:
                state.current_image = png((width // 64 or 1, height // 64 or 1), (step * 5 % 256, 80, 160))

    def _answer(self, body: dict[str, Any]) -> web.Response:
        width, height = int(body.get("width", 512)) // 8 * 8, int(body.get("height", 512)) // 8 * 8
        seed = int(body.get("seed", -1))
        seed = seed if seed >= 0 else 1234567
        checkpoint = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        known = {c["title"] for c in CHECKPOINTS} | {c["model_name"] for c in CHECKPOINTS}
        loaded = checkpoint if checkpoint in known else CHECKPOINTS[0]["title"]  # unknown: silently ignored
        info = {"prompt": body.get("prompt", ""), "seed": seed, "all_seeds": [seed], "sd_model_name": loaded,
                "sampler_name": body.get("sampler_name", "DPM++ 2M"), "steps": body.get("steps", 50)}
        count = int(body.get("batch_size", 1)) * int(body.get("n_iter", 1))
        info["all_seeds"] = [seed + index for index in range(count)]
        picture = base64.b64encode(png((width, height))).decode()
        images = [picture] * count if body.get("send_images", True) else []
        return web.json_response({"images": images, "parameters": body, "info": json.dumps(info)})

    async def _progress(self, request: web.Request) -> web.Response:
        self.progress_polls += 1
        state = self.state
        skip = request.query.get("skip_current_image", "false").lower() in ("true", "1", "yes", "on")
        if state.job_count == 0:
            return web.json_response({"progress": 0, "eta_relative": 0, "state": state.dict(),
                                      "current_image": None, "textinfo": None})
        progress = 0.01 + state.job_no / state.job_count
        if state.sampling_steps > 0:
            progress += state.sampling_step / state.sampling_steps / state.job_count
        elapsed = time.monotonic() - state.time_start
        image = None if skip or state.current_image is None else base64.b64encode(state.current_image).decode()
        return web.json_response({"progress": min(progress, 1), "eta_relative": elapsed / progress - elapsed,
                                  "state": state.dict(), "current_image": image, "textinfo": None})

    async def _internal_progress(self, request: web.Request) -> web.Response:
        task = (await request.json()).get("id_task")
        active, queued, completed = task == self.current_task, task in self.pending_tasks, task in self.finished_tasks
        if not active:
            return web.json_response({"active": False, "queued": queued, "completed": completed, "progress": None,
                                      "eta": None, "live_preview": None, "id_live_preview": -1,
                                      "textinfo": "In queue" if queued else "Waiting..."})
        state = self.state
        progress = state.sampling_step / state.sampling_steps if state.sampling_steps else 0.0
        return web.json_response({"active": True, "queued": False, "completed": completed, "progress": progress,
                                  "eta": None, "live_preview": None, "id_live_preview": -1, "textinfo": None})

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.interrupts.append(self.state.job_timestamp if self.state.job else "")
        self.state.interrupted = True
        return web.json_response({})

    async def _upscalers(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": name, "model_name": None, "model_path": None, "model_url": None,
                                   "scale": 4} for name in UPSCALERS])

    async def _sd_models(self, request: web.Request) -> web.Response:
        return web.json_response(CHECKPOINTS)


def _invalid(body: dict[str, Any]) -> web.Response | None:
    """FastAPI's 422 for fields of the wrong type, or ``None``."""
    problems = [{"loc": ["body", key], "msg": f"value is not a valid {TYPES[key][0].__name__}",
                 "type": f"type_error.{TYPES[key][0].__name__}"}
                for key, value in body.items() if key in TYPES and not _typed(value, TYPES[key])]
    return web.json_response({"detail": problems}, status=422) if problems else None


def decoded_size(value: str) -> tuple[int, int]:
    """``decode_base64_to_image``: the picture's size, or ``ValueError`` when it is not one."""
    if value.startswith("data:image/"):
        value = value.partition(";")[2].partition(",")[2]
    try:
        with PILImage.open(io.BytesIO(base64.b64decode(value))) as picture:
            picture.load()
            return picture.size
    except (OSError, ValueError) as exc:
        raise ValueError("Invalid encoded image") from exc


def _typed(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


OOM = (500, {"error": "OutOfMemoryError", "detail": "", "body": "",
             "errors": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"})
