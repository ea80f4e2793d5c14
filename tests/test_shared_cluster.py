"""The worker registry and the cluster view against a real redis-server and a real ``RedisQueue``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.engine.cluster_registry import ClusterView, WorkerInfo, WorkerRegistry, cluster_view, render_cluster
from core.engine.queue import LaneLoad, QueueOrder
from core.engine.redis_link import RedisLink
from core.engine.redis_queue import RedisQueue
from core.types import GenerationRequest, ImageRequest, Job, Requester, Size
from tests.redis_server import RedisServer


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    """The connection a viewer (``sakaibot queue``) or a worker uses."""
    made = RedisLink(redis_server.url, block_seconds=1.0, patience=5.0)
    yield made
    await made.aclose()


@pytest.fixture
async def queue(redis_server: RedisServer) -> AsyncIterator[RedisQueue]:
    """The queue whose keys the view reads: lane ``a`` (2 at once), prefix ``t``, short leases."""
    made = RedisQueue(redis_server.url, prefix="t", lease_seconds=0.3, heartbeat_seconds=100.0)
    made.add_lane("a", QueueOrder.FAIR, 100, 2)
    yield made
    await made.close()


def make_job(n: int, user: str = "u1") -> Job:
    """A job of lane ``a``."""
    request = ImageRequest(prompt=f"p{n}", requester=Requester(platform="test", user_id=user))
    return Job(id=f"{n:012x}", request=request, model="a",
               generation=GenerationRequest(f"p{n}", Size(64, 64), n, None, None, f"p{n}"))


async def eventually(check: Callable[[], Awaitable[bool]], rounds: int = 400) -> None:
    """Wait (bounded) for a deadline in Redis' clock to pass."""
    for _ in range(rounds):
        if await check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition never became true")


async def test_lanes_show_waiting_and_running_across_the_cluster(queue: RedisQueue, link: RedisLink) -> None:
    for n in range(4):
        await queue.put(make_job(n, f"u{n}"))
    await queue.take("a")
    view = await cluster_view(link, "t", {"a": 2, "idle": 1})
    assert view.lanes == [LaneLoad("a", 3, 1, 2), LaneLoad("idle", 0, 0, 1)]
    assert view.workers == [] and view.now > 0


async def test_a_claim_whose_lease_ran_out_counts_as_waiting(queue: RedisQueue, link: RedisLink) -> None:
    await queue.put(make_job(1))
    await queue.take("a")  # and never heartbeats: the holder "died"

    async def handed_back() -> bool:
        return (await cluster_view(link, "t", {"a": 2})).lanes == [LaneLoad("a", 1, 0, 2)]
    await eventually(handed_back)


async def test_workers_are_listed_while_they_beat_and_leave_on_a_clean_stop(link: RedisLink) -> None:
    flux = WorkerRegistry(link, "t", ["flux", "sdxl"], ttl_seconds=30.0, worker_id="w1")
    other = WorkerRegistry(link, "t", ["flux"], ttl_seconds=30.0)
    await flux.beat(running=2)
    await other.beat()
    view = await cluster_view(link, "t", {"flux": 3})
    assert [worker.id for worker in view.workers] == sorted(["w1", other.id])
    listed = next(worker for worker in view.workers if worker.id == "w1")
    assert listed == WorkerInfo("w1", ("flux", "sdxl"), flux.host, flux.pid, flux.started, 2)
    assert [lane.name for lane in view.lanes] == ["flux", "sdxl"]  # sdxl: served, not configured here
    assert next(lane for lane in view.lanes if lane.name == "sdxl").concurrency == 0
    await flux.unregister()
    assert [worker.id for worker in (await cluster_view(link, "t", {})).workers] == [other.id]


async def test_a_worker_that_stops_beating_drops_out(link: RedisLink) -> None:
    crashed = WorkerRegistry(link, "t", ["a"], ttl_seconds=0.2)
    await crashed.beat()
    assert len((await cluster_view(link, "t", {"a": 1})).workers) == 1

    async def gone() -> bool:
        return not (await cluster_view(link, "t", {"a": 1})).workers
    await eventually(gone)
    assert await link.client.zcard("{t}:workers") == 0  # pruned from the index, hash expired
    assert not await link.client.exists(crashed.key)


async def test_the_beat_loop_reports_the_running_count_and_survives_a_redis_restart(
        redis_server: RedisServer, link: RedisLink) -> None:
    registry = WorkerRegistry(link, "t", ["a"], ttl_seconds=30.0)
    running = [1]
    task = asyncio.create_task(registry.run(lambda: running[0], interval=0.02))
    try:
        async def shows(count: int) -> bool:
            workers = (await cluster_view(link, "t", {"a": 1})).workers
            return [worker.running for worker in workers] == [count]
        await eventually(lambda: shows(1))
        redis_server.stop()
        redis_server.start()  # no persistence: the registration is gone until the next beat
        running[0] = 3
        await eventually(lambda: shows(3))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_render_cluster() -> None:
    workers = [WorkerInfo("gpu1-42-ab12cd", ("flux", "sdxl"), "gpu1", 42, 1000.0, 1),
               WorkerInfo("gpu2-7-ef34ab", ("flux",), "gpu2", 7, 1000.0 - 7200.0, 0)]
    view = ClusterView([LaneLoad("sdxl", 0, 1, 1), LaneLoad("flux", 3, 2, 2)], workers, now=1000.0 + 125.0)
    assert render_cluster(view) == (
        "Queue:\n"
        "• flux: 2/2 running, 3 waiting\n"
        "• sdxl: 1/1 running, 0 waiting\n"
        "Workers (2 alive):\n"
        "• gpu1-42-ab12cd on gpu1 (pid 42): flux, sdxl; 1 running, up 2 min\n"
        "• gpu2-7-ef34ab on gpu2 (pid 7): flux; 0 running, up 2 h 2 min")


def test_render_an_empty_cluster() -> None:
    view = ClusterView([LaneLoad("x", 0, 0, 0)], [], now=0.0)
    assert render_cluster(view) == ("Queue:\n• x: 0/? running, 0 waiting\n"
                                    "No workers alive: waiting jobs start when a worker joins.")
    assert render_cluster(ClusterView([], [], 0.0)).startswith("The queue is empty.")
