"""The job store's schema, one numbered step at a time; ``PRAGMA user_version`` says where a file is."""

from __future__ import annotations

import sqlite3

STEPS: tuple[str, ...] = (
    # 1: jobs, as the first release stored them
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        chat_id TEXT,
        model TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        request TEXT NOT NULL,
        generation TEXT NOT NULL,
        enhanced_prompt TEXT,
        timings TEXT NOT NULL DEFAULT '{}',
        result TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_by_user ON jobs (platform, user_id, seq);
    CREATE INDEX jobs_by_state ON jobs (state, seq);
    """,
    # 2: exactly-once delivery, pending result bytes, settings, bans
    """
    ALTER TABLE jobs ADD COLUMN delivered_at REAL;
    ALTER TABLE jobs ADD COLUMN updated_at REAL;
    CREATE TABLE pending_results (job_id TEXT PRIMARY KEY REFERENCES jobs (id), data BLOB NOT NULL);
    CREATE TABLE settings (
        scope TEXT NOT NULL, scope_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (scope, scope_id, key)
    );
    CREATE TABLE bans (user_key TEXT PRIMARY KEY, banned_by TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX jobs_by_day ON jobs (platform, user_id, model, created_at);
    """,
    # 3: durable attempts (runs, crashes) and honest delivery (delivering before the send, delivered after)
    """
    ALTER TABLE jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN delivering_at REAL;
    CREATE INDEX jobs_by_finish ON jobs (finished_at);
    """,
    # 4: one row that every start and every probe rewrites (a real write proves the file takes writes);
    #    no index on state: every transition paid to update it, and only start-up reads by state
    """
    CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, pid INTEGER NOT NULL);
    DROP INDEX jobs_by_state;
    """,
    # 5: images in (issue 15): a job may make several images (--n), each counted by the daily quota and each
    #    kept until delivered (pending_results gets an index); the pictures a user sent are kept as raw
    #    bytes beside their job (job_inputs; the mask at index -1), so a restart or a reroll has them
    """
    ALTER TABLE jobs ADD COLUMN images INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE pending_images (
        job_id TEXT NOT NULL REFERENCES jobs (id), idx INTEGER NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (job_id, idx)
    );
    INSERT INTO pending_images (job_id, idx, data) SELECT job_id, 0, data FROM pending_results;
    DROP TABLE pending_results;
    ALTER TABLE pending_images RENAME TO pending_results;
    CREATE TABLE job_inputs (
        job_id TEXT NOT NULL REFERENCES jobs (id), idx INTEGER NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (job_id, idx)
    );
    """,
    # 6: one index per user, not two: every insert wrote a page of each (a user's jobs are spread over the
    #    file), and commits cost what they write. jobs_by_day (platform, user_id, model, created_at) serves the
    #    daily quota as before; /history finds a user's rows through its (platform, user_id) prefix and sorts them
    """
    DROP INDEX jobs_by_user;
    """,
)
LATEST = len(STEPS)


def version(conn: sqlite3.Connection) -> int:
    """The schema version of an open database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> int:
    """Apply every step above the file's version up to ``target``, each in its own transaction."""
    current = version(conn)
    if current > LATEST:
        raise RuntimeError(f"the job store is at schema {current}, newer than this SakaiBot ({LATEST})")
    for number in range(current + 1, target + 1):
        statements = [s.strip() for s in STEPS[number - 1].split(";") if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk): keep the real error
                conn.execute("ROLLBACK")
            raise
    return version(conn)
