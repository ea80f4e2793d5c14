"""Inline buttons whose data carries the job id and the requester, so they work after a restart.

Telegram allows 64 bytes of callback data (core.telegram.org/bots/api#inlinekeyboardbutton):
``b"rr:<job>:<user>"`` fits with room to spare. Under an album (several images) the buttons sit on
a follow-up message, since an album cannot carry a keyboard; there each Variation and Upscale
button also names the photo's message id, ``b"var:<job>:<user>:<photo message>"``, so the press
downloads the right picture. ``encode`` refuses anything longer than 64 bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telethon import Button

from core.chat.conversation import Buttons

ACTIONS = {"rr": "reroll", "var": "variation", "up": "upscale", "cx": "cancel"}
CODES = {action: code for code, action in ACTIONS.items()}
DATA_RE = re.compile(rb"^(rr|var|up|cx):([0-9a-f]{4,32}):(\d{1,20})(?::(\d{1,10}))?$")
DATA_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Press:
    """A decoded button press; ``photo`` is the message id of the picture it is about (albums only)."""

    action: str
    job_id: str
    owner_id: int
    photo: int | None = None


def encode(action: str, job_id: str, owner_id: int, photo: int | None = None) -> bytes:
    """Callback data for one button (``action`` is a code: rr, var, up, cx)."""
    data = f"{action}:{job_id}:{owner_id}" + (f":{photo}" if photo is not None else "")
    encoded = data.encode()
    if len(encoded) > DATA_LIMIT:
        raise ValueError(f"callback data {data!r} is over Telegram's {DATA_LIMIT} bytes")
    return encoded


def decode(data: bytes) -> Press | None:
    """The press, or ``None`` for data that is not ours."""
    match = DATA_RE.match(data)
    if match is None:
        return None
    photo = int(match[4]) if match[4] else None
    return Press(ACTIONS[match[1].decode()], match[2].decode(), int(match[3]), photo)


def result_buttons(wanted: Buttons, owner_id: int) -> list[list[Button]]:
    """Under one finished image: Reroll, Variation and (where offered) Upscale."""
    labels = {"reroll": "🔁 Reroll", "variation": "🎲 Variation", "upscale": "🔍 Upscale"}
    return [[Button.inline(labels[action], encode(CODES[action], wanted.job_id, owner_id))
             for action in wanted.actions]]


def album_buttons(wanted: Buttons, owner_id: int, photos: list[int]) -> list[list[Button]]:
    """On the message after an album: Reroll, then a row of numbered Variations and of Upscales."""
    rows = [[Button.inline("🔁 Reroll all", encode("rr", wanted.job_id, owner_id))]]
    for action, label in (("variation", "🎲"), ("upscale", "🔍")):
        if action in wanted.actions:
            rows.append([Button.inline(f"{label} {n + 1}", encode(CODES[action], wanted.job_id, owner_id, photo))
                         for n, photo in enumerate(photos)])
    return rows


def cancel_buttons(job_id: str, owner_id: int) -> list[list[Button]]:
    """Under a waiting job's status message."""
    return [[Button.inline("✖ Cancel", encode("cx", job_id, owner_id))]]
