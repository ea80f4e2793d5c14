"""Pictures in and out on Telegram: photos and image files as input, replies, albums, Variation and Upscale.

A real Telethon client driven offline (tests/fakes/telegram.py): uploads become stored photos and
documents, downloads go through Telethon's ``upload.getFile`` loop, albums through ``sendMultiMedia``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telethon import errors, types
from telethon.tl import functions

from core import Image
from core.chat.pacing import RetryAfter
from core.engine import Engine
from platforms.telegram.buttons import DATA_LIMIT, decode
from platforms.telegram.platform import TelegramPlatform
from platforms.telegram.settings import TelegramSettings
from platforms.telegram.target import ALBUM_BUTTONS, TelegramTarget
from tests.fakes.picture_model import Admitted, picture_engine, pixels, png
from tests.fakes.telegram import OfflineTelegram, user

ALICE = user(501, "Alice")
SendMessage, SendMedia = functions.messages.SendMessageRequest, functions.messages.SendMediaRequest
SendAlbum, GetFile = functions.messages.SendMultiMediaRequest, functions.upload.GetFileRequest
Delete = functions.messages.DeleteMessagesRequest
Edit = functions.messages.EditMessageRequest
INPUT = png(30, (96, 80))


@pytest.fixture
async def admitted() -> Admitted:
    return Admitted()


@pytest.fixture
async def engine(admitted) -> AsyncIterator[Engine]:
    async with picture_engine(admitted) as started:
        yield started


async def _platform(engine: Engine, *, bot: bool = True) -> tuple[TelegramPlatform, OfflineTelegram]:
    tg = OfflineTelegram(bot=bot)
    settings = TelegramSettings(enabled=False, edit_interval=0, mode="bot" if bot else "userbot")
    platform = TelegramPlatform(settings, client=tg.client)
    await platform.start(engine)
    tg.sender.requests.clear()
    return platform, tg


async def _until(condition, limit: float = 5.0) -> None:
    """Poll the recorded requests: the fake sender has no events to wait on."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _data(markup: Any) -> list[bytes]:
    return [button.type.data for row in markup.rows for button in row.buttons]


async def test_a_photo_with_the_command_as_caption_is_the_input(engine, admitted):
    platform, tg = await _platform(engine)
    await tg.message("/image=pic=make it snowy --strength 0.4", sender=ALICE, media=tg.photo(INPUT))
    await _until(lambda: tg.sender.of(SendMedia) and tg.sender.of(Delete))
    request, model = admitted.requests[0]
    assert model == "pic" and request.options.strength == 0.4
    assert [pixels(image) for image in request.images] == [pixels(INPUT)]
    assert tg.sender.of(GetFile)  # downloaded through Telethon, into memory
    await platform.stop()


async def test_an_image_sent_as_a_file_is_the_input_and_other_files_are_refused(engine, admitted):
    platform, tg = await _platform(engine)
    await tg.message("/image=pic=as a file", sender=ALICE, media=tg.file(INPUT, "image/png", "in.png"))
    await _until(lambda: tg.sender.of(SendMedia))
    assert pixels(admitted.requests[0][0].images[0]) == pixels(INPUT)
    await tg.message("/image=pic=a pdf", sender=ALICE, media=tg.file(b"%PDF-1.4", "application/pdf", "a.pdf"))
    assert tg.sender.of(SendMessage)[-1].message == "That file is not a picture; send a photo or an image file."
    assert len(admitted.requests) == 1
    await platform.stop()


async def test_a_command_replying_to_a_photo_uses_that_photo(engine, admitted):
    platform, tg = await _platform(engine)
    photo_id = await tg.message("look at this", sender=ALICE, media=tg.photo(INPUT))
    command_id = await tg.message("/image=pic=the same, at night", sender=ALICE, reply_to=photo_id)
    await _until(lambda: tg.sender.of(SendMedia))
    assert pixels(admitted.requests[0][0].images[0]) == pixels(INPUT)
    assert tg.sender.of(SendMedia)[0].reply_to.reply_to_msg_id == command_id
    await tg.message("/image=pic=no picture here", sender=ALICE)  # text to image as before
    await _until(lambda: len(admitted.requests) == 2)
    assert admitted.requests[1][0].images == ()
    await platform.stop()


async def test_a_picture_over_20_mb_is_refused_before_any_download(engine, admitted):
    platform, tg = await _platform(engine)
    await tg.message("/image=pic=huge", sender=ALICE, media=tg.photo(INPUT, stated_size=25 * 1024 * 1024))
    huge = await tg.message("a big file", sender=ALICE,
                            media=tg.file(INPUT, "image/png", "big.png", stated_size=21 * 1024 * 1024))
    await tg.message("/upscale", sender=ALICE, reply_to=huge)
    refusals = [r.message for r in tg.sender.of(SendMessage)]
    assert refusals == ["That picture is 25.0 MB; bots can download at most 20 MB. Send a smaller one.",
                        "That picture is 21.0 MB; bots can download at most 20 MB. Send a smaller one."]
    assert not tg.sender.of(GetFile) and not admitted.requests
    await platform.stop()


async def test_upscale_command_on_a_replied_photo_goes_to_the_upscaler(engine, admitted):
    platform, tg = await _platform(engine)
    photo_id = await tg.message("", sender=ALICE, media=tg.photo(INPUT))
    await tg.message("/upscale", sender=ALICE, reply_to=photo_id)
    await _until(lambda: tg.sender.of(SendMedia))
    request, model = admitted.requests[0]
    assert (model, request.options.upscale, request.prompt) == ("pic", 2, "upscale 2x")
    assert pixels(request.images[0]) == pixels(INPUT)
    assert "upscaled 2x" in tg.sender.of(SendMedia)[0].message
    await tg.message("/upscale 4", sender=ALICE, reply_to=photo_id)
    assert tg.sender.of(Edit)[-1].message == "❌ No model here upscales 4x. Upscalers: pic (2x)."
    await tg.message("/upscale", sender=ALICE)
    assert "reply to it" in tg.sender.of(Edit)[-1].message
    await platform.stop()


async def test_variation_button_starts_from_the_result_photo(engine, admitted):
    platform, tg = await _platform(engine)
    await tg.message("/image=pic=a lighthouse --seed 7", sender=ALICE)
    await _until(lambda: tg.sender.of(SendMedia) and tg.sender.of(Delete))
    result = tg.sender.of(SendMedia)[0]
    actions = {decode(d).action: d for d in _data(result.reply_markup)}
    assert list(actions) == ["reroll", "variation", "upscale"]
    result_id = max(i for i, m in tg.sender.messages.items() if m.media is not None)
    sent_photo = tg.sender.files[tg.sender.messages[result_id].media.photo.id]
    await tg.press(actions["variation"], sender=ALICE, message_id=result_id)
    await _until(lambda: len(tg.sender.of(SendMedia)) == 2)
    request, _ = admitted.requests[1]
    assert pixels(request.images[0]) == pixels(sent_photo)
    assert request.options.strength == 0.6 and request.options.seed is None and request.prompt == "a lighthouse"
    await tg.press(actions["upscale"], sender=ALICE, message_id=result_id)
    await _until(lambda: len(tg.sender.of(SendMedia)) == 3)
    upscale, model = admitted.requests[2]
    assert (model, upscale.options.upscale) == ("pic", 2) and pixels(upscale.images[0]) == pixels(sent_photo)
    assert tg.sender.of(SendMedia)[2].reply_markup is None  # an upscale is a finished picture: no buttons
    await platform.stop()


async def test_variation_of_a_text_only_model_downloads_nothing(engine, admitted):
    platform, tg = await _platform(engine)
    await tg.message("/image=words=a fox --seed 3", sender=ALICE)
    await _until(lambda: tg.sender.of(SendMedia) and tg.sender.of(Delete))
    variation = next(d for d in _data(tg.sender.of(SendMedia)[0].reply_markup) if decode(d).action == "variation")
    result_id = max(i for i, m in tg.sender.messages.items() if m.media is not None)
    await tg.press(variation, sender=ALICE, message_id=result_id)
    await _until(lambda: len(tg.sender.of(SendMedia)) == 2)
    assert admitted.requests[1][0].images == () and not tg.sender.of(GetFile)
    await platform.stop()


async def _four(engine: Engine) -> Any:
    """A finished job of ``--n 4``, its four images as a batch backend returns them."""
    handle = await engine.submit(_request(engine, "four lighthouses --n 4"))
    await handle.wait()
    handle.job.results = [Image(png(40 * n + 10), "image/png", 64, 64, seed=100 + n, model="pic") for n in range(4)]
    return handle.job


def _request(engine: Engine, text: str) -> Any:
    from core.chat.commands import image_command
    from core.types import ImageRequest, Requester
    command = image_command(text, "pic")
    return ImageRequest(prompt=command.prompt, model="pic", options=command.options,
                        requester=Requester(platform="telegram", user_id=str(ALICE.id), chat_id=str(ALICE.id)))


async def test_four_images_go_as_one_album_with_buttons_on_a_follow_up(engine, admitted):
    platform, tg = await _platform(engine)
    job = await _four(engine)
    command_id = await tg.message("four lighthouses, please", sender=ALICE)
    target = TelegramTarget(platform.outbox, ALICE.id, command_id, ALICE.id)
    tg.sender.fail(SendMessage, errors.FloodWaitError(request=None, capture=1))
    with pytest.raises(RetryAfter):
        await target.deliver(job)
    await target.deliver(job)  # after the wait: the buttons, and the album not a second time
    album, = tg.sender.of(SendAlbum)
    assert len(album.multi_media) == 4 and album.reply_to.reply_to_msg_id == command_id
    assert album.multi_media[0].message.startswith("🎨 pic · 4 images · seeds 100, 101, 102, 103")
    assert [single.message for single in album.multi_media[1:]] == ["", "", ""]
    follow_up = tg.sender.of(SendMessage)[-1]
    photos = sorted(i for i, m in tg.sender.messages.items() if m.grouped_id)
    assert follow_up.message == ALBUM_BUTTONS and follow_up.reply_to.reply_to_msg_id == photos[0]
    presses = [decode(d) for d in _data(follow_up.reply_markup)]
    assert [p.action for p in presses] == ["reroll"] + ["variation"] * 4 + ["upscale"] * 4
    assert [p.photo for p in presses[5:]] == photos
    assert all(len(d) <= DATA_LIMIT for d in _data(follow_up.reply_markup))
    third = _data(follow_up.reply_markup)[7]  # Upscale of the third picture
    await tg.press(third, sender=ALICE, message_id=max(tg.sender.messages))
    await _until(lambda: any(r[0].options.upscale for r in admitted.requests))
    upscale = next(r for r, _ in admitted.requests if r.options.upscale)
    assert pixels(upscale.images[0]) == pixels(png(90))
    await platform.stop()


async def test_a_userbot_album_has_no_buttons_message(engine):
    platform, tg = await _platform(engine, bot=False)
    job = await _four(engine)
    await TelegramTarget(platform.outbox, ALICE.id, None, ALICE.id).deliver(job)
    assert len(tg.sender.of(SendAlbum)) == 1 and not tg.sender.of(SendMessage)
    await platform.stop()


async def test_four_images_as_files_go_as_a_document_album(engine):
    platform, tg = await _platform(engine)
    job = await _four(engine)
    job.request = job.request.model_copy(update={"options": job.request.options.model_copy(update={"as_file": True})})
    await TelegramTarget(platform.outbox, ALICE.id, None, ALICE.id).deliver(job)
    album, = tg.sender.of(SendAlbum)
    assert all(isinstance(single.media, types.InputMediaDocument) for single in album.multi_media)
    await platform.stop()


async def test_a_failed_download_is_a_message_in_the_status(engine, admitted):
    platform, tg = await _platform(engine)
    tg.sender.fail(GetFile, errors.LocationInvalidError(request=None))
    await tg.message("/image=pic=broken", sender=ALICE, media=tg.photo(INPUT))
    await _until(lambda: tg.sender.of(Edit))
    assert tg.sender.of(Edit)[-1].message == "❌ Telegram did not let me download that picture; send it again."
    assert not admitted.requests
    await platform.stop()


async def test_n_4_from_a_chat_message_comes_back_as_one_album_of_four(engine, admitted):
    """End to end: the command, the engine's batch (four seeds), the album and its buttons message."""
    platform, tg = await _platform(engine)
    await tg.message("/image=pic=four lighthouses --n 4 --seed 7", sender=ALICE)
    await _until(lambda: tg.sender.of(SendAlbum) and tg.sender.of(SendMessage)
                 and tg.sender.of(SendMessage)[-1].message == ALBUM_BUTTONS)
    album, = tg.sender.of(SendAlbum)
    assert len(album.multi_media) == 4
    assert album.multi_media[0].message.startswith("🎨 pic · 4 images · seeds 7, 8, 9, 10")
    assert admitted.requests[0][0].options.count == 4
    await platform.stop()
