"""Any image model litellm serves (OpenAI gpt-image, Azure, Bedrock, Vertex, ...), by model string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import BackendType, hookimpl
from plugins.litellm_images.model import LiteLLMImageModel, LiteLLMImageSettings
from plugins.litellm_loader import load_litellm


@hookimpl
def register_image_models(register: Callable[[BackendType], None], engine: Any) -> None:
    """Offer the ``litellm`` backend."""
    register(BackendType("litellm", LiteLLMImageModel, LiteLLMImageSettings,
                         "Any image model litellm serves, e.g. openai/gpt-image-1, azure/..., bedrock/..."))


@hookimpl
async def startup(engine: Any) -> None:
    """Import litellm before the first request, only when a litellm model is configured."""
    if any(isinstance(model, LiteLLMImageModel) for model in engine.models.values()):
        await load_litellm()
