"""Provenance in the PNG itself: prompt, enhanced prompt, model, seed and options as text chunks.

Chunks are inserted before ``IEND`` without re-encoding, so the pixels stay byte-identical.
"""

from __future__ import annotations

import struct
from typing import Any
from zlib import crc32

from core.types import GenerationOptions, Image, Job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def provenance(job: Job, image: Image | None = None, index: int = 0) -> dict[str, str]:
    """The text fields recorded for ``image``, the ``index``-th of ``job``'s images.

    Each image of a batch names its own seed (the one that makes it again alone) and its place; an
    image made from pictures says how many, and the strength or upscale used, never their bytes.
    """
    seed = image.seed if image is not None and image.seed is not None else job.generation.seed
    request = job.request
    fields = {
        "prompt": request.prompt,
        "model": job.model,
        "seed": "" if seed is None else str(seed),
        "options": _options_json(job) if request.options.model_fields_set else "{}",
        "job": job.id,
        "Software": "SakaiBot",
    }
    if request.options.count > 1:
        fields["image"] = f"{index + 1} of {request.options.count}"
    if job.generation.images:
        fields["input_images"] = str(len(job.generation.images)) + (" with a mask" if job.generation.mask else "")
    if job.enhanced_prompt:
        fields["enhanced_prompt"] = job.enhanced_prompt
    return fields


def _options_json(job: Job) -> str:
    """The options that differ from their defaults, as pydantic's ``model_dump_json(exclude_defaults=True)``.

    Written out here for whole numbers, flags and ratios (pydantic's encoder was a visible share of a
    job's cost); free text and fractions still go through pydantic, whose escapes and float format
    are the reference. A field never set holds its default, so only the set ones are looked at.
    """
    options = job.request.options
    chosen = options.model_fields_set
    if not chosen:
        return "{}"
    parts = []
    for name, default in _OPTION_DEFAULTS:
        if name not in chosen:
            continue
        value = getattr(options, name)
        if value == default:
            continue
        kind = type(value)
        if kind is bool:
            parts.append(f'"{name}":{"true" if value else "false"}')
        elif kind is int or name == "aspect_ratio":  # a ratio is digits, a colon and digits (validated)
            parts.append(f'"{name}":{value}' if kind is int else f'"{name}":"{value}"')
        else:
            return options.model_dump_json(exclude_defaults=True)
    return "{" + ",".join(parts) + "}"


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
    add, extend = parts.append, parts.extend
    for key, value in fields.items():
        text = value if type(value) is str else str(value)
        if not text:
            continue
        if key in _STABLE_KEYS:
            add(_STABLE.get((key, text)) or _stable_chunk(key, text))
            continue
        body = (_PREFIXES.get(key) or _prefix(key)) + text.encode()
        extend((_LENGTH(len(body)), _ITXT, body, _LENGTH(crc32(body, _ITXT_CRC))))
    parts.append(view[end - 4:])
    return b"".join(parts)


def _stable_chunk(key: str, text: str) -> bytes:
    """A whole chunk for a field with few values (model, software), kept to be reused."""
    body = (_PREFIXES.get(key) or _prefix(key)) + text.encode()
    chunk = b"".join((_LENGTH(len(body)), _ITXT, body, _LENGTH(crc32(body, _ITXT_CRC))))
    if len(_STABLE) < STABLE_LIMIT:
        _STABLE[key, text] = chunk
    return chunk


_OPTION_DEFAULTS = tuple((name, info.default) for name, info in GenerationOptions.model_fields.items())
_ITXT = b"iTXt"
_ITXT_CRC = crc32(_ITXT)
_ITXT_FLAGS = b"\x00\x00\x00\x00\x00"  # keyword end, no compression, method, empty language and translated key
_PREFIXES: dict[str, bytes] = {}  # the few keys there are, encoded once
_LENGTH = struct.Struct(">I").pack  # a chunk's length and CRC: 4 bytes, big-endian
_STABLE_KEYS = frozenset({"model", "Software"})  # fields with a handful of values: whole chunks kept
_STABLE: dict[tuple[str, str], bytes] = {}
STABLE_LIMIT = 256


def _prefix(key: str) -> bytes:
    """A chunk's body up to its text: the Latin-1 keyword (at most 79 bytes) and the flags."""
    prefix = _PREFIXES[key] = key.encode("latin-1", "replace")[:79] + _ITXT_FLAGS
    return prefix
