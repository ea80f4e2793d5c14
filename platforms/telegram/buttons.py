"""Inline buttons whose data carries the job id and the requester, so they work after a restart.

Telegram allows 64 bytes of callback data: ``b"rr:<job>:<user>"`` fits with room to spare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telethon import Button

ACTIONS = {"rr": "reroll", "var": "variation", "cx": "cancel"}
DATA_RE = re.compile(rb"^(rr|var|cx):([0-9a-f]{4,32}):(\d{1,20})$")


@dataclass(frozen=True, slots=True)
class Press:
    """A decoded button press."""

    action: str
    job_id: str
    owner_id: int


def encode(action: str, job_id: str, owner_id: int) -> bytes:
    """Callback data for one button."""
    return f"{action}:{job_id}:{owner_id}".encode()


def decode(data: bytes) -> Press | None:
    """The press, or ``None`` for data that is not ours."""
    match = DATA_RE.match(data)
    if match is None:
        return None
    return Press(ACTIONS[match[1].decode()], match[2].decode(), int(match[3]))


def result_buttons(job_id: str, owner_id: int) -> list[list[Button]]:
    """Under a finished image."""
    return [[Button.inline("🔁 Reroll", encode("rr", job_id, owner_id)),
             Button.inline("🎲 Variation", encode("var", job_id, owner_id))]]


def cancel_buttons(job_id: str, owner_id: int) -> list[list[Button]]:
    """Under a waiting job's status message."""
    return [[Button.inline("✖ Cancel", encode("cx", job_id, owner_id))]]
