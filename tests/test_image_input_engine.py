"""Images in, through the engine: capability checks, cleaning before queueing, --n batches, quotas and caps."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

import plugins.preview
from core import (
    Capabilities,
    GenerationRequest,
    Image,
    ImageModel,
    InputImage,
    InputSupport,
    InvalidInputImage,
    InvalidRequest,
    Progress,
    QueueFull,
    QuotaExceeded,
    Size,
)
from core.cli import main
from core.config import EngineSettings, Settings
from core.engine import Engine
from core.engine.redis_codec import dump_job, load_job
from core.hooks.host import create_plugin_host
from core.testing import ConformanceError, check_model_conformance, running_engine
from core.types import MAX_SEED, EventKind
from tests.test_input_images import GPS_IFD, photo_with_gps, png_declaring
from tests.utils import EventRecorder, request

BOUND = 10.0
INPUTS = {"image_to_image": True, "strength": True, "max_images": 2}
MODELS: dict[str, dict[str, Any]] = {
    "text": {"backend": "fake"},
    "img": {"backend": "fake", "inputs": INPUTS},
    "inpaint": {"backend": "fake", "inputs": {**INPUTS, "masks": True}},
    "up": {"backend": "fake", "upscale_factors": (2, 4)},
}


def png(size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_picture_for_a_text_only_model_is_refused_naming_the_models_that_can(engine_factory):
    engine, backend = await engine_factory(MODELS)
    with pytest.raises(InvalidRequest) as refused:
        await engine.submit(request("make it blue", model="text", images=(png(),)))
    assert refused.value.user_message == ("The text model makes images from text only; it cannot use the picture "
                                          "you sent. Models that can: img, inpaint.")
    assert not engine.jobs and not backend.models["text"].calls


@pytest.mark.parametrize(("model", "changes", "message"), [
    ("img", {"images": (png(), png(), png())}, "takes at most 2 pictures; you sent 3"),
    ("img", {"images": (png(),), "mask": png()}, "does not take a mask. Models that can: inpaint."),
    ("text", {"strength": 0.4}, "needs a picture"),
    ("inpaint", {"images": (png((64, 48)),), "mask": png((32, 32))}, "The mask is 32x32 but the picture is 64x48"),
    ("img", {"images": (png(),), "upscale": 2}, "cannot upscale. Models that can: up (2x, 4x)."),
    ("up", {"images": (png(),), "upscale": 3}, "upscales by 2x or 4x, not 3x"),
    ("up", {"upscale": 2}, "exactly one picture"),
    ("up", {"images": (png(),), "upscale": 2, "count": 2}, "leave out --n"),
])
async def test_what_a_model_cannot_do_with_pictures_is_refused(engine_factory, model, changes, message):
    engine, _ = await engine_factory(MODELS)
    images, mask = changes.pop("images", ()), changes.pop("mask", None)
    asked = request("a fox", model=model, **changes).model_copy(update={"images": images, "mask": mask})
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        await engine.submit(asked)
    assert not engine.jobs


async def test_strength_for_a_model_without_it_is_refused(engine_factory):
    engine, _ = await engine_factory({"a": {"backend": "fake", "inputs": {"image_to_image": True}}})
    with pytest.raises(InvalidRequest, match="does not take --strength"):
        await engine.submit(request("x", images=(png(),), strength=0.3))


async def test_broken_and_bomb_pictures_are_refused_before_queueing(engine_factory):
    engine, backend = await engine_factory(MODELS)
    for bad, words in ((png()[:40], "damaged"), (png_declaring(100_000, 100_000), "megapixels"),
                       (b"GIF89a not really", "damaged"), (b"plain text", "not an image")):
        with pytest.raises(InvalidInputImage, match=words):
            await engine.submit(request("x", model="img", images=(bad,)))
    with pytest.raises(InvalidInputImage, match=r"^Picture 2 is"):
        await engine.submit(request("x", model="img", images=(png(), b"junk")))
    assert not engine.jobs and not backend.models["img"].calls


async def test_the_model_and_the_stored_request_get_the_cleaned_picture(engine_factory):
    engine, backend = await engine_factory(MODELS)
    handle = await engine.submit(request("a fox", model="img", images=(photo_with_gps(),), strength=0.25))
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
    call = backend.models["img"].calls[0]
    (picture,) = call.images
    assert isinstance(picture, InputImage) and (picture.width, picture.height) == (20, 40)
    assert handle.job.request.images == (picture.data,) and picture.data is handle.job.request.images[0]
    with PILImage.open(io.BytesIO(picture.data)) as opened:
        assert not opened.getexif().get_ifd(GPS_IFD)
    assert call.strength == 0.25 and call.size.height > call.size.width  # the size follows the picture's shape


async def test_four_images_come_back_together_with_consecutive_seeds(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory(MODELS, plugins=[("recorder", recorder)])
    handle = await engine.submit(request("a fox", model="text", seed=MAX_SEED - 1, count=4))
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
    seeds = [call.seed for call in backend.models["text"].calls]
    assert seeds == [MAX_SEED - 1, MAX_SEED, 0, 1]
    assert [image.seed for image in handle.job.results] == seeds and handle.job.result is handle.job.results[0]
    for number, image in enumerate(handle.job.results, start=1):
        with PILImage.open(io.BytesIO(image.data)) as opened:
            assert opened.text["seed"] == str(seeds[number - 1]) and opened.text["image"] == f"{number} of 4"
    fractions = [e.progress for e in recorder.events if e.job.id == handle.id and e.kind is EventKind.PROGRESS]
    assert fractions == [0.125, 0.375, 0.625, 0.875]  # the fake reports 0.5 of each image: one climbing bar


async def test_the_per_user_cap_counts_every_image(engine_factory):
    engine, backend = await engine_factory(MODELS, max_pending_per_user=4)
    backend.models["text"].gate = asyncio.Event()
    first = await engine.submit(request("a fox", model="text", count=3))
    assert engine.table.pending["test:u1"] == 3
    with pytest.raises(QueueFull, match="ask for at most 1"):
        await engine.submit(request("a fox", model="text", count=2))
    second = await engine.submit(request("a fox", model="text"))
    with pytest.raises(QueueFull):
        await engine.submit(request("a fox", model="text"))
    backend.models["text"].gate.set()
    for handle in (first, second):
        await asyncio.wait_for(handle.wait(), BOUND)
    assert engine.table.pending == {}


async def test_the_daily_quota_counts_every_image(engine_factory, tmp_path):
    engine, _ = await engine_factory(MODELS, daily_quota=5, max_pending_per_user=100,
                                     store={"path": str(tmp_path / "jobs.db")})
    four = await engine.submit(request("a fox", model="text", count=4))
    with pytest.raises(QuotaExceeded, match="1 of your 5 text images left today; ask for fewer"):
        await engine.submit(request("a fox", model="text", count=2))
    one = await engine.submit(request("a fox", model="text"))
    with pytest.raises(QuotaExceeded, match="used your 5 text images"):
        await engine.submit(request("a fox", model="text"))
    for handle in (four, one):
        await asyncio.wait_for(handle.wait(), BOUND)
    assert engine.store is not None and await engine.store.used_today("test", "u1", "text") == 5


async def test_a_queued_job_travels_through_redis_json_with_its_pictures(engine_factory):
    engine, backend = await engine_factory(MODELS)
    backend.models["inpaint"].gate = asyncio.Event()
    mask = png((64, 48), "white")
    handle = await engine.submit(request("x", model="inpaint", images=(png(),), strength=0.5)
                                 .model_copy(update={"mask": mask}))
    again = load_job(dump_job(handle.job))
    assert again.request == handle.job.request and again.generation == handle.job.generation
    assert again.generation.mask is not None and again.generation.mask.data == again.request.mask
    backend.models["inpaint"].gate.set()
    await asyncio.wait_for(handle.wait(), BOUND)


async def test_the_preview_model_blends_the_picture_by_strength_and_upscales(tmp_path):
    settings = Settings(models={"preview": {"backend": "preview"}}, platforms={},
                        engine=EngineSettings(default_model="preview", rate_limit=None))
    engine = Engine(settings, create_plugin_host(load_entry_points=False, extra=[("preview", plugins.preview)]))
    await engine.start()
    try:
        blue = png((512, 512), "blue")
        results = {}
        for strength in (0.0, 1.0):
            handle = await engine.submit(request("a lighthouse", model="preview", seed=7, images=(blue,),
                                                 strength=strength))
            await asyncio.wait_for(handle.wait(), BOUND)
            results[strength] = handle.job.result
        with PILImage.open(io.BytesIO(results[0.0].data)) as kept, \
                PILImage.open(io.BytesIO(results[1.0].data)) as drawn:
            assert kept.convert("RGB").getpixel((10, 10)) == (0, 0, 255)  # strength 0 keeps the picture
            assert drawn.convert("RGB").getpixel((10, 10)) != (0, 0, 255)
        handle = await engine.submit(request("", model="preview", images=(png((100, 60)),), upscale=4))
        await asyncio.wait_for(handle.wait(), BOUND)
        assert (handle.job.result.width, handle.job.result.height) == (400, 240)
        with PILImage.open(io.BytesIO(handle.job.result.data)) as larger:
            assert larger.size == (400, 240)
        handle = await engine.submit(request("", model="preview", images=(png((1500, 1200)),), upscale=4))
        final = await asyncio.wait_for(handle.wait(), BOUND)
        assert final.kind is EventKind.FAILED and "at most 4096x4096" in handle.job.error.user_message
    finally:
        await engine.stop()


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli_folder(tmp_path, monkeypatch):
    """The shipped config (the preview model) in a fresh folder, as the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text((ROOT / "config.toml").read_text())
    monkeypatch.setenv("SAKAIBOT_CONFIG", str(tmp_path / "config.toml"))
    return tmp_path


def test_cli_generate_from_a_picture_writes_every_image(cli_folder, capsys):
    (cli_folder / "blue.png").write_bytes(png((300, 200), "blue"))
    code = main(["generate", "a harbour", "--model", "preview", "--image", "blue.png", "--strength", "0",
                 "--n", "3", "--seed", "9", "--out", "harbour.png"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["harbour-1.png", "harbour-2.png", "harbour-3.png"]
    for number in (1, 2, 3):
        with PILImage.open(cli_folder / f"harbour-{number}.png") as picture:
            assert picture.text["seed"] == str(8 + number) and picture.width > picture.height  # the picture's shape
            assert picture.convert("RGB").getpixel((5, 5)) == (0, 0, 255)  # strength 0 keeps the picture


def test_cli_generate_upscales_with_the_preview(cli_folder, capsys):
    (cli_folder / "small.webp").write_bytes(_encoded_webp())
    assert main(["generate", "", "--model", "preview", "--image", "small.webp", "--upscale", "2",
                 "--out", "big.png"]) == 0, capsys.readouterr().err
    with PILImage.open(cli_folder / "big.png") as picture:
        assert picture.size == (96, 64)


def _encoded_webp() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (48, 32), "green").save(buffer, format="WEBP")
    return buffer.getvalue()


def test_cli_generate_refuses_a_mislabelled_a_missing_and_an_unsupported_picture(cli_folder, capsys):
    (cli_folder / "photo.jpg").write_bytes(png())
    (cli_folder / "notes.png").write_text("not a picture")
    assert main(["generate", "x", "--model", "preview", "--image", "photo.jpg"]) == 1
    assert main(["generate", "x", "--model", "preview", "--image", "missing.png"]) == 1
    assert main(["generate", "x", "--model", "preview", "--image", "notes.png"]) == 1
    err = capsys.readouterr().err
    assert "--image photo.jpg is labelled JPEG but is really a PNG file" in err
    assert "--image missing.png: cannot be read" in err and "--image notes.png is not an image" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["generate", "x", "--n", "5"])
    assert "takes 1, 2, 3 or 4 images" in capsys.readouterr().err


class _IgnoresPictures(ImageModel):
    """Declares image-to-image and an upscaler but answers a picture request at the text size."""

    name = "ignores"
    description = "broken on purpose"
    capabilities = Capabilities(sizes=(Size(64, 64),), max_prompt_length=100, supports_seed=True,
                                inputs=InputSupport(image_to_image=True), upscale_factors=(2,))

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        buffer = io.BytesIO()
        await asyncio.to_thread(PILImage.new("RGB", (64, 64)).save, buffer, format="PNG")
        return Image(buffer.getvalue(), "image/png", 64, 64, seed=request.seed)


async def test_conformance_drives_pictures_and_upscales_through_models_that_declare_them():
    config = {"models": {"p": {"backend": "preview", "area": 128 * 128}}}
    async with running_engine(config, [plugins.preview]) as engine:
        report = await check_model_conformance(engine.models["p"])
    assert report.calls >= 7  # sizes, longest prompt, negative, steps, a picture, 2x and 4x upscales
    with pytest.raises(ConformanceError, match=r"1 input picture\(s\), upscale 2x: asked for 128x96 but got 64x64"):
        await check_model_conformance(_IgnoresPictures())
