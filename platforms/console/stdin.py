"""Reading stdin without blocking the event loop, whatever stdin is (tty, pipe or file)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from typing import TextIO


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
