"""The one HTTP client the engine owns and lends to every backend plugin.

One client means one connection pool, so a lane configured for N parallel requests gets N
connections, and a test's respx routes apply to every plugin at once.
"""

from __future__ import annotations

import httpx

from core import __version__

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
