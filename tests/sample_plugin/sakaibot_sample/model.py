"""The swatch model: a flat-colour PNG of the configured size, with the prompt in its metadata."""

from __future__ import annotations

import asyncio
import io

from PIL import Image as PILImage
from PIL import ImageColor
from PIL.PngImagePlugin import PngInfo
from pydantic import Field, field_validator

from core import Capabilities, GenerationRequest, Image, ImageModel, ModelSettings, Progress, Size


class SwatchSettings(ModelSettings):
    """``[models.<name>]`` keys of the ``sample`` backend."""

    colour: str = Field(default="#3366cc", description="any colour Pillow knows, e.g. #228833 or teal")
    size: int = Field(default=256, ge=16, le=2048)

    @field_validator("colour")
    @classmethod
    def _known_colour(cls, value: str) -> str:
        ImageColor.getrgb(value)  # raises ValueError, which the config loader reports with the key
        return value


class SwatchModel(ImageModel):
    """Paints one colour; reports progress in four steps like a real backend would."""

    def __init__(self, name: str, settings: SwatchSettings) -> None:
        self.name = name
        self.settings = settings
        self.description = settings.description or f"{settings.colour} swatches (sample plugin)"
        self.capabilities = Capabilities(sizes=(Size(settings.size, settings.size),), max_prompt_length=500,
                                         supports_seed=True, default_concurrency=2)

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Report progress, then paint in a thread (Pillow work stays off the event loop)."""
        for step in range(1, 5):
            await asyncio.sleep(0)
            await progress(step / 4)
        data = await asyncio.to_thread(self._paint, request)
        return Image(data, "image/png", request.size.width, request.size.height, seed=request.seed, model=self.name,
                     metadata={"backend": "sample"})

    def _paint(self, request: GenerationRequest) -> bytes:
        size = (request.size.width, request.size.height)
        picture = PILImage.new("RGB", size, ImageColor.getrgb(self.settings.colour))
        info = PngInfo()
        info.add_text("prompt", request.prompt)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()
