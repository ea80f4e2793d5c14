"""Job store benchmark: µs per job lifecycle (enqueue + started + finish) with group commit.

Printed next to a baseline measured in the same run on the same code: the same writes awaited one
after another, so that each runs in its own transaction (what every write cost before group commit).
The target is the engine's share: ≤ 100 µs per job with the store on, against ~33 µs without it.
Nothing here asserts a time. ``python -m tests.benchmarks.store_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from core.store import JobStore
from core.types import Image, Job, JobState
from tests.benchmarks.engine_bench import Row, render
from tests.test_store_durability import make_job
from tests.utils import PNG


async def lifecycle(store: JobStore, job: Job) -> None:
    """The three durable writes every job makes: admitted, started, finished with its image."""
    await store.enqueue(job, None)
    job.state, job.attempts, job.started_at = JobState.GENERATING, 1, time.time()
    await store.started(job)
    job.state, job.finished_at = JobState.DONE, time.time()
    job.result = Image(PNG, "image/png", 8, 8, seed=job.generation.seed, model=job.model)
    await store.finish(job)


async def concurrently(store: JobStore, jobs: list[Job]) -> None:
    """Every job's lifecycle at once, as many lanes and users would write."""
    await asyncio.gather(*(lifecycle(store, job) for job in jobs))


def at_a_time(width: int) -> Callable[[JobStore, list[Job]], Awaitable[None]]:
    """``width`` workers taking jobs one after another, as lane workers do: smaller batches."""
    async def drive(store: JobStore, jobs: list[Job]) -> None:
        pending = iter(jobs)

        async def worker() -> None:
            for job in pending:
                await lifecycle(store, job)

        await asyncio.gather(*(worker() for _ in range(width)))
    return drive


async def one_by_one(store: JobStore, jobs: list[Job]) -> None:
    """Each write awaited before the next: one transaction per write."""
    for job in jobs:
        await lifecycle(store, job)


async def measure(folder: Path, name: str, jobs: int,
                  drive: Callable[[JobStore, list[Job]], Awaitable[None]]) -> tuple[float, float]:
    """µs per lifecycle and mean writes per transaction, on a fresh store file."""
    store = JobStore(folder / f"{name}.db")
    await store.open()
    batch = [make_job(n, f"benchmark prompt {n}") for n in range(jobs)]
    try:
        commits, writes = store.commits, store.writes
        started = time.perf_counter()
        await drive(store, batch)
        elapsed = time.perf_counter() - started
        return elapsed / jobs * 1e6, (store.writes - writes) / max(1, store.commits - commits)
    finally:
        await store.close()


async def run(jobs: int = 2000) -> list[Row]:
    """The rows: group commit against one transaction per write, and the batch sizes behind them."""
    with tempfile.TemporaryDirectory(prefix="sakaibot-store-bench-") as tmp:
        folder = Path(tmp)
        await measure(folder, "warm-up", min(jobs, 200), concurrently)
        grouped_us, grouped_batch = await measure(folder, "grouped", jobs, concurrently)
        lanes_us, lanes_batch = await measure(folder, "lanes", jobs, at_a_time(32))
        single_us, single_batch = await measure(folder, "single", jobs, one_by_one)
    return [
        Row(f"store lifecycle, {jobs:,} concurrent jobs", grouped_us, "µs/job", single_us,
            "one transaction per write", "≤ 67 µs/job"),
        Row("store: mean writes per transaction", grouped_batch, "writes", single_batch,
            "one transaction per write", "-"),
        Row("store lifecycle, 32 jobs at a time", lanes_us, "µs/job", single_us, "one transaction per write",
            "≤ 67 µs/job"),
        Row("store: mean writes per transaction, 32 at a time", lanes_batch, "writes", single_batch,
            "one transaction per write", "-"),
    ]


def main() -> None:
    """Parse the size, run, print."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.store_bench")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs whose lifecycles are written")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(render(asyncio.run(run(args.jobs))))


if __name__ == "__main__":
    main()
