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
    """Writes ``<job id>.<ext>`` for each finished image (``<job id>-2.<ext>``… for a batch); prunes after ``days``."""

    def __init__(self, folder: str | Path, days: int) -> None:
        self.folder = Path(folder)
        self.days = days
        self._pruned_at = 0.0

    @hookimpl
    async def after_generate(self, job: Job, result: Image, engine: EngineView) -> None:
        """Keep a copy of every image of the job."""
        images = job.results or [result]
        files = [(f"{job.id}{'' if n == 0 else f'-{n + 1}'}.{image.extension}", image.data)
                 for n, image in enumerate(images)]
        await asyncio.to_thread(self._write, files)

    def _write(self, files: list[tuple[str, bytes]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            (self.folder / name).write_bytes(data)
        if time.time() - self._pruned_at < PRUNE_EVERY:  # listing the folder per image would grow with it
            return
        self._pruned_at = time.time()
        cutoff = self._pruned_at - self.days * 86400
        for old in self.folder.iterdir():
            if old.is_file() and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
