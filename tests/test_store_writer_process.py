"""The store's writer process under faults, on real SQLite files: it dies mid-batch, its parent dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.errors import StoreError, StoreOpenError
from core.store import JobStore
from core.store.child import Writer
from core.store.process import WriterProcess
from core.store.transitions import OPS
from tests.test_store_durability import ROOT, disk_full, make_job, rows, store

__all__ = ["store"]  # the durability tests' fixture: a store with a short busy_timeout


def die(conn: sqlite3.Connection) -> None:
    """Kill the writer process in the middle of its batch (run there, sent by reference)."""
    os.kill(os.getpid(), signal.SIGKILL)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def test_a_writer_dying_mid_batch_fails_its_writers_and_the_next_write_starts_another(store, tmp_path):
    first = store.writer_pid
    outcomes = await asyncio.gather(store.enqueue(make_job(1), None), store._writer.write(die),
                                    store.enqueue(make_job(2), None), return_exceptions=True)
    assert all(isinstance(outcome, StoreError) for outcome in outcomes), outcomes
    assert "writer process stopped" in str(outcomes[0])
    assert rows(tmp_path / "jobs.db") == []  # it died before its COMMIT: nothing of the batch is kept
    await store.probe()  # what the engine's health check does: a new writer process, and writes work again
    assert store.writer_pid not in (None, first)
    await store.enqueue(make_job(3), None)
    assert rows(tmp_path / "jobs.db") == [(make_job(3).id,)]
    assert (await store.job(make_job(3).id)) is not None  # reads see what the new writer committed


async def test_every_writer_of_a_full_batch_is_answered_by_the_writer_process(store, tmp_path):
    await asyncio.gather(*(store.enqueue(make_job(n), None) for n in range(200)))
    assert len(rows(tmp_path / "jobs.db")) == 200
    assert store.commits < 200  # grouped: many writes share a transaction


async def test_closing_the_store_ends_its_writer_process(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    await store.open()
    pid = store.writer_pid
    assert pid is not None and not gone(pid)
    await store.close()
    assert gone(pid)


PARENT = """
    import asyncio, sys
    from core.store import JobStore
    from tests.test_store_durability import make_job

    async def main(path):
        store = JobStore(path)
        await store.open()
        await store.enqueue(make_job(1), None)
        print(store.writer_pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1]))
"""


def test_a_killed_parent_takes_its_writer_process_with_it_and_frees_the_file(tmp_path):
    path = tmp_path / "jobs.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PARENT), str(path)], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    for _ in range(500):  # bounded: the child sees end of file on its socket and exits
        if gone(child):
            break
        time.sleep(0.02)
    assert gone(child)
    assert asyncio.run(_stored(path, make_job(1).id))  # the lock went with both: the next SakaiBot opens the file


async def _stored(path: Path, job_id: str) -> bool:
    store = JobStore(path)
    await store.open()
    try:
        return await store.job(job_id) is not None
    finally:
        await store.close()


def test_batches_merged_into_one_transaction_get_their_own_answers(tmp_path):
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    writer = Writer(conn, path, OPS, lambda path, exc: "")
    insert = ("execute", ("INSERT INTO t (n) VALUES (?)", (1,)))
    twice = ("execute", ("INSERT INTO t (n) VALUES (?)", (1,)))  # fails on its own: the key is taken
    first, second = writer.batches([[insert], [("execute", ("INSERT INTO t (n) VALUES (2)", ())), twice]])
    assert first == ("ok", [1], {}, 2)  # the failure made it one transaction per write: 2 committed
    assert second[0] == "ok" and second[1][0] == 1 and list(second[2]) == [1]  # the failure is the second's own
    assert "UNIQUE constraint failed" in second[2][1][4]
    assert conn.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]


def test_after_a_failure_of_the_file_the_rest_of_a_batch_is_not_tried(tmp_path):
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    writer = Writer(conn, path, OPS, lambda path, exc: " (diagnosed)")
    bad = ("execute", ("INSERT INTO missing VALUES (1)", ()))
    answer = writer.batches([[bad, (disk_full, ()), ("execute", ("INSERT INTO t (n) VALUES (3)", ()))]])[0]
    assert answer[0] == "ok" and set(answer[2]) == {0, 1, 2}
    assert answer[2][2][1] == "SQLITE_FULL" and answer[2][2][4].endswith("(diagnosed)")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)


async def test_a_writer_process_that_cannot_start_refuses_the_store_and_frees_the_file(tmp_path, monkeypatch):
    def spawn(self, fd, fds):
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], pass_fds=fds)

    monkeypatch.setattr(WriterProcess, "_spawn", spawn)
    store = JobStore(tmp_path / "jobs.db")
    with pytest.raises(StoreOpenError) as caught:
        await store.open()
    await store.close()
    assert "writer process cannot be started" in caught.value.user_message
    monkeypatch.undo()
    assert await _stored(tmp_path / "jobs.db", "nothing") is False  # the lock was given back
