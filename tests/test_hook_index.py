"""HookIndex: cached answers about hook implementations follow plugins as they come and go."""

from __future__ import annotations

import pluggy

from core.hooks.host import create_plugin_host
from core.hooks.index import HookIndex
from core.hookspecs import hookimpl
from core.types import JobEvent


class Observer:
    """Implements one observer hook."""

    @hookimpl
    def on_job_event(self, event: JobEvent, engine: object) -> None:
        """Nothing."""


def test_answers_follow_registration_and_removal() -> None:
    host = create_plugin_host(load_entry_points=False)
    assert not host.hooks.has("on_job_event")
    observer = Observer()
    host.pm.register(observer, name="observer")
    assert host.hooks.has("on_job_event") and host.hooks.sole("on_job_event") is observer
    host.pm.unregister(observer)
    assert not host.hooks.has("on_job_event") and host.hooks.sole("on_job_event") is None


def test_a_plain_pluggy_manager_is_asked_every_time() -> None:
    from core import hookspecs
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    index = HookIndex(pm)
    assert not index.has("on_job_event")
    pm.register(Observer(), name="observer")
    assert index.has("on_job_event") and len(index.impls("on_job_event")) == 1
