"""What each Workers AI image model accepts, from Cloudflare's published schemas.

The request kind, field names and limits differ per model; sending a field a model does not
take can fail the whole request (one flux schema revision has ``additionalProperties: false``),
so each entry lists exactly what to send, input images included:

- ``@cf/runwayml/stable-diffusion-v1-5-img2img`` and ``-inpainting`` take ``image`` (and
  ``mask``) as JSON arrays of 8-bit integers, plus ``strength`` (0-1, default 1);
- the FLUX.2 models take up to 4 reference images as multipart file parts ``input_image_0`` …
  ``input_image_3``, "512x512 per input image" (Cloudflare's FLUX.2 [dev] changelog), no strength.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core import Capabilities, InputSupport, Size, sizes_for_area


class RequestKind(enum.StrEnum):
    """How the request body is encoded."""

    JSON = "json"
    MULTIPART = "multipart"


class InputKind(enum.StrEnum):
    """How a model takes input images, if at all."""

    NONE = "none"
    SD_IMAGE = "sd-image"  # JSON ``image`` as uint8 array, ``strength``
    SD_INPAINT = "sd-inpaint"  # as SD_IMAGE, plus ``mask`` as uint8 array
    FLUX2_REFERENCES = "flux2-references"  # multipart ``input_image_0`` … ``input_image_3``


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One Workers AI model: what to send and what it accepts."""

    description: str
    request: RequestKind
    capabilities: Capabilities
    steps_field: str | None = None
    sends_size: bool = False
    guidance: float | None = None
    inputs: InputKind = InputKind.NONE
    input_pixels: int = 0  # inputs larger than this are scaled down before sending


SQUARE_1024 = (Size(1024, 1024),)
SDXL_SIZES = sizes_for_area(1024 * 1024, multiple=64)
FLUX2_SIZES = sizes_for_area(1024 * 1024, multiple=16)
SD15_SIZES = sizes_for_area(512 * 512, multiple=64)


FLUX2_INPUT_PIXELS = 512 * 512  # "512x512 per input image": larger inputs are scaled down, not refused
SD15_INPUT_PIXELS = 1024 * 1024  # SD 1.5 works at 512x512; a bigger array only makes the JSON body heavier
SD15_IMAGE = InputSupport(image_to_image=True, strength=True)
SD15_INPAINT = InputSupport(image_to_image=True, masks=True, strength=True)
FLUX2_REFERENCES = InputSupport(image_to_image=True, edit=True, max_images=4)


def _caps(sizes: tuple[Size, ...], prompt: int, *, negative: bool, max_steps: int | None,
          default_steps: int | None, concurrency: int, inputs: InputSupport | None = None) -> Capabilities:
    return Capabilities(sizes=sizes, max_prompt_length=prompt, supports_seed=True,
                        supports_negative_prompt=negative, max_steps=max_steps, default_steps=default_steps,
                        default_concurrency=concurrency, inputs=inputs)


CATALOG: dict[str, ModelSpec] = {
    "@cf/black-forest-labs/flux-1-schnell": ModelSpec(
        "FLUX.1 [schnell] on Cloudflare: fast, 1024x1024.", RequestKind.JSON,
        _caps(SQUARE_1024, 2048, negative=False, max_steps=8, default_steps=4, concurrency=4),
        steps_field="steps"),
    "@cf/stabilityai/stable-diffusion-xl-base-1.0": ModelSpec(
        "Stable Diffusion XL on Cloudflare: detailed, any common ratio.", RequestKind.JSON,
        _caps(SDXL_SIZES, 2048, negative=True, max_steps=20, default_steps=20, concurrency=4),
        steps_field="num_steps", sends_size=True, guidance=7.5),
    "@cf/bytedance/stable-diffusion-xl-lightning": ModelSpec(
        "SDXL Lightning on Cloudflare: SDXL in a few steps.", RequestKind.JSON,
        _caps(SDXL_SIZES, 2048, negative=True, max_steps=20, default_steps=8, concurrency=4),
        steps_field="num_steps", sends_size=True),
    "@cf/lykon/dreamshaper-8-lcm": ModelSpec(
        "DreamShaper 8 LCM on Cloudflare: stylised, quick.", RequestKind.JSON,
        _caps(SD15_SIZES, 2048, negative=True, max_steps=20, default_steps=8, concurrency=4),
        steps_field="num_steps", sends_size=True),
    "@cf/leonardo/phoenix-1.0": ModelSpec(
        "Leonardo Phoenix 1.0 on Cloudflare (partner model, costs more neurons).", RequestKind.JSON,
        _caps(SDXL_SIZES, 2048, negative=True, max_steps=50, default_steps=25, concurrency=2),
        steps_field="num_steps", sends_size=True),
    "@cf/leonardo/lucid-origin": ModelSpec(
        "Leonardo Lucid Origin on Cloudflare (partner model, costs more neurons).", RequestKind.JSON,
        _caps(SDXL_SIZES, 2048, negative=False, max_steps=40, default_steps=4, concurrency=2),
        steps_field="num_steps", sends_size=True),
    "@cf/runwayml/stable-diffusion-v1-5-img2img": ModelSpec(
        "Stable Diffusion 1.5 image-to-image on Cloudflare: redraws your picture (beta).", RequestKind.JSON,
        _caps(SD15_SIZES, 2048, negative=True, max_steps=20, default_steps=20, concurrency=4, inputs=SD15_IMAGE),
        steps_field="num_steps", sends_size=True, inputs=InputKind.SD_IMAGE, input_pixels=SD15_INPUT_PIXELS),
    "@cf/runwayml/stable-diffusion-v1-5-inpainting": ModelSpec(
        "Stable Diffusion 1.5 inpainting on Cloudflare: repaints where the mask is white (beta).", RequestKind.JSON,
        _caps(SD15_SIZES, 2048, negative=True, max_steps=20, default_steps=20, concurrency=4, inputs=SD15_INPAINT),
        steps_field="num_steps", sends_size=True, inputs=InputKind.SD_INPAINT, input_pixels=SD15_INPUT_PIXELS),
    "@cf/black-forest-labs/flux-2-klein-4b": ModelSpec(
        "FLUX.2 [klein] 4B on Cloudflare: fast, any common ratio, edits with up to 4 pictures.",
        RequestKind.MULTIPART,
        _caps(FLUX2_SIZES, 2048, negative=False, max_steps=None, default_steps=None, concurrency=4,
              inputs=FLUX2_REFERENCES),
        sends_size=True, inputs=InputKind.FLUX2_REFERENCES, input_pixels=FLUX2_INPUT_PIXELS),
    "@cf/black-forest-labs/flux-2-klein-9b": ModelSpec(
        "FLUX.2 [klein] 9B on Cloudflare: sharper, any common ratio, edits with up to 4 pictures.",
        RequestKind.MULTIPART,
        _caps(FLUX2_SIZES, 2048, negative=False, max_steps=None, default_steps=None, concurrency=4,
              inputs=FLUX2_REFERENCES),
        sends_size=True, inputs=InputKind.FLUX2_REFERENCES, input_pixels=FLUX2_INPUT_PIXELS),
    "@cf/black-forest-labs/flux-2-dev": ModelSpec(
        "FLUX.2 [dev] on Cloudflare: highest quality, slow and costly, edits with up to 4 pictures.",
        RequestKind.MULTIPART,
        _caps(FLUX2_SIZES, 2048, negative=False, max_steps=50, default_steps=20, concurrency=2,
              inputs=FLUX2_REFERENCES),
        steps_field="steps", sends_size=True, inputs=InputKind.FLUX2_REFERENCES, input_pixels=FLUX2_INPUT_PIXELS),
}


def spec_for(model_id: str) -> ModelSpec:
    """The catalog entry for ``model_id``; unknown models get a cautious JSON default."""
    known = CATALOG.get(model_id)
    if known is not None:
        return known
    return ModelSpec(f"{model_id} on Cloudflare Workers AI.", RequestKind.JSON,
                     _caps(SQUARE_1024, 1000, negative=False, max_steps=None, default_steps=None, concurrency=2))
