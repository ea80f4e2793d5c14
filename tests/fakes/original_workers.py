"""The original SakaiBot's two Cloudflare Workers, faked on 127.0.0.1 as they behave.

- Flux (``FLUX_WORKER_URL``): ``GET /?prompt=…``; the Worker calls ``env.AI.run`` on
  flux-1-schnell, which returns ``{image: <base64>}``, decodes it and answers ``image/jpeg``.
  Without a prompt it answers a JSON error with status 200, as user Workers often do.
- SDXL (``SDXL_WORKER_URL`` + ``SDXL_API_KEY``): ``POST`` of ``{"prompt": …}`` with
  ``Authorization: Bearer <key>``; a wrong key is a 401 text answer; SDXL returns PNG bytes.
- A Worker runs ``fetch`` for every method, so ``HEAD`` answers like ``GET`` without a body.
- Faults: a prompt longer than ``max_prompt`` gets a 413 whose body echoes the request
  headers (Authorization included), as a careless Worker did; ``drop_next`` cuts the connection;
  ``capacity_next`` answers Cloudflare's 3040 "Capacity temporarily exceeded" text page (500).

``WorkerServer`` runs them in a thread with its own event loop, so a CLI run in the test's
thread (``core.cli.main`` calls ``asyncio.run``) or in a subprocess can reach them.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image as PILImage

from tests.fakes import serve_locally

SDXL_KEY = "sdxl-original-key-8f3a9c"


def _picture(fmt: str) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (200, 80, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass
class OriginalWorkers:
    """Both Workers on one server: ``/flux`` and ``/sdxl``."""

    key: str = SDXL_KEY
    max_prompt: int = 2048
    drop_next: int = 0
    capacity_next: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_route("*", "/flux", self._flux)
        app.router.add_route("*", "/sdxl", self._sdxl)
        return app

    async def _flux(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"worker": "flux", "method": request.method, "query": dict(request.query)})
        fault = await self._fault(request, request.query.get("prompt", ""))
        if fault is not None:
            return fault
        if not request.query.get("prompt"):
            return web.json_response({"error": "missing prompt"}, status=200)
        return web.Response(body=_picture("JPEG"), content_type="image/jpeg")

    async def _sdxl(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.Response(status=401, text="Unauthorized")
        if request.method == "HEAD":
            return web.Response(status=200, content_type="image/png")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        self.requests.append({"worker": "sdxl", "method": request.method, "json": body})
        fault = await self._fault(request, str(body.get("prompt", "")))
        return fault or web.Response(body=_picture("PNG"), content_type="image/png")

    async def _fault(self, request: web.Request, prompt: str) -> web.StreamResponse | None:
        if self.drop_next > 0:
            self.drop_next -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if self.capacity_next > 0:
            self.capacity_next -= 1
            return web.Response(status=500, text="AiError: 3040: Capacity temporarily exceeded, please try again.")
        if len(prompt) > self.max_prompt:
            echoed = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
            return web.Response(status=413, text=f"Prompt too long. Request was:\n{echoed}")
        return None


class WorkerServer:
    """The fake Workers in a background thread; ``url`` is its root, e.g. ``http://127.0.0.1:PORT``."""

    def __init__(self, workers: OriginalWorkers | None = None) -> None:
        self.workers = workers or OriginalWorkers()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-workers", daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> WorkerServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake Workers did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner, self.url = self._loop.run_until_complete(serve_locally(self.workers.app()))
        self._ready.set()
        self._loop.run_forever()
