"""Discord as its users expect (issue 11): flags, privacy, private errors, nothing unanswered, restarts.

The real discord.Client against the fake Discord (tests/fakes/discord.py), which answers as Discord
does: 3 seconds to acknowledge, 15 minutes per interaction token, ephemeral flags, and channel
messages deduplicated by ``nonce`` with ``enforce_nonce``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from platforms.discord.platform import TRY_AGAIN, DiscordPlatform
from platforms.discord.settings import DiscordSettings
from platforms.discord.target import MOVED
from tests.fakes.discord import FakeDiscord, running_fake, user_payload

ALICE, BOB = user_payload(601, "alice"), user_payload(602, "bob")
EPHEMERAL = 64


@pytest.fixture
async def fake(monkeypatch) -> AsyncIterator[FakeDiscord]:
    async with running_fake(monkeypatch) as server:
        yield server


def _engine(tmp_path: Any, latency: float = 0.05, **engine: Any) -> Engine:
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, **engine),
                        models={"preview": {"backend": "preview", "latency": latency, "area": 128 * 128}},
                        platforms={}, store={"path": str(tmp_path / "jobs.db")})
    return Engine(settings, create_plugin_host())


@pytest.fixture
async def engine(tmp_path) -> AsyncIterator[Engine]:
    built = _engine(tmp_path)
    await built.start()
    yield built
    await built.stop(grace=0.5)


STARTED: list[DiscordPlatform] = []


@pytest.fixture(autouse=True)
async def _close_platforms() -> AsyncIterator[None]:
    yield
    while STARTED:
        await STARTED.pop().stop()


async def _platform(fake: FakeDiscord, engine: Engine, **settings: Any) -> DiscordPlatform:
    config = DiscordSettings(enabled=True, token="fake-token", edit_interval=0, api_base=f"{fake.root}/api/v10",
                             gateway=f"{fake.root.replace('http', 'ws')}/gw", **settings)
    platform = DiscordPlatform(config, guild_ready_timeout=0.05)
    STARTED.append(platform)
    await asyncio.wait_for(platform.start(engine), 10)
    return platform


async def _until(condition, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the fake only records
            await asyncio.sleep(0.01)


def _followups(fake: FakeDiscord, token: str) -> list[Any]:
    return [c for c in fake.for_token(token) if c.method == "POST" and c.path.startswith("/webhooks/")]


def _images(fake: FakeDiscord, token: str) -> list[Any]:
    return [c for c in _followups(fake, token) if c.files]


def _button(fake: FakeDiscord, message_id: int, action: str) -> str:
    ids = [c["custom_id"] for row in fake.messages[message_id]["components"] for c in row["components"]]
    return next(i for i in ids if i.split(":")[1] == action)


def _result_message(fake: FakeDiscord) -> int:
    return max(i for i, m in fake.messages.items() if m["embeds"])


async def _job(engine: Engine, call: Any) -> Any:
    return await engine.past_job(call.json["embeds"][0]["footer"]["text"].removeprefix("job "))


async def test_flags_typed_in_the_prompt_field_are_parsed_and_slash_options_win(fake, engine):
    await _platform(fake, engine)
    token = await fake.slash("image", ALICE, prompt="a cat in the rain --ar 16:9 --seed 9 --no dogs", seed=3)
    await _until(lambda: _images(fake, token))
    job = await _job(engine, _images(fake, token)[0])
    options = job.request.options
    assert job.request.prompt == "a cat in the rain"
    assert (options.aspect_ratio, options.seed, options.negative_prompt) == ("16:9", 3, "dogs")


async def test_a_private_images_reroll_and_variation_stay_private_and_keep_the_request(fake, engine):
    await _platform(fake, engine)
    token = await fake.slash("image", ALICE, prompt="a secret garden --ar 9:16 --no people", private=True)
    await _until(lambda: _images(fake, token))
    assert fake.for_token(token)[0].json["data"]["flags"] == EPHEMERAL  # deferred privately
    assert _images(fake, token)[0].json["flags"] == EPHEMERAL
    result = _result_message(fake)
    for action in ("rr", "var"):
        pressed = await fake.click(result, _button(fake, result, action), ALICE)
        await _until(lambda: _images(fake, pressed))  # noqa: B023 - awaited at once
        assert fake.for_token(pressed)[0].json == {"type": 5, "data": {"flags": EPHEMERAL}}
        assert _images(fake, pressed)[0].json["flags"] == EPHEMERAL
        job = await _job(engine, _images(fake, pressed)[0])
        assert (job.request.options.aspect_ratio, job.request.options.negative_prompt) == ("9:16", "people")
    assert not fake.calls_to("/channels/", "POST")


async def test_rerolls_read_the_whole_request_from_the_store_after_a_restart(fake, tmp_path):
    first = _engine(tmp_path)
    await first.start()
    platform = await _platform(fake, first)
    prompt = "a harbour at night\nwith two boats\n" + "and lanterns " * 100
    token = await fake.slash("image", ALICE, prompt=prompt.strip() + " --steps 12", aspect="3:2")
    await _until(lambda: _images(fake, token))
    result = _result_message(fake)
    STARTED.remove(platform)
    await platform.stop()
    await first.stop()
    second = _engine(tmp_path)
    await second.start()
    restarted = await _platform(fake, second)
    pressed = await fake.click(result, _button(fake, result, "rr"), ALICE)
    await _until(lambda: _images(fake, pressed))
    job = await _job(second, _images(fake, pressed)[0])
    assert job.request.prompt == prompt.strip()
    assert (job.request.options.aspect_ratio, job.request.options.steps, job.request.options.seed) == ("3:2", 12, None)
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("jobs.db*"))
    assert token.encode() not in stored  # the interaction token is sealed before it reaches the store
    STARTED.remove(restarted)
    await restarted.stop()
    await second.stop()


async def test_buttons_obey_todays_access_rules(fake, engine):
    platform = await _platform(fake, engine)
    token = await fake.slash("image", ALICE, prompt="a fox")
    await _until(lambda: _images(fake, token))
    result = _result_message(fake)
    STARTED.remove(platform)
    await platform.stop()
    narrowed = await _platform(fake, engine, allowed_channels=[42])  # this channel is no longer served
    pressed = await fake.click(result, _button(fake, result, "rr"), ALICE)
    await _until(lambda: fake.for_token(pressed))
    answer = fake.for_token(pressed)[0].json
    assert answer["data"] == {"content": "SakaiBot is not enabled here.", "flags": EPHEMERAL} | {
        k: v for k, v in answer["data"].items() if k not in ("content", "flags")}
    STARTED.remove(narrowed)
    await narrowed.stop()
    await _platform(fake, engine)
    assert engine.store is not None
    await engine.store.ban("discord:601", "discord:1")  # banned since the image was made
    pressed = await fake.click(result, _button(fake, result, "rr"), ALICE)
    await _until(lambda: _followups(fake, pressed))
    note = _followups(fake, pressed)[0].json
    assert note["flags"] == EPHEMERAL and "banned" in note["content"] and not _images(fake, pressed)


async def test_refusals_after_the_defer_are_private_and_the_public_thinking_goes(fake, tmp_path):
    engine = _engine(tmp_path, latency=30, max_pending_per_user=1)
    await engine.start()
    await _platform(fake, engine)
    await fake.slash("image", ALICE, prompt="the first one")
    token = await fake.slash("image", ALICE, prompt="one too many")
    await _until(lambda: _followups(fake, token))
    note = _followups(fake, token)[0].json
    assert note["flags"] == EPHEMERAL and "requests waiting" in note["content"]
    assert fake.interactions[token]["original"] in fake.deleted
    await engine.stop(grace=0.05)


async def test_nothing_goes_unanswered_and_seeds_out_of_range_say_so(fake, engine, monkeypatch):
    platform = await _platform(fake, engine)
    crafted = await fake.slash("image", ALICE, prompt="a cat", aspect="7:1")  # not one of the declared choices
    seed = await fake.slash("image", ALICE, prompt="a cat", seed=5_000_000_000)
    empty = await fake.slash("image", ALICE, prompt="--ar 16:9")
    await _until(lambda: all(fake.for_token(t) for t in (crafted, seed, empty)))
    answers = {t: fake.for_token(t)[0].json for t in (crafted, seed, empty)}
    assert all(a["type"] == 4 and a["data"]["flags"] == EPHEMERAL for a in answers.values())
    assert "'7:1' is not one of the choices" in answers[crafted]["data"]["content"]
    assert "seed must be a whole number from 0 to 4294967295" in answers[seed]["data"]["content"]
    assert "Describe the image" in answers[empty]["data"]["content"]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug after the defer")

    monkeypatch.setattr(platform.conversation.chat, "answer", broken)
    late = await fake.slash("image", ALICE, prompt="a cat")
    await _until(lambda: _followups(fake, late))
    assert _followups(fake, late)[0].json == {"content": TRY_AGAIN, "flags": EPHEMERAL} | {
        k: v for k, v in _followups(fake, late)[0].json.items() if k not in ("content", "flags")}


async def test_every_option_is_described(fake, engine):
    await _platform(fake, engine)
    options = [(c["name"], o["name"], o.get("description")) for c in fake.commands for o in c.get("options", [])]
    assert options and [o for o in options if not o[2] or o[2] == "…"] == []


async def test_after_fifteen_minutes_the_image_goes_to_the_channel_once_and_the_old_status_points_at_it(
        fake, tmp_path, monkeypatch):
    slow = _engine(tmp_path, latency=30)
    await slow.start()
    platform = await _platform(fake, slow)
    token = await fake.slash("image", ALICE, prompt="kept across a long restart")
    await _until(lambda: [c for c in fake.for_token(token) if c.method == "PATCH"])
    STARTED.remove(platform)
    await slow.stop(grace=0.05)
    await platform.stop()
    fake.skew = 20 * 60  # the bot comes back 20 minutes later: the token is dead
    monkeypatch.setattr("platforms.discord.target.token_usable", lambda expires_at: False)
    quick = _engine(tmp_path)
    await quick.start()
    restarted = await _platform(fake, quick)
    await _until(lambda: fake.calls_to("/channels/5000/messages", "POST"))
    posted = fake.calls_to("/channels/5000/messages", "POST")[0]
    assert posted.json["content"] == "<@601> your image is ready." and posted.files
    assert posted.json["enforce_nonce"] is True and posted.json["nonce"].startswith("sakai")
    original = fake.interactions[token]["original"]
    await _until(lambda: fake.messages[original]["content"] == MOVED)
    STARTED.remove(restarted)
    await restarted.stop()
    await quick.stop()


async def test_a_crash_between_send_and_delivered_resends_once_and_discord_keeps_one_message(
        fake, tmp_path, monkeypatch):
    monkeypatch.setattr("platforms.discord.target.token_usable", lambda expires_at: False)
    first = _engine(tmp_path)
    await first.start()

    async def crash_before_recording(job_id: str) -> bool:  # the process dies right after the send
        return False

    monkeypatch.setattr(first, "delivered", crash_before_recording)
    platform = await _platform(fake, first)
    await fake.slash("image", ALICE, prompt="sent right before a crash")
    await _until(lambda: fake.calls_to("/channels/5000/messages", "POST"))
    STARTED.remove(platform)
    await platform.stop()
    await first.stop()
    second = _engine(tmp_path)
    await second.start()
    restarted = await _platform(fake, second)
    await _until(lambda: len(fake.calls_to("/channels/5000/messages", "POST")) == 2)
    posts = fake.calls_to("/channels/5000/messages", "POST")
    assert posts[0].json["nonce"] == posts[1].json["nonce"]
    assert len([m for m in fake.messages.values() if m.get("nonce") == posts[0].json["nonce"]]) == 1
    STARTED.remove(restarted)
    await restarted.stop()  # lets the resend record its delivery
    await second.stop()
    third = _engine(tmp_path)
    await third.start()
    assert await third.resume("discord") == []  # delivered now: never again
    await third.stop()


async def test_a_private_result_after_the_token_died_goes_by_direct_message(fake, engine, monkeypatch):
    monkeypatch.setattr("platforms.discord.target.token_usable", lambda expires_at: False)
    await _platform(fake, engine)
    await fake.slash("image", ALICE, prompt="for my eyes only", private=True)
    await _until(lambda: fake.dms.get(601) and fake.calls_to(f"/channels/{fake.dms[601]}/messages", "POST"))
    assert not fake.calls_to("/channels/5000/messages", "POST")
