"""Reading ComfyUI's answers: JSON bodies, ``/history`` and ``/object_info``."""

from __future__ import annotations

from typing import Any

import httpx

from core import InvalidImage
from plugins.comfyui.errors import interrupted, map_execution_error


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; ``{}`` for anything else (not JSON, or a list), which every caller treats as empty."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def history_entry(body: dict[str, Any], prompt_id: str) -> dict[str, Any]:
    """Our prompt's entry; ``{}`` while it is still queued or running."""
    entry = body.get(prompt_id)
    return entry if isinstance(entry, dict) else {}


def raise_for_status(entry: dict[str, Any]) -> None:
    """Raise what the prompt's recorded messages say went wrong, if anything."""
    for message in (entry.get("status") or {}).get("messages") or []:
        if not (isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)):
            continue
        if message[0] == "execution_error":
            raise map_execution_error(message[1])
        if message[0] == "execution_interrupted":
            raise interrupted(message[1])


def first_image(entry: dict[str, Any]) -> dict[str, str]:
    """``/view`` parameters of the first saved image (a ``SaveImage`` output before a preview)."""
    found = [image for output in (entry.get("outputs") or {}).values() if isinstance(output, dict)
             for image in output.get("images") or [] if isinstance(image, dict) and image.get("filename")]
    if not found:
        status = (entry.get("status") or {}).get("status_str", "unknown")
        error = InvalidImage("The ComfyUI workflow finished without an image (does it end in a SaveImage node?).",
                             detail=f"status {status}; outputs {list((entry.get('outputs') or {}).keys())}")
        error.retryable = False  # the same workflow would end the same way
        raise error
    found.sort(key=lambda image: image.get("type") != "output")
    image = found[0]
    return {"filename": str(image["filename"]), "subfolder": str(image.get("subfolder", "")),
            "type": str(image.get("type", "output"))}


def missing_checkpoints(info: dict[str, Any], wanted: list[str]) -> list[str]:
    """The names in ``wanted`` that ``/object_info/CheckpointLoaderSimple`` does not offer."""
    spec = ((info.get("CheckpointLoaderSimple") or {}).get("input") or {}).get("required", {}).get("ckpt_name")
    offered = _options(spec)
    return [name for name in wanted if name not in offered]


def _options(spec: Any) -> set[str]:
    """Both forms: ``[[names…], {…}]`` and the newer ``["COMBO", {"options": [names…]}]``."""
    if not isinstance(spec, list) or not spec:
        return set()
    if isinstance(spec[0], list):
        return {str(name) for name in spec[0]}
    if len(spec) > 1 and isinstance(spec[1], dict):
        return {str(name) for name in spec[1].get("options") or []}
    return set()
