"""Which job on the WebUI is ours, exactly where the server can say so and by inference where not.

A1111 1.6+ and Forge take a ``force_task_id`` in txt2img and answer
``POST /internal/progress {"id_task"}`` with ``queued`` / ``active`` / ``completed`` for it: that
is exact, and it lets a cancelled request that still waits for the server's lock be stopped the
moment it starts. Servers that ignore the id (it is never queued, active or completed) fall back
to ``JobWatch``, which infers ours from ``/sdapi/v1/progress`` alone.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from plugins.automatic1111.errors import map_error, parse_body
from plugins.automatic1111.watch import JobWatch, ServerState

Send = Callable[..., Awaitable[httpx.Response]]
UNKNOWN_POLLS = 2  # answers saying "never heard of it" before we stop asking


class Mode(enum.Enum):
    """How ours is recognised."""

    PROBING = "probing"
    EXACT = "task id"
    INFERRED = "timestamps"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """``/internal/progress`` about our task."""

    active: bool
    queued: bool
    completed: bool

    @property
    def known(self) -> bool:
        """The server has heard of the task."""
        return self.active or self.queued or self.completed


class JobTracker:
    """Polls the server and says whether our job runs, with the state seen last."""

    def __init__(self, send: Send, task_id: str, steps: int, mode: Mode = Mode.PROBING) -> None:
        self.send = send
        self.task_id = task_id
        self.watch = JobWatch(steps)
        self.mode = mode
        self.status: TaskStatus | None = None
        self._unknown = 0
        self._stamp: str | None = None

    async def begin(self) -> None:
        """Look once before sending: the job running now is not ours."""
        self.watch.before(await self.state(previews=False))

    async def state(self, *, previews: bool) -> ServerState:
        """``/sdapi/v1/progress``, with or without the live preview."""
        response = await self.send("GET", "/sdapi/v1/progress", timeout=30,
                                   params={"skip_current_image": "false" if previews else "true"})
        if response.status_code >= 400:
            raise map_error(response.status_code, response.text)
        return ServerState.parse(parse_body(response.text))

    async def poll(self, *, previews: bool) -> tuple[bool, ServerState]:
        """Whether our job is the one running now, and the server's state."""
        state = await self.state(previews=previews)
        inferred = self.watch.observe(state)  # always, so a fallback has the history it needs
        if self.mode is not Mode.INFERRED:
            status = await self._task_status()
            if status is not None:
                return self._exact(status, state), state
        return (inferred if self.mode is Mode.INFERRED else False), state

    async def ours_running(self) -> bool:
        """A fresh look: is our job running right now?"""
        ours, _ = await self.poll(previews=False)
        return ours

    def _exact(self, status: TaskStatus, state: ServerState) -> bool:
        ours = status.active and state.running
        if ours:
            self._stamp = state.stamp
        self.watch.ours = self._stamp  # the server said which job is ours: no inference needed
        return ours

    async def task_status(self) -> TaskStatus | None:
        """``/internal/progress`` about our task, once the server is known to track it."""
        return await self._task_status() if self.mode is Mode.EXACT else None

    async def _task_status(self) -> TaskStatus | None:
        response = await self.send("POST", "/internal/progress", timeout=30,
                                   json={"id_task": self.task_id, "id_live_preview": -1})
        body = parse_body(response.text) if response.status_code == 200 else {}
        status = TaskStatus(bool(body.get("active")), bool(body.get("queued")), bool(body.get("completed")))
        if status.known:
            self.mode, self.status = Mode.EXACT, status
            return status
        self._unknown += 1
        if response.status_code != 200 or self._unknown >= UNKNOWN_POLLS:
            self.mode = Mode.INFERRED
        return None

    def describe(self) -> dict[str, Any]:
        """For logs."""
        return {"task": self.task_id, "mode": self.mode.value, "ours": self.watch.ours}
