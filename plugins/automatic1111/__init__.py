"""AUTOMATIC1111, Forge and SD.Next through the ``/sdapi/v1`` API, with live progress and previews."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import BackendType, hookimpl
from plugins.automatic1111.model import Automatic1111Model
from plugins.automatic1111.settings import Automatic1111Settings


@hookimpl
def register_image_models(register: Callable[[BackendType], None], engine: Any) -> None:
    """Offer the ``automatic1111`` backend."""
    register(BackendType("automatic1111", Automatic1111Model, Automatic1111Settings,
                         "Your own AUTOMATIC1111 / Forge / SD.Next server (started with --api)."))
