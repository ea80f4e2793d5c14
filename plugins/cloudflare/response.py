"""Reading an image out of a Cloudflare answer, whichever of its shapes the answer takes.

The Content-Type decides how to parse (JSON envelope or raw bytes); the bytes decide the format.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from core import Image, InvalidImage
from core.imaging import checked_image, decode_base64
from plugins.cloudflare.errors import map_error


async def read_image(response: httpx.Response, *, model: str, seed: int | None, **metadata: Any) -> Image:
    """The verified image in ``response``, or the mapped error it carries."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    body = response.content
    if content_type == "application/json" or (not content_type.startswith("image/") and body[:1] == b"{"):
        data = _from_envelope(response, _json(body, response.status_code))
    elif response.status_code >= 400:
        raise map_error(response.status_code, [], response.headers, body[:2000].decode("utf-8", "replace"))
    else:
        data = body
    return await checked_image(data, model=model, seed=seed, **metadata)


def _json(body: bytes, status: int) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise InvalidImage(detail=f"HTTP {status}: unreadable JSON: {body[:200]!r}") from exc
    if not isinstance(parsed, dict):
        raise InvalidImage(detail=f"HTTP {status}: unexpected JSON: {body[:200]!r}")
    return parsed


def _from_envelope(response: httpx.Response, envelope: dict[str, Any]) -> bytes:
    errors = envelope.get("errors") or []
    if isinstance(envelope.get("error"), str):  # custom Workers often answer {"error": "..."}
        errors = [*errors, {"message": envelope["error"]}]
    failed = response.status_code >= 400 or envelope.get("success") is False or errors
    image = _image_field(envelope)
    if failed or image is None:
        raise map_error(response.status_code, errors, response.headers,
                        response.text[:2000] if image is None and not errors else "")
    return decode_base64(image)


def _image_field(envelope: dict[str, Any]) -> str | None:
    result = envelope.get("result")
    for holder in (result if isinstance(result, dict) else {}, envelope):
        value = holder.get("image")
        if isinstance(value, str) and value:
            return value
    return None

