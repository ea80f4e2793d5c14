"""The pictures of a request, checked and cleaned before it is queued (off the event loop).

The engine keeps only the cleaned bytes in the request (``with_inputs``), so the job store, a
restart, a reroll and the model all see exactly the same pictures, without their metadata.
"""

from __future__ import annotations

import asyncio

from core.engine.validation import input_limits
from core.imaging import clean_input
from core.interfaces import Capabilities
from core.types import GenerationRequest, ImageRequest, InputImage


async def clean_inputs(request: ImageRequest, caps: Capabilities) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """The request's pictures and mask as ``InputImage``; ``InvalidInputImage`` names the one refused."""
    if not request.images and request.mask is None:
        return (), None
    limits = input_limits(caps)
    several = len(request.images) > 1
    cleaning = [clean_input(data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
                            label=f"Picture {number}" if several else "The picture")
                for number, data in enumerate(request.images, start=1)]
    if request.mask is not None:
        cleaning.append(clean_input(request.mask, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
                                    mask=True, label="The mask"))
    cleaned = await asyncio.gather(*cleaning)
    if request.mask is None:
        return tuple(cleaned), None
    return tuple(cleaned[:-1]), cleaned[-1]


def with_inputs(request: ImageRequest, generation: GenerationRequest) -> ImageRequest:
    """``request`` carrying the cleaned bytes its generation holds, the same objects (no copy)."""
    if not generation.images and generation.mask is None:
        return request
    mask = None if generation.mask is None else generation.mask.data
    return request.model_copy(update={"images": tuple(image.data for image in generation.images), "mask": mask})
