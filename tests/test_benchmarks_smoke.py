"""The benchmark runs and prints its table (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from tests.benchmarks.engine_bench import render, run


async def test_benchmark_prints_every_row():
    rows = await run(users=2, per_user=5, queued=50, sizes=(5, 20))
    table = render(rows)
    assert len(rows) == 11 and all(row.value > 0 or row.unit == "slots" for row in rows)
    assert "µs/job" in table and "KB" in table and "slots" in table and "/queue latency, 20 waiting" in table
    fair = rows[6]
    assert fair.value < fair.baseline  # fair order serves the light user before FIFO would


async def test_lane_benchmark_prints_its_rows():
    from tests.benchmarks import lane_bench

    rows = await lane_bench.run(slots=2, latency=0.05, rounds=2)
    assert [row.unit for row in rows] == ["img/s", "img/s", "x", "ms"]
    assert rows[0].value > rows[1].value  # a lane of 2 beats one at a time against a 2-slot backend


async def test_telegram_benchmark_prints_percentiles():
    from tests.benchmarks import telegram_bench

    rows = await telegram_bench.run(commands=10)
    assert [row.unit for row in rows] == ["ms", "ms"] and all(row.value > 0 for row in rows)


async def test_discord_benchmark_prints_percentiles():
    from tests.benchmarks import discord_bench

    rows = await discord_bench.run(count=5)
    assert [row.unit for row in rows] == ["ms", "ms"] and all(row.value > 0 for row in rows)


async def test_input_benchmark_prints_its_rows():
    from tests.benchmarks import input_bench

    rows = await input_bench.run(width=400, height=300, rounds=1)
    assert [row.unit for row in rows] == ["ms", "KB", "ms", "ms", "ms"] and all(row.value > 0 for row in rows)
    assert rows[1].baseline > rows[1].value  # base64 in the JSON is larger than the raw bytes
