"""Engine benchmarks: throughput, memory per queued job, and fairness.

Every figure is printed next to a baseline measured in the same run, so the ratios mean the
same on any machine. Nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import GenerationRequest, Image, Progress
from core.chat.messages import queue_text
from core.engine import Engine
from core.types import ImageRequest
from tests.utils import PNG, FakeModel, make_engine, request


@dataclass(slots=True)
class Row:
    """One line of the printed table."""

    name: str
    value: float
    unit: str
    baseline: float
    baseline_name: str
    target: str

    @property
    def ratio(self) -> float:
        """The figure over its baseline."""
        return self.value / self.baseline if self.baseline else float("inf")


class InstantModel(FakeModel):
    """Answers at once with a tiny PNG and reports no progress: only the engine is measured."""

    served = 0

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Return at once."""
        InstantModel.served += 1
        return Image(PNG, "image/png", 8, 8, seed=request.seed, model=self.name)


def _engine(concurrency: int = 4, store: dict[str, object] | None = None,
            **settings: object) -> tuple[Engine, FakeModel]:
    settings = {"rate_limit": None, "max_pending_per_user": 10_000, "max_queue_per_lane": 1_000_000, **settings}
    engine, backend = make_engine({"a": {"backend": "fake", "concurrency": concurrency}}, store=store,
                                  **settings)
    engine.position_interval = 0.25  # the shipped default; the test helper sets 0 for quick tests
    return engine, backend.models["a"]


def _instant(engine: Engine) -> None:
    model = engine.models["a"]
    instant = InstantModel.__new__(InstantModel)
    instant.__dict__.update(model.__dict__)
    engine.models["a"] = instant


async def closed_loop(submit_and_wait: Callable[[ImageRequest], Awaitable[object]], users: int,
                      per_user: int) -> float:
    """µs per job when ``users`` clients each send ``per_user`` requests one after another."""
    batches = [[request(f"p{u}-{i}", user=f"u{u}", seed=i) for i in range(per_user)] for u in range(users)]

    async def client(batch: list[ImageRequest]) -> None:
        for item in batch:
            await submit_and_wait(item)

    started = time.perf_counter()
    await asyncio.gather(*(client(batch) for batch in batches))
    return (time.perf_counter() - started) / (users * per_user) * 1e6


async def engine_per_job(users: int, per_user: int, store: str | None = None, backlog: int = 0) -> float:
    """µs per job through the whole engine (validation, queue, lane worker, events) at 4 lanes' worth.

    With ``backlog``, one heavy user has that many jobs waiting in the same lane first, so every
    position pass and queue operation works against a lane of that length.
    """
    return (await engine_costs(users, per_user, store, backlog))[0]


async def engine_costs(users: int, per_user: int, store: str | None = None,
                       backlog: int = 0) -> tuple[float, float]:
    """Wall µs per job (as ``engine_per_job``) and the process's CPU µs per job over the same run.

    The CPU figure counts every thread of this process and the store's writer process, so it shows
    what a job costs the machine even where the wall figure waits on round trips to the writer.
    """
    engine, _ = _engine(store={"path": store} if store else None)
    _instant(engine)
    await engine.start()
    await _fill(engine, backlog)

    async def through_engine(item: ImageRequest) -> object:
        return await (await engine.submit(item)).wait()

    served = InstantModel.served
    cpu = _cpu(engine)
    result = await closed_loop(through_engine, users, per_user)
    cpu = _cpu(engine) - cpu
    # Backlog jobs are served in turn with the clients' (fair order): count every job the lane ran.
    ran = max(1, InstantModel.served - served)
    result *= users * per_user / ran
    await engine.stop(grace=0)
    return result, cpu / ran * 1e6


def _cpu(engine: Engine) -> float:
    """CPU seconds of this process and of its store's writer process."""
    return time.process_time() + (engine.store.writer_cpu if engine.store is not None else 0.0)


async def _fill(engine: Engine, backlog: int) -> None:
    """Queue ``backlog`` jobs of one heavy user without letting the lane run them yet."""
    if not backlog:
        return
    engine.scheduler.writable.clear()  # workers wait before taking: the backlog stays queued
    for i in range(backlog):
        await engine.submit(request(f"backlog {i}", user="heavy", seed=i, admin=True))
    await asyncio.sleep(0.3)  # the position pass of the filled lane, as in service
    engine.scheduler.writable.set()


async def queue_command_latency(backlog: int, calls: int = 1000) -> float:
    """µs per ``/queue`` answer for a user with two jobs, ``backlog`` jobs waiting in the lane."""
    engine, model = _engine()
    model.gate = asyncio.Event()
    await engine.start()
    await _fill(engine, backlog)
    mine = request("mine", user="asker")
    await engine.submit(mine)
    started = time.perf_counter()
    for _ in range(calls):
        queue_text(engine, mine.requester)
    elapsed = (time.perf_counter() - started) / calls * 1e6
    model.gate.set()
    await engine.stop(grace=0)
    return elapsed


async def growth(sizes: tuple[int, ...], users: int, per_user: int) -> list[Row]:
    """µs per job and ``/queue`` latency with 100 … 100,000 jobs waiting, each against the smallest."""
    per_job = {n: min([await engine_per_job(users, per_user, backlog=n) for _ in range(3)]) for n in sizes}
    per_queue = {n: await queue_command_latency(n) for n in sizes}
    first = sizes[0]
    rows = [Row(f"engine µs/job, {n:,} waiting", per_job[n], "µs/job", per_job[first], f"{first:,} waiting",
                "≤ 2× smallest") for n in sizes]
    rows += [Row(f"/queue latency, {n:,} waiting", per_queue[n], "µs", per_queue[first], f"{first:,} waiting",
                 "≤ 2× smallest") for n in sizes]
    return rows


async def bare_queue_per_job(users: int, per_user: int) -> float:
    """The naive design as a baseline: one asyncio.Queue, four workers, a future per job."""
    queue: asyncio.Queue[asyncio.Future[bytes]] = asyncio.Queue()

    async def worker() -> None:
        while True:
            (await queue.get()).set_result(PNG)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    loop = asyncio.get_running_loop()

    async def through_queue(item: ImageRequest) -> object:
        future = loop.create_future()
        queue.put_nowait(future)
        return await future

    result = await closed_loop(through_queue, users, per_user)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return result


async def queued_job_memory(jobs: int) -> tuple[float, float]:
    """Bytes per queued job (request included), and per bare ImageRequest as the baseline."""
    engine, model = _engine()
    model.gate = asyncio.Event()
    await engine.start()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    handles = [await engine.submit(request(f"prompt number {i}", user=f"u{i % 100}", seed=i)) for i in range(jobs)]
    await asyncio.sleep(0.05)  # let the position pass run, as it would in service
    per_job = (tracemalloc.get_traced_memory()[0] - before) / jobs
    tracemalloc.stop()
    model.gate.set()
    await asyncio.gather(*(h.wait() for h in handles))
    await engine.stop()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    bare = [request(f"prompt number {i}", user=f"u{i % 100}", seed=i) for i in range(jobs)]
    per_request = (tracemalloc.get_traced_memory()[0] - before) / jobs
    tracemalloc.stop()
    del bare
    return per_job, per_request


async def light_user_wait(order: str, heavy_jobs: int = 50) -> int:
    """Jobs started after a light user's request and before it, behind a heavy user's backlog."""
    engine, model = _engine(concurrency=1, queue_order=order)
    model.gate = asyncio.Event()
    await engine.start()
    heavy = [await engine.submit(request(f"heavy-{i}", user="heavy")) for i in range(heavy_jobs)]
    await asyncio.sleep(0.01)
    started_before = len(model.calls)
    light = await engine.submit(request("light", user="light"))
    model.gate.set()
    await asyncio.gather(*(h.wait() for h in [*heavy, light]))
    await engine.stop()
    return [c.prompt for c in model.calls].index("light") - started_before


async def stored_per_job(users: int, per_user: int) -> float:
    """µs per job with the shipped SQLite job store on (a fresh file per run)."""
    return (await stored_costs(users, per_user))[0]


async def stored_costs(users: int, per_user: int) -> tuple[float, float]:
    """Wall and CPU µs per job with the shipped SQLite job store on (a fresh file per run)."""
    with tempfile.TemporaryDirectory() as folder:
        return await engine_costs(users, per_user, store=f"{folder}/jobs.db")


async def run(users: int = 50, per_user: int = 100, queued: int = 10_000,
              sizes: tuple[int, ...] = (100, 10_000, 100_000)) -> list[Row]:
    """Measure everything; returns the rows that ``render`` prints."""
    await engine_per_job(10, 20)  # warm-up
    engine_runs = [await engine_costs(users, per_user) for _ in range(3)]
    bare_us = min([await bare_queue_per_job(users, per_user) for _ in range(3)])
    stored_runs = [await stored_costs(users, per_user) for _ in range(3)]
    engine_us, engine_cpu = min(c[0] for c in engine_runs), min(c[1] for c in engine_runs)
    stored_us, stored_cpu = min(c[0] for c in stored_runs), min(c[1] for c in stored_runs)
    per_job, per_request = await queued_job_memory(queued)
    fair, fifo = await light_user_wait("fair"), await light_user_wait("fifo")
    return [
        Row("engine, store off, best of 3", engine_us, "µs/job", bare_us, "bare asyncio.Queue", "≤ 30 µs/job"),
        Row("engine, store off, best of 3", 1e6 / engine_us, "jobs/s", 1e6 / bare_us, "bare asyncio.Queue",
            "≥ 33,000"),
        Row("engine, SQLite store on, best of 3", stored_us, "µs/job", engine_us, "engine, store off",
            "≤ 100 µs/job"),
        Row("engine, store off, process CPU, best of 3", engine_cpu, "µs/job", bare_us, "bare asyncio.Queue", "-"),
        Row("engine, store on, CPU (+ writer process), best of 3", stored_cpu, "µs/job", engine_cpu,
            "store off, process CPU", "-"),
        Row(f"memory per queued job ({queued:,})", per_job / 1024, "KB", per_request / 1024, "bare ImageRequest",
            "≤ 5 KB"),
        Row("light user's wait behind 50, fair", fair, "slots", fifo, "same under FIFO", "≤ 1 slot"),
        *await growth(sizes, users, max(1, per_user // 5)),
    ]


def render(rows: list[Row]) -> str:
    """The table as text."""
    lines = [f"{'measure':48} {'value':>10} {'unit':7} {'baseline':>10} {'ratio':>7}  {'target':12} baseline"]
    for row in rows:
        lines.append(f"{row.name:48} {row.value:10.2f} {row.unit:7} {row.baseline:10.2f} {row.ratio:7.2f}  "
                     f"{row.target:12} {row.baseline_name}")
    return "\n".join(lines)
