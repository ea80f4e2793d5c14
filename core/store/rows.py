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
from core.types import GenerationRequest, Image, ImageRequest, Job, JobState, Size


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


def quota_refusal(quota: int, model: str, now: float | None = None) -> QuotaExceeded:
    """The refusal a user over a daily quota gets, with the time left until it resets."""
    reset = datetime.fromtimestamp(start_of_day(now), UTC) + timedelta(days=1)
    left = reset - datetime.fromtimestamp(now or time.time(), UTC)
    hours, minutes = divmod(int(left.total_seconds() // 60), 60)
    return QuotaExceeded(f"You have used your {quota} {model} images for today. Your quota resets at "
                         f"00:00 UTC (in {hours} h {minutes} min).", reset_at=reset)


def dumps(value: Any) -> str:
    """JSON text for a column; pydantic-core's encoder, several times faster than ``json.dumps`` on every write."""
    return to_json(value, fallback=str).decode()


def generation_json(gen: GenerationRequest) -> str:
    """The resolved generation values as stored."""
    return dumps({"prompt": gen.prompt, "width": gen.size.width, "height": gen.size.height, "seed": gen.seed,
                  "negative_prompt": gen.negative_prompt, "steps": gen.steps, "original_prompt": gen.original_prompt})


def timings_json(timings: dict[str, float]) -> str:
    """Timings as stored (most writes have none yet)."""
    return dumps(timings) if timings else "{}"


def result_json(image: Image | None) -> str | None:
    """What is kept about a result besides its bytes."""
    if image is None:
        return None
    return dumps({"mime_type": image.mime_type, "width": image.width, "height": image.height, "seed": image.seed,
                  "bytes": len(image.data), "metadata": image.metadata})


def error_text(job: Job) -> str | None:
    """The user-facing message of a job's error, the only part of it that is stored."""
    return getattr(job.error, "user_message", None) if job.error else None


def to_job(row: sqlite3.Row, data: bytes | None = None) -> Job:
    """A stored row as a ``Job`` again, with its image when ``data`` is given."""
    gen = json.loads(row["generation"])
    generation = GenerationRequest(prompt=gen["prompt"], size=Size(gen["width"], gen["height"]), seed=gen["seed"],
                                   negative_prompt=gen["negative_prompt"], steps=gen["steps"],
                                   original_prompt=gen["original_prompt"])
    job = Job(id=row["id"], request=ImageRequest.model_validate_json(row["request"]), model=row["model"],
              crashes=row["crashes"],
              generation=generation, state=JobState(row["state"]), attempts=row["attempts"],
              created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
              enhanced_prompt=row["enhanced_prompt"], timings=json.loads(row["timings"]))
    if data is not None and row["result"]:
        meta = json.loads(row["result"])
        job.result = Image(data=data, mime_type=meta["mime_type"], width=meta["width"], height=meta["height"],
                           seed=meta["seed"], model=row["model"], timings=job.timings, metadata=meta["metadata"])
    return job


def to_record(row: sqlite3.Row) -> JobRecord:
    """A stored row as ``/history`` and ``/info`` need it."""
    return JobRecord(id=row["id"], platform=row["platform"], user_id=row["user_id"], model=row["model"],
                     state=row["state"], attempts=row["attempts"], request=json.loads(row["request"]),
                     generation=json.loads(row["generation"]), enhanced_prompt=row["enhanced_prompt"],
                     timings=json.loads(row["timings"]), result=json.loads(row["result"]) if row["result"] else None,
                     error=row["error"], created_at=row["created_at"], finished_at=row["finished_at"],
                     delivered_at=row["delivered_at"], runs=row["runs"], crashes=row["crashes"])
