"""Start-up cost of ``sakaibot models`` against ``python -c pass``, measured in the same run.

``python -m tests.benchmarks.startup_bench [--runs N]`` prints the median wall time of each
command (fresh processes, the shipped config, no network), the difference, and the modules that
commands which start no platform must not import (discord.py, Telethon, litellm, prompt_toolkit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("discord", "telethon", "litellm", "prompt_toolkit")
PROBE = ("import sys; from core.cli import main; main(['--config', sys.argv[1], 'models']); "
         f"print('imported:', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")


def _median_ms(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env={**os.environ, "COLUMNS": "100"}, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(runs: int = 7) -> dict[str, float]:
    """Median milliseconds of the baseline, ``sakaibot models``, and importing the two chat SDKs."""
    config = str(ROOT / "config.toml")
    return {
        "python -c pass": _median_ms([sys.executable, "-c", "pass"], runs),
        "sakaibot models": _median_ms([sys.executable, "-m", "core.cli", "--config", config, "models"], runs),
        "import discord, telethon": _median_ms([sys.executable, "-c", "import discord, telethon"], runs),
    }


def imported_by_models() -> str:
    """Which of the heavy modules ``sakaibot models`` imported (should be none)."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "config.toml")], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return done.stderr.strip().splitlines()[-1]


def render(figures: dict[str, float]) -> str:
    """The table, with ``sakaibot models`` also shown as its cost above the bare interpreter."""
    base = figures["python -c pass"]
    lines = [f"{name:<28}{ms:8.0f} ms" for name, ms in figures.items()]
    lines.append(f"{'sakaibot models - baseline':<28}{figures['sakaibot models'] - base:8.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.startup_bench")
    parser.add_argument("--runs", type=int, default=7, help="processes started per command (median reported)")
    args = parser.parse_args(argv)
    print(render(measure(args.runs)))
    print(imported_by_models())


if __name__ == "__main__":
    main()
