"""Configuration: the shipped file, the environment, and errors that name every bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.engine import Engine
from core.errors import ConfigError
from core.hooks.host import create_plugin_host
from tests.utils import FakeBackendPlugin

ROOT = Path(__file__).resolve().parent.parent


def _engine(path: Path) -> Engine:
    host = create_plugin_host(load_entry_points=True, extra=[("fake-backend", FakeBackendPlugin())])
    return Engine(load_settings(path), host)


def test_the_shipped_config_matches_the_built_in_defaults(monkeypatch):
    monkeypatch.delenv("SAKAIBOT_CONFIG", raising=False)
    shipped = load_settings(ROOT / "config.toml")
    defaults = Settings()
    assert shipped.engine == defaults.engine
    assert shipped.models["preview"]["backend"] == defaults.models["preview"]["backend"]
    assert shipped.platforms["console"]["enabled"] is True


def test_the_shipped_config_builds_an_engine_offline():
    engine = _engine(ROOT / "config.toml")
    assert list(engine.models) == ["preview"] and engine.platform_settings["console"].enabled


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[engine]\nmax_attempts = 2\nrate_limit = "5/minute"\n')
    monkeypatch.setenv("SAKAIBOT_ENGINE__MAX_ATTEMPTS", "4")
    settings = load_settings(path)
    assert settings.engine.max_attempts == 4 and settings.engine.rate_limit == "5/minute"


def test_sakaibot_config_points_elsewhere(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.toml"
    path.write_text('[engine]\nqueue_order = "fifo"\n')
    monkeypatch.setenv("SAKAIBOT_CONFIG", str(path))
    assert load_settings().engine.queue_order == "fifo"


def test_one_error_names_every_bad_core_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[engine]\nqueue_order = "random"\nmax_attempts = 0\nrate_limit = "lots"\ntypo = 1\n'
                    '[loging]\nlevel = "INFO"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = caught.value.user_message
    for key in ("engine.queue_order", "engine.max_attempts", "engine.rate_limit", "engine.typo", "loging"):
        assert key in text


def test_one_error_names_every_bad_plugin_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[engine]\ndefault_model = "a"\n'
        '[models.a]\nbackend = "fake"\nconcurrency = 0\ncolour = "red"\n'
        '[models.b]\nbackend = "nosuch"\n'
        '[models.c]\nbackend = "preview"\nlatency = -1\n'
        '[platforms.console]\nenabled = true\noutput_dir = 3\n'
        '[platforms.irc]\nenabled = true\n'
        '[plugins.ghost]\nx = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        _engine(path)
    text = caught.value.user_message
    for key in ("models.a.concurrency", "models.a.colour", "models.b.backend: unknown backend 'nosuch'",
                "models.c.latency", "platforms.console.output_dir", "platforms.irc", "plugins.ghost"):
        assert key in text, key


def test_a_default_model_that_is_not_configured_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[engine]\ndefault_model = "flux"\n[models.preview]\nbackend = "preview"\n')
    with pytest.raises(ConfigError, match=r"engine\.default_model: 'flux'"):
        _engine(path)


def test_broken_toml_is_reported_with_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[engine\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml")
