"""An environment a CLI test can change freely: SakaiBot's and the original bot's variables removed,
the working directory a fresh folder, and everything put back afterwards (``.env`` loading writes
into ``os.environ``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL_VARIABLES = ("FLUX_WORKER_URL", "SDXL_WORKER_URL", "SDXL_API_KEY", "LLM_PROVIDER", "OPENROUTER_API_KEY",
                      "GEMINI_API_KEY", "TELEGRAM_API_ID", "TELEGRAM_API_HASH", "TELEGRAM_BOT_TOKEN",
                      "TELEGRAM_SESSION", "DISCORD_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN")


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding the shipped ``config.toml`` as the working directory, with a clean environment."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("SAKAIBOT_") or name in ORIGINAL_VARIABLES:
            del os.environ[name]
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    monkeypatch.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.environ.clear()
        os.environ.update(saved)


def subprocess_env(**extra: str) -> dict[str, str]:
    """A minimal environment for running ``sakaibot`` in a subprocess."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH",
                                                         "LITELLM_LOCAL_MODEL_COST_MAP", "DISABLE_AIOHTTP_TRANSPORT")}
    return {**keep, "COLUMNS": "80", **extra}
