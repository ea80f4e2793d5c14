"""The offline preview backend: a deterministic picture drawn with Pillow, not an AI model.

It lets anyone try the whole pipeline (queue, hooks, platforms) with no account and no network.
"""

from __future__ import annotations

from typing import Any

from core import BackendType, hookimpl
from plugins.preview.model import PreviewModel, PreviewSettings


@hookimpl
def register_image_models(register: Any, engine: Any) -> None:
    """Offer the ``preview`` backend."""
    register(BackendType(
        name="preview",
        create=lambda name, settings, engine: PreviewModel(name, settings),
        settings=PreviewSettings,
        description="Offline placeholder pictures drawn with Pillow (not an AI model).",
    ))
