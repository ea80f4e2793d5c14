"""Previews on every platform: paced, newest first, held by platform waits, replaced by the final image.

The real Telethon client (fake MTProto sender) and the real discord.py client (fake Discord on
127.0.0.1) are driven by a model that reports a preview every 100 ms of a scaled clock, so a
minute of generation takes a fraction of a second. The fakes refuse what the services refuse:
media added to a text message, media edits too close together (FLOOD_WAIT), group limits,
attachments over the upload limit (413).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import pytest
from PIL import Image as PILImage
from telethon import types
from telethon.tl import functions

from core import (
    BackendType,
    Capabilities,
    GenerationRequest,
    Image,
    ImageModel,
    ModelSettings,
    Progress,
    hookimpl,
    sizes_for_area,
)
from core.chat.commands import ImageCommand
from core.chat.conversation import Buttons, Conversation
from core.chat.pacing import Clock, RetryAfter
from core.config import EngineSettings, Settings, StoreSettings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from core.types import GenerationOptions, Job, Requester
from platforms.discord.platform import DiscordPlatform
from platforms.discord.settings import DiscordSettings
from platforms.telegram.platform import TelegramPlatform
from platforms.telegram.settings import TelegramSettings
from tests.fakes.discord import FakeDiscord, running_fake, user_payload
from tests.fakes.telegram import OfflineTelegram, ScaledClock, user

ALICE = user(501, "Alice")
GROUP = 900
SendMedia, Edit = functions.messages.SendMediaRequest, functions.messages.EditMessageRequest
DISCORD_ALICE = user_payload(601, "alice")


def frame(step: int, size: int = 16) -> bytes:
    """A distinct PNG per step (its colour encodes the step)."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (size, size), (step % 256, 40, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def noisy(size: int) -> bytes:
    """A PNG that does not compress: bigger than a small upload limit."""
    rng = random.Random(size)
    picture = PILImage.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class PreviewingSettings(ModelSettings):
    """Keys of the previewing test backend."""

    steps: int = 30
    every: float = 0.1
    preview_size: int = 16


class PreviewingModel(ImageModel):
    """Reports progress with a new preview every ``every`` seconds of the injected clock."""

    def __init__(self, name: str, settings: PreviewingSettings, clock: Clock) -> None:
        self.name, self.description, self.clock = name, "previews every 100 ms", clock
        self.steps, self.every, self.preview_size = settings.steps, settings.every, settings.preview_size
        self.capabilities = Capabilities(sizes=sizes_for_area(64 * 64, multiple=64), max_prompt_length=500,
                                         default_concurrency=4)
        self.reported = 0

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """``steps`` previews, then the final image."""
        for step in range(self.steps):
            await self.clock.sleep(self.every)
            await progress((step + 1) / self.steps, frame(step) if self.preview_size <= 16 else noisy(
                self.preview_size + step % 2))
            self.reported += 1
        return Image(frame(255, 32), "image/png", 32, 32, seed=request.seed, model=self.name)


class PreviewingBackend:
    """Registers the ``previewing`` backend on one clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.models: list[PreviewingModel] = []

    @hookimpl
    def register_image_models(self, register: Callable[[BackendType], None], engine: Engine) -> None:
        """Offer the backend."""
        register(BackendType("previewing", self._create, PreviewingSettings, "test double"))

    def _create(self, name: str, settings: PreviewingSettings, engine: Engine) -> PreviewingModel:
        self.models.append(PreviewingModel(name, settings, self.clock))
        return self.models[-1]


async def _engine(clock: Clock, **model: Any) -> Engine:
    settings = Settings(engine=EngineSettings(default_model="pv", rate_limit=None), platforms={},
                        models={"pv": {"backend": "previewing", **model}})
    engine = Engine(settings, create_plugin_host(load_entry_points=False,
                                                 extra=[("previewing", PreviewingBackend(clock))]))
    await engine.start()
    return engine


async def _until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the fakes only record
            await asyncio.sleep(0.005)


# ---------------------------------------------------------------------- the conversation's pacing
class Previewer:
    """A reply target with previews; a preview can be held in flight, or refused with a wait."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[tuple[str, Any, float]] = []  # (what, detail, clock time)
        self.in_flight = 0
        self.most_in_flight = 0
        self.waits: list[float] = []
        self.gate: asyncio.Event | None = None

    async def show(self, text: str, buttons: Buttons) -> bool:
        self.events.append(("status", text, self.clock.now()))
        return True

    async def deliver(self, job: Job) -> None:
        self.events.append(("image", job.id, self.clock.now()))

    async def say(self, text: str) -> None:
        self.events.append(("say", text, self.clock.now()))

    async def preview(self, image: bytes, text: str) -> bool:
        if self.waits:
            self.events.append(("refused", text, self.clock.now()))
            raise RetryAfter(self.waits.pop(0))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.events.append(("preview", image, self.clock.now()))
        finally:
            self.in_flight -= 1
        return True

    def preview_ref(self) -> str:
        return "1"

    async def clear_preview(self) -> None:
        self.events.append(("cleared", None, self.clock.now()))

    def of(self, what: str) -> list[tuple[str, Any, float]]:
        return [e for e in self.events if e[0] == what]


async def _converse(target: Previewer, clock: ScaledClock, interval: float, **model: Any) -> Engine:
    engine = await _engine(clock, **model)
    conversation = Conversation(engine, "test", interval=0, clock=clock, preview_interval=interval)
    await conversation.start(ImageCommand("a cat", None, GenerationOptions()),
                             Requester(platform="test", user_id="1", chat_id="1"), target)
    await _until(lambda: bool(target.of("cleared")))
    await conversation.close()
    await engine.stop(grace=0.5)
    return engine


async def test_previews_are_paced_one_at_a_time_and_the_final_image_replaces_them():
    clock = ScaledClock(100)
    target = Previewer(clock)
    await _converse(target, clock, interval=2.0, steps=100)  # 10 s of previews every 100 ms
    shown = [at for _, _, at in target.of("preview")]
    assert 3 <= len(shown) <= 25  # a few, not 100 (the spacing below is the pacing)
    assert all(b - a >= 2.0 - 0.05 for a, b in pairwise(shown))
    assert target.most_in_flight == 1
    kinds = [what for what, _, _ in target.events if what != "status"]
    assert kinds[-2:] == ["image", "cleared"] and "preview" not in kinds[kinds.index("image"):]


async def test_the_newest_preview_wins_and_older_ones_are_never_shown_after_it():
    clock = ScaledClock(100)
    target = Previewer(clock)
    target.gate = asyncio.Event()
    engine = await _engine(clock, steps=20)
    conversation = Conversation(engine, "test", interval=0, clock=clock, preview_interval=0.5)
    await conversation.start(ImageCommand("a cat", None, GenerationOptions()),
                             Requester(platform="test", user_id="1", chat_id="1"), target)
    await _until(lambda: target.in_flight == 1)  # the first preview is stuck in flight...
    await clock.sleep(1.0)  # ...while ten newer ones arrive
    target.gate.set()
    await _until(lambda: bool(target.of("cleared")))
    await conversation.close()
    await engine.stop(grace=0.5)
    steps = [PILImage.open(io.BytesIO(image)).getpixel((0, 0))[0] for _, image, _ in target.of("preview")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # always newer, never an older one
    assert steps[0] == 0 and steps[1] > 5  # the ones that came while the first was in flight were skipped


async def test_a_preview_in_flight_when_the_image_is_ready_lands_before_it_and_none_follows():
    clock = ScaledClock(100)
    target = Previewer(clock)
    target.gate = asyncio.Event()
    engine = await _engine(clock, steps=5)
    conversation = Conversation(engine, "test", interval=0, clock=clock, preview_interval=0.1)
    await conversation.start(ImageCommand("a cat", None, GenerationOptions()),
                             Requester(platform="test", user_id="1", chat_id="1"), target)
    await _until(lambda: target.in_flight == 1)
    await clock.sleep(2.0)  # the model has finished meanwhile; its image waits for the preview in flight
    assert target.of("image") == []
    target.gate.set()
    await _until(lambda: bool(target.of("cleared")))
    await conversation.close()
    await engine.stop(grace=0.5)
    kinds = [what for what, _, _ in target.events if what != "status"]
    assert kinds == ["preview", "image", "cleared"]


async def test_a_platform_wait_holds_previews_and_then_only_the_newest_goes():
    clock = ScaledClock(100)
    target = Previewer(clock)
    target.waits = [3.0]
    await _converse(target, clock, interval=0.5, steps=60)
    refused_at = target.of("refused")[0][2]
    after = [at for _, _, at in target.of("preview")]
    assert after and after[0] >= refused_at + 3.0 - 0.05  # nothing during the wait
    assert len(target.of("refused")) == 1


async def test_without_the_capability_the_text_status_still_shows_progress():
    clock = ScaledClock(100)

    class TextOnly:
        def __init__(self) -> None:
            self.shown: list[str] = []
            self.delivered: list[str] = []

        async def show(self, text: str, buttons: Buttons) -> bool:
            self.shown.append(text)
            return True

        async def deliver(self, job: Job) -> None:
            self.delivered.append(job.id)

        async def say(self, text: str) -> None:
            self.shown.append(text)

    engine = await _engine(clock, steps=10)
    conversation = Conversation(engine, "test", interval=0, clock=clock, preview_interval=0.5)
    target = TextOnly()
    await conversation.start(ImageCommand("a cat", None, GenerationOptions()),
                             Requester(platform="test", user_id="1", chat_id="1"), target)
    await _until(lambda: bool(target.delivered))
    await conversation.close()
    await engine.stop(grace=0.5)
    assert any("%" in text for text in target.shown)


# ---------------------------------------------------------------------- Telegram
async def _telegram(tg: OfflineTelegram, engine: Engine, **settings: Any) -> TelegramPlatform:
    config = TelegramSettings(enabled=False, **{"edit_interval": 2.5, **settings})
    platform = TelegramPlatform(config, client=tg.client, clock=tg.clock)
    await platform.start(engine)
    tg.sender.requests.clear()
    return platform


def _media_edits(tg: OfflineTelegram) -> list[Any]:
    return [r for r in tg.sender.of(Edit) if r.media is not None]


def _media_edit_times(tg: OfflineTelegram) -> list[float]:
    return [t for times in tg.sender.media_edits.values() for t in times]


@pytest.mark.parametrize("mode", ["bot", "userbot"])
async def test_telegram_previews_are_one_photo_whose_media_is_replaced_then_the_result_replaces_it(mode):
    tg = OfflineTelegram(bot=mode == "bot", scale=100)
    tg.sender.media_edit_gap = 3.0  # strict: media edits of one message closer than 3 s are refused
    engine = await _engine(tg.clock, steps=300)  # 30 s of generation, a preview every 100 ms
    platform = await _telegram(tg, engine, mode=mode, preview_interval=5.0,
                               allowed_users=[ALICE.id] if mode == "bot" else [])
    sender = ALICE if mode == "bot" else tg.me
    command = await tg.message("/image a lighthouse", sender=sender, outgoing=mode == "userbot")
    await _until(lambda: any(r.media is not None and "lighthouse" in (r.message or "")
                             for r in tg.sender.of(SendMedia)) and tg.sender.deleted, limit=20)
    await _until(lambda: len(tg.sender.deleted) >= 2)  # the status (bot) / preview messages go
    await platform.stop()
    await engine.stop(grace=0.5)

    sends = tg.sender.of(SendMedia)
    preview, result = sends[0], sends[-1]
    assert len(sends) == 2 and preview.reply_to.reply_to_msg_id == command  # one preview photo, one result
    assert isinstance(preview.media, types.InputMediaUploadedPhoto)
    edits = _media_edits(tg)
    assert 3 <= len(edits) <= 30 and all(isinstance(e.media, types.InputMediaUploadedPhoto) for e in edits)
    percents = [int(e.message.split()[-1].rstrip("%")) for e in edits if e.message.rstrip().endswith("%")]
    assert percents == sorted(percents)  # never an older preview after a newer one
    preview_id = edits[0].id
    assert {e.id for e in edits} == {preview_id}  # every preview replaced the media of that one photo
    assert preview_id in tg.sender.deleted  # the final image replaces the preview
    last_result = tg.sender.requests.index(result)
    assert not [r for r in tg.sender.requests[last_result:] if isinstance(r, Edit) and r.media is not None]
    assert tg.sender.ignored_waits == []
    times = _media_edit_times(tg)
    assert all(b - a >= 5.0 - 0.1 for a, b in pairwise(times))


async def test_telegram_media_flood_waits_hold_previews_and_are_never_ignored():
    tg = OfflineTelegram(scale=100)
    tg.sender.media_edit_gap = 4.0  # Telegram refuses faster media edits than our 1 s interval
    engine = await _engine(tg.clock, steps=200)
    platform = await _telegram(tg, engine, preview_interval=1.0)
    await tg.message("/image a flood", sender=ALICE)
    await _until(lambda: bool(tg.sender.deleted) and len(tg.sender.of(SendMedia)) >= 2, limit=20)
    await platform.stop()
    await engine.stop(grace=0.5)
    assert tg.sender.ignored_waits == []  # nothing was sent to a message while Telegram said wait
    times = _media_edit_times(tg)
    assert len(times) >= 3 and all(b - a >= 4.0 - 0.1 for a, b in pairwise(times))


async def test_telegram_group_previews_stay_inside_the_groups_minute():
    tg = OfflineTelegram(scale=200)
    engine = await _engine(tg.clock, steps=900)  # 90 s of generation
    platform = await _telegram(tg, engine, preview_interval=1.0)
    await tg.message("/image a crowd", sender=ALICE, chat_id=GROUP)
    await _until(lambda: len(tg.sender.of(SendMedia)) >= 2 and bool(tg.sender.deleted), limit=30)
    await platform.stop()
    await engine.stop(grace=0.5)
    assert tg.sender.per_minute(-GROUP) <= 20
    assert tg.sender.ignored_waits == []
    assert len(_media_edits(tg)) >= 5  # previews still reach the group, inside the budget


# ---------------------------------------------------------------------- Discord
@pytest.fixture
async def fake(monkeypatch) -> AsyncIterator[FakeDiscord]:
    async with running_fake(monkeypatch) as server:
        yield server


async def _discord(fake: FakeDiscord, engine: Engine, clock: Clock, **settings: Any) -> DiscordPlatform:
    config = DiscordSettings(enabled=True, token="fake-token", edit_interval=1.5, api_base=f"{fake.root}/api/v10",
                             gateway=f"{fake.root.replace('http', 'ws')}/gw", **settings)
    platform = DiscordPlatform(config, clock=clock, guild_ready_timeout=0.05)
    await asyncio.wait_for(platform.start(engine), 10)
    return platform


def _preview_edits(fake: FakeDiscord, token: str) -> list[Any]:
    return [c for c in fake.for_token(token) if c.method == "PATCH" and c.files]


async def test_discord_edits_the_deferred_response_with_the_preview_and_the_result_replaces_it(fake):
    clock = ScaledClock(50)
    engine = await _engine(clock, steps=200)  # 20 s of generation
    platform = await _discord(fake, engine, clock, preview_interval=2.0)
    token = await fake.slash("image", DISCORD_ALICE, prompt="a harbour")
    await _until(lambda: any(c.files and c.method == "POST" for c in fake.for_token(token)), limit=20)
    original = fake.interactions[token]["original"]
    await _until(lambda: fake.messages[original]["attachments"] == [] and
                 any(c.json and c.json.get("attachments") == [] for c in fake.for_token(token)))
    await platform.stop()
    await engine.stop(grace=0.5)

    previews = _preview_edits(fake, token)
    assert 4 <= len(previews) <= 40 and all(c.path.endswith(f"/messages/{original}") for c in previews)
    assert all(name.startswith("preview.") for c in previews for name in c.files)
    calls = fake.for_token(token)
    result = next(n for n, c in enumerate(calls) if c.method == "POST" and c.files)
    assert not [c for c in calls[result + 1:] if c.files]  # no preview after the final image
    assert fake.messages[original]["attachments"] == []  # the preview does not linger


async def test_discord_previews_over_the_upload_limit_are_shrunk_not_refused(fake):
    fake.attachment_size_limit = 4000  # Discord answers 413 above the interaction's limit
    clock = ScaledClock(50)
    engine = await _engine(clock, steps=40, preview_size=64)  # noisy 64 px PNGs of about 12 KB
    platform = await _discord(fake, engine, clock, preview_interval=0.5)
    token = await fake.slash("image", DISCORD_ALICE, prompt="a storm")
    await _until(lambda: any(c.json and c.json.get("attachments") == [] for c in fake.for_token(token)), limit=20)
    await platform.stop()
    await engine.stop(grace=0.5)
    previews = _preview_edits(fake, token)
    assert previews and all(len(data) <= 4000 for c in previews for data in c.files.values())
    assert fake.refused == []


async def _stored_engine(clock: Clock, path: str, **model: Any) -> Engine:
    settings = Settings(engine=EngineSettings(default_model="pv", rate_limit=None), platforms={},
                        models={"pv": {"backend": "previewing", **model}}, store=StoreSettings(path=path))
    engine = Engine(settings, create_plugin_host(load_entry_points=False,
                                                 extra=[("previewing", PreviewingBackend(clock))]))
    await engine.start()
    return engine


async def test_a_telegram_preview_left_by_a_restart_is_still_removed_when_the_image_arrives(tmp_path):
    tg = OfflineTelegram(bot=True, scale=100)
    path = str(tmp_path / "jobs.db")
    first = await _stored_engine(tg.clock, path, steps=300)
    platform = await _telegram(tg, first, preview_interval=5.0, allowed_users=[ALICE.id])
    await tg.message("/image a lighthouse", sender=ALICE)
    await _until(lambda: bool(tg.sender.of(SendMedia)), limit=20)  # the first preview photo is out
    await _until(lambda: "preview" in next(iter(first.jobs.values())).request.delivery)
    await platform.stop()
    await first.stop(grace=0)  # the job is kept, mid-generation, for the next start

    second = await _stored_engine(tg.clock, path, steps=10)
    restarted = await _telegram(tg, second, preview_interval=5.0, allowed_users=[ALICE.id])
    await _until(lambda: any("lighthouse" in (r.message or "") and r.media is not None
                             for r in tg.sender.of(SendMedia)), limit=20)
    await restarted.stop()
    await second.stop(grace=0.5)
    with sqlite3.connect(path) as db:  # the preview photo's id was kept with the job before the restart
        (request,) = db.execute("SELECT request FROM jobs").fetchone()
    assert int(json.loads(request)["delivery"]["preview"]) in tg.sender.deleted
