"""A bot process for crash tests: a real engine and SQLite store, a platform stand-in that records sends.

Run as ``python -m tests.fakes.crashy_bot DB SENT PROMPTS``: on every start it resumes what the store
holds; on its first start (no ``DB`` yet) it submits one job per line of ``PROMPTS``. Each "send"
takes a few milliseconds (like an upload) and then appends ``<job id> <prompt>`` to ``SENT`` with an
fsync, between ``begin_delivery`` and ``delivered`` exactly as a platform does. A prompt containing
``poison`` kills the process while it is being generated. The process exits 0 once every job it
follows has been delivered or has failed. The parent kills it with SIGKILL at random moments.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from core import Engine, GenerationRequest, Image, ImageRequest, JobHandle, Progress, Requester
from core.config import EngineSettings, Settings, StoreSettings
from core.hooks.host import create_plugin_host
from core.types import EventKind
from tests.utils import PNG, FakeBackendPlugin, FakeModel

SEND_SECONDS = 0.004


class CrashyModel(FakeModel):
    """Takes a little time per image; a poison prompt kills the whole process."""

    ready: asyncio.Event | None = None  # set by main once every job is acknowledged; poison waits for it

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Kill the process for poison (once every job is submitted), else answer after a short wait."""
        if "poison" in request.prompt:
            if CrashyModel.ready is not None:
                await CrashyModel.ready.wait()
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(0.003)
        return Image(PNG, "image/png", 8, 8, seed=request.seed, model=self.name)


class CrashyBackend(FakeBackendPlugin):
    """The fake backend, with crashy models."""

    def _create(self, name: str, settings: object, engine: object) -> FakeModel:
        model = CrashyModel(name, settings)  # type: ignore[arg-type]
        self.models[name] = model
        return model


class Recorder:
    """Delivers by appending to a file, honouring the engine's delivery marks."""

    def __init__(self, engine: Engine, sent: Path) -> None:
        self.engine = engine
        self.sent = sent

    async def follow(self, handle: JobHandle) -> None:
        """Wait for the end; on DONE send once (or not at all if the store says it was sent)."""
        final = await handle.wait()
        if final.kind is not EventKind.DONE or not await self.engine.begin_delivery(handle.id):
            return
        await asyncio.sleep(SEND_SECONDS)  # the upload
        await asyncio.to_thread(self._append, f"{handle.id} {handle.job.request.prompt}\n")
        await self.engine.delivered(handle.id)

    def _append(self, line: str) -> None:
        with self.sent.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())


def build(db: Path) -> Engine:
    """An engine with the crashy model and the store at ``db``."""
    settings = Settings(engine=EngineSettings(default_model="a", rate_limit=None, max_pending_per_user=10_000,
                                              max_crashes=2),
                        models={"a": {"backend": "fake", "concurrency": 2}}, platforms={},
                        store=StoreSettings(path=str(db)))
    host = create_plugin_host(load_entry_points=False, extra=[("fake-backend", CrashyBackend())])
    return Engine(settings, host)


async def main(db: Path, sent: Path, prompts: Path) -> None:
    """Resume or submit, follow everything to its end, exit."""
    marker = db.with_suffix(".submitted")
    first = not await asyncio.to_thread(marker.exists)
    ready = CrashyModel.ready = asyncio.Event()
    engine = build(db)
    await engine.start()
    recorder = Recorder(engine, sent)
    handles = await engine.resume("crash")
    if first:
        who = Requester(platform="crash", user_id="u", chat_id="c")
        for line in (await asyncio.to_thread(prompts.read_text, encoding="utf-8")).splitlines():
            handles.append(await engine.submit(ImageRequest(prompt=line, requester=who)))
        await asyncio.to_thread(marker.touch)  # the parent starts killing only once every job is acknowledged
    ready.set()
    await asyncio.gather(*(recorder.follow(h) for h in handles))
    await engine.stop(grace=5)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
