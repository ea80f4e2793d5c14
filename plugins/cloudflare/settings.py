"""``[models.<name>]`` keys of the two Cloudflare backends; secrets come from the environment."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from core import ModelSettings
from core.config import from_environment

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"


class WorkersAISettings(ModelSettings):
    """A model on the Workers AI REST API."""

    model: str = Field(pattern=r"^@?[\w.\-]+(/[\w.\-]+)+$", description="Workers AI model id, e.g. @cf/...")
    account_id: str | None = Field(default=None, description="default: $CLOUDFLARE_ACCOUNT_ID")
    account_id_env: str = "CLOUDFLARE_ACCOUNT_ID"
    api_token: SecretStr | None = Field(default=None, description="never in the file: set $CLOUDFLARE_API_TOKEN")
    api_token_env: str = "CLOUDFLARE_API_TOKEN"
    base_url: str = Field(default=DEFAULT_BASE_URL, description="e.g. an AI Gateway URL")
    guidance: float | None = Field(default=None, ge=0, le=30)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_environment(cls, data: Any) -> Any:
        data = from_environment(data, "account_id", "account_id_env", "CLOUDFLARE_ACCOUNT_ID")
        return from_environment(data, "api_token", "api_token_env", "CLOUDFLARE_API_TOKEN")

    @model_validator(mode="after")
    def _credentials_present(self) -> WorkersAISettings:
        missing = [env for value, env in ((self.account_id, self.account_id_env), (self.api_token, self.api_token_env))
                   if not value]
        if missing and self.enabled:
            raise ValueError(f"set {' and '.join(missing)} in the environment (or disable this model)")
        return self


class CustomWorkerSettings(ModelSettings):
    """A user's own Worker: the original SakaiBot's FLUX_WORKER_URL / SDXL_WORKER_URL deployments."""

    url: str | None = Field(default=None, description="the Worker's URL; or name a variable in url_env")
    url_env: str | None = Field(default=None, description="e.g. FLUX_WORKER_URL")
    method: Literal["GET", "POST"] = "GET"
    api_key: SecretStr | None = Field(default=None, description="never in the file: name a variable in api_key_env")
    api_key_env: str | None = Field(default=None, description="e.g. SDXL_API_KEY; sent as Authorization: Bearer")
    send_options: bool = Field(default=False, description="also send size, seed, steps and negative prompt")
    max_prompt_length: int = Field(default=2048, ge=1, le=100_000)
    negative_prompt: bool = False
    max_steps: int | None = Field(default=None, ge=1, le=150)
    size: tuple[int, int] = (1024, 1024)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_environment(cls, data: Any) -> Any:
        data = from_environment(data, "url", "url_env", "")
        return from_environment(data, "api_key", "api_key_env", "")

    @model_validator(mode="after")
    def _url_present(self) -> CustomWorkerSettings:
        if not self.enabled:
            return self
        if not self.url:
            raise ValueError(f"no Worker URL: set url, or ${self.url_env or 'the variable named by url_env'}")
        refusal = insecure_url_reason(self.url, self.url_env)
        if refusal:
            raise ValueError(refusal)
        if self.api_key_env and not self.api_key:
            raise ValueError(f"set {self.api_key_env} in the environment")
        return self


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def insecure_url_reason(url: str, variable: str | None = None) -> str | None:
    """Why ``url`` is refused, or ``None``: prompts and the Bearer key must not cross a network in clear text."""
    parsed = urlsplit(url)
    host = (parsed.hostname or "").lower()
    named = f"{variable} ({url})" if variable else url
    if parsed.scheme not in ("http", "https") or not host:
        return f"{named} is not an http(s) URL"
    local = host in LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")
    if parsed.scheme == "http" and not local:
        return (f"{named} must start with https://: over plain http the prompts and the API key would cross "
                f"the network unencrypted (http:// is accepted only for localhost / 127.0.0.1)")
    return None
