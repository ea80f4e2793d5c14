"""A user's own Cloudflare Worker, as the original SakaiBot deployed them.

The Flux worker takes ``GET ?prompt=…`` and answers with image bytes; the SDXL worker takes a
``POST`` of JSON with ``Authorization: Bearer``. Both may answer errors as JSON with status 200,
or as Cloudflare's text page with status 500, so answers go through the same reader and error
mapping as the REST API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import Capabilities, CheckResult, CheckStatus, GenerationRequest, Image, ImageModel, Progress, Size
from core.http import send
from plugins.cloudflare.response import read_image
from plugins.cloudflare.settings import CustomWorkerSettings

if TYPE_CHECKING:
    from core import EngineView

SERVICE = "The image Worker"


class CustomWorkerModel(ImageModel):
    """A model behind a Worker URL; what it accepts is whatever its config declares."""

    def __init__(self, name: str, settings: CustomWorkerSettings, engine: EngineView) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.description = settings.description or f"Your own Cloudflare Worker ({settings.method})."
        self.capabilities = Capabilities(
            sizes=(Size(*settings.size),), max_prompt_length=settings.max_prompt_length,
            supports_seed=settings.send_options, supports_negative_prompt=settings.negative_prompt,
            max_steps=settings.max_steps if settings.send_options else None, default_concurrency=2,
        )

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def fields(self, request: GenerationRequest) -> dict[str, Any]:
        """The prompt, and the options only when the Worker is declared to take them."""
        fields: dict[str, Any] = {"prompt": request.prompt}
        if self.settings.send_options:
            fields.update(width=request.size.width, height=request.size.height)
            for key, value in (("seed", request.seed), ("num_steps", request.steps),
                               ("negative_prompt", request.negative_prompt)):
                if value is not None:
                    fields[key] = value
        return fields

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """One call to the Worker."""
        fields = self.fields(request)
        body = {"params": fields} if self.settings.method == "GET" else {"json": fields}
        response = await send(self.engine.http, self.settings.method, str(self.settings.url), service=SERVICE,
                              headers=self._headers(), timeout=self.settings.timeout, **body)
        return await read_image(response, model=self.name, seed=request.seed if self.settings.send_options else None,
                                backend="cloudflare-worker")

    async def check(self) -> CheckResult:
        """A Worker has no status route; only show that its host answers (any HTTP status)."""
        try:
            response = await send(self.engine.http, "HEAD", str(self.settings.url), service=SERVICE,
                                  headers=self._headers(), timeout=10)
        except Exception as exc:
            return CheckResult(CheckStatus.UNREACHABLE, getattr(exc, "user_message", str(exc)))
        if response.status_code in (401, 403):
            return CheckResult(CheckStatus.BAD_CREDENTIALS, f"HTTP {response.status_code}")
        return CheckResult(CheckStatus.OK, f"host answers (HTTP {response.status_code}); no image was generated")
