"""Following one prompt on ComfyUI's websocket: progress, previews, the end or the failure.

Text frames are ``{"type": ..., "data": {...}}``; only those naming our ``prompt_id`` count.
Binary frames are previews: a 4-byte big-endian event type, then for type 1 (PREVIEW_IMAGE) a
4-byte image format (1 JPEG, 2 PNG) and the image; for type 4 (PREVIEW_IMAGE_WITH_METADATA) a
4-byte length, that much JSON (with ``prompt_id``) and the image. ComfyUI sends type-1 previews
only to the client that queued the running prompt, and each generation uses its own client id.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from core import Progress
from core.imaging import sniff
from plugins.comfyui.errors import interrupted, map_execution_error

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


class PromptRun:
    """The state of our prompt as the websocket tells it."""

    def __init__(self, prompt_id: str, progress: Progress) -> None:
        self.prompt_id = prompt_id
        self.progress = progress
        self.running = False
        self.finished = False
        self.fraction = 0.0

    async def on_text(self, text: str) -> None:
        """Take one text frame in; raise the mapped error if our prompt failed."""
        try:
            message = json.loads(text)
        except ValueError:
            return
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict) or data.get("prompt_id") != self.prompt_id:
            return  # status frames, other clients' prompts, types newer than this code
        await self._on_ours(str(message.get("type")), data)

    async def _on_ours(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("execution_start", "execution_cached"):
            self.running = True
        elif kind == "executing":
            self.running = True
            self.finished = data.get("node") is None  # the classic "prompt done" signal
        elif kind == "execution_success":
            self.finished = True
        elif kind == "progress":
            await self._step(data)
        elif kind == "execution_error":
            self.finished = True
            raise map_execution_error(data)
        elif kind == "execution_interrupted":
            self.finished = True
            raise interrupted(data)

    async def _step(self, data: dict[str, Any]) -> None:
        value, maximum = data.get("value"), data.get("max")
        if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
            self.running = True
            self.fraction = max(self.fraction, min(1.0, value / maximum))
            await self.progress(self.fraction)

    async def on_binary(self, frame: bytes) -> None:
        """Take one preview frame in, if it is ours and holds an image."""
        image = self._preview(frame)
        if image is not None and self.running and not self.finished:
            await self.progress(self.fraction, image)

    def _preview(self, frame: bytes) -> bytes | None:
        if len(frame) < 8:
            return None
        (event,) = struct.unpack(">I", frame[:4])
        image: bytes | None
        if event == PREVIEW_IMAGE:
            image = frame[8:]
        elif event == PREVIEW_IMAGE_WITH_METADATA:
            image = self._with_metadata(frame)
        else:
            return None
        return image if image and sniff(image) else None

    def _with_metadata(self, frame: bytes) -> bytes | None:
        (length,) = struct.unpack(">I", frame[4:8])
        try:
            metadata = json.loads(frame[8:8 + length])
        except ValueError:
            return None
        if not isinstance(metadata, dict) or metadata.get("prompt_id") not in (None, self.prompt_id):
            return None
        return frame[8 + length:]
