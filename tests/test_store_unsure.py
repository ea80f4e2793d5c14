"""Writes whose outcome is unknown: the writer process dies after its COMMIT and before its answer.

Real engines on a real SQLite file. The writer process is armed by an injected op (run there, sent by
reference) so that the next batch holding a chosen write commits and then the process exits without
answering: deterministic, no timing. The user is refused; the store must end up saying the same.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from core import JobHandle
from core.errors import StoreError, StoreUncertain
from core.store import JobStore
from core.store.process import WriterGone
from core.store.transitions import REFUSED
from core.types import EventKind
from tests.test_store_durability import make_job
from tests.utils import make_engine, request

BOUND = 10.0  # seconds before a step counts as hung (never a speed check)


def exit_around(conn: sqlite3.Connection, op: str, before: bool) -> None:
    """Arm the writer process: the next batch holding a write ``op`` commits, then the process exits before it
    answers (with ``before``: exits before running it). Runs in the writer process, sent by reference."""
    child = sys.modules["sakaibot_store_child"]
    run = child.Writer.batches

    def batches(self: Any, groups: list[list[tuple[Any, tuple[Any, ...]]]]) -> list[tuple[Any, ...]]:
        hit = any(name == op for group in groups for name, _ in group)
        if hit and before:
            os._exit(0)
        answers = run(self, groups)
        if hit:
            os._exit(0)  # committed; the answer is never sent
        return answers

    child.Writer.batches = batches


async def arm(store: JobStore | None, op: str, *, before: bool = False) -> None:
    """The writer process dies around the next batch that holds ``op`` (see ``exit_around``)."""
    assert store is not None
    await store._writer.write(exit_around, op, before)


def states(path: Path) -> dict[str, tuple[str, str | None]]:
    """Every row's state and error, read with an independent connection (committed data only)."""
    with sqlite3.connect(path) as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, state, error FROM jobs")}


@pytest.fixture
async def engines(tmp_path):
    """Build started engines on one store file in tmp_path (a second one is the restart); always stopped."""
    made = []

    async def build():
        engine, backend = make_engine(store={"path": str(tmp_path / "jobs.db"), "busy_timeout": 0.3})
        made.append(engine)
        await engine.start()
        engine.health.probe_every = 0.01
        return engine, backend.models["a"]

    yield build
    for engine in made:
        for model in engine.models.values():
            if model.gate is not None:
                model.gate.set()
        await engine.stop(grace=1)


async def refused_though_saved(engine: Any, path: Path) -> str:
    """Submit through the engine while the writer process dies after committing the row; the refused job's id.

    Awaited directly (no ``wait_for``): nothing yields between the refusal and the read below, so the probe
    cannot have run yet, and the row is seen as the window leaves it.
    """
    live, before = dict(engine.jobs), states(path)
    await arm(engine.store, "insert")
    with pytest.raises(StoreUncertain) as refused:
        await engine.submit(request("refused"))
    assert isinstance(refused.value, StoreError) and refused.value.retryable
    assert "try again" in refused.value.user_message.lower()
    assert isinstance(refused.value.__cause__, WriterGone)
    assert engine.jobs == live  # nothing of it is left in memory
    after = states(path)
    (job_id,) = set(after) - set(before)
    assert after[job_id] == ("queued", None)  # saved, though its user was refused: what the probe must end
    return job_id


async def restart_runs_nothing(build: Any) -> list[JobHandle]:
    """A fresh engine on the same file: what it resumes, having checked it ran no model."""
    engine, model = await build()
    handles = await engine.resume("test")
    for handle in handles:
        await asyncio.wait_for(handle.wait(), BOUND)
    assert model.calls == []
    return handles


async def test_a_request_refused_though_saved_is_cancelled_before_new_requests_and_never_runs(engines, tmp_path):
    path = tmp_path / "jobs.db"
    engine, model = await engines()
    job_id = await refused_though_saved(engine, path)
    assert engine.health.failing and engine.health.refused == {job_id}
    await asyncio.wait_for(engine.health.writable.wait(), BOUND)  # the probe reopened admission...
    assert states(path)[job_id] == ("cancelled", REFUSED)  # ...only after the row was ended
    assert not engine.health.failing and engine.health.refused == set()
    handle = await engine.submit(request("after"))
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
    assert len(model.calls) == 1  # only the acknowledged one ran
    await engine.stop()
    handles = await restart_runs_nothing(engines)
    assert job_id not in {handle.id for handle in handles}
    assert states(path)[job_id] == ("cancelled", REFUSED)


async def test_acknowledged_jobs_are_not_cancelled_with_the_refused_one(engines, tmp_path):
    path = tmp_path / "jobs.db"
    engine, model = await engines()
    model.gate = asyncio.Event()
    running = await engine.submit(request("running"))
    waiting = await engine.submit(request("waiting"))
    for _ in range(500):  # bounded: the first one's run is recorded and its model called
        if model.calls:
            break
        await asyncio.sleep(0.01)
    job_id = await refused_though_saved(engine, path)
    await asyncio.wait_for(engine.health.writable.wait(), BOUND)
    found = states(path)
    assert found[job_id] == ("cancelled", REFUSED)
    assert found[running.id][0] == "generating" and found[waiting.id] == ("queued", None)
    model.gate.set()
    for handle in (running, waiting):
        assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
    assert len(model.calls) == 2
    await engine.stop()
    await restart_runs_nothing(engines)
    assert {job: state for job, (state, _) in states(path).items()} == {
        running.id: "done", waiting.id: "done", job_id: "cancelled"}


async def test_a_graceful_stop_before_the_probe_ends_the_refused_row(engines, tmp_path):
    path = tmp_path / "jobs.db"
    engine, _ = await engines()
    engine.health.probe_every = 3600  # the probe never comes: only the stop can write it
    job_id = await refused_though_saved(engine, path)
    await engine.stop()
    assert states(path)[job_id] == ("cancelled", REFUSED)
    await restart_runs_nothing(engines)


async def test_what_remains_a_restart_while_the_store_still_fails_runs_the_refused_request(engines, tmp_path,
                                                                                        monkeypatch):
    """The named second failure: the ids are in memory only, so a bot that stops (or dies) before any write
    works again cannot end the row, and the next start runs it."""
    path = tmp_path / "jobs.db"
    engine, _ = await engines()
    engine.health.probe_every = 3600

    async def failing(job_ids: object) -> int:
        raise StoreError(detail="still failing")

    job_id = await refused_though_saved(engine, path)
    monkeypatch.setattr(engine.store, "end_refused", failing)
    await engine.stop()
    assert states(path)[job_id][0] == "queued"
    restarted, model = await engines()
    (handle,) = await restarted.resume("test")
    assert handle.id == job_id and (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
    assert len(model.calls) == 1


@pytest.mark.parametrize("before", [False, True], ids=["committed", "not-committed"])
async def test_a_lost_final_write_is_sent_again_so_a_restart_does_not_run_the_job_twice(engines, tmp_path, before):
    path = tmp_path / "jobs.db"
    engine, _ = await engines()
    await arm(engine.store, "finish", before=before)
    handle = await engine.submit(request())
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE  # the user still gets the image
    await asyncio.wait_for(engine.health.writable.wait(), BOUND)
    assert states(path)[handle.id] == ("done", None) and engine.health.unfinished == {}
    await engine.stop()
    (ended,) = await restart_runs_nothing(engines)  # its image, kept since no platform marked it delivered
    assert ended.id == handle.id and ended.job.state.value == "done"


async def test_only_a_writer_that_died_unanswered_makes_the_outcome_unknown(tmp_path):
    store = JobStore(tmp_path / "jobs.db", busy_timeout=0.2)
    await store.open()
    try:
        other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError) as locked:
            await store.enqueue(make_job(1), None)
        other.execute("ROLLBACK")
        other.close()
        assert not isinstance(locked.value, StoreUncertain)  # rolled back for sure: nothing to end later
        await arm(store, "insert")
        with pytest.raises(StoreUncertain):
            await store.enqueue(make_job(2), None)
        assert await store.end_refused([make_job(2).id, make_job(1).id]) == 1  # only the row that exists
        assert states(tmp_path / "jobs.db") == {make_job(2).id: ("cancelled", REFUSED)}
    finally:
        await store.close()


async def test_a_final_write_refused_by_a_lock_is_written_once_the_lock_goes(engines, tmp_path):
    path = tmp_path / "jobs.db"
    engine, model = await engines()
    model.gate = asyncio.Event()
    handle = await engine.submit(request())
    for _ in range(500):  # bounded: the run is recorded and the model called
        if model.calls:
            break
        await asyncio.sleep(0.01)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # the final write fails after busy_timeout
    try:
        model.gate.set()
        assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
        assert engine.health.failing and set(engine.health.unfinished) == {handle.id}
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.wait_for(engine.health.writable.wait(), BOUND)
    assert states(path)[handle.id] == ("done", None)
    await engine.stop()
    await restart_runs_nothing(engines)
