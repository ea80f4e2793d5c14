"""Time from an incoming Telegram command to the first status that follows admission, N at once.

A real Telethon client with a fake MTProto sender (tests/fakes/telegram.py). Every update is
dispatched in its own task, as Telethon does, all at once; the figure ends at the first status
that says where the job stands (the edit after ``submit``), not the "⏳ Queued" sent before the
engine is involved. The baseline, a bare Telethon handler that only replies, is measured the same
way in the same run. ``python -m tests.benchmarks.telegram_bench`` prints 100 and 1,000.
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
from tests.benchmarks.engine_bench import Row, render
from tests.fakes.telegram import OfflineTelegram, user

ADMITTED = ("⏳ Queued for", "🎨 Generating", "✨ Enhancing")


async def _dispatch_all(tg: OfflineTelegram, commands: int) -> dict[int, float]:
    """One task per update, all arriving together; command message id → arrival time."""
    users = [user(10_000 + n, f"user{n}") for n in range(commands)]
    for u in users:
        tg.know(u)
    started: dict[int, float] = {}

    async def one(n: int, arrived: float) -> None:
        started[await tg.message(f"/image=preview=benchmark {n}", sender=users[n])] = arrived

    # Every update arrives now; each waits its turn on the event loop, as under a real burst.
    await asyncio.gather(*(asyncio.create_task(one(n, time.perf_counter())) for n in range(commands)))
    return started


async def _wait_for(tg: OfflineTelegram, count: int, ready) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(120):
        while ready() < count:  # noqa: ASYNC110 - the fake sender only records
            await asyncio.sleep(0.005)


def _first_admitted(tg: OfflineTelegram, started: dict[int, float]) -> list[float]:
    """Per command: when the first status after admission reached Telegram."""
    command_of = {mid: m.reply_to.reply_to_msg_id for mid, m in tg.sender.messages.items() if m.reply_to}
    firsts: dict[int, float] = {}
    for request, at in zip(tg.sender.requests, tg.sender.sent_at, strict=True):
        if isinstance(request, functions.messages.EditMessageRequest) and request.message.startswith(ADMITTED):
            command = command_of.get(request.id)
            if command is not None and command not in firsts:
                firsts[command] = at
    return [firsts[c] - begun for c, begun in started.items() if c in firsts]


async def through_adapter(commands: int) -> list[float]:
    """The SakaiBot adapter and engine (preview model, slow enough that nothing finishes first)."""
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, max_queue_per_lane=100_000),
                        models={"preview": {"backend": "preview", "latency": 5}}, platforms={})
    async with Engine(settings, create_plugin_host()) as engine:
        tg = OfflineTelegram()
        platform = TelegramPlatform(TelegramSettings(edit_interval=2.5), client=tg.client)
        await platform.start(engine)
        started = await _dispatch_all(tg, commands)
        await _wait_for(tg, commands, lambda: len(_first_admitted(tg, started)))
        latencies = _first_admitted(tg, started)
        await platform.stop()
        await engine.stop(grace=0)
    return latencies


async def bare_handler(commands: int) -> list[float]:
    """A Telethon handler that replies at once and does nothing else."""
    tg = OfflineTelegram()

    async def reply(event: events.NewMessage.Event) -> None:
        await event.reply("⏳ Queued for preview")

    tg.client.add_event_handler(reply, events.NewMessage())
    started = await _dispatch_all(tg, commands)
    replies = lambda: [(r, at) for r, at in zip(tg.sender.requests, tg.sender.sent_at, strict=True)  # noqa: E731
                       if isinstance(r, functions.messages.SendMessageRequest)]
    await _wait_for(tg, commands, lambda: len(replies()))
    return [at - started[r.reply_to.reply_to_msg_id] for r, at in replies()]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(commands: int = 100) -> list[Row]:
    """p50 and p99 in milliseconds, adapter against bare handler."""
    await bare_handler(10)  # warm-up
    adapter, bare = await through_adapter(commands), await bare_handler(commands)
    return [
        Row(f"telegram: command → admitted status, p50 ({commands})", statistics.median(adapter) * 1000, "ms",
            statistics.median(bare) * 1000, "bare Telethon reply", "-"),
        Row(f"telegram: command → admitted status, p99 ({commands})", _percentile(adapter, 0.99) * 1000, "ms",
            _percentile(bare, 0.99) * 1000, "bare Telethon reply", "≤ 50 ms at 1000"),
    ]


async def _both() -> list[Row]:
    return await run(100) + await run(1000)


if __name__ == "__main__":
    print(render(asyncio.run(_both())))
