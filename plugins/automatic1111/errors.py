"""AUTOMATIC1111 answers mapped onto SakaiBot's errors.

What the WebUI sends (``modules/api/api.py``; Forge answers plain-text 500s)::

    401  --api-auth refused: {"error": "HTTPException", "detail": "Incorrect username or password"}
                                                          → BackendAuthError
    404  {"detail": "Sampler not found"} and the like     → BackendError naming the setting (not retried)
    422  FastAPI validation: {"detail": [{"loc", "msg", "type"}]}
                                                          → InvalidRequest with the first problems
    500  {"error": "OutOfMemoryError", "errors": "CUDA out of memory…"}
                                                          → BackendUnavailable, *not* retried: the same
                                                            picture on the same card runs out again
    500  {"error": "AssertionError", "errors": "could not find upscaler named …"} (extras)
                                                          → BackendError naming the setting (not retried)
    500  {"detail": "Invalid encoded image"}, 404 "Init image not found" (img2img)
                                                          → InvalidRequest: the picture was refused
    500  anything else (Forge: plain text)                → BackendUnavailable (retried)
    200  with no image                                    → InvalidImage
    transport failures                                    → core.http: BackendUnavailable / BackendTimeout
"""

from __future__ import annotations

import json
import re
from typing import Any

from core import BackendAuthError, BackendError, BackendUnavailable, InvalidRequest, SakaiError

OOM_RE = re.compile(r"out ?of ?memory|OutOfMemory", re.IGNORECASE)
UPSCALER_RE = re.compile(r"could not find upscaler", re.IGNORECASE)
BAD_IMAGE_RE = re.compile(r"invalid encoded image|init image not found", re.IGNORECASE)
MAX_SHOWN = 200
OOM_MESSAGE = ("The image server ran out of GPU memory for this picture. Try a smaller size or fewer steps, "
               "or try again when the server is less busy.")


def parse_body(text: str) -> dict[str, Any]:
    """The JSON object of an answer, or ``{}`` when it is not one (Forge sends plain text)."""
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def map_error(status: int, text: str) -> SakaiError:
    """The SakaiError for a failed WebUI response."""
    body = parse_body(text)
    message = _message(body) or text.strip()
    detail = f"HTTP {status}: {message[:500]}"
    if status in (401, 403):
        return BackendAuthError("The image server refused the bot's login. Tell the bot's admin (check auth_env).",
                                detail=detail)
    if status == 422:
        return InvalidRequest(f"The image server did not accept this request: {_shown(message)}")
    if UPSCALER_RE.search(message):
        return BackendError(f"The image server says: {_shown(message)}. Tell the bot's admin "
                            "(check upscaler in the config against /sdapi/v1/upscalers).", detail=detail)
    if BAD_IMAGE_RE.search(message):
        return InvalidRequest(f"The image server did not accept the picture: {_shown(message)}")
    if status == 404:
        return BackendError(f"The image server says: {_shown(message)}. Tell the bot's admin "
                            "(check sampler and checkpoint in the config).", detail=detail)
    if OOM_RE.search(message):
        error = BackendUnavailable(OOM_MESSAGE, detail=detail)
        error.retryable = False  # deterministic for this size and card; retrying only makes everyone wait
        return error
    if status >= 500:
        return BackendUnavailable(detail=detail)
    return BackendError(detail=detail)


def _message(body: dict[str, Any]) -> str:
    detail = body.get("detail")
    if isinstance(detail, list):
        return "; ".join(_validation_item(item) for item in detail[:3])
    parts = [str(body.get(key) or "") for key in ("error", "detail", "errors")]
    return " | ".join(part for part in parts if part)


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", []) if part != "body")
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", ""))


def _shown(message: str) -> str:
    return " ".join(message.split())[:MAX_SHOWN] or "no reason given"
