"""The writes of a job's life, as the store's writer process runs them: plain SQL on plain values.

Each op takes the connection first and touches only the columns its transition changes. They run
inside the writer's transaction, so a check and the write it guards (the daily quota) are atomic.
This module imports nothing but the standard library: the writer process loads it by file, without
the rest of SakaiBot (a fresh interpreter starts in ~50 ms instead of ~600). Values arrive ready
(JSON serialised on the event loop, see ``writes.py``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

MAX_SENDS = 2  # the first send, and one resend when a crash left it "delivering"
UNFINISHED = ("queued", "enhancing", "generating")
RUNNING = ("enhancing", "generating")
FINISHED = ("done", "failed", "cancelled")
CRASHED = ("This request stopped the bot {n} times while it was being made, so it was set aside. "
           "Try another prompt or model.")
REFUSED = ("This request was refused when it was sent (the bot could not confirm it was saved), so it never ran. "
           "Send it again if you still want it.")

INSERT_SQL = """
INSERT INTO jobs (id, platform, user_id, chat_id, model, state, attempts, request, generation, enhanced_prompt,
                  timings, created_at, updated_at, images)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING
"""
INPUT_SQL = "INSERT OR REPLACE INTO job_inputs (job_id, idx, data) VALUES (?, ?, ?)"
USED_TODAY_SQL = ("SELECT COALESCE(SUM(images), 0) FROM jobs WHERE platform = ? AND user_id = ? AND model = ?"
                  " AND created_at >= ? AND state NOT IN ('failed', 'cancelled')")
STARTED_SQL = ("UPDATE jobs SET state = ?, attempts = ?, started_at = ?, runs = runs + 1, updated_at = ?"
               " WHERE id = ?")
UPDATE_SQL = ("UPDATE jobs SET state = ?, enhanced_prompt = ?, generation = ?, attempts = ?, timings = ?,"
              " updated_at = ? WHERE id = ?")
FINISH_SQL = ("UPDATE jobs SET state = ?, attempts = ?, enhanced_prompt = ?, error = ?, result = ?, timings = ?,"
              " started_at = ?, finished_at = ?, updated_at = ? WHERE id = ?")
KEEP_SQL = "INSERT OR REPLACE INTO pending_results (job_id, idx, data) VALUES (?, ?, ?)"
SUSPEND_SQL = "UPDATE jobs SET state = 'queued', started_at = NULL, updated_at = ? WHERE id = ?"
REFUSED_SQL = ("UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, updated_at = ?"
               " WHERE id = ? AND state = 'queued'")
UNDELIVERED_ROW_SQL = "SELECT 1 FROM jobs WHERE id = ? AND delivered_at IS NULL"


def insert(conn: sqlite3.Connection, quota: tuple[int, int, tuple[Any, ...]] | None, row: tuple[Any, ...],
           inputs: list[tuple[str, int, bytes]]) -> int | None:
    """Insert a job's row and its pictures; with ``quota`` = (limit, images, USED_TODAY_SQL's parameters), only if
    today's images plus this job's fit. ``None`` when inserted, else how many images are left today."""
    if quota is not None:
        limit, count, params = quota
        used = conn.execute(USED_TODAY_SQL, params).fetchone()[0]
        if used + count > limit:
            return max(0, limit - used)
    conn.execute(INSERT_SQL, row)
    if inputs:
        conn.executemany(INPUT_SQL, inputs)
    return None


def execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    """One statement whose parameters are ready; its row count."""
    return conn.execute(sql, params).rowcount


def finish(conn: sqlite3.Connection, params: tuple[Any, ...], kept: list[tuple[str, int, bytes]]) -> None:
    """The final state and what it produced; a done job's images wait in ``pending_results`` until delivered."""
    conn.execute(FINISH_SQL, params)
    if kept:
        conn.executemany(KEEP_SQL, kept)


def finish_again(conn: sqlite3.Connection, job_id: str, params: tuple[Any, ...],
                 kept: list[tuple[str, int, bytes]]) -> None:
    """A final write that failed, sent again: as ``finish``, but no bytes are kept for a job that was delivered
    meanwhile (or whose row was never saved), since nothing would ever send or drop them."""
    conn.execute(FINISH_SQL, params)
    if kept and conn.execute(UNDELIVERED_ROW_SQL, (job_id,)).fetchone() is not None:
        conn.executemany(KEEP_SQL, kept)


def end_refused(conn: sqlite3.Connection, ids: list[str], now: float) -> int:
    """Requests refused to their users though their rows may have been saved: those still queued are cancelled,
    so no restart runs them. How many rows were (one statement per id: no limit on the number of ids)."""
    return int(conn.executemany(REFUSED_SQL, [(REFUSED, now, now, job_id) for job_id in ids]).rowcount)


def recover(conn: sqlite3.Connection, max_crashes: int) -> list[str]:
    """Rows left running by a dead process: one crash more; back to queued, or failed at ``max_crashes``."""
    marks = ",".join("?" * len(RUNNING))
    conn.execute(f"UPDATE jobs SET crashes = crashes + 1 WHERE state IN ({marks})", RUNNING)
    failed = [row[0] for row in conn.execute(
        f"SELECT id FROM jobs WHERE state IN ({marks}) AND crashes >= ? ORDER BY seq", (*RUNNING, max_crashes))]
    now = time.time()
    conn.execute(f"UPDATE jobs SET state = 'failed', error = ?, finished_at = ?, updated_at = ? WHERE state IN"
                 f" ({marks}) AND crashes >= ?", (CRASHED.format(n=max_crashes), now, now, *RUNNING, max_crashes))
    conn.execute(f"UPDATE jobs SET state = 'queued', started_at = NULL, updated_at = ? WHERE state IN ({marks})",
                 (now, *RUNNING))
    return failed


def prune(conn: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """Delete up to ``limit`` finished rows older than ``cutoff`` with their pending bytes; how many went."""
    marks = ",".join("?" * len(FINISHED))
    ids = [(row[0],) for row in conn.execute(
        f"SELECT id FROM jobs WHERE finished_at < ? AND state IN ({marks}) LIMIT ?", (cutoff, *FINISHED, limit))]
    conn.executemany("DELETE FROM pending_results WHERE job_id = ?", ids)
    conn.executemany("DELETE FROM job_inputs WHERE job_id = ?", ids)
    conn.executemany("DELETE FROM jobs WHERE id = ?", ids)
    return len(ids)


def mark_delivered(conn: sqlite3.Connection, job_id: str, now: float) -> bool:
    """Record delivery once and drop the bytes kept for it."""
    changed = conn.execute("UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
                           (now, job_id)).rowcount
    conn.execute("DELETE FROM pending_results WHERE job_id = ?", (job_id,))
    return bool(changed == 1)


def heartbeat(conn: sqlite3.Connection, pid: int) -> None:
    """Rewrite the one heartbeat row: the smallest real write."""
    conn.execute("INSERT OR REPLACE INTO heartbeat (id, at, pid) VALUES (1, ?, ?)", (time.time(), pid))


def note_delivery(conn: sqlite3.Connection, job_id: str, fields: dict[str, str]) -> None:
    """Merge ``fields`` into the stored request's delivery target."""
    row = conn.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return
    request = json.loads(row[0])
    request["delivery"] = {**(request.get("delivery") or {}), **fields}
    conn.execute("UPDATE jobs SET request = ?, updated_at = ? WHERE id = ?", (json.dumps(request), time.time(), job_id))


# The ops by name: what the event loop sends (a name and plain values) instead of a function.
OPS: dict[str, Callable[..., Any]] = {
    "insert": insert, "execute": execute, "finish": finish, "recover": recover, "prune": prune,
    "mark_delivered": mark_delivered, "heartbeat": heartbeat, "note_delivery": note_delivery,
    "finish_again": finish_again, "end_refused": end_refused,
}
