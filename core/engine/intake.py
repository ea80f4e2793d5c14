"""The pictures of a request, checked and cleaned before it is queued (off the event loop).

The engine keeps only the cleaned bytes in the request (``with_inputs``), so the job store, a
restart, a reroll and the model all see exactly the same pictures, without their metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from core.engine.validation import check_inputs, input_limits, resolve
from core.imaging import clean_input
from core.interfaces import Capabilities, ImageModel
from core.types import GenerationRequest, ImageRequest, InputImage


def involves_pictures(request: ImageRequest) -> bool:
    """Whether ``request`` has pictures, a mask or a picture-only option: else ``admit_pictures`` has nothing to do."""
    options = request.options
    return bool(request.images) or request.mask is not None or options.upscale is not None \
        or options.strength is not None


async def admit_pictures(request: ImageRequest, model: str, models: Mapping[str, ImageModel],
                         generation: GenerationRequest) -> GenerationRequest:
    """``generation`` (resolved from the text) with the request's pictures, once ``model`` may take them.

    What the model cannot do is refused first, naming the models that can, so a picture sent to a
    text-only model is never decoded; then each picture is cleaned in a thread.
    """
    check_inputs(request, model, {name: candidate.capabilities for name, candidate in models.items()})
    if not request.images and request.mask is None:
        return generation
    caps = models[model].capabilities
    images, mask = await clean_inputs(request, caps)
    return resolve(request, caps, images=images, mask=mask)  # again: the size follows the picture's shape


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
