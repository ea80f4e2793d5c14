"""An image model behind litellm's ``aimage_generation``, and ``aimage_edit`` for requests with pictures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, model_validator

from core import (
    Capabilities,
    CheckResult,
    CheckStatus,
    GenerationRequest,
    Image,
    ImageModel,
    InvalidImage,
    ModelSettings,
    Progress,
    Size,
)
from core.config import from_environment
from core.http import send
from core.imaging import checked_image, decode_base64
from plugins.litellm_images.edits import edit_arguments, edit_limits, input_support
from plugins.litellm_images.errors import map_litellm_error
from plugins.litellm_loader import load_litellm

if TYPE_CHECKING:
    from core import EngineView

SERVICE = "The image service"


class LiteLLMImageSettings(ModelSettings):
    """``[models.<name>]`` keys of the litellm backend."""

    model: str = Field(min_length=3, description="litellm model string, e.g. openai/gpt-image-1")
    api_key: SecretStr | None = Field(default=None, description="never in the file: name a variable in api_key_env")
    api_key_env: str | None = Field(default=None, description="default: provider variable, e.g. OPENAI_API_KEY")
    api_base: str | None = None
    sizes: list[str] = Field(default_factory=lambda: ["1024x1024", "1536x1024", "1024x1536"])
    max_prompt_length: int = Field(default=4000, ge=1, le=32_000)
    params: dict[str, Any] = Field(default_factory=dict, description="passed through, e.g. quality, output_format")
    timeout: float = Field(default=180.0, gt=0)
    edit_images: int | None = Field(default=None, ge=0, le=16, description="pictures the provider's image edit "
                                    "takes; default: 16 for gpt-image models, else 0 (no edits)")
    edit_masks: bool | None = Field(default=None, description="the edit takes a mask; default: true for gpt-image")

    @model_validator(mode="before")
    @classmethod
    def _key_from_environment(cls, data: Any) -> Any:
        return from_environment(data, "api_key", "api_key_env")

    @model_validator(mode="after")
    def _parse_sizes(self) -> LiteLLMImageSettings:
        for size in self.sizes:
            width, _, height = size.partition("x")
            if not (width.isdigit() and height.isdigit()):
                raise ValueError(f"size {size!r} is not like 1024x1024")
        return self


class LiteLLMImageModel(ImageModel):
    """One litellm image model; its provider decides what happens on the wire."""

    def __init__(self, name: str, settings: LiteLLMImageSettings, engine: EngineView) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.description = settings.description or f"{settings.model} through litellm."
        sizes = tuple(Size(*(int(p) for p in s.split("x"))) for s in settings.sizes)
        limits = edit_limits(settings.model, settings.edit_images, settings.edit_masks)
        self.capabilities = Capabilities(sizes=sizes, max_prompt_length=settings.max_prompt_length,
                                         supports_seed=False, default_concurrency=2, inputs=input_support(limits))

    def arguments(self, request: GenerationRequest) -> dict[str, Any]:
        """What ``aimage_generation`` receives; secrets only as arguments, never logged."""
        args: dict[str, Any] = {"model": self.settings.model, "prompt": request.prompt, "n": 1,
                                "size": str(request.size), "timeout": self.settings.timeout, **self.settings.params}
        if self.settings.api_key is not None:
            args["api_key"] = self.settings.api_key.get_secret_value()
        if self.settings.api_base:
            args["api_base"] = self.settings.api_base
        return args

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """One call through litellm (an edit when the request carries pictures); b64 decoded, URLs downloaded."""
        litellm = await load_litellm()
        try:
            if request.images:
                arguments = self.arguments(request) | await edit_arguments(request)
                response = await litellm.aimage_edit(**arguments)
            else:
                response = await litellm.aimage_generation(**self.arguments(request))
        except Exception as exc:
            raise map_litellm_error(litellm, exc) from exc
        item = response.data[0] if response.data else None
        data = await self._bytes(item)
        revised = getattr(item, "revised_prompt", None)
        return await checked_image(data, model=self.name, seed=None, backend="litellm",
                                   litellm_model=self.settings.model, revised_prompt=revised)

    async def _bytes(self, item: Any) -> bytes:
        if item is not None and getattr(item, "b64_json", None):
            return decode_base64(item.b64_json)
        if item is not None and getattr(item, "url", None):
            response = await send(self.engine.http, "GET", item.url, service=SERVICE, timeout=60)
            if response.status_code >= 400:
                raise InvalidImage(detail=f"download of the image failed: HTTP {response.status_code}")
            return response.content
        raise InvalidImage(detail="the answer held no image")

    async def check(self) -> CheckResult:
        """litellm has no cheap, provider-neutral check: report the configuration only."""
        try:
            await load_litellm()
        except Exception as exc:  # pragma: no cover - litellm is a dependency
            return CheckResult(CheckStatus.MISCONFIGURED, str(exc))
        if self.settings.api_key is None and self.settings.api_key_env:
            return CheckResult(CheckStatus.BAD_CREDENTIALS, f"{self.settings.api_key_env} is not set")
        return CheckResult(CheckStatus.OK, "configured; litellm offers no check without generating an image")
