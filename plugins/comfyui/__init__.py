"""ComfyUI through its HTTP API and websocket: any API-format workflow with placeholders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import BackendType, hookimpl
from plugins.comfyui.model import ComfyUIModel
from plugins.comfyui.settings import ComfyUISettings


@hookimpl
def register_image_models(register: Callable[[BackendType], None], engine: Any) -> None:
    """Offer the ``comfyui`` backend."""
    register(BackendType("comfyui", ComfyUIModel, ComfyUISettings,
                         "Your own ComfyUI server running a workflow with {{prompt}}, {{seed}}… placeholders."))
