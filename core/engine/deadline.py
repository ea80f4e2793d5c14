"""A model's call with a deadline, as ``asyncio.timeout`` gives it, without a timer when it need not wait.

A call that answers without ever waiting (a cache, an instant test model) cannot be cut short by
a timeout: the loop, which would run the timer, never gets control. So the call's first step runs
at once; only a call that does wait gets a timer, with ``asyncio.timeout``'s rules and the
deadline counted from before that first step, exactly as if the timeout had been entered first.
Arming and disarming a timer for every attempt was a visible share of the engine's cost per job.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


@types.coroutine
def within(call: Coroutine[Any, Any, T], seconds: float | None) -> Generator[Any, Any, T]:
    """Await ``call``; raise ``TimeoutError`` (as ``asyncio.timeout``) if it takes more than ``seconds``."""
    deadline = None if seconds is None else asyncio.get_running_loop().time() + seconds
    try:
        waiting_on = call.send(None)
    except StopIteration as done:
        return done.value
    return (yield from _rest(call, waiting_on, deadline).__await__())


async def _rest(call: Coroutine[Any, Any, T], waiting_on: Any, deadline: float | None) -> T:
    """The call's remaining steps, cancelled at ``deadline`` with ``asyncio.timeout``'s rules.

    The timer is armed with ``call_at`` even for a deadline already past, as the timeout entered
    before the first step would have been: it fires at the same turn of the loop.
    """
    if deadline is None:
        return await _resume(call, waiting_on)
    task = asyncio.current_task()
    assert task is not None
    cancelling, expiry = task.cancelling(), _Expiry(task)
    timer = asyncio.get_running_loop().call_at(deadline, expiry)
    try:
        result = await _resume(call, waiting_on)
    except BaseException as exc:
        timer.cancel()
        if expiry.expired and task.uncancel() <= cancelling and type(exc) is asyncio.CancelledError:
            raise TimeoutError from exc  # no other cancel was asked for: this one was the deadline's
        raise
    timer.cancel()
    if expiry.expired:
        task.uncancel()
    return result


class _Expiry:
    """The timer's callback: cancel the task, and remember that the deadline did it."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()


@types.coroutine
def _resume(call: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    """``yield from call`` for a call whose first step already ran and is waiting on ``waiting_on``."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            call.close()
            raise
        except BaseException as exc:  # a cancellation (the timeout's, or anyone's) goes into the call
            try:
                waiting_on = call.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = call.send(sent)
            except StopIteration as done:
                return done.value
