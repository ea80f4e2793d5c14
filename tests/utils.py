"""Fakes shared by the test suites: a controllable model, a recording plugin, an engine factory."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterable
from typing import Any

from PIL import Image as PILImage

from core import (
    BackendType,
    Capabilities,
    GenerationRequest,
    Image,
    ImageModel,
    ImageRequest,
    InputSupport,
    ModelSettings,
    Progress,
    Requester,
    Size,
    hookimpl,
    sizes_for_area,
)
from core.config import EngineSettings, Settings, StoreSettings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from core.types import GenerationOptions, JobEvent


def tiny_png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real 8x8 PNG."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = tiny_png()


class FakeSettings(ModelSettings):
    """Keys of the fake backend."""

    default_concurrency: int = 1
    latency: float = 0.0
    max_prompt_length: int = 500
    max_steps: int | None = 30
    inputs: InputSupport | None = None  # what the fake accepts as input pictures (issue 15)
    upscale_factors: tuple[int, ...] = ()
    max_batch: int = 1


class FakeModel(ImageModel):
    """A model that records calls, can block on a gate, sleep, or fail on chosen attempts."""

    def __init__(self, name: str, settings: FakeSettings) -> None:
        self.name = name
        self.description = f"fake model {name}"
        self.latency = settings.latency
        self.capabilities = Capabilities(
            sizes=sizes_for_area(1024 * 1024), max_prompt_length=settings.max_prompt_length,
            supports_negative_prompt=True, max_steps=settings.max_steps,
            default_concurrency=settings.default_concurrency, inputs=settings.inputs,
            upscale_factors=settings.upscale_factors, max_batch=settings.max_batch,
        )
        self.calls: list[GenerationRequest] = []
        self.failures: list[BaseException] = []
        self.gate: asyncio.Event | None = None
        self.active = 0
        self.peak = 0
        self.closed = False

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Record, wait as configured, fail if told to, else return a tiny PNG."""
        self.calls.append(request)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.failures:
                raise self.failures.pop(0)
            await progress(0.5)
            return Image(PNG, "image/png", 8, 8, seed=request.seed, model=self.name)
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        """Remember that the engine closed us."""
        self.closed = True


class FakeBackendPlugin:
    """Registers the ``fake`` backend and keeps every model it creates."""

    def __init__(self) -> None:
        self.models: dict[str, FakeModel] = {}

    @hookimpl
    def register_image_models(self, register: Callable[[BackendType], None], engine: Engine) -> None:
        """Offer the fake backend."""
        register(BackendType("fake", self._create, FakeSettings, "test double"))

    def _create(self, name: str, settings: FakeSettings, engine: Engine) -> FakeModel:
        self.models[name] = FakeModel(name, settings)
        return self.models[name]


class EventRecorder:
    """An ``on_job_event`` observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    @hookimpl
    def on_job_event(self, event: JobEvent, engine: Engine) -> None:
        """Keep the event."""
        self.events.append(event)

    def kinds(self, job_id: str) -> list[str]:
        """The kinds of one job's events, in order."""
        return [e.kind.value for e in self.events if e.job.id == job_id]


def make_engine(models: dict[str, dict[str, Any]] | None = None, *, plugins: Iterable[tuple[str, object]] = (),
                store: dict[str, Any] | None = None, **engine_settings: Any) -> tuple[Engine, FakeBackendPlugin]:
    """An engine with fake models only and no entry points; settings given as keywords."""
    backend = FakeBackendPlugin()
    models = models or {"a": {"backend": "fake"}}
    engine_settings.setdefault("default_model", next(iter(models)))
    engine_settings.setdefault("rate_limit", None)
    settings = Settings(engine=EngineSettings(**engine_settings), models=models, platforms={},
                        store=StoreSettings(**(store or {})))
    host = create_plugin_host(load_entry_points=False, extra=[("fake-backend", backend), *plugins])
    engine = Engine(settings, host)
    engine.position_interval = 0.0
    return engine, backend


def requester(user: str = "u1", *, admin: bool = False, chat: str = "c") -> Requester:
    """Someone on the test platform."""
    return Requester(platform="test", user_id=user, chat_id=chat, is_admin=admin)


def request(prompt: str = "a red fox", *, user: str = "u1", model: str | None = None,
            admin: bool = False, images: tuple[bytes, ...] = (), mask: bytes | None = None,
            **options: Any) -> ImageRequest:
    """A request from ``user`` on the test platform, with input ``images`` (and a ``mask``) if given."""
    return ImageRequest(prompt=prompt, model=model, options=GenerationOptions(**options),
                        requester=requester(user, admin=admin), images=images, mask=mask)


async def settle(rounds: int = 5) -> None:
    """Let the event loop run a few rounds so queued work is picked up."""
    for _ in range(rounds):
        await asyncio.sleep(0)


__all__ = ["PNG", "EventRecorder", "FakeBackendPlugin", "FakeModel", "Size", "make_engine", "request", "settle",
           "tiny_png"]
