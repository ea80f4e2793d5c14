"""A front end's node id: stable across its restarts, distinct from every other front end's.

The id names the Redis stream its jobs' events come back on, so a restarted front end must get the
same one (it then reads what workers reported while it was away). By default it is derived from the
host name and the job store's path: a second front end on the same host uses another store. A
front end without a store keeps nothing across a restart, so its id includes the process id.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

from core.config import Settings


def node_id(settings: Settings) -> str:
    """``[queue] node`` if set, else ``<host>-<hash of the store path>`` (``<host>-p<pid>`` without a store)."""
    if settings.queue.node:
        return settings.queue.node
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    if not settings.store.path:
        return f"{host}-p{os.getpid()}"
    where = str(Path(settings.store.path).expanduser().resolve())
    return f"{host}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"
