"""The engine with its real SQLite store under faults: refusals instead of silent loss, atomic quotas."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from core import JobHandle, QuotaExceeded, StoreError, StoreUnavailable, UserError
from core.types import EventKind, JobState
from tests.utils import make_engine, request

ROOT = Path(__file__).resolve().parent.parent
BOUND = 10.0  # seconds before a step counts as hung (never a speed check)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every 10 ms, at most 500 times (a bounded wait, not a speed check)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)


@pytest.fixture
async def stored(tmp_path):
    """Build started engines on a real store file in tmp_path; always stopped."""
    made = []

    async def build(**settings):
        store = {"path": str(tmp_path / "jobs.db"), "busy_timeout": settings.pop("busy_timeout", 0.3)}
        engine, backend = make_engine(store=store, **settings)
        made.append(engine)
        await engine.start()
        return engine, backend.models["a"]

    yield build
    for engine in made:
        for model in engine.models.values():
            if getattr(model, "gate", None) is not None:
                model.gate.set()
        await engine.stop(grace=1)


async def test_a_daily_quota_of_3_admits_exactly_3_of_100_concurrent_requests(stored):
    engine, model = await stored(daily_quota=3, max_pending_per_user=1000)
    model.gate = asyncio.Event()
    results = await asyncio.gather(*(engine.submit(request(f"p{n}")) for n in range(100)), return_exceptions=True)
    admitted = [r for r in results if isinstance(r, JobHandle)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(admitted) == 3 and len(refused) == 97
    assert "3 a images for today" in refused[0].user_message


async def test_a_cancelled_waiting_job_gives_its_quota_back(stored):
    engine, model = await stored(daily_quota=2, max_pending_per_user=10)
    model.gate = asyncio.Event()
    first, second = await engine.submit(request("one")), await engine.submit(request("two"))
    with pytest.raises(QuotaExceeded):
        await engine.submit(request("three"))
    await engine.cancel(second.id, second.job.request.requester)
    third = await engine.submit(request("three"))
    model.gate.set()
    assert (await asyncio.wait_for(third.wait(), BOUND)).kind is EventKind.DONE
    await asyncio.wait_for(first.wait(), BOUND)


async def test_a_locked_database_refuses_the_request_instead_of_acknowledging_it_unsaved(stored, tmp_path):
    engine, _ = await stored()
    engine.health.probe_every = 0.05
    other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as refused:
            await asyncio.wait_for(engine.submit(request()), BOUND)
        assert "try again" in refused.value.user_message.lower()
        assert not engine.jobs and engine.table.pending == {} and engine.queue.waiting("a") == 0
        with pytest.raises(StoreUnavailable):  # the engine stops admitting until the store works again
            await engine.submit(request())
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.wait_for(engine.health.writable.wait(), BOUND)  # the probe found the store writable again
    assert not engine.health.failing
    handle = await engine.submit(request())
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE


async def test_cancel_racing_a_locked_final_write_returns_at_once_and_the_row_ends_done(stored, tmp_path):
    engine, model = await stored(busy_timeout=5)
    model.gate = asyncio.Event()
    handle = await engine.submit(request())
    await _until(lambda: bool(model.calls))  # the run has been recorded and the model is waiting
    other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # the final write will wait on this lock
    model.gate.set()
    await _until(lambda: engine.events.finishing(handle.job))
    with pytest.raises(UserError, match="already finished"):
        await asyncio.wait_for(engine.cancel(handle.id, handle.job.request.requester), 1.0)
    other.execute("ROLLBACK")
    other.close()
    final = await asyncio.wait_for(handle.wait(), BOUND)
    assert final.kind is EventKind.DONE and engine.table.pending == {}
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        assert db.execute("SELECT state FROM jobs WHERE id = ?", (handle.id,)).fetchone()[0] == "done"


async def test_attempts_are_on_record_before_the_model_runs(stored, tmp_path):
    engine, model = await stored()
    model.gate = asyncio.Event()
    handle = await engine.submit(request())
    await _until(lambda: bool(model.calls))
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        state, runs = db.execute("SELECT state, runs FROM jobs WHERE id = ?", (handle.id,)).fetchone()
    assert state == JobState.GENERATING.value and runs == 1
    model.gate.set()
    await asyncio.wait_for(handle.wait(), BOUND)


async def test_delivered_images_leave_the_store_and_recent_jobs_keep_no_bytes(stored, tmp_path):
    engine, _ = await stored()
    handle = await engine.submit(request())
    await asyncio.wait_for(handle.wait(), BOUND)
    assert await engine.begin_delivery(handle.id) and await engine.delivered(handle.id)
    assert not await engine.begin_delivery(handle.id)  # never twice
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        assert db.execute("SELECT COUNT(*) FROM pending_results").fetchone()[0] == 0
    remembered = engine.recent_job(handle.id)
    assert remembered is not None and remembered.result is None and remembered.request.prompt == "a red fox"
    assert (await engine.past_job(handle.id)).request == handle.job.request


FULL_DISK = """
    import asyncio, json, resource, signal, sys
    from core import StoreError, StoreUnavailable
    from tests.utils import make_engine, request

    async def main(path):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        engine, backend = make_engine(store={"path": path}, max_pending_per_user=10000)
        backend.models["a"].gate = asyncio.Event()
        await engine.start()
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
        acknowledged, refusal, after = [], None, None
        for n in range(5000):
            try:
                handle = await engine.submit(request("x" * 400 + str(n), seed=n))
            except StoreError as exc:
                refusal = (type(exc).__name__, exc.user_message, str(exc))
                break
            acknowledged.append(handle.id)
        try:
            await engine.submit(request("after"))
        except StoreUnavailable as exc:
            after = exc.user_message
        live = len(engine.jobs)
        print(json.dumps({"acknowledged": acknowledged, "refusal": refusal, "after": after, "live": live}))
        sys.stdout.flush()
        import os
        os._exit(0)  # as a crash would: no graceful stop

    asyncio.run(main(sys.argv[1]))
"""


def test_a_store_that_cannot_grow_refuses_and_every_acknowledged_job_is_on_disk(tmp_path):
    path = tmp_path / "jobs.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FULL_DISK), str(path)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    kind, message, detail = report["refusal"]
    assert kind == "StoreError" and "try again" in message.lower() and "rollback" not in detail.lower()
    assert report["after"] and "can't save" in report["after"]
    assert report["live"] == len(report["acknowledged"])  # nothing refused was queued
    with sqlite3.connect(path) as db:
        stored = {row[0] for row in db.execute("SELECT id FROM jobs")}
    assert set(report["acknowledged"]) <= stored  # every "Queued" survived the crash


async def test_a_cancel_during_a_graceful_stop_is_a_cancel_not_a_job_kept_for_the_restart(stored, tmp_path):
    engine, model = await stored()
    model.gate = asyncio.Event()
    handle = await engine.submit(request())
    await _until(lambda: bool(model.calls))
    stopping = asyncio.create_task(engine.quiesce(grace=5))  # platforms are still up during the grace
    await asyncio.sleep(0.05)
    await engine.cancel(handle.id, handle.job.request.requester)
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.CANCELLED
    await asyncio.wait_for(stopping, BOUND)
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        assert db.execute("SELECT state FROM jobs WHERE id = ?", (handle.id,)).fetchone()[0] == "cancelled"


async def test_a_submit_cancelled_after_its_row_was_written_leaves_nothing_to_run_after_a_restart(stored, tmp_path):
    engine, _ = await stored()
    submitting = asyncio.create_task(engine.submit(request("interrupted")))
    for _ in range(1000):  # cancel it while its write is in flight or just landed
        if engine.table.pending:
            break
        await asyncio.sleep(0)
    submitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submitting
    assert engine.table.pending == {} and not engine.jobs
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        states = [row[0] for row in db.execute("SELECT state FROM jobs")]
    assert states in ([], ["cancelled"])  # never a queued row that a restart would run unasked


async def test_the_redis_queue_setting_builds_a_cluster_front_end_without_connecting():
    from core import Engine
    from core.config import QueueSettings, Settings
    from core.engine.redis_queue import RedisQueue
    from core.hooks.host import create_plugin_host
    from tests.utils import FakeBackendPlugin

    settings = Settings(models={"a": {"backend": "fake"}}, platforms={}, engine={"default_model": "a"},
                        queue=QueueSettings(backend="redis", node="front-1"))
    engine = Engine(settings, create_plugin_host(load_entry_points=False, extra=[("fake", FakeBackendPlugin())]))
    assert isinstance(engine.queue, RedisQueue) and engine.queue.home == "front-1"
    assert engine.cluster is not None and engine.cluster.inbox.stream == "{sakaibot}:events:front-1"
    await engine.queue.close()  # never connected: closing is still clean
