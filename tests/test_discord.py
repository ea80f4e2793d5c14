"""The Discord adapter end to end: the real discord.Client against a fake Discord on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image as PILImage

from core import Image
from core.chat.inputs import offers_upscale
from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from platforms.discord.files import fit
from platforms.discord.platform import DiscordPlatform
from platforms.discord.settings import DiscordSettings
from tests.fakes.discord import FakeDiscord, running_fake, user_payload

ALICE, BOB = user_payload(601, "alice"), user_payload(602, "bob")


@pytest.fixture
async def fake(monkeypatch) -> AsyncIterator[FakeDiscord]:
    async with running_fake(monkeypatch) as server:
        yield server


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, max_pending_per_user=20),
                        models={"preview": {"backend": "preview", "latency": 0.05, "area": 128 * 128},
                                "slow": {"backend": "preview", "latency": 30, "concurrency": 1,
                                         "description": "A slow one"}}, platforms={})
    built = Engine(settings, create_plugin_host())
    await built.start()
    yield built
    await built.stop(grace=0.5)


async def _platform(fake: FakeDiscord, engine: Engine, **settings: Any) -> DiscordPlatform:
    config = DiscordSettings(enabled=True, token="fake-token", edit_interval=0, api_base=f"{fake.root}/api/v10",
                             gateway=f"{fake.root.replace('http', 'ws')}/gw", **settings)
    platform = DiscordPlatform(config, guild_ready_timeout=0.05)
    STARTED.append(platform)
    await asyncio.wait_for(platform.start(engine), 10)
    return platform


STARTED: list[DiscordPlatform] = []


@pytest.fixture(autouse=True)
async def _close_platforms() -> AsyncIterator[None]:
    yield
    while STARTED:
        await STARTED.pop().stop()


async def _until(condition, limit: float = 10.0) -> None:
    """Poll the fake's request log."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _followups(fake: FakeDiscord, token: str) -> list[Any]:
    return [c for c in fake.for_token(token) if c.method == "POST" and c.path.startswith("/webhooks/")]


async def test_slash_image_defers_edits_and_follows_up_with_png_and_buttons(fake, engine):
    platform = await _platform(fake, engine)
    assert {c["name"] for c in fake.commands} == {"image", "models", "queue", "cancel", "help", "history", "info",
                                                  "settings", "stats", "ban", "unban", "upscale", "Edit with SakaiBot"}
    image_command = next(c for c in fake.commands if c["name"] == "image")
    assert any(o.get("autocomplete") for o in image_command["options"] if o["name"] == "model")
    token = await fake.slash("image", ALICE, prompt="a lighthouse at dusk", seed=42)
    await _until(lambda: _followups(fake, token))
    calls = fake.for_token(token)
    assert calls[0].path.endswith("/callback") and calls[0].json["type"] == 5  # deferred, thinking
    edits = [c.json.get("content") for c in calls if c.method == "PATCH"]
    assert any(text and text.startswith("🎨 Generating with preview") for text in edits)
    followup = _followups(fake, token)[0]
    (name, data), = followup.files.items()
    assert name.endswith(".png") and data.startswith(b"\x89PNG")
    embed = followup.json["embeds"][0]
    assert embed["description"] == "a lighthouse at dusk"
    assert {f["name"]: f["value"] for f in embed["fields"]}["Seed"] == "42"
    custom_ids = [c["custom_id"] for row in followup.json["components"] for c in row["components"]]
    upscale = ["up"] if offers_upscale(engine.models) else []  # where a model upscales
    assert [cid.split(":")[1] for cid in custom_ids] == ["rr", "var", *upscale] and custom_ids[0].endswith(":601")
    await platform.stop()


async def test_autocomplete_lists_models_with_descriptions(fake, engine):
    platform = await _platform(fake, engine)
    token = await fake.autocomplete("image", "model", "slo", ALICE)
    await _until(lambda: fake.for_token(token))
    answer = fake.for_token(token)[0].json
    assert answer["type"] == 8 and answer["data"]["choices"] == [{"name": "slow - A slow one", "value": "slow"}]
    await platform.stop()


async def test_text_commands_answer_privately(fake, engine):
    platform = await _platform(fake, engine)
    token = await fake.slash("models", ALICE)
    await _until(lambda: fake.for_token(token))
    answer = fake.for_token(token)[0].json
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and "preview (default)" in answer["data"]["content"]
    bad = await fake.slash("image", ALICE, prompt="x", model="nope")
    await _until(lambda: fake.for_token(bad))
    refused = fake.for_token(bad)[0].json
    assert refused["type"] == 4 and refused["data"]["flags"] == 64
    assert "Unknown model 'nope'" in refused["data"]["content"]
    await platform.stop()


async def test_reroll_button_makes_a_new_image_others_get_a_private_note(fake, engine):
    platform = await _platform(fake, engine)
    token = await fake.slash("image", ALICE, prompt="a red fox", seed=5)
    await _until(lambda: _followups(fake, token))
    result = max(fake.messages)  # the follow-up message carries the buttons
    reroll = fake.messages[result]["components"][0]["components"][0]["custom_id"]
    stranger = await fake.click(result, reroll, BOB)
    await _until(lambda: fake.for_token(stranger))
    note = fake.for_token(stranger)[0].json
    assert note["type"] == 4 and note["data"]["flags"] == 64 and "Only the person" in note["data"]["content"]
    again = await fake.click(result, reroll, ALICE)
    await _until(lambda: _followups(fake, again))
    embed = _followups(fake, again)[0].json["embeds"][0]
    assert embed["description"] == "a red fox"
    await platform.stop()


async def test_cancel_button_while_queued(fake, engine):
    platform = await _platform(fake, engine)
    await fake.slash("image", BOB, prompt="first", model="slow")
    token = await fake.slash("image", ALICE, prompt="second", model="slow")
    await _until(lambda: any(c.method == "PATCH" and c.json.get("components") for c in fake.for_token(token)))
    original = fake.interactions[token]["original"]
    cancel = fake.messages[original]["components"][0]["components"][0]["custom_id"]
    assert cancel.startswith("sakai:cx:")
    pressed = await fake.click(original, cancel, ALICE)
    await _until(lambda: fake.for_token(pressed))
    assert fake.for_token(pressed)[0].json["data"]["content"].startswith("🚫 Cancelled job")
    await platform.stop()


async def test_a_429_is_retried_by_discord_py(fake, engine):
    platform = await _platform(fake, engine)
    fake.fail_next("/webhooks/", FakeDiscord.rate_limited(0.2))
    token = await fake.slash("image", ALICE, prompt="rate limited")
    await _until(lambda: [c for c in _followups(fake, token) if c.files])
    await platform.stop()


async def test_a_late_acknowledgement_does_not_crash_or_queue(fake, engine):
    platform = await _platform(fake, engine)
    fake.acknowledge_deadline = -1  # every interaction is already too old
    token = await fake.slash("image", ALICE, prompt="too late")
    await _until(lambda: fake.for_token(token))
    await asyncio.sleep(0.1)
    assert engine.jobs == {} and len(fake.for_token(token)) == 1
    fake.acknowledge_deadline = None
    token = await fake.slash("image", ALICE, prompt="in time")
    await _until(lambda: _followups(fake, token))
    await platform.stop()


async def test_after_the_token_expires_the_result_is_posted_in_the_channel(fake, engine, monkeypatch):
    platform = await _platform(fake, engine)
    monkeypatch.setattr("platforms.discord.target.token_usable", lambda expires_at: False)
    await fake.slash("image", ALICE, prompt="a very slow job")
    await _until(lambda: fake.calls_to("/channels/5000/messages", "POST"))
    posted = fake.calls_to("/channels/5000/messages", "POST")[0]
    assert posted.json["content"].startswith("<@601>") and next(iter(posted.files)).endswith(".png")
    await platform.stop()


async def test_access_lists_and_nsfw_only_models(fake, engine):
    platform = await _platform(fake, engine, allowed_guilds=[123])
    token = await fake.slash("image", ALICE, prompt="in a DM")
    await _until(lambda: fake.for_token(token))
    assert fake.for_token(token)[0].json["data"]["content"] == "SakaiBot is not enabled here."
    await platform.stop()
    platform = await _platform(fake, engine, nsfw_models=["slow"])
    token = await fake.slash("image", ALICE, prompt="x", model="slow")
    await _until(lambda: fake.for_token(token))
    assert "age-restricted" in fake.for_token(token)[0].json["data"]["content"]
    await platform.stop()


def test_images_over_the_upload_limit_are_re_encoded_then_downscaled():
    noise = PILImage.effect_noise((512, 512), 80).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    image = Image(buffer.getvalue(), "image/png", 512, 512)
    assert fit(image, len(image.data)) == (image.data, "png")
    data, extension = fit(image, 60_000)
    assert extension == "jpg" and len(data) <= 60_000
    tiny, _ = fit(image, 8_000)
    with PILImage.open(io.BytesIO(tiny)) as picture:
        assert len(tiny) <= 8_000 and picture.width < 512



def _stored_engine(path: str, latency: float) -> Engine:
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None),
                        models={"preview": {"backend": "preview", "latency": latency, "area": 128 * 128}},
                        platforms={}, store={"path": path})
    return Engine(settings, create_plugin_host())


async def test_history_settings_and_info_slash_commands(fake, tmp_path):
    engine = _stored_engine(str(tmp_path / "jobs.db"), 0.01)
    await engine.start()
    platform = await _platform(fake, engine)
    token = await fake.slash("settings", ALICE, key="aspect", value="16:9")
    await _until(lambda: fake.for_token(token))
    assert fake.for_token(token)[0].json["data"]["content"] == "Your aspect: 16:9."
    token = await fake.slash("image", ALICE, prompt="a wide lighthouse")
    await _until(lambda: _followups(fake, token))
    job_id = _followups(fake, token)[0].json["embeds"][0]["footer"]["text"].removeprefix("job ")
    token = await fake.slash("history", ALICE)
    await _until(lambda: fake.for_token(token))
    assert job_id in fake.for_token(token)[0].json["data"]["content"]
    token = await fake.slash("info", ALICE, job=job_id[:6])
    await _until(lambda: fake.for_token(token))
    assert "'aspect_ratio': '16:9'" in fake.for_token(token)[0].json["data"]["content"]
    token = await fake.slash("stats", ALICE)
    await _until(lambda: fake.for_token(token))
    assert fake.for_token(token)[0].json["data"]["content"] == "Only admins can do that."
    await platform.stop()
    await engine.stop()


async def test_a_job_waiting_at_shutdown_is_posted_in_its_channel_after_the_restart(fake, tmp_path):
    path = str(tmp_path / "jobs.db")
    engine = _stored_engine(path, 30)
    await engine.start()
    platform = await _platform(fake, engine)
    token = await fake.slash("image", ALICE, prompt="kept across a restart", seed=8)
    await _until(lambda: [c for c in fake.for_token(token) if c.method == "PATCH"])
    await engine.stop(grace=0.05)
    await platform.stop()
    again = _stored_engine(path, 0.01)
    await again.start()
    restarted = await _platform(fake, again)
    await _until(lambda: _followups(fake, token))  # within 15 minutes: the original interaction is finished
    posted = _followups(fake, token)[0]
    assert posted.json["embeds"][0]["description"] == "kept across a restart" and posted.files
    original = fake.interactions[token]["original"]
    await _until(lambda: fake.messages[original]["content"].startswith("✅ Done"))
    assert not fake.calls_to("/channels/5000/messages", "POST")
    await restarted.stop()
    await again.stop()
    assert again.store is not None


async def test_an_image_over_the_interactions_upload_limit_is_sent_smaller(fake, engine):
    fake.attachment_size_limit = 1500  # bytes; the preview PNG is larger
    platform = await _platform(fake, engine)
    token = await fake.slash("image", ALICE, prompt="a detailed picture", seed=2)
    await _until(lambda: _followups(fake, token))
    (name, data), = _followups(fake, token)[0].files.items()
    assert name.endswith(".jpg") and len(data) <= 1500 and data[:3] == b"\xff\xd8\xff"
    await platform.stop()


async def test_guild_allow_list_and_admin_roles(fake, tmp_path):
    engine = _stored_engine(str(tmp_path / "jobs.db"), 0.01)
    await engine.start()
    platform = await _platform(fake, engine, allowed_guilds=[123], admin_roles=[42])
    member = await fake.slash("stats", ALICE, guild=(123, [7]))
    admin = await fake.slash("stats", BOB, guild=(123, [42]))
    elsewhere = await fake.slash("stats", BOB, guild=(999, [42]))
    await _until(lambda: all(fake.for_token(t) for t in (member, admin, elsewhere)))
    answers = {t: fake.for_token(t)[0].json["data"]["content"] for t in (member, admin, elsewhere)}
    assert answers[member] == "Only admins can do that."
    assert answers[admin].startswith("Last 24 h:")
    assert answers[elsewhere] == "SakaiBot is not enabled here."
    await platform.stop()
    await engine.stop()
