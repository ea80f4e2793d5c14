"""WAL checkpoints off the commit path: a second connection copies the WAL back on its own thread.

With ``journal_mode = WAL`` and ``synchronous = NORMAL`` a commit only appends to the WAL; the syncs
to disk happen when a checkpoint copies the WAL back into the database. SQLite's automatic
checkpoint runs inside the ``COMMIT`` that crosses its threshold, so every few hundred batches one
batch of writers waited for two ``fsync`` calls (~13 ms here, a fifth of the store's cost per job
in the benchmark). Here a second connection runs ``PASSIVE`` checkpoints on its own thread (SQLite
lets a checkpoint run while the writer keeps appending), so commits no longer wait for them.

What a commit guarantees is unchanged (the same journal mode and synchronous level: a committed
write survives a crash of the process; a power cut can lose the last moments). The writer keeps
SQLite's automatic checkpoint as a backstop at a higher threshold, should checkpoints here fall
behind or fail; a failed checkpoint is logged, and the next one retries it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.store.writer import describe

log = logging.getLogger(__name__)
EVERY_COMMITS = 64  # commits between checkpoints (a few hundred WAL pages at the store's batch sizes)
WRITER_BACKSTOP_PAGES = 8000  # the writer's own automatic checkpoint, only if these fall far behind


class Checkpointer:
    """Runs a ``PASSIVE`` checkpoint of ``path`` after every ``every`` commits, never two at once."""

    def __init__(self, path: Path, every: int = EVERY_COMMITS) -> None:
        self.path = path
        self.every = every
        self.runs = 0  # checkpoints completed (for tests and benchmarks)
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sakaibot-checkpoint")
        self._last = 0
        self._running: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Open the second connection (after the writer's, which created and checked the file).

        Should it fail, the store works on without it: the writer's own checkpoints take over.
        """
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except sqlite3.Error as exc:
            log.warning("job store: checkpoints stay in the writer's commits: %s", describe(exc))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

    def committed(self, commits: int) -> None:
        """The writer has committed ``commits`` transactions so far: checkpoint if enough are new."""
        if commits - self._last < self.every or self._conn is None:
            return
        if self._running is not None and not self._running.done():
            return
        self._last = commits
        self._running = asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)

    def _checkpoint(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the writer's backstop still checkpoints; the next run retries
            log.warning("job store: a background checkpoint failed: %s", describe(exc))
            return
        self.runs += 1

    async def idle(self) -> None:
        """Wait for the checkpoint under way, if any."""
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)

    async def close(self) -> None:
        """Let a running checkpoint end, then close the connection and the thread."""
        await self.idle()
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)
