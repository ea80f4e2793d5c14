"""What each Workers AI text-to-image model accepts, from Cloudflare's published schemas.

The request kind, field names and limits differ per model; sending a field a model does not
take can fail the whole request (one flux schema revision has ``additionalProperties: false``),
so each entry lists exactly what to send.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core import Capabilities, Size, sizes_for_area


class RequestKind(enum.StrEnum):
    """How the request body is encoded."""

    JSON = "json"
    MULTIPART = "multipart"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One Workers AI model: what to send and what it accepts."""

    description: str
    request: RequestKind
    capabilities: Capabilities
    steps_field: str | None = None
    sends_size: bool = False
    guidance: float | None = None


SQUARE_1024 = (Size(1024, 1024),)
SDXL_SIZES = sizes_for_area(1024 * 1024, multiple=64)
FLUX2_SIZES = sizes_for_area(1024 * 1024, multiple=16)
SD15_SIZES = sizes_for_area(512 * 512, multiple=64)


def _caps(sizes: tuple[Size, ...], prompt: int, *, negative: bool, max_steps: int | None,
          default_steps: int | None, concurrency: int) -> Capabilities:
    return Capabilities(sizes=sizes, max_prompt_length=prompt, supports_seed=True,
                        supports_negative_prompt=negative, max_steps=max_steps, default_steps=default_steps,
                        default_concurrency=concurrency)


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
    "@cf/black-forest-labs/flux-2-klein-4b": ModelSpec(
        "FLUX.2 [klein] 4B on Cloudflare: fast, any common ratio.", RequestKind.MULTIPART,
        _caps(FLUX2_SIZES, 2048, negative=False, max_steps=None, default_steps=None, concurrency=4),
        sends_size=True),
    "@cf/black-forest-labs/flux-2-klein-9b": ModelSpec(
        "FLUX.2 [klein] 9B on Cloudflare: sharper, any common ratio.", RequestKind.MULTIPART,
        _caps(FLUX2_SIZES, 2048, negative=False, max_steps=None, default_steps=None, concurrency=4),
        sends_size=True),
    "@cf/black-forest-labs/flux-2-dev": ModelSpec(
        "FLUX.2 [dev] on Cloudflare: highest quality, slow and costly.", RequestKind.MULTIPART,
        _caps(FLUX2_SIZES, 2048, negative=False, max_steps=50, default_steps=20, concurrency=2),
        steps_field="steps", sends_size=True),
}


def spec_for(model_id: str) -> ModelSpec:
    """The catalog entry for ``model_id``; unknown models get a cautious JSON default."""
    known = CATALOG.get(model_id)
    if known is not None:
        return known
    return ModelSpec(f"{model_id} on Cloudflare Workers AI.", RequestKind.JSON,
                     _caps(SQUARE_1024, 1000, negative=False, max_steps=None, default_steps=None, concurrency=2))
