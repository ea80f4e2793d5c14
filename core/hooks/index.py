"""Which hooks have implementations, asked on every job and recomputed only when plugins change.

pluggy's ``get_hookimpls`` copies the implementation list on every call, and calling a hook runs
its whole machinery even when the core's own default is the only answer. The engine asks both
questions several times per job, so the answers are kept until a plugin is registered or removed.
"""

from __future__ import annotations

from typing import Any

import pluggy


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, counting registrations so that cached answers know when they are stale."""

    changes = 0

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin`` (see pluggy); cached hook answers are recomputed afterwards."""
        self.changes += 1
        try:
            return super().register(plugin, name)
        finally:
            self.changes += 1

    def unregister(self, plugin: Any | None = None, name: str | None = None) -> Any | None:
        """Remove ``plugin`` (see pluggy); cached hook answers are recomputed afterwards."""
        self.changes += 1
        try:
            return super().unregister(plugin, name)
        finally:
            self.changes += 1


class HookIndex:
    """The hook relay, with each hook's implementations known without asking pluggy per job."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.relay: Any = pm.hook
        self._counted = pm if isinstance(pm, PluginManager) else None  # a plain pluggy manager: nothing cached
        self._seen = -1
        self._impls: dict[str, list[pluggy.HookImpl]] = {}
        self._has: dict[str, bool] = {}

    def impls(self, name: str) -> list[pluggy.HookImpl]:
        """The implementations of hook ``name`` in registration order (do not mutate the list)."""
        counted = self._counted
        if counted is None or counted.changes != self._seen:
            self._impls.clear()
            self._has.clear()
            self._seen = -1 if counted is None else counted.changes
        found = self._impls.get(name)
        if found is None:
            found = self._impls[name] = getattr(self.relay, name).get_hookimpls()
        return found

    def has(self, name: str) -> bool:
        """Whether any plugin implements hook ``name``."""
        counted = self._counted
        if counted is not None and counted.changes == self._seen:
            known = self._has.get(name)
            if known is not None:
                return known
        known = self._has[name] = bool(self.impls(name))
        return known

    def sole(self, name: str) -> object | None:
        """The plugin object behind hook ``name`` when exactly one plugin implements it, else ``None``."""
        impls = self.impls(name)
        return impls[0].plugin if len(impls) == 1 else None
