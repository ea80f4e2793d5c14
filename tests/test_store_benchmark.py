"""The store benchmark runs and prints its rows (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from tests.benchmarks import store_bench
from tests.benchmarks.engine_bench import render


async def test_store_benchmark_prints_grouped_against_one_transaction_per_write():
    rows = await store_bench.run(jobs=40)
    assert [row.unit for row in rows] == ["µs/job", "writes", "µs/job", "writes"]
    assert all(row.value > 0 and row.baseline > 0 for row in rows)
    assert rows[1].baseline == 1.0 and rows[1].value > 1.0  # one at a time is one write per transaction
    assert "µs/job" in render(rows)
