"""``--image PATH`` on the console: a local picture as a command's input.

The option belongs to the console alone (chat platforms take pictures as attachments), so it is
taken out of the line before the shared parser sees it. A path with spaces goes in quotes. The
file's size is checked before it is read, and it is read off the event loop; the engine then
sniffs, checks and cleans the bytes as it does for every platform.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from core.chat.inputs import Inputs
from core.errors import InvalidCommand, InvalidRequest

IMAGE_OPTION = re.compile(r"(?:^|(?<=\s))--image(?:\s+(?:\"(?P<quoted>[^\"]+)\"|(?P<plain>[^\s\"]+)))?")
READ_LIMIT = 20 * 1024 * 1024  # as on Telegram: one limit for pictures wherever they come from


def take_image(line: str) -> tuple[str, Path | None]:
    """The line without its ``--image PATH``, and the path (``None`` when there is none)."""
    matches = list(IMAGE_OPTION.finditer(line))
    if not matches:
        return line, None
    if len(matches) > 1:
        raise InvalidCommand("--image is given twice; give it once.")
    match = matches[0]
    path = match["quoted"] or match["plain"]
    if not path:
        raise InvalidCommand('--image needs a file, e.g. --image photo.png or --image "my photo.png".')
    return (line[:match.start()] + line[match.end():]).rstrip(), Path(path).expanduser()


def reader(path: Path) -> Inputs:
    """Read the picture at ``path`` when called: refused if missing or too large."""
    async def inputs() -> tuple[bytes, ...]:
        return (await asyncio.to_thread(_read, path),)
    return inputs


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise InvalidRequest(f"There is no picture at {path}.")
    size = path.stat().st_size
    if size > READ_LIMIT:
        raise InvalidRequest(f"{path} is {size / 1024 / 1024:.1f} MB; pictures may be at most "
                             f"{READ_LIMIT // 1024 // 1024} MB.")
    return path.read_bytes()
