"""WAL checkpoints run beside the writer, on real SQLite files: commits never carry them."""

from __future__ import annotations

import shutil
import sqlite3

from core.store import JobStore
from core.store.checkpoints import WRITER_BACKSTOP_PAGES
from tests.test_store_durability import make_job


def _rows_in_main_file(db, tmp_path) -> list[tuple[str]]:
    """The rows the database file itself holds, without its WAL: what checkpoints have copied back."""
    alone = tmp_path / "alone.db"
    shutil.copyfile(db, alone)
    with sqlite3.connect(alone) as conn:
        return conn.execute("SELECT id FROM jobs ORDER BY seq").fetchall()


async def test_committed_rows_reach_the_database_file_through_background_checkpoints(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    await store.open()
    store._checkpoints.every = 1
    try:
        for n in range(5):  # one commit each: every commit asks for a checkpoint
            await store.enqueue(make_job(n), None)
        await store._checkpoints.idle()
        await store.enqueue(make_job(5), None)  # a checkpoint after the fifth commit at the latest
        await store._checkpoints.idle()
        assert store._checkpoints.runs >= 1
        in_file = _rows_in_main_file(tmp_path / "jobs.db", tmp_path)
        assert in_file and in_file == [(make_job(n).id,) for n in range(len(in_file))]  # a committed prefix
    finally:
        await store.close()
    assert _rows_in_main_file(tmp_path / "jobs.db", tmp_path) == [(make_job(n).id,) for n in range(6)]


def autocheckpoint(conn: sqlite3.Connection) -> int:
    """Run by the writer process, on its own connection (sent by reference)."""
    return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


async def test_the_writer_checkpoints_itself_only_as_a_backstop(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    await store.open()
    try:
        assert await store._writer.write(autocheckpoint) == WRITER_BACKSTOP_PAGES
        await store.enqueue(make_job(1), None)
        assert store._checkpoints.runs == 0  # below the threshold nothing runs: no thread work per commit
    finally:
        await store.close()


async def test_a_store_without_its_checkpoint_connection_still_commits(tmp_path, monkeypatch):
    def refuse(self):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr("core.store.checkpoints.Checkpointer._connect", refuse)
    store = JobStore(tmp_path / "jobs.db")
    await store.open()
    store._checkpoints.every = 1
    try:
        await store.enqueue(make_job(1), None)
        await store._checkpoints.idle()
        assert store._checkpoints.runs == 0
    finally:
        await store.close()
    assert _rows_in_main_file(tmp_path / "jobs.db", tmp_path) == [(make_job(1).id,)]  # closing checkpoints all
