"""Shared fixtures: an engine with fake models that is always stopped."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from core.engine import Engine
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
