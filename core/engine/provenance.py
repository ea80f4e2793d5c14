"""Provenance in the PNG itself: prompt, enhanced prompt, model, seed and options as text chunks.

Chunks are inserted before ``IEND`` without re-encoding, so the pixels stay byte-identical.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from core.types import Job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def provenance(job: Job) -> dict[str, str]:
    """The text fields recorded for ``job``."""
    fields = {
        "prompt": job.request.prompt,
        "model": job.model,
        "seed": "" if job.generation.seed is None else str(job.generation.seed),
        "options": json.dumps(job.request.options.model_dump(exclude_defaults=True), sort_keys=True),
        "job": job.id,
        "Software": "SakaiBot",
    }
    if job.enhanced_prompt:
        fields["enhanced_prompt"] = job.enhanced_prompt
    return fields


def with_text_chunks(png: bytes, fields: dict[str, Any]) -> bytes:
    """``png`` with an ``iTXt`` chunk per field (UTF-8), or unchanged if it is not a PNG."""
    end = png.rfind(b"IEND")
    if not png.startswith(PNG_MAGIC) or end < 4:
        return png
    chunks = b"".join(_itxt(key, str(value)) for key, value in fields.items() if value != "")
    return png[: end - 4] + chunks + png[end - 4:]


def _itxt(key: str, text: str) -> bytes:
    body = key.encode("latin-1", "replace")[:79] + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    return struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
