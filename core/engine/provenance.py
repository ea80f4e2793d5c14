"""Provenance in the PNG itself: prompt, enhanced prompt, model, seed and options as text chunks.

Chunks are inserted before ``IEND`` without re-encoding, so the pixels stay byte-identical.
"""

from __future__ import annotations

from typing import Any
from zlib import crc32

from core.types import Image, Job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def provenance(job: Job, image: Image | None = None, index: int = 0) -> dict[str, str]:
    """The text fields recorded for ``image``, the ``index``-th of ``job``'s images.

    Each image of a batch names its own seed (the one that makes it again alone) and its place; an
    image made from pictures says how many, and the strength or upscale used, never their bytes.
    """
    seed = image.seed if image is not None and image.seed is not None else job.generation.seed
    fields = {
        "prompt": job.request.prompt,
        "model": job.model,
        "seed": "" if seed is None else str(seed),
        "options": _options_json(job),
        "job": job.id,
        "Software": "SakaiBot",
    }
    if job.request.options.count > 1:
        fields["image"] = f"{index + 1} of {job.request.options.count}"
    if job.generation.images:
        fields["input_images"] = str(len(job.generation.images)) + (" with a mask" if job.generation.mask else "")
    if job.enhanced_prompt:
        fields["enhanced_prompt"] = job.enhanced_prompt
    return fields


def _options_json(job: Job) -> str:
    """The options that differ from their defaults; none set means none differ (skips the encoder)."""
    options = job.request.options
    return options.model_dump_json(exclude_defaults=True) if options.model_fields_set else "{}"


def with_text_chunks(png: bytes, fields: dict[str, Any]) -> bytes:
    """``png`` with an ``iTXt`` chunk per field (UTF-8), or unchanged if it is not a PNG.

    The image is copied once (a 3 MB PNG is not sliced and concatenated twice on the event loop), and
    the chunks are laid out as parts of that one copy: this runs for every image, on the event loop.
    """
    end = png.rfind(b"IEND")
    if not png.startswith(PNG_MAGIC) or end < 4:
        return png
    view = memoryview(png)
    parts: list[bytes | memoryview] = [view[: end - 4]]
    add = parts.extend
    for key, value in fields.items():
        text = value if type(value) is str else str(value)
        if text:
            body = (_PREFIXES.get(key) or _prefix(key)) + text.encode()
            add((len(body).to_bytes(4, "big"), _ITXT, body, crc32(body, _ITXT_CRC).to_bytes(4, "big")))
    parts.append(view[end - 4:])
    return b"".join(parts)


_ITXT = b"iTXt"
_ITXT_CRC = crc32(_ITXT)
_ITXT_FLAGS = b"\x00\x00\x00\x00\x00"  # keyword end, no compression, method, empty language and translated key
_PREFIXES: dict[str, bytes] = {}  # the few keys there are, encoded once


def _prefix(key: str) -> bytes:
    """A chunk's body up to its text: the Latin-1 keyword (at most 79 bytes) and the flags."""
    prefix = _PREFIXES[key] = key.encode("latin-1", "replace")[:79] + _ITXT_FLAGS
    return prefix
