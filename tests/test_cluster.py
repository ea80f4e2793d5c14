"""Distributed mode with real processes: front ends and workers sharing one real redis-server (AOF on).

Front ends and workers are separate Python processes (``tests/fakes/cluster_node.py``); the fake
backend waits a fixed time per image and records, in Redis, every run and the peak number of
generations running at once across all processes. Each front end appends every delivery to a file,
so "nothing lost, nothing duplicated" is counted per job id.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.types import EventKind, ImageRequest, JobState, Requester
from tests.fakes.cluster_node import PEAK, RUNS, build
from tests.redis_server import RedisServer, running_server

ROOT = Path(__file__).resolve().parent.parent
PROCESS_LIMIT = 90.0  # seconds any process of these tests may run before it counts as hung
PREFIX = "t"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with an append-only file synced on every write."""
    folder = tmp_path / "redis"
    folder.mkdir()
    yield from running_server(folder, appendonly=True)


class Cluster:
    """Writes settings, starts and stops node processes, reads what they recorded."""

    def __init__(self, server: RedisServer, folder: Path) -> None:
        self.server = server
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.redis = redis.Redis.from_url(server.url, decode_responses=True)

    def settings(self, name: str, *, concurrency: int = 2, latency: float = 0.02, slow_latency: float = 1.0,
                 lease: float = 2.0, heartbeat: float = 0.5, slots: int = 0, worker_slots: int | None = None) -> Path:
        """A settings file for node ``name`` (its own store)."""
        doc: dict[str, Any] = {
            "engine": {"default_model": "m", "rate_limit": None, "max_pending_per_user": 10_000,
                       "max_queue_per_lane": 10_000, "shutdown_grace": 2},
            "models": {"m": {"backend": "latency", "concurrency": concurrency, "latency": latency,
                             "slow_latency": slow_latency, "slots": slots}},
            "platforms": {},
            "store": {"path": str(self.folder / f"{name}.db")},
            "queue": {"backend": "redis", "url": self.server.url, "key_prefix": PREFIX, "lease_seconds": lease,
                      "heartbeat_seconds": heartbeat, "worker_slots": worker_slots},
        }
        path = self.folder / f"{name}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CLUSTER_TEST_REDIS": self.server.url, "PYTHONPATH": str(ROOT)}
        log = (self.folder / f"{log_name}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "tests.fakes.cluster_node", *args], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def front(self, name: str, count: int, settings: Path) -> subprocess.Popen[bytes]:
        """A front end that submits ``count`` jobs on its first start and delivers to ``<name>.sent``."""
        return self._spawn(["front", str(settings), name, str(count), str(self.sent_file(name))], name)

    def worker(self, settings: Path, name: str = "worker") -> subprocess.Popen[bytes]:
        """A worker process (``sakaibot worker``)."""
        return self._spawn(["worker", str(settings)], name)

    def sent_file(self, name: str) -> Path:
        return self.folder / f"{name}.sent"

    def deliveries(self, name: str) -> Counter[str]:
        """How often each prompt of front end ``name`` was delivered."""
        path = self.sent_file(name)
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return Counter(line.split(" ", 1)[1] for line in lines)

    def runs(self) -> list[tuple[str, int]]:
        """Every generation started anywhere: (prompt, pid)."""
        entries = self.redis.lrange(RUNS, 0, -1)
        return [(prompt, int(pid)) for prompt, pid in (entry.rsplit(" ", 1) for entry in entries)]

    def peak(self) -> int:
        return int(self.redis.get(PEAK) or 0)

    def idle(self) -> bool:
        """No job waits or is claimed in lane ``m``."""
        base = "{" + PREFIX + "}:lane:m"
        return int(self.redis.hget(f"{base}:meta", "size") or 0) == 0 and self.redis.zcard(f"{base}:leases") == 0

    def finish(self, process: subprocess.Popen[bytes], name: str) -> None:
        """Wait (bounded) for a process that ends by itself; it must exit 0."""
        try:
            code = process.wait(timeout=PROCESS_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"{name} hung:\n{self.log(name)}") from None
        assert code == 0, f"{name} exited {code}:\n{self.log(name)}"

    def stop(self, process: subprocess.Popen[bytes], name: str = "worker") -> None:
        """SIGTERM a worker; it must hand back its jobs and exit 0."""
        process.send_signal(signal.SIGTERM)
        self.finish(process, name)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.redis.close()


@pytest.fixture
def cluster(server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(server, tmp_path)
    try:
        yield made
    finally:
        made.close()


def until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Wait, bounded in time and rounds, for another process to make ``condition`` true."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def expect_each_once(cluster: Cluster, name: str, count: int) -> None:
    delivered = cluster.deliveries(name)
    assert set(delivered) == {f"{name}-{n}" for n in range(count)}, f"lost: {count - len(delivered)}"
    assert max(delivered.values()) == 1, [p for p, n in delivered.items() if n > 1]


# ----------------------------------------------------------------- a burst across processes
def test_two_front_ends_and_three_workers_process_a_burst_with_nothing_lost_or_duplicated(cluster: Cluster) -> None:
    per_front, concurrency = 150, 4
    workers = [cluster.worker(cluster.settings(f"w{n}", concurrency=concurrency), f"w{n}") for n in range(3)]
    fronts = {name: cluster.front(name, per_front, cluster.settings(name, concurrency=concurrency))
              for name in ("fa", "fb")}
    for name, process in fronts.items():
        cluster.finish(process, name)
    for n, process in enumerate(workers):
        cluster.stop(process, f"w{n}")
    for name in fronts:
        expect_each_once(cluster, name, per_front)
    assert len(cluster.runs()) >= 2 * per_front
    assert len({pid for _, pid in cluster.runs()}) >= 2, "the work was shared between worker processes"
    assert 1 < cluster.peak() <= concurrency, "the lane's concurrency holds across every process"
    assert not cluster.redis.keys("{t}:worker:*"), "stopped workers unregistered"
    assert not cluster.redis.keys("{t}:result:*"), "every image was taken by its front end"


# ----------------------------------------------------------------- a worker dies mid-job
def test_a_worker_killed_mid_job_leaves_it_to_another_and_it_is_delivered_once(cluster: Cluster) -> None:
    first = cluster.worker(cluster.settings("w1", slow_latency=1.5), "w1")
    front = cluster.front("slow", 1, cluster.settings("slow", slow_latency=1.5))
    until(lambda: any(pid == first.pid for _, pid in cluster.runs()), "the first worker started the job")
    second = cluster.worker(cluster.settings("w2", slow_latency=1.5), "w2")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    cluster.finish(front, "slow")
    expect_each_once(cluster, "slow", 1)
    assert [pid for _, pid in cluster.runs()] == [first.pid, second.pid]
    cluster.stop(second, "w2")


# ----------------------------------------------------------------- a front end dies and returns
def test_a_front_end_killed_and_restarted_delivers_what_workers_finished_meanwhile(cluster: Cluster) -> None:
    count = 40
    settings = cluster.settings("fr")
    front = cluster.front("fr", count, settings)
    until(lambda: cluster.sent_file("fr").with_suffix(".submitted").exists(), "every job was accepted")
    front.send_signal(signal.SIGKILL)
    front.wait(timeout=10)
    workers = [cluster.worker(cluster.settings(f"w{n}"), f"w{n}") for n in range(2)]
    until(lambda: len(cluster.runs()) >= count and cluster.idle(), "the workers finished every job")
    assert not cluster.deliveries("fr"), "nobody delivered while the front end was away"
    cluster.finish(cluster.front("fr", count, settings), "fr")
    expect_each_once(cluster, "fr", count)
    assert len(cluster.runs()) == count, "results reported while away were delivered, not run again"
    for n, process in enumerate(workers):
        cluster.stop(process, f"w{n}")


# ----------------------------------------------------------------- Redis restarts mid-run
def test_a_redis_restart_mid_run_loses_nothing(cluster: Cluster, server: RedisServer) -> None:
    count = 200
    workers = [cluster.worker(cluster.settings(f"w{n}"), f"w{n}") for n in range(2)]
    front = cluster.front("rr", count, cluster.settings("rr"))
    until(lambda: sum(cluster.deliveries("rr").values()) >= 30, "the run is under way")
    cluster.redis.close()
    server.stop()
    time.sleep(1.0)
    server.start()
    cluster.redis = redis.Redis.from_url(server.url, decode_responses=True)
    cluster.finish(front, "rr")
    expect_each_once(cluster, "rr", count)
    for n, process in enumerate(workers):
        cluster.stop(process, f"w{n}")


# ----------------------------------------------------------------- cancel across processes
async def test_cancel_reaches_a_waiting_job_in_redis_and_a_running_job_on_another_process(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_TEST_REDIS", cluster.server.url)
    options = {"concurrency": 1, "slow_latency": 60.0, "lease": 30.0, "heartbeat": 5.0}
    worker = cluster.worker(cluster.settings("w1", **options), "w1")
    engine = build(cluster.settings("front", **options))
    engine.local_worker = False
    await engine.start()
    try:
        who = Requester(platform="cluster", user_id="u", chat_id="c")
        running = await engine.submit(ImageRequest(prompt="slow-a", requester=who))
        waiting = await engine.submit(ImageRequest(prompt="slow-b", requester=who))
        async with asyncio.timeout(30):
            async for event in running:
                if event.kind is EventKind.GENERATING:
                    break
        await engine.cancel(waiting.id, who)
        assert (await waiting.wait()).kind is EventKind.CANCELLED
        await engine.cancel(running.id, who)
        final = await running.wait()
        assert final.kind is EventKind.CANCELLED and running.job.state is JobState.CANCELLED
        for _ in range(500):  # released by the worker, not by a 30 s lease running out
            if cluster.idle() and int(cluster.redis.get("{test}:active") or 0) == 0:
                break
            await asyncio.sleep(0.02)
        assert cluster.idle(), cluster.redis.zrange("{t}:lane:m:leases", 0, -1)
        assert int(cluster.redis.get("{test}:active") or 0) == 0, "the generation was cancelled"
        assert [prompt for prompt, _ in cluster.runs()] == ["slow-a"], "the cancelled waiting job never ran"
    finally:
        await engine.stop(grace=1)
    cluster.stop(worker, "w1")


# ----------------------------------------------------------------- the command line
def test_sakaibot_worker_and_queue_show_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[engine]\ndefault_model = "preview"\n[models.preview]\nbackend = "preview"\nconcurrency = 3\n'
                      '[platforms.console]\nenabled = false\n[queue]\nbackend = "redis"\n'
                      f'url = "{cluster.server.url}"\nlease_seconds = 4\nheartbeat_seconds = 1\n', encoding="utf-8")
    command = [sys.executable, "-m", "core.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "cli-worker.log").open("wb")
    worker = subprocess.Popen([*command, "worker", "--config", str(config), "--models", "preview"], cwd=tmp_path,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    cluster.processes.append(worker)
    until(lambda: bool(cluster.redis.keys("{sakaibot}:worker:*")), "the worker registered")

    def queue() -> str:
        done = subprocess.run([*command, "queue", "--config", str(config)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=PROCESS_LIMIT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = queue()
    assert "preview" in shown and "workers alive: 1" in shown and f"pid {worker.pid}" in shown
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=PROCESS_LIMIT) == 0
    log.close()
    assert "workers alive: 0" in queue()


@pytest.mark.parametrize("command", [["worker"], ["run", "--no-worker"]])
def test_a_signal_stops_a_process_still_waiting_for_redis_at_start_up(command: list[str], tmp_path: Path) -> None:
    """Redis down at start: the process waits (retrying) and a SIGTERM ends it cleanly instead of being ignored."""
    import socket
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text('[engine]\ndefault_model = "preview"\n[models.preview]\nbackend = "preview"\n'
                      '[platforms.console]\nenabled = true\n[queue]\nbackend = "redis"\n'
                      f'url = "redis://127.0.0.1:{port}/0"\n', encoding="utf-8")
    log = (tmp_path / "waiting.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "core.cli", *command, "--config", str(config)], cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        time.sleep(3)  # well into the start-up's retries
        assert process.poll() is None, "it waits for Redis rather than failing at once"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=PROCESS_LIMIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
        assert process.stdin is not None
        process.stdin.close()
        log.close()
    assert "Traceback" not in (tmp_path / "waiting.log").read_text(encoding="utf-8", errors="replace")
