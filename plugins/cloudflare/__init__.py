"""Cloudflare backends: Workers AI models over the REST API, and a user's own Worker URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import BackendType, hookimpl
from plugins.cloudflare.custom_worker import CustomWorkerModel
from plugins.cloudflare.settings import CustomWorkerSettings, WorkersAISettings
from plugins.cloudflare.workers_ai import WorkersAIModel


@hookimpl
def register_image_models(register: Callable[[BackendType], None], engine: Any) -> None:
    """Offer ``cloudflare`` (Workers AI REST) and ``cloudflare-worker`` (your own Worker)."""
    register(BackendType("cloudflare", WorkersAIModel, WorkersAISettings,
                         "Workers AI REST API: Flux, SDXL and more (CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN)."))
    register(BackendType("cloudflare-worker", CustomWorkerModel, CustomWorkerSettings,
                         "Your own Cloudflare Worker URL (the original SakaiBot's FLUX_WORKER_URL / SDXL_WORKER_URL)."))
