"""Pictures coming in from chat: which models take them, which model upscales, what a result offers.

Platforms find the picture (an attachment, a photo replied to, the result a button is under) and
hand over a way to fetch its bytes; whether those bytes are needed at all is decided here, from the
models' declared capabilities, so a Reroll never downloads anything and a Variation downloads only
where the model can start from an image. The bytes go to the engine raw: it sniffs, checks and
cleans them (``ImageRequest.images``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from core.errors import InvalidRequest
from core.interfaces import ImageModel

Fetch = Callable[[], Awaitable[bytes]]  # downloads one picture into memory, or raises a SakaiError
Inputs = Callable[[], Awaitable[tuple[bytes, ...]]]  # every picture of one command, fetched after the first answer
VARIATION_STRENGTH = 0.6  # a Variation from the image: clearly new, still recognisably the same picture
UPSCALE_PROMPT = "upscale {factor}x"


def takes_images(models: Mapping[str, ImageModel], name: str) -> bool:
    """Whether the model can start from a picture (image to image, or an edit instruction)."""
    model = models.get(name)
    inputs = model.capabilities.inputs if model is not None else None
    return inputs is not None and (inputs.image_to_image or inputs.edit)


def takes_strength(models: Mapping[str, ImageModel], name: str) -> bool:
    """Whether the model honours ``strength`` for its input picture."""
    model = models.get(name)
    inputs = model.capabilities.inputs if model is not None else None
    return inputs is not None and inputs.strength


def offers_upscale(models: Mapping[str, ImageModel]) -> bool:
    """Whether any model here upscales (an Upscale button makes sense)."""
    return any(model.capabilities.upscale_factors for model in models.values())


def upscaler(models: Mapping[str, ImageModel], factor: int | None, prefer: str | None = None, *,
             only: bool = False) -> tuple[str, int]:
    """The model and factor for an upscale: ``prefer`` when it can, else the first that can, by name.

    ``factor`` ``None`` takes the chosen model's smallest factor; ``only`` allows ``prefer`` alone (the
    user named it). Refused, naming what is offered, when no allowed model upscales by that factor.
    """
    offered = {name: models[name].capabilities.upscale_factors for name in sorted(models)
               if models[name].capabilities.upscale_factors}
    if not offered:
        raise InvalidRequest("No model here can upscale pictures.")
    order = ([prefer] if prefer in offered else []) + ([] if only else [name for name in offered if name != prefer])
    for name in order:
        if factor is None or factor in offered[name]:
            return name, factor or min(offered[name])
    listed = ", ".join(f"{name} ({', '.join(f'{f}x' for f in factors)})" for name, factors in offered.items())
    if only:
        what = f"does not upscale {factor}x" if prefer in offered else "cannot upscale"
        raise InvalidRequest(f"The {prefer} model {what}. Upscalers: {listed}.")
    raise InvalidRequest(f"No model here upscales {factor}x. Upscalers: {listed}.")
