"""litellm image edits (``aimage_edit``) against a strict respx-mocked OpenAI ``/images/edits``."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from PIL import Image as PILImage

import plugins.litellm_images
from core import ContentRejected, InputSupport, InvalidRequest, RateLimited, SakaiError, Size
from core.engine import Engine
from core.testing import running_engine
from tests.fakes.openai_edits import error_response, openai_edits, parts_of
from tests.fakes.workers_ai import picture
from tests.input_images import Recorded, image_request, input_image, mask_image

API = "http://127.0.0.1:9/v1"  # nobody listens here: only respx answers
EDITS = f"{API}/images/edits"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-secret-key")


async def _engine(**keys: Any):
    config = {"backend": "litellm", "model": "openai/gpt-image-1", "api_base": API, "api_key_env": "TEST_OPENAI_KEY",
              "max_attempts": 1, **keys}
    return running_engine({"models": {"gpt": config}}, [plugins.litellm_images])


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with await _engine() as built:
        yield built


def test_gpt_image_declares_edits_with_16_pictures_and_masks():
    from plugins.litellm_images.edits import edit_limits, input_support

    assert input_support(edit_limits("openai/gpt-image-1", None, None)) == InputSupport(
        edit=True, masks=True, max_images=16, max_bytes=25_000_000)
    assert edit_limits("openai/dall-e-3", None, None) is None  # no edits unless configured
    assert input_support(edit_limits("gemini/gemini-2.5-flash-image", 3, None)) == InputSupport(
        edit=True, max_images=3, max_bytes=10_000_000)


async def test_edits_can_be_switched_off():
    async with await _engine(edit_images=0) as engine:
        assert engine.models["gpt"].capabilities.inputs is None


@respx.mock
async def test_one_picture_goes_as_an_image_part_with_the_prompt(engine):
    route = respx.post(EDITS).mock(side_effect=openai_edits)
    source = input_image((64, 48), "image/jpeg")
    image = await engine.models["gpt"].generate(image_request("add a red hat", images=(source,),
                                                              size=Size(1024, 1024)), Recorded())
    parts = parts_of(route.calls.last.request)
    named = {p.get_param("name", header="content-disposition"): p for p in parts}
    assert named["prompt"].get_content() == "add a red hat" and named["model"].get_content() == "gpt-image-1"
    assert named["size"].get_content() == "1024x1024"
    picture_part = named["image[]"]
    assert picture_part.get_content_type() == "image/jpeg" and picture_part.get_payload(decode=True) == source.data
    assert image.mime_type == "image/png" and image.model == "gpt"


@respx.mock
async def test_several_pictures_and_a_mask_become_transparent_where_white(engine):
    route = respx.post(EDITS).mock(side_effect=openai_edits)
    pictures = (input_image((80, 60)), input_image((30, 30), "image/webp"))
    await engine.models["gpt"].generate(image_request(images=pictures, mask=mask_image((40, 30))), Recorded())
    parts = parts_of(route.calls.last.request)
    assert [p.get_content_type() for p in parts if p.get_param("name", header="content-disposition") == "image[]"] \
        == ["image/png", "image/webp"]
    mask_part = next(p for p in parts if p.get_param("name", header="content-disposition") == "mask")
    with PILImage.open(io.BytesIO(mask_part.get_payload(decode=True))) as mask:
        assert mask.size == (80, 60)
        assert mask.getpixel((5, 5))[3] == 0 and mask.getpixel((75, 55))[3] == 255  # transparent: edit here


@respx.mock
async def test_text_only_requests_still_generate(engine):
    generations = respx.post(f"{API}/images/generations").mock(return_value=httpx.Response(200, json={
        "created": 1, "data": [{"b64_json": base64.b64encode(picture("PNG")).decode()}]}))
    await engine.models["gpt"].generate(image_request(size=Size(1024, 1024)), Recorded())
    assert generations.call_count == 1


@pytest.mark.parametrize(("response", "expected"), [
    (error_response(400, "moderation_blocked", "Your request was rejected by the safety system."), ContentRejected),
    (error_response(400, "invalid_image_format", "Invalid image file or mode for image.", "image"), InvalidRequest),
    (error_response(429, "rate_limit_exceeded", "Rate limit reached for images per minute"), SakaiError),
])
@respx.mock
async def test_edit_errors_map_like_generation_errors(engine, response, expected):
    respx.post(EDITS).mock(return_value=response)
    with pytest.raises(expected) as caught:
        await engine.models["gpt"].generate(image_request(images=(input_image(),)), Recorded())
    assert "sk-test-secret-key" not in caught.value.user_message + str(caught.value)
    assert not isinstance(caught.value, RateLimited)
