"""The Redis queue against a real redis-server: the embedded queue's order, caps, cluster-wide
concurrency, leases and their expiry, cancel from anywhere, positions, and a Redis restart."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core.engine.memory_queue import FairLane, InMemoryQueue
from core.engine.queue import QueueOrder
from core.engine.redis_queue import RedisQueue, cancel_all
from core.errors import QueueFull
from core.types import GenerationRequest, ImageRequest, InputImage, Job, Requester, Size
from tests.redis_server import RedisServer
from tests.utils import PNG

BOUND = 20.0  # seconds any single wait in these tests may take before it counts as hung


QueueFactory = Callable[..., RedisQueue]


@pytest.fixture
async def queues(redis_server: RedisServer) -> AsyncIterator[QueueFactory]:
    """Build RedisQueues on the test's server (one per simulated process); all closed at the end."""
    made: list[RedisQueue] = []

    def build(order: QueueOrder = QueueOrder.FAIR, capacity: int = 1000, concurrency: int | None = None,
              server: RedisServer | None = None, **kwargs: Any) -> RedisQueue:
        queue = RedisQueue((server or redis_server).url, **kwargs)
        queue.add_lane("a", order, capacity, concurrency)
        made.append(queue)
        return queue

    yield build
    for queue in made:
        await queue.close()


def make_job(n: int, user: str, model: str = "a") -> Job:
    """A job of ``user`` with a predictable id."""
    request = ImageRequest(prompt=f"prompt {n}", requester=Requester(platform="test", user_id=user))
    generation = GenerationRequest(f"prompt {n}", Size(64, 64), n, None, None, f"prompt {n}")
    return Job(id=f"{n:012x}", request=request, model=model, generation=generation)


def waiting_ids(queue: RedisQueue | InMemoryQueue) -> list[str]:
    """The waiting jobs of lane ``a`` in the order they will run."""
    return [entry.job_id for entry in queue.snapshot("a").waiting]


async def until(condition: Callable[[], bool], rounds: int = 400) -> None:
    """Wait (bounded) for something another process's change makes true."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition never became true")


# ----------------------------------------------------------------- the same order as the embedded queue
@pytest.mark.parametrize("order", [QueueOrder.FAIR, QueueOrder.FIFO])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_same_order_as_the_memory_queue(queues: QueueFactory, order: QueueOrder, seed: int) -> None:
    rng = random.Random(seed)
    redis_queue, memory = queues(order), InMemoryQueue()
    memory.add_lane("a", order, 1000)
    waiting: list[str] = []
    for n in range(160):
        op = rng.random()
        if op < 0.55 or not waiting:
            job = make_job(n, rng.choice("uvwxy"))
            await redis_queue.put(job)
            await memory.put(job)
            waiting.append(job.id)
        elif op < 0.85:
            got, expected = await redis_queue.take("a"), await memory.take("a")
            assert got.id == expected.id
            await redis_queue.done(got)
            waiting.remove(got.id)
        else:
            victim = rng.choice(waiting)
            removed = await redis_queue.remove(victim)
            assert removed is not None and removed.id == victim
            assert await memory.remove(victim) is not None
            waiting.remove(victim)
        if n % 20 == 0:
            await redis_queue.refresh()
            assert waiting_ids(redis_queue) == waiting_ids(memory)
            assert redis_queue.positions("a") == memory.positions("a")
    await redis_queue.refresh()
    assert waiting_ids(redis_queue) == waiting_ids(memory)
    assert redis_queue.waiting("a") == memory.waiting("a") == len(waiting)


async def test_a_job_whose_lease_ran_out_goes_to_the_front_like_a_handed_back_job(queues: QueueFactory) -> None:
    holder = queues(lease_seconds=0.2, heartbeat_seconds=3600)  # never beats: as if it died
    other = queues(concurrency=1)  # one may run at a time: it waits for the lease, then takes that job
    lane = FairLane()
    jobs = [make_job(n, user) for n, user in enumerate("uuvvw")]
    for job in jobs:
        await holder.put(job)
        lane.push(job)
    taken = await holder.take("a")
    assert taken.id == lane.pop().id
    lane.push(taken, front=True)  # what InMemoryQueue does with a job its taker gave up
    again = await asyncio.wait_for(other.take("a"), BOUND)
    assert again.id == taken.id == lane.pop().id
    assert again.attempts == 1  # one claim before this one ended unfinished
    await other.done(again)
    await other.refresh()
    assert waiting_ids(other) == [job.id for job in lane.ordered()]


# ----------------------------------------------------------------- caps and idempotence
async def test_lane_capacity_refuses_past_the_cap_unless_forced(queues: QueueFactory) -> None:
    queue = queues(capacity=3)
    for n in range(3):
        await queue.put(make_job(n, "u"))
    with pytest.raises(QueueFull) as caught:
        await queue.put(make_job(3, "v"))
    assert "3 waiting" in caught.value.user_message
    await queue.put(make_job(3, "v"), force=True)  # a restore passes the cap it already passed once
    assert queue.waiting("a") == 4


async def test_putting_a_queued_or_running_job_again_changes_nothing(queues: QueueFactory) -> None:
    mine, theirs = queues(), queues()
    first, second = make_job(1, "u"), make_job(2, "u")
    await mine.put(first)
    await mine.put(second)
    await theirs.put(first)  # e.g. a restore that finds the job already queued
    taken = await theirs.take("a")
    await mine.put(taken, force=True)  # running in another process: not queued twice
    await mine.refresh()
    assert taken.id == first.id and waiting_ids(mine) == [second.id]


async def test_the_holder_can_hand_a_job_back(queues: QueueFactory) -> None:
    queue = queues()
    job = make_job(1, "u")
    await queue.put(job)
    taken = await queue.take("a")
    await queue.put(taken, force=True)  # the scheduler's hand-back when a start cannot be recorded
    await queue.done(taken)  # released already: nothing to do, the job stays queued
    again = await asyncio.wait_for(queue.take("a"), BOUND)
    assert again.id == job.id


# ----------------------------------------------------------------- cluster-wide concurrency
async def test_at_most_the_lane_concurrency_is_claimed_across_processes(queues: QueueFactory) -> None:
    limit, jobs_count = 3, 60
    processes = [queues(concurrency=limit, block_seconds=0.5) for _ in range(2)]
    for n in range(jobs_count):
        await processes[n % 2].put(make_job(n, f"user{n % 7}"))
    held, peak, served = 0, 0, []
    rng = random.Random(7)

    async def worker(queue: RedisQueue) -> None:
        nonlocal held, peak
        while len(served) < jobs_count:
            job = await queue.take("a")
            held += 1
            peak = max(peak, held)
            served.append(job.id)
            await asyncio.sleep(rng.random() / 200)
            held -= 1
            await queue.done(job)

    workers = [asyncio.create_task(worker(queue)) for queue in processes for _ in range(5)]
    await asyncio.wait_for(until(lambda: len(served) >= jobs_count, rounds=2000), 60)
    await cancel_all(set(workers))  # once may not be enough: redis-py can swallow a cancel in BLPOP
    assert sorted(served) == sorted(f"{n:012x}" for n in range(jobs_count))  # each once, none lost
    assert peak == limit  # ten workers wanted more; the cap held, and was used


# ----------------------------------------------------------------- leases
async def test_a_job_held_by_a_dead_process_is_delivered_to_another(queues: QueueFactory) -> None:
    dead = queues(lease_seconds=0.3, heartbeat_seconds=3600)
    alive = queues(concurrency=1)
    await dead.put(make_job(1, "u"))
    lost = await dead.take("a")
    waiter = asyncio.create_task(alive.take("a"))  # blocks until the lease deadline, not polling
    redelivered = await asyncio.wait_for(waiter, BOUND)
    assert redelivered.id == lost.id
    assert await dead.heartbeat() == [lost.id]  # the stalled holder learns it lost the job
    await dead.done(lost)  # and its late done does not release the new holder's claim
    await alive.refresh()
    assert alive.running("a") == 1


async def test_a_heartbeat_keeps_a_long_job_with_its_holder(queues: QueueFactory) -> None:
    holder = queues(lease_seconds=0.5, heartbeat_seconds=0.05)
    other = queues(concurrency=2)
    first, second = make_job(1, "u"), make_job(2, "v")
    await holder.put(first)
    taken = await holder.take("a")
    rival = asyncio.create_task(other.take("a"))
    await asyncio.sleep(1.5)  # three leases long: only heartbeats keep it
    assert not rival.done()
    await holder.put(second)
    assert (await asyncio.wait_for(rival, BOUND)).id == second.id
    assert await holder.heartbeat() == []
    await holder.done(taken)


async def test_a_taker_cancelled_mid_claim_hands_the_job_back(queues: QueueFactory) -> None:
    queue = queues()
    for n in range(3):
        await queue.put(make_job(n, "u"))
    for _ in range(20):  # cancel at whatever point of the claim the loop happens to be
        task = asyncio.create_task(queue.take("a"))
        await asyncio.sleep(0)
        task.cancel()
        result = await asyncio.gather(task, return_exceptions=True)
        if not isinstance(result[0], BaseException):
            await queue.put(result[0], force=True)
    expected = [f"{n:012x}" for n in range(3)]
    for _ in range(400):  # give-backs run in the background
        await queue.refresh()
        if sorted(waiting_ids(queue)) == expected:
            break
        await asyncio.sleep(0.025)
    assert sorted(waiting_ids(queue)) == expected  # none lost, none twice (order among give-backs may vary)
    assert queue.running("a") == 0


# ----------------------------------------------------------------- cancel and positions from anywhere
async def test_remove_cancels_a_waiting_job_queued_by_another_process(queues: QueueFactory) -> None:
    front, worker = queues(), queues()
    for n in range(3):
        await front.put(make_job(n, "u"))
    removed = await worker.remove(f"{1:012x}")
    assert removed is not None and removed.request.prompt == "prompt 1"
    assert await worker.remove(f"{1:012x}") is None
    taken = await worker.take("a")
    assert await front.remove(taken.id) is None  # claimed: no longer waiting
    await until(lambda: waiting_ids(front) == [f"{2:012x}"])


async def test_positions_reach_every_process(queues: QueueFactory) -> None:
    changed: list[str] = []
    front = queues()
    watcher = queues(on_change=changed.append)
    await watcher.refresh()
    for n, user in enumerate("uuv"):
        await front.put(make_job(n, user))
    expected = {f"{0:012x}": 1, f"{2:012x}": 2, f"{1:012x}": 3}
    await until(lambda: watcher.positions("a") == expected)
    assert watcher.waiting("a") == 3 and "a" in changed
    await front.take("a")
    await until(lambda: watcher.positions("a") == {f"{2:012x}": 1, f"{1:012x}": 2})


# ----------------------------------------------------------------- Redis going away
async def test_a_redis_restart_loses_nothing_acknowledged(durable_server: RedisServer,
                                                          queues: QueueFactory) -> None:
    queue = queues(server=durable_server, block_seconds=0.5, patience=60)
    for n in range(10):
        await queue.put(make_job(n, f"user{n % 3}"))
    held = [await queue.take("a") for _ in range(3)]
    await queue.done(held[0])
    durable_server.stop()
    late_put = asyncio.create_task(queue.put(make_job(10, "user9")))
    takers = [asyncio.create_task(queue.take("a")) for _ in range(2)]
    await asyncio.sleep(0.3)  # let them meet the outage and back off
    assert not late_put.done()
    durable_server.start()
    await asyncio.wait_for(late_put, BOUND)
    taken = [await asyncio.wait_for(task, BOUND) for task in takers]
    for job in held[1:] + taken:
        await queue.done(job)  # leases survived the restart
    while queue.waiting("a"):
        job = await asyncio.wait_for(queue.take("a"), BOUND)
        taken.append(job)
        await queue.done(job)
    seen = {job.id for job in held + taken}
    assert seen == {f"{n:012x}" for n in range(11)} and len(held + taken) == 11


async def test_a_job_with_pictures_is_taken_by_another_process_with_the_same_cleaned_bytes(
        queues: QueueFactory) -> None:
    picture = InputImage(PNG, "image/png", 8, 8)
    mask = InputImage(PNG, "image/png", 8, 8)
    job = make_job(1, "u")
    job.request = job.request.model_copy(update={"images": (PNG,), "mask": PNG})
    job.generation = GenerationRequest("prompt 1", Size(64, 64), 1, None, None, "prompt 1", images=(picture,),
                                       mask=mask, strength=0.3)
    await queues().put(job)
    taken = await asyncio.wait_for(queues().take("a"), BOUND)  # another process's queue
    assert taken.request.images == (PNG,) and taken.generation == job.generation
