"""``[queue]`` settings: the Redis URL's password only from the environment, and the queue they build."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.engine.memory_queue import InMemoryQueue
from core.engine.queues import create_queue
from core.engine.redis_link import mask_url
from core.engine.redis_queue import RedisQueue
from core.errors import ConfigError

SECRET_URL = "redis://:hunter2@127.0.0.1:6379/0"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_password_in_the_file_is_refused_with_the_variable_to_use(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAKAIBOT_QUEUE__URL", raising=False)
    path = write(tmp_path, f'[queue]\nbackend = "redis"\nurl = "{SECRET_URL}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "queue.url" in str(caught.value) and "SAKAIBOT_QUEUE__URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_password_from_the_environment_is_kept_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAKAIBOT_QUEUE__URL", SECRET_URL)
    settings = load_settings(write(tmp_path, '[queue]\nbackend = "redis"\n'))
    assert settings.queue.url.get_secret_value() == SECRET_URL
    assert "hunter2" not in repr(settings) and "hunter2" not in mask_url(SECRET_URL)
    assert mask_url(SECRET_URL) == "redis://:***@127.0.0.1:6379/0"


def test_the_heartbeat_must_beat_well_inside_the_lease(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "[queue]\nlease_seconds = 10\nheartbeat_seconds = 6\n"))
    assert "heartbeat_seconds" in str(caught.value)


async def test_create_queue_follows_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAKAIBOT_QUEUE__URL", raising=False)
    assert isinstance(create_queue(load_settings(write(tmp_path, ""))), InMemoryQueue)
    queue = create_queue(load_settings(write(tmp_path, '[queue]\nbackend = "redis"\nkey_prefix = "bot2"\n')))
    assert isinstance(queue, RedisQueue) and queue.channel == "{bot2}:changes"
    await queue.close()  # never connected: closing is still clean
