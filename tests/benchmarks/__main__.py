"""``python -m tests.benchmarks``: print the benchmark table."""

from __future__ import annotations

import argparse
import asyncio
import logging

from tests.benchmarks import discord_bench, lane_bench, telegram_bench
from tests.benchmarks.engine_bench import render, run


def main() -> None:
    """Parse sizes, run, print."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("--users", type=int, default=50, help="clients in the throughput run")
    parser.add_argument("--per-user", type=int, default=100, help="requests per client, one after another")
    parser.add_argument("--queued", type=int, default=10_000, help="queued jobs for the memory run")
    parser.add_argument("--slots", type=int, default=8, help="fake backend's parallel slots (C)")
    parser.add_argument("--latency", type=float, default=1.0, help="fake backend's seconds per image (L)")
    parser.add_argument("--commands", type=int, default=100, help="simultaneous chat commands")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = asyncio.run(run(args.users, args.per_user, args.queued))
    rows += asyncio.run(lane_bench.run(args.slots, args.latency))
    rows += asyncio.run(telegram_bench.run(args.commands))
    rows += asyncio.run(discord_bench.run(args.commands))
    print(render(rows))


if __name__ == "__main__":
    main()
