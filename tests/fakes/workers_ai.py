"""A fake Cloudflare Workers AI on 127.0.0.1 that answers like the real REST API.

It checks the bearer token and each model's input schema, answers Flux with a base64 JPEG in
the JSON envelope and SDXL with raw PNG bytes, errors with Cloudflare's envelope, and can be
scripted to misbehave: errors with or without Retry-After, slow answers, truncated bodies, a
JPEG labelled ``image/png``. ``concurrency`` and ``latency`` make it a server with C slots that
each take L seconds, for the throughput benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image as PILImage

from tests.fakes import serve_locally

ACCOUNT = "acct123"
TOKEN = "cf-test-token-123456"
FLUX = "@cf/black-forest-labs/flux-1-schnell"
SDXL = "@cf/stabilityai/stable-diffusion-xl-base-1.0"
FLUX2 = "@cf/black-forest-labs/flux-2-klein-4b"
IMG2IMG = "@cf/runwayml/stable-diffusion-v1-5-img2img"
INPAINT = "@cf/runwayml/stable-diffusion-v1-5-inpainting"
FLUX2_TEXT = {"prompt", "width", "height", "seed", "guidance", "steps"}
FLUX2_IMAGES = {f"input_image_{n}" for n in range(4)}
FLUX2_INPUT_PIXELS = 512 * 512
FLUX_FIELDS = {"prompt", "steps", "seed"}
SDXL_FIELDS = {"prompt", "negative_prompt", "height", "width", "num_steps", "guidance", "seed", "strength",
               "image", "image_b64", "mask"}


def picture(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    """A real image of ``size`` in ``fmt`` (PNG or JPEG)."""
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (30, 90, 160)).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass
class Fault:
    """One scripted misbehaviour, used by the next matching request."""

    status: int = 200
    code: int | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | None = None
    content_type: str | None = None
    cut_connection: bool = False


def envelope_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Cloudflare's error envelope."""
    body = {"result": None, "success": False, "errors": [{"code": code, "message": message}], "messages": []}
    return web.json_response(body, status=status, headers=headers)


class FakeWorkersAI:
    """The fake server: start it, point ``base_url`` at ``self.base_url``, script faults, read ``requests``."""

    def __init__(self, *, concurrency: int = 64, latency: float = 0.0) -> None:
        self.latency = latency
        self._slots = asyncio.Semaphore(concurrency)
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self.active = 0
        self.peak = 0
        self.catalog = [FLUX, SDXL, FLUX2, IMG2IMG, INPAINT]
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._images: dict[tuple[str, int, int], bytes] = {}

    async def start(self) -> FakeWorkersAI:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/client/v4/accounts/{account}/ai/run/{model:.+}", self._run)
        app.router.add_get("/client/v4/accounts/{account}/ai/models/search", self._search)
        app.router.add_route("*", "/worker/flux", self._flux_worker)
        app.router.add_route("*", "/worker/sdxl", self._sdxl_worker)
        self._runner, self.root = await serve_locally(app)
        self.base_url = f"{self.root}/client/v4"
        return self

    async def stop(self) -> None:
        """Close the server."""
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, *faults: Fault) -> None:
        """Script the next responses."""
        self.faults.extend(faults)

    def image(self, fmt: str, width: int = 64, height: int = 64) -> bytes:
        """A cached image, so the server's CPU does not colour the benchmark."""
        key = (fmt, width, height)
        if key not in self._images:
            self._images[key] = picture(fmt, (width, height))
        return self._images[key]

    async def _run(self, request: web.Request) -> web.StreamResponse:
        async with self._slots:
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                return await self._answer(request)
            finally:
                self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" or request.match_info["account"] != ACCOUNT:
            return envelope_error(401, 10000, "Authentication error")
        fields = await self._fields(request, model)
        self.requests.append({"model": model, "fields": fields, "content_type": request.content_type})
        if isinstance(fields, web.Response):
            return fields
        if self.faults:
            return await self._fault(request, self.faults.popleft())
        return self._success(model, fields)

    async def _fields(self, request: web.Request, model: str) -> dict[str, Any] | web.Response:
        if model.startswith("@cf/black-forest-labs/flux-2"):
            if request.content_type != "multipart/form-data":
                return envelope_error(400, 5006, "AiError: Bad input: this model takes multipart/form-data")
            return _flux2_form(await request.post())
        try:
            fields = await request.json()
        except json.JSONDecodeError:
            return envelope_error(400, 3003, "Request is missing headers or body")
        return self._validate(model, fields)

    def _validate(self, model: str, fields: dict[str, Any]) -> dict[str, Any] | web.Response:
        allowed, steps_field, max_steps = (FLUX_FIELDS, "steps", 8) if model == FLUX else (SDXL_FIELDS, "num_steps", 20)
        extra = set(fields) - allowed
        prompt = fields.get("prompt")
        if extra or not isinstance(prompt, str) or not 1 <= len(prompt) <= 2048:
            return envelope_error(400, 5006, f"AiError: Bad input: oneOf at '/' not met, unexpected {sorted(extra)}")
        if not isinstance(fields.get(steps_field, 1), int) or fields.get(steps_field, 1) > max_steps:
            return envelope_error(400, 5006, f"AiError: Bad input: Type mismatch of '/{steps_field}'")
        if not isinstance(fields.get("seed", 0), int):
            return envelope_error(400, 5006, "AiError: Bad input: Type mismatch of '/seed'")
        return _image_fields(model, fields)

    def _success(self, model: str, fields: dict[str, Any]) -> web.Response:
        width, height = int(fields.get("width", 64)) // 16, int(fields.get("height", 64)) // 16
        if model == FLUX or model.startswith("@cf/black-forest-labs/flux-2"):
            fmt = "JPEG" if model == FLUX else "PNG"
            encoded = base64.b64encode(self.image(fmt, 64, 64)).decode()
            return web.json_response({"result": {"image": encoded}, "success": True, "errors": [], "messages": []})
        return web.Response(body=self.image("PNG", max(width, 16), max(height, 16)), content_type="image/png")

    async def _fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.cut_connection:
            return await self._cut(request)
        if fault.code is not None:
            return envelope_error(fault.status, fault.code, fault.message, fault.headers)
        return web.Response(status=fault.status, body=fault.body or b"", headers=fault.headers,
                            content_type=fault.content_type or "application/octet-stream")

    async def _cut(self, request: web.Request) -> web.StreamResponse:
        """Promise a long PNG, send half of it, drop the connection."""
        data = self.image("PNG", 256, 256)
        response = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": str(len(data))})
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        request.transport.close()  # type: ignore[union-attr]
        return response

    async def _search(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return envelope_error(401, 10000, "Authentication error")
        term = request.query.get("search", "")
        found = [{"id": str(n), "name": name} for n, name in enumerate(self.catalog) if term in name]
        return web.json_response({"result": found, "success": True, "errors": [], "messages": []})

    async def _flux_worker(self, request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(status=405)
        self.requests.append({"worker": "flux", "method": request.method, "query": dict(request.query)})
        if self.faults:
            return await self._fault(request, self.faults.popleft())  # type: ignore[return-value]
        if not request.query.get("prompt"):
            return web.json_response({"error": "missing prompt"}, status=200)
        return web.Response(body=self.image("JPEG"), content_type="image/jpeg")

    async def _sdxl_worker(self, request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(status=200)
        if request.headers.get("Authorization") != "Bearer sdxl-key-123":
            return web.Response(status=401, text="Unauthorized")
        body = await request.json()
        self.requests.append({"worker": "sdxl", "method": request.method, "json": body})
        return web.Response(body=self.image("PNG"), content_type="image/png")


def _uint8_image(value: Any) -> tuple[int, int] | None:
    """The size of the image an ``array of uint8`` field holds, or ``None`` if it holds none."""
    if not isinstance(value, list) or not all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return None
    try:
        with PILImage.open(io.BytesIO(bytes(value))) as picture:
            picture.load()
            return picture.size
    except OSError:
        return None


def _image_fields(model: str, fields: dict[str, Any]) -> dict[str, Any] | web.Response:
    """SD 1.5's ``image``/``mask`` arrays and ``strength``, checked like the schema (and the model) would."""
    strength = fields.get("strength", 1)
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 1:
        return envelope_error(400, 5006, "AiError: Bad input: Type mismatch of '/strength'")
    if "image_b64" in fields and not isinstance(fields["image_b64"], str):
        return envelope_error(400, 5006, "AiError: Bad input: Type mismatch of '/image_b64'")
    checked = dict(fields)
    for key in ("image", "mask"):
        if key in fields:
            size = _uint8_image(fields[key])
            if size is None:
                return envelope_error(400, 5004, f"AiError: Invalid data type for {key} input")
            checked[f"{key}_size"] = size
    if model == INPAINT and "image" in fields and "mask" not in fields:
        return envelope_error(400, 5006, "AiError: Bad input: inpainting needs a mask with the image")
    return checked


def _flux2_form(form: Any) -> dict[str, Any] | web.Response:
    """FLUX.2's multipart fields: known text fields, and up to 4 image file parts of at most 512x512."""
    fields: dict[str, Any] = {}
    for key, value in form.items():
        if key in FLUX2_IMAGES:
            if not isinstance(value, web.FileField):
                return envelope_error(400, 5006, f"AiError: Bad input: {key} must be a file")
            data = value.file.read()
            try:
                with PILImage.open(io.BytesIO(data)) as picture:
                    picture.load()
                    size = picture.size
            except OSError:
                return envelope_error(400, 5004, f"AiError: Invalid data type for {key}")
            if size[0] * size[1] > FLUX2_INPUT_PIXELS:
                return envelope_error(400, 5006, f"AiError: Bad input: {key} is larger than 512x512")
            fields[key] = {"size": size, "content_type": value.content_type, "filename": value.filename}
        elif key in FLUX2_TEXT and isinstance(value, str):
            fields[key] = value
        else:
            return envelope_error(400, 5006, f"AiError: Bad input: unexpected field {key}")
    return fields


async def _serve(concurrency: int, latency: float) -> None:
    server = await FakeWorkersAI(concurrency=concurrency, latency=latency).start()
    print(server.base_url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":  # a separate process, so a benchmark's client and server do not share a CPU loop
    import sys

    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2])))
