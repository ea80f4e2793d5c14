"""The job store: every job in a SQLite file, so a restart loses nothing.

All SQLite work runs on one dedicated thread (never on the event loop); each write is one
transaction. WAL mode and a busy timeout let several processes share the file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from core.store.migrations import migrate
from core.types import GenerationRequest, Image, ImageRequest, Job, JobState, Size

T = TypeVar("T")
MAX_SENDS = 2  # the first send, and one resend when a crash left it "delivering"
UNFINISHED = (JobState.QUEUED.value, JobState.ENHANCING.value, JobState.GENERATING.value)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job, as ``/history`` and ``/info`` show it."""

    id: str
    platform: str
    user_id: str
    model: str
    state: str
    attempts: int
    request: dict[str, Any]
    generation: dict[str, Any]
    enhanced_prompt: str | None
    timings: dict[str, float]
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    finished_at: float | None
    delivered_at: float | None

    @property
    def prompt(self) -> str:
        """What the user typed."""
        return str(self.request.get("prompt", ""))


@dataclass(frozen=True, slots=True)
class ModelStats:
    """``/stats`` for one model."""

    model: str
    jobs: int
    failed: int
    mean_seconds: float | None


def start_of_day(now: float | None = None) -> float:
    """Midnight UTC today, when daily quotas reset."""
    moment = datetime.fromtimestamp(now or time.time(), UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class JobStore:
    """SQLite behind an async interface."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sakaibot-store")
        self._conn: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ plumbing
    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "JobStore.open() first"
        return self._conn

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._transaction((sql, params))[0]

    def _transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> list[int]:
        """Run ``statements`` in one transaction; the row count of each."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            counts = [conn.execute(sql, params).rowcount for sql, params in statements]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return counts

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._db().execute(sql, params).fetchall()

    async def open(self) -> None:
        """Open (creating) the file and bring its schema up to date."""
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        migrate(conn)
        self._conn = conn

    async def close(self) -> None:
        """Close the file and the thread."""
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ jobs
    async def save(self, job: Job) -> None:
        """Insert or update everything about ``job``."""
        await self._run(self._write, SAVE_SQL, _row(job))

    async def keep_result(self, job_id: str, data: bytes) -> None:
        """Hold a finished image until its platform confirms delivery."""
        await self._run(self._write, "INSERT OR REPLACE INTO pending_results (job_id, data) VALUES (?, ?)",
                        (job_id, data))

    async def begin_delivery(self, job_id: str) -> bool:
        """Record that a send is about to start; ``False`` if delivered, or already resent once after a crash."""
        changed = await self._run(self._write, "UPDATE jobs SET delivery_attempts = delivery_attempts + 1,"
                                               " delivering_at = ? WHERE id = ? AND delivered_at IS NULL"
                                               " AND delivery_attempts < ?", (time.time(), job_id, MAX_SENDS))
        return changed == 1

    async def job(self, job_id: str) -> Job | None:
        """One stored job by its exact id, request included, without image bytes."""
        rows = await self._run(self._read, "SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    async def mark_delivered(self, job_id: str) -> bool:
        """Record delivery once; ``False`` if it was already recorded (never deliver twice)."""
        changed, _ = await self._run(
            self._transaction,
            ("UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", (time.time(), job_id)),
            ("DELETE FROM pending_results WHERE job_id = ?", (job_id,)))
        return changed == 1

    async def unfinished(self, platform: str) -> list[Job]:
        """A platform's jobs that were waiting or running when the process stopped, in their original order."""
        rows = await self._run(self._read, f"SELECT * FROM jobs WHERE platform = ? AND state IN {UNFINISHED}"
                                           " AND delivered_at IS NULL ORDER BY seq", (platform,))
        return [_job(row) for row in rows]

    async def undelivered(self, platform: str) -> list[Job]:
        """A platform's finished jobs whose image never reached the user, with the image."""
        rows = await self._run(self._read, "SELECT jobs.*, pending_results.data AS data FROM jobs JOIN pending_results"
                                           " ON pending_results.job_id = jobs.id WHERE jobs.platform = ?"
                                           " AND jobs.state = 'done' AND jobs.delivered_at IS NULL ORDER BY seq",
                               (platform,))
        return [_job(row, row["data"]) for row in rows]

    async def history(self, platform: str, user_id: str, limit: int = 10) -> list[JobRecord]:
        """A user's newest jobs first."""
        rows = await self._run(self._read, "SELECT * FROM jobs WHERE platform = ? AND user_id = ? ORDER BY seq DESC"
                                           " LIMIT ?", (platform, user_id, limit))
        return [_record(row) for row in rows]

    async def find(self, prefix: str, platform: str | None = None, user_id: str | None = None) -> list[JobRecord]:
        """Jobs whose id starts with ``prefix``, optionally only one user's."""
        sql, params = "SELECT * FROM jobs WHERE id LIKE ?", [prefix.lower().replace("%", "") + "%"]
        if user_id is not None:
            sql += " AND platform = ? AND user_id = ?"
            params += [platform, user_id]
        rows = await self._run(self._read, sql + " ORDER BY seq DESC LIMIT 5", tuple(params))
        return [_record(row) for row in rows]

    async def used_today(self, platform: str, user_id: str, model: str) -> int:
        """Images counted against today's quota: everything not failed or cancelled."""
        rows = await self._run(self._read, "SELECT COUNT(*) FROM jobs WHERE platform = ? AND user_id = ? AND model = ?"
                                           " AND created_at >= ? AND state NOT IN ('failed', 'cancelled')",
                               (platform, user_id, model, start_of_day()))
        return int(rows[0][0])

    async def stats(self, since: float) -> list[ModelStats]:
        """Jobs, failures and mean generation time per model since ``since``."""
        rows = await self._run(self._read, "SELECT model, COUNT(*), SUM(state = 'failed'), AVG(CASE WHEN state = 'done'"
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
        rows = await self._run(self._read, f"SELECT scope, scope_id, key, value FROM settings WHERE {where}", params)
        for row in rows:  # one read for every layer: this runs for each /image
            found[(row["scope"], row["scope_id"])][row["key"]] = row["value"]
        return found

    async def set_setting(self, scope: str, scope_id: str, key: str, value: str | None) -> None:
        """Set (or with ``None`` clear) one setting."""
        if value is None:
            await self._run(self._write, "DELETE FROM settings WHERE scope = ? AND scope_id = ? AND key = ?",
                            (scope, scope_id, key))
        else:
            await self._run(self._write, "INSERT OR REPLACE INTO settings (scope, scope_id, key, value) VALUES"
                                         " (?, ?, ?, ?)", (scope, scope_id, key, value))

    async def ban(self, user_key: str, by: str) -> None:
        """Refuse every request of ``user_key`` from now on."""
        await self._run(self._write, "INSERT OR REPLACE INTO bans (user_key, banned_by, at) VALUES (?, ?, ?)",
                        (user_key, by, time.time()))

    async def unban(self, user_key: str) -> bool:
        """Lift a ban; ``False`` if there was none."""
        return await self._run(self._write, "DELETE FROM bans WHERE user_key = ?", (user_key,)) == 1

    async def is_banned(self, user_key: str) -> bool:
        """Whether ``user_key`` is banned."""
        return bool(await self._run(self._read, "SELECT 1 FROM bans WHERE user_key = ?", (user_key,)))


SAVE_SQL = """
INSERT INTO jobs (id, platform, user_id, chat_id, model, state, attempts, request, generation, enhanced_prompt,
                  timings, result, error, created_at, started_at, finished_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
    generation = excluded.generation, enhanced_prompt = excluded.enhanced_prompt, timings = excluded.timings,
    result = excluded.result, error = excluded.error, started_at = excluded.started_at,
    finished_at = excluded.finished_at, updated_at = excluded.updated_at
"""


def _row(job: Job) -> tuple[Any, ...]:
    who = job.request.requester
    gen = job.generation
    generation = {"prompt": gen.prompt, "width": gen.size.width, "height": gen.size.height, "seed": gen.seed,
                  "negative_prompt": gen.negative_prompt, "steps": gen.steps, "original_prompt": gen.original_prompt}
    result = None
    if job.result is not None:
        image = job.result
        result = json.dumps({"mime_type": image.mime_type, "width": image.width, "height": image.height,
                             "seed": image.seed, "bytes": len(image.data), "metadata": image.metadata}, default=str)
    error = getattr(job.error, "user_message", None) if job.error else None
    return (job.id, who.platform, who.user_id, who.chat_id, job.model, job.state.value, job.attempts,
            job.request.model_dump_json(), json.dumps(generation), job.enhanced_prompt, json.dumps(job.timings),
            result, error, job.created_at, job.started_at, job.finished_at, time.time())


def _job(row: sqlite3.Row, data: bytes | None = None) -> Job:
    gen = json.loads(row["generation"])
    generation = GenerationRequest(prompt=gen["prompt"], size=Size(gen["width"], gen["height"]), seed=gen["seed"],
                                   negative_prompt=gen["negative_prompt"], steps=gen["steps"],
                                   original_prompt=gen["original_prompt"])
    job = Job(id=row["id"], request=ImageRequest.model_validate_json(row["request"]), model=row["model"],
              generation=generation, state=JobState(row["state"]), attempts=row["attempts"],
              created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
              enhanced_prompt=row["enhanced_prompt"], timings=json.loads(row["timings"]))
    if data is not None and row["result"]:
        meta = json.loads(row["result"])
        job.result = Image(data=data, mime_type=meta["mime_type"], width=meta["width"], height=meta["height"],
                           seed=meta["seed"], model=row["model"], timings=job.timings, metadata=meta["metadata"])
    return job


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(id=row["id"], platform=row["platform"], user_id=row["user_id"], model=row["model"],
                     state=row["state"], attempts=row["attempts"], request=json.loads(row["request"]),
                     generation=json.loads(row["generation"]), enhanced_prompt=row["enhanced_prompt"],
                     timings=json.loads(row["timings"]), result=json.loads(row["result"]) if row["result"] else None,
                     error=row["error"], created_at=row["created_at"], finished_at=row["finished_at"],
                     delivered_at=row["delivered_at"])
