"""An optional folder that keeps a copy of every image, pruned after ``archive_days``.

It is a plugin of the core's own and uses the hook a third party would (``after_generate``);
files are written off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from core.hookspecs import hookimpl
from core.interfaces import EngineView
from core.types import Image, Job

PRUNE_EVERY = 3600.0  # seconds between sweeps of the folder for expired images


class ImageArchive:
    """Writes ``<job id>.<ext>`` for each finished image; deletes files older than ``days``."""

    def __init__(self, folder: str | Path, days: int) -> None:
        self.folder = Path(folder)
        self.days = days
        self._pruned_at = 0.0

    @hookimpl
    async def after_generate(self, job: Job, result: Image, engine: EngineView) -> None:
        """Keep a copy of the image."""
        await asyncio.to_thread(self._write, f"{job.id}.{result.extension}", result.data)

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_bytes(data)
        if time.time() - self._pruned_at < PRUNE_EVERY:  # listing the folder per image would grow with it
            return
        self._pruned_at = time.time()
        cutoff = self._pruned_at - self.days * 86400
        for old in self.folder.iterdir():
            if old.is_file() and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
