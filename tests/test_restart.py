"""Killed with SIGKILL while jobs wait and run, started again: every job finishes and is delivered once."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS = 6


def _config(tmp: Path) -> Path:
    config = tmp / "config.toml"
    config.write_text(f"""
[engine]
default_model = "preview"
rate_limit = "off"
max_pending_per_user = 50
[store]
path = "{tmp / 'jobs.db'}"
[models.preview]
backend = "preview"
latency = 0.4
concurrency = 1
area = 16384
[platforms.console]
enabled = true
output_dir = "{tmp / 'out'}"
""")
    return config


def _sakaibot(config: Path, stdin: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "core.cli", "--config", str(config), "run"], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=config.parent)


def _read_until(process: subprocess.Popen[str], pattern: str, count: int, limit: float = 60) -> str:
    seen, deadline = "", time.monotonic() + limit
    assert process.stdout is not None
    while len(re.findall(pattern, seen)) < count:
        assert time.monotonic() < deadline, seen
        line = process.stdout.readline()
        assert line, seen
        seen += line
    return seen


def test_sigkill_then_restart_delivers_every_job_and_resends_at_most_once(tmp_path):
    """At-least-once: a kill between a send and its "delivered" mark resends that one job once, never more."""
    config = _config(tmp_path)
    first = _sakaibot(config, subprocess.PIPE)
    assert first.stdin is not None and first.stdout is not None
    for n in range(JOBS):
        first.stdin.write(f"/image=preview=job number {n} --seed {n}\n")
    first.stdin.flush()
    before = _read_until(first, r"✅ Done", 2)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before += first.stdout.read()  # whatever it printed before it died
    first.stdin.close()
    first.stdout.close()
    second = _sakaibot(config, subprocess.DEVNULL)
    after, _ = second.communicate(timeout=120)
    assert second.returncode == 0, after
    delivered = Counter(re.findall(r"\[([0-9a-f]{12})\] ✅ Done", before + after))
    assert len(delivered) == JOBS and max(delivered.values()) <= 2, before + after
    assert sum(delivered.values()) <= JOBS + 1, before + after  # only the send the kill interrupted repeats
    assert len(list((tmp_path / "out").glob("*.png"))) == JOBS
    assert "resumed after a restart" in after
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        rows = db.execute("SELECT state, delivered_at IS NOT NULL FROM jobs").fetchall()
    assert rows == [("done", 1)] * JOBS


def test_sigterm_finishes_the_running_job_and_keeps_the_waiting_one(tmp_path):
    config = _config(tmp_path)
    config.write_text(config.read_text().replace("latency = 0.4", "latency = 1.5"))
    process = _sakaibot(config, subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("/image=preview=running --seed 1\n/image=preview=waiting --seed 2\n")
    process.stdin.flush()
    seen = _read_until(process, r"⏳ Queued for preview\n", 2)  # both admitted
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)  # an impatient second signal changes nothing
    rest, _ = process.communicate(timeout=60)
    output = seen + rest
    assert process.returncode == 0, output
    assert "✅ Done" in output and "⏸ The bot is restarting" in output, output
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        rows = dict(db.execute("SELECT json_extract(request, '$.prompt'), state FROM jobs").fetchall())
    assert rows == {"running": "done", "waiting": "queued"}


def _limited() -> None:
    """In the child: files may not grow past 192 KiB, and a refused write is an error, not a signal."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (192 * 1024, resource.RLIM_INFINITY))


def test_run_says_so_and_exits_non_zero_when_the_store_fails(tmp_path):
    """A store that cannot grow: requests are refused with a message, and the supervisor sees exit code 1."""
    config = _config(tmp_path)
    config.write_text(config.read_text().replace("latency = 0.4", "latency = 0").replace(
        "max_pending_per_user = 50", "max_pending_per_user = 10000"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "core.cli", "--config", str(config), "run"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=tmp_path, preexec_fn=_limited)
    assert process.stdin is not None
    process.stdin.write("".join(f"/image=preview=job {n} " + "with a long prompt " * 40 + "\n" for n in range(400)))
    process.stdin.flush()
    seen = _read_until(process, r"couldn't save your request|can't save new requests", 1, limit=120)
    process.send_signal(signal.SIGTERM)  # what a supervisor does; acknowledged jobs stay on disk
    rest, errors = process.communicate(timeout=120)
    assert process.returncode == 1, seen + rest + errors[-3000:]
    assert "The job store failed" in errors and "Traceback" not in errors
