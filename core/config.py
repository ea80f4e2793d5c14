"""Configuration: ``config.toml`` under the environment, validated before any network I/O.

The core validates its own tables here; ``[models.*]``, ``[platforms.*]`` and ``[plugins.*]``
belong to plugins and are validated by their models in ``core.hooks.assembly``. Every problem found
in either step is reported together in one ``ConfigError``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import limits
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import ConfigError

CONFIG_ENV = "SAKAIBOT_CONFIG"
DEFAULT_CONFIG = "config.toml"


class EngineSettings(BaseModel):
    """How the engine queues, limits and retries."""

    model_config = ConfigDict(extra="forbid")

    default_model: str = "preview"
    queue_order: Literal["fair", "fifo"] = "fair"
    max_pending_per_user: int = Field(default=5, ge=1, le=10_000)
    max_queue_per_lane: int = Field(default=200, ge=1, le=1_000_000)
    rate_limit: str | None = "10/minute"
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_initial_delay: float = Field(default=1.0, ge=0)
    retry_max_delay: float = Field(default=30.0, ge=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    admins: list[str] = Field(default_factory=list)
    daily_quota: int | None = Field(default=None, ge=1, description="images per user per model per UTC day")
    max_crashes: int = Field(default=2, ge=1, le=100,
                             description="a job running when the process died this often is failed, not retried")

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate(cls, value: str | None) -> str | None:
        if value in (None, "", "none", "off"):
            return None
        try:
            limits.parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate like '5/minute': {value!r}") from exc
        return value


class StoreSettings(BaseModel):
    """Where jobs are kept across restarts; no path keeps them in memory only."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(default=None, description="the SQLite file; one SakaiBot process per file")
    archive_dir: str | None = Field(default=None, description="keep every image here too")
    archive_days: int = Field(default=30, ge=1, le=3650, description="delete archived images older than this")
    history_limit: int = Field(default=10, ge=1, le=100)
    busy_timeout: float = Field(default=5.0, gt=0, le=600, description=(
        "seconds a write waits for a database locked by another program before it fails (the request is then "
        "refused, never acknowledged unsaved)"))
    retention_days: float = Field(default=30.0, gt=0, le=36500, description=(
        "finished jobs (done, failed, cancelled) older than this many days are deleted with any image bytes "
        "still kept for them; waiting and running jobs are never deleted"))


class LoggingSettings(BaseModel):
    """Where log records go and how much of them."""

    model_config = ConfigDict(extra="forbid")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def _default_models() -> dict[str, dict[str, Any]]:
    return {"preview": {"backend": "preview"}}


def _default_platforms() -> dict[str, dict[str, Any]]:
    return {"console": {"enabled": True}}


class Settings(BaseSettings):
    """Everything SakaiBot is configured with; the defaults run offline."""

    model_config = SettingsConfigDict(
        env_prefix="SAKAIBOT_", env_nested_delimiter="__", extra="forbid", toml_file=None,
    )

    engine: EngineSettings = Field(default_factory=EngineSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    models: dict[str, dict[str, Any]] = Field(default_factory=_default_models)
    platforms: dict[str, dict[str, Any]] = Field(default_factory=_default_platforms)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment, then the TOML file."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def from_environment(data: Any, field: str, env_field: str, default_env: str = "") -> Any:
    """Fill ``field`` of raw settings from the variable named by ``env_field`` (or ``default_env``).

    Plugin settings use it in a ``mode="before"`` validator so secrets live only in the environment.
    """
    if isinstance(data, dict) and not data.get(field):
        name = data.get(env_field) or default_env
        if name and os.environ.get(name):
            data = {**data, field: os.environ[name]}
    return data


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to read: the argument, ``$SAKAIBOT_CONFIG``, or ``./config.toml`` if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG)
    return local if local.is_file() else None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the core tables; raise one ``ConfigError`` naming every bad key."""
    resolved = config_path(path)
    if resolved is not None:
        _check_toml(resolved)
    bound = type("Settings", (Settings,), {
        "model_config": {**Settings.model_config, "toml_file": resolved},
        "__module__": __name__,
    })
    try:
        settings = bound(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, where=str(resolved or "settings"))) from exc
    if resolved is not None:
        _anchor_store(settings.store, resolved.parent)
    return settings


def _anchor_store(store: StoreSettings, base: Path) -> None:
    """Relative store paths are relative to the config file, not to wherever the bot was started."""
    if store.path and not Path(store.path).is_absolute():
        store.path = str(base / store.path)
    if store.archive_dir and not Path(store.archive_dir).is_absolute():
        store.archive_dir = str(base / store.archive_dir)


def _check_toml(path: Path) -> None:
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc


def describe_validation(exc: ValidationError, where: str, prefix: str = "") -> list[str]:
    """One line per bad key, as ``where: table.key: message``."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        lines.append(f"{where}: {key or '(root)'}: {error['msg']}")
    return lines
