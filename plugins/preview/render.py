"""Drawing the preview picture: a seeded gradient, seeded shapes, the prompt, an honest label.

With an input picture the drawing is blended into it by ``strength`` (0 keeps the picture, 1 is all
drawing); an upscale is a plain Pillow LANCZOS resize. Neither is AI: they make the image path
visible and testable offline.
"""

from __future__ import annotations

import io
import random
import textwrap

from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

from core import GenerationRequest, InputImage

LABEL = "SakaiBot preview - not an AI image"
DEFAULT_STRENGTH = 0.5


def render_png(request: GenerationRequest, model: str) -> bytes:
    """The PNG for ``request``; identical inputs give identical bytes."""
    rng = random.Random(f"{request.seed}:{request.prompt}:{request.negative_prompt}")
    width, height = request.size.width, request.size.height
    picture = _background(rng, width, height)
    _shapes(picture, rng, request.steps or 8)
    footer = f"{model} · seed {request.seed} · {width}x{height}"
    if request.images:
        strength = DEFAULT_STRENGTH if request.strength is None else request.strength
        picture = Image.blend(_fitted(request.images[0], width, height), picture, strength)
        footer += f" · from your picture, strength {strength:g}"
    _caption(picture, request.prompt, footer)
    return _encode(picture.convert("RGB"), request, model)


def upscale(image: InputImage, factor: int) -> tuple[bytes, str]:
    """``image`` resized ``factor`` times with Pillow's LANCZOS filter: honest resampling, no detail invented.

    A JPEG stays JPEG (quality 95: encoding 12 megapixels as PNG takes several times longer); the
    rest is PNG. Returns the bytes and their MIME type.
    """
    with Image.open(io.BytesIO(image.data)) as source:
        larger = source.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image.mime_type == "image/jpeg":
        larger.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue(), "image/jpeg"
    larger.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), "image/png"


def _fitted(image: InputImage, width: int, height: int) -> Image.Image:
    """The input picture cropped to the output's shape and resized to it, as RGBA for blending."""
    with Image.open(io.BytesIO(image.data)) as source:
        return ImageOps.fit(source.convert("RGBA"), (width, height), Image.Resampling.BILINEAR)


def _color(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    gradient = Image.linear_gradient("L").resize((width, height)).rotate(rng.choice((0, 90, 180, 270)))
    return ImageOps.colorize(gradient, _color(rng), _color(rng)).convert("RGBA")


def _shapes(picture: Image.Image, rng: random.Random, count: int) -> None:
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    width, height = picture.size
    for _ in range(count):
        radius = rng.randint(min(width, height) // 12, min(width, height) // 3)
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x - radius, y - radius, x + radius, y + radius)
        fill = (*_color(rng), rng.randint(60, 150))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rounded_rectangle(box, radius=radius // 4, fill=fill)
    picture.alpha_composite(overlay)


def _caption(picture: Image.Image, prompt: str, footer: str) -> None:
    width, height = picture.size
    size = max(12, width // 28)
    font = ImageFont.load_default(size=size)
    small = ImageFont.load_default(size=max(10, size * 2 // 3))
    lines = textwrap.wrap(" ".join(prompt.split()), width=max(10, int(width / (size * 0.55))))[:6]
    band = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    top = height - (len(lines) + 2) * int(size * 1.3) - size
    draw.rectangle((0, top, width, height), fill=(0, 0, 0, 140))
    y = top + size // 2
    for line in lines:
        draw.text((size, y), line, font=font, fill=(255, 255, 255, 255))
        y += int(size * 1.3)
    draw.text((size, y + size // 3), f"{footer}  ·  {LABEL}", font=small, fill=(220, 220, 220, 255))
    picture.alpha_composite(band)


def _encode(picture: Image.Image, request: GenerationRequest, model: str) -> bytes:
    info = PngInfo()
    info.add_text("prompt", request.prompt)
    info.add_text("model", model)
    info.add_text("seed", str(request.seed))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()
