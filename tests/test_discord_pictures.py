"""Pictures in and out on Discord: the image option, "Edit with SakaiBot" and its modal, several images, buttons.

The real discord.Client against the fake Discord on 127.0.0.1 (tests/fakes/discord.py), whose CDN
serves attachments, so ``Attachment.read()`` downloads for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core import Image
from core.chat.commands import image_command
from core.engine import Engine
from core.types import ImageRequest, Requester
from platforms.discord.platform import DiscordPlatform
from platforms.discord.settings import DiscordSettings
from platforms.discord.target import DiscordTarget
from tests.fakes.discord import FakeDiscord, running_fake, snowflake, user_payload
from tests.fakes.picture_model import Admitted, picture_engine, pixels, png

ALICE = user_payload(601, "alice")
INPUT = png(30, (96, 80))
LIMIT = 10 * 1024 * 1024  # the fake's attachment_size_limit, Discord's default


@pytest.fixture
async def fake(monkeypatch) -> AsyncIterator[FakeDiscord]:
    async with running_fake(monkeypatch) as server:
        yield server


@pytest.fixture
def admitted() -> Admitted:
    return Admitted()


@pytest.fixture
async def engine(admitted) -> AsyncIterator[Engine]:
    async with picture_engine(admitted) as started:
        yield started


@pytest.fixture
async def platform(fake, engine) -> AsyncIterator[DiscordPlatform]:
    config = DiscordSettings(enabled=True, token="fake-token", edit_interval=0, api_base=f"{fake.root}/api/v10",
                             gateway=f"{fake.root.replace('http', 'ws')}/gw")
    started = DiscordPlatform(config, guild_ready_timeout=0.05)
    await asyncio.wait_for(started.start(engine), 10)
    yield started
    await started.stop()


async def _until(condition, limit: float = 10.0) -> None:
    """Poll the fake's request log."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _followups(fake: FakeDiscord, token: str) -> list[Any]:
    return [c for c in fake.for_token(token) if c.method == "POST" and c.path.startswith("/webhooks/")]


def _first_answer(fake: FakeDiscord, token: str) -> dict[str, Any]:
    return fake.for_token(token)[0].json


async def test_image_option_and_count_reach_the_request(fake, platform, admitted):
    picture = fake.attachment("photo.png", INPUT)
    token = await fake.slash("image", ALICE, prompt="make it snowy", image=picture, count=2, strength=0.4)
    await _until(lambda: _followups(fake, token))
    assert _first_answer(fake, token)["type"] == 5  # deferred before the picture was read
    request, model = admitted.requests[0]
    assert model == "pic" and request.options.count == 2 and request.options.strength == 0.4
    assert [pixels(image) for image in request.images] == [pixels(INPUT)]
    assert fake.downloads == [picture["id"]]


@pytest.mark.parametrize(("picture", "message"), [
    ({"name": "big.png", "stated_size": LIMIT + 1}, "That picture is 10.0 MB; the limit here is 10 MB."),
    ({"name": "notes.pdf", "content_type": "application/pdf"}, "notes.pdf is not a picture"),
])
async def test_unusable_attachments_are_refused_before_any_download(fake, platform, admitted, picture, message):
    attachment = fake.attachment(picture.pop("name"), INPUT, **picture)
    token = await fake.slash("image", ALICE, prompt="x", image=attachment)
    await _until(lambda: fake.for_token(token))
    answer = _first_answer(fake, token)
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and message in answer["data"]["content"]
    assert not fake.downloads and not admitted.requests


async def test_edit_with_sakaibot_asks_in_a_modal_then_edits_the_picture(fake, platform, admitted):
    posted = fake.user_message(ALICE, "my cat", [fake.attachment("readme.txt", b"hello", content_type="text/plain"),
                                                 fake.attachment("cat.png", INPUT)])
    token = await fake.message_command("Edit with SakaiBot", posted, ALICE)
    await _until(lambda: fake.for_token(token))
    modal = fake.modal_of(token)
    assert modal["title"] == "Edit with SakaiBot" and modal["components"][0]["type"] == 18  # a Label
    assert not fake.downloads  # nothing is read before the instruction is given
    submitted = await fake.submit_modal(token, ALICE, "make it stormy --strength 0.3")
    await _until(lambda: _followups(fake, submitted))
    assert _first_answer(fake, submitted)["type"] == 5
    request, _ = admitted.requests[0]
    assert request.prompt == "make it stormy" and request.options.strength == 0.3
    assert pixels(request.images[0]) == pixels(INPUT)


@pytest.mark.parametrize(("attachments", "message"), [
    ([], "That message has no picture to edit"),
    ([("huge.png", LIMIT * 3)], "That picture is 30.0 MB; the limit here is 10 MB."),
])
async def test_edit_with_sakaibot_refuses_at_once_without_a_usable_picture(fake, platform, attachments, message):
    posted = fake.user_message(ALICE, "words", [fake.attachment(name, INPUT, stated_size=size)
                                                for name, size in attachments])
    token = await fake.message_command("Edit with SakaiBot", posted, ALICE)
    await _until(lambda: fake.for_token(token))
    answer = _first_answer(fake, token)
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and answer["data"]["content"].startswith(message)
    assert not fake.downloads


async def test_upscale_command_uses_the_upscaler(fake, platform, admitted):
    token = await fake.slash("upscale", ALICE, image=fake.attachment("small.png", INPUT))
    await _until(lambda: _followups(fake, token))
    request, model = admitted.requests[0]
    assert (model, request.options.upscale) == ("pic", 2) and pixels(request.images[0]) == pixels(INPUT)
    embed = _followups(fake, token)[0].json["embeds"][0]
    assert {f["name"]: f["value"] for f in embed["fields"]}["Upscaled"] == "2x"


async def test_variation_button_starts_from_the_result_picture(fake, platform, admitted):
    token = await fake.slash("image", ALICE, prompt="a lighthouse", seed=7)
    await _until(lambda: _followups(fake, token))
    result = max(fake.messages)
    custom_ids = [c["custom_id"] for row in fake.messages[result]["components"] for c in row["components"]]
    assert [cid.split(":")[1] for cid in custom_ids] == ["rr", "var", "up"]
    sent = next(iter(_followups(fake, token)[0].files.values()))
    pressed = await fake.click(result, custom_ids[1], ALICE)
    await _until(lambda: _followups(fake, pressed))
    request, _ = admitted.requests[1]
    assert pixels(request.images[0]) == pixels(sent) and request.options.strength == 0.6


async def _four(engine: Engine) -> Any:
    """A finished ``--n 4`` job, its four images as a batch backend returns them."""
    command = image_command("four lighthouses --n 4", "pic")
    request = ImageRequest(prompt=command.prompt, model="pic", options=command.options,
                           requester=Requester(platform="discord", user_id="601", chat_id="5000"))
    handle = await engine.submit(request)
    await handle.wait()
    handle.job.results = [Image(png(40 * n + 10), "image/png", 64, 64, seed=100 + n, model="pic") for n in range(4)]
    return handle.job


async def test_four_images_are_one_message_with_buttons_per_picture(fake, platform, engine, admitted):
    job = await _four(engine)
    interaction = fake._interaction(2, {"id": str(snowflake()), "name": "image", "type": 1}, ALICE)
    target = DiscordTarget(platform.client, interaction_id=int(interaction["id"]), token=interaction["token"],
                           channel_id=5000, user_id=601, private=False)
    await target.deliver(job)
    followup, = _followups(fake, interaction["token"])
    assert list(followup.files) == [f"sakaibot-{job.id}-{n}.png" for n in (1, 2, 3, 4)]
    embed = followup.json["embeds"][0]
    assert {f["name"]: f["value"] for f in embed["fields"]}["Seeds"] == "100, 101, 102, 103"
    assert "image" not in embed  # several pictures: a gallery of attachments, not one embedded image
    rows = [[c["custom_id"] for c in row["components"]] for row in followup.json["components"]]
    assert rows[0] == [f"sakai:rr:{job.id}:601"]
    assert rows[1:] == [[f"sakai:{a}:{job.id}:601:{n}" for n in (1, 2, 3, 4)] for a in ("var", "up")]
    assert all(len(cid) <= 100 for row in rows for cid in row)
    message = max(fake.messages)
    pressed = await fake.click(message, rows[2][2], ALICE)  # Upscale 3
    await _until(lambda: _followups(fake, pressed))
    upscale = next(r for r, _ in admitted.requests if r.options.upscale)
    assert pixels(upscale.images[0]) == pixels(png(90))


async def test_a_picture_deleted_before_it_is_read_is_a_private_message(fake, platform, admitted):
    picture = fake.attachment("gone.png", INPUT)
    del fake.cdn[picture["id"]]  # deleted between the command and the download
    token = await fake.slash("image", ALICE, prompt="x", image=picture)
    await _until(lambda: _followups(fake, token))
    said = _followups(fake, token)[-1].json
    assert said["content"] == "❌ That picture was deleted from Discord; attach it again." and said["flags"] == 64
    assert not admitted.requests


async def test_count_4_from_the_slash_command_comes_back_as_one_message_with_four_attachments(fake, platform, admitted):
    """End to end: the count option, the engine's batch (four seeds), one follow-up with four files."""
    token = await fake.slash("image", ALICE, prompt="four lighthouses", count=4)
    await _until(lambda: any(f.files for f in _followups(fake, token)))
    followup = next(f for f in _followups(fake, token) if f.files)
    assert len(followup.files) == 4 and admitted.requests[0][0].options.count == 4
    seeds = {f["name"]: f["value"] for f in followup.json["embeds"][0]["fields"]}["Seeds"].split(", ")
    assert [int(s) - int(seeds[0]) for s in seeds] == [0, 1, 2, 3]
