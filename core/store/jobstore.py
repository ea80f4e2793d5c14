"""The job store: every job in a SQLite file, so a restart loses nothing.

No SQLite work runs on the event loop. Writes go through a group writer to a writer process
(``child.py``), so their CPU runs on another core than the loop's: many jobs' transitions share
one transaction, and each ``await`` returns only once its write is committed (or raises
``StoreError``). Opening (checks, migrations) and reads run on one thread here, with their own
connection (WAL lets it read while the writer writes). While a store is open, an advisory lock
keeps every other SakaiBot process off the file.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.errors import StoreError
from core.store import transitions as ops
from core.store.checkpoints import WRITER_BACKSTOP_PAGES, Checkpointer
from core.store.opening import StoreLock, check_place, connect, explain, refusal
from core.store.process import WriterProcess, cpu_seconds
from core.store.rows import JobRecord, ModelStats, quota_refusal, start_of_day, to_job, to_record
from core.store.writer import GroupWriter, describe
from core.store.writes import finish_args, insert_args, update_params
from core.types import Job

T = TypeVar("T")
PRUNE_CHUNK = 500  # rows per transaction, so a large prune never holds up the lifecycle writes for long
UNDELIVERED_SQL = ("SELECT * FROM jobs WHERE platform = ? AND state = 'done' AND delivered_at IS NULL"
                   f" AND delivery_attempts < {ops.MAX_SENDS} AND EXISTS (SELECT 1 FROM pending_results"
                   " WHERE pending_results.job_id = jobs.id) ORDER BY seq")
INPUTS_SQL = "SELECT idx, data FROM job_inputs WHERE job_id = ?"
RESULTS_SQL = "SELECT data FROM pending_results WHERE job_id = ? ORDER BY idx"


class JobStore:
    """SQLite behind an async interface; durable writes, fast in groups."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sakaibot-store")
        self._process = WriterProcess(self.path, busy_timeout, WRITER_BACKSTOP_PAGES)
        self._writer = GroupWriter(self._process, self._restart_writer)
        self._conn: sqlite3.Connection | None = None  # opening and reads, on the store thread
        self._checkpoints = Checkpointer(self.path)
        self._lock = StoreLock(self.path)
        self._closed = False
        self._banned: set[str] = set()

    @property
    def commits(self) -> int:
        """Transactions committed so far (the mean batch size is ``writes / commits``)."""
        return self._writer.commits

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id while it runs (its limits, e.g. ``RLIMIT_FSIZE``, are the ones writes meet)."""
        process = self._process.process
        return process.pid if process is not None else None

    @property
    def writer_cpu(self) -> float:
        """CPU seconds the writer process has used so far (Linux; 0.0 where unknown), for benchmarks."""
        pid = self.writer_pid
        return 0.0 if pid is None else cpu_seconds(pid)

    @property
    def writes(self) -> int:
        """Writes committed so far."""
        return self._writer.writes

    # ------------------------------------------------------------------ opening and closing
    async def open(self) -> None:
        """Open (creating) the file, check it and bring its schema up to date; ``StoreOpenError`` if unusable."""
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._open)
        try:
            await self._process.start(self._lock.fd)
        except (sqlite3.Error, OSError) as exc:
            await self._shut()
            raise explain(self.path, exc) if isinstance(exc, sqlite3.Error) else refusal(
                self.path, f"its writer process cannot be started ({exc})", "Check the Python installation") from exc
        await self._checkpoints.open()
        self._writer.after_commit = self._checkpoints.committed
        self._banned = {row[0] for row in await self._select("SELECT user_key FROM bans")}

    def _open(self) -> sqlite3.Connection:
        try:
            check_place(self.path)
            self._lock.acquire()
        except OSError as exc:
            raise refusal(self.path, f"cannot be checked ({exc.strerror or exc})",
                          "Check the [store] path and its permissions") from exc
        try:
            return connect(self.path, self.busy_timeout)
        except BaseException:
            self._lock.release()
            raise

    async def close(self) -> None:
        """Let submitted writes land, then close the file, the lock and the thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._writer.drain()
        self._writer.closed = True
        await self._shut()
        self._executor.shutdown(wait=False)

    async def _shut(self) -> None:
        """The writer process, the checkpoints, then the reading connection (the last to close checkpoints all)."""
        loop = asyncio.get_running_loop()
        await self._process.stop()
        await self._checkpoints.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            await loop.run_in_executor(self._executor, conn.close)
        await loop.run_in_executor(self._executor, self._lock.release)

    async def _restart_writer(self) -> None:
        """After the writer process died (``probe`` and every later write come here): a new one."""
        if self._closed or self._conn is None:
            raise StoreError(detail="the job store is closed")
        await self._process.stop()
        await self._process.start(self._lock.fd)

    # ------------------------------------------------------------------ plumbing
    async def _read(self, func: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: the thread is gone (closed)
            raise StoreError(detail=describe(exc)) from exc

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("the job store is not open")
        return conn.execute(sql, params).fetchall()

    async def _select(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return await self._read(self._rows, sql, params)

    def _jobs(self, sql: str, params: tuple[Any, ...], results: bool) -> list[Job]:
        """Whole jobs in one hop to the thread: each row with its pictures and, if asked, its pending images."""
        jobs = []
        for row in self._rows(sql, params):
            inputs = [(r["idx"], r["data"]) for r in self._rows(INPUTS_SQL, (row["id"],))]
            kept = [r["data"] for r in self._rows(RESULTS_SQL, (row["id"],))] if results else None
            jobs.append(to_job(row, kept, inputs))
        return jobs

    async def _select_jobs(self, sql: str, params: tuple[Any, ...], *, results: bool = False) -> list[Job]:
        return await self._read(self._jobs, sql, params, results)

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        return int(await self._writer.write("execute", sql, params))

    # ------------------------------------------------------------------ the job lifecycle (durable writes)
    async def enqueue(self, job: Job, daily_quota: int | None) -> None:
        """Insert ``job``'s row, within ``daily_quota`` (checked and reserved in the same transaction)."""
        left = await self._writer.write("insert", *insert_args(job, daily_quota))
        if left is not None:
            raise quota_refusal(daily_quota or 0, job.model, left=left)

    async def started(self, job: Job) -> None:
        """An attempt begins; counted before it runs, so a crash during it is known."""
        await self._execute(ops.STARTED_SQL, (job.state.value, job.attempts, job.started_at, time.time(), job.id))

    async def update(self, job: Job) -> None:
        """State, enhanced prompt, generation, attempts or timings changed."""
        await self._execute(ops.UPDATE_SQL, update_params(job))

    async def finish(self, job: Job) -> None:
        """The final state, its error or result metadata; a done job's image bytes until ``mark_delivered``."""
        await self._writer.write("finish", *finish_args(job))

    async def suspend(self, job: Job) -> None:
        """A graceful stop: the job waits as queued for the next start (not a crash)."""
        await self._execute(ops.SUSPEND_SQL, (time.time(), job.id))

    async def recover(self, max_crashes: int) -> list[str]:
        """At start-up: rows a dead process left running count a crash; the ids failed for reaching ``max_crashes``."""
        failed: list[str] = await self._writer.write("recover", max_crashes)
        return failed

    async def begin_delivery(self, job_id: str) -> bool:
        """Record that a send is about to start; ``False`` if delivered, or already resent once after a crash."""
        changed = await self._execute("UPDATE jobs SET delivery_attempts = delivery_attempts + 1, delivering_at = ?"
                                      " WHERE id = ? AND delivered_at IS NULL AND delivery_attempts < ?",
                                      (time.time(), job_id, ops.MAX_SENDS))
        return changed == 1

    async def note_delivery(self, job_id: str, fields: dict[str, str]) -> None:
        """Merge ``fields`` into the job's stored delivery target (where the platform answers it)."""
        await self._writer.write("note_delivery", job_id, fields)

    async def mark_delivered(self, job_id: str) -> bool:
        """Record delivery once; ``False`` if it was already recorded (never deliver twice)."""
        return bool(await self._writer.write("mark_delivered", job_id, time.time()))

    async def prune(self, retention_days: float) -> int:
        """Delete finished rows (and kept bytes) older than ``retention_days``; how many rows went."""
        cutoff, total = time.time() - retention_days * 86400, 0
        while True:
            deleted = int(await self._writer.write("prune", cutoff, PRUNE_CHUNK))
            total += deleted
            if deleted < PRUNE_CHUNK:
                return total

    async def end_refused(self, job_ids: Collection[str]) -> int:
        """Requests refused to their users though their rows may be saved (``StoreUncertain``): those still
        queued are cancelled, in one write, so no restart runs them; how many were."""
        return int(await self._writer.write("end_refused", sorted(job_ids), time.time()))

    async def finish_again(self, job: Job) -> None:
        """A final write that failed (or may have), sent again: the row reads as if ``finish`` had landed."""
        await self._writer.write("finish_again", job.id, *finish_args(job))

    async def probe(self) -> None:
        """A tiny real write and commit: returns only if writes work (again); ``StoreError`` otherwise."""
        await self._writer.write("heartbeat", os.getpid())

    # ------------------------------------------------------------------ the old whole-row writes
    # ------------------------------------------------------------------ reads
    async def job(self, job_id: str) -> Job | None:
        """One stored job by its exact id, request and its pictures included, without result bytes."""
        jobs = await self._select_jobs("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    async def unfinished(self, platform: str) -> list[Job]:
        """A platform's jobs that were waiting or running when the process stopped, in their original order."""
        return await self._select_jobs(f"SELECT * FROM jobs WHERE platform = ? AND state IN {ops.UNFINISHED}"
                                       " AND delivered_at IS NULL ORDER BY seq", (platform,))

    async def undelivered(self, platform: str) -> list[Job]:
        """A platform's finished jobs whose images never reached the user and may still be sent, with the images."""
        return await self._select_jobs(UNDELIVERED_SQL, (platform,), results=True)

    async def history(self, platform: str, user_id: str, limit: int = 10) -> list[JobRecord]:
        """A user's newest jobs first."""
        rows = await self._select("SELECT * FROM jobs WHERE platform = ? AND user_id = ? ORDER BY seq DESC LIMIT ?",
                                  (platform, user_id, limit))
        return [to_record(row) for row in rows]

    async def find(self, prefix: str, platform: str | None = None, user_id: str | None = None) -> list[JobRecord]:
        """Jobs whose id starts with ``prefix``, optionally only one user's."""
        sql = "SELECT * FROM jobs WHERE id LIKE ?"
        params: list[str | None] = [prefix.lower().replace("%", "") + "%"]
        if user_id is not None:
            sql += " AND platform = ? AND user_id = ?"
            params += [platform, user_id]
        rows = await self._select(sql + " ORDER BY seq DESC LIMIT 5", tuple(params))
        return [to_record(row) for row in rows]

    async def used_today(self, platform: str, user_id: str, model: str) -> int:
        """Images counted against today's quota (each of a ``--n`` request): everything not failed or cancelled."""
        rows = await self._select(ops.USED_TODAY_SQL, (platform, user_id, model, start_of_day()))
        return int(rows[0][0])

    async def stats(self, since: float) -> list[ModelStats]:
        """Jobs, failures and mean generation time per model since ``since``."""
        rows = await self._select("SELECT model, COUNT(*), SUM(state = 'failed'), AVG(CASE WHEN state = 'done'"
                                  " THEN finished_at - created_at END) FROM jobs WHERE created_at >= ?"
                                  " GROUP BY model ORDER BY model", (since,))
        return [ModelStats(r[0], int(r[1]), int(r[2] or 0), r[3]) for r in rows]

    # ------------------------------------------------------------------ settings and bans
    async def settings(self, scopes: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
        """Stored settings for each ``(scope, scope_id)``."""
        found: dict[tuple[str, str], dict[str, str]] = {scope: {} for scope in scopes}
        if not scopes:
            return found
        where = " OR ".join("(scope = ? AND scope_id = ?)" for _ in scopes)
        params = tuple(part for scope in scopes for part in scope)
        rows = await self._select(f"SELECT scope, scope_id, key, value FROM settings WHERE {where}", params)
        for row in rows:  # one read for every layer: this runs for each /image
            found[(row["scope"], row["scope_id"])][row["key"]] = row["value"]
        return found

    async def set_setting(self, scope: str, scope_id: str, key: str, value: str | None) -> None:
        """Set (or with ``None`` clear) one setting."""
        if value is None:
            await self._execute("DELETE FROM settings WHERE scope = ? AND scope_id = ? AND key = ?",
                                (scope, scope_id, key))
        else:
            await self._execute("INSERT OR REPLACE INTO settings (scope, scope_id, key, value) VALUES (?, ?, ?, ?)",
                                (scope, scope_id, key, value))

    async def ban(self, user_key: str, by: str) -> None:
        """Refuse every request of ``user_key`` from now on."""
        await self._execute("INSERT OR REPLACE INTO bans (user_key, banned_by, at) VALUES (?, ?, ?)",
                            (user_key, by, time.time()))
        self._banned.add(user_key)

    async def unban(self, user_key: str) -> bool:
        """Lift a ban; ``False`` if there was none."""
        removed = await self._execute("DELETE FROM bans WHERE user_key = ?", (user_key,)) == 1
        self._banned.discard(user_key)
        return removed

    async def is_banned(self, user_key: str) -> bool:
        """Whether ``user_key`` is banned: from memory, since every request asks (one process owns the file)."""
        return user_key in self._banned
