"""``[models.<name>]`` keys of the AUTOMATIC1111 backend; the password comes from the environment."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, model_validator

from core import ModelSettings
from core.config import from_environment

DEFAULT_URL = "http://127.0.0.1:7860"


class Automatic1111Settings(ModelSettings):
    """A model served by an AUTOMATIC1111-compatible WebUI (A1111, Forge, SD.Next)."""

    url: str = Field(default=DEFAULT_URL, pattern=r"^https?://", description="the WebUI's address")
    auth_env: str | None = Field(default=None, description="variable holding user:password (--api-auth)")
    auth: SecretStr | None = Field(default=None, description="never in the file: name a variable in auth_env")
    checkpoint: str | None = Field(default=None, description="title from /sdapi/v1/sd-models; default: loaded one")
    sampler: str | None = Field(default=None, description='e.g. "Euler a", "DPM++ 2M"; default: the server\'s')
    scheduler: str | None = Field(default=None, description='e.g. "Karras" (A1111 1.9+)')
    cfg_scale: float = Field(default=7.0, ge=0, le=30)
    steps: int = Field(default=20, ge=1, le=150, description="steps when a request names none")
    max_steps: int = Field(default=60, ge=1, le=150)
    area: int = Field(default=1024 * 1024, ge=256 * 256, le=2048 * 2048, description="pixels per image")
    max_prompt_length: int = Field(default=2000, ge=1, le=100_000)
    poll_interval: float = Field(default=1.0, ge=0.01, le=30, description="seconds between progress polls")
    previews: bool = Field(default=True, description="ask /sdapi/v1/progress for the live preview image")
    timeout: float = Field(default=600.0, gt=0, description="one request, queue wait included")
    denoising_strength: float = Field(default=0.75, ge=0, le=1, description="img2img strength a request names none")
    mask_blur: int = Field(default=4, ge=0, le=64, description="inpainting: pixels of blur on the mask edge")
    inpainting_fill: int = Field(default=1, ge=0, le=3, description="masked content: 0 fill, 1 original, "
                                 "2 latent noise, 3 latent nothing")
    upscaler: str | None = Field(default=None, description='name from /sdapi/v1/upscalers, e.g. "R-ESRGAN 4x+"; '
                                 "enables Upscale")
    upscale_factors: list[int] = Field(default_factory=lambda: [2, 4], description="factors offered for Upscale")
    max_batch: int = Field(default=4, ge=1, le=8, description="images one txt2img/img2img call makes (batch_size)")

    @model_validator(mode="before")
    @classmethod
    def _auth_from_environment(cls, data: Any) -> Any:
        return from_environment(data, "auth", "auth_env")

    @model_validator(mode="after")
    def _auth_complete(self) -> Automatic1111Settings:
        if self.auth_env and self.auth is None and self.enabled:
            raise ValueError(f"set {self.auth_env} in the environment to user:password (or remove auth_env)")
        if self.auth is not None and ":" not in self.auth.get_secret_value():
            raise ValueError(f"{self.auth_env or 'auth'} must look like user:password")
        if self.steps > self.max_steps:
            raise ValueError(f"steps ({self.steps}) is above max_steps ({self.max_steps})")
        if any(not 2 <= factor <= 8 for factor in self.upscale_factors):
            raise ValueError("upscale_factors must be between 2 and 8 (the WebUI's upscaling_resize limit)")
        return self

    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for HTTP basic auth, or ``None``."""
        if self.auth is None:
            return None
        user, _, password = self.auth.get_secret_value().partition(":")
        return user, password
