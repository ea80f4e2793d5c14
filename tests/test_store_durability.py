"""The job store under faults, on real SQLite files: a file that cannot grow, a locked database,
a failing batch, and every kind of file that start-up must refuse with one clear message."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import StoreError, StoreOpenError
from core.store import JobStore
from core.store.migrations import LATEST
from core.types import GenerationRequest, Job, Size
from tests.utils import request

ROOT = Path(__file__).resolve().parent.parent


def make_job(n: int, prompt: str = "a red fox", user: str = "u1") -> Job:
    """A job as the engine would enqueue it, without an engine."""
    req = request(prompt, user=user)
    generation = GenerationRequest(prompt=prompt, size=Size(512, 512), seed=n, negative_prompt=None, steps=None,
                                   original_prompt=prompt)
    return Job(id=f"{n:012x}", request=req, model="a", generation=generation)


def rows(path: Path, sql: str = "SELECT id FROM jobs") -> list[tuple]:
    """Read with a second, independent connection: only committed data is visible to it."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def run_python(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter on this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, check=False)


@pytest.fixture
async def store(tmp_path):
    opened = JobStore(tmp_path / "jobs.db", busy_timeout=0.2)
    await opened.open()
    yield opened
    await opened.close()


# ---------------------------------------------------------------- a store that cannot grow
FULL_DISK = """
    import asyncio, json, resource, signal, sys
    from core.errors import StoreError
    from core.store import JobStore
    from tests.test_store_durability import make_job

    async def main(path):
        store = JobStore(path)
        await store.open()
        await store.enqueue(make_job(0), None)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))  # no file may grow past 256 KiB
        report = {"acknowledged": 1}
        for n in range(1, 2000):
            try:
                await store.enqueue(make_job(n, "x" * 4000), None)
            except StoreError as exc:
                report.update(failed_id=f"{n:012x}", error=str(exc), user=exc.user_message, cause=repr(exc.__cause__))
                break
            report["acknowledged"] += 1
        report["history"] = len(await store.history("test", "u1", 5000))
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        await store.enqueue(make_job(9999), None)  # room again: the same store takes writes again
        report["after"] = len(await store.history("test", "u1", 5000))
        await store.close()
        print(json.dumps(report))

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing the process
    asyncio.run(main(sys.argv[1]))
"""


def test_a_file_that_cannot_grow_refuses_with_the_real_error_and_recovers(tmp_path):
    path = tmp_path / "jobs.db"
    done = run_python(FULL_DISK, str(path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "failed_id" in report, report  # the limit was reached within the bounded loop
    assert "rollback" not in report["error"]
    assert "SQLITE_FULL" in report["error"] or "SQLITE_IOERR" in report["error"], report  # SQLite's own words
    assert "file too large" in report["error"] and "RLIMIT_FSIZE" in report["error"]  # ...and what they hide
    assert report["user"] == StoreError.default_message
    assert report["history"] == report["acknowledged"]  # reads still work and show every acknowledged job
    assert report["after"] == report["acknowledged"] + 1
    stored = {row[0] for row in rows(path)}
    assert report["failed_id"] not in stored and len(stored) == report["acknowledged"] + 1


# ---------------------------------------------------------------- a database locked by another program
async def test_a_locked_database_refuses_after_busy_timeout_and_works_once_released(store, tmp_path):
    other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as caught:
            await store.enqueue(make_job(1), None)
        assert "locked" in str(caught.value)
        assert other.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0  # nothing acknowledged or written
        assert await store.history("test", "u1") == []  # reads are not blocked meanwhile (WAL)
    finally:
        other.execute("COMMIT")
        other.close()
    await store.enqueue(make_job(1), None)
    assert rows(tmp_path / "jobs.db") == [(make_job(1).id,)]


# ---------------------------------------------------------------- one failing statement fails its batch only
def broken(conn: sqlite3.Connection) -> None:
    """A write that fails on its own (run by the writer process, sent by reference)."""
    conn.execute("INSERT INTO no_such_table VALUES (1)")


def disk_full(conn: sqlite3.Connection) -> None:
    """A write failing as SQLite does when the file cannot grow (run by the writer process)."""
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorname = "SQLITE_FULL"  # what SQLite reports when the file cannot grow
    raise error


async def test_a_write_failing_on_its_own_fails_alone_and_its_batch_commits(store, tmp_path):
    outcomes = await asyncio.gather(store.enqueue(make_job(1), None), store._writer.write(broken),
                                    store.enqueue(make_job(2), None), return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None  # the other users' writes are not refused
    assert isinstance(outcomes[1], StoreError) and "no such table" in str(outcomes[1])
    assert isinstance(outcomes[1].__cause__, sqlite3.OperationalError)
    assert sorted(rows(tmp_path / "jobs.db")) == sorted([(make_job(1).id,), (make_job(2).id,)])


async def test_a_failure_of_the_file_fails_its_whole_batch_and_leaves_the_connection_usable(store, tmp_path):
    outcomes = await asyncio.gather(store.enqueue(make_job(1), None), store._writer.write(disk_full),
                                    store.enqueue(make_job(2), None), return_exceptions=True)
    assert all(isinstance(outcome, StoreError) for outcome in outcomes)
    assert "disk is full" in str(outcomes[0])
    assert rows(tmp_path / "jobs.db") == []  # the batch was rolled back, not half-kept
    await store.enqueue(make_job(3), None)
    await store.probe()
    assert rows(tmp_path / "jobs.db") == [(make_job(3).id,)]


async def test_a_closed_store_refuses_writes_and_reads_and_closes_twice(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreError):
        await store.enqueue(make_job(1), None)
    with pytest.raises(StoreError):
        await store.history("test", "u1")


# ---------------------------------------------------------------- files start-up must refuse
async def _refused(path: Path) -> str:
    store = JobStore(path)
    try:
        with pytest.raises(StoreOpenError) as caught:
            await store.open()
    finally:
        await store.close()
    message = caught.value.user_message
    assert str(path) in message and "Traceback" not in message and "\n  - store: " in message
    return message


async def test_random_bytes_are_refused_as_not_a_database(tmp_path):
    path = tmp_path / "jobs.db"
    path.write_bytes(os.urandom(8192))
    assert "is not a SQLite database" in await _refused(path)
    assert path.read_bytes()[:16] != b"SQLite format 3\x00"  # and nothing was written over it


async def test_a_damaged_page_is_caught_by_the_integrity_check(tmp_path):
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    await store.open()
    for n in range(300):
        await store.enqueue(make_job(n, f"prompt number {n} " * 10), None)
    await store.close()  # the last connection checkpoints the WAL into the file
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with path.open("r+b") as file:
        file.seek(page_size * (pages // 2))
        file.write(os.urandom(page_size))
    message = await _refused(path)
    assert "is damaged" in message and "backup" in message


async def test_a_schema_newer_than_this_sakaibot_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    message = await _refused(path)
    assert f"schema {LATEST + 1}" in message and "Upgrade SakaiBot" in message


async def test_a_path_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    assert "is a file, not a folder" in await _refused(blocker / "jobs.db")


async def test_a_folder_in_place_of_the_file_is_refused(tmp_path):
    (tmp_path / "jobs.db").mkdir()
    assert "is a folder" in await _refused(tmp_path / "jobs.db")


async def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    real_access = os.access  # tests run as root, for whom every folder is writable: ask as a normal user would

    def access(path, mode, **kwargs):
        return False if Path(path) == tmp_path and mode & os.W_OK else real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    assert "its folder is read-only" in await _refused(tmp_path / "jobs.db")


HOLDER = """
    import asyncio, sys
    from core.store import JobStore

    async def main(path):
        store = JobStore(path)
        await store.open()
        print("open", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await store.close()

    asyncio.run(main(sys.argv[1]))
"""


async def test_a_store_used_by_another_process_is_refused_with_its_pid(tmp_path):
    path = tmp_path / "jobs.db"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(HOLDER), str(path), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"open\n"
        message = await _refused(path)
        assert f"another SakaiBot process (pid {holder.pid}) is using it" in message
    finally:
        holder.stdin.write(b"\n")
        await holder.stdin.drain()
        await asyncio.wait_for(holder.wait(), 30)
    store = JobStore(path)  # the lock went with the process
    await store.open()
    await store.close()
