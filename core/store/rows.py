"""Rows and values: how a ``Job`` becomes columns and columns become a ``Job`` or a ``JobRecord``."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_json

from core.errors import QuotaExceeded
from core.types import GenerationRequest, Image, ImageRequest, InputImage, Job, JobState, Size

MASK_INDEX = -1  # the mask's row in ``job_inputs``; the input images are rows 0, 1, …


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job, as ``/history`` and ``/info`` show it."""

    id: str
    platform: str
    user_id: str
    model: str
    state: str
    attempts: int
    request: dict[str, Any]
    generation: dict[str, Any]
    enhanced_prompt: str | None
    timings: dict[str, float]
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    finished_at: float | None
    delivered_at: float | None
    runs: int = 0
    crashes: int = 0

    @property
    def prompt(self) -> str:
        """What the user typed."""
        return str(self.request.get("prompt", ""))


@dataclass(frozen=True, slots=True)
class ModelStats:
    """``/stats`` for one model."""

    model: str
    jobs: int
    failed: int
    mean_seconds: float | None


def start_of_day(now: float | None = None) -> float:
    """Midnight UTC today, when daily quotas reset."""
    moment = datetime.fromtimestamp(now or time.time(), UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def quota_refusal(quota: int, model: str, now: float | None = None, *, left: int = 0) -> QuotaExceeded:
    """The refusal a user over a daily quota gets, with the time left until it resets.

    ``left`` is what remains today when a request for several images asks for more than that.
    """
    reset = datetime.fromtimestamp(start_of_day(now), UTC) + timedelta(days=1)
    wait = reset - datetime.fromtimestamp(now or time.time(), UTC)
    hours, minutes = divmod(int(wait.total_seconds() // 60), 60)
    used = (f"You have {left} of your {quota} {model} images left today; ask for fewer (--n {left}), or wait: "
            if left > 0 else f"You have used your {quota} {model} images for today. ")
    return QuotaExceeded(f"{used}Your quota resets at 00:00 UTC (in {hours} h {minutes} min).", reset_at=reset)


def dumps(value: Any) -> str:
    """JSON text for a column; pydantic-core's encoder, several times faster than ``json.dumps`` on every write."""
    return to_json(value, fallback=str).decode()


def generation_fields(gen: GenerationRequest) -> dict[str, Any]:
    """The resolved generation as the job store and the Redis queue keep it.

    The input images are described (type and size) but not copied: their bytes travel once, in the request.
    """
    return {"prompt": gen.prompt, "width": gen.size.width, "height": gen.size.height, "seed": gen.seed,
            "negative_prompt": gen.negative_prompt, "steps": gen.steps, "original_prompt": gen.original_prompt,
            "images": [_described(image) for image in gen.images],
            "mask": None if gen.mask is None else _described(gen.mask),
            "strength": gen.strength, "upscale": gen.upscale}


def generation_from(fields: dict[str, Any], request: ImageRequest) -> GenerationRequest:
    """The inverse of ``generation_fields``: the input images are ``request``'s bytes (what the model sees)."""
    described = fields.get("images") or []
    images = tuple(_input(data, about) for data, about in zip(request.images, described, strict=False))
    mask = fields.get("mask")
    return GenerationRequest(prompt=fields["prompt"], size=Size(fields["width"], fields["height"]),
                             seed=fields["seed"], negative_prompt=fields["negative_prompt"], steps=fields["steps"],
                             original_prompt=fields["original_prompt"], images=images,
                             mask=None if mask is None or request.mask is None else _input(request.mask, mask),
                             strength=fields.get("strength"), upscale=fields.get("upscale"))


def _described(image: InputImage) -> list[Any]:
    return [image.mime_type, image.width, image.height]


def _input(data: bytes, described: list[Any]) -> InputImage:
    mime, width, height = described
    return InputImage(data=data, mime_type=mime, width=width, height=height)


def generation_json(gen: GenerationRequest) -> str:
    """The resolved generation values as stored."""
    return dumps(generation_fields(gen))


def request_json(request: ImageRequest) -> str:
    """The request as stored: its pictures go to ``job_inputs`` as raw bytes, not base64 in this column.

    The column is read for every /history and rewritten by every delivery note, and a 3 MB photo is
    4 MB of base64; kept apart, the bytes are read only to run or reroll the job.
    """
    return request.model_dump_json(exclude={"images", "mask"})


def inputs_of(request: ImageRequest) -> list[tuple[int, bytes]]:
    """The request's pictures as ``job_inputs`` rows: (index, bytes), the mask at ``MASK_INDEX``."""
    rows = list(enumerate(request.images))
    return rows if request.mask is None else [*rows, (MASK_INDEX, request.mask)]


def timings_json(timings: dict[str, float]) -> str:
    """Timings as stored (most writes have none yet)."""
    return dumps(timings) if timings else "{}"


def result_json(images: list[Image]) -> str | None:
    """What is kept about the results besides their bytes: the first image's fields, and ``images`` for all."""
    if not images:
        return None
    about = [{"mime_type": image.mime_type, "width": image.width, "height": image.height, "seed": image.seed,
              "bytes": len(image.data), "metadata": image.metadata} for image in images]
    return dumps({**about[0], "images": about})


def error_text(job: Job) -> str | None:
    """The user-facing message of a job's error, the only part of it that is stored."""
    return getattr(job.error, "user_message", None) if job.error else None


def to_job(row: sqlite3.Row, results: list[bytes] | None = None,
           inputs: list[tuple[int, bytes]] | None = None) -> Job:
    """A stored row as a ``Job`` again, with its images when ``results`` are given, its pictures from ``inputs``."""
    request = with_inputs(ImageRequest.model_validate_json(row["request"]), inputs or [])
    job = Job(id=row["id"], request=request, model=row["model"], crashes=row["crashes"],
              generation=generation_from(json.loads(row["generation"]), request), state=JobState(row["state"]),
              attempts=row["attempts"], created_at=row["created_at"], started_at=row["started_at"],
              finished_at=row["finished_at"], enhanced_prompt=row["enhanced_prompt"],
              timings=json.loads(row["timings"]))
    if results and row["result"]:
        result = json.loads(row["result"])
        job.results = [Image(data=data, mime_type=meta["mime_type"], width=meta["width"], height=meta["height"],
                             seed=meta["seed"], model=row["model"], timings=job.timings, metadata=meta["metadata"])
                       for data, meta in zip(results, result.get("images") or [result], strict=False)]
    return job


def with_inputs(request: ImageRequest, inputs: list[tuple[int, bytes]]) -> ImageRequest:
    """``request`` with its stored pictures back (``inputs_of``'s rows, in any order)."""
    if not inputs:
        return request
    images = tuple(data for index, data in sorted(inputs) if index != MASK_INDEX)
    mask = next((data for index, data in inputs if index == MASK_INDEX), None)
    return request.model_copy(update={"images": images, "mask": mask})


def to_record(row: sqlite3.Row) -> JobRecord:
    """A stored row as ``/history`` and ``/info`` need it."""
    return JobRecord(id=row["id"], platform=row["platform"], user_id=row["user_id"], model=row["model"],
                     state=row["state"], attempts=row["attempts"], request=json.loads(row["request"]),
                     generation=json.loads(row["generation"]), enhanced_prompt=row["enhanced_prompt"],
                     timings=json.loads(row["timings"]), result=json.loads(row["result"]) if row["result"] else None,
                     error=row["error"], created_at=row["created_at"], finished_at=row["finished_at"],
                     delivered_at=row["delivered_at"], runs=row["runs"], crashes=row["crashes"])
