"""A terminal chat platform, for trying SakaiBot with no accounts and no network."""

from __future__ import annotations

from typing import Any

from core import PlatformType, hookimpl
from platforms.console.platform import ConsolePlatform, ConsoleSettings


@hookimpl
def register_platforms(register: Any) -> None:
    """Offer the ``console`` platform."""
    register(PlatformType(
        name="console",
        create=lambda settings: ConsolePlatform(settings),
        settings=ConsoleSettings,
        description="Commands typed on stdin; images saved to a folder.",
    ))
