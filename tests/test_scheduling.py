"""Lanes, concurrency, fair and FIFO order, positions, cancel."""

from __future__ import annotations

import asyncio

import pytest

from core import JobNotFound, JobState
from core.types import EventKind
from tests.utils import EventRecorder, request, settle


async def test_a_job_runs_end_to_end(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory(plugins=[("rec", recorder)])
    handle = await engine.submit(request("a lighthouse", seed=7))
    image = await handle.result()
    assert image.data.startswith(b"\x89PNG") and image.seed == 7 and image.model == "a"
    assert recorder.kinds(handle.id) == ["queued", "generating", "progress", "done"]
    assert handle.job.state is JobState.DONE and "generate" in image.timings
    assert backend.models["a"].calls[0].prompt == "a lighthouse"
    assert handle.id not in engine.jobs


async def test_lanes_do_not_block_each_other(engine_factory):
    engine, backend = await engine_factory({"slow": {"backend": "fake"}, "fast": {"backend": "fake"}})
    backend.models["slow"].gate = asyncio.Event()
    blocked = await engine.submit(request(model="slow"))
    queued_behind = await engine.submit(request(model="slow", user="u2"))
    fast = await engine.submit(request(model="fast"))
    await asyncio.wait_for(fast.result(), 2)
    assert not blocked.finished and queued_behind.job.state is JobState.QUEUED


@pytest.mark.parametrize("configured", [None, 3])
async def test_concurrency_limit_holds(engine_factory, configured):
    model = {"backend": "fake", "latency": 0.02, "default_concurrency": 2}
    if configured:
        model["concurrency"] = configured
    engine, backend = await engine_factory({"a": model}, max_pending_per_user=50)
    handles = [await engine.submit(request(user=f"u{i % 4}")) for i in range(12)]
    await asyncio.gather(*(h.result() for h in handles))
    assert backend.models["a"].peak == (configured or 2)


async def _order_of_service(engine_factory, order: str) -> list[str]:
    engine, backend = await engine_factory(queue_order=order, max_pending_per_user=10)
    model = backend.models["a"]
    model.gate = asyncio.Event()
    first = await engine.submit(request("heavy-0", user="heavy"))
    await settle()
    heavy = [await engine.submit(request(f"heavy-{i}", user="heavy")) for i in range(1, 5)]
    light = await engine.submit(request("light", user="light"))
    model.gate.set()
    await asyncio.gather(*(h.result() for h in [first, *heavy, light]))
    return [call.prompt for call in model.calls]


async def test_fair_order_serves_a_light_user_after_one_heavy_job(engine_factory):
    served = await _order_of_service(engine_factory, "fair")
    assert served.index("light") == 2  # heavy-0 was running; heavy-1 was first in the rotation


async def test_fifo_order_serves_in_arrival_order(engine_factory):
    served = await _order_of_service(engine_factory, "fifo")
    assert served == ["heavy-0", "heavy-1", "heavy-2", "heavy-3", "heavy-4", "light"]


async def test_positions_are_pushed_as_they_change(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory(plugins=[("rec", recorder)], max_pending_per_user=10)
    model = backend.models["a"]
    model.gate = asyncio.Event()
    model.latency = 0.02  # real models take time, and positions are pushed between jobs
    handles = [await engine.submit(request(f"p{i}", user=f"u{i}")) for i in range(4)]
    await asyncio.sleep(0.01)
    last = handles[-1]
    assert last.job.position == 3
    model.gate.set()
    await asyncio.gather(*(h.result() for h in handles))
    positions = [e.position for e in recorder.events if e.job is last.job and e.kind is EventKind.POSITION]
    assert positions == [3, 2, 1]


async def test_snapshot_lists_waiting_jobs_in_service_order(engine_factory):
    engine, backend = await engine_factory(max_pending_per_user=10)
    backend.models["a"].gate = asyncio.Event()
    await engine.submit(request("run", user="x"))
    await settle()
    for prompt, user in [("x1", "x"), ("x2", "x"), ("y1", "y")]:
        await engine.submit(request(prompt, user=user))
    waiting = engine.snapshot()["a"].waiting
    assert [w.user_key for w in waiting] == ["test:x", "test:y", "test:x"]
    assert [w.position for w in waiting] == [1, 2, 3]


async def test_cancel_a_waiting_job_never_runs_it(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory(plugins=[("rec", recorder)])
    backend.models["a"].gate = asyncio.Event()
    await engine.submit(request("first", user="other"))
    await settle()
    mine = await engine.submit(request("mine"))
    cancelled = await engine.cancel(mine.id[:6], mine.job.request.requester)
    assert cancelled is mine.job and mine.job.state is JobState.CANCELLED
    backend.models["a"].gate.set()
    await asyncio.sleep(0.01)
    assert [c.prompt for c in backend.models["a"].calls] == ["first"]
    assert recorder.kinds(mine.id)[-1] == "cancelled"


async def test_cancel_a_running_job_stops_the_model(engine_factory):
    engine, backend = await engine_factory()
    backend.models["a"].gate = asyncio.Event()
    handle = await engine.submit(request())
    await settle()
    assert handle.job.state is JobState.GENERATING
    await engine.cancel(None, handle.job.request.requester)
    with pytest.raises(Exception) as caught:
        await handle.result()
    assert caught.value.user_message == "Cancelled."
    assert backend.models["a"].active == 0
    again = await engine.submit(request("next"))
    backend.models["a"].gate.set()
    await asyncio.wait_for(again.result(), 2)


async def test_only_the_owner_or_an_admin_may_cancel(engine_factory):
    engine, backend = await engine_factory()
    backend.models["a"].gate = asyncio.Event()
    handle = await engine.submit(request(user="alice"))
    stranger = request(user="mallory").requester
    with pytest.raises(JobNotFound):
        await engine.cancel(handle.id, stranger)
    admin = request(user="root", admin=True).requester
    await engine.cancel(handle.id, admin)
    assert handle.job.state is JobState.CANCELLED
    assert handle.job.error.user_message == "Cancelled by an admin."


async def test_cancel_of_an_ambiguous_or_unknown_id_is_a_clear_error(engine_factory):
    engine, _ = await engine_factory()
    with pytest.raises(JobNotFound, match="no job"):
        await engine.cancel(None, request().requester)
    with pytest.raises(JobNotFound, match="No such job"):
        await engine.cancel("ffff", request().requester)
