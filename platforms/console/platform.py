"""The console platform: one status line per job change, images saved to a folder.

``--image PATH`` gives a command a local picture (``platforms.console.pictures``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO

from pydantic import Field

from core import Engine, InvalidCommand, Job, Platform, PlatformSettings, Requester, SakaiError
from core.chat.commands import ImageCommand, UpscaleCommand, parse_command
from core.chat.conversation import Buttons, Conversation
from core.chat.messages import caption, elapsed
from platforms.console.pictures import reader, take_image
from platforms.console.stdin import join_continued, output_above_the_prompt, read_edited, read_lines

log = logging.getLogger(__name__)


class ConsoleSettings(PlatformSettings):
    """``[platforms.console]`` keys."""

    output_dir: Path = Field(default=Path("outputs"), description="Where finished images are saved.")
    user: str = Field(default="local", min_length=1, description="The user id jobs are filed under.")
    admin: bool = Field(default=True, description="The local user skips caps and rate limits.")
    history_file: Path | None = Field(default=None, description="Keep typed lines here across runs (Up/Down).")
    line_editing: bool = Field(default=True, description="Edit lines with arrows and history on a terminal.")


class ConsolePlatform(Platform):
    """Reads commands line by line; finishes when input ends and its jobs are done."""

    name = "console"

    def __init__(self, settings: ConsoleSettings, lines: AsyncIterator[str] | None = None,
                 out: TextIO | None = None) -> None:
        self.settings = settings
        self._lines = lines
        self._out = out
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._screen = contextlib.ExitStack()
        self.requester = Requester(platform="console", user_id=settings.user, chat_id="console",
                                   is_admin=settings.admin)

    async def start(self, engine: Engine) -> None:
        """Begin reading commands; jobs left by the last run are followed again."""
        self.conversation = Conversation(engine, self.name, interval=0.0)
        lines = self._lines if self._lines is not None else self._terminal_lines()
        self._say("SakaiBot console - type /help, or /image=<model>=<prompt>.")
        resumed = await self.conversation.resume(self._resumed_target)
        if resumed:
            self._say(f"{resumed} job(s) resumed after a restart")
        self._reader = asyncio.create_task(self._read(join_continued(lines)), name="console-reader")

    async def _resumed_target(self, job: Job) -> ConsoleTarget:
        return ConsoleTarget(self._say, self.settings.output_dir, job.id)

    async def stop(self) -> None:
        """Stop reading and following jobs."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.conversation.close()
        self._screen.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once input has ended and every job it started has finished."""
        await self._closed.wait()

    async def _read(self, lines: AsyncIterator[str]) -> None:
        async for line in lines:
            if line.strip():
                await self._handle(line)
        await self.conversation.followers.wait()
        self._closed.set()

    async def _handle(self, line: str) -> None:
        target = ConsoleTarget(self._say, self.settings.output_dir)
        try:
            line, picture = take_image(line)
            command = parse_command(line)
            if picture is not None and not isinstance(command, ImageCommand | UpscaleCommand):
                raise InvalidCommand("--image goes with /image or /upscale.")
        except SakaiError as exc:
            self._say(self.conversation.engine.render_error(None, exc))
            return
        if command is None:
            self._say("Not a command. Type /help.")
            return
        inputs = reader(picture) if picture is not None else None
        await self.conversation.start(command, self.requester, target, inputs=inputs)

    def _terminal_lines(self) -> AsyncIterator[str]:
        """A line editor when a person is typing; plain lines from a pipe or a file."""
        if not (self.settings.line_editing and sys.stdin.isatty() and sys.stdout.isatty()):
            return read_lines()
        self._screen.enter_context(output_above_the_prompt())
        return read_edited(self.settings.history_file)

    def _say(self, text: str) -> None:
        out = self._out or sys.stdout
        print(text, file=out, flush=True)


class ConsoleTarget:
    """One job's lines on the terminal: one "Queued" line, progress in quarters, the image saved to a file."""

    def __init__(self, say: Callable[[str], None], folder: Path, job_id: str = "") -> None:
        self._say = say
        self.folder = folder
        self.job_id = job_id
        self._last = ""
        self._queued = False

    async def show(self, text: str, buttons: Buttons) -> bool:
        """Print a status line when it says something new."""
        self.job_id = buttons.job_id or self.job_id
        if _worth_showing(text, self._last, self._queued):
            self._say(f"[{self.job_id}] {text}" if self.job_id else text)
            self._last = text
        self._queued = self._queued or text.startswith(QUEUED)
        return True

    async def deliver(self, job: Job) -> None:
        """Save the images (``<job>.png``, or ``<job>-1.png``… for several) and print where, with the caption."""
        several = len(job.results) > 1
        paths = [self.folder / f"{job.id}{f'-{n + 1}' if several else ''}.{image.extension}"
                 for n, image in enumerate(job.results)]
        for path, image in zip(paths, job.results, strict=True):
            await asyncio.to_thread(_write, path, image.data)
        where = ", ".join(str(path) for path in paths)
        self._say(f"[{job.id}] ✅ Done in {elapsed(job):.1f} s -> {where}\n{caption(job)}")

    async def finish(self, job: Job) -> None:
        """Nothing to tidy: the delivery line said it all."""

    async def say(self, text: str) -> None:
        """Print a reply."""
        self._say(text)


QUEUED = "⏳"
PERCENT = re.compile(r"(\d+)%$")


def _worth_showing(text: str, last: str, queued: bool) -> bool:
    """One "Queued" line per job, no repeats, and progress in quarters, so a terminal is not flooded."""
    if text == last or (queued and text.startswith(QUEUED)):
        return False
    percent = PERCENT.search(text)
    return percent is None or int(percent.group(1)) % 25 == 0


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
