"""Throughput of a cluster with 1, 2 and 4 worker processes against a latency-bound fake backend.

Each worker process has its own fake backend with ``slots`` images at a time taking ``latency``
seconds each (one GPU box per worker); the lane's cluster-wide concurrency is high enough never to
be the limit, and each worker claims only as many jobs as its backend has slots
(``[queue] worker_slots``). One front end (this process, with a real SQLite store, no local worker) submits
``jobs`` jobs at once and counts from the first submit to the last image back. Workers are started
and registered before the clock starts, so process start-up is not counted. Target: 4 workers at
least 3.6 times one. ``python -m tests.benchmarks.cluster_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path

from core.types import EventKind, ImageRequest, Requester
from tests.fakes.cluster_node import build
from tests.redis_server import RedisServer, require_redis_server
from tests.test_cluster import Cluster, until

TARGET = 3.6
WORKERS = (1, 2, 4)


async def throughput(workers: int, jobs: int, slots: int, latency: float) -> float:
    """Images per second with ``workers`` worker processes, on a fresh Redis."""
    folder = Path(tempfile.mkdtemp(prefix=f"cluster-bench-{workers}-"))
    (folder / "redis").mkdir()
    server = RedisServer(require_redis_server(), folder / "redis")
    server.start()
    cluster = Cluster(server, folder)
    os.environ["CLUSTER_TEST_REDIS"] = server.url
    options = {"concurrency": slots * max(WORKERS), "latency": latency, "slots": slots, "worker_slots": slots}
    try:
        processes = [cluster.worker(cluster.settings(f"w{n}", **options), f"w{n}") for n in range(workers)]
        until(lambda: len(cluster.redis.keys("{t}:worker:*")) == workers, "every worker registered")
        engine = build(cluster.settings("front", **options))
        engine.local_worker = False
        await engine.start()
        try:
            began = time.perf_counter()
            handles = [await engine.submit(ImageRequest(prompt=f"bench {n}", requester=Requester(
                platform="bench", user_id=f"u{n % 10}", chat_id="c"))) for n in range(jobs)]
            finals = [await h.wait() for h in handles]
            elapsed = time.perf_counter() - began
        finally:
            await engine.stop(grace=1)
        assert all(final.kind is EventKind.DONE for final in finals)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        return jobs / elapsed
    finally:
        cluster.close()
        server.stop()


async def run(jobs: int, slots: int, latency: float) -> dict[int, float]:
    """Every worker count in turn; prints one line each and the ratios."""
    rates: dict[int, float] = {}
    for workers in WORKERS:
        rates[workers] = await throughput(workers, jobs, slots, latency)
        ideal = workers * slots / latency
        print(f"{workers} worker(s): {rates[workers]:7.1f} img/s  (ideal {ideal:.0f}, "
              f"{rates[workers] / ideal:.0%} of it)", flush=True)
    for workers in WORKERS[1:]:
        print(f"{workers} workers / 1 worker: {rates[workers] / rates[1]:.2f}x")
    verdict = "meets" if rates[WORKERS[-1]] / rates[1] >= TARGET else "misses"
    print(f"target: {WORKERS[-1]} workers >= {TARGET}x one ({verdict} it)")
    return rates


def main() -> None:
    """Parse sizes, run, print."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.cluster_bench")
    parser.add_argument("--jobs", type=int, default=400, help="jobs per run")
    parser.add_argument("--slots", type=int, default=4, help="images each worker's backend makes at once")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per image")
    args = parser.parse_args()
    asyncio.run(run(args.jobs, args.slots, args.latency))


if __name__ == "__main__":
    main()
