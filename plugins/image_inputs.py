"""Reshaping checked input images for a backend's own rules, off the event loop.

The engine hands every model the same cleaned ``InputImage``; backends then differ: FLUX.2 on
Workers AI takes inputs of at most 512x512, OpenAI wants the mask as a PNG whose *transparent*
pixels mark where to paint, inpainting backends want the mask the size of the picture. These
helpers do that reshaping with Pillow in a thread and keep the bytes in memory.
"""

from __future__ import annotations

import asyncio
import io
import math

from PIL import Image as PILImage
from PIL import ImageOps

from core import InputImage

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def extension(image: InputImage) -> str:
    """The file extension that matches the sniffed format, for uploads that want a file name."""
    return EXTENSIONS.get(image.mime_type, "png")


async def fit_within(image: InputImage, max_pixels: int) -> InputImage:
    """``image`` itself when it has at most ``max_pixels``, else a proportionally smaller copy."""
    if image.width * image.height <= max_pixels:
        return image
    return await asyncio.to_thread(_shrunk, image, max_pixels)


def _shrunk(image: InputImage, max_pixels: int) -> InputImage:
    scale = math.sqrt(max_pixels / (image.width * image.height))
    size = (max(1, math.floor(image.width * scale)), max(1, math.floor(image.height * scale)))
    with PILImage.open(io.BytesIO(image.data)) as picture:
        smaller = picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P") else "RGB").resize(
            size, PILImage.Resampling.LANCZOS)
    mime = image.mime_type if image.mime_type in FORMATS else "image/png"
    return InputImage(_encoded(smaller, FORMATS[mime]), mime, *size)


async def mask_as_alpha(mask: InputImage, size: tuple[int, int]) -> bytes:
    """A PNG of ``size``, transparent where ``mask`` is white (OpenAI's "edit here"), opaque elsewhere."""
    return await asyncio.to_thread(_alpha_mask, mask.data, size)


def _alpha_mask(data: bytes, size: tuple[int, int]) -> bytes:
    with PILImage.open(io.BytesIO(data)) as picture:
        grey = picture.convert("L").resize(size, PILImage.Resampling.NEAREST)
    result = PILImage.new("RGBA", size, (0, 0, 0, 255))
    result.putalpha(ImageOps.invert(grey))
    return _encoded(result, "PNG")


async def sized_mask(mask: InputImage, size: tuple[int, int]) -> bytes:
    """The mask as a greyscale PNG of ``size`` (white: paint), as inpainting backends want it."""
    return await asyncio.to_thread(_grey_mask, mask.data, size)


def _grey_mask(data: bytes, size: tuple[int, int]) -> bytes:
    with PILImage.open(io.BytesIO(data)) as picture:
        grey = picture.convert("L")
        if grey.size != size:
            grey = grey.resize(size, PILImage.Resampling.NEAREST)
        return _encoded(grey, "PNG")


async def white_mask(size: tuple[int, int]) -> bytes:
    """An all-white mask: "paint everywhere", for an inpainting model asked without a mask."""
    return await asyncio.to_thread(lambda: _encoded(PILImage.new("L", size, 255), "PNG"))


def _encoded(picture: PILImage.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG" and picture.mode != "RGB":
        picture = picture.convert("RGB")
    picture.save(buffer, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()
