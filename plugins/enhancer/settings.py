"""``[plugins.enhancer]``: which LLM rewrites prompts, and how patiently."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

KEY_VARIABLES = {
    "openrouter": "OPENROUTER_API_KEY", "gemini": "GEMINI_API_KEY", "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY", "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
}
KEYLESS = {"ollama", "ollama_chat", "hosted_vllm", "lm_studio"}


class EnhancerSettings(BaseModel):
    """Off unless a model string is set and its provider's key is in the environment."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str | None = Field(default=None, description="litellm model string, e.g. openrouter/<vendor>/<model>")
    api_key_env: str | None = Field(default=None, description="default: the provider's usual variable")
    api_base: str | None = None
    timeout: float = Field(default=6.0, gt=0, le=120, description="seconds; litellm's own default is 6000")
    max_output_chars: int = Field(default=800, ge=20, le=10_000)
    max_tokens: int = Field(default=300, ge=16, le=4096)
    temperature: float = Field(default=0.7, ge=0, le=2)
    cache_size: int = Field(default=512, ge=0, le=100_000)
    templates: dict[str, str] = Field(default_factory=dict, description="family -> system prompt override")
    families: dict[str, str] = Field(default_factory=dict, description="SakaiBot model -> family (flux, sdxl)")
    params: dict[str, Any] = Field(default_factory=dict, description="more litellm arguments, e.g. top_p")
    key: SecretStr | None = Field(default=None, exclude=True, description="never in the file; from the environment")

    @model_validator(mode="after")
    def _read_key(self) -> EnhancerSettings:
        self.api_key()
        return self

    @property
    def provider(self) -> str:
        """The litellm provider prefix of ``model``."""
        return (self.model or "").split("/", 1)[0]

    @property
    def key_variable(self) -> str | None:
        """The environment variable the key is read from, if the provider needs one."""
        if self.api_key_env:
            return self.api_key_env
        if self.provider in KEYLESS:
            return None
        return KEY_VARIABLES.get(self.provider, f"{self.provider.upper()}_API_KEY")

    def api_key(self) -> str | None:
        """The key from the environment (read at start-up, kept as a secret so logs mask it)."""
        if self.key is None:
            variable = self.key_variable
            value = os.environ.get(variable) if variable else None
            self.key = SecretStr(value) if value else None
        return self.key.get_secret_value() if self.key else None

    def why_off(self) -> str | None:
        """Why the enhancer cannot run, or ``None`` when it can."""
        if not self.enabled:
            return "disabled in [plugins.enhancer]"
        if not self.model:
            return "no model set in [plugins.enhancer]"
        if self.key_variable and not self.api_key():
            return f"{self.key_variable} is not set"
        return None
