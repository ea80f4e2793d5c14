"""The queue the engine schedules through, chosen by ``[queue] backend``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.config import Settings
from core.engine.memory_queue import InMemoryQueue
from core.engine.queue import JobQueue

log = logging.getLogger(__name__)


def create_queue(settings: Settings, *, home: str = "", on_change: Callable[[str], None] | None = None) -> JobQueue:
    """The embedded queue, or a Redis queue shared with every process configured alike.

    ``home`` is the front end's node id (the stream its jobs' events come back on); ``on_change`` is
    told when another process changed a lane's order, so positions are pushed again.
    """
    queue = settings.queue
    if queue.backend == "memory":
        return InMemoryQueue()
    from core.engine.redis_link import mask_url  # redis is imported only when it is used
    from core.engine.redis_queue import RedisQueue

    url = queue.url.get_secret_value()
    log.info("queue: Redis at %s, prefix %r, leases of %.0f s", mask_url(url), queue.key_prefix, queue.lease_seconds)
    return RedisQueue(url, prefix=queue.key_prefix, lease_seconds=queue.lease_seconds,
                      heartbeat_seconds=queue.heartbeat_seconds, on_change=on_change, home=home)
