"""Every hook a SakaiBot plugin can implement.

Hooks marked *may be async* accept ``async def`` implementations; the engine awaits them through
``core.hooks.call``. ``firstresult`` hooks must be plain ``def``: an un-awaited coroutine is never
``None``, so an async implementation would always win; such plugins are refused at start-up.
Implementations must not give their arguments default values: pluggy never passes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from core.engine import Engine
    from core.interfaces import BackendType, ConfigSection, Enhancer, ImageModel, PlatformType
    from core.types import Image, ImageRequest, Job, JobEvent

PROJECT = "sakaibot"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_config_sections(register: Callable[[ConfigSection], None]) -> None:
    """Declare ``[plugins.<name>]`` tables and the pydantic models that validate them. Sync."""


@hookspec
def register_image_models(register: Callable[[BackendType], None], engine: Engine) -> None:
    """Offer backend types; ``[models.<name>]`` tables create models from them. Sync."""


@hookspec
def register_platforms(register: Callable[[PlatformType], None]) -> None:
    """Offer chat platforms; only those enabled in config start. Sync."""


@hookspec
def register_prompt_enhancers(register: Callable[[Enhancer], None], engine: Engine) -> None:
    """Offer prompt enhancers; the engine applies them in registration order. Sync."""


@hookspec
def startup(engine: Engine) -> Any:
    """Called once after the engine is built and before any job runs. May be async."""


@hookspec
def shutdown(engine: Engine) -> Any:
    """Called once when the engine stops, after the last job. May be async; errors only logged."""


@hookspec(firstresult=True)
def select_model(request: ImageRequest, models: dict[str, ImageModel]) -> str | None:
    """Name the model for a request that names none; the core default answers last. Sync."""


@hookspec
def admit_request(request: ImageRequest, model: str, engine: Engine) -> Any:
    """Refuse a request before it is queued (raise a ``SakaiError``): bans, quotas. May be async; in order."""


@hookspec
def before_generate(job: Job, engine: Engine) -> Any:
    """Adjust or veto a job (raise ``JobRejected``) after enhancement, before the model. May be async.

    Implementations run one after another, in pluggy's call order.
    """


@hookspec
def after_generate(job: Job, result: Image, engine: Engine) -> Any:
    """Observe a finished job (history, audit, billing): ``result`` is its first image, ``job.results`` all of
    them (``--n``). Called once per job. May be async; failures only logged."""


@hookspec
def on_generation_error(job: Job, error: BaseException, engine: Engine) -> Any:
    """Observe a failed job. May be async; failures only logged."""


@hookspec(firstresult=True)
def render_error(job: Job | None, error: BaseException) -> str | None:
    """Turn an error into the text a user sees; the core default answers last. Sync."""


@hookspec
def on_job_event(event: JobEvent, engine: Engine) -> Any:
    """Observe every event of every job. May be async; failures only logged."""
