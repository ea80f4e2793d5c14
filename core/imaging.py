"""Checking image bytes before anyone sees them: the format from the bytes, the rest from Pillow.

Backends label images carelessly (Cloudflare has sent JPEG as ``image/png``), and a dropped
connection can truncate a body that still looks like an image, so every backend passes its
bytes through ``checked_image``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from core.errors import InvalidImage
from core.types import Image

SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
)
MAX_PIXELS = 64_000_000


def decode_base64(value: str) -> bytes:
    """Image bytes from base64 (a ``data:`` URL too), or ``InvalidImage``: backends answer with either."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(detail=f"bad base64 image: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the bytes really are."""

    mime_type: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """The MIME type the magic bytes announce, or ``None``."""
    for magic, offset, mime in SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def inspect_image(data: bytes) -> ImageInfo:
    """Decode ``data`` fully (so truncation shows) and describe it; raise ``InvalidImage`` if broken."""
    mime = sniff(data)
    if mime is None:
        raise InvalidImage(detail=f"not an image: {len(data)} bytes starting {data[:16]!r}")
    try:
        with PILImage.open(io.BytesIO(data)) as picture:
            if picture.width * picture.height > MAX_PIXELS:
                raise InvalidImage(detail=f"image too large: {picture.width}x{picture.height}")
            picture.load()
            return ImageInfo(mime, picture.width, picture.height)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise InvalidImage(detail=f"broken {mime}: {exc}") from exc


async def checked_image(data: bytes, *, model: str, seed: int | None, **metadata: Any) -> Image:
    """An ``Image`` for ``data`` once verified; decoding runs in a thread, off the event loop."""
    info = await asyncio.to_thread(inspect_image, data)
    return Image(data=data, mime_type=info.mime_type, width=info.width, height=info.height, seed=seed,
                 model=model, metadata=dict(metadata))
