"""The Redis queue's own cost per job (put + take + done) against the in-memory queue, same run.

A closed loop paced at about 1,000 jobs/s: each job is put, taken and released by one worker, and
the time spent inside the three queue calls is what is counted (the pacing sleeps are not). The
Redis figure includes the round trips to a real redis-server on the loopback interface, started
here with its data in a temporary folder. ``python -m tests.benchmarks.redis_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from core.engine.memory_queue import InMemoryQueue
from core.engine.queue import JobQueue, QueueOrder
from core.engine.redis_queue import RedisQueue
from tests.redis_server import RedisServer, require_redis_server
from tests.test_redis_queue import make_job

TARGET_US = 1000.0


async def cost_per_job(queue: JobQueue, jobs: int, rate: float) -> list[float]:
    """Microseconds spent in put + take + done for each of ``jobs``, paced at ``rate`` jobs/s."""
    queue.add_lane("a", QueueOrder.FAIR, jobs + 1, 4)
    loop = asyncio.get_running_loop()
    start, costs = loop.time(), []
    for n in range(jobs):
        job = make_job(n, f"user{n % 16}")
        began = time.perf_counter()
        await queue.put(job)
        taken = await queue.take("a")
        await queue.done(taken)
        costs.append((time.perf_counter() - began) * 1e6)
        pause = start + (n + 1) / rate - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
    await queue.close()
    return costs


def describe(name: str, costs: list[float]) -> str:
    """One line: mean, median and 99th percentile in µs."""
    p99 = statistics.quantiles(costs, n=100)[98]
    return f"{name:<8} {statistics.fmean(costs):8.1f} µs/job  (median {statistics.median(costs):.1f}, p99 {p99:.1f})"


async def run(jobs: int, rate: float) -> None:
    """Both queues in one run; print the table and the ratio."""
    server = RedisServer(require_redis_server(), Path(tempfile.mkdtemp(prefix="redis-bench-")))
    server.start()
    try:
        memory = await cost_per_job(InMemoryQueue(), jobs, rate)
        redis = await cost_per_job(RedisQueue(server.url), jobs, rate)
    finally:
        server.stop()
    print(f"queue overhead per job (put + take + done), {jobs} jobs at {rate:.0f} jobs/s")
    print(describe("memory", memory))
    print(describe("redis", redis))
    mean = statistics.fmean(redis)
    print(f"ratio redis/memory: {mean / statistics.fmean(memory):.0f}x; target <= {TARGET_US:.0f} µs/job: "
          f"{'met' if mean <= TARGET_US else 'NOT met'}")


def main() -> None:
    """Parse sizes, run, print."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.redis_bench")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0, help="jobs per second offered")
    args = parser.parse_args()
    asyncio.run(run(args.jobs, args.rate))


if __name__ == "__main__":
    main()
