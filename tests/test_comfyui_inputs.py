"""ComfyUI with input pictures: uploads with /upload/image, {{image}}/{{mask}}/{{denoise}} placeholders."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

import plugins.comfyui
from core import InputSupport, InvalidRequest
from core.testing import running_engine
from plugins.comfyui.default_workflow import IMG2IMG_WORKFLOW
from plugins.comfyui.workflow import Workflow
from tests.fakes.comfyui import FakeComfyUI
from tests.input_images import Recorded, image_request, input_image, mask_image

CKPT = "sd_xl_base_1.0.safetensors"
INPAINT = json.loads(IMG2IMG_WORKFLOW) | {
    "12": {"class_type": "LoadImageMask", "inputs": {"image": "{{mask}}", "channel": "red"}},
    "13": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["12", 0]}},
}
INPAINT["3"]["inputs"]["latent_image"] = ["13", 0]


@pytest.fixture
async def server() -> AsyncIterator[FakeComfyUI]:
    fake = await FakeComfyUI().start()
    yield fake
    await fake.stop()


def _config(server: FakeComfyUI, **keys: Any) -> dict[str, Any]:
    return {"models": {"comfy": {"backend": "comfyui", "url": server.url, "checkpoint": CKPT, "max_attempts": 1,
                                 "workflow": "builtin:img2img", **keys}}}


def _graph(server: FakeComfyUI) -> dict[str, Any]:
    return server.prompts[-1]["prompt"]


async def test_img2img_uploads_the_picture_and_names_it_in_load_image(server):
    picture = input_image((96, 64), "image/jpeg")
    async with running_engine(_config(server), [plugins.comfyui]) as engine:
        model = engine.models["comfy"]
        assert model.capabilities.inputs == InputSupport(image_to_image=True, strength=True)
        image = await model.generate(image_request(images=(picture,), strength=0.3, seed=11), Recorded())
    upload = server.uploads[-1]
    assert upload["data"] == picture.data and upload["content_type"] == "image/jpeg" and upload["type"] == "input"
    graph = _graph(server)
    assert graph["10"]["inputs"]["image"] == upload["name"] and upload["name"].endswith(".jpg")
    assert graph["3"]["inputs"]["denoise"] == 0.3 and graph["3"]["inputs"]["seed"] == 11
    assert (image.width, image.height) == (96, 64)


async def test_without_strength_the_configured_denoise_is_used(server):
    async with running_engine(_config(server, denoise=0.6), [plugins.comfyui]) as engine:
        await engine.models["comfy"].generate(image_request(images=(input_image(),)), Recorded())
    assert _graph(server)["3"]["inputs"]["denoise"] == 0.6


async def test_a_renamed_upload_is_used_under_the_servers_name(server, monkeypatch):
    monkeypatch.setattr("plugins.comfyui.uploads.uuid.uuid4", lambda: type("U", (), {"hex": "same"})())
    server.files["input//sakaibot-same.png"] = b"someone else's file"
    async with running_engine(_config(server), [plugins.comfyui]) as engine:
        await engine.models["comfy"].generate(image_request(images=(input_image(),)), Recorded())
    assert _graph(server)["10"]["inputs"]["image"] == "sakaibot-same (1).png"


async def test_inpainting_uploads_a_mask_at_the_picture_size(server, tmp_path: Path):
    path = tmp_path / "inpaint_api.json"
    path.write_text(json.dumps(INPAINT))
    async with running_engine(_config(server, workflow=str(path), edit=True), [plugins.comfyui]) as engine:
        model = engine.models["comfy"]
        assert model.capabilities.inputs == InputSupport(image_to_image=True, edit=True, masks=True, strength=True)
        await model.generate(image_request(images=(input_image((80, 60)),), mask=mask_image((40, 30))), Recorded())
    mask_upload = server.uploads[-1]
    assert _graph(server)["12"]["inputs"]["image"] == mask_upload["name"] and len(server.uploads) == 2
    with PILImage.open(io.BytesIO(mask_upload["data"])) as mask:
        assert mask.size == (80, 60) and mask.getpixel((5, 5)) == 255 and mask.getpixel((75, 55)) == 0


async def test_a_picture_workflow_without_a_picture_says_so(server):
    async with running_engine(_config(server), [plugins.comfyui]) as engine:
        with pytest.raises(InvalidRequest, match="works from a picture"):
            await engine.models["comfy"].generate(image_request(), Recorded())
    assert server.prompts == [] and server.uploads == []


async def test_the_text_workflow_takes_no_pictures(server):
    async with running_engine(_config(server, workflow=None), [plugins.comfyui]) as engine:
        assert engine.models["comfy"].capabilities.inputs is None


async def test_a_load_image_naming_a_missing_file_is_refused_like_comfyui(server):
    graph = Workflow.parse(IMG2IMG_WORKFLOW, "t").fill({
        "prompt": "x", "negative_prompt": "", "seed": 1, "steps": 2, "cfg": 7.0, "sampler": "euler",
        "scheduler": "normal", "checkpoint": CKPT, "image": "nothing.png", "denoise": 0.5})
    from tests.fakes.comfyui import validate

    refused = validate(graph, server.input_files())
    assert refused is not None and "Invalid image file" in json.dumps(refused)


@pytest.mark.parametrize(("text", "message"), [
    (json.dumps({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "mask": "{{mask}}"}}}),
     "a mask needs the picture"),
    (json.dumps({"1": {"class_type": "KSampler", "inputs": {"text": "{{prompt}}", "denoise": "x {{denoise}}"}}}),
     "must be the whole value"),
])
def test_bad_input_placeholders_are_refused_at_load(text, message):
    with pytest.raises(ValueError, match=message):
        Workflow.parse(text, "w")


def test_an_unknown_builtin_is_refused():
    with pytest.raises(ValueError, match="built in: img2img, txt2img"):
        Workflow.load("builtin:nope")

