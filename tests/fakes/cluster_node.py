"""Processes of a test cluster: front ends that submit and deliver, workers that generate, one Redis.

``python -m tests.fakes.cluster_node front SETTINGS.json NAME COUNT SENT`` is a front end with no
worker of its own: on its first start it submits ``COUNT`` jobs (prompts ``NAME-<n>``) and touches
``SENT.submitted``; on every start it resumes what its store holds. It "delivers" every finished
job by appending ``<job id> <prompt>`` to ``SENT`` (fsync'd), between ``begin_delivery`` and
``delivered`` exactly as a platform does, and exits 0 once every job it follows has ended.

``python -m tests.fakes.cluster_node worker SETTINGS.json`` is ``sakaibot worker`` (the CLI's own
``cmd_worker``) with the ``latency`` backend loaded: it serves until SIGTERM/SIGINT.

The ``latency`` backend sleeps ``latency`` seconds per image (``slow_latency`` for prompts with
``slow``), and records in Redis every run (``{test}:runs``: ``<prompt> <pid>``) and the peak number
of generations running at once across every process (``{test}:active`` / ``{test}:peak``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core import BackendType, Engine, GenerationRequest, Image, ImageRequest, JobHandle, Progress, Requester
from core.cli import cmd_worker
from core.config import Settings
from core.hooks.host import create_plugin_host
from core.hookspecs import hookimpl
from core.types import EventKind
from tests.utils import PNG, FakeModel, FakeSettings

RUNS, ACTIVE, PEAK = "{test}:runs", "{test}:active", "{test}:peak"
ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""
SEND_SECONDS = 0.002
BOOKKEEPING_ATTEMPTS = 200  # x 0.1 s
FOLLOW_LIMIT = 120.0  # seconds a front end waits for its jobs before giving up (a hung test fails, not hangs)


class LatencySettings(FakeSettings):
    """``[models.<name>]`` of the latency backend."""

    slow_latency: float = 1.0
    slots: int = 0  # images this process's backend makes at once (0: no limit), like one GPU box


class LatencyModel(FakeModel):
    """Answers after a fixed wait, and counts runs and cluster-wide parallelism in Redis."""

    def __init__(self, name: str, settings: LatencySettings) -> None:
        super().__init__(name, settings)
        self.slow_latency = settings.slow_latency
        self.redis = Redis.from_url(os.environ["CLUSTER_TEST_REDIS"], decode_responses=True)
        self.enter = self.redis.register_script(ENTER)
        self.slots = asyncio.Semaphore(settings.slots) if settings.slots else None

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Record the run, wait, answer."""
        await self._bookkeep(lambda: self.redis.rpush(RUNS, f"{request.prompt} {os.getpid()}"))
        entered = asyncio.ensure_future(self._bookkeep(lambda: self.enter(keys=[ACTIVE, PEAK])))
        try:
            await asyncio.shield(entered)
            async with self.slots or contextlib.nullcontext():
                await asyncio.sleep(self.slow_latency if "slow" in request.prompt else self.latency)
            await progress(0.5)
            return Image(PNG, "image/png", 8, 8, seed=request.seed, model=self.name)
        finally:  # counted out even when a cancel lands mid-call: the peak and active counts stay exact
            await asyncio.shield(self._leave(entered))

    async def _leave(self, entered: asyncio.Future[None]) -> None:
        await entered
        await self._bookkeep(lambda: self.redis.decr(ACTIVE))

    async def _bookkeep(self, command: Callable[[], Awaitable[Any]]) -> None:
        """The test's own records ride out a Redis restart too (bounded): they are not the backend's work."""
        for _ in range(BOOKKEEPING_ATTEMPTS):
            try:
                await command()
                return
            except (RedisConnectionError, OSError):
                await asyncio.sleep(0.1)
        raise RuntimeError("the test's Redis stayed away")

    async def aclose(self) -> None:
        """Close the counter connection."""
        await self.redis.aclose()


class LatencyBackend:
    """Registers the ``latency`` backend."""

    @hookimpl
    def register_image_models(self, register: Callable[[BackendType], None], engine: Engine) -> None:
        """Offer the latency backend."""
        register(BackendType("latency", lambda name, settings, engine: LatencyModel(name, settings),
                             LatencySettings, "test double for cluster tests"))


def build(settings_file: Path) -> Engine:
    """An engine from a JSON dump of settings, with the latency backend."""
    settings = Settings(**json.loads(settings_file.read_text(encoding="utf-8")))
    host = create_plugin_host(load_entry_points=False, extra=[("latency-backend", LatencyBackend())])
    return Engine(settings, host)


async def deliver(engine: Engine, handle: JobHandle, sent: Path) -> None:
    """On DONE send once (or not at all if the store says it was sent)."""
    final = await handle.wait()
    if final.kind is not EventKind.DONE or not await engine.begin_delivery(handle.id):
        return
    await asyncio.sleep(SEND_SECONDS)
    await asyncio.to_thread(_append, sent, f"{handle.id} {handle.job.request.prompt}\n")
    await engine.delivered(handle.id)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())


async def front(settings_file: Path, name: str, count: int, sent: Path) -> None:
    """Resume, submit on the first start, deliver everything, exit."""
    marker = sent.with_suffix(".submitted")
    engine = build(settings_file)
    engine.local_worker = False
    await engine.start()
    try:
        handles = await engine.resume("cluster")
        if not await asyncio.to_thread(marker.exists):
            for n in range(count):
                who = Requester(platform="cluster", user_id=f"{name}-u{n % 7}", chat_id="c")
                handles.append(await engine.submit(ImageRequest(prompt=f"{name}-{n}", requester=who)))
            await asyncio.to_thread(marker.touch)
        async with asyncio.timeout(FOLLOW_LIMIT):
            await asyncio.gather(*(deliver(engine, h, sent) for h in handles))
    finally:
        await engine.stop(grace=5)


def main(argv: list[str]) -> int:
    """``front SETTINGS NAME COUNT SENT`` or ``worker SETTINGS``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("front", "worker"))
    parser.add_argument("settings", type=Path)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args(argv)
    if args.role == "front":
        name, count, sent = args.rest
        asyncio.run(front(args.settings, name, int(count), Path(sent)))
        return 0
    if os.environ.get("CLUSTER_TEST_LOG"):
        logging.basicConfig(level=os.environ["CLUSTER_TEST_LOG"], format="%(asctime)s %(name)s %(message)s")
    engine = build(args.settings)
    worker_args: Any = argparse.Namespace(models=None)
    return asyncio.run(cmd_worker(engine, worker_args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
