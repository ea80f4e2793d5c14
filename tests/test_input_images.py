"""Input images a user sends: the format from the bytes, limits, the bomb guard, metadata stripped."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageCms
from PIL.PngImagePlugin import PngInfo

from core.errors import InvalidInputImage
from core.imaging import (
    MAX_INPUT_BYTES,
    clean_input,
    clean_input_image,
    declared_type,
    sniff_input,
)

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def encoded(picture: PILImage.Image, fmt: str, **params: object) -> bytes:
    """``picture`` saved as ``fmt``."""
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo_with_gps(orientation: int = 6) -> bytes:
    """A 40x20 JPEG with a GPS position, a camera, a rotation and an sRGB ICC profile."""
    picture = PILImage.new("RGB", (40, 20), (10, 120, 200))
    picture.paste((250, 250, 0), (0, 0, 10, 20))  # a yellow band on the left, to see the rotation
    exif = PILImage.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "SpyCam"  # Make
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encoded(picture, "JPEG", exif=exif, icc_profile=icc, quality=95)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_a_jpeg_photo_is_turned_upright_and_loses_gps_camera_and_profile():
    cleaned = clean_input_image(photo_with_gps())
    assert (cleaned.mime_type, cleaned.width, cleaned.height) == ("image/jpeg", 20, 40)  # orientation 6: rotated
    with PILImage.open(io.BytesIO(cleaned.data)) as picture:
        exif = picture.getexif()
        assert not exif and not exif.get_ifd(GPS_IFD)
        assert "icc_profile" not in picture.info and "exif" not in picture.info
        assert picture.size == (20, 40)
        top = picture.convert("RGB").getpixel((10, 2))
        assert top[0] > 200 and top[1] > 200 and top[2] < 80  # the yellow band is now at the top
    assert b"SpyCam" not in cleaned.data and b"Exif" not in cleaned.data


def test_png_text_chunks_and_profile_are_stripped_and_transparency_kept():
    info = PngInfo()
    info.add_text("Comment", "secret location")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(PILImage.new("RGBA", (16, 8), (1, 2, 3, 100)), "PNG", pnginfo=info, icc_profile=icc)
    cleaned = clean_input_image(data)
    assert cleaned.mime_type == "image/png" and (cleaned.width, cleaned.height) == (16, 8)
    assert b"secret" not in cleaned.data and b"iCCP" not in cleaned.data and b"tEXt" not in cleaned.data
    with PILImage.open(io.BytesIO(cleaned.data)) as picture:
        assert picture.mode == "RGBA" and picture.getpixel((0, 0))[3] == 100


def test_webp_and_the_first_frame_of_a_gif_become_png():
    webp = clean_input_image(encoded(PILImage.new("RGB", (12, 10), "red"), "WEBP"))
    frames = [PILImage.new("RGB", (9, 7), color) for color in ("blue", "green")]
    gif = clean_input_image(encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    assert (webp.mime_type, webp.width, webp.height) == ("image/png", 12, 10)
    assert (gif.mime_type, gif.width, gif.height) == ("image/png", 9, 7)
    with PILImage.open(io.BytesIO(gif.data)) as picture:
        assert picture.convert("RGB").getpixel((0, 0))[2] > 200  # blue: the first frame


def test_a_mask_becomes_a_greyscale_png():
    mask = clean_input_image(encoded(PILImage.new("RGB", (8, 8), "white"), "JPEG"), mask=True)
    assert mask.mime_type == "image/png"
    with PILImage.open(io.BytesIO(mask.data)) as picture:
        assert picture.mode == "L"


def test_a_png_declared_or_named_as_jpeg_is_refused():
    png = encoded(PILImage.new("RGB", (8, 8)), "PNG")
    for label in ("image/jpeg", "holiday.JPG", "image/jpg; charset=binary"):
        with pytest.raises(InvalidInputImage, match="labelled JPEG but is really a PNG"):
            clean_input_image(png, declared=label)
    assert clean_input_image(png, declared="application/octet-stream").mime_type == "image/png"
    assert clean_input_image(png, declared="picture.png").mime_type == "image/png"
    assert declared_type("photo.heic") is None and declared_type("image/heic") == "image/heic"
    with pytest.raises(InvalidInputImage, match="labelled HEIC"):
        sniff_input(png, "image/heic")


def test_a_text_file_and_empty_bytes_are_refused():
    with pytest.raises(InvalidInputImage, match="not an image SakaiBot can read") as refused:
        clean_input_image(b"Hello, I am a text file pretending to be a picture.\n", declared="photo.png")
    assert "PNG, JPEG, WebP or GIF" in refused.value.user_message
    with pytest.raises(InvalidInputImage, match="empty"):
        clean_input_image(b"")


def test_a_truncated_upload_is_refused():
    photo = encoded(PILImage.effect_noise((256, 256), 64).convert("RGB"), "PNG")
    for cut in (len(photo) // 2, len(photo) - 20):
        with pytest.raises(InvalidInputImage, match="damaged or incomplete"):
            clean_input_image(photo[:cut])
    jpeg = encoded(PILImage.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(InvalidInputImage, match="damaged or incomplete"):
        clean_input_image(jpeg[: len(jpeg) // 2])


def test_oversized_files_are_refused_before_and_after_cleaning():
    with pytest.raises(InvalidInputImage, match=r"is 20\.1 MB; SakaiBot takes pictures up to 20\.0 MB"):
        clean_input_image(b"\x89PNG\r\n\x1a\n" + bytes(MAX_INPUT_BYTES))
    noisy = encoded(PILImage.effect_noise((128, 128), 90).convert("RGB"), "PNG")
    with pytest.raises(InvalidInputImage, match="even without its metadata"):
        clean_input_image(noisy, max_bytes=10_000)


def test_too_many_pixels_are_refused_from_the_header():
    with pytest.raises(InvalidInputImage, match=r"is 300x300 pixels \(0\.1 megapixels\)"):
        clean_input_image(encoded(PILImage.new("RGB", (300, 300)), "PNG"), max_pixels=10_000)


@pytest.mark.parametrize("side", [5_000, 10_000, 100_000])  # the model's limit, Pillow's warning, Pillow's error
def test_a_decompression_bomb_is_refused_without_decoding(side: int):
    bomb = png_declaring(side, side)
    assert len(bomb) < 200
    with pytest.raises(InvalidInputImage, match="megapixels"):
        clean_input_image(bomb)


async def test_cleaning_runs_in_a_thread_and_keeps_the_limits():
    cleaned = await clean_input(photo_with_gps(orientation=1), max_pixels=1000)
    assert (cleaned.width, cleaned.height) == (40, 20)
    with pytest.raises(InvalidInputImage):
        await clean_input(png_declaring(100, 100), max_pixels=1000)


SIGNATURES = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 "])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=SIGNATURES, body=st.binary(max_size=400), declared=st.one_of(st.none(), st.text(max_size=20)))
def test_random_bytes_only_ever_raise_the_refusal(prefix: bytes, body: bytes, declared: str | None):
    data = prefix + body
    try:
        sniff_input(data, declared)
        cleaned = clean_input_image(data, declared=declared)
    except InvalidInputImage as refused:
        assert refused.user_message and "Traceback" not in refused.user_message
    else:
        assert cleaned.width * cleaned.height > 0 and cleaned.data


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2000), flip=st.integers(min_value=0, max_value=2000))
def test_damaged_real_images_only_ever_raise_the_refusal(cut: int, flip: int):
    for original in (photo_with_gps(), encoded(PILImage.new("RGB", (30, 30), "red"), "PNG")):
        data = bytearray(original[: max(1, len(original) - cut)])
        data[flip % len(data)] ^= 0xFF
        try:
            cleaned = clean_input_image(bytes(data))
        except InvalidInputImage as refused:
            assert refused.user_message.endswith(".")
        else:
            assert cleaned.width * cleaned.height > 0


def test_a_photo_with_an_unreadable_exif_block_is_kept_as_stored_without_it():
    plain = encoded(PILImage.new("RGB", (30, 10), "red"), "JPEG")
    body = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x01" * 40  # an IFD that claims 65535 entries
    broken = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + plain[2:]
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # Pillow warns (not an error outside this test suite)
        cleaned = clean_input_image(broken)
    assert (cleaned.width, cleaned.height) == (30, 10) and b"Exif" not in cleaned.data
