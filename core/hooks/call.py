"""Calling hooks whose implementations may be async.

pluggy has no async support: an ``async def`` implementation returns an un-awaited coroutine.
These helpers call each implementation themselves (in pluggy's order) so that one failing
observer neither stops the others nor reaches the job.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pluggy

log = logging.getLogger(__name__)


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable, else return it (after datasette)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _ordered(hook: pluggy.HookCaller) -> Iterator[pluggy.HookImpl]:
    """Implementations in the order pluggy itself would call them."""
    return reversed(hook.get_hookimpls())


def _call(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
    return impl.function(*[kwargs[name] for name in impl.argnames])


async def notify(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Call every observer; failures are logged with the plugin's name, never raised."""
    impls = hook.get_hookimpls()
    if not impls:
        return
    pending: list[tuple[str, Any]] = []
    for impl in reversed(impls):
        try:
            result = _call(impl, kwargs)
        except Exception:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook.name)
            continue
        if inspect.isawaitable(result):
            pending.append((impl.plugin_name, result))
    if pending:
        await _gather_isolated(hook.name, pending)


async def _gather_isolated(hook_name: str, pending: list[tuple[str, Any]]) -> None:
    results = await asyncio.gather(*(aw for _, aw in pending), return_exceptions=True)
    for (plugin, _), result in zip(pending, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            log.error("plugin %s failed in %s", plugin, hook_name, exc_info=result)


async def pipeline(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Call implementations one after another, awaiting each; the first error propagates."""
    for impl in _ordered(hook):
        await await_me_maybe(_call(impl, kwargs))


async def lifecycle(hook: pluggy.HookCaller, *, raise_errors: bool, **kwargs: Any) -> None:
    """Run startup/shutdown hooks in order; shutdown logs errors instead of raising."""
    if raise_errors:
        await pipeline(hook, **kwargs)
    else:
        await notify(hook, **kwargs)


def async_firstresult_impls(hook: pluggy.HookCaller) -> list[str]:
    """Plugins with an async implementation of a firstresult hook, which would always win."""
    if hook.spec is None or not hook.spec.opts.get("firstresult"):
        return []
    return [impl.plugin_name for impl in hook.get_hookimpls()
            if inspect.iscoroutinefunction(impl.function)]
