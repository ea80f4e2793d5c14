"""Input images in the shape each Workers AI model documents.

SD 1.5 img2img/inpainting take JSON arrays of 8-bit integers (Cloudflare's own examples send
``[...new Uint8Array(bytes)]``), so the picture is scaled down first to keep that body small;
the FLUX.2 models take file parts ``input_image_0`` … ``input_image_3`` of at most 512x512.
"""

from __future__ import annotations

from typing import Any

from core import GenerationRequest, InputImage
from plugins.cloudflare.catalog import InputKind, ModelSpec
from plugins.image_inputs import extension, fit_within, sized_mask, white_mask

FileParts = dict[str, tuple[str, bytes, str]]


async def json_inputs(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """``image``, ``mask`` and ``strength`` for the SD 1.5 models; nothing for the others."""
    if spec.inputs not in (InputKind.SD_IMAGE, InputKind.SD_INPAINT) or not request.images:
        return {}
    picture = await fit_within(request.images[0], spec.input_pixels)
    fields: dict[str, Any] = {"image": list(picture.data)}
    if spec.inputs is InputKind.SD_INPAINT:
        fields["mask"] = list(await _mask(request.mask, picture))
    if request.strength is not None:
        fields["strength"] = float(request.strength)
    return fields


async def _mask(mask: InputImage | None, picture: InputImage) -> bytes:
    """The user's mask at the picture's size; without one, an all-white mask repaints everything."""
    size = (picture.width, picture.height)
    return await sized_mask(mask, size) if mask is not None else await white_mask(size)


async def reference_parts(spec: ModelSpec, request: GenerationRequest) -> FileParts:
    """The FLUX.2 file parts ``input_image_N``, each scaled to at most 512x512."""
    if spec.inputs is not InputKind.FLUX2_REFERENCES:
        return {}
    parts: FileParts = {}
    for index, image in enumerate(request.images):
        fitted = await fit_within(image, spec.input_pixels)
        parts[f"input_image_{index}"] = (f"input_{index}.{extension(fitted)}", fitted.data, fitted.mime_type)
    return parts
