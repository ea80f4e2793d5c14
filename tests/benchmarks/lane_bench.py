"""A lane against a backend that serves C requests at once with latency L: does it reach C/L?

The fake Workers AI runs on 127.0.0.1, in its own process, with C slots of L seconds each. The engine's lane runs
at concurrency C; the original design's single worker (one request at a time) is measured
beside it in the same run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from tests.benchmarks.engine_bench import Row
from tests.fakes.workers_ai import ACCOUNT, SDXL, TOKEN
from tests.utils import request


async def images_per_second(base_url: str, concurrency: int, jobs: int) -> float:
    """Images per second through the whole engine with a lane of ``concurrency``."""
    os.environ.setdefault("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    os.environ.setdefault("CLOUDFLARE_API_TOKEN", TOKEN)
    model = {"backend": "cloudflare", "model": SDXL, "base_url": base_url, "concurrency": concurrency}
    settings = Settings(engine=EngineSettings(default_model="sdxl", rate_limit=None, max_pending_per_user=1000),
                        models={"sdxl": model}, platforms={})
    async with Engine(settings, create_plugin_host()) as engine:
        warm = [await engine.submit(request(f"warm{i}", user=f"w{i}")) for i in range(concurrency)]
        for handle in warm:  # a running bot has its connections open already
            await handle.result()
        started = time.perf_counter()
        handles = [await engine.submit(request(f"p{i}", user=f"u{i % 16}")) for i in range(jobs)]
        for handle in handles:
            await handle.result()
        return jobs / (time.perf_counter() - started)


async def run(slots: int = 8, latency: float = 1.0, rounds: int = 4) -> list[Row]:
    """Both lanes against the same fake server; rows for the table."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.workers_ai", str(slots), str(latency), stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        base_url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        ideal = slots / latency
        lane = await images_per_second(base_url, slots, slots * rounds)
        single = await images_per_second(base_url, 1, 3)
    finally:
        server.terminate()
        await server.wait()
    return [
        Row(f"lane of {slots} vs backend C={slots}, L={latency:g}s", lane, "img/s", ideal, "C/L", "≥ 0.97 of C/L"),
        Row("one-at-a-time lane (original design)", single, "img/s", ideal, "C/L", "-"),
        Row("lane of C over one-at-a-time", lane / single, "x", float(slots), "C", "≈ C"),
        Row("overhead per request, one at a time", (1 / single - latency) * 1000, "ms", latency * 1000, "L",
            "≪ L"),
    ]
