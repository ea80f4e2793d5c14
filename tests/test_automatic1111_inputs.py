"""AUTOMATIC1111 img2img, inpainting, upscaling and native batches, against the fake WebUI on 127.0.0.1."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image as PILImage

import plugins.automatic1111
from core import BackendError, BackendUnavailable, CheckStatus, InputSupport, InvalidRequest, Size
from core.testing import check_model_conformance, running_engine
from tests.fakes.automatic1111 import OOM, FakeAutomatic1111
from tests.input_images import Recorded, image_request, input_image, mask_image


@pytest.fixture
async def server() -> AsyncIterator[FakeAutomatic1111]:
    fake = await FakeAutomatic1111().start()
    yield fake
    await fake.stop()


def _config(server: FakeAutomatic1111, **keys: Any) -> dict[str, Any]:
    return {"models": {"sd": {"backend": "automatic1111", "url": server.url, "poll_interval": 0.02,
                              "max_attempts": 1, "upscaler": "R-ESRGAN 4x+", **keys}}}


async def test_capabilities_declare_img2img_masks_strength_upscale_and_batches(server):
    async with running_engine(_config(server, max_batch=3), [plugins.automatic1111]) as engine:
        caps = engine.models["sd"].capabilities
    assert caps.inputs == InputSupport(image_to_image=True, masks=True, strength=True)
    assert caps.upscale_factors == (2, 4) and caps.max_batch == 3


async def test_no_upscaler_configured_offers_no_upscale(server):
    async with running_engine(_config(server, upscaler=None), [plugins.automatic1111]) as engine:
        assert engine.models["sd"].capabilities.upscale_factors == ()


async def test_img2img_sends_init_image_and_strength(server):
    picture = input_image((96, 64))
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        images = await engine.models["sd"].generate_batch(
            image_request(images=(picture,), strength=0.4, size=Size(512, 384), steps=6), 1, Recorded())
    sent = server.requests[-1]
    assert sent["route"] == "img2img" and sent["init_images"] == [base64.b64encode(picture.data).decode()]
    assert sent["denoising_strength"] == 0.4 and sent["steps"] == 6 and "mask" not in sent
    assert server.init_sizes == [(96, 64)] and (images[0].width, images[0].height) == (512, 384)


async def test_img2img_without_strength_uses_the_configured_default(server):
    async with running_engine(_config(server, denoising_strength=0.55), [plugins.automatic1111]) as engine:
        await engine.models["sd"].generate(image_request(images=(input_image(),)), Recorded())
    assert server.requests[-1]["denoising_strength"] == 0.55


async def test_inpainting_sends_the_mask_at_the_picture_size(server):
    async with running_engine(_config(server, inpainting_fill=2), [plugins.automatic1111]) as engine:
        await engine.models["sd"].generate(
            image_request(images=(input_image((80, 60)),), mask=mask_image((40, 30)), strength=0.9), Recorded())
    sent = server.requests[-1]
    assert server.mask_size == (80, 60) and sent["inpainting_fill"] == 2 and sent["inpainting_mask_invert"] == 0
    with PILImage.open(io.BytesIO(base64.b64decode(sent["mask"]))) as mask:
        assert mask.getpixel((5, 5)) == 255 and mask.getpixel((75, 55)) == 0  # white: repaint


async def test_text_only_still_goes_to_txt2img(server):
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        await engine.models["sd"].generate(image_request(), Recorded())
    assert "route" not in server.requests[-1] and "init_images" not in server.requests[-1]


async def test_a_batch_is_one_call_with_batch_size_and_consecutive_seeds(server):
    async with running_engine(_config(server, max_batch=4), [plugins.automatic1111]) as engine:
        images = await engine.models["sd"].generate_batch(image_request(seed=100, size=Size(256, 256)), 4, Recorded())
    assert len(server.requests) == 1 and server.requests[0]["batch_size"] == 4
    assert [image.seed for image in images] == [100, 101, 102, 103]


async def test_a_batch_larger_than_max_batch_is_split_keeping_the_seeds(server):
    async with running_engine(_config(server, max_batch=2), [plugins.automatic1111]) as engine:
        images = await engine.models["sd"].generate_batch(
            image_request(images=(input_image(),), seed=10, size=Size(256, 256)), 3, Recorded())
    assert [r["batch_size"] for r in server.requests] == [2, 1] and [r["seed"] for r in server.requests] == [10, 12]
    assert [image.seed for image in images] == [10, 11, 12]


async def test_upscale_goes_to_extras_with_the_factor_and_upscaler(server):
    picture = input_image((60, 40))
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        image = await engine.models["sd"].generate(image_request(images=(picture,), upscale=4), Recorded())
    sent = server.requests[-1]
    assert sent["route"] == "extras" and sent["upscaling_resize"] == 4 and sent["upscaler_1"] == "R-ESRGAN 4x+"
    assert sent["resize_mode"] == 0 and sent["image"] == base64.b64encode(picture.data).decode()
    assert (image.width, image.height) == (240, 160)


async def test_an_unknown_upscaler_tells_the_admin_and_is_not_retried(server):
    async with running_engine(_config(server, upscaler="4x-Nonexistent"), [plugins.automatic1111]) as engine:
        with pytest.raises(BackendError, match="upscaler") as caught:
            await engine.models["sd"].generate(image_request(images=(input_image(),), upscale=2), Recorded())
    assert not caught.value.retryable


async def test_a_picture_the_server_cannot_decode_is_an_invalid_request(server):
    broken = input_image()
    broken = type(broken)(b"not an image at all", "image/png", 8, 8)
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        with pytest.raises(InvalidRequest, match="picture"):
            await engine.models["sd"].generate(image_request(images=(broken,)), Recorded())


async def test_out_of_memory_in_img2img_is_not_retried(server):
    server.fail_next.append(OOM)
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        with pytest.raises(BackendUnavailable, match="GPU memory") as caught:
            await engine.models["sd"].generate(image_request(images=(input_image(),)), Recorded())
    assert not caught.value.retryable


async def test_conforms_with_inputs_declared(server):
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        await check_model_conformance(engine.models["sd"])


async def test_check_names_an_upscaler_the_server_lacks(server):
    async with running_engine(_config(server, upscaler="4x-Nonexistent"), [plugins.automatic1111]) as engine:
        result = await engine.models["sd"].check()
    assert result.status is CheckStatus.MISCONFIGURED and "4x-Nonexistent" in result.detail
    async with running_engine(_config(server), [plugins.automatic1111]) as engine:
        assert (await engine.models["sd"].check()).status is CheckStatus.OK
