"""Caps, daily quotas and rates shared through a real redis-server by several front ends.

Two ``SharedLimits`` on two Redis clients stand for two front ends; races are many reservations
started at once with ``asyncio.gather``. A Redis restart between reserve and release shows that
giving back is exact and idempotent whatever happened to the connection.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import EngineSettings, QueueSettings, Settings
from core.engine.admission import Admission
from core.engine.redis_link import QueueUnavailable, RedisLink
from core.engine.shared_limits import SharedLimits, create_shared_limits
from core.errors import QueueFull, QuotaExceeded, RateLimited
from core.types import GenerationOptions, GenerationRequest, ImageRequest, Job, JobState, Requester, Size
from tests.redis_server import RedisServer

LimitsFactory = Callable[..., SharedLimits]
ROOT = Path(__file__).resolve().parent.parent


def _factory(server: RedisServer, made: list[SharedLimits]) -> LimitsFactory:
    def build(cap: int = 100, rate: str | None = None, slot_seconds: float = 30.0,
              refresh_seconds: float = 10.0, patience: float = 10.0) -> SharedLimits:
        link = RedisLink(server.url, block_seconds=1.0, patience=patience)  # one client: one front end
        limits = SharedLimits(link, server.url, prefix="t", cap=cap, rate=rate, slot_seconds=slot_seconds,
                              refresh_seconds=refresh_seconds)
        made.append(limits)
        return limits
    return build


@pytest.fixture
async def front_ends(redis_server: RedisServer) -> AsyncIterator[LimitsFactory]:
    """Build front ends' shared limits on the plain server; all closed at the end."""
    made: list[SharedLimits] = []
    yield _factory(redis_server, made)
    for limits in made:
        await limits.aclose()


@pytest.fixture
async def durable_front_ends(durable_server: RedisServer) -> AsyncIterator[LimitsFactory]:
    """The same on the server with an append-only file."""
    made: list[SharedLimits] = []
    yield _factory(durable_server, made)
    for limits in made:
        await limits.aclose()


def make_job(n: int, user: str = "u1", model: str = "a", *, admin: bool = False, count: int = 1) -> Job:
    """A job of ``user`` with a predictable id, asking for ``count`` images."""
    request = ImageRequest(prompt=f"p{n}", requester=Requester(platform="test", user_id=user, is_admin=admin),
                           options=GenerationOptions(count=count))
    generation = GenerationRequest(f"p{n}", Size(64, 64), n, None, None, f"p{n}")
    return Job(id=f"{n:012x}", request=request, model=model, generation=generation)


async def outcomes(calls: list[Any]) -> tuple[int, list[BaseException]]:
    """How many of ``calls`` (run at once) succeeded, and the errors of the others."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [result for result in results if isinstance(result, BaseException)]
    return len(results) - len(errors), errors


# ----------------------------------------------------------------- daily quotas
async def test_one_hundred_concurrent_requests_across_two_front_ends_admit_exactly_the_quota(
        front_ends: LimitsFactory) -> None:
    one, two = front_ends(), front_ends()
    jobs = [make_job(n) for n in range(100)]
    admitted, errors = await outcomes([(one if n % 2 else two).reserve(job, 3, exempt=False)
                                       for n, job in enumerate(jobs)])
    assert admitted == 3 and len(errors) == 97
    assert all(isinstance(error, QuotaExceeded) for error in errors)
    assert "your 3 a images for today" in errors[0].user_message and "00:00 UTC" in errors[0].user_message
    assert await one.quotas.used("test:u1", "a") == 3
    assert await one.caps.count("test:u1") == 3  # the refused ones gave their slots back


FRONT_END = """
import asyncio, sys
from core.engine.redis_link import RedisLink
from core.engine.shared_limits import SharedLimits
from tests.test_shared_limits import make_job

async def main(url, first):
    limits = SharedLimits(RedisLink(url, block_seconds=1.0, patience=10.0), url, prefix="t", cap=1000,
                          rate=None, slot_seconds=30.0, refresh_seconds=10.0)
    results = await asyncio.gather(*[limits.reserve(make_job(n), 3, exempt=False)
                                     for n in range(first, first + 50)], return_exceptions=True)
    await limits.aclose()
    print(sum(result is None for result in results))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_two_front_end_processes_share_the_quota(redis_server: RedisServer) -> None:
    processes = [await asyncio.create_subprocess_exec(sys.executable, "-c", FRONT_END, redis_server.url, str(first),
                                                      stdout=asyncio.subprocess.PIPE, cwd=ROOT)
                 for first in (0, 1000)]
    outputs = [await asyncio.wait_for(process.communicate(), 60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert sum(int(out.decode()) for out, _ in outputs) == 3


async def test_quota_is_per_user_and_per_model(front_ends: LimitsFactory) -> None:
    limits = front_ends()
    await limits.reserve(make_job(1, "u1", "a"), 1, exempt=False)
    await limits.reserve(make_job(2, "u2", "a"), 1, exempt=False)
    await limits.reserve(make_job(3, "u1", "b"), 1, exempt=False)
    with pytest.raises(QuotaExceeded):
        await limits.reserve(make_job(4, "u1", "a"), 1, exempt=False)


async def test_a_replayed_reservation_counts_once(front_ends: LimitsFactory) -> None:
    limits = front_ends()
    job = make_job(1)
    for _ in range(3):  # e.g. a reply lost in a disconnect, and the call retried
        await limits.quotas.reserve(job.id, job.user_key, job.model, 2)
    assert await limits.quotas.used(job.user_key, job.model) == 1


async def test_failed_and_cancelled_jobs_give_their_quota_back_once_done_jobs_never(
        front_ends: LimitsFactory) -> None:
    one, two = front_ends(), front_ends()
    failed, cancelled, done = make_job(1), make_job(2), make_job(3)
    for job in (failed, cancelled, done):
        await one.reserve(job, 3, exempt=False)
    with pytest.raises(QuotaExceeded):
        await one.reserve(make_job(4), 3, exempt=False)
    failed.state, cancelled.state, done.state = JobState.FAILED, JobState.CANCELLED, JobState.DONE
    for job in (failed, cancelled, done):  # released twice, by two processes (front end and worker)
        await one.release(job)
        await two.release(job)
    assert await one.quotas.used("test:u1", "a") == 1
    assert await one.caps.count("test:u1") == 0
    await one.reserve(make_job(5), 3, exempt=False)
    await two.reserve(make_job(6), 3, exempt=False)
    with pytest.raises(QuotaExceeded):
        await one.reserve(make_job(7), 3, exempt=False)


async def test_concurrent_double_releases_give_back_exactly_once(front_ends: LimitsFactory) -> None:
    one, two = front_ends(), front_ends()
    jobs = [make_job(n) for n in range(10)]
    for job in jobs:
        await one.reserve(job, 10, exempt=False)
        job.state = JobState.FAILED
    returned = await asyncio.gather(*[limits.quotas.release(job.id) for job in jobs for limits in (one, two)])
    assert sorted(returned) == [0] * 10 + [1] * 10
    assert await one.quotas.used("test:u1", "a") == 0


async def test_release_after_a_redis_restart_gives_back_exactly_once(
        durable_server: RedisServer, durable_front_ends: LimitsFactory) -> None:
    limits = durable_front_ends()
    kept, ended = make_job(1), make_job(2)
    await limits.reserve(kept, 2, exempt=False)
    await limits.reserve(ended, 2, exempt=False)
    durable_server.stop()
    durable_server.start()  # the append-only file brings the reservations back
    ended.state = JobState.CANCELLED
    await limits.release(ended)  # the link reconnects by itself
    await limits.release(ended)
    assert await limits.quotas.used("test:u1", "a") == 1
    assert await limits.caps.count("test:u1") == 1
    await limits.reserve(make_job(3), 2, exempt=False)
    with pytest.raises(QuotaExceeded):
        await limits.reserve(make_job(4), 2, exempt=False)


async def test_a_redis_that_lost_its_data_never_gives_back_below_zero(
        redis_server: RedisServer, front_ends: LimitsFactory) -> None:
    limits = front_ends()
    job = make_job(1)
    await limits.reserve(job, 1, exempt=False)
    redis_server.stop()
    redis_server.start()  # no persistence: the day's reservations are gone
    job.state = JobState.FAILED
    await limits.release(job)
    assert await limits.quotas.used("test:u1", "a") == 0
    await limits.reserve(make_job(2), 1, exempt=False)
    with pytest.raises(QuotaExceeded):
        await limits.reserve(make_job(3), 1, exempt=False)


# ----------------------------------------------------------------- per-user caps
async def test_the_cap_holds_across_front_ends_under_a_race(front_ends: LimitsFactory) -> None:
    one, two = front_ends(cap=2), front_ends(cap=2)
    jobs = [make_job(n) for n in range(50)]
    admitted, errors = await outcomes([(one if n % 2 else two).reserve(job, None, exempt=False)
                                       for n, job in enumerate(jobs)])
    assert admitted == 2 and all(isinstance(error, QueueFull) for error in errors)
    assert "You already have 2 requests waiting" in errors[0].user_message
    assert await two.caps.count("test:u1") == 2
    assert await one.caps.count("test:u2") == 0


async def test_a_slot_is_freed_once_however_often_the_job_is_released(front_ends: LimitsFactory) -> None:
    one, two = front_ends(cap=2), front_ends(cap=2)
    first, second = make_job(1), make_job(2)
    await one.reserve(first, None, exempt=False)
    await two.reserve(second, None, exempt=False)
    first.state = JobState.DONE
    released = await asyncio.gather(*[limits.caps.release(first.user_key, first.id)
                                      for _ in range(3) for limits in (one, two)])
    assert sorted(released) == [False] * 5 + [True]
    await one.reserve(make_job(3), None, exempt=False)
    with pytest.raises(QueueFull):
        await two.reserve(make_job(4), None, exempt=False)


async def test_slots_of_a_front_end_that_stopped_refreshing_run_out(front_ends: LimitsFactory) -> None:
    crashed, other = front_ends(cap=1, slot_seconds=0.2), front_ends(cap=1, slot_seconds=0.2)
    await crashed.reserve(make_job(1), None, exempt=False)
    with pytest.raises(QueueFull):
        await other.reserve(make_job(2), None, exempt=False)
    for _ in range(400):  # bounded: the slot's deadline is 0.2 s of Redis' clock away
        if await other.caps.count("test:u1") == 0:
            break
        await asyncio.sleep(0.025)
    await other.reserve(make_job(2), None, exempt=False)


async def test_keep_alive_pushes_the_deadlines_of_live_jobs(front_ends: LimitsFactory) -> None:
    limits = front_ends(slot_seconds=30.0, refresh_seconds=0.01)
    live = [make_job(1), make_job(2, "u2")]
    for job in live:
        await limits.reserve(job, None, exempt=False)
    key = limits.caps.base + "test:u1"
    before = await limits.link.client.zscore(key, live[0].id)
    task = asyncio.create_task(limits.keep_alive(lambda: live))
    try:
        for _ in range(400):
            if await limits.link.client.zscore(key, live[0].id) > before:
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError("keep_alive never refreshed the slot")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_refresh_restores_slots_a_redis_without_persistence_forgot(
        redis_server: RedisServer, front_ends: LimitsFactory) -> None:
    limits = front_ends(cap=1)
    job = make_job(1)
    await limits.reserve(job, None, exempt=False)
    redis_server.stop()
    redis_server.start()
    assert await limits.caps.count("test:u1") == 0
    assert await limits.caps.refresh([(job.user_key, job.id, 1)]) == 1
    with pytest.raises(QueueFull):
        await limits.reserve(make_job(2), None, exempt=False)


async def test_a_restored_job_holds_a_slot_past_the_cap(front_ends: LimitsFactory) -> None:
    limits = front_ends(cap=1)
    await limits.reserve(make_job(1), None, exempt=False)
    await limits.hold(make_job(2))  # requeued after a restart: it passed the cap once already
    assert await limits.caps.count("test:u1") == 2


# ----------------------------------------------------------------- rates
async def test_the_rate_holds_across_front_ends_under_a_race(front_ends: LimitsFactory) -> None:
    one, two = front_ends(rate="3/minute"), front_ends(rate="3/minute")
    admitted, errors = await outcomes([(one if n % 2 else two).reserve(make_job(n), None, exempt=False)
                                       for n in range(50)])
    assert admitted == 3 and all(isinstance(error, RateLimited) for error in errors)
    assert 0 < errors[0].retry_after <= 60 and "3/minute" in errors[0].user_message
    assert await one.caps.count("test:u1") == 3  # refused by the rate: slots given back
    keys = await one.link.client.keys("{t}:rate:*")
    assert len(keys) == 1  # the key prefix puts the rate window beside the queue's keys


async def test_a_refusal_by_the_cap_or_quota_uses_no_rate(front_ends: LimitsFactory) -> None:
    limits = front_ends(cap=2, rate="2/minute")
    await limits.reserve(make_job(1, model="a"), 1, exempt=False)
    with pytest.raises(QuotaExceeded):
        await limits.reserve(make_job(2, model="a"), 1, exempt=False)
    await limits.reserve(make_job(3, model="b"), 1, exempt=False)  # the rate's second request
    with pytest.raises(QueueFull):
        await limits.reserve(make_job(4, model="c"), 1, exempt=False)
    assert await limits.quotas.used("test:u1", "c") == 0  # the cap refused before the quota was taken


async def test_a_refusal_by_the_rate_gives_back_slot_and_quota(front_ends: LimitsFactory) -> None:
    limits = front_ends(rate="1/minute")
    await limits.reserve(make_job(1), 5, exempt=False)
    with pytest.raises(RateLimited):
        await limits.reserve(make_job(2), 5, exempt=False)
    assert await limits.caps.count("test:u1") == 1
    assert await limits.quotas.used("test:u1", "a") == 1


async def test_exempt_users_hold_slots_but_are_never_refused(front_ends: LimitsFactory) -> None:
    limits = front_ends(cap=1, rate="1/minute")
    for n in range(3):
        await limits.reserve(make_job(n), 1, exempt=True)
    assert await limits.caps.count("test:u1") == 3
    assert await limits.quotas.used("test:u1", "a") == 0


# ----------------------------------------------------------------- Redis away, wiring
async def test_redis_away_refuses_with_a_retryable_error_and_counts_nothing(
        redis_server: RedisServer, front_ends: LimitsFactory) -> None:
    limits = front_ends(patience=0.3)
    redis_server.stop()
    with pytest.raises(QueueUnavailable) as caught:
        await limits.reserve(make_job(1), 1, exempt=False)
    assert caught.value.retryable
    redis_server.start()
    await limits.reserve(make_job(2), 1, exempt=False)
    assert await limits.quotas.used("test:u1", "a") == 1


async def test_admission_with_shared_limits(front_ends: LimitsFactory) -> None:
    settings = EngineSettings(max_pending_per_user=1, rate_limit=None, admins=["test:boss"])
    admission = Admission({}, None, None, settings, Counter(), limits=front_ends(cap=1))
    assert admission.shares_quota
    await admission.limits.check("test:u1")  # nothing to refuse before the job has an id
    admission.admitted(make_job(0).request)  # counted in reserve instead
    job = make_job(1)
    await admission.reserve(job, 1)
    with pytest.raises(QueueFull):
        await admission.reserve(make_job(2), 1)
    await admission.reserve(make_job(3, "boss"), 1)  # an admin skips the cap
    job.state = JobState.CANCELLED
    await admission.release(job)
    await admission.reserve(make_job(4), 2)


async def test_create_shared_limits_from_settings(redis_server: RedisServer) -> None:
    settings = Settings(engine=EngineSettings(max_pending_per_user=1, rate_limit="5/minute"),
                        queue=QueueSettings(backend="redis", url=redis_server.url, key_prefix="bot7"),
                        models={}, platforms={})
    limits = create_shared_limits(settings)
    try:
        await limits.reserve(make_job(1), 1, exempt=False)
        with pytest.raises(QueueFull):
            await limits.reserve(make_job(2), 1, exempt=False)
        keys = set(await limits.link.client.keys("*"))
        assert keys and all(key.startswith("{bot7}:") for key in keys)
    finally:
        await limits.aclose()


async def test_local_limits_count_in_this_process_and_leave_the_quota_to_the_store() -> None:
    pending: Counter[str] = Counter()
    admission = Admission({}, None, None, EngineSettings(max_pending_per_user=1, rate_limit="1/minute"), pending)
    assert not admission.shares_quota
    job = make_job(1)
    await admission.reserve(job, 1)
    await admission.hold(job)
    await admission.release(job)
    assert pending == Counter()  # the job table counts jobs; the store, the quota
    await admission.limits.check("test:u1")
    admission.admitted(job.request)
    with pytest.raises(RateLimited):
        await admission.limits.check("test:u1")
    pending["test:u2"] = 1
    with pytest.raises(QueueFull, match="You already have 1 requests waiting"):
        await admission.limits.check("test:u2")


async def test_every_image_of_a_request_takes_a_place_and_a_quota_unit(front_ends: LimitsFactory) -> None:
    one, other = front_ends(cap=5), front_ends(cap=5)
    four = make_job(1, count=4)
    await one.reserve(four, quota=6, exempt=False)  # 4 places, 4 units
    with pytest.raises(QueueFull, match="ask for at most 1"):
        await other.reserve(make_job(2, count=2), quota=6, exempt=False)
    for n in (3, 5):  # each takes the fifth place and a unit, and gives the place back when done
        single = make_job(n)
        await other.reserve(single, quota=6, exempt=False)
        single.state = JobState.DONE
        await other.release(single)
    with pytest.raises(QuotaExceeded):  # 6 of 6 units used although a place is free
        await one.reserve(make_job(6), quota=6, exempt=False)
    four.state = JobState.FAILED
    await one.release(four)  # failed: its four places and four units come back
    assert await one.caps.count("test:u1") == 0
    await one.reserve(make_job(7, count=4), quota=6, exempt=False)
