"""One connection to Redis for the queue: scripts registered once, calls that ride out an outage.

A call that finds Redis gone retries with exponential backoff and jitter: patiently (until the
queue closes) for work that can wait, such as an idle worker's ``take``, and for at most
``patience`` seconds where a user waits for an answer (``put``, ``remove``), after which it fails
with ``QueueUnavailable``, a refusal the user can retry. Scripts are idempotent where a retry can
replay them (a reply lost in a disconnect): ``put`` of a queued job and ``done`` of a released one
change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from core.engine.redis_scripts import SOURCES
from core.errors import SakaiError

log = logging.getLogger(__name__)

OUTAGE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
FIRST_DELAY = 0.05  # seconds before the first retry; doubles up to MAX_DELAY
MAX_DELAY = 2.0


class QueueUnavailable(SakaiError):
    """The shared queue (Redis) cannot be reached; the request was not accepted."""

    default_message = "The bot's queue is unreachable right now, so your request wasn't taken. Try again shortly."
    retryable = True


class QueueClosed(Exception):
    """The queue was closed while a call waited for Redis."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


class RedisLink:
    """The client, the registered scripts, and calls with retry and backoff."""

    def __init__(self, url: str, *, block_seconds: float, patience: float) -> None:
        self.where = mask_url(url)
        self.patience = patience
        self.closed = False
        # redis-py retries a dropped connection once itself; longer outages are ridden out below.
        self.client: Redis = Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=block_seconds + 5.0,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.02), 1), health_check_interval=30)
        self.scripts = {name: self.client.register_script(source) for name, source in SOURCES.items()}

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any], *, patient: bool = False) -> Any:
        """Run a registered script (reloaded by redis-py if Redis restarted and forgot it)."""
        return await self.call(lambda: self.scripts[name](keys=list(keys), args=list(args)), patient=patient)

    async def call(self, command: Any, *, patient: bool = False) -> Any:
        """Await ``command()`` until it succeeds, the queue closes, or (if not patient) patience runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        delay = FIRST_DELAY
        while True:
            if self.closed:
                raise QueueClosed()
            try:
                return await command()
            except OUTAGE as exc:
                if not patient and loop.time() + delay > deadline:
                    log.error("Redis at %s unreachable for %.0f s: %s", self.where, self.patience, exc)
                    raise QueueUnavailable(detail=str(exc)) from exc
                log.warning("Redis at %s unreachable (%s); retrying in %.2f s", self.where, exc, delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, MAX_DELAY)

    async def aclose(self) -> None:
        """Stop retrying and close every connection."""
        self.closed = True
        await self.client.aclose()
