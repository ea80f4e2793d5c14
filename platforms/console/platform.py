"""The console platform: one status line per job change, images saved to a folder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from pydantic import Field

from core import Engine, EventKind, JobEvent, JobHandle, Platform, PlatformSettings, Requester
from core.chat import ChatService, JobReply
from core.chat.followers import Followers
from core.chat.messages import caption, status_text
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
        self.followers = Followers("console")
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._screen = contextlib.ExitStack()
        self.requester = Requester(platform="console", user_id=settings.user, chat_id="console",
                                   is_admin=settings.admin)

    async def start(self, engine: Engine) -> None:
        """Begin reading commands."""
        self.chat = ChatService(engine)
        lines = self._lines if self._lines is not None else self._terminal_lines()
        self._say("SakaiBot console - type /help, or /image=<model>=<prompt>.")
        for handle in await engine.resume(self.name):
            self._say(f"[{handle.id}] resumed after a restart")
            self._track(handle)
        self._reader = asyncio.create_task(self._read(join_continued(lines)), name="console-reader")

    async def stop(self) -> None:
        """Stop reading and following jobs."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.followers.close()
        self._screen.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once input has ended and every job it started has finished."""
        await self._closed.wait()

    async def _read(self, lines: AsyncIterator[str]) -> None:
        async for line in lines:
            if line.strip():
                await self._handle(line)
        await self.followers.wait()
        self._closed.set()

    async def _handle(self, line: str) -> None:
        reply = await self.chat.handle(line, self.requester)
        if reply is None:
            self._say("Not a command. Type /help.")
        elif isinstance(reply, JobReply):
            self._track(reply.handle)
        else:
            self._say(reply.text)

    def _terminal_lines(self) -> AsyncIterator[str]:
        """A line editor when a person is typing; plain lines from a pipe or a file."""
        if not (self.settings.line_editing and sys.stdin.isatty() and sys.stdout.isatty()):
            return read_lines()
        self._screen.enter_context(output_above_the_prompt())
        return read_edited(self.settings.history_file)

    def _track(self, handle: JobHandle) -> None:
        self.followers.start(self._follow(handle), handle)

    async def _follow(self, handle: JobHandle) -> None:
        last, queued = "", False
        async for event in handle:
            if event.kind is EventKind.DONE:
                await self._deliver(event)
                continue
            text = status_text(event)
            if event.kind in (EventKind.QUEUED, EventKind.POSITION):
                if queued:
                    continue  # one "Queued" line per job: positions change too often to print each
                queued = True
            if _worth_showing(event, text, last):
                self._say(f"[{handle.id}] {text}")
                last = text

    async def _deliver(self, event: JobEvent) -> None:
        job = event.job
        image = job.result
        if image is None:
            return
        path = self.settings.output_dir / f"{job.id}.{image.extension}"
        await asyncio.to_thread(_write, path, image.data)
        if await self.chat.engine.delivered(job.id):
            self._say(f"[{job.id}] {status_text(event)} -> {path}\n{caption(job)}")

    def _say(self, text: str) -> None:
        out = self._out or sys.stdout
        print(text, file=out, flush=True)


def _worth_showing(event: JobEvent, text: str, last: str) -> bool:
    """Skip repeated lines and show progress in quarters, so a terminal is not flooded."""
    if text == last:
        return False
    if event.kind is EventKind.PROGRESS:
        return round((event.progress or 0) * 100) % 25 == 0
    return True


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
