"""A job's transitions as plain values for the writer process, taken on the event loop.

The job may change once its writer moves on, so its values are read here, at the call; JSON is
serialised here too, once per write, so the writer process needs nothing but the standard library.
"""

from __future__ import annotations

import time
from typing import Any

from core.store.rows import (
    error_text,
    generation_json,
    inputs_of,
    request_json,
    result_json,
    start_of_day,
    timings_json,
)
from core.types import Job, JobState

Quota = tuple[int, int, tuple[Any, ...]]  # the limit, this job's images, USED_TODAY_SQL's parameters


def insert_args(job: Job, quota: int | None) -> tuple[Quota | None, tuple[Any, ...], list[tuple[str, int, bytes]]]:
    """``transitions.insert``'s arguments: the quota check, the row and the pictures' rows."""
    who, count = job.request.requester, job.request.options.count
    check = None if quota is None else (quota, count, (who.platform, who.user_id, job.model, start_of_day()))
    row = (job.id, who.platform, who.user_id, who.chat_id, job.model, job.state.value, job.attempts,
           request_json(job.request), generation_json(job.generation), job.enhanced_prompt, timings_json(job.timings),
           job.created_at, time.time(), count)
    return check, row, [(job.id, index, data) for index, data in inputs_of(job.request)]


def update_params(job: Job) -> tuple[Any, ...]:
    """``UPDATE_SQL``'s parameters: state, enhanced prompt, generation, attempts and timings."""
    return (job.state.value, job.enhanced_prompt, generation_json(job.generation), job.attempts,
            timings_json(job.timings), time.time(), job.id)


def finish_args(job: Job) -> tuple[tuple[Any, ...], list[tuple[str, int, bytes]]]:
    """``transitions.finish``'s arguments: the final row values and a done job's image bytes to keep."""
    images = list(job.results) if job.state is JobState.DONE else []
    params = (job.state.value, job.attempts, job.enhanced_prompt, error_text(job), result_json(images),
              timings_json(job.timings), job.started_at, job.finished_at, time.time(), job.id)
    return params, [(job.id, index, image.data) for index, image in enumerate(images)]
