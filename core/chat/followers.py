"""The background tasks a platform runs to follow its jobs, closed gently on shutdown.

On shutdown the engine first finishes or suspends every job, so each follower soon sees a final
event; ``close`` gives followers whose job has ended ``grace`` seconds to deliver, and cancels
followers of jobs still running at once (their jobs stay in the engine's hands).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from core.engine.handle import JobHandle

log = logging.getLogger(__name__)
DELIVERY_GRACE = 15.0


class Followers:
    """A set of follower tasks."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._tasks: dict[asyncio.Task[Any], JobHandle] = {}
        self.closing = False

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coroutine: Coroutine[Any, Any, Any], handle: JobHandle) -> None:
        """Run ``coroutine`` (which follows ``handle``) in the background; refused once closing."""
        if self.closing:
            coroutine.close()
            return
        task = asyncio.create_task(coroutine, name=f"{self.prefix}-{handle.id}")
        self._tasks[task] = handle
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        """Forget the task; a follower that died of an error is logged, not left for the garbage collector."""
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped following a job", task.get_name(), exc_info=task.exception())

    async def wait(self) -> None:
        """Until every follower is done."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, grace: float = DELIVERY_GRACE) -> None:
        """Let followers finish delivering for up to ``grace`` seconds, then cancel the rest."""
        self.closing = True
        delivering = {task for task, handle in self._tasks.items() if handle.finished}
        late = set(self._tasks) - delivering
        if delivering:
            _, slow = await asyncio.wait(delivering, timeout=grace)
            late |= slow
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
