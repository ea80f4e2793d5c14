"""The WebUI request bodies: txt2img, img2img (init image, mask, denoising strength) and extras.

Field names and defaults follow ``modules/api/models.py`` and ``modules/processing.py``:
img2img takes ``init_images`` (base64, no ``data:`` prefix needed), ``denoising_strength``
(0-1; the WebUI's default is 0.75) and for inpainting a ``mask`` (base64; white is repainted
unless ``inpainting_mask_invert``); ``/sdapi/v1/extra-single-image`` takes ``image``,
``resize_mode`` 0 ("scale by") with ``upscaling_resize`` and ``upscaler_1`` (its default
"None" upscales nothing, so the upscaler is always named).
"""

from __future__ import annotations

import base64
from typing import Any

from core import GenerationRequest
from plugins.automatic1111.settings import Automatic1111Settings
from plugins.image_inputs import sized_mask

TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"
EXTRAS = "/sdapi/v1/extra-single-image"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def generation_body(settings: Automatic1111Settings, request: GenerationRequest, batch: int) -> dict[str, Any]:
    """The fields txt2img and img2img share: the request's values over the configured defaults."""
    body: dict[str, Any] = {
        "prompt": request.prompt, "negative_prompt": request.negative_prompt or "",
        "seed": request.seed if request.seed is not None else -1,
        "steps": request.steps or settings.steps, "cfg_scale": settings.cfg_scale,
        "width": request.size.width, "height": request.size.height,
        "batch_size": batch, "n_iter": 1, "send_images": True, "save_images": False,
    }
    for key, value in (("sampler_name", settings.sampler), ("scheduler", settings.scheduler)):
        if value:
            body[key] = value
    if settings.checkpoint:
        body["override_settings"] = {"sd_model_checkpoint": settings.checkpoint}
    return body


async def request_body(settings: Automatic1111Settings, request: GenerationRequest,
                       batch: int) -> tuple[str, dict[str, Any]]:
    """The route and body for ``request``: img2img when it carries a picture, else txt2img."""
    body = generation_body(settings, request, batch)
    if not request.images:
        return TXT2IMG, body
    picture = request.images[0]
    strength = request.strength if request.strength is not None else settings.denoising_strength
    body.update(init_images=[_b64(picture.data)], denoising_strength=strength, resize_mode=0,
                include_init_images=False)
    if request.mask is not None:
        mask = await sized_mask(request.mask, (picture.width, picture.height))
        body.update(mask=_b64(mask), mask_blur=settings.mask_blur, inpainting_fill=settings.inpainting_fill,
                    inpaint_full_res=False, inpainting_mask_invert=0)
    return IMG2IMG, body


def upscale_body(settings: Automatic1111Settings, request: GenerationRequest) -> dict[str, Any]:
    """An ``extra-single-image`` body: ``images[0]`` scaled by ``request.upscale`` with the named upscaler."""
    return {"image": _b64(request.images[0].data), "resize_mode": 0, "upscaling_resize": request.upscale,
            "upscaler_1": settings.upscaler, "show_extras_results": True}
