"""A front end with its local worker (``sakaibot run`` in redis mode): every event goes through Redis.

Same process, but the worker has its own queue connection and leases, and the front end learns
about its jobs only from its event stream: states, progress, the image, and errors with their class.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core import Engine
from core.chat.service import ChatService, TextReply
from core.config import Settings
from core.engine.cluster_front import OUTAGE_MESSAGE
from core.errors import ContentRejected, QueueFull, QuotaExceeded
from core.hooks.host import create_plugin_host
from core.types import EventKind, ImageRequest, JobState, Requester
from tests.redis_server import RedisServer, running_server
from tests.utils import PNG, FakeBackendPlugin


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_server(tmp_path)


@pytest.fixture
async def front(server: RedisServer, tmp_path: Path) -> AsyncIterator[tuple[Engine, FakeBackendPlugin]]:
    settings = Settings(engine={"default_model": "a", "rate_limit": None, "max_pending_per_user": 100},
                        models={"a": {"backend": "fake", "concurrency": 2}}, platforms={},
                        store={"path": str(tmp_path / "jobs.db")},
                        queue={"backend": "redis", "url": server.url, "lease_seconds": 4, "heartbeat_seconds": 1})
    backend = FakeBackendPlugin()
    engine = Engine(settings, create_plugin_host(load_entry_points=False, extra=[("fake", backend)]))
    await engine.start()
    try:
        yield engine, backend
    finally:
        await engine.stop(grace=1)


WHO = Requester(platform="test", user_id="u", chat_id="c")


async def test_the_local_worker_runs_jobs_through_redis_and_the_front_end_delivers_them(front) -> None:
    engine, _ = front
    assert engine.worker is not None and engine.worker.queue is not engine.queue
    handles = [await engine.submit(ImageRequest(prompt=f"fox {n}", requester=WHO)) for n in range(6)]
    images = [await h.result() for h in handles]
    assert all(image.data.startswith(PNG[:8]) for image in images)
    kinds = [event.kind async for event in handles[0]]
    assert kinds[0] is EventKind.QUEUED and EventKind.GENERATING in kinds and kinds[-1] is EventKind.DONE
    assert EventKind.PROGRESS in kinds, "progress came back through the stream"
    assert await engine.begin_delivery(handles[0].id) and await engine.delivered(handles[0].id)
    loads = {load.name: load for load in (await engine.cluster_view()).lanes}
    assert loads["a"].waiting == 0 and loads["a"].running == 0 and loads["a"].concurrency == 2


async def test_a_failure_on_the_worker_reaches_the_user_with_its_class_and_message(front) -> None:
    engine, backend = front
    backend.models["a"].failures = [ContentRejected("The picture was refused by the safety filter.")]
    handle = await engine.submit(ImageRequest(prompt="something", requester=WHO))
    final = await handle.wait()
    assert final.kind is EventKind.FAILED
    assert isinstance(handle.job.error, ContentRejected)
    assert final.message == "The picture was refused by the safety filter."


async def test_the_queue_view_lists_the_local_worker(front) -> None:
    engine, _ = front
    for _ in range(200):  # the worker registers from a task of its own, right after start
        view = await engine.cluster_view()
        if view.workers:
            break
        await asyncio.sleep(0.01)
    assert view.workers is not None and [w.models for w in view.workers] == [("a",)]
    reply = await ChatService(engine).handle("/queue", WHO)
    assert isinstance(reply, TextReply)
    assert "• a: 0/2 running, 0 waiting" in reply.text and "Workers alive: 1 (serving a)" in reply.text


async def test_a_stopping_front_end_keeps_its_running_job_for_its_return(front) -> None:
    engine, backend = front
    backend.models["a"].gate = asyncio.Event()  # the job runs until the worker is stopped
    handle = await engine.submit(ImageRequest(prompt="held", requester=WHO))
    async with asyncio.timeout(10):
        async for event in handle:
            if event.kind is EventKind.GENERATING:
                break
    await engine.stop(grace=0.1)
    assert (await handle.wait()).kind is EventKind.SUSPENDED
    assert engine.store is not None and handle.job.state is JobState.QUEUED


async def test_users_are_told_of_an_outage_and_a_redis_that_forgot_everything_still_finishes_the_job(
        front, server: RedisServer) -> None:
    engine, backend = front
    gate = backend.models["a"].gate = asyncio.Event()
    handle = await engine.submit(ImageRequest(prompt="through an outage", requester=WHO))
    async with asyncio.timeout(10):
        async for event in handle:
            if event.kind is EventKind.GENERATING:
                break
    server.stop()  # no persistence: the job, its lease and the front end's stream group are gone
    async with asyncio.timeout(20):
        async for event in handle:
            if event.kind is EventKind.RETRYING:
                assert event.message == OUTAGE_MESSAGE
                break
    server.start()
    gate.set()
    async with asyncio.timeout(30):
        final = await handle.wait()
    assert final.kind is EventKind.DONE and handle.job.result is not None


@pytest.fixture
async def two_fronts(server: RedisServer, tmp_path: Path,
                     request: pytest.FixtureRequest) -> AsyncIterator[list[Engine]]:
    """Two front ends without workers on one Redis, with the engine settings the test names."""
    engines = []
    for n in range(2):
        settings = Settings(engine={"default_model": "a", "rate_limit": None, **request.param},
                            models={"a": {"backend": "fake"}}, platforms={},
                            store={"path": str(tmp_path / f"jobs{n}.db")},
                            queue={"backend": "redis", "url": server.url, "local_worker": False, "node": f"f{n}",
                                   "lease_seconds": 4, "heartbeat_seconds": 1})
        engine = Engine(settings, create_plugin_host(load_entry_points=False, extra=[("fake", FakeBackendPlugin())]))
        await engine.start()
        engines.append(engine)
    try:
        yield engines
    finally:
        for engine in engines:
            await engine.stop(grace=1)


def fox(count: int = 1) -> ImageRequest:
    return ImageRequest(prompt="fox", requester=WHO, options={"count": count})


@pytest.mark.parametrize("two_fronts", [{"max_pending_per_user": 3}], indirect=True)
async def test_two_front_ends_share_the_users_cap_counting_every_image(two_fronts: list[Engine]) -> None:
    one, other = two_fronts
    first = await one.submit(fox(2))
    with pytest.raises(QueueFull, match="at most 1"):
        await other.submit(fox(2))
    second = await other.submit(fox())  # the third place
    with pytest.raises(QueueFull):
        await one.submit(fox())
    await other.cancel(second.id, WHO)  # ended: its places come back, through Redis, in the background
    await one.cancel(first.id, WHO)
    caps = one.admission.limits.caps  # type: ignore[attr-defined]
    for _ in range(100):  # bounded wait for the background release
        if await caps.count("test:u") == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cancelled jobs' places never came back")
    await other.submit(fox(3))


@pytest.mark.parametrize("two_fronts", [{"max_pending_per_user": 100, "daily_quota": 3}], indirect=True)
async def test_two_front_ends_share_the_daily_quota_and_a_cancel_gives_it_back(two_fronts: list[Engine]) -> None:
    one, other = two_fronts
    first = await one.submit(fox(2))
    with pytest.raises(QuotaExceeded, match=r"1 of your 3 a images left today; ask for fewer \(--n 1\)"):
        await other.submit(fox(2))
    await other.submit(fox())  # 3 of 3
    with pytest.raises(QuotaExceeded):
        await one.submit(fox())
    await one.cancel(first.id, WHO)  # cancelled before it ran: both images' units come back
    for _ in range(100):
        try:
            await other.submit(fox(2))
            break
        except QuotaExceeded:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cancelled job's quota never came back")


async def test_a_job_that_failed_while_its_front_end_was_away_gives_its_quota_back(server: RedisServer,
                                                                                    tmp_path: Path) -> None:
    """The final event lands on a restarted front end that no longer tracks the job: the quota still comes back."""
    def settings(store: bool) -> Settings:
        return Settings(engine={"default_model": "a", "rate_limit": None, "daily_quota": 5},
                        models={"a": {"backend": "fake"}}, platforms={},
                        store={"path": str(tmp_path / "jobs.db")} if store else {},
                        queue={"backend": "redis", "url": server.url, "lease_seconds": 4, "heartbeat_seconds": 1,
                               "local_worker": False, "node": "front1"})

    def engine(store: bool, backend: FakeBackendPlugin) -> Engine:
        return Engine(settings(store), create_plugin_host(load_entry_points=False, extra=[("fake", backend)]))

    front = engine(True, FakeBackendPlugin())
    await front.start()
    handle = await front.submit(fox(3))
    await front.stop(grace=0.5)  # the job stays saved, queued in Redis
    failing = FakeBackendPlugin()
    worker = engine(False, failing)
    failing.models["a"].failures = [ContentRejected("no")] * 10
    await worker.start_worker()
    quotas = worker.admission.limits.quotas  # type: ignore[attr-defined]
    events = "{sakaibot}:events:front1"
    back = engine(True, FakeBackendPlugin())
    try:
        for _ in range(200):  # bounded: the worker fails the job while its front end is away
            if await worker.queue.link.client.xlen(events):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert await quotas.used("test:u", "a") == 3
        await back.start()  # catches up with the final event for a job it does not track yet
        assert back.store is not None
        for _ in range(200):
            stored = await back.store.job(handle.id)
            if stored is not None and stored.state is JobState.FAILED and await quotas.used("test:u", "a") == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the failed job's quota never came back")
    finally:
        await worker.stop(grace=0.5)
        await back.stop(grace=0.5)


async def test_a_resume_while_redis_is_down_keeps_the_job_and_queues_it_when_redis_returns(server: RedisServer,
                                                                                           tmp_path: Path) -> None:
    def engine(store: bool) -> Engine:
        settings = Settings(engine={"default_model": "a", "rate_limit": None}, models={"a": {"backend": "fake"}},
                            platforms={}, store={"path": str(tmp_path / "jobs.db")} if store else {},
                            queue={"backend": "redis", "url": server.url, "lease_seconds": 4, "heartbeat_seconds": 1,
                                   "local_worker": False, "node": "front1"})
        return Engine(settings, create_plugin_host(load_entry_points=False, extra=[("fake", FakeBackendPlugin())]))

    first = engine(True)
    await first.start()
    job_id = (await first.submit(fox())).id
    await first.stop(grace=0.5)  # saved, to be resumed by the next start
    back = engine(True)
    await back.start()
    worker = engine(False)
    try:
        server.stop()  # Redis goes away (and, without persistence, forgets the job)
        back.queue.link.patience = 0.3  # type: ignore[attr-defined]
        back.admission.limits.link.patience = 0.3  # type: ignore[attr-defined]
        handles = await back.resume("test")  # does not fail the platform's start
        assert [h.id for h in handles] == [job_id]
        server.start()
        await worker.start_worker()
        image = await asyncio.wait_for(handles[0].result(), 60)  # bounded: queued again, run, delivered
        assert image.data
    finally:
        await worker.stop(grace=0.5)
        await back.stop(grace=0.5)


async def test_a_front_end_without_a_store_that_stops_cancels_its_job_on_the_worker(server: RedisServer) -> None:
    """Nobody would read the result: the worker holding the job stops its run instead of finishing it."""
    def engine(latency: float) -> tuple[Engine, FakeBackendPlugin]:
        settings = Settings(engine={"default_model": "a", "rate_limit": None},
                            models={"a": {"backend": "fake", "latency": latency}}, platforms={},
                            queue={"backend": "redis", "url": server.url, "lease_seconds": 4, "heartbeat_seconds": 1,
                                   "local_worker": False})
        backend = FakeBackendPlugin()
        return Engine(settings, create_plugin_host(load_entry_points=False, extra=[("fake", backend)])), backend

    front, _ = engine(0.0)
    worker, backend = engine(60.0)  # a run that would take a minute
    await front.start()
    await worker.start_worker()
    try:
        await front.submit(fox())
        model = backend.models["a"]
        for _ in range(200):  # bounded: the worker claims the job and starts its run
            if model.active:
                break
            await asyncio.sleep(0.05)
        assert model.active == 1
        await front.stop(grace=0)
        for _ in range(200):  # bounded: the cancel reaches the worker long before the run could end
            if not model.active:
                break
            await asyncio.sleep(0.05)
        assert model.active == 0
    finally:
        await front.stop(grace=0)
        await worker.stop(grace=0.5)
