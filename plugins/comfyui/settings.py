"""``[models.<name>]`` keys of the ComfyUI backend; the workflow is read and checked at load time."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr, SecretStr, model_validator

from core import ModelSettings
from core.config import from_environment
from plugins.comfyui.workflow import Workflow

DEFAULT_URL = "http://127.0.0.1:8188"


class ComfyUISettings(ModelSettings):
    """A model served by a ComfyUI server through a workflow with placeholders."""

    url: str = Field(default=DEFAULT_URL, pattern=r"^https?://", description="the ComfyUI server's address")
    workflow: str | None = Field(default=None, description="API-format JSON with {{placeholders}}, or "
                                 '"builtin:img2img"; default: the built-in text-to-image one')
    checkpoint: str | None = Field(default=None, description="fills {{checkpoint}}: a file in models/checkpoints")
    sampler: str = Field(default="euler", description="fills {{sampler}}")
    scheduler: str = Field(default="normal", description="fills {{scheduler}}")
    cfg: float = Field(default=7.0, ge=0, le=30, description="fills {{cfg}}")
    steps: int = Field(default=20, ge=1, le=150, description="fills {{steps}} when a request names none")
    max_steps: int = Field(default=60, ge=1, le=150)
    area: int = Field(default=1024 * 1024, ge=256 * 256, le=2048 * 2048, description="pixels, for {{width}}/{{height}}")
    size: tuple[int, int] = Field(default=(1024, 1024), description="the output size of a workflow without {{width}}")
    max_prompt_length: int = Field(default=2000, ge=1, le=100_000)
    auth_env: str | None = Field(default=None, description="user:password for a reverse proxy in front of ComfyUI")
    auth: SecretStr | None = Field(default=None, description="never in the file: name a variable in auth_env")
    timeout: float = Field(default=600.0, gt=0, description="one request, queue wait included")
    denoise: float = Field(default=0.75, ge=0, le=1, description="fills {{denoise}} when a request names no strength")
    edit: bool = Field(default=False, description="the workflow follows instructions on the picture (e.g. Kontext)")
    _workflow: Workflow | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _auth_from_environment(cls, data: Any) -> Any:
        return from_environment(data, "auth", "auth_env")

    @model_validator(mode="after")
    def _check(self) -> ComfyUISettings:
        if self.auth_env and self.auth is None and self.enabled:
            raise ValueError(f"set {self.auth_env} in the environment to user:password (or remove auth_env)")
        self._workflow = Workflow.load(self.workflow)
        if "checkpoint" in self._workflow.placeholders and not self.checkpoint:
            raise ValueError("set checkpoint: the name of a file in ComfyUI's models/checkpoints folder")
        if self.steps > self.max_steps:
            raise ValueError(f"steps ({self.steps}) is above max_steps ({self.max_steps})")
        return self

    @property
    def loaded_workflow(self) -> Workflow:
        """The workflow read when the settings were validated."""
        assert self._workflow is not None
        return self._workflow

    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for a proxy's basic auth, or ``None``."""
        if self.auth is None:
            return None
        user, _, password = self.auth.get_secret_value().partition(":")
        return user, password
