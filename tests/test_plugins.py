"""Plugin loading: hookspecs documented, failures isolated, registrations checked."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pluggy

from core import BackendType, hookimpl, hookspecs
from core.hooks.host import PluginStatus, create_plugin_host
from tests.utils import FakeBackendPlugin, make_engine, request

ROOT = Path(__file__).resolve().parent.parent


def test_every_hookspec_has_a_docstring():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "sakaibot_spec")]
    assert len(specs) == 13
    assert all(f.__doc__ and f.__doc__.strip() for f in specs)


def test_first_party_plugins_load_through_entry_points():
    host = create_plugin_host()
    assert host.records["preview"].status is PluginStatus.LOADED
    assert host.records["console"].source == "platforms.console"


class _EntryPoint(SimpleNamespace):
    def load(self):
        return self.loader()


def _fail_import():
    raise ImportError("No module named 'missing_dependency'")


def test_a_plugin_that_fails_to_import_is_recorded_and_skipped():
    host = create_plugin_host(load_entry_points=False)
    good = SimpleNamespace(register_image_models=None)
    host.load_entry_points([
        _EntryPoint(name="broken", value="broken_pkg", dist=None, loader=_fail_import),
        _EntryPoint(name="fine", value="fine_pkg", dist=None, loader=lambda: good),
    ])
    assert host.records["broken"].status is PluginStatus.FAILED
    assert "missing_dependency" in host.records["broken"].error
    assert host.records["fine"].status is PluginStatus.LOADED


class RaisesInRegistration:
    @hookimpl
    def register_image_models(self, register, engine):
        register(BackendType("half", lambda *a: None))
        raise RuntimeError("registration exploded")


class RegistersJunk:
    @hookimpl
    def register_platforms(self, register):
        register("not a platform type")


class Duplicate:
    @hookimpl
    def register_image_models(self, register, engine):
        register(BackendType("fake", lambda *a: None))


class Misspelled:
    @hookimpl
    def on_job_evnt(self, event, engine):
        pass


class AsyncFirstResult:
    @hookimpl
    async def render_error(self, job, error):
        return "always wins"


def test_broken_plugins_are_disabled_and_the_rest_works():
    broken = [("raises", RaisesInRegistration()), ("junk", RegistersJunk()), ("dup", Duplicate()),
              ("typo", Misspelled()), ("asyncfirst", AsyncFirstResult())]
    engine, _ = make_engine(plugins=broken)
    records = engine.host.records
    assert "registration exploded" in records["raises"].error
    assert "takes a PlatformType" in records["junk"].error
    assert "already registered by fake-backend" in records["dup"].error
    assert "unknown hook 'on_job_evnt'" in records["typo"].error
    assert "render_error must be a plain def" in records["asyncfirst"].error
    assert all(records[name].status is PluginStatus.FAILED for name, _ in broken)
    assert "half" not in engine.registry.backends
    assert engine.render_error(None, RuntimeError()) != "always wins"


async def test_an_engine_with_broken_plugins_still_makes_images(engine_factory):
    engine, _ = await engine_factory(plugins=[("raises", RaisesInRegistration()), ("typo", Misspelled())])
    await (await engine.submit(request())).result()


def test_registration_records_who_provides_what():
    backend = FakeBackendPlugin()
    host = create_plugin_host(load_entry_points=False, extra=[("fake-backend", backend)])
    engine, _ = make_engine()
    assert engine.registry.owner_of(BackendType, "fake") == "fake-backend"
    assert "backend fake" in engine.host.records["fake-backend"].provides
    assert isinstance(host.pm, pluggy.PluginManager)


def _broken_package(root: Path) -> None:
    """A real installed distribution whose plugin module raises at import."""
    (root / "broken_sakai_plugin.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    info = root / "broken_sakai_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sakai-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sakaibot]\nbroken = broken_sakai_plugin\n")


def test_a_broken_plugin_package_leaves_every_command_working(tmp_path):
    _broken_package(tmp_path)
    (tmp_path / "config.toml").write_text((ROOT / "config.toml").read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "SAKAIBOT_CONFIG": str(tmp_path / "config.toml"), "COLUMNS": "200"}

    def sakaibot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    plugins = sakaibot("plugins")
    assert plugins.returncode == 0, plugins.stderr
    assert "broken" in plugins.stdout and "failed" in plugins.stdout and "broken on purpose" in plugins.stdout
    assert "preview" in plugins.stdout and "loaded" in plugins.stdout
    assert sakaibot("models").returncode == 0
    generated = sakaibot("generate", "a lighthouse", "--out", "out.png", "--seed", "3")
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
    assert textwrap.dedent(generated.stdout).startswith("out.png")
