"""A sample third-party SakaiBot plugin: registers the ``sample`` backend through the public API only."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from core import BackendType, hookimpl

if os.environ.get("SAKAIBOT_SAMPLE_BROKEN"):
    raise RuntimeError("the sample plugin is broken on purpose (SAKAIBOT_SAMPLE_BROKEN is set)")

from sakaibot_sample.model import SwatchModel, SwatchSettings


@hookimpl
def register_image_models(register: Callable[[BackendType], None], engine: Any) -> None:
    """Offer the ``sample`` backend."""
    register(BackendType("sample", lambda name, settings, engine: SwatchModel(name, settings), SwatchSettings,
                         "Flat-colour swatches from the sample plugin package."))
