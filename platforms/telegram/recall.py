"""Recovering a finished job's request for Reroll/Variation, from memory or from the result's caption.

The engine remembers recent jobs; after a restart, the caption it wrote under the image still
holds the model, the seed and the prompts, so old buttons keep working.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.engine import Engine

HEAD_RE = re.compile(r"^🎨 (?P<model>[\w.\-]+)(?: · seed (?P<seed>\d+))?")


@dataclass(frozen=True, slots=True)
class Recalled:
    """What a new request needs from an old job."""

    model: str
    prompt: str
    enhanced: str | None
    seed: int | None


def recall(engine: Engine, job_id: str, caption: str | None) -> Recalled | None:
    """The old job's essentials; ``None`` when neither memory nor caption has them."""
    job = engine.recent_job(job_id)
    if job is not None:
        return Recalled(job.model, job.request.prompt, job.enhanced_prompt, job.generation.seed)
    return from_caption(caption or "")


def from_caption(caption: str) -> Recalled | None:
    """Parse the caption ``core.chat.messages.caption`` wrote."""
    lines = caption.splitlines()
    head = HEAD_RE.match(lines[0]) if lines else None
    if head is None:
        return None
    original = next((line[2:].strip() for line in lines if line.startswith("📝 ")), None)
    enhanced = next((line[2:].strip() for line in lines if line.startswith("✨ ")), None)
    if not original or original.endswith("…"):
        return None  # cut short in the caption: rerolling a fragment would surprise the user
    return Recalled(head["model"], original, enhanced, int(head["seed"]) if head["seed"] else None)
