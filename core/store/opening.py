"""Opening the job store: refuse, with one clear message, a file that cannot be trusted or used.

Checked in order, on the store thread: the place (folder, file, permissions), the process lock
(one SakaiBot per file), SQLite's ``quick_check``, the schema version, then a real write. Each
refusal is a ``StoreOpenError`` naming the path, what is wrong and what to do.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import ClassVar

from core.errors import StoreOpenError
from core.store.checkpoints import WRITER_BACKSTOP_PAGES
from core.store.migrations import LATEST, migrate, version

ORPHAN_WAIT = 5.0  # seconds to wait for the writer process of a lock holder that died (it exits at once)
ACCESS = "Give the bot's user read and write access to the file and its folder, or choose another [store] path"
MOVE_AWAY = ("Restore it from a backup, or move it away so that a new, empty store is created "
             "(the jobs and history in it are then lost)")
# SQLite's primary result codes (https://sqlite.org/rescode.html) and what each means for the user.
EXPLAINED: dict[int, tuple[str, str]] = {
    3: ("cannot be accessed (permission denied)", ACCESS),
    5: ("is locked by another program", "Close the program holding it (a sqlite3 shell in a transaction?) "
                                        "and start again"),
    6: ("is locked by another program", "Close the program holding it and start again"),
    8: ("cannot be written (read-only)", ACCESS),
    10: ("could not be read or written (disk I/O error)", "Check the disk and the file system, then start again"),
    11: ("is damaged (SQLite reports a malformed database)", MOVE_AWAY),
    13: ("cannot be written: the disk is full", "Free some disk space, then start again"),
    14: ("cannot be opened", ACCESS),
    26: ("is not a SQLite database", "Point [store] path at SakaiBot's job store, or move this file away so "
                                    "that a new store is created"),
}


class StoreLock:
    """An exclusive ``flock`` on ``<path>.lock``, held while the store is open: one SakaiBot per file.

    Stores of the same process share it (counted), so only other processes are refused.
    """

    _held: ClassVar[dict[str, tuple[int, int]]] = {}  # lock file -> (descriptor, stores of this process using it)
    _guard = threading.Lock()

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = os.path.realpath(f"{db_path}.lock")
        self.held = False

    @property
    def fd(self) -> int | None:
        """The lock file's descriptor while held (the writer process inherits it, and the lock with it)."""
        held = self._held.get(self.path) if self.held else None
        return held[0] if held else None

    def acquire(self) -> None:
        """Take the lock, or raise ``StoreOpenError`` naming the process that has it."""
        with self._guard:
            fd, count = self._held.get(self.path) or (self._lock_file(), 0)
            self._held[self.path] = (fd, count + 1)
            self.held = True

    def release(self) -> None:
        """Give the lock up (the last store of this process closes the file, which unlocks it)."""
        with self._guard:
            if not self.held:
                return
            self.held = False
            fd, count = self._held.pop(self.path)
            if count > 1:
                self._held[self.path] = (fd, count - 1)
            else:
                os.close(fd)

    def _lock_file(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise refusal(self.db_path, f"its lock file {self.path} cannot be created ({exc.strerror})",
                          ACCESS) from exc
        deadline = time.monotonic() + ORPHAN_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                holder = _holder(fd)
                if _alive(holder) or time.monotonic() > deadline:
                    os.close(fd)
                    raise refusal(self.db_path, f"another SakaiBot process{holder} is using it",
                                  "Stop that process first, or give this one its own [store] path") from exc
                time.sleep(0.02)  # its holder died: its writer process ends once its last batch lands
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd


def _alive(holder: str) -> bool:
    """Whether the process named by ``_holder`` runs (unknown counts as running: refuse as before)."""
    if not holder:
        return True
    try:
        os.kill(int(holder.strip(" ()").removeprefix("pid ")), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file, when the holder wrote it."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def refusal(path: Path, reason: str, advice: str) -> StoreOpenError:
    """One ``StoreOpenError`` with the store's path."""
    return StoreOpenError(str(path), reason, advice)


def explain(path: Path, exc: sqlite3.Error) -> StoreOpenError:
    """Translate a SQLite failure at start-up into what is wrong and what to do."""
    code = getattr(exc, "sqlite_errorcode", 1) & 0xFF
    reason, advice = EXPLAINED.get(code, ("cannot be used", ACCESS))
    return refusal(path, f"{reason} ({exc})", advice)


def check_place(path: Path) -> None:
    """The folder exists (created if missing) and the path is a usable file or nothing yet."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise refusal(path, f"{parent} is a file, not a folder", "Choose a [store] path inside a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refusal(path, f"its folder cannot be created ({exc.strerror})", ACCESS) from exc
    if path.exists() and not path.is_file():
        raise refusal(path, "is a folder or a device, not a file", "Point [store] path at a file")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise refusal(path, "its folder is read-only", ACCESS)
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise refusal(path, "cannot be read and written (permission denied)", ACCESS)


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open, check and migrate the database; the connection, ready for the store thread."""
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise explain(path, exc) from exc
    try:
        _prepare(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    conn.row_factory = sqlite3.Row
    try:
        _check(conn, path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: a commit survives a process crash
        conn.execute("PRAGMA cache_size = -16384")  # 16 MiB: a large batch stays in memory until its commit
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_BACKSTOP_PAGES}")  # checkpoints run aside (checkpoints.py)
        migrate(conn)
        conn.execute("INSERT OR REPLACE INTO heartbeat (id, at, pid) VALUES (1, ?, ?)", (time.time(), os.getpid()))
    except sqlite3.Error as exc:
        raise explain(path, exc) from exc


def _check(conn: sqlite3.Connection, path: Path) -> None:
    """Integrity first (before anything is written to the file), then the schema version."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise refusal(path, f"is damaged (integrity check: {'; '.join(problems)})", MOVE_AWAY)
    found = version(conn)
    if found > LATEST:
        raise refusal(path, f"was written by a newer SakaiBot (schema {found}; this one knows up to {LATEST})",
                      "Upgrade SakaiBot, or choose another [store] path")
