"""Workers AI models with input images, against the strict fake Workers AI on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image as PILImage

import plugins.cloudflare
from core import InputSupport, InvalidRequest, QuotaExceeded, Size
from core.engine import Engine
from core.testing import running_engine
from plugins.cloudflare.catalog import CATALOG
from tests.fakes.workers_ai import ACCOUNT, FLUX, FLUX2, IMG2IMG, INPAINT, TOKEN, FakeWorkersAI, Fault
from tests.input_images import Recorded, image_request, input_image, mask_image


@pytest.fixture
async def server() -> AsyncIterator[FakeWorkersAI]:
    fake = await FakeWorkersAI().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def engine(server, monkeypatch) -> AsyncIterator[Engine]:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    models: dict[str, Any] = {name: {"backend": "cloudflare", "model": model_id, "base_url": server.base_url}
                              for name, model_id in (("flux", FLUX), ("img2img", IMG2IMG), ("inpaint", INPAINT),
                                                     ("klein", FLUX2))}
    async with running_engine({"models": models}, [plugins.cloudflare]) as built:
        yield built


def test_capabilities_follow_the_documented_schemas():
    assert CATALOG[IMG2IMG].capabilities.inputs == InputSupport(image_to_image=True, strength=True)
    assert CATALOG[INPAINT].capabilities.inputs == InputSupport(image_to_image=True, masks=True, strength=True)
    for flux2 in ("flux-2-dev", "flux-2-klein-4b", "flux-2-klein-9b"):
        inputs = CATALOG[f"@cf/black-forest-labs/{flux2}"].capabilities.inputs
        assert inputs is not None and inputs.max_images == 4 and not inputs.strength and not inputs.masks
    assert CATALOG[FLUX].capabilities.inputs is None  # text to image only


async def test_img2img_sends_the_picture_as_uint8_array_with_strength(engine, server):
    picture = input_image((96, 64))
    image = await engine.models["img2img"].generate(
        image_request(images=(picture,), strength=0.35, size=Size(512, 512), steps=12), Recorded())
    fields = server.requests[-1]["fields"]
    assert fields["image"] == list(picture.data) and fields["image_size"] == (96, 64)
    assert fields["strength"] == 0.35 and fields["num_steps"] == 12 and "mask" not in fields
    assert (fields["width"], fields["height"]) == (512, 512)
    assert image.mime_type == "image/png" and image.model == "img2img"


async def test_img2img_without_strength_leaves_the_model_default(engine, server):
    await engine.models["img2img"].generate(image_request(images=(input_image(),)), Recorded())
    assert "strength" not in server.requests[-1]["fields"]


async def test_large_inputs_are_scaled_down_before_the_json_array(engine, server):
    await engine.models["img2img"].generate(image_request(images=(input_image((2048, 1536)),)), Recorded())
    width, height = server.requests[-1]["fields"]["image_size"]
    assert width * height <= 1024 * 1024 and abs(width / height - 2048 / 1536) < 0.01


async def test_inpainting_sends_picture_and_mask_at_the_same_size(engine, server):
    picture = input_image((80, 60))
    await engine.models["inpaint"].generate(
        image_request(images=(picture,), mask=mask_image((40, 30)), strength=0.8), Recorded())
    fields = server.requests[-1]["fields"]
    assert fields["image_size"] == fields["mask_size"] == (80, 60) and fields["strength"] == 0.8
    with PILImage.open(io.BytesIO(bytes(fields["mask"]))) as mask:
        assert mask.getpixel((5, 5)) == 255 and mask.getpixel((75, 55)) == 0  # white still means "paint here"


async def test_inpainting_without_a_mask_repaints_everything(engine, server):
    await engine.models["inpaint"].generate(image_request(images=(input_image((32, 32)),)), Recorded())
    with PILImage.open(io.BytesIO(bytes(server.requests[-1]["fields"]["mask"]))) as mask:
        assert mask.getextrema() == (255, 255)


async def test_flux2_sends_references_as_file_parts_scaled_to_512(engine, server):
    pictures = (input_image((1024, 768), "image/jpeg"), input_image((300, 200)))
    image = await engine.models["klein"].generate(image_request(images=pictures, seed=5), Recorded())
    fields = server.requests[-1]["fields"]
    assert server.requests[-1]["content_type"] == "multipart/form-data"
    first, second = fields["input_image_0"], fields["input_image_1"]
    assert first["content_type"] == "image/jpeg" and first["size"][0] * first["size"][1] <= 512 * 512
    assert second == {"size": (300, 200), "content_type": "image/png", "filename": "input_1.png"}
    assert fields["prompt"] == "make it night" and fields["seed"] == "5" and "input_image_2" not in fields
    assert image.mime_type == "image/png"


async def test_flux2_text_only_still_works(engine, server):
    await engine.models["klein"].generate(image_request(), Recorded())
    assert not any(key.startswith("input_image") for key in server.requests[-1]["fields"])


async def test_a_refused_image_maps_to_invalid_request(engine, server):
    server.fail_next(Fault(400, 5004, "Invalid data type for base64 input"))
    with pytest.raises(InvalidRequest, match="did not accept"):
        await engine.models["img2img"].generate(image_request(images=(input_image(),)), Recorded())


async def test_quota_error_on_an_image_request_is_remembered(engine, server):
    server.fail_next(Fault(429, 4006, "you have used up your daily free allocation of 10,000 neurons"))
    model = engine.models["klein"]
    with pytest.raises(QuotaExceeded):
        await model.generate(image_request(images=(input_image(),)), Recorded())
    with pytest.raises(QuotaExceeded):
        await model.generate(image_request(images=(input_image(),)), Recorded())
    assert len(server.requests) == 1


@pytest.mark.parametrize(("model", "body", "code"), [
    (FLUX2, {"files": {"prompt": (None, "x"), "input_image_0": ("a.png", input_image((600, 600)).data, "image/png")}},
     5006),  # above 512x512
    (FLUX2, {"files": {"prompt": (None, "x"), "input_image_0": (None, "not a file")}}, 5006),
    (IMG2IMG, {"json": {"prompt": "x", "image": "aGVsbG8="}}, 5004),  # a string where uint8s are due
    (IMG2IMG, {"json": {"prompt": "x", "image": list(input_image().data), "strength": 2}}, 5006),
    (INPAINT, {"json": {"prompt": "x", "image": list(input_image().data)}}, 5006),  # no mask
])
async def test_the_fake_refuses_what_the_schema_refuses(server, model, body, code):
    import httpx

    url = f"{server.base_url}/accounts/{ACCOUNT}/ai/run/{model}"
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, **body)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == code
