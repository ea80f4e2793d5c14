"""The ``generate`` command's end of a conversation: a status line on the terminal, the images in files.

``sakaibot generate`` follows its job through the same ``core.chat.Conversation`` as Telegram,
Discord and the console (status, follow, deliver once: ``begin_delivery`` → write the files →
``delivered``), so the command line cannot drift from the chat platforms. This target only
translates: a status becomes the spinner's text, a delivery becomes files on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from rich.markup import escape

from core.chat.conversation import Buttons, DeliveryRefused
from core.types import Image, Job


class StatusLine(Protocol):
    """What the target needs of a terminal spinner (``rich.status.Status``)."""

    def update(self, status: str) -> None:
        """Show ``status`` as the spinner's text."""


class FileTarget:
    """Shows a job's status on one terminal line and writes its images where ``--out`` (or the job id) says."""

    def __init__(self, status: StatusLine, out: Path | None, write: WriteImage) -> None:
        self._status = status
        self._out = out
        self._write = write
        self.paths: list[Path] = []  # the files written, once delivered
        self.refused: str | None = None  # why the files could not be written

    async def show(self, text: str, buttons: Buttons) -> bool:
        """The newest status replaces the spinner's text (a terminal line never goes away)."""
        self._status.update(escape(text))
        return True

    async def deliver(self, job: Job) -> None:
        """Write every image (``name.png``, or ``name-1.png``, ``name-2.png``… for ``--n``), off the loop."""
        first = self._out or Path(f"sakaibot-{job.id}.{job.results[0].extension}")
        paths = out_paths(first, len(job.results))
        for path, image in zip(paths, job.results, strict=True):
            try:
                await asyncio.to_thread(self._write, path, image)
            except OSError as exc:  # not a platform's passing fault: trying again would fail the same way
                self.refused = f"{path}: cannot be written ({exc.strerror or exc})."
                raise DeliveryRefused(self.refused) from exc
        self.paths = paths

    async def finish(self, job: Job) -> None:
        """Nothing to tidy: the command prints the files and the caption once the conversation ends."""

    async def say(self, text: str) -> None:
        """A text reply: shown on the status line (``generate`` submits its job itself, so none comes)."""
        self._status.update(escape(text))


class WriteImage(Protocol):
    """Writes one image to a file (re-encoding when the file name asks for another format)."""

    def __call__(self, path: Path, image: Image) -> None:
        """Write ``image`` at ``path``."""


def out_paths(first: Path, count: int) -> list[Path]:
    """``first`` for one image; ``name-1.ext``, ``name-2.ext``… for a batch."""
    if count == 1:
        return [first]
    return [first.with_name(f"{first.stem}-{number}{first.suffix}") for number in range(1, count + 1)]
