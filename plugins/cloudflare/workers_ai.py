"""Models on the Workers AI REST API: ``POST {base}/accounts/{account}/ai/run/{model}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import (
    CheckResult,
    CheckStatus,
    GenerationRequest,
    Image,
    ImageModel,
    Progress,
    QuotaExceeded,
    SakaiError,
)
from core.http import send
from plugins.cloudflare.catalog import ModelSpec, RequestKind, spec_for
from plugins.cloudflare.inputs import json_inputs, reference_parts
from plugins.cloudflare.response import read_image
from plugins.cloudflare.settings import WorkersAISettings

if TYPE_CHECKING:
    from core import EngineView

SERVICE = "Cloudflare Workers AI"


class WorkersAIModel(ImageModel):
    """One Workers AI image model, with its real limits (and the input images it takes) declared."""

    def __init__(self, name: str, settings: WorkersAISettings, engine: EngineView) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.spec: ModelSpec = spec_for(settings.model)
        self.description = settings.description or self.spec.description
        self.capabilities = self.spec.capabilities
        self._quota: QuotaExceeded | None = None

    @property
    def _base(self) -> str:
        return f"{self.settings.base_url.rstrip('/')}/accounts/{self.settings.account_id}/ai"

    def _headers(self) -> dict[str, str]:
        token = self.settings.api_token.get_secret_value() if self.settings.api_token else ""
        return {"Authorization": f"Bearer {token}"}

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Send one request; the quota error is remembered until Cloudflare's daily reset."""
        self._raise_if_exhausted()
        url = f"{self._base}/run/{self.settings.model}"
        body = await self.body(request)
        response = await send(self.engine.http, "POST", url, service=SERVICE, headers=self._headers(),
                              timeout=self.settings.timeout, **body)
        try:
            return await read_image(response, model=self.name, seed=request.seed, backend="cloudflare",
                                    cloudflare_model=self.settings.model)
        except QuotaExceeded as exc:
            self._quota = exc
            raise

    async def body(self, request: GenerationRequest) -> dict[str, Any]:
        """httpx keyword arguments: a JSON body, or multipart form fields and image file parts."""
        fields = self.payload(request)
        if self.spec.request is RequestKind.MULTIPART:
            files: dict[str, Any] = {k: (None, str(v)) for k, v in fields.items()}
            return {"files": files | await reference_parts(self.spec, request)}
        return {"json": fields | await json_inputs(self.spec, request)}

    def payload(self, request: GenerationRequest) -> dict[str, Any]:
        """Exactly the fields this model takes; nothing it would reject."""
        spec = self.spec
        fields: dict[str, Any] = {"prompt": request.prompt}
        if request.seed is not None and self.capabilities.supports_seed:
            fields["seed"] = int(request.seed)
        if spec.steps_field and request.steps is not None:
            fields[spec.steps_field] = int(request.steps)
        if spec.sends_size:
            fields["width"], fields["height"] = request.size.width, request.size.height
        if request.negative_prompt and self.capabilities.supports_negative_prompt:
            fields["negative_prompt"] = request.negative_prompt
        guidance = self.settings.guidance if self.settings.guidance is not None else spec.guidance
        if guidance is not None:
            fields["guidance"] = guidance
        return fields

    def _raise_if_exhausted(self) -> None:
        quota = self._quota
        if quota is not None and quota.reset_at and datetime.now(UTC) < quota.reset_at:
            raise quota
        self._quota = None

    async def check(self) -> CheckResult:
        """Look the model up in the account's catalog: proves the token, the account and the id."""
        try:
            response = await send(self.engine.http, "GET", f"{self._base}/models/search", service=SERVICE,
                                  headers=self._headers(), params={"search": self.settings.model.split("/")[-1]},
                                  timeout=15)
        except SakaiError as exc:
            return CheckResult(CheckStatus.UNREACHABLE, exc.detail or exc.user_message)
        if response.status_code in (401, 403):
            return CheckResult(CheckStatus.BAD_CREDENTIALS, f"HTTP {response.status_code}: check the token")
        if response.status_code >= 400:
            return CheckResult(CheckStatus.UNREACHABLE, f"HTTP {response.status_code}")
        return self._found(response.json())

    def _found(self, envelope: Any) -> CheckResult:
        results = envelope.get("result") or [] if isinstance(envelope, dict) else []
        names = {str(item.get("name")) for item in results if isinstance(item, dict)}
        if self.settings.model in names:
            return CheckResult(CheckStatus.OK, "reachable, token accepted, model found")
        missing = f"token accepted, but {self.settings.model} is not in the catalog"
        return CheckResult(CheckStatus.MISCONFIGURED, missing)

