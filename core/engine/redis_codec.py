"""Jobs as JSON for the Redis queue: the fields a waiting job needs to run anywhere.

The request travels as ``ImageRequest.model_dump_json()`` and the generation with the same keys the
job store uses, so a row and a queued job describe a job the same way. Results, errors and
timestamps of later states never travel through the queue: a waiting job has none.
"""

from __future__ import annotations

import json
from typing import Any

from core.types import GenerationRequest, ImageRequest, Job, Size

VERSION = 1


def generation_fields(gen: GenerationRequest) -> dict[str, Any]:
    """The generation as the job store keeps it."""
    return {"prompt": gen.prompt, "width": gen.size.width, "height": gen.size.height, "seed": gen.seed,
            "negative_prompt": gen.negative_prompt, "steps": gen.steps, "original_prompt": gen.original_prompt}


def generation_from(fields: dict[str, Any]) -> GenerationRequest:
    """The inverse of ``generation_fields``."""
    return GenerationRequest(prompt=fields["prompt"], size=Size(fields["width"], fields["height"]),
                             seed=fields["seed"], negative_prompt=fields["negative_prompt"],
                             steps=fields["steps"], original_prompt=fields["original_prompt"])


def dump_job(job: Job, home: str = "") -> str:
    """A queued job as one JSON document; ``home`` names the front end its events go back to."""
    return json.dumps({
        "v": VERSION, "id": job.id, "home": home, "model": job.model, "request": job.request.model_dump_json(),
        "generation": generation_fields(job.generation), "attempts": job.attempts,
        "created_at": job.created_at, "enhanced_prompt": job.enhanced_prompt, "timings": job.timings,
    }, separators=(",", ":"))


def job_home(data: str | bytes) -> str:
    """The front end a queued job's events go back to (``""``: none, a single-process queue)."""
    return str(json.loads(data).get("home", ""))


def load_job(data: str | bytes) -> Job:
    """A job from ``dump_job``'s document, waiting to run."""
    doc = json.loads(data)
    if doc.get("v") != VERSION:
        raise ValueError(f"queued job in format {doc.get('v')!r}; this version reads format {VERSION}")
    return Job(id=doc["id"], request=ImageRequest.model_validate_json(doc["request"]), model=doc["model"],
               generation=generation_from(doc["generation"]), attempts=doc["attempts"],
               created_at=doc["created_at"], enhanced_prompt=doc["enhanced_prompt"], timings=doc["timings"])
