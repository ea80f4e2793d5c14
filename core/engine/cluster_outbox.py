"""A worker's events on their way to the front end that owns the job.

Each event becomes one entry of the owner's stream (``XADD`` with an approximate ``MAXLEN``). A
finished job's images are written to their own key, with a time to live, *before* the ``done``
entry, so whoever reads ``done`` finds them. State and final events wait out a Redis outage (the
link retries until the worker closes); progress is a courtesy and is dropped if Redis is away.
The outbox remembers which jobs' final events went out: only those may have their lease released.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.engine.cluster_wire import ClusterKeys, encode_event, encode_images
from core.engine.redis_link import RedisLink
from core.types import EventKind, JobEvent

log = logging.getLogger(__name__)


class EventOutbox:
    """The relay of a worker's event path: events to the owner's stream, images to their own keys."""

    def __init__(self, link: RedisLink, keys: ClusterKeys, home_of: Callable[[str], str], *,
                 result_ttl: float, max_len: int) -> None:
        self.link = link
        self.keys = keys
        self.home_of = home_of
        self.result_ttl_ms = max(1000, int(result_ttl * 1000))
        self.max_len = max_len
        self._sent_final: set[str] = set()

    async def relay(self, event: JobEvent) -> None:
        """Send ``event`` to its job's owner; raises if a state or final event could not be sent."""
        home = self.home_of(event.job.id)
        if not home:
            log.warning("job %s has no owner to report to; event %s dropped", event.job.id, event.kind)
            return
        if event.kind is EventKind.PROGRESS:
            try:
                await self._append(home, event, patient=False)
            except Exception as exc:  # a missed progress step changes nothing for the job
                log.debug("progress of job %s not sent: %s", event.job.id, exc)
            return
        if event.kind is EventKind.DONE and event.job.results:
            data = encode_images(event.job.results)
            key = self.keys.result(event.job.id)
            await self.link.call(lambda: self.link.client.set(key, data, px=self.result_ttl_ms), patient=True)
        await self._append(home, event, patient=True)
        if event.kind.final:
            self._sent_final.add(event.job.id)

    async def _append(self, home: str, event: JobEvent, *, patient: bool) -> None:
        fields = encode_event(event)
        stream = self.keys.events(home)
        await self.link.call(lambda: self.link.client.xadd(stream, fields,  # type: ignore[arg-type]
                                                           maxlen=self.max_len, approximate=True), patient=patient)

    def took_final(self, job_id: str) -> bool:
        """True (once) if ``job_id``'s final event reached its owner's stream."""
        if job_id in self._sent_final:
            self._sent_final.discard(job_id)
            return True
        return False
