"""Previews shown per minute, per platform, for a model that reports a preview every 100 ms.

The real Telethon client (fake sender) and the real discord.py client (fake Discord) with their
default ``preview_interval`` and ``edit_interval``; time runs ``SCALE`` times faster, so two
minutes of generation take about a second. The baseline is what the model reports (600 a
minute): the figures show how much of that reaches users. ``python -m tests.benchmarks.preview_bench``.
"""

from __future__ import annotations

import asyncio

import discord
from telethon.tl import functions

from platforms.discord.platform import DiscordPlatform
from platforms.discord.settings import DiscordSettings
from platforms.telegram.platform import TelegramPlatform
from platforms.telegram.settings import TelegramSettings
from tests.fakes.discord import FakeDiscord, user_payload
from tests.fakes.telegram import OfflineTelegram, ScaledClock, user
from tests.test_previews import _engine, _until

SCALE = 100
STEPS = 1200  # two minutes of previews every 100 ms
ALICE = user(501, "Alice")
Edit = functions.messages.EditMessageRequest


def per_minute(times: list[float]) -> float:
    """Events per minute over the span they cover."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0]) * 60


async def telegram(group: bool) -> tuple[float, float, int]:
    """Previews and status edits per minute, and the busiest minute of the chat."""
    tg = OfflineTelegram(scale=SCALE)
    engine = await _engine(tg.clock, steps=STEPS)
    platform = TelegramPlatform(TelegramSettings(enabled=False), client=tg.client, clock=tg.clock)
    await platform.start(engine)
    chat = -900 if group else ALICE.id
    await tg.message("/image a measured cat", sender=ALICE, chat_id=900 if group else None)
    await _until(lambda: bool(tg.sender.deleted) and len(tg.sender.of(functions.messages.SendMediaRequest)) >= 2,
                 limit=120)
    await platform.stop()
    await engine.stop(grace=0.5)
    previews = sorted(t for times in tg.sender.media_edits.values() for t in times)
    statuses = [r for r in tg.sender.of(Edit) if r.media is None]
    minutes = (previews[-1] - previews[0]) / 60 if len(previews) > 1 else 1.0
    return per_minute(previews), len(statuses) / max(minutes, 1e-9), tg.sender.per_minute(chat)


async def discord_rate() -> tuple[float, float]:
    """Preview edits and status edits of the deferred response per minute."""
    fake = await FakeDiscord().start()
    discord.http.Route.BASE = f"{fake.root}/api/v10"
    clock = ScaledClock(SCALE)
    engine = await _engine(clock, steps=STEPS)
    config = DiscordSettings(enabled=True, token="fake-token", api_base=f"{fake.root}/api/v10",
                             gateway=f"{fake.root.replace('http', 'ws')}/gw")
    platform = DiscordPlatform(config, clock=clock, guild_ready_timeout=0.05)
    await platform.start(engine)
    token = await fake.slash("image", user_payload(601, "alice"), prompt="a measured cat")
    await _until(lambda: any(c.json and c.json.get("attachments") == [] for c in fake.for_token(token)), limit=120)
    await platform.stop()
    await engine.stop(grace=0.5)
    await fake.stop()
    calls = [c for c in fake.for_token(token) if c.method == "PATCH"]
    previews = [c.at * SCALE for c in calls if c.files]
    statuses = [c for c in calls if not c.files and c.json and "attachments" not in c.json]
    minutes = (previews[-1] - previews[0]) / 60 if len(previews) > 1 else 1.0
    return per_minute(previews), len(statuses) / max(minutes, 1e-9)


async def main() -> None:
    """Print the figures."""
    print(f"model: a preview every 100 ms = 600 a minute, {STEPS / 600:.0f} min of generation, time x{SCALE}")
    for group in (False, True):
        previews, statuses, busiest = await telegram(group)
        where = "group (20 a minute)" if group else "private chat"
        print(f"telegram {where:<20} previews/min {previews:5.1f}  status edits/min {statuses:5.1f}"
              f"  busiest minute of the chat {busiest}")
    previews, statuses = await discord_rate()
    print(f"discord  {'deferred response':<20} previews/min {previews:5.1f}  status edits/min {statuses:5.1f}")


if __name__ == "__main__":
    asyncio.run(main())
