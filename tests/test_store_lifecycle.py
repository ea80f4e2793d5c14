"""The job lifecycle in the store, on real SQLite files: atomic quotas, group commit that acknowledges
only committed writes, crash recovery with a crash budget, the delivery budget, pruning."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from core.errors import JobRejected, QuotaExceeded
from core.store import JobStore
from core.types import Image, JobState
from tests.test_store_durability import make_job, rows
from tests.utils import PNG


@pytest.fixture
async def store(tmp_path):
    opened = JobStore(tmp_path / "jobs.db")
    await opened.open()
    yield opened
    await opened.close()


def column(store: JobStore, job_id: str, name: str):
    """One column of one row, read through a second connection (so only what is committed)."""
    return rows(store.path, f"SELECT {name} FROM jobs WHERE id = '{job_id}'")[0][0]


async def run_to(store: JobStore, n: int, state: JobState, *, user: str = "u1") -> str:
    """Enqueue job ``n`` and take it to ``state`` as the engine would."""
    job = make_job(n, user=user)
    await store.enqueue(job, None)
    job.state, job.attempts, job.started_at = JobState.GENERATING, 1, time.time()
    await store.started(job)
    if state.finished:
        job.state, job.finished_at = state, time.time()
        if state is JobState.DONE:
            job.result = Image(PNG, "image/png", 8, 8, seed=n, model="a")
        if state is JobState.FAILED:
            job.error = JobRejected("Not this one.")
        await store.finish(job)
    return job.id


# ---------------------------------------------------------------- quotas reserve atomically
async def test_one_hundred_concurrent_requests_with_quota_three_admit_exactly_three(store):
    outcomes = await asyncio.gather(*(store.enqueue(make_job(n), 3) for n in range(100)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert outcomes.count(None) == 3 and len(refused) == 97
    assert "You have used your 3 a images for today" in refused[0].user_message
    assert refused[0].reset_at is not None
    assert len(rows(store.path)) == 3
    await store.enqueue(make_job(200, user="u2"), 3)  # another user has their own quota


async def test_failed_and_cancelled_jobs_give_their_reservation_back(store):
    first = await run_to(store, 1, JobState.FAILED)
    await run_to(store, 2, JobState.CANCELLED)
    await store.enqueue(make_job(3), 1)  # the two above do not count
    with pytest.raises(QuotaExceeded):
        await store.enqueue(make_job(4), 1)
    assert column(store, first, "error") == "Not this one."


# ---------------------------------------------------------------- group commit
async def test_concurrent_writes_share_transactions_and_are_committed_when_acknowledged(store):
    seen_uncommitted = []

    async def lifecycle(n: int) -> None:
        job = make_job(n)
        await store.enqueue(job, None)
        if not rows(store.path, f"SELECT 1 FROM jobs WHERE id = '{job.id}'"):
            seen_uncommitted.append(job.id)
        job.state, job.attempts, job.started_at = JobState.GENERATING, 1, time.time()
        await store.started(job)
        if column(store, job.id, "runs") != 1:
            seen_uncommitted.append(job.id)
        job.state, job.finished_at, job.result = JobState.DONE, time.time(), Image(PNG, "image/png", 8, 8, model="a")
        await store.finish(job)
        if column(store, job.id, "state") != "done" or not rows(store.path, "SELECT 1 FROM pending_results"
                                                                          f" WHERE job_id = '{job.id}'"):
            seen_uncommitted.append(job.id)

    commits = store.commits
    await asyncio.gather(*(lifecycle(n) for n in range(200)))
    assert seen_uncommitted == []
    assert store.writes == 600
    assert store.commits - commits <= 600 // 10  # far fewer transactions than writes


async def test_a_cancelled_writer_does_not_cancel_the_others_of_its_batch(store):
    writers = [asyncio.create_task(store.enqueue(make_job(n), None)) for n in range(3)]
    await asyncio.sleep(0)  # all three are in the same batch now
    writers[1].cancel()
    outcomes = await asyncio.gather(*writers, return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None and isinstance(outcomes[1], asyncio.CancelledError)
    assert len(rows(store.path)) == 3  # the cancelled one had been submitted: it was committed with the others


async def test_update_suspend_and_the_old_whole_row_save_write_what_changed(store):
    job = make_job(1)
    await store.enqueue(job, None)
    job.state, job.enhanced_prompt, job.timings = JobState.ENHANCING, "a red fox, oil painting", {"enhance": 0.5}
    await store.update(job)
    assert column(store, job.id, "enhanced_prompt") == "a red fox, oil painting"
    assert json.loads(column(store, job.id, "timings")) == {"enhance": 0.5}
    job.started_at = time.time()
    await store.started(job)
    await store.suspend(job)
    assert column(store, job.id, "state") == "queued" and column(store, job.id, "started_at") is None
    job.state = JobState.CANCELLED
    await store.finish(job)
    assert (await store.job(job.id)).state is JobState.CANCELLED


# ---------------------------------------------------------------- crash recovery
async def test_recover_requeues_a_crashed_job_then_sets_it_aside_at_max_crashes(tmp_path):
    path = tmp_path / "jobs.db"
    for round_ in (1, 2):
        store = JobStore(path)
        await store.open()
        if round_ == 1:
            job_id = await run_to(store, 1, JobState.GENERATING)
            waiting = make_job(2)
            await store.enqueue(waiting, None)
            await store.suspend(waiting)  # a graceful stop is no crash
        else:
            assert await store.recover(max_crashes=2) == []  # the first crash: queued again
            assert column(store, job_id, "state") == "queued" and column(store, job_id, "crashes") == 1
            job = await store.job(job_id)
            job.state, job.attempts, job.started_at = JobState.GENERATING, 2, time.time()
            await store.started(job)  # ...and it takes the process down once more
        await store.close()  # no finish: as if the process had died here
    store = JobStore(path)
    await store.open()
    try:
        assert await store.recover(max_crashes=2) == [job_id]
        record = (await store.find(job_id))[0]
        assert record.state == "failed" and record.crashes == 2 and record.runs == 2 and record.finished_at
        assert record.error == ("This request stopped the bot 2 times while it was being made, so it was set "
                                "aside. Try another prompt or model.")
        assert [j.id for j in await store.unfinished("test")] == [make_job(2).id]
        assert column(store, make_job(2).id, "crashes") == 0
    finally:
        await store.close()


# ---------------------------------------------------------------- delivery
async def test_a_result_is_sent_at_most_twice_and_then_no_longer_offered(store):
    job_id = await run_to(store, 1, JobState.DONE)
    assert [j.id for j in await store.undelivered("test")] == [job_id]
    assert (await store.undelivered("test"))[0].result.data == PNG
    assert await store.begin_delivery(job_id)  # the first send; the process dies before "delivered"
    assert [j.id for j in await store.undelivered("test")] == [job_id]
    assert await store.begin_delivery(job_id)  # the one resend after the crash; it dies again
    assert await store.undelivered("test") == []
    assert not await store.begin_delivery(job_id)


async def test_marking_delivered_drops_the_bytes_once(store):
    job_id = await run_to(store, 1, JobState.DONE)
    assert await store.begin_delivery(job_id)
    assert await store.mark_delivered(job_id)
    assert not await store.mark_delivered(job_id)
    assert not await store.begin_delivery(job_id)
    assert rows(store.path, "SELECT * FROM pending_results") == []


# ---------------------------------------------------------------- retention
async def test_prune_deletes_old_finished_rows_with_their_bytes_and_keeps_the_rest(store):
    old = await asyncio.gather(*(run_to(store, n, JobState.DONE if n % 2 else JobState.FAILED) for n in range(600)))
    waiting = make_job(1000)
    await store.enqueue(waiting, None)
    with sqlite3.connect(store.path) as conn:  # 40 days pass
        conn.execute("UPDATE jobs SET created_at = created_at - 40 * 86400,"
                     " finished_at = finished_at - 40 * 86400")
    recent = await run_to(store, 2000, JobState.DONE)  # finished, not yet delivered
    running = await run_to(store, 2001, JobState.GENERATING)
    assert await store.prune(retention_days=30) == len(old)
    assert {row[0] for row in rows(store.path)} == {waiting.id, recent, running}
    assert rows(store.path, "SELECT job_id FROM pending_results") == [(recent,)]
    assert await store.prune(retention_days=30) == 0


async def test_probe_is_a_committed_write(store):
    before = rows(store.path, "SELECT at FROM heartbeat")[0][0]
    await store.probe()
    assert rows(store.path, "SELECT at FROM heartbeat")[0][0] >= before
    assert store.commits >= 1
