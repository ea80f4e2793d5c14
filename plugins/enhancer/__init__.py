"""Prompt enhancement through any LLM litellm serves, with a silent fallback to the user's prompt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core import ConfigSection, Enhancer, hookimpl
from plugins.enhancer.enhancer import LiteLLMEnhancer
from plugins.enhancer.settings import EnhancerSettings
from plugins.litellm_loader import load_litellm

log = logging.getLogger(__name__)
SECTION = "enhancer"


@hookimpl
def register_config_sections(register: Callable[[ConfigSection], None]) -> None:
    """Declare ``[plugins.enhancer]``."""
    register(ConfigSection(SECTION, EnhancerSettings))


@hookimpl
def register_prompt_enhancers(register: Callable[[Enhancer], None], engine: Any) -> None:
    """Register the enhancer only when it can work, so no request waits on a call that cannot succeed."""
    settings = engine.plugin_config(SECTION)
    reason = settings.why_off()
    if reason is None:
        register(LiteLLMEnhancer(settings))
        log.info("prompt enhancement on, with %s", settings.model)
    elif settings.model and settings.enabled:
        log.warning("prompt enhancement is off: %s; prompts are used as written", reason)
    else:
        log.info("prompt enhancement is off: %s", reason)


@hookimpl
async def startup(engine: Any) -> None:
    """Import litellm before the first request, only when the enhancer is on."""
    if any(isinstance(e, LiteLLMEnhancer) for e in engine.registry.enhancers):
        await load_litellm()
