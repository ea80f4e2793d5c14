"""Suspect jobs run alone, so that a crash is blamed on the job that caused it.

A job that was running when the process died once is suspect: it may be the one that kills the
process, or it may only have been running beside it. While a suspect runs, nothing else runs in
the whole engine (it waits for the others to finish, and no new job starts), so a second crash is
counted against the suspect alone and an innocent neighbour is never set aside with it.
"""

from __future__ import annotations

import asyncio

from core.types import Job


class Isolation:
    """Admits jobs to run; a suspect waits for an empty engine and keeps it empty while it runs."""

    def __init__(self) -> None:
        self.running = 0
        self.suspects_waiting = 0
        self.suspect_running = False
        self._changed = asyncio.Event()

    def _may_start(self, job: Job) -> bool:
        if self.suspect_running:
            return False
        if job.crashes:
            return self.running == 0
        return self.suspects_waiting == 0

    async def enter(self, job: Job) -> None:
        """Wait until ``job`` may run (at once, unless a suspect is involved)."""
        if not self.enter_now(job):
            await self._wait_for_turn(job)
            self._admit(job)

    def enter_now(self, job: Job) -> bool:
        """Let ``job`` run if it may at once (no suspect involved); ``False``: ``enter`` must wait."""
        if not self._may_start(job):
            return False
        self._admit(job)
        return True

    def _admit(self, job: Job) -> None:
        self.running += 1
        if job.crashes:
            self.suspect_running = True

    async def _wait_for_turn(self, job: Job) -> None:
        self.suspects_waiting += bool(job.crashes)
        try:
            while not self._may_start(job):
                self._changed.clear()
                await self._changed.wait()
        finally:
            self.suspects_waiting -= bool(job.crashes)
            self._changed.set()

    def leave(self, job: Job) -> None:
        """``job`` has ended (for a suspect: its end is on record)."""
        self.running -= 1
        if job.crashes:
            self.suspect_running = False
        self._changed.set()
