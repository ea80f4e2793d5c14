"""The benchmark runs and prints its table (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from tests.benchmarks.engine_bench import render, run


async def test_benchmark_prints_every_row():
    rows = await run(users=2, per_user=5, queued=50)
    table = render(rows)
    assert len(rows) == 4 and all(row.value > 0 or row.unit == "slots" for row in rows)
    assert "µs/job" in table and "KB" in table and "slots" in table
    fair = rows[-1]
    assert fair.value < fair.baseline  # fair order serves the light user before FIFO would
