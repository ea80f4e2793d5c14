"""``within``: a call with a deadline, as asyncio.timeout gives it, with no timer for an instant answer."""

from __future__ import annotations

import asyncio

import pytest

from core.engine.deadline import within


async def instant() -> str:
    return "now"


async def slow(seconds: float, steps: list[str]) -> str:
    steps.append("began")
    await asyncio.sleep(seconds)
    steps.append("ended")
    return "late"


async def test_an_instant_answer_needs_no_timer() -> None:
    loop = asyncio.get_running_loop()
    timers = len(loop._scheduled)  # type: ignore[attr-defined]
    assert await within(instant(), 0.01) == "now"
    assert len(loop._scheduled) == timers  # type: ignore[attr-defined]


async def test_a_call_that_waits_finishes_within_its_deadline() -> None:
    steps: list[str] = []
    assert await within(slow(0.01, steps), 5.0) == "late"
    assert steps == ["began", "ended"]


async def test_a_call_past_its_deadline_is_cancelled_and_times_out() -> None:
    steps: list[str] = []
    with pytest.raises(TimeoutError):
        await within(slow(5.0, steps), 0.01)
    assert steps == ["began"]


async def test_no_deadline_waits_as_long_as_it_takes() -> None:
    assert await within(slow(0.01, []), None) == "late"


async def test_errors_of_either_step_propagate() -> None:
    async def fails_at_once() -> None:
        raise ValueError("first")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="first"):
        await within(fails_at_once(), 1.0)
    with pytest.raises(KeyError):
        await within(fails_later(), 1.0)


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    steps: list[str] = []
    task = asyncio.ensure_future(within(slow(5.0, steps), 10.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["began"] and task.cancelled()


async def test_the_deadline_counts_from_before_the_first_step() -> None:
    loop = asyncio.get_running_loop()
    steps: list[str] = []

    async def busy_then_wait() -> str:
        until = loop.time() + 0.05
        while loop.time() < until:  # the first step alone uses up the deadline
            pass
        await asyncio.sleep(0)
        steps.append("resumed")  # as under asyncio.timeout: the timer fires at the next turn of the loop
        await asyncio.sleep(1.0)
        steps.append("never")
        return "late"

    with pytest.raises(TimeoutError):
        await within(busy_then_wait(), 0.02)
    assert steps == ["resumed"]


async def test_a_call_that_swallows_the_deadline_cancel_keeps_its_answer() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            return "kept"
        return "slept"

    assert await within(stubborn(), 0.01) == "kept"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
