"""The conversation and its pacing, on a recording reply target and a real engine (preview model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core import Job
from core.chat.commands import ImageCommand, ModelsCommand
from core.chat.conversation import Buttons, Conversation, DeliveryRefused
from core.chat.pacing import ChatBudget, PacedStatus, RetryAfter
from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from core.types import GenerationOptions, Requester
from tests.fakes.telegram import ScaledClock

ALICE = Requester(platform="test", user_id="1", chat_id="1")


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None),
                        models={"preview": {"backend": "preview", "latency": 0.01, "area": 64 * 64}}, platforms={})
    built = Engine(settings, create_plugin_host())
    await built.start()
    yield built
    await built.stop(grace=0.5)


class Recorder:
    """A reply target that records, and can be told to ask for waits or refuse."""

    def __init__(self, *, waits: list[float] | None = None, refuse: bool = False) -> None:
        self.shown: list[str] = []
        self.said: list[str] = []
        self.delivered: list[str] = []
        self.waits = list(waits or [])
        self.refuse = refuse

    async def show(self, text: str, buttons: Buttons) -> bool:
        self.shown.append(text)
        return True

    async def deliver(self, job: Job) -> None:
        if self.waits:
            raise RetryAfter(self.waits.pop(0))
        if self.refuse:
            raise DeliveryRefused()
        self.delivered.append(job.id)

    async def say(self, text: str) -> None:
        self.said.append(text)


class Preparing(Recorder):
    """Also answers first, and may be asked to wait for that."""

    def __init__(self, first_waits: list[float]) -> None:
        super().__init__()
        self.first_waits = first_waits
        self.prepared = 0

    async def prepare(self) -> dict[str, str]:
        if self.first_waits:
            raise RetryAfter(self.first_waits.pop(0))
        self.prepared += 1
        return {"status": "1"}


class Tidy(Recorder):
    """Deletes its status after delivery."""

    finished: list[str]

    async def finish(self, job: Job) -> None:
        self.finished = [job.id]


def _cat() -> ImageCommand:
    return ImageCommand("a cat", None, GenerationOptions())


async def _settle(conversation: Conversation) -> None:
    async with asyncio.timeout(5):
        while len(conversation.followers) or conversation._waiting:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_a_wait_holds_every_edit_and_only_the_newest_text_is_shown_after_it():
    clock = ScaledClock(1000)
    applied: list[str] = []
    waits = [30.0]

    async def edit(text: str, extra: Any) -> bool:
        if waits:
            raise RetryAfter(waits.pop())
        applied.append(text)
        return True

    status = PacedStatus(edit, 0, clock=clock)
    await status.show("38 %")
    await status.show("75 %")
    assert applied == []  # nothing sent while the platform asked to wait
    await status.drain()
    assert applied == ["75 %"]


def test_a_chat_budget_counts_a_window_and_keeps_room_for_sends():
    clock = ScaledClock(1)
    budget = ChatBudget(4, 60, clock=clock)
    assert budget.take_now("g", keep=2) == 0 and budget.take_now("g", keep=2) == 0
    assert budget.take_now("g", keep=2) > 0  # edits leave half the minute to sends
    assert budget.take_now("g") == 0 and budget.take_now("g") == 0 and budget.take_now("g") > 0
    assert budget.take_now("other chat") == 0


async def test_the_image_is_kept_through_waits_and_delivered_once(engine):
    clock = ScaledClock(1000)
    conversation = Conversation(engine, "test", interval=0, clock=clock)
    target = Recorder(waits=[300, 300])
    await conversation.start(_cat(), ALICE, target)
    await _settle(conversation)
    assert len(target.delivered) == 1 and target.shown[-1].startswith("✅ Done")


async def test_a_delivery_skipped_by_the_engine_is_not_sent(engine, monkeypatch):
    async def already(job_id: str) -> bool:
        return False

    monkeypatch.setattr(engine, "begin_delivery", already)
    conversation = Conversation(engine, "test", interval=0)
    target = Recorder()
    await conversation.start(_cat(), ALICE, target)
    await _settle(conversation)
    assert target.delivered == []


async def test_a_refused_delivery_shows_why_and_finishes_tidies_the_status(engine):
    conversation = Conversation(engine, "test", interval=0)
    refused, tidy = Recorder(refuse=True), Tidy()
    await conversation.start(_cat(), ALICE, refused)
    await conversation.start(_cat(), ALICE, tidy)
    await _settle(conversation)
    assert refused.shown[-1] == f"❌ {DeliveryRefused.default_message}"
    assert tidy.finished == tidy.delivered and not tidy.shown[-1].startswith("✅")


async def test_a_command_whose_first_answer_must_wait_runs_after_the_wait(engine):
    conversation = Conversation(engine, "test", interval=0, clock=ScaledClock(1000))
    target = Preparing(first_waits=[120])
    await conversation.start(_cat(), ALICE, target)
    assert target.prepared == 0 and engine.jobs == {}
    await _settle(conversation)
    assert target.prepared == 1 and len(target.delivered) == 1


async def test_text_commands_and_refusals_are_said(engine):
    conversation = Conversation(engine, "test", interval=0)
    target = Recorder()
    await conversation.start(ModelsCommand(), ALICE, target)
    await conversation.start(ImageCommand("a cat", "nope", GenerationOptions()), ALICE, target)
    assert target.said[0].startswith("Models:") and "Unknown model 'nope'" in target.said[1]
    await conversation.again("0123456789ab", False, ALICE, target)
    assert target.said[2] == "That request is no longer kept; send it again."


class Flaky(Recorder):
    """Network faults: every status edit fails, and the first send of the image drops its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.drops = 1

    async def show(self, text: str, buttons: Buttons) -> bool:
        raise ConnectionError("connection reset by peer")

    async def deliver(self, job: Job) -> None:
        if self.drops:
            self.drops -= 1
            raise ConnectionError("connection reset by peer")
        await super().deliver(job)


async def test_network_faults_in_statuses_and_the_send_never_lose_the_image(engine):
    clock = ScaledClock(1000)  # the backoff before the second send passes in a moment
    conversation = Conversation(engine, "test", interval=0, clock=clock)
    target = Flaky()
    await conversation.start(ImageCommand("a cat", None, GenerationOptions()), ALICE, target)
    async with asyncio.timeout(10):
        while not target.delivered:  # noqa: ASYNC110 - the target only records
            await asyncio.sleep(0.01)
    await conversation.close()
    assert len(target.delivered) == 1 and target.drops == 0
