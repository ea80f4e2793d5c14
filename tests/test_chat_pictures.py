"""The chat layer's picture rules, platform-free: what a request carries, Reroll, Variation, Upscale, buttons."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core import Image
from core.chat import ChatService, JobReply, TextReply
from core.chat.commands import ImageCommand, UpscaleCommand, parse_command
from core.chat.conversation import Buttons
from core.chat.inputs import upscaler
from core.chat.messages import caption
from core.engine import Engine
from core.types import Requester
from tests.fakes.picture_model import Admitted, PictureModel, picture_engine, pixels, png

ALICE = Requester(platform="test", user_id="alice", chat_id="c")
PICTURE = png(200)


@pytest.fixture
def admitted() -> Admitted:
    return Admitted()


@pytest.fixture
async def engine(admitted) -> AsyncIterator[Engine]:
    async with picture_engine(admitted) as started:
        yield started


def _same(images: tuple[bytes, ...], expected: tuple[bytes, ...]) -> bool:
    """The same pictures, pixel for pixel: the engine may re-encode them to strip metadata."""
    return [pixels(image) for image in images] == [pixels(image) for image in expected]


class Fetches:
    """A picture fetcher that counts its calls (a download the chat layer asked for)."""

    def __init__(self, data: bytes = PICTURE) -> None:
        self.data, self.calls = data, 0

    async def __call__(self) -> bytes:
        self.calls += 1
        return self.data


async def _done(chat: ChatService, text: str, images: tuple[bytes, ...] = ()) -> str:
    command = parse_command(text)
    assert isinstance(command, ImageCommand | UpscaleCommand)
    reply = await chat.execute(command, ALICE, images=images)
    assert isinstance(reply, JobReply)
    await reply.handle.wait()
    return reply.handle.id


async def test_a_command_carries_its_pictures_and_a_reroll_keeps_them(engine, admitted):
    chat = ChatService(engine)
    job_id = await _done(chat, "/image=pic=make it red --strength 0.3", (PICTURE,))
    assert _same(admitted.requests[0][0].images, (PICTURE,))
    fetch = Fetches()
    reroll = await chat.again(job_id, False, ALICE, image=fetch)
    assert isinstance(reroll, JobReply) and fetch.calls == 0
    again = admitted.requests[1][0]
    assert _same(again.images, (PICTURE,)) and again.options.strength == 0.3 and again.options.seed is None


async def test_variation_starts_from_the_result_only_where_the_model_takes_pictures(engine, admitted):
    chat = ChatService(engine)
    picture_job = await _done(chat, "/image=pic=a lighthouse --n 3")
    text_job = await _done(chat, "/image=words=a lighthouse")
    fetch = Fetches(png(7))
    await chat.again(picture_job, True, ALICE, image=fetch)
    varied = admitted.requests[2][0]
    assert fetch.calls == 1 and _same(varied.images, (png(7),))
    assert varied.options.count == 1 and varied.options.strength == 0.6  # one picture, moved from the result
    await chat.again(text_job, True, ALICE, image=fetch)
    assert fetch.calls == 1 and admitted.requests[3][0].images == ()  # text only: nothing downloaded


async def test_upscale_of_a_result_goes_to_an_upscaler(engine, admitted):
    chat = ChatService(engine)
    job_id = await _done(chat, "/image=words=a fox")
    reply = await chat.upscale(job_id, ALICE, Fetches())
    assert isinstance(reply, JobReply)
    request, model = admitted.requests[1]
    assert (model, request.options.upscale, request.prompt) == ("pic", 2, "a fox")
    assert _same(request.images, (PICTURE,))
    gone = await chat.upscale("0123abcd", ALICE, Fetches())
    assert isinstance(gone, TextReply) and gone.is_error and "no longer kept" in gone.text


async def test_upscale_command_needs_a_picture_and_an_upscaler(engine, admitted):
    chat = ChatService(engine)
    none = await chat.answer(UpscaleCommand(), ALICE)
    assert isinstance(none, TextReply) and "attach it, or reply to it" in none.text
    named = await chat.answer(UpscaleCommand(2, "words"), ALICE, inputs=_pictures)
    assert isinstance(named, TextReply) and named.text == "The words model cannot upscale. Upscalers: pic (2x)."
    factor = await chat.answer(UpscaleCommand(4, "pic"), ALICE, inputs=_pictures)
    assert isinstance(factor, TextReply) and factor.text == "The pic model does not upscale 4x. Upscalers: pic (2x)."
    assert not admitted.requests


async def _pictures() -> tuple[bytes, ...]:
    return (PICTURE,)


def test_the_upscaler_is_the_preferred_model_when_it_can():
    big, small = PictureModel("big"), PictureModel("small")
    big.capabilities = big.capabilities.model_copy(update={"upscale_factors": (2, 4)})
    models = {"small": small, "big": big}
    assert upscaler(models, None, "big") == ("big", 2) and upscaler(models, 4) == ("big", 4)
    assert upscaler(models, None, "nope") == ("big", 2)  # by name when the job's model cannot
    with pytest.raises(Exception, match="No model here can upscale"):
        upscaler({}, None)


async def test_result_buttons_and_captions_for_several_images_and_upscales(engine):
    chat = ChatService(engine)
    job = await engine.past_job(await _done(chat, "/image=pic=four --n 4 --seed 5"))
    job.results = [Image(png(n), "image/png", 64, 64, seed=5 + n) for n in range(4)]
    assert Buttons.of(job, engine.models) == Buttons(job.id, ("reroll", "variation", "upscale"), 4)
    assert caption(job).startswith("🎨 pic · 4 images · seeds 5, 6, 7, 8 · ")
    upscaled = await engine.past_job(await _done(chat, "/upscale", (PICTURE,)))
    assert Buttons.of(upscaled, engine.models).actions == ()  # an upscale is a finished picture
    assert " · upscaled 2x · " in caption(upscaled) and "seed" not in caption(upscaled)
    assert Buttons.of(job, {"words": engine.models["words"]}).actions == ("reroll", "variation")


async def test_models_and_help_say_where_pictures_go(engine):
    from core.chat.messages import help_text, models_text
    listed = models_text(engine)
    assert "• pic (default) - Test model that takes pictures (starts from a picture, upscales 2x)" in listed
    assert "• words - Test model for words only" in listed and "/upscale [2-4]" in help_text(engine)
    assert "--n: how many images at once" in help_text(engine)


async def test_recording_platform_passes_pictures_and_records_each_image(engine, admitted):
    from core.testing import RecordingPlatform
    recorder = RecordingPlatform("alice")
    await recorder.start(engine)
    handle = await recorder.image("make it red", "pic", images=(PICTURE,), strength=0.5)
    await handle.wait()
    await recorder.wait_closed()
    assert _same(admitted.requests[0][0].images, (PICTURE,)) and admitted.requests[0][0].options.strength == 0.5
    photos = recorder.of_kind("photo")
    assert [p.data for p in photos] == [image.data for image in handle.job.results] and len(photos) >= 1
