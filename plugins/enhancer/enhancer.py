"""The litellm prompt enhancer: one short, bounded LLM call per new prompt, cached."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from core import Enhancer, ImageModel, ImageRequest
from plugins.enhancer.cleaning import clean_answer
from plugins.enhancer.settings import EnhancerSettings
from plugins.enhancer.templates import TEMPLATES, family_of, user_message
from plugins.litellm_loader import load_litellm

log = logging.getLogger(__name__)


class LiteLLMEnhancer(Enhancer):
    """Rewrites a prompt for the target model's family; any failure raises and the engine keeps the original."""

    name = "litellm"

    def __init__(self, settings: EnhancerSettings) -> None:
        self.settings = settings
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def system_prompt(self, model: ImageModel) -> tuple[str, str]:
        """The family of ``model`` and the system prompt for it, limits filled in."""
        family = self.settings.families.get(model.name) or family_of(model.name, model.description)
        template = self.settings.templates.get(family) or TEMPLATES.get(family) or TEMPLATES["default"]
        limit = min(self.settings.max_output_chars, model.capabilities.max_prompt_length)
        return family, template.replace("{limit}", str(limit))

    async def enhance(self, prompt: str, request: ImageRequest, model: ImageModel) -> str:
        """The improved prompt, from the cache when this prompt was enhanced for this template before."""
        _, system = self.system_prompt(model)
        key = (prompt, str(self.settings.model), system)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        answer = await self._ask(system, prompt)
        enhanced = clean_answer(answer, max_chars=self.settings.max_output_chars,
                                limit=model.capabilities.max_prompt_length)
        self._remember(key, enhanced)
        return enhanced

    async def _ask(self, system: str, prompt: str) -> str | None:
        litellm = await load_litellm()
        response = await litellm.acompletion(**self.arguments(system, prompt))
        return response.choices[0].message.content

    def arguments(self, system: str, prompt: str) -> dict[str, Any]:
        """What ``acompletion`` receives: always a timeout, no SDK retries (the fallback is instant)."""
        args: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user_message(prompt)}],
            "timeout": self.settings.timeout, "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature, "max_retries": 0, **self.settings.params,
        }
        key = self.settings.api_key()
        if key:
            args["api_key"] = key
        if self.settings.api_base:
            args["api_base"] = self.settings.api_base
        return args

    def _remember(self, key: tuple[str, str, str], value: str) -> None:
        if self.settings.cache_size <= 0:
            return
        self._cache[key] = value
        if len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
