"""The background tasks a platform runs to follow its jobs, closed gently on shutdown.

On shutdown the engine first finishes or suspends every job, so each follower soon sees a final
event; ``close`` gives them ``grace`` seconds to deliver it before cancelling the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

DELIVERY_GRACE = 15.0


class Followers:
    """A set of follower tasks."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coroutine: Coroutine[Any, Any, Any], job_id: str) -> None:
        """Run ``coroutine`` in the background; refused (closed) once shutting down."""
        if self.closing:
            coroutine.close()
            return
        task = asyncio.create_task(coroutine, name=f"{self.prefix}-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every follower is done."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, grace: float = DELIVERY_GRACE) -> None:
        """Let followers finish delivering for up to ``grace`` seconds, then cancel the rest."""
        self.closing = True
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
