"""The preview model: renders off the event loop, reports progress while it waits."""

from __future__ import annotations

import asyncio

from pydantic import Field

from core import (
    Capabilities,
    GenerationRequest,
    Image,
    ImageModel,
    InputSupport,
    InvalidRequest,
    ModelSettings,
    Progress,
    sizes_for_area,
)
from plugins.preview.render import render_png, upscale

DESCRIPTION = ("Offline preview: a deterministic placeholder picture, not an AI model. Needs no account. "
               "Blends a picture you send into its drawing by --strength; upscales 2x or 4x with a plain "
               "Pillow LANCZOS resize (no detail is invented).")
UPSCALE_FACTORS = (2, 4)
INPUT_PIXELS = 2048 * 2048  # a Telegram photo (at most 2560 px on a side) is downscaled by Telegram first
MAX_UPSCALED = 4096 * 4096  # memory and time stay small: about a second at most


class PreviewSettings(ModelSettings):
    """``[models.<name>]`` keys of the preview backend."""

    latency: float = Field(default=0.0, ge=0, le=600, description="Seconds to pretend to work.")
    area: int = Field(default=512 * 512, ge=64 * 64, le=2048 * 2048, description="Pixels per image.")


class PreviewModel(ImageModel):
    """Draws a picture from prompt, seed and size; the same inputs give the same bytes."""

    def __init__(self, name: str, settings: PreviewSettings) -> None:
        self.name = name
        self.description = settings.description or DESCRIPTION
        self.latency = settings.latency
        self.capabilities = Capabilities(
            sizes=sizes_for_area(settings.area, multiple=64),
            max_prompt_length=4000,
            supports_seed=True,
            supports_negative_prompt=True,
            max_steps=50,
            default_steps=8,
            default_concurrency=2,
            inputs=InputSupport(image_to_image=True, strength=True, max_images=1, max_pixels=INPUT_PIXELS),
            upscale_factors=UPSCALE_FACTORS,
        )

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Wait the configured latency in steps, reporting progress, then render in a thread."""
        if self.latency:
            steps = request.steps or 1
            for step in range(steps):
                await asyncio.sleep(self.latency / steps)
                await progress((step + 1) / steps)
        mime, metadata = "image/png", {"backend": "preview"}
        if request.upscale is not None:
            if request.size.width * request.size.height > MAX_UPSCALED:
                raise InvalidRequest(f"The preview model upscales to at most 4096x4096; this picture would be "
                                     f"{request.size}. Try a smaller factor or picture.")
            data, mime = await asyncio.to_thread(upscale, request.images[0], request.upscale)
            metadata["upscale"] = f"{request.upscale}x LANCZOS"
        else:
            data = await asyncio.to_thread(render_png, request, self.name)
        return Image(data=data, mime_type=mime, width=request.size.width,
                     height=request.size.height, seed=request.seed, model=self.name, metadata=metadata)
