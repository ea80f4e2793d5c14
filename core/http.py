"""The one HTTP client the engine owns and lends to every backend plugin.

One client means one connection pool, so a lane configured for N parallel requests gets N
connections, and a test's respx routes apply to every plugin at once.
"""

from __future__ import annotations

from typing import Any

import httpx

from core import __version__
from core.errors import BackendTimeout, BackendUnavailable

USER_AGENT = f"SakaiBot/{__version__}"


def create_http_client(total_concurrency: int) -> httpx.AsyncClient:
    """A client whose pool fits every lane running at full concurrency."""
    connections = max(20, total_concurrency * 2)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(120.0, connect=10.0, pool=60.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
    )


async def send(client: httpx.AsyncClient, method: str, url: str, *, service: str, **kwargs: Any) -> httpx.Response:
    """Send a request, translating httpx's transport failures into SakaiBot's retryable errors.

    The body is read in full here, so a connection dropped mid-body is a transport error too.
    """
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise BackendTimeout(f"{service} did not answer in time.", detail=f"{type(exc).__name__}: {exc}") from exc
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"{service} cannot be reached right now. Please try again later.",
                                 detail=f"{type(exc).__name__}: {exc}") from exc
