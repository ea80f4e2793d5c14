"""Reading commands without blocking the event loop: a line editor on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

PROMPT = "sakaibot> "
CONTINUATION = "      ... "


async def read_lines(stream: TextIO | None = None) -> AsyncIterator[str]:
    """Lines of ``stream`` (default stdin) as they arrive; a daemon thread does the blocking read."""
    source = stream or sys.stdin
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in source:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        yield line


async def read_edited(history_file: Path | None = None, *, input: Any = None,
                      output: Any = None) -> AsyncIterator[str]:
    """Lines typed with editing (arrows, Ctrl-R) and history (Up/Down, kept in ``history_file`` if set).

    Ends on Ctrl-D; Ctrl-C clears the line being typed, like a shell.
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    history = FileHistory(str(history_file)) if history_file else InMemoryHistory()
    session: PromptSession[str] = PromptSession(history=history, input=input, output=output)
    continuing = False
    while True:
        try:
            line = await session.prompt_async(CONTINUATION if continuing else PROMPT)
        except KeyboardInterrupt:
            continuing = False
            continue
        except EOFError:
            return
        continuing = line.rstrip().endswith("\\")
        yield line + "\n"


@contextlib.contextmanager
def output_above_the_prompt() -> Iterator[None]:
    """Print replies and log lines above the line being typed, each whole, never into the middle of it.

    The log handlers are pointed at the patched stderr for the duration, so a warning cannot tear
    the prompt apart; they are put back afterwards.
    """
    from prompt_toolkit.patch_stdout import patch_stdout

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.stream for h in handlers]
    with patch_stdout(raw=True):
        for handler in handlers:
            handler.setStream(sys.stderr)
        try:
            yield
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)


async def join_continued(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Join lines ending in a backslash, so a prompt can span several lines."""
    parts: list[str] = []
    async for line in lines:
        text = line.rstrip("\r\n")
        if text.endswith("\\"):
            parts.append(text[:-1])
            continue
        parts.append(text)
        yield "\n".join(parts)
        parts = []
    if parts:
        yield "\n".join(parts)
