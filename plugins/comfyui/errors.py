"""ComfyUI answers and websocket messages mapped onto SakaiBot's errors.

What ComfyUI sends (``server.py``, ``execution.py``)::

    POST /prompt 400  {"error": {"type", "message", "details"}, "node_errors": {id: {"class_type",
                       "errors": [{"type", "message", "details"}]}}}   → InvalidRequest naming the node
                      (older builds: "error" is a plain string)
    POST /prompt 5xx  a body that is not JSON gives a 500            → BackendUnavailable
    401/403           only from a proxy in front (ComfyUI has no auth) → BackendAuthError
    ws execution_error {node_id, node_type, exception_type, exception_message}
                      torch.OutOfMemoryError                          → BackendUnavailable, not retried
                      anything else                                   → BackendError naming the node
    ws execution_interrupted (not by us)                              → JobCancelled
    a finished prompt with no image output                            → InvalidImage
"""

from __future__ import annotations

import json
import re
from typing import Any

from core import BackendAuthError, BackendError, BackendUnavailable, InvalidRequest, JobCancelled, SakaiError

OOM_RE = re.compile(r"out ?of ?memory|OutOfMemory", re.IGNORECASE)
MAX_SHOWN = 240
OOM_MESSAGE = ("The image server ran out of GPU memory for this picture. Try a smaller size or fewer steps, "
               "or try again when the server is less busy.")


def map_prompt_error(status: int, text: str) -> SakaiError:
    """The SakaiError for a refused ``POST /prompt``."""
    body = _json(text)
    detail = f"HTTP {status}: {text[:500]}"
    if status in (401, 403):
        return BackendAuthError("The image server refused the bot's login. Tell the bot's admin (check auth_env).",
                                detail=detail)
    if status == 400:
        return InvalidRequest(f"The ComfyUI workflow was refused: {_shown(_validation(body) or text)}")
    if status >= 500:
        return BackendUnavailable(detail=detail)
    return BackendError(detail=detail)


def map_execution_error(data: dict[str, Any]) -> SakaiError:
    """The SakaiError for an ``execution_error`` message about our prompt."""
    message = str(data.get("exception_message") or "").strip()
    kind = str(data.get("exception_type") or "")
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    detail = f"{where}: {kind}: {message[:500]}"
    if OOM_RE.search(kind) or OOM_RE.search(message):
        error = BackendUnavailable(OOM_MESSAGE, detail=detail)
        error.retryable = False  # deterministic for this size and card; retrying only makes everyone wait
        return error
    return BackendError(f"The ComfyUI workflow failed at {where}: {_shown(message or kind)}", detail=detail)


def interrupted(data: dict[str, Any]) -> JobCancelled:
    """Someone stopped our prompt on the server (its UI, another client)."""
    return JobCancelled("The job was stopped on the image server.",
                        detail=f"interrupted at node {data.get('node_id')} ({data.get('node_type')})")


def _validation(body: dict[str, Any]) -> str:
    parts = []
    node_errors = body.get("node_errors")
    for node_id, node in (node_errors.items() if isinstance(node_errors, dict) else []):
        for item in (node.get("errors") or [])[:2] if isinstance(node, dict) else []:
            parts.append(f"node {node_id} ({node.get('class_type')}): {_item(item)}")
    if parts:
        return "; ".join(parts[:3])
    error = body.get("error")
    return _item(error) if isinstance(error, dict) else str(error or "")


def _item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    message, details = str(item.get("message") or ""), str(item.get("details") or "")
    return f"{message}: {details}" if details and details != message else message


def _json(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _shown(message: str) -> str:
    return " ".join(message.split())[:MAX_SHOWN] or "no reason given"
