"""Making an image fit the interaction's upload limit: re-encode, then downscale if still too big."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from core import Image

QUALITIES = (90, 80, 70)
SHRINK = 0.75


def fit(image: Image, limit: int) -> tuple[bytes, str]:
    """Bytes and extension under ``limit``: the original when it fits, else JPEG, smaller if need be."""
    if len(image.data) <= limit:
        return image.data, image.extension
    with PILImage.open(io.BytesIO(image.data)) as picture:
        rgb = picture.convert("RGB")
    while True:
        for quality in QUALITIES:
            data = _jpeg(rgb, quality)
            if len(data) <= limit:
                return data, "jpg"
        if min(rgb.size) < 64:
            return data, "jpg"
        rgb = rgb.resize((int(rgb.width * SHRINK), int(rgb.height * SHRINK)))


def _jpeg(picture: PILImage.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
