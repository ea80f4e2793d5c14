"""Time from N simultaneous ``/image`` interactions to the first status that follows admission.

The real discord.Client against the fake Discord (tests/fakes/discord.py) in the same process and
event loop, so every figure includes the fake's own work; the fake keeps Discord's 3-second
acknowledgement deadline. The adapter's figure ends at the first edit of the deferred response
that says where the job stands; the baseline, a bare discord.py command that only defers,
measured the same way, shows the floor. ``python -m tests.benchmarks.discord_bench`` prints 1,000.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import discord
import yarl
from discord import app_commands

from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from platforms.discord.platform import DiscordPlatform
from platforms.discord.settings import DiscordSettings
from tests.benchmarks.engine_bench import Row, render
from tests.fakes.discord import FakeDiscord, user_payload

ADMITTED = ("⏳ Queued for", "🎨 Generating", "✨ Enhancing")


async def _send_all(fake: FakeDiscord, count: int) -> dict[str, float]:
    """Every interaction dispatched at once; token → arrival time."""
    started: dict[str, float] = {}

    async def one(n: int, arrived: float) -> None:
        token = await fake.slash("image", user_payload(700 + n, f"user{n}"), prompt=f"benchmark {n}")
        started[token] = arrived

    await asyncio.gather(*(one(n, time.perf_counter()) for n in range(count)))
    return started


async def _times(fake: FakeDiscord, started: dict[str, float], answered) -> list[float]:  # type: ignore[no-untyped-def]
    """Latencies of the answered ones, once all are answered or nothing has moved for 5 s (missed)."""
    seen, still = -1, 0
    while len(answered()) < len(started) and still < 1000:
        still = still + 1 if len(answered()) == seen else 0
        seen = len(answered())
        await asyncio.sleep(0.005)
    at = answered()
    return [at[token] - begun for token, begun in started.items() if token in at]


def _first_admitted(fake: FakeDiscord) -> dict[str, float]:
    firsts: dict[str, float] = {}
    for call in fake.calls:
        if call.method == "PATCH" and call.path.startswith("/webhooks/") and (call.json or {}).get(
                "content", "").startswith(ADMITTED):
            firsts.setdefault(call.path.split("/")[3], call.at)
    return firsts


def _deferred(fake: FakeDiscord) -> dict[str, float]:
    return {c.path.split("/")[3]: c.at for c in fake.calls_to("/callback")}


def _point_at(fake: FakeDiscord) -> tuple[str, yarl.URL]:
    old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"{fake.root}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"{fake.root.replace('http', 'ws')}/gw")
    return old


def _restore(old: tuple[str, yarl.URL]) -> None:
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old


async def through_adapter(count: int) -> list[float]:
    """SakaiBot's adapter with the engine behind it."""
    fake = await FakeDiscord().start()
    old = _point_at(fake)
    settings = Settings(engine=EngineSettings(default_model="preview", rate_limit=None, max_pending_per_user=10,
                                              max_queue_per_lane=100_000),
                        models={"preview": {"backend": "preview", "latency": 5}}, platforms={})
    try:
        async with Engine(settings, create_plugin_host()) as engine:
            platform = DiscordPlatform(DiscordSettings(token="t", edit_interval=60), guild_ready_timeout=0.05)
            await platform.start(engine)
            times = await _times(fake, await _send_all(fake, count), lambda: _first_admitted(fake))
            await platform.stop()
            await engine.stop(grace=0)
    finally:
        _restore(old)
        await fake.stop()
    return times


async def bare_client(count: int) -> list[float]:
    """A discord.py command that defers and does nothing else."""
    fake = await FakeDiscord().start()
    old = _point_at(fake)
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)

    @tree.command(name="image", description="bare")
    async def image(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)

    try:
        await client.login("t")
        await tree.sync()
        runner = asyncio.create_task(client.connect())
        await client.wait_until_ready()
        times = await _times(fake, await _send_all(fake, count), lambda: _deferred(fake))
        await client.close()
        await asyncio.gather(runner, return_exceptions=True)
    finally:
        _restore(old)
        await fake.stop()
    return times


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def run(count: int = 100) -> list[Row]:
    """p50 and p99 in milliseconds."""
    await bare_client(10)  # warm-up: imports, first connections
    await through_adapter(10)
    runs = [(await through_adapter(count), await bare_client(count)) for _ in range(2)]  # alternated
    adapter = min((times for times, _ in runs), key=_p99)
    bare = min((times for _, times in runs), key=_p99)
    answered = f"{len(adapter)}/{count} answered"
    return [
        Row(f"discord: /image → admitted status, p50 ({count}), best of 2", statistics.median(adapter) * 1000,
            "ms", statistics.median(bare) * 1000, "bare discord.py defer", "-"),
        Row(f"discord: /image → admitted status, p99 ({count}, {answered}), best of 2", _p99(adapter) * 1000, "ms",
            _p99(bare) * 1000, "bare discord.py defer", "≤ 50 ms"),
    ]


if __name__ == "__main__":
    print(render(asyncio.run(run(1000))))
