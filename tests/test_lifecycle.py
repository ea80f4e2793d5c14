"""The job lifecycle's promises: one terminal event, nothing after it, slots released once, clean stops."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core import JobCancelled, JobState, StoreError, UserError, hookimpl
from core.engine.handle import JobHandle
from core.types import EventKind, Job, JobEvent
from tests.test_store_durability import make_job
from tests.utils import EventRecorder, request, settle

BOUND = 5.0  # seconds a step may take before the test gives up (a hang, not a speed check)


class GatedJournal:
    """A journal whose final write waits for a gate, as a slow or locked store would."""

    def __init__(self) -> None:
        self.finish_started = asyncio.Event()
        self.gate = asyncio.Event()
        self.finished: list[tuple[str, JobState]] = []

    async def started(self, job: Job) -> None:
        """Nothing to wait for."""

    async def update(self, job: Job) -> None:
        """Nothing to wait for."""

    async def finish(self, job: Job) -> None:
        """Block until the gate opens, then record the final state."""
        self.finish_started.set()
        await self.gate.wait()
        self.finished.append((job.id, job.state))

    async def suspend(self, job: Job) -> None:
        """Nothing to wait for."""


class FailingJournal(GatedJournal):
    """A journal whose writes fail like a full disk."""

    def __init__(self, fail_on: set[str]) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.gate.set()

    async def suspend(self, job: Job) -> None:
        """Fail if told to."""
        if "suspend" in self.fail_on:
            raise StoreError(detail="database or disk is full")

    async def started(self, job: Job) -> None:
        """Fail if told to."""
        if "started" in self.fail_on:
            raise StoreError(detail="database or disk is full")


async def test_cancel_while_the_final_write_is_in_flight_returns_at_once_and_the_image_arrives(engine_factory):
    engine, _ = await engine_factory()
    journal = engine.events.journal = GatedJournal()
    handle = await engine.submit(request())
    await asyncio.wait_for(journal.finish_started.wait(), BOUND)
    with pytest.raises(UserError, match="already finished"):
        await asyncio.wait_for(engine.cancel(handle.id, handle.job.request.requester), BOUND)
    journal.gate.set()
    final = await asyncio.wait_for(handle.wait(), BOUND)
    assert final.kind is EventKind.DONE and (await handle.result()).data
    assert journal.finished == [(handle.id, JobState.DONE)]
    assert engine.table.pending == {} and handle.id not in engine.jobs


async def test_the_final_step_runs_on_its_own_while_the_lane_serves_the_next_job(engine_factory):
    """A slow final write holds neither the lane nor the user: the next job runs; DONE lands after the write."""
    engine, backend = await engine_factory()
    journal = engine.events.journal = GatedJournal()
    first = await engine.submit(request())
    await asyncio.wait_for(journal.finish_started.wait(), BOUND)
    second = await engine.submit(request(user="other"))
    for _ in range(500):  # the lane's only slot is free: the second job reaches the model
        if len(backend.models["a"].calls) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(backend.models["a"].calls) == 2 and not first.finished
    journal.gate.set()
    assert (await asyncio.wait_for(first.wait(), BOUND)).kind is EventKind.DONE
    assert (await asyncio.wait_for(second.wait(), BOUND)).kind is EventKind.DONE
    assert [state for _, state in journal.finished] == [JobState.DONE, JobState.DONE]


async def test_every_pending_slot_is_released_exactly_once_under_cancel_storms(engine_factory):
    engine, _ = await engine_factory({"a": {"backend": "fake", "concurrency": 2, "latency": 0.001}},
                                     max_pending_per_user=1000)
    handles = [await engine.submit(request(user=f"u{n % 7}")) for n in range(140)]
    for n, handle in enumerate(handles):
        if n % 4 == 0:
            with contextlib.suppress(UserError):  # it had already finished: that is an answer too
                await engine.cancel(handle.id, handle.job.request.requester)
    finals = await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 30)
    assert all(f.kind.final for f in finals)
    assert engine.table.pending == {} and not engine.jobs


class OrderChecker:
    """An async observer that yields on every event, and notes any event after a job's end."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.after_end: list[tuple[str, str]] = []

    @hookimpl
    async def on_job_event(self, event: JobEvent, engine: object) -> None:
        """Yield to the loop (as a real observer writing somewhere would), then check the order."""
        await asyncio.sleep(0)
        if event.job.id in self.ended:
            self.after_end.append((event.job.id, event.kind.value))
        if event.kind.final:
            self.ended.add(event.job.id)


async def test_no_event_follows_a_jobs_terminal_event(engine_factory):
    checker = OrderChecker()
    engine, backend = await engine_factory({"a": {"backend": "fake"}}, plugins=[("order", checker)],
                                           max_pending_per_user=1000)
    backend.models["a"].gate = asyncio.Event()
    handles = [await engine.submit(request(user=f"u{n % 5}")) for n in range(60)]
    await settle(20)
    for handle in handles[1::2]:  # cancel while position passes are walking the lane
        await engine.cancel(handle.id, handle.job.request.requester)
        await asyncio.sleep(0)
    backend.models["a"].gate.set()
    await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 30)
    await settle(20)
    assert checker.after_end == []


async def test_stop_after_a_store_failure_while_setting_jobs_aside_still_stops_every_worker(engine_factory):
    engine, backend = await engine_factory(max_pending_per_user=100)
    backend.models["a"].gate = asyncio.Event()
    engine.events.journal = FailingJournal({"suspend"})
    running = await engine.submit(request())
    waiting = [await engine.submit(request(user=f"w{n}")) for n in range(3)]
    await settle()
    await asyncio.wait_for(engine.quiesce(grace=0.05), BOUND)
    assert all(task.done() for task in engine.scheduler._tasks) or not engine.scheduler._tasks
    assert engine.health.failing  # the failure was noticed, not swallowed
    for handle in waiting:
        assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.SUSPENDED
    assert (await asyncio.wait_for(running.wait(), BOUND)).kind in (EventKind.SUSPENDED, EventKind.CANCELLED)
    await asyncio.wait_for(engine.stop(), BOUND)  # a second stop is quick and clean


async def test_a_job_whose_start_cannot_be_recorded_is_not_run_and_new_requests_are_refused(engine_factory):
    engine, backend = await engine_factory()
    engine.events.journal = FailingJournal({"started"})
    handle = await engine.submit(request())
    await settle(20)
    assert backend.models["a"].calls == []  # nothing ran without its attempt on record
    assert handle.job.state is JobState.QUEUED and engine.health.failing
    with pytest.raises(StoreError) as refused:
        await engine.submit(request(user="someone-else"))
    assert "can't save" in refused.value.user_message
    engine.events.journal = GatedJournal()  # the store works again
    engine.events.journal.gate.set()
    engine.health.failure = None
    engine.health.writable.set()
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE


async def test_cancelled_waiting_job_frees_its_slot_and_gets_one_event(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory(plugins=[("rec", recorder)])
    backend.models["a"].gate = asyncio.Event()
    first = await engine.submit(request())
    second = await engine.submit(request())
    await settle()
    await engine.cancel(second.id, second.job.request.requester)
    assert recorder.kinds(second.id).count("cancelled") == 1
    assert isinstance(second.job.error, JobCancelled) and engine.table.pending["test:u1"] == 1
    backend.models["a"].gate.set()
    await first.result()
    assert engine.table.pending == {}


async def test_a_suspect_job_runs_alone_so_a_crash_is_blamed_on_it(engine_factory):
    """A job that was running during a crash waits for an empty engine, and nothing starts beside it."""
    engine, backend = await engine_factory({"a": {"backend": "fake", "concurrency": 3}}, max_pending_per_user=10)
    model = backend.models["a"]
    model.gate = asyncio.Event()
    before = await engine.submit(request("before"))
    await settle(10)
    suspect = await engine.submit(request("suspect"))
    suspect.job.crashes = 1  # as the store reports it after one crash
    after = await engine.submit(request("after"))
    await settle(20)
    assert [c.prompt for c in model.calls] == ["before"]  # the suspect waits; "after" may not pass it
    model.gate.set()
    for handle in (before, suspect, after):
        await asyncio.wait_for(handle.wait(), BOUND)
    assert [c.prompt for c in model.calls] == ["before", "suspect", "after"] and model.peak == 1


async def test_a_cancelled_wait_spares_the_other_waiters_of_the_same_job():
    job = make_job(1)
    handle = JobHandle(job)
    first, second = asyncio.ensure_future(handle.wait()), asyncio.ensure_future(handle.wait())
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled() and not second.done()
    assert len(handle._finish_waiters) == 1  # the cancelled waiter left nothing behind
    handle.push(JobEvent(EventKind.DONE, job))
    assert (await asyncio.wait_for(second, 1)).kind is EventKind.DONE
    assert (await handle.wait()).kind is EventKind.DONE  # after the end, at once
    assert handle._finish_waiters == []
