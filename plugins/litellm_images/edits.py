"""What ``litellm.aimage_edit`` receives for a request with input pictures.

litellm forwards files to the provider as multipart parts (``image[]`` and ``mask`` for OpenAI):
each picture goes as a file-like object carrying a ``name`` with the right extension, as
litellm's docs pass ``open(path, "rb")``; litellm sniffs the content type from the bytes.
OpenAI's mask is a PNG the size of the first picture whose *transparent* pixels mark where to
edit, so SakaiBot's mask (white: paint) is converted to that.

What each provider takes (OpenAI's images/edits reference): gpt-image models up to 16 pictures,
png/webp/jpg under 25 MB each, with a mask; other providers only when configured.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from core import GenerationRequest, InputImage, InputSupport
from plugins.image_inputs import extension, mask_as_alpha


@dataclass(frozen=True, slots=True)
class EditLimits:
    """What a provider's edit endpoint takes."""

    max_images: int
    masks: bool
    max_bytes: int


KNOWN: dict[str, EditLimits] = {
    "gpt-image": EditLimits(max_images=16, masks=True, max_bytes=25_000_000),
}
UNKNOWN_MAX_BYTES = 10_000_000


def edit_limits(model: str, images: int | None, masks: bool | None) -> EditLimits | None:
    """The edit limits for a litellm model string: configured values over the known ones; ``None``: no edits."""
    known = next((limits for key, limits in KNOWN.items() if key in model.rsplit("/", 1)[-1]), None)
    count = images if images is not None else (known.max_images if known else 0)
    if count == 0:
        return None
    takes_masks = masks if masks is not None else bool(known and known.masks)
    return EditLimits(count, takes_masks, known.max_bytes if known else UNKNOWN_MAX_BYTES)


def input_support(limits: EditLimits | None) -> InputSupport | None:
    """The capability the engine checks requests against."""
    if limits is None:
        return None
    return InputSupport(edit=True, masks=limits.masks, max_images=limits.max_images, max_bytes=limits.max_bytes)


def _file(image: InputImage, name: str) -> io.BytesIO:
    handle = io.BytesIO(image.data)
    handle.name = f"{name}.{extension(image)}"
    return handle


async def edit_arguments(request: GenerationRequest) -> dict[str, Any]:
    """``image`` (one file, or a list for several) and ``mask`` for ``aimage_edit``."""
    files = [_file(image, f"image-{index}") for index, image in enumerate(request.images)]
    arguments: dict[str, Any] = {"image": files[0] if len(files) == 1 else files}
    if request.mask is not None:
        first = request.images[0]
        mask = io.BytesIO(await mask_as_alpha(request.mask, (first.width, first.height)))
        mask.name = "mask.png"
        arguments["mask"] = mask
    return arguments
