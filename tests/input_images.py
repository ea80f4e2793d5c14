"""Input images for backend tests: real encoded pictures wrapped as the engine hands them to models."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from core import GenerationRequest, InputImage, Size

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
SQUARE = Size(512, 512)


def input_image(size: tuple[int, int] = (64, 48), mime: str = "image/png",
                color: tuple[int, int, int] = (200, 80, 20)) -> InputImage:
    """A real picture of ``size`` as a checked ``InputImage``."""
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format=FORMATS[mime])
    return InputImage(buffer.getvalue(), mime, *size)


def mask_image(size: tuple[int, int] = (64, 48)) -> InputImage:
    """A mask: white (paint) on the left half, black (keep) on the right."""
    picture = PILImage.new("L", size, 0)
    picture.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return InputImage(buffer.getvalue(), "image/png", *size)


def image_request(prompt: str = "make it night", *, images: tuple[InputImage, ...] = (),
                  mask: InputImage | None = None, strength: float | None = None, upscale: int | None = None,
                  size: Size = SQUARE, seed: int | None = 7, steps: int | None = None,
                  negative_prompt: str | None = None) -> GenerationRequest:
    """A resolved request as the engine builds it after checking the inputs against the model."""
    return GenerationRequest(prompt=prompt, size=size, seed=seed, negative_prompt=negative_prompt, steps=steps,
                             original_prompt=prompt, images=images, mask=mask, strength=strength, upscale=upscale)


class Recorded:
    """A ``Progress`` that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, bytes | None]] = []

    async def __call__(self, fraction: float, preview: bytes | None = None) -> None:
        self.calls.append((fraction, preview))
