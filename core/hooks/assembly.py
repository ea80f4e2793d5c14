"""Turning validated settings and registered plugins into models and platform settings.

Each ``[models.<name>]`` table names a backend; the backend's own settings model validates the
table. Problems from every table are collected so one ``ConfigError`` names them all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from core.config import Settings, describe_validation
from core.errors import ConfigError, SakaiError
from core.hooks.registry import Registry
from core.interfaces import ImageModel, ModelSettings, PlatformSettings

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Assembly:
    """What the engine runs with, built from config and plugins."""

    models: dict[str, ImageModel] = field(default_factory=dict)
    model_settings: dict[str, ModelSettings] = field(default_factory=dict)
    platform_settings: dict[str, PlatformSettings] = field(default_factory=dict)
    plugin_settings: dict[str, BaseModel] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def validate(self, table: str, name: str, model: type[BaseModel], raw: dict[str, Any]) -> Any:
        """Validate one table, recording problems instead of raising."""
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.problems += describe_validation(exc, where="config", prefix=f"{table}.{name}")
            return None


def assemble(settings: Settings, registry: Registry, engine: Engine) -> Assembly:
    """Build every configured model and validate every plugin table; raise on any problem."""
    out = Assembly()
    for name, raw in settings.models.items():
        _build_model(out, name, raw, registry, engine)
    for name, raw in settings.platforms.items():
        _platform(out, name, raw, registry)
    for name, raw in settings.plugins.items():
        _plugin_section(out, name, raw, registry)
    _check_default_model(out, settings)
    if out.problems:
        raise ConfigError(out.problems)
    return out


def _build_model(out: Assembly, name: str, raw: dict[str, Any], registry: Registry, engine: Engine) -> None:
    backend_name = raw.get("backend")
    backend = registry.backends.get(str(backend_name))
    if backend is None:
        known = ", ".join(sorted(registry.backends)) or "none loaded"
        out.problems.append(f"config: models.{name}.backend: unknown backend {backend_name!r} (available: {known})")
        return
    model_settings = out.validate("models", name, backend.settings, raw)
    if model_settings is None or not model_settings.enabled:
        return
    try:
        model = backend.create(name, model_settings, engine)
    except (SakaiError, ValueError, TypeError, KeyError) as exc:
        out.problems.append(f"config: models.{name}: {getattr(exc, 'user_message', exc)}")
        return
    out.models[name] = model
    out.model_settings[name] = model_settings


def _platform(out: Assembly, name: str, raw: dict[str, Any], registry: Registry) -> None:
    platform = registry.platforms.get(name)
    if platform is None:
        if raw.get("enabled"):
            known = ", ".join(sorted(registry.platforms)) or "none loaded"
            out.problems.append(f"config: platforms.{name}: no such platform is loaded (available: {known})")
        else:
            log.info("platform %s is configured but not loaded; it is disabled anyway", name)
        return
    validated = out.validate("platforms", name, platform.settings, raw)
    if validated is not None:
        out.platform_settings[name] = validated


def _plugin_section(out: Assembly, name: str, raw: dict[str, Any], registry: Registry) -> None:
    section = registry.sections.get(name)
    if section is None:
        out.problems.append(f"config: plugins.{name}: no loaded plugin declares this table")
        return
    validated = out.validate("plugins", name, section.settings, raw)
    if validated is not None:
        out.plugin_settings[name] = validated


def _check_default_model(out: Assembly, settings: Settings) -> None:
    default = settings.engine.default_model
    if out.models and default not in out.models and not out.problems:
        known = ", ".join(sorted(out.models))
        out.problems.append(f"config: engine.default_model: {default!r} is not a configured model (have: {known})")
    if not out.models and not out.problems:
        out.problems.append("config: models: no model is configured and enabled")
