"""Configuration: ``config.toml`` under the environment (and ``.env``), validated before any network I/O.

The core validates its own tables here; ``[models.*]``, ``[platforms.*]`` and ``[plugins.*]``
belong to plugins and are validated by their models in ``core.hooks.assembly``. Problems in the
core tables do not stop the others from being checked: ``read_settings`` returns them with usable
defaults so the caller reports every problem of every table together in one ``ConfigError``.

Loading happens in layers: the ``.env`` file joins the environment, the TOML file and the
environment are merged and validated, and then the original SakaiBot's variables
(``apply_original_variables``, at the end of this module) add the models, platform and enhancer
they always meant.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import limits
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import ConfigError

CONFIG_ENV = "SAKAIBOT_CONFIG"
ENV_FILE_ENV = "SAKAIBOT_ENV_FILE"
DEFAULT_CONFIG = "config.toml"
DEFAULT_ENV_FILE = ".env"
CORE_TABLES = ("engine", "logging", "store")
PLUGIN_TABLES = ("models", "platforms", "plugins")


class EngineSettings(BaseModel):
    """How the engine queues, limits and retries."""

    model_config = ConfigDict(extra="forbid")

    default_model: str = Field(default="preview", description="model for `/image <prompt>` and `generate`")
    queue_order: Literal["fair", "fifo"] = Field(default="fair", description="round-robin across users, or arrival")
    max_pending_per_user: int = Field(default=5, ge=1, le=10_000, description="waiting + running jobs per user")
    max_queue_per_lane: int = Field(default=200, ge=1, le=1_000_000, description="waiting jobs per model")
    rate_limit: str | None = Field(default="10/minute", description="per user, like '10/minute'; 'off' disables")
    max_attempts: int = Field(default=3, ge=1, le=10, description="tries per job for retryable backend errors")
    retry_initial_delay: float = Field(default=1.0, ge=0, description="seconds; doubles each retry, with jitter")
    retry_max_delay: float = Field(default=30.0, ge=0, description="a backend asking to wait longer fails the job")
    shutdown_grace: float = Field(default=30.0, ge=0, description="seconds running jobs get to finish on shutdown")
    admins: list[str] = Field(default_factory=list, description="'platform:user_id' entries that skip caps")
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

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="least severe shown")
    format: Literal["text", "json"] = Field(default="text", description="'json': one JSON object per line")


# ----------------------------------------------------------------- [queue] (the shared queue)
QUEUE_URL_ENV = "SAKAIBOT_QUEUE__URL"


class QueueSettings(BaseModel):
    """Where jobs wait: in this process (``memory``) or in Redis, shared by several processes."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "redis"] = "memory"
    url: SecretStr = Field(default=SecretStr("redis://127.0.0.1:6379/0"),
                           description=f"a password belongs in ${QUEUE_URL_ENV}, never in the file")
    key_prefix: str = Field(default="sakaibot", min_length=1, pattern=r"^[^{}\s]+$",
                            description="namespace of every key, so several bots can share one Redis")
    lease_seconds: float = Field(default=30.0, gt=0, le=3600,
                                 description="a claimed job whose holder stops heartbeating goes back after this")
    heartbeat_seconds: float = Field(default=10.0, gt=0, description="how often a holder extends its leases")
    node: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                             description="this front end's stable id (default: host name + a hash of the "
                                         "store path), naming the stream its jobs' events come back on")
    local_worker: bool = Field(default=True, description="`sakaibot run` also runs a worker in the same process")
    worker_slots: int | None = Field(default=None, ge=1, le=1000,
                                     description="jobs of each lane one worker process runs at once (default: the "
                                                 "lane's concurrency, which still caps the whole cluster)")
    result_ttl_seconds: float = Field(default=86400.0, gt=0,
                                      description="how long a finished image waits in Redis for its front end")
    events_max_len: int = Field(default=100_000, ge=1000,
                                description="entries kept in each front end's event stream (approximate)")

    @field_validator("url")
    @classmethod
    def _password_from_environment(cls, url: SecretStr) -> SecretStr:
        value = url.get_secret_value()
        if urlsplit(value).password is not None and os.environ.get(QUEUE_URL_ENV) != value:
            raise ValueError(f"the URL holds a password: remove it from the file and set ${QUEUE_URL_ENV} instead")
        return url

    @model_validator(mode="after")
    def _beat_inside_lease(self) -> QueueSettings:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds, or leases run out")
        return self


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
    queue: QueueSettings = Field(default_factory=QueueSettings)
    models: dict[str, dict[str, Any]] = Field(default_factory=_default_models)
    platforms: dict[str, dict[str, Any]] = Field(default_factory=_default_platforms)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _source: str = PrivateAttr(default="settings")
    _legacy: list[str] = PrivateAttr(default_factory=list)

    @property
    def source(self) -> str:
        """The file these settings came from, for messages (or ``settings`` without one)."""
        return self._source

    @property
    def legacy(self) -> list[str]:
        """What the original SakaiBot's variables turned on, one line each."""
        return self._legacy

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment (``.env`` included), then the TOML file."""
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


def load_env_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Add ``.env`` (or ``$SAKAIBOT_ENV_FILE``) to the environment; real variables win over the file.

    The values go into ``os.environ`` because plugins and the libraries under them (litellm reads
    ``OPENROUTER_API_KEY`` itself) read the environment, and a ``.env`` file must act exactly like it.
    """
    named = explicit or os.environ.get(ENV_FILE_ENV)
    path = Path(named) if named else Path(DEFAULT_ENV_FILE)
    if not path.is_file():
        if named:
            raise ConfigError([f"{path}: no such file (named by {ENV_FILE_ENV})"])
        return None
    try:
        values = dotenv_values(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"]) from exc
    for name, value in values.items():
        if value is not None and name not in os.environ:
            os.environ[name] = value
    return path


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the core tables; raise one ``ConfigError`` naming every bad key."""
    settings, problems = read_settings(path, **overrides)
    if problems:
        raise ConfigError(problems)
    return settings


def read_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> tuple[Settings, list[str]]:
    """Settings with defaults in place of bad core tables, and the problems found, each naming the file.

    A file that cannot be read at all is still raised at once: nothing else can be checked without it.
    """
    load_env_file()
    resolved = config_path(path)
    where = str(resolved or "settings")
    raw = _read_toml(resolved) if resolved is not None else {}
    problems = _env_json_problems() + _secrets_in_file(raw, where)
    with _without(_broken_env_tables()):
        settings, invalid = _validate(_bind(resolved), where, overrides)
    problems += invalid
    settings._source = where
    if resolved is not None:
        _anchor_store(settings.store, resolved.parent)
    problems += apply_original_variables(settings)
    return settings, problems


def _bind(resolved: Path | None) -> type[Settings]:
    return type("Settings", (Settings,), {
        "model_config": {**Settings.model_config, "toml_file": resolved},
        "__module__": __name__,
    })


def _validate(bound: type[Settings], where: str, overrides: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Validate; on failure, again with each failing table at its defaults, keeping every message."""
    try:
        return bound(**overrides), []
    except ValidationError as exc:
        problems = describe_validation(exc, where=where)
        failing = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    defaults = {name: Settings.model_fields[name].get_default(call_default_factory=True)
                for name in failing if name in Settings.model_fields}
    lenient = type("Settings", (bound,), {"model_config": {**bound.model_config, "extra": "ignore"},
                                          "__module__": __name__})  # unknown tables reported already
    try:
        return lenient(**{**overrides, **defaults}), problems
    except ValidationError:  # nothing better than the defaults to go on
        return Settings.model_construct(), problems


def _anchor_store(store: StoreSettings, base: Path) -> None:
    """Relative store paths are relative to the config file, not to wherever the bot was started."""
    if store.path and not Path(store.path).is_absolute():
        store.path = str(base / store.path)
    if store.archive_dir and not Path(store.archive_dir).is_absolute():
        store.archive_dir = str(base / store.archive_dir)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc


def _broken_env_tables() -> list[str]:
    """``SAKAIBOT_<TABLE>`` variables that are not a JSON object (already reported by ``_env_json_problems``)."""
    broken = []
    for table in (*CORE_TABLES, *PLUGIN_TABLES):
        name = f"SAKAIBOT_{table.upper()}"
        try:
            if name in os.environ and not isinstance(json.loads(os.environ[name]), dict):
                broken.append(name)
        except json.JSONDecodeError:
            broken.append(name)
    return broken


@contextlib.contextmanager
def _without(names: list[str]) -> Iterator[None]:
    """Hide variables while pydantic-settings reads the environment, so one bad one hides nothing else."""
    saved = {name: os.environ.pop(name) for name in names}
    try:
        yield
    finally:
        os.environ.update(saved)


def _env_json_problems() -> list[str]:
    """``SAKAIBOT_<TABLE>`` holds a whole table as JSON; say which variable is not, and where it breaks."""
    problems = []
    for table in (*CORE_TABLES, *PLUGIN_TABLES):
        name = f"SAKAIBOT_{table.upper()}"
        if name not in os.environ:
            continue
        try:
            value = json.loads(os.environ[name])
        except json.JSONDecodeError as exc:
            problems.append(f"environment: {name}: not valid JSON ({exc.msg} at character {exc.pos}); "
                            f"use an object like '{{\"key\": \"value\"}}'")
            continue
        if not isinstance(value, dict):
            problems.append(f"environment: {name}: must be a JSON object, not {type(value).__name__}")
    return problems


# Keys that hold a secret, with the variable each is read from when the table names none.
SECRET_KEYS: dict[str, str] = {
    "api_token": "CLOUDFLARE_API_TOKEN", "api_key": "the variable named by api_key_env",
    "token": "DISCORD_TOKEN", "bot_token": "TELEGRAM_BOT_TOKEN", "api_hash": "TELEGRAM_API_HASH",
    "session": "TELEGRAM_SESSION", "key": "the provider's key variable (e.g. OPENROUTER_API_KEY)",
}


def _secrets_in_file(raw: dict[str, Any], where: str) -> list[str]:
    """Secrets written in the file are refused: files get copied, committed and pasted into chats."""
    problems = []
    for table in PLUGIN_TABLES:
        entries = raw.get(table)
        for name, entry in (entries.items() if isinstance(entries, dict) else ()):
            if not isinstance(entry, dict):
                continue
            for key in sorted(SECRET_KEYS.keys() & entry.keys()):
                if key == "key" and table != "plugins":
                    continue
                variable = entry.get(f"{key}_env") or SECRET_KEYS[key]
                problems.append(f"{where}: {table}.{name}.{key}: secrets are not read from the config file; "
                                f"remove it and set {variable} in the environment (or .env) instead")
    return problems


def describe_validation(exc: ValidationError, where: str, prefix: str = "") -> list[str]:
    """One line per bad key, as ``where: table.key: message`` (without pydantic's ``Value error,``)."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        lines.append(f"{where}: {key or '(root)'}: {message}")
    return lines


# ------------------------------------------------------------------ the original SakaiBot's variables
ORIGINAL_WORKERS = (("flux", "FLUX_WORKER_URL", "GET", ""), ("sdxl", "SDXL_WORKER_URL", "POST", "SDXL_API_KEY"))
LLM_DEFAULTS = {"openrouter": "openrouter/google/gemini-2.5-flash", "gemini": "gemini/gemini-2.5-flash"}
LLM_KEYS = {"openrouter": "OPENROUTER_API_KEY", "gemini": "GEMINI_API_KEY"}
DEFAULT_MODEL_ENV = "SAKAIBOT_ENGINE__DEFAULT_MODEL"


def apply_original_variables(settings: Settings) -> list[str]:
    """Turn the original bot's variables into models, the enhancer and Telegram; record what each did.

    Only what no table claims is added, so an explicit ``config.toml`` always wins.
    """
    added = _original_workers(settings)
    _original_default_model(settings, added)
    return _original_enhancer(settings) + _original_telegram(settings)


def _original_workers(settings: Settings) -> list[str]:
    claimed = {entry.get("url_env") for entry in settings.models.values() if isinstance(entry, dict)}
    added = []
    for name, variable, method, key_variable in ORIGINAL_WORKERS:
        if not os.environ.get(variable) or name in settings.models or variable in claimed:
            continue
        table: dict[str, Any] = {"backend": "cloudflare-worker", "url_env": variable, "method": method,
                                 "description": f"{name.upper()} on your own Worker ({variable})"}
        note = f"{variable} -> model '{name}' (your Worker, {method})"
        if key_variable and os.environ.get(key_variable):
            table["api_key_env"] = key_variable
            note += f" with {key_variable} as its Bearer key"
        elif key_variable:
            note += f" without a key ({key_variable} is not set)"
        settings.models[name] = table
        settings.legacy.append(note)
        added.append(name)
    return added


def _original_default_model(settings: Settings, added: list[str]) -> None:
    """The first original model replaces the offline ``preview`` as default, unless the default was chosen."""
    preview = settings.models.get("preview", {})
    chosen = DEFAULT_MODEL_ENV in os.environ or "default_model" in _env_object("SAKAIBOT_ENGINE")
    if added and settings.engine.default_model == "preview" and preview.get("backend") == "preview" and not chosen:
        settings.engine.default_model = added[0]
        settings.legacy.append(f"default model: '{added[0]}' (instead of the offline 'preview'; "
                               f"set {DEFAULT_MODEL_ENV} to choose another)")


def _original_enhancer(settings: Settings) -> list[str]:
    provider = os.environ.get("LLM_PROVIDER", "").strip().lower()
    if not provider:
        return []
    if provider not in LLM_DEFAULTS:
        return [f"environment: LLM_PROVIDER: {provider!r} is not one of {', '.join(LLM_DEFAULTS)}; "
                f"for another provider set [plugins.enhancer] model to a litellm model string"]
    table = settings.plugins.setdefault("enhancer", {})
    if table.get("model"):
        settings.legacy.append(f"LLM_PROVIDER={provider}: ignored, [plugins.enhancer] model is set")
        return []
    table["model"] = LLM_DEFAULTS[provider]
    key = LLM_KEYS[provider]
    state = "on" if os.environ.get(key) else f"off until {key} is set"
    settings.legacy.append(f"LLM_PROVIDER={provider} -> prompt enhancement with {table['model']} ({state})")
    return []


def _original_telegram(settings: Settings) -> list[str]:
    if not (os.environ.get("TELEGRAM_API_ID") and os.environ.get("TELEGRAM_API_HASH")):
        return []
    if "telegram" in settings.platforms:
        settings.legacy.append("TELEGRAM_API_ID/TELEGRAM_API_HASH: used by the [platforms.telegram] table")
        return []
    if os.environ.get("TELEGRAM_BOT_TOKEN"):
        mode, how = "bot", "TELEGRAM_BOT_TOKEN"
    elif os.environ.get("TELEGRAM_SESSION"):
        mode, how = "userbot", "TELEGRAM_SESSION"
    else:
        return ["environment: TELEGRAM_API_ID and TELEGRAM_API_HASH are set but Telegram cannot log in: set "
                "TELEGRAM_BOT_TOKEN (a bot) or TELEGRAM_SESSION (a userbot: a session string, or the path "
                "of an existing Telethon .session file)"]
    settings.platforms["telegram"] = {"enabled": True, "mode": mode}
    settings.legacy.append(f"TELEGRAM_API_ID + TELEGRAM_API_HASH + {how} -> Telegram ({mode})")
    return []


def _env_object(name: str) -> dict[str, Any]:
    try:
        value = json.loads(os.environ.get(name) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
