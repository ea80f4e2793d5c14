"""The lock of a bot that died, still held by its writer process while that finishes its last batch.

A SIGKILLed bot's writer process keeps the store's lock until it sees end of file and exits, a moment
later. A new bot started at once must wait that moment out instead of refusing ("another SakaiBot
is using it"), but must still refuse a holder that does not let go (``ORPHAN_WAIT``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import StoreOpenError
from core.store import opening
from core.store.opening import StoreLock

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # holds the lock until the test closes our stdin, like a writer process finishing its batch
"""


def _dead_pid() -> int:
    """The pid of a process that has exited (the bot that wrote the lock file and was killed)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def _orphan(db: Path) -> subprocess.Popen[str]:
    """A process holding ``db``'s lock whose file names a dead bot, as a killed bot's writer leaves it."""
    lock_file = Path(f"{db}.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_file)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    lock_file.write_text(f"{_dead_pid()}\n")
    return holder


def _let_go(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()


def test_a_dead_bots_lock_is_waited_for_until_its_writer_process_lets_go(tmp_path):
    db = tmp_path / "jobs.db"
    holder = _orphan(db)
    lock, outcome = StoreLock(db), []

    def acquire() -> None:
        try:
            lock.acquire()
            outcome.append("acquired")
        except StoreOpenError as exc:
            outcome.append(exc.user_message)

    taker = threading.Thread(target=acquire)
    try:
        taker.start()
        taker.join(timeout=0.3)
        assert outcome == []  # neither refused (its holder's bot is dead) nor taken (the lock is still held)
    finally:
        _let_go(holder)
    taker.join(timeout=30)
    assert outcome == ["acquired"]
    assert lock.held and Path(f"{db}.lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_a_dead_bots_lock_held_past_the_wait_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(opening, "ORPHAN_WAIT", 0.2)
    db = tmp_path / "jobs.db"
    holder = _orphan(db)
    try:
        with pytest.raises(StoreOpenError) as refused:
            StoreLock(db).acquire()
    finally:
        _let_go(holder)
    assert "another SakaiBot process" in refused.value.user_message
    assert "Stop that process first" in refused.value.user_message
    lock = StoreLock(db)  # once it is gone, the file is free
    lock.acquire()
    lock.release()
