"""The ETA a queued status shows: position × recent duration ÷ concurrency, nothing before there is data."""

from __future__ import annotations

import asyncio

from core.chat.messages import duration, status_text
from core.types import EventKind
from tests.utils import EventRecorder, request


async def test_no_eta_before_any_job_finished_then_position_times_recent_duration(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory({"a": {"backend": "fake", "concurrency": 2}}, plugins=[("rec", recorder)],
                                           max_pending_per_user=50)
    first = await engine.submit(request("first"))
    assert [e.eta for e in recorder.events if e.job.id == first.id and e.kind is EventKind.QUEUED] == [None]
    await first.wait()
    for _ in range(40):  # as if the model's recent jobs took 20 s each
        engine.lanes.record("a", 20.0)
    backend.models["a"].gate = asyncio.Event()
    handles = [await engine.submit(request(f"p{n}", user=f"u{n}")) for n in range(6)]
    await asyncio.sleep(0.05)  # a position pass
    last = [e for e in recorder.events if e.job.id == handles[-1].id and e.kind is EventKind.POSITION][-1]
    assert last.position == 4 and abs(last.eta - 4 * 20.0 / 2) < 0.01  # two run, four wait; two slots
    assert status_text(last).endswith("position 4 - about 40 s")
    backend.models["a"].gate.set()
    await asyncio.gather(*(h.wait() for h in handles))


def test_waits_are_said_as_people_say_them():
    assert [duration(s) for s in (1, 12, 44, 59, 61, 150, 3599, 3600, 5400)] == [
        "5 s", "10 s", "45 s", "60 s", "1 min", "2 min", "60 min", "1 h", "1.5 h"]


async def test_the_moving_average_follows_recent_jobs(engine_factory):
    from core.engine.lanes import SMOOTHING

    engine, _ = await engine_factory()
    engine.lanes.record("a", 10.0)
    engine.lanes.record("a", 20.0)
    assert engine.lanes.eta("a", 1) == 10.0 + SMOOTHING * 10.0
    assert engine.lanes.eta("a", 0) is None
