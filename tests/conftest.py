"""Shared fixtures: an engine with fake models that is always stopped, and real redis-servers."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.engine import Engine
from tests.redis_server import RedisServer, running_server
from tests.utils import FakeBackendPlugin, make_engine

# litellm must never try the network from tests; set before anything imports it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI installs its own log handler; put the root logger back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def engine_factory() -> AsyncIterator[Callable[..., Any]]:
    """Build and start engines; each is stopped at the end of the test."""
    made: list[Engine] = []

    async def build(models: dict[str, dict[str, Any]] | None = None, *, start: bool = True,
                    **kwargs: Any) -> tuple[Engine, FakeBackendPlugin]:
        engine, backend = make_engine(models, **kwargs)
        made.append(engine)
        if start:
            await engine.start()
        return engine, backend

    yield build
    for engine in made:
        for model in engine.models.values():
            gate = getattr(model, "gate", None)
            if gate is not None:
                gate.set()
        await engine.stop(grace=1)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server without persistence."""
    yield from running_server(tmp_path)


@pytest.fixture
def durable_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with an append-only file synced on every write."""
    yield from running_server(tmp_path, appendonly=True)
