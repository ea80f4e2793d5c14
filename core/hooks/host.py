"""Building the plugin manager and loading plugins from entry points, one failure at a time.

First-party plugins load through the project's own ``sakaibot`` entry points, exactly like a
third-party package; a plugin that fails to import is recorded and skipped, never fatal.
"""

from __future__ import annotations

import enum
import importlib.metadata
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from core import hookspecs
from core.hooks import defaults
from core.hooks.call import async_firstresult_impls
from core.hooks.index import HookIndex, PluginManager

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sakaibot"
CORE_PLUGIN = "sakaibot.defaults"


class PluginStatus(enum.StrEnum):
    """Whether a plugin is in use."""

    LOADED = "loaded"
    FAILED = "failed"


@dataclass(slots=True)
class PluginRecord:
    """What ``sakaibot plugins`` shows for one plugin."""

    name: str
    source: str
    status: PluginStatus = PluginStatus.LOADED
    error: str | None = None
    version: str | None = None
    provides: list[str] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        """Mark the plugin as failed with a one-line reason."""
        self.status = PluginStatus.FAILED
        self.error = f"{type(error).__name__}: {error}"


class PluginHost:
    """A plugin manager together with the record of what loaded and what failed."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.records: dict[str, PluginRecord] = {}
        self.hooks = HookIndex(pm)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay."""
        return self.pm.hook

    def add(self, plugin: ModuleType | object, name: str, source: str = "code",
            version: str | None = None) -> PluginRecord:
        """Register a plugin object, recording a failure instead of raising."""
        record = PluginRecord(name=name, source=source, version=version)
        self.records[name] = record
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            log.error("plugin %s could not be registered: %s", name, exc)
            record.fail(exc)
        return record

    def disable(self, name: str, error: BaseException) -> None:
        """Take a plugin out after it failed, keeping its record."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.records[name].fail(error)
        log.error("plugin %s disabled: %s", name, error)

    def load_entry_points(self, entry_points: Iterable[Any] | None = None) -> None:
        """Import and register every ``sakaibot`` entry point, each in isolation."""
        found = entry_points if entry_points is not None else _entry_points()
        for ep in found:
            if ep.name in self.records:
                continue
            version = ep.dist.version if getattr(ep, "dist", None) else None
            try:
                module = ep.load()
            except Exception as exc:
                log.error("plugin %s failed to import (%s)", ep.name, ep.value, exc_info=True)
                self.records[ep.name] = PluginRecord(ep.name, ep.value, version=version)
                self.records[ep.name].fail(exc)
                continue
            self.add(module, ep.name, source=ep.value, version=version)

    def check(self) -> None:
        """Disable plugins with misspelled hooks or async firstresult hooks, naming the fault.

        This is ``pm.check_pending()`` done per plugin, so one broken plugin leaves the rest working.
        """
        for plugin_name, problem in _hook_problems(self.pm):
            if plugin_name in self.records and self.pm.get_plugin(plugin_name) is not None:
                self.disable(plugin_name, PluginHookError(problem))


class PluginHookError(Exception):
    """A plugin implements a hook wrongly."""


def _hook_problems(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    problems = []
    for name in dir(pm.hook):
        hook = getattr(pm.hook, name)
        if not isinstance(hook, pluggy.HookCaller):
            continue
        for impl in hook.get_hookimpls():
            if hook.spec is None and not impl.optionalhook:
                problems.append((impl.plugin_name, f"unknown hook {name!r}"))
        problems += [(plugin, f"{name} must be a plain def") for plugin in async_firstresult_impls(hook)]
    return problems


def _entry_points() -> list[Any]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def create_plugin_host(*, load_entry_points: bool = True,
                       extra: Iterable[tuple[str, object]] = ()) -> PluginHost:
    """A fresh plugin manager with the hookspecs, the core defaults and the plugins found."""
    pm = PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    host.add(defaults, CORE_PLUGIN, source="core")
    for name, plugin in extra:
        host.add(plugin, name)
    if load_entry_points:
        host.load_entry_points()
    host.check()
    return host
