"""SIGKILL at random moments: no acknowledged job is lost, none is sent more than twice, poison is set aside."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_RUNS = 40  # restarts before the test gives up (bounded loop)


def start(tmp: Path) -> subprocess.Popen[bytes]:
    """One life of the bot."""
    args = [sys.executable, "-m", "tests.fakes.crashy_bot", str(tmp / "jobs.db"), str(tmp / "sent.txt"),
            str(tmp / "prompts.txt")]
    with (tmp / "stderr.txt").open("ab") as log:  # the child's own handle outlives this one
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


def live_until_killed_or_done(tmp: Path, rng: random.Random, kill: bool) -> int | None:
    """Run once; kill it after a random moment (once its jobs are acknowledged). The exit code, or None."""
    process = start(tmp)
    marker = (tmp / "jobs.db").with_suffix(".submitted")
    try:
        if kill:
            process.wait(timeout=60) if not _wait_for(marker, process) else None
            if process.poll() is None:
                try:
                    return process.wait(timeout=rng.uniform(0.05, 0.6))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)
                    return None
            return process.returncode
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _wait_for(marker: Path, process: subprocess.Popen[bytes]) -> bool:
    """Until the marker exists (True) or the process has ended (False), within a minute."""
    for _ in range(6000):
        if marker.exists():
            return True
        if process.poll() is not None:
            return False
        subprocess.run(["sleep", "0.01"], check=True)
    return False


def run_to_the_end(tmp: Path, prompts: list[str], kills: int, seed: int) -> list[int | None]:
    """Kill the bot ``kills`` times at random moments, then let it finish; the exit codes."""
    (tmp / "prompts.txt").write_text("\n".join(prompts), encoding="utf-8")
    rng = random.Random(seed)
    codes = [live_until_killed_or_done(tmp, rng, kill=True) for _ in range(kills)]
    for _ in range(MAX_RUNS):
        codes.append(live_until_killed_or_done(tmp, rng, kill=False))
        if codes[-1] == 0:
            break
    return codes


def sends(tmp: Path) -> Counter[str]:
    """How many times each prompt was sent."""
    path = tmp / "sent.txt"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return Counter(line.split(" ", 1)[1] for line in lines)


def test_random_sigkills_lose_nothing_and_resend_at_most_once(tmp_path):
    prompts = [f"job {n}" for n in range(40)]
    codes = run_to_the_end(tmp_path, prompts, kills=12, seed=7)
    assert codes[-1] == 0, codes
    sent = sends(tmp_path)
    lost = [p for p in prompts if sent[p] == 0]
    twice = [p for p in prompts if sent[p] > 1]
    assert lost == [] and max(sent.values()) <= 2
    print(f"\n{len(codes) - 1} kills/restarts, 0 lost, {len(twice)} of {len(prompts)} sent twice")


def test_a_job_that_kills_the_process_is_set_aside_and_the_line_moves(tmp_path):
    prompts = ["poison pill", *[f"job {n}" for n in range(17)]]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts), encoding="utf-8")
    codes = []
    for _ in range(8):  # the poison job runs first; it may crash the bot at most max_crashes (2) times
        codes.append(start(tmp_path).wait(timeout=120))
        if codes[-1] == 0:
            break
    assert codes[-1] == 0 and codes.count(-9) <= 2, codes
    sent = sends(tmp_path)
    assert all(sent[f"job {n}"] == 1 for n in range(17)) and sent["poison pill"] == 0
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        state, error, crashes = db.execute("SELECT state, error, crashes FROM jobs WHERE request LIKE '%poison%'"
                                           ).fetchone()
    assert state == "failed" and "stopped the bot 2 times" in error and crashes == 2
