"""Jobs as JSON for the Redis queue: the fields a waiting job needs to run anywhere.

The request travels as ``ImageRequest.model_dump_json()`` (its pictures as base64) and the generation
with the job store's own ``generation_fields``, so a row and a queued job describe a job the same way
and the input images are rebuilt by the same function. Results, errors and
timestamps of later states never travel through the queue: a waiting job has none.
"""

from __future__ import annotations

import json

from core.store.rows import generation_fields, generation_from
from core.types import ImageRequest, Job

VERSION = 1


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
    request = ImageRequest.model_validate_json(doc["request"])  # its pictures travel in it, as base64
    return Job(id=doc["id"], request=request, model=doc["model"],
               generation=generation_from(doc["generation"], request), attempts=doc["attempts"],
               created_at=doc["created_at"], enhanced_prompt=doc["enhanced_prompt"], timings=doc["timings"])
