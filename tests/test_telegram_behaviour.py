"""Telegram as its users expect (issue 11): buttons keep everything, access holds, flood waits lose nothing.

Real Telethon objects driven offline (tests/fakes/telegram.py). The fake refuses what Telegram
refuses: FLOOD_WAIT on sends and edits, about 20 messages a minute in a group, captions over 1024
and messages over 4096 UTF-16 code units. Time runs faster (``scale``) where waits are minutes long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telethon import types
from telethon.tl import functions

from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from platforms.telegram.buttons import decode
from platforms.telegram.platform import REFUSAL, TelegramPlatform
from platforms.telegram.settings import TelegramSettings
from tests.fakes.telegram import OfflineTelegram, user, utf16

ALICE, BOB, ADMIN = user(501, "Alice"), user(502, "Bob"), user(503, "Root")
SendMessage, SendMedia = functions.messages.SendMessageRequest, functions.messages.SendMediaRequest
Edit, Delete = functions.messages.EditMessageRequest, functions.messages.DeleteMessagesRequest
Answer = functions.messages.SetBotCallbackAnswerRequest
GROUP = 900  # a basic group; Telethon marks its chat id -900


def _engine(tmp_path: Any, *, latency: float = 0.02, name: str = "jobs.db") -> Engine:
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, max_pending_per_user=30),
                        models={"preview": {"backend": "preview", "latency": latency, "area": 128 * 128}},
                        platforms={}, store={"path": str(tmp_path / name)})
    return Engine(settings, create_plugin_host())


@pytest.fixture
async def engine(tmp_path) -> AsyncIterator[Engine]:
    built = _engine(tmp_path)
    await built.start()
    yield built
    await built.stop(grace=0.5)


async def _platform(engine: Engine, tg: OfflineTelegram | None = None, **settings: Any
                    ) -> tuple[TelegramPlatform, OfflineTelegram]:
    tg = tg or OfflineTelegram()
    config = TelegramSettings(enabled=False, admins=[ADMIN.id], **{"edit_interval": 0, **settings})
    platform = TelegramPlatform(config, client=tg.client, clock=tg.clock)
    await platform.start(engine)
    tg.sender.requests.clear()
    return platform, tg


async def _until(condition, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the fake sender only records
            await asyncio.sleep(0.005)


def _media(tg: OfflineTelegram) -> list[Any]:
    return tg.sender.of(SendMedia)


def _photos(tg: OfflineTelegram) -> list[Any]:
    """Images Telegram accepted (refused sends are recorded as requests too)."""
    return [m for m in tg.sender.messages.values() if m.media is not None]


def _button(media: Any, action: str) -> bytes:
    return next(b.type.data for row in media.reply_markup.rows for b in row.buttons if decode(b.type.data).action
                == action)


def _result_id(tg: OfflineTelegram, media: Any) -> int:
    return next(i for i, m in tg.sender.messages.items() if m.media is not None and m.message == media.message)


async def _job_of(engine: Engine, media: Any) -> Any:
    job_id = media.message.split("#", 1)[1].split()[0]
    return await engine.past_job(job_id)


async def test_reroll_and_variation_repeat_the_whole_request_with_a_new_seed(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image=preview=a lighthouse --ar 16:9 --no text --steps 12 --seed 5 --file", sender=ALICE)
    await _until(lambda: _media(tg))
    first = await _job_of(engine, _media(tg)[0])
    remembered = engine.past_job

    async def enhanced(job_id: str) -> Any:  # the first job as an enhancer would have left it
        job = await remembered(job_id)
        if job is not None and job_id == first.id:
            job.enhanced_prompt = "a lighthouse at dusk, volumetric fog"
        return job

    engine.past_job = enhanced  # type: ignore[method-assign]
    result = _result_id(tg, _media(tg)[0])
    await tg.press(_button(_media(tg)[0], "reroll"), sender=ALICE, message_id=result)
    await _until(lambda: len(_media(tg)) == 2)
    await tg.press(_button(_media(tg)[0], "variation"), sender=ALICE, message_id=result)
    await _until(lambda: len(_media(tg)) == 3)
    reroll, variation = [await _job_of(engine, m) for m in _media(tg)[1:]]
    for job in (reroll, variation):
        options = job.request.options
        assert (options.aspect_ratio, options.negative_prompt, options.steps, options.as_file) == \
            ("16:9", "text", 12, True)
        assert options.seed is None and job.generation.size.ratio > 1 and job.model == "preview"
        assert isinstance(_media(tg)[1].media, types.InputMediaUploadedDocument)
    assert reroll.request.prompt == "a lighthouse" and reroll.generation.seed != first.generation.seed
    assert variation.request.prompt == "a lighthouse at dusk, volumetric fog" and variation.request.options.enhance \
        is False
    await platform.stop()


async def test_old_buttons_repeat_multi_line_and_long_prompts_after_a_restart(tmp_path):
    first = _engine(tmp_path)
    await first.start()
    platform, tg = await _platform(first)
    prompt = "a harbour at night\nwith two boats\n" + " ".join(["and lanterns"] * 120)
    await tg.message(f"/image=preview={prompt} --ar 3:2", sender=ALICE)
    await _until(lambda: _media(tg))
    media = _media(tg)[0]
    assert utf16(media.message) <= 1024 and media.message.endswith("…")  # the caption holds only part of it
    await platform.stop()
    await first.stop()
    second = _engine(tmp_path)  # a new process: nothing in memory, the job store remains
    await second.start()
    fresh, _ = await _platform(second, tg)
    await tg.press(_button(media, "reroll"), sender=ALICE, message_id=_result_id(tg, media))
    await _until(lambda: len(_media(tg)) == 1)
    again = await _job_of(second, _media(tg)[0])
    assert again.request.prompt == prompt and again.request.options.aspect_ratio == "3:2"
    await fresh.stop()
    await second.stop()


async def test_buttons_obey_todays_allow_list_and_bans(engine):
    platform, tg = await _platform(engine, allowed_users=[ALICE.id, BOB.id])
    await tg.message("/image=preview=a fox", sender=ALICE)
    await _until(lambda: _media(tg))
    media = _media(tg)[0]
    await platform.stop()
    removed, _ = await _platform(engine, tg, allowed_users=[BOB.id])  # Alice left the allow list
    await tg.press(_button(media, "reroll"), sender=ALICE, message_id=_result_id(tg, media))
    assert tg.sender.of(Answer)[-1].message == REFUSAL and tg.sender.of(Answer)[-1].alert
    await removed.stop()
    allowed, _ = await _platform(engine, tg, allowed_users=[ALICE.id])
    assert engine.store is not None
    await engine.store.ban(f"telegram:{ALICE.id}", "telegram:503")
    await tg.press(_button(media, "reroll"), sender=ALICE, message_id=_result_id(tg, media))
    await _until(lambda: any(e.message.startswith("❌ You are banned") for e in tg.sender.of(Edit)))
    assert _media(tg) == []  # requests are counted from this platform's start
    await allowed.stop()


async def test_a_long_flood_wait_on_the_photo_keeps_the_image_for_every_chat(engine):
    tg = OfflineTelegram(scale=1000)  # 300 s of Telegram's time in 0.3 s
    platform, _ = await _platform(engine, tg)
    tg.sender.flood(SendMedia, 300)
    await tg.message("/image=preview=first chat", sender=ALICE)
    await tg.message("/image=preview=second chat", sender=BOB)
    await _until(lambda: len(_photos(tg)) == 2 and len(tg.sender.of(Delete)) == 2, limit=20)  # statuses tidied
    assert not any("refused" in e.message for e in tg.sender.of(Edit))
    assert len(tg.sender.ignored_waits) <= 2  # at most one early try per chat, never a hammering loop
    await platform.stop()


async def test_a_flood_wait_on_the_first_reply_keeps_the_command_queued(engine):
    tg = OfflineTelegram(scale=1000)
    platform, _ = await _platform(engine, tg)
    tg.sender.flood(SendMessage, 300)
    command = await tg.message("/image=preview=answered later", sender=ALICE)
    assert engine.jobs == {} and _media(tg) == []
    await _until(lambda: _media(tg), limit=20)
    first = [r for r in tg.sender.of(SendMessage) if r.message == "⏳ Queued"]
    assert first and first[-1].reply_to.reply_to_msg_id == command
    assert _media(tg)[0].message.endswith("📝 answered later")
    await platform.stop()


async def test_no_edit_during_a_flood_wait_and_never_older_text_after_newer(engine):
    tg = OfflineTelegram(scale=1000)
    platform, _ = await _platform(engine, tg)
    engine.models["preview"].latency = 0.3
    await tg.message("/image=preview=progress --steps 30", sender=ALICE)
    await _until(lambda: any("%" in e.message for e in tg.sender.of(Edit)))
    tg.sender.flood(Edit, 120)
    await _until(lambda: _media(tg), limit=20)
    edits = [e.message for e in tg.sender.of(Edit)]
    percents = [int(text.rsplit(" ", 1)[1].rstrip("%")) for text in edits if text.endswith("%")]
    assert percents == sorted(percents)  # never an older percentage after a newer one
    assert len(tg.sender.ignored_waits) == 0  # nothing was sent to Telegram while it asked to wait
    await platform.stop()


async def test_a_burst_of_twenty_commands_in_a_group_stays_within_telegrams_group_limit(engine, capsys):
    tg = OfflineTelegram(scale=200)  # a minute of Telegram's time in 0.3 s
    platform, _ = await _platform(engine, tg, edit_interval=2.5)
    people = [user(700 + n, f"member{n}") for n in range(20)]
    await asyncio.gather(*(tg.message(f"/image=preview=picture {n}", sender=p, chat_id=GROUP)
                           for n, p in enumerate(people)))
    await _until(lambda: len(_media(tg)) == 20, limit=30)
    busiest = tg.sender.per_minute(-GROUP)
    with capsys.disabled():
        print(f"\ngroup burst of 20: {len(tg.sender.writes[-GROUP])} sends and edits, busiest minute {busiest}")
    assert busiest <= 20
    assert tg.sender.ignored_waits == []
    await platform.stop()


async def test_captions_and_statuses_are_plain_text_counted_in_utf16(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image=preview=a **bold** cat, __dramatic__ light", sender=ALICE)
    await _until(lambda: _media(tg))
    media = _media(tg)[0]
    assert "a **bold** cat, __dramatic__ light" in media.message and not media.entities
    assert all(not r.entities for r in tg.sender.of(SendMessage) + tg.sender.of(Edit))
    persian = " ".join(["فانوس دریایی در غروب 🌅🌊"] * 60)
    await tg.message(f"/image=preview={persian}", sender=ALICE)
    await _until(lambda: len(_media(tg)) == 2)  # the fake refuses captions over 1024 UTF-16 code units
    caption = _media(tg)[1].message
    assert 1000 < utf16(caption) <= 1024 and len(caption) < utf16(caption)
    await platform.stop()


async def test_spaced_model_syntax_and_the_job_id_under_each_image_work_with_info(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image = preview = a cat", sender=ALICE)
    await _until(lambda: _media(tg))
    caption = _media(tg)[0].message
    job = await _job_of(engine, _media(tg)[0])
    assert job.model == "preview" and job.request.prompt == "a cat"
    await tg.message(f"/info {caption.split('#', 1)[1].split()[0]}", sender=ALICE)
    await _until(lambda: any(r.message.startswith(f"Job {job.id}") for r in tg.sender.of(SendMessage)))
    await platform.stop()
