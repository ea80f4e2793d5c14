"""Key names shared by every Redis part of distributed mode, so they agree with the queue's layout.

Every key starts with the configured prefix inside a hash tag (``{sakaibot}``): all of them hash to
one cluster slot, which lets one Lua script touch several of them (see ``core.engine.redis_scripts``).
"""

from __future__ import annotations


def key_root(prefix: str) -> str:
    """``{prefix}``: the hash-tagged start of every key of one bot."""
    return f"{{{prefix}}}"

