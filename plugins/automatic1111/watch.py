"""Telling our job apart on a WebUI that runs one job at a time for every client.

``/sdapi/v1/progress`` describes whatever job holds the server's lock, with no request id.
A job is ours when it started after we sent our request (its ``job_timestamp`` differs from the
job seen just before, or the server was idle in between) and its step count is the one we
asked for. Once claimed, a job stays ours until another one replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerState:
    """The part of a ``/sdapi/v1/progress`` answer we use."""

    running: bool
    stamp: str
    step: int
    steps: int
    interrupted: bool
    progress: float
    image: str | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ServerState:
        """Read an answer leniently: Forge and SD.Next add and drop fields."""
        raw = body.get("state")
        state: dict[str, Any] = raw if isinstance(raw, dict) else {}
        running = bool(state.get("job")) or int(state.get("job_count") or 0) != 0
        image = body.get("current_image")
        return cls(running=running, stamp=str(state.get("job_timestamp") or ""),
                   step=int(state.get("sampling_step") or 0), steps=int(state.get("sampling_steps") or 0),
                   interrupted=bool(state.get("interrupted")), progress=float(body.get("progress") or 0.0),
                   image=image if isinstance(image, str) and image else None)


class JobWatch:
    """Follows the server's state and says whether the job running now is ours."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.previous: str | None = None
        self.previous_step = 0
        self.ours: str | None = None
        self.last: ServerState | None = None

    def before(self, state: ServerState) -> None:
        """Remember the job running before our request was sent (it is not ours)."""
        self.previous = state.stamp if state.running else None
        self.previous_step = state.step

    def observe(self, state: ServerState) -> bool:
        """Take a new state in; true when our job is the one running."""
        self.last = state
        if not state.running:
            self.previous = None  # whatever ran is done: the next job to start may be ours
            return False
        if state.stamp == self.previous and state.step < self.previous_step:
            self.previous = None  # a new job began within the same second as the last one
        self.previous_step = state.step
        if self.ours is None and state.stamp != self.previous and self._our_size(state):
            self.ours = state.stamp
        return self.ours is not None and state.stamp == self.ours

    def claim(self, stamp: str) -> None:
        """The server told us exactly that the job with ``stamp`` is ours."""
        self.ours = stamp

    def _our_size(self, state: ServerState) -> bool:
        return state.steps in (0, self.steps)

    def interrupted(self, state: ServerState) -> bool:
        """True when the server reports our job as interrupted (by anyone)."""
        return self.ours is not None and state.stamp == self.ours and state.interrupted
