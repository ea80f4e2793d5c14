"""OpenAI's ``POST /v1/images/edits`` for gpt-image models, as strict as its API reference, for respx."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
from typing import Any

import httpx
from PIL import Image as PILImage

from tests.fakes.workers_ai import picture

MAX_IMAGE_BYTES = 25_000_000


def parts_of(request: httpx.Request) -> list[Any]:
    """The multipart parts, as a server would read them."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    return list(message.iter_parts())


def error_response(status: int, code: str | None, message: str, param: str | None = None) -> httpx.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return httpx.Response(status, json=body)


def openai_edits(request: httpx.Request) -> httpx.Response:
    """OpenAI's /images/edits for gpt-image models, as strict as its reference."""
    if request.headers.get("Authorization") != "Bearer sk-test-secret-key":
        return error_response(401, "invalid_api_key", "Incorrect API key provided")
    parts = parts_of(request)
    fields = {p.get_param("name", header="content-disposition"): p for p in parts}
    images = [p for p in parts if p.get_param("name", header="content-disposition") in ("image", "image[]")]
    if "prompt" not in fields or "model" not in fields:
        return error_response(400, None, "Missing required parameter: 'prompt'.", "prompt")
    if not images or len(images) > 16:
        return error_response(400, None, "Invalid 'image': expected between 1 and 16 images.", "image")
    sizes = []
    for part in images:
        data = part.get_payload(decode=True)
        if part.get_content_type() not in ("image/png", "image/jpeg", "image/webp") or len(data) > MAX_IMAGE_BYTES:
            return error_response(400, "invalid_image_format", "Invalid image file or mode for image.", "image")
        with PILImage.open(io.BytesIO(data)) as opened:
            sizes.append(opened.size)
    if "mask" in fields:
        with PILImage.open(io.BytesIO(fields["mask"].get_payload(decode=True))) as mask:
            if mask.format != "PNG" or mask.mode != "RGBA" or mask.size != sizes[0]:
                return error_response(400, "invalid_image", "Invalid mask image: must be a PNG with an alpha channel "
                              "and the same dimensions as the image.", "mask")
    size = fields["size"].get_content() if "size" in fields else "auto"
    # gpt-image answers at the size asked, or the first picture's with "auto"
    width, height = sizes[0] if size == "auto" else (int(v) for v in size.split("x"))
    data = base64.b64encode(picture("PNG", (width, height))).decode()
    return httpx.Response(200, json={"created": 1, "data": [{"b64_json": data}]})
