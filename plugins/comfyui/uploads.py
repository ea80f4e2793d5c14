"""Putting a request's pictures on the ComfyUI server before its workflow runs.

``POST /upload/image`` (``server.py``) takes a multipart body with the file in the field
``image`` and optional ``type`` (``input`` by default), ``subfolder`` and ``overwrite``; it
answers ``{"name", "subfolder", "type"}``, where ``name`` may differ from the one sent (a
`` (1)`` suffix when another file has it), and 400 without a file. A ``LoadImage`` node then
names the file as ``name`` or ``subfolder/name``. The mask goes up the same way, as a greyscale
PNG at the picture's size, for a ``LoadImageMask`` node: ``/upload/mask`` is not used because it
paints the mask into the alpha of a copy of the picture, for ``LoadImage``'s own mask output.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import httpx

from core import BackendAuthError, BackendUnavailable, GenerationRequest, InvalidRequest, SakaiError
from plugins.comfyui.results import json_object
from plugins.image_inputs import extension, sized_mask, white_mask

Send = Callable[..., Awaitable[httpx.Response]]


async def upload_inputs(send: Send, request: GenerationRequest, names: frozenset[str]) -> dict[str, str]:
    """Upload what the workflow's placeholders need; the values ``{{image}}`` and ``{{mask}}`` become."""
    if "image" not in names:
        return {}
    if not request.images:
        raise InvalidRequest("This model works from a picture: send one with the prompt, or reply to one.")
    picture = request.images[0]
    token = uuid.uuid4().hex
    values = {"image": await _upload(send, f"sakaibot-{token}.{extension(picture)}", picture.data,
                                     picture.mime_type)}
    if "mask" in names:
        size = (picture.width, picture.height)
        mask = await sized_mask(request.mask, size) if request.mask is not None else await white_mask(size)
        values["mask"] = await _upload(send, f"sakaibot-{token}-mask.png", mask, "image/png")
    return values


async def _upload(send: Send, filename: str, data: bytes, mime: str) -> str:
    response = await send("POST", "/upload/image", files={"image": (filename, data, mime)},
                          data={"type": "input", "overwrite": "true"}, timeout=60)
    if response.status_code != 200:
        raise _upload_error(response)
    body = json_object(response)
    name, subfolder = body.get("name"), body.get("subfolder") or ""
    if not isinstance(name, str) or not name:
        raise BackendUnavailable(detail=f"/upload/image answered without a name: {response.text[:200]}")
    return f"{subfolder}/{name}" if subfolder else name


def _upload_error(response: httpx.Response) -> SakaiError:
    detail = f"/upload/image: HTTP {response.status_code} {response.text[:200]}"
    if response.status_code in (401, 403):
        return BackendAuthError("The image server refused the bot's login. Tell the bot's admin (check auth_env).",
                                detail=detail)
    if response.status_code == 413:
        return InvalidRequest("The picture is too large for the image server (its --max-upload-size).")
    if response.status_code >= 500:
        return BackendUnavailable(detail=detail)
    return InvalidRequest(f"The image server did not accept the picture (HTTP {response.status_code}).")
