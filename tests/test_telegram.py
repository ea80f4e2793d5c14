"""The Telegram adapter end to end, on a real Telethon client driven offline (tests/fakes/telegram.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import telethon
from telethon import TelegramClient, errors, types
from telethon.tl import functions

from core.chat.inputs import offers_upscale
from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from platforms.telegram.buttons import decode
from platforms.telegram.platform import REFUSAL, TelegramPlatform
from platforms.telegram.settings import TelegramSettings
from tests.fakes.telegram import BOT_NAME, SELF_USER_ID, OfflineTelegram, user

ALICE, BOB, ADMIN = user(501, "Alice"), user(502, "Bob"), user(503, "Root")
SendMessage, SendMedia = functions.messages.SendMessageRequest, functions.messages.SendMediaRequest
Edit, Delete = functions.messages.EditMessageRequest, functions.messages.DeleteMessagesRequest
Answer = functions.messages.SetBotCallbackAnswerRequest


def test_telethon_internals_canary():
    """The harness uses private Telethon names; if this fails, re-check tests/fakes/telegram.py."""
    assert telethon.__version__.startswith("1.45"), telethon.__version__
    client = TelegramClient(None, 1, "0" * 32)
    assert hasattr(client, "_dispatch_update") and hasattr(client, "_sender")
    assert hasattr(client._mb_entity_cache, "set_self_user")
    assert "self._sender" in __import__("inspect").getsource(type(client).__call__)


def _settings(**extra: Any) -> TelegramSettings:
    return TelegramSettings(enabled=False, edit_interval=0, admins=[ADMIN.id], **extra)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, max_pending_per_user=20),
                        models={"preview": {"backend": "preview", "latency": 0.02, "area": 128 * 128},
                                "slow": {"backend": "preview", "latency": 30, "concurrency": 1}}, platforms={})
    built = Engine(settings, create_plugin_host())
    await built.start()
    yield built
    await built.stop(grace=0.5)


async def _platform(engine: Engine, *, bot: bool = True, **settings: Any) -> tuple[TelegramPlatform, OfflineTelegram]:
    tg = OfflineTelegram(bot=bot)
    platform = TelegramPlatform(_settings(mode="bot" if bot else "userbot", **settings), client=tg.client)
    await platform.start(engine)
    tg.sender.requests.clear()  # get_me at start-up
    return platform, tg


async def _until(condition, limit: float = 5.0) -> None:
    """Poll the recorded requests: the fake sender has no events to wait on."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _media(tg: OfflineTelegram) -> list[Any]:
    return tg.sender.of(SendMedia)


async def test_image_command_gets_status_edits_and_a_photo_with_caption(engine):
    platform, tg = await _platform(engine)
    command_id = await tg.message("/image=preview=a red fox in the snow --seed 42", sender=ALICE)
    await _until(lambda: _media(tg) and tg.sender.of(Delete))
    first = tg.sender.of(SendMessage)[0]
    assert first.message == "⏳ Queued" and first.reply_to.reply_to_msg_id == command_id
    edits = [e.message for e in tg.sender.of(Edit)]
    assert any(text.startswith("🎨 Generating with preview") for text in edits)
    media = _media(tg)[0]
    assert isinstance(media.media, types.InputMediaUploadedPhoto)
    assert media.message.startswith("🎨 preview · seed 42 · ") and media.message.endswith("📝 a red fox in the snow")
    assert media.reply_to.reply_to_msg_id == command_id
    data = [button.type.data for row in media.reply_markup.rows for button in row.buttons]
    upscale = {"upscale"} if offers_upscale(engine.models) else set()  # where a model upscales
    assert {decode(d).action for d in data} == {"reroll", "variation"} | upscale
    assert decode(data[0]).owner_id == ALICE.id
    await platform.stop()


async def test_help_models_queue_and_errors_are_plain_replies(engine):
    _, tg = await _platform(engine)
    await tg.message("/models", sender=ALICE)
    await tg.message("/image=nope=a cat", sender=ALICE)
    await tg.message("hello there", sender=ALICE)
    texts = [r.message for r in tg.sender.of(SendMessage)]
    assert texts[0].startswith("Models:") and "preview (default)" in texts[0]
    assert texts[1] == "⏳ Queued" and len(texts) == 2  # the status message, which then shows the error
    assert tg.sender.of(Edit)[-1].message == "❌ Unknown model 'nope'. Available models: preview, slow."


async def test_group_commands_addressed_to_another_bot_are_ignored(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image@OtherBot=preview=a cat", sender=ALICE, chat_id=900)
    assert tg.sender.requests == []
    await tg.message(f"/image@{BOT_NAME}=preview=a cat", sender=ALICE, chat_id=900)
    await _until(lambda: _media(tg))
    await platform.stop()


async def test_userbot_answers_its_owner_and_allowlisted_users_only(engine):
    platform, tg = await _platform(engine, bot=False, allowed_users=[BOB.id])
    me = user(SELF_USER_ID, "Me")
    await tg.message("/image=preview=a stranger's request", sender=ALICE)
    await tg.message("/models", sender=ALICE)
    assert tg.sender.requests == []
    await tg.message("/image=preview=my own request", sender=me, outgoing=True)
    await tg.message("/image=preview=bob's request", sender=BOB)
    await _until(lambda: len(_media(tg)) == 2)
    assert all(m.reply_markup is None for m in _media(tg))  # userbots cannot send inline buttons
    await platform.stop()


async def test_a_private_bot_politely_refuses_strangers_commands_only(engine):
    _, tg = await _platform(engine, allowed_users=[BOB.id])
    await tg.message("/image=preview=a cat", sender=ALICE)
    await tg.message("just chatting", sender=ALICE)
    assert [r.message for r in tg.sender.of(SendMessage)] == [REFUSAL]


async def test_reroll_by_the_owner_makes_a_new_image_others_get_an_alert(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image=preview=a lighthouse --seed 7", sender=ALICE)
    await _until(lambda: _media(tg) and tg.sender.of(Delete))
    result_id = max(tg.sender.messages)
    data = _media(tg)[0].reply_markup.rows[0].buttons[0].type.data
    await tg.press(data, sender=BOB, message_id=result_id)
    assert tg.sender.of(Answer)[-1].alert is True and "Only the person" in tg.sender.of(Answer)[-1].message
    await tg.press(data, sender=ALICE, message_id=result_id)
    await _until(lambda: len(_media(tg)) == 2)
    second = _media(tg)[1].message
    assert "a lighthouse" in second and "seed 7 " not in second  # same prompt, new seed
    job = await engine.past_job(second.split("#", 1)[1].split()[0])
    assert "status" in job.request.delivery  # a reroll's status is found again after a restart too
    await platform.stop()


async def test_cancel_button_while_queued(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image=slow=first", sender=BOB)
    await tg.message("/image=slow=second", sender=ALICE)
    await _until(lambda: any(e.reply_markup for e in tg.sender.of(Edit) if e.message.startswith("⏳ Queued for")))
    status = [e for e in tg.sender.of(Edit) if e.message.startswith("⏳ Queued for")][-1]
    cancel = status.reply_markup.rows[0].buttons[0].type.data
    assert decode(cancel).action == "cancel"
    status_id = max(tg.sender.messages)
    await tg.press(cancel, sender=ALICE, message_id=status_id)
    assert tg.sender.of(Answer)[-1].message == "Cancelled."
    await _until(lambda: any(e.message.startswith("🚫") for e in tg.sender.of(Edit)))
    await platform.stop()


async def test_a_flood_wait_on_a_status_edit_never_holds_the_image(engine):
    platform, tg = await _platform(engine)
    tg.sender.fail(Edit, errors.FloodWaitError(request=None, capture=600))
    await tg.message("/image=preview=flood --seed 1", sender=ALICE)
    await _until(lambda: _media(tg))
    tg.sender.fail(Edit, errors.FloodWaitError(request=None, capture=1))
    tg.client._flood_waited_requests.clear()
    await tg.message("/image=preview=flood again --seed 2", sender=ALICE)
    await _until(lambda: len(_media(tg)) == 2)
    await platform.stop()


async def test_a_long_prompt_caption_is_cut_on_a_word(engine):
    platform, tg = await _platform(engine)
    prompt = " ".join(["lighthouse"] * 150)
    await tg.message(f"/image=preview={prompt}", sender=ALICE)
    await _until(lambda: _media(tg))
    caption = _media(tg)[0].message
    assert len(caption) <= 1024 and caption.endswith("lighthouse…")
    await platform.stop()


async def test_send_as_file_and_photo_refusal_fall_back_to_a_document(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image=preview=as a file --file", sender=ALICE)
    await _until(lambda: _media(tg))
    assert isinstance(_media(tg)[0].media, types.InputMediaUploadedDocument)
    tg.sender.fail(SendMedia, errors.PhotoInvalidDimensionsError(request=None))
    await tg.message("/image=preview=refused photo", sender=ALICE)
    await _until(lambda: len(_media(tg)) == 3)
    assert isinstance(_media(tg)[2].media, types.InputMediaUploadedDocument)
    await platform.stop()


async def test_a_failure_shows_the_engines_message(engine):
    platform, tg = await _platform(engine)
    await tg.message("/image=preview=bad --steps 99", sender=ALICE)
    assert tg.sender.of(Edit)[-1].message == "❌ This model takes at most 50 steps; you asked for 99."
    engine.models["preview"].latency = 30
    await tg.message("/image=preview=to be cancelled", sender=ADMIN)
    await _until(lambda: tg.sender.of(Edit))
    job_id = next(iter(engine.jobs))
    await tg.message(f"/cancel {job_id}", sender=ADMIN)
    await _until(lambda: any(e.message.startswith("🚫 Cancelled") for e in tg.sender.of(Edit)))
    await platform.stop()


async def test_after_a_restart_the_same_status_message_is_updated_and_the_photo_sent_once(tmp_path):
    def build() -> Engine:
        settings = Settings(engine=EngineSettings(default_model="slow", rate_limit=None),
                            models={"slow": {"backend": "preview", "latency": 30, "area": 128 * 128}},
                            platforms={}, store={"path": str(tmp_path / "jobs.db")})
        return Engine(settings, create_plugin_host())

    first = build()
    await first.start()
    platform, tg = await _platform(first)
    command_id = await tg.message("/image=slow=survives a restart --seed 11", sender=ALICE)
    await _until(lambda: tg.sender.of(Edit))
    status_id = tg.sender.of(SendMessage)[0]
    status_message_id = max(tg.sender.messages)
    await first.stop(grace=0.05)
    await platform.stop()
    assert any(e.message.startswith("⏸ The bot is restarting") for e in tg.sender.of(Edit))
    second = build()
    second.models["slow"].latency = 0.02
    tg.client.remove_event_handler(platform._on_message)
    tg.client.remove_event_handler(platform._on_button)
    fresh = TelegramPlatform(_settings(), client=tg.client)
    await second.start()
    await fresh.start(second)
    await _until(lambda: _media(tg) and tg.sender.of(Delete))
    assert len(_media(tg)) == 1 and _media(tg)[0].reply_to.reply_to_msg_id == command_id
    assert "seed 11" in _media(tg)[0].message
    assert any(e.id == status_message_id for e in tg.sender.of(Edit)[-3:])
    assert status_id.message == "⏳ Queued"
    await fresh.stop()
    await second.stop()
    third = build()
    await third.start()
    assert await third.resume("telegram") == []  # delivered: never again
    await third.stop()


async def test_an_allowed_group_is_served_whoever_asks(engine):
    platform, tg = await _platform(engine, allowed_chats=[-900])
    await tg.message("/models", sender=BOB, chat_id=900)
    await tg.message("/models", sender=BOB)  # the same stranger in private: refused
    texts = [r.message for r in tg.sender.of(SendMessage)]
    assert texts[0].startswith("Models:") and texts[1] == REFUSAL
    await platform.stop()


def test_a_retired_max_flood_wait_still_loads_and_says_it_does_nothing(caplog):
    with caplog.at_level("WARNING"):
        TelegramSettings(enabled=False, max_flood_wait=10)
    assert "max_flood_wait has no effect" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        TelegramSettings(enabled=False)
    assert "max_flood_wait" not in caplog.text
