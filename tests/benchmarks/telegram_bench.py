"""Time from an incoming Telegram command to its first status message, 100 at once.

A real Telethon client with a fake MTProto sender (tests/fakes/telegram.py); the baseline is a
bare Telethon handler that only replies, measured the same way in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from telethon import events
from telethon.tl import functions

from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from platforms.telegram.platform import TelegramPlatform
from platforms.telegram.settings import TelegramSettings
from tests.benchmarks.engine_bench import Row
from tests.fakes.telegram import OfflineTelegram, user


async def _first_status_latencies(tg: OfflineTelegram, commands: int) -> list[float]:
    users = [user(10_000 + n, f"user{n}") for n in range(commands)]
    for u in users:
        tg.know(u)
    sent: dict[int, float] = {}

    async def one(n: int) -> None:
        started = time.perf_counter()
        message_id = await tg.message(f"/image=preview=benchmark {n}", sender=users[n])
        sent[message_id] = started

    await asyncio.gather(*(one(n) for n in range(commands)))
    async with asyncio.timeout(30):
        while len(_replies(tg)) < commands:  # noqa: ASYNC110 - the fake sender only records
            await asyncio.sleep(0.005)
    return [at - sent[request.reply_to.reply_to_msg_id] for request, at in _replies(tg)]


def _replies(tg: OfflineTelegram) -> list[tuple[functions.messages.SendMessageRequest, float]]:
    return [(r, at) for r, at in zip(tg.sender.requests, tg.sender.sent_at, strict=True)
            if isinstance(r, functions.messages.SendMessageRequest)]


async def through_adapter(commands: int) -> list[float]:
    """The SakaiBot adapter and engine (preview model, slow enough that nothing finishes first)."""
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, max_queue_per_lane=10_000),
                        models={"preview": {"backend": "preview", "latency": 5}}, platforms={})
    async with Engine(settings, create_plugin_host()) as engine:
        tg = OfflineTelegram()
        platform = TelegramPlatform(TelegramSettings(edit_interval=2.5), client=tg.client)
        await platform.start(engine)
        latencies = await _first_status_latencies(tg, commands)
        await platform.stop()
        await engine.stop(grace=0)
    return latencies


async def bare_handler(commands: int) -> list[float]:
    """A Telethon handler that replies at once and does nothing else."""
    tg = OfflineTelegram()

    async def reply(event: events.NewMessage.Event) -> None:
        await event.reply("⏳ Queued")

    tg.client.add_event_handler(reply, events.NewMessage())
    return await _first_status_latencies(tg, commands)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(commands: int = 100) -> list[Row]:
    """p50 and p99 in milliseconds, adapter against bare handler."""
    await bare_handler(10)  # warm-up
    adapter, bare = await through_adapter(commands), await bare_handler(commands)
    return [
        Row(f"telegram: command → status, p50 ({commands})", statistics.median(adapter) * 1000, "ms",
            statistics.median(bare) * 1000, "bare Telethon reply", "-"),
        Row(f"telegram: command → status, p99 ({commands})", _percentile(adapter, 0.99) * 1000, "ms",
            _percentile(bare, 0.99) * 1000, "bare Telethon reply", "-"),
    ]
