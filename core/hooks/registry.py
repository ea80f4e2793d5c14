"""Collecting what plugins register, checked for type and duplicates, one plugin at a time.

A plugin whose registration hook raises (or registers something wrong) is disabled and its
partial registrations are dropped, so it can never leave the engine half-configured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from core.hooks.host import PluginHost
from core.interfaces import BackendType, ConfigSection, Enhancer, PlatformType

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Registry:
    """Everything the loaded plugins offer, with who offered it."""

    sections: dict[str, ConfigSection] = field(default_factory=dict)
    backends: dict[str, BackendType] = field(default_factory=dict)
    platforms: dict[str, PlatformType] = field(default_factory=dict)
    enhancers: list[Enhancer] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)

    def collect(self, host: PluginHost, engine: Any) -> None:
        """Call the registration hooks that config validation needs; failures stay per plugin."""
        self._collect(host, "register_config_sections", ConfigSection, self.sections, {})
        self._collect(host, "register_image_models", BackendType, self.backends, {"engine": engine})
        self._collect(host, "register_platforms", PlatformType, self.platforms, {})

    def collect_enhancers(self, host: PluginHost, engine: Any) -> None:
        """Call ``register_prompt_enhancers`` once plugin settings are validated, so enhancers can read them."""
        enhancers: dict[str, Enhancer] = {}
        self._collect(host, "register_prompt_enhancers", Enhancer, enhancers, {"engine": engine})
        self.enhancers = list(enhancers.values())

    def _collect(self, host: PluginHost, hook_name: str, kind: type, into: dict[str, Any],
                 extra: dict[str, Any]) -> None:
        hook = getattr(host.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: the first to claim a name keeps it
            staged: dict[str, Any] = {}

            def register(item: Any, _staged: dict[str, Any] = staged, _plugin: str = impl.plugin_name) -> None:
                self._stage(kind, item, _plugin, into, _staged)

            kwargs = {"register": register, **extra}
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as exc:
                host.disable(impl.plugin_name, exc)
                self._drop(impl.plugin_name)
                continue
            self._commit(host, impl.plugin_name, kind, staged, into)

    def _stage(self, kind: type[Any], item: Any, plugin: str, into: dict[str, Any],
               staged: dict[str, Any]) -> None:
        if not isinstance(item, kind):
            raise TypeError(f"register() takes a {kind.__name__}, not {type(item).__name__}")
        name: str = item.name
        key = f"{kind.__name__}:{name}"
        if name in into or name in staged:
            owner = self.owners.get(key, plugin)
            raise ValueError(f"{kind.__name__} {name!r} is already registered by {owner}")
        staged[name] = item

    def _commit(self, host: PluginHost, plugin: str, kind: type, staged: dict[str, Any],
                into: dict[str, Any]) -> None:
        into.update(staged)
        record = host.records.get(plugin)
        for name in staged:
            self.owners[f"{kind.__name__}:{name}"] = plugin
            if record is not None:
                record.provides.append(f"{_LABELS[kind]} {name}")

    def _drop(self, plugin: str) -> None:
        """Forget what a now-disabled plugin registered in earlier hooks."""
        tables: dict[str, dict[str, Any]] = {"ConfigSection": self.sections, "BackendType": self.backends,
                                             "PlatformType": self.platforms}
        for key, owner in list(self.owners.items()):
            if owner == plugin:
                kind, name = key.split(":", 1)
                tables.get(kind, {}).pop(name, None)
                del self.owners[key]

    def owner_of(self, kind: type, name: str) -> str | None:
        """The plugin that registered ``name`` of ``kind``."""
        return self.owners.get(f"{kind.__name__}:{name}")


_LABELS: dict[type, str] = {
    ConfigSection: "config",
    BackendType: "backend",
    PlatformType: "platform",
    Enhancer: "enhancer",
}
