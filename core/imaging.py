"""Checking image bytes before anyone sees them: the format from the bytes, the rest from Pillow.

Backends label images carelessly (Cloudflare has sent JPEG as ``image/png``), and a dropped
connection can truncate a body that still looks like an image, so every backend passes its
bytes through ``checked_image``.

Images users send go through ``clean_input`` (see "Input images" below): the same distrust, plus
limits, the decompression-bomb guard and metadata stripped by re-encoding.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL import ImageCms, ImageOps, JpegImagePlugin, UnidentifiedImageError

from core.errors import InvalidImage, InvalidInputImage
from core.types import Image, InputImage

SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
)
MAX_PIXELS = 64_000_000


def decode_base64(value: str) -> bytes:
    """Image bytes from base64 (a ``data:`` URL too), or ``InvalidImage``: backends answer with either."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(detail=f"bad base64 image: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the bytes really are."""

    mime_type: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """The MIME type the magic bytes announce, or ``None``."""
    for magic, offset, mime in SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def inspect_image(data: bytes) -> ImageInfo:
    """Decode ``data`` fully (so truncation shows) and describe it; raise ``InvalidImage`` if broken."""
    mime = sniff(data)
    if mime is None:
        raise InvalidImage(detail=f"not an image: {len(data)} bytes starting {data[:16]!r}")
    try:
        with PILImage.open(io.BytesIO(data)) as picture:
            if picture.width * picture.height > MAX_PIXELS:
                raise InvalidImage(detail=f"image too large: {picture.width}x{picture.height}")
            picture.load()
            return ImageInfo(mime, picture.width, picture.height)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise InvalidImage(detail=f"broken {mime}: {exc}") from exc


async def checked_image(data: bytes, *, model: str, seed: int | None, **metadata: Any) -> Image:
    """An ``Image`` for ``data`` once verified; decoding runs in a thread, off the event loop."""
    info = await asyncio.to_thread(inspect_image, data)
    return Image(data=data, mime_type=info.mime_type, width=info.width, height=info.height, seed=seed,
                 model=model, metadata=dict(metadata))


# ---------------------------------------------------------------------- input images
# What users send (a photo, an attachment, a mask) is checked before the engine queues anything:
#   - the format comes from the bytes: PNG, JPEG, WebP or GIF (its first frame); anything else, or bytes
#     that contradict the type or file name the platform declared, is refused;
#   - at most MAX_INPUT_BYTES as sent, and at most the model's pixel limit, read from the header before
#     any pixel is decoded; Pillow's decompression-bomb guard (MAX_IMAGE_PIXELS) stays on, and its error
#     and warning are refusals too;
#   - decoded completely, so a truncated upload is refused rather than half-grey;
#   - re-encoded from the pixels alone: the EXIF orientation is applied first, an ICC profile is
#     converted to sRGB, then EXIF (GPS, camera), ICC and text chunks are gone. JPEG stays JPEG
#     (with its own quantization tables, so a photo keeps its quality and size); PNG, WebP and GIF
#     become PNG (lossless); a mask is a greyscale PNG.

INPUT_TYPES: dict[str, str] = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
TYPE_NAMES: dict[str, str] = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF"}
EXTENSIONS: dict[str, str] = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg",
                              ".jfif": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}
MAX_INPUT_BYTES = 20_000_000  # as sent; Telegram lets bots download up to 20 MB
DEFAULT_INPUT_PIXELS = 4096 * 4096
JPEG_QUALITY = 95
PNG_LEVEL = 3  # zlib level: 6 takes about twice as long on a photo for a file a few percent smaller
FORMATS_TEXT = "PNG, JPEG, WebP or GIF"

if PILImage.MAX_IMAGE_PIXELS is None:  # someone switched Pillow's bomb guard off: SakaiBot wants it on
    PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS


def declared_type(declared: str | None) -> str | None:
    """The MIME type a platform's label announces (``image/jpeg`` or a file name), ``None`` if it says nothing."""
    if not declared:
        return None
    text = declared.strip().lower()
    if "/" in text and "." not in text.rpartition("/")[2]:
        mime = text.partition(";")[0].strip()
        mime = "image/jpeg" if mime in ("image/jpg", "image/pjpeg") else mime
        return mime if mime.startswith("image/") else None  # application/octet-stream says nothing
    dot = text.rfind(".")
    return EXTENSIONS.get(text[dot:]) if dot >= 0 else None


def sniff_input(data: bytes, declared: str | None = None, *, label: str = "The picture") -> str:
    """The input image's real MIME type from its first bytes; ``InvalidInputImage`` if unknown or mislabelled.

    Cheap (no decoding), so a platform may call it on the event loop to refuse early.
    """
    if not data:
        raise InvalidInputImage(f"{label} is empty. Send it again.")
    mime = sniff(data)
    if mime is None:
        raise InvalidInputImage(f"{label} is not an image SakaiBot can read. Send a {FORMATS_TEXT} picture.",
                                detail=f"{len(data)} bytes starting {data[:12]!r}")
    said = declared_type(declared)
    if said is not None and said != mime:
        claimed = TYPE_NAMES.get(said, said.removeprefix("image/").upper())
        raise InvalidInputImage(f"{label} is labelled {claimed} but is really a {TYPE_NAMES[mime]} file. "
                                "Send it again with the right name or type.", detail=f"declared {declared!r}")
    return mime


def clean_input_image(data: bytes, *, max_bytes: int = MAX_INPUT_BYTES, max_pixels: int = DEFAULT_INPUT_PIXELS,
                      declared: str | None = None, mask: bool = False, label: str = "The picture") -> InputImage:
    """``data`` checked and re-encoded without metadata (blocking: see ``clean_input``).

    ``max_bytes`` bounds the cleaned file, ``max_pixels`` the picture; ``InvalidInputImage`` says what is wrong.
    """
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInputImage(f"{label} is {_megabytes(len(data))} MB; SakaiBot takes pictures up to "
                                f"{_megabytes(MAX_INPUT_BYTES)} MB.")
    mime = sniff_input(data, declared, label=label)
    limit = min(max_pixels, PILImage.MAX_IMAGE_PIXELS or max_pixels)
    try:
        picture, tables = _decoded(data, mime, limit, label)
        encoded, out_mime = _encoded(_plain(picture, mask=mask), tables, mask=mask)
    except InvalidInputImage:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise InvalidInputImage(f"{label} declares more pixels than SakaiBot decodes (at most "
                                f"{_megapixels(limit)} megapixels). Send a smaller one.", detail=str(exc)) from exc
    except Exception as exc:  # Pillow's decoders raise a zoo of types on hostile bytes: all mean "broken"
        raise InvalidInputImage(f"{label} is damaged or incomplete (cut off while uploading?). Send it again.",
                                detail=f"{type(exc).__name__}: {exc}") from exc
    if len(encoded) > max_bytes:
        raise InvalidInputImage(f"{label} is {_megabytes(len(encoded))} MB even without its metadata; this model "
                                f"takes pictures up to {_megabytes(max_bytes)} MB. Send a smaller one.")
    return InputImage(data=encoded, mime_type=out_mime, width=picture.width, height=picture.height)


async def clean_input(data: bytes, **limits: Any) -> InputImage:
    """``clean_input_image`` in a thread: decoding a 20 MB photo must not stall the event loop."""
    return await asyncio.to_thread(clean_input_image, data, **limits)


def _decoded(data: bytes, mime: str, limit: int, label: str) -> tuple[PILImage.Image, dict[str, Any] | None]:
    """The first frame, fully decoded and turned upright, refused from its header if it has too many pixels.

    For a JPEG, also its quantization tables and subsampling: re-encoded with them, a photo keeps its
    quality and its size (quality 95 would make a 3.6 MB photo 5 MB).
    """
    # Past MAX_IMAGE_PIXELS Pillow warns (an exception where warnings are errors), past twice that it raises;
    # either way the caller refuses. Below it, the model's own limit refuses from the header.
    with PILImage.open(io.BytesIO(data), formats=[INPUT_TYPES[mime]]) as opened:
        width, height = opened.size
        if width * height > limit:
            raise InvalidInputImage(f"{label} is {width}x{height} pixels ({_megapixels(width * height)} megapixels); "
                                    f"this model takes at most {_megapixels(limit)} megapixels. Send a smaller one.")
        opened.seek(0)
        opened.load()
        tables = _jpeg_tables(opened) if mime == "image/jpeg" else None
        upright = _upright(opened)
    if mime == "image/png":  # a PNG cut inside its last chunks decodes whole; its CRCs and IEND show the cut
        with PILImage.open(io.BytesIO(data), formats=["PNG"]) as whole:
            whole.verify()
    return upright, tables


def _upright(picture: PILImage.Image) -> PILImage.Image:
    """The picture as its EXIF orientation shows it; as stored if that EXIF cannot be read (the pixels are fine)."""
    try:
        return ImageOps.exif_transpose(picture)
    except Exception:  # a damaged EXIF block raises anything from SyntaxError to struct.error
        return picture.copy()


def _jpeg_tables(picture: PILImage.Image) -> dict[str, Any] | None:
    quantization = getattr(picture, "quantization", None)
    if not quantization or picture.mode not in ("RGB", "L"):
        return None
    return {"qtables": quantization, "subsampling": JpegImagePlugin.get_sampling(picture)}


def _plain(picture: PILImage.Image, *, mask: bool) -> PILImage.Image:
    """Pixels only: RGB (RGBA when transparent) in sRGB, or greyscale for a mask; no ``info`` left to save."""
    transparent = "A" in picture.getbands() or "transparency" in picture.info
    mode = "L" if mask else ("RGBA" if transparent else "RGB")
    icc = picture.info.get("icc_profile")
    plain = picture.convert(mode) if picture.mode != mode else picture.copy()
    if icc and not mask:
        plain = _to_srgb(plain, icc)
    plain.info = {}
    return plain


def _to_srgb(picture: PILImage.Image, icc: bytes) -> PILImage.Image:
    """Colours as the profile meant them, in sRGB (what a model assumes); unchanged if the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(picture, source, ImageCms.createProfile("sRGB"),
                                              outputMode=picture.mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return picture
    return converted if converted is not None else picture


def _encoded(picture: PILImage.Image, tables: dict[str, Any] | None, *, mask: bool) -> tuple[bytes, str]:
    """JPEG again for a JPEG photo (its own tables, else quality 95); PNG for everything else and masks."""
    buffer = io.BytesIO()
    if tables is not None and not mask and picture.mode == "RGB":
        try:
            picture.save(buffer, format="JPEG", **tables)
        except (ValueError, OSError, TypeError):  # tables Pillow read but cannot write: the plain quality
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue(), "image/jpeg"
    picture.save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue(), "image/png"


def _megabytes(size: int) -> str:
    """Rounded up, so a file just over a limit never reads as the limit itself."""
    return f"{math.ceil(size / 100_000) / 10:.1f}"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f}"
