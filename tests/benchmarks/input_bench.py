"""Input pictures: what cleaning a phone photo costs, and what keeping it in the job store costs.

Rows: the time to clean (decode, turn upright, strip, re-encode) a 12-megapixel JPEG, in a thread;
the bytes the job store keeps for it as raw bytes beside the job (``job_inputs``) against base64
inside the request JSON; the time of the two JSON round trips every job's request column pays
(a delivery note rewrites it, ``/history`` parses it) with the picture kept apart against inline;
and the preview model's blend and 2x upscale of a Telegram-sized photo. Nothing here asserts a time.
``python -m tests.benchmarks.input_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time

from PIL import Image as PILImage

from core.imaging import clean_input
from core.store.rows import request_json
from core.types import GenerationRequest, Size
from plugins.preview.render import render_png, upscale
from tests.benchmarks.engine_bench import Row, render
from tests.utils import request


def phone_photo(width: int, height: int) -> bytes:
    """A JPEG with photo-like detail (a gradient under mild noise), as a phone would send it."""
    gradient = PILImage.linear_gradient("L").resize((width, height)).convert("RGB")
    noise = PILImage.effect_noise((width, height), 24).convert("RGB")
    buffer = io.BytesIO()
    PILImage.blend(gradient, noise, 0.3).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _round_trips(column: str, rounds: int) -> float:
    """Seconds per parse-and-rewrite of a request column (what ``note_delivery`` and ``/history`` do)."""
    started = time.perf_counter()
    for _ in range(rounds):
        json.dumps(json.loads(column))
    return (time.perf_counter() - started) / rounds


async def run(width: int = 4000, height: int = 3000, rounds: int = 5) -> list[Row]:
    """Measure cleaning, storage and the preview's picture paths; the rows to print."""
    photo = await asyncio.to_thread(phone_photo, width, height)
    started = time.perf_counter()
    cleaned = await clean_input(photo, max_pixels=width * height)
    clean_ms = (time.perf_counter() - started) * 1000
    asked = request("a harbour at night", images=(cleaned.data,))
    inline, apart = asked.model_dump_json(), request_json(asked)
    inline_ms = _round_trips(inline, rounds) * 1000
    apart_ms = _round_trips(apart, rounds) * 1000
    small = await clean_input(await asyncio.to_thread(phone_photo, 1280, 960))  # a Telegram photo
    generation = GenerationRequest(prompt="a harbour", size=Size(576, 448), seed=1, negative_prompt=None, steps=8,
                                   original_prompt="a harbour", images=(small,), strength=0.5)
    started = time.perf_counter()
    await asyncio.to_thread(render_png, generation, "preview")
    blend_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await asyncio.to_thread(upscale, small, 2)
    upscale_ms = (time.perf_counter() - started) * 1000
    megapixels = width * height / 1e6
    return [
        Row(f"clean a {megapixels:.0f} MP JPEG ({len(photo) / 1e6:.1f} MB)", clean_ms, "ms", 0, "-", "off the loop"),
        Row("stored per picture: raw bytes in job_inputs", len(cleaned.data) / 1000, "KB",
            (len(inline) - len(apart)) / 1000, "base64 in the request JSON", "raw"),
        Row("request column round trip, picture apart", apart_ms, "ms", inline_ms, "picture inline (base64)",
            "no bytes"),
        Row("preview: blend a 1280x960 photo into 576x448", blend_ms, "ms", 0, "-", "fast"),
        Row("preview: 2x LANCZOS upscale of it (2560x1920)", upscale_ms, "ms", 0, "-", "under 1 s"),
    ]


def main() -> None:
    """Parse the photo size, run, print."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.input_bench")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    print(render(asyncio.run(run(args.width, args.height))))


if __name__ == "__main__":
    main()
