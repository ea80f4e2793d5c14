"""A test plugin for pictures in chat: a model that declares it takes pictures and upscales, and a recorder.

``PictureModel`` draws a plain PNG (its colour from the seed) and declares
``Capabilities(inputs=InputSupport(image_to_image=True, strength=True), upscale_factors=(2,))``, so
the chat layer offers Variation from the image and Upscale; ``TextModel`` takes words only. The
tests use these rather than ``preview``, whose capabilities grow with the engine. ``Admitted`` records every request the
engine admits through the public ``admit_request`` hook: what the platforms really submitted,
input pictures included.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image as PILImage

from core import (
    BackendType,
    Capabilities,
    GenerationRequest,
    Image,
    ImageModel,
    ImageRequest,
    InputSupport,
    Progress,
    hookimpl,
)
from core.engine import Engine
from core.interfaces import Size
from core.testing import running_engine

BACKEND, TEXT_BACKEND = "pictures", "words"
CONFIG = {"engine": {"default_model": "pic", "max_pending_per_user": 20},
          "models": {"pic": {"backend": BACKEND}, "words": {"backend": TEXT_BACKEND}}}


class PictureModel(ImageModel):
    """Takes input pictures (image to image, with a strength) and upscales by 2; draws a plain square."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = "Test model that takes pictures"
        self.capabilities = Capabilities(sizes=(Size(64, 64),), inputs=InputSupport(image_to_image=True, strength=True),
                                         upscale_factors=(2,))

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """A PNG of the asked size (an upscale's too) whose colour follows the seed."""
        await progress(1.0)
        size = (request.size.width, request.size.height)
        return Image(data=png(request.seed % 256, size), mime_type="image/png", width=size[0], height=size[1],
                     seed=request.seed, model=self.name)


class TextModel(PictureModel):
    """Text to image only (no ``inputs``, no upscale): where Variation must not download anything."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.description = "Test model for words only"
        self.capabilities = Capabilities(sizes=(Size(64, 64),))


def png(shade: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A small PNG of one colour."""
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (shade, 255 - shade, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    """Size and RGB pixels: the same picture however it was re-encoded losslessly or stripped of metadata."""
    with PILImage.open(io.BytesIO(data)) as picture:
        return picture.size, picture.convert("RGB").tobytes()


class Admitted:
    """A plugin that records each admitted request and its model (it never refuses)."""

    def __init__(self) -> None:
        self.requests: list[tuple[ImageRequest, str]] = []

    @hookimpl
    def register_image_models(self, register: Any, engine: Any) -> None:
        """Offer the ``pictures`` and ``words`` backends."""
        register(BackendType(name=BACKEND, create=lambda name, settings, engine: PictureModel(name)))
        register(BackendType(name=TEXT_BACKEND, create=lambda name, settings, engine: TextModel(name)))

    @hookimpl
    def admit_request(self, request: ImageRequest, model: str, engine: Any) -> None:
        """Remember what was asked."""
        self.requests.append((request, model))


@contextlib.asynccontextmanager
async def picture_engine(admitted: Admitted) -> AsyncIterator[Engine]:
    """A running engine with ``pic`` (takes pictures; the default) and ``words``, its admissions recorded."""
    async with running_engine(CONFIG, [admitted]) as started:
        yield started
