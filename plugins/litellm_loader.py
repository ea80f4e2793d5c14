"""Importing litellm the way SakaiBot needs it: late, local, and visible to httpx-level mocks.

``import litellm`` takes seconds and, by default, fetches a model-cost map over the network; it
also sends requests through its own aiohttp transport, which httpx mocks (respx) cannot see.
Plugins that use litellm call ``load_litellm`` only when they are enabled, off the event loop.
"""

from __future__ import annotations

import asyncio
import os
from types import ModuleType

_loaded: ModuleType | None = None


def load_litellm_blocking() -> ModuleType:
    """Import and configure litellm once; blocking, so call it through ``load_litellm``."""
    global _loaded
    if _loaded is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")
        import litellm

        litellm.disable_aiohttp_transport = True
        litellm.telemetry = False
        litellm.suppress_debug_info = True
        _loaded = litellm
    return _loaded


async def load_litellm() -> ModuleType:
    """The configured litellm module, imported in a thread the first time."""
    if _loaded is not None:
        return _loaded
    return await asyncio.to_thread(load_litellm_blocking)
