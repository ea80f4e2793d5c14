"""What travels between workers and front ends through Redis: key names, events, results, errors.

A worker runs a job another process accepted; everything the owner's users see comes back as
entries of the owner's event stream (``P:events:<node>``): one JSON document per event. Image bytes
are too big for a stream entry that may be read more than once, so a finished job's images go to
their own key (``P:result:<id>``) with a time to live, written before the ``done`` entry that
points at them. Errors travel as their class name, user message and retryability, and come back
as the same ``SakaiError`` class, so the front end renders them with its own ``render_error``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import core.errors
from core.errors import BackendError, SakaiError
from core.types import EventKind, Image, JobEvent

PREVIEW_LIMIT = 256 * 1024  # bytes of a progress preview worth sending through the stream


@dataclass(slots=True, frozen=True)
class ClusterKeys:
    """Names of the cluster's keys beyond the queue's own, under the queue's hash-tagged root."""

    root: str

    def events(self, node: str) -> str:
        """The stream of events for the jobs front end ``node`` owns."""
        return f"{self.root}:events:{node}"

    def result(self, job_id: str) -> str:
        """A finished job's images, until its front end has stored them."""
        return f"{self.root}:result:{job_id}"

    def cancel_flag(self, job_id: str) -> str:
        """Set when a job must not run (or go on running) anywhere."""
        return f"{self.root}:cancel:{job_id}"

    @property
    def cancels(self) -> str:
        """The pub/sub channel a worker hears cancel requests on."""
        return f"{self.root}:cancels"

    def worker(self, worker_id: str) -> str:
        """One live worker's registration (expires unless refreshed)."""
        return f"{self.root}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """The pattern matching every worker's registration."""
        return f"{self.root}:worker:*"


GROUP = "frontend"  # the consumer group a front end reads its own stream with


@dataclass(slots=True)
class RemoteEvent:
    """One event of one job as a worker reported it."""

    job_id: str
    kind: EventKind
    attempts: int = 0
    progress: float | None = None
    preview: bytes | None = None
    message: str | None = None
    prompt: str | None = None  # the enhanced prompt (``enhanced``)
    error: SakaiError | None = None
    timings: dict[str, float] = field(default_factory=dict)
    images: int = 0  # how many images wait under the result key (``done``)


def encode_event(event: JobEvent) -> dict[str, str]:
    """A stream entry for ``event``: one field holding a JSON document."""
    job = event.job
    doc: dict[str, Any] = {"id": job.id, "kind": event.kind.value, "attempts": job.attempts}
    if event.progress is not None:
        doc["progress"] = event.progress
    if event.preview is not None and len(event.preview) <= PREVIEW_LIMIT:
        doc["preview"] = base64.b64encode(event.preview).decode("ascii")
    if event.message is not None:
        doc["message"] = event.message
    if event.kind is EventKind.ENHANCED:
        doc["prompt"] = job.enhanced_prompt
    if event.kind.final:
        doc["timings"] = job.timings
        doc["images"] = len(job.results) if event.kind is EventKind.DONE else 0
        if job.error is not None:
            doc["error"] = encode_error(job.error)
    return {"e": json.dumps(doc, separators=(",", ":"))}


def decode_event(fields: dict[str, str]) -> RemoteEvent:
    """The inverse of ``encode_event``; ``ValueError`` for an entry this version cannot read."""
    doc = json.loads(fields["e"])
    preview = doc.get("preview")
    error = doc.get("error")
    return RemoteEvent(job_id=str(doc["id"]), kind=EventKind(doc["kind"]), attempts=int(doc.get("attempts", 0)),
                       progress=doc.get("progress"), preview=base64.b64decode(preview) if preview else None,
                       message=doc.get("message"), prompt=doc.get("prompt"),
                       error=decode_error(error) if error else None, timings=doc.get("timings") or {},
                       images=int(doc.get("images", 0)))


def encode_error(error: BaseException) -> dict[str, Any]:
    """An error as its class name, its user message and whether retrying may help."""
    if isinstance(error, SakaiError):
        return {"class": type(error).__name__, "message": error.user_message, "retryable": error.retryable}
    return {"class": "BackendError", "message": BackendError.default_message, "retryable": False}


def decode_error(doc: dict[str, Any]) -> SakaiError:
    """The same ``SakaiError`` class with the same user message (``BackendError`` if unknown here)."""
    cls = getattr(core.errors, str(doc.get("class", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, SakaiError)):
        cls = BackendError
    error: SakaiError = cls.__new__(cls)  # subclasses' own __init__ want fields only the worker had
    SakaiError.__init__(error, str(doc.get("message") or cls.default_message))
    if bool(doc.get("retryable")) != cls.retryable:
        error.retryable = bool(doc.get("retryable"))
    return error


def encode_images(images: list[Image]) -> str:
    """A finished job's images as one JSON document (bytes in base64)."""
    return json.dumps([{"data": base64.b64encode(i.data).decode("ascii"), "mime": i.mime_type, "width": i.width,
                        "height": i.height, "seed": i.seed, "model": i.model, "timings": i.timings,
                        "metadata": i.metadata} for i in images], separators=(",", ":"), default=str)


def decode_images(data: str) -> list[Image]:
    """The inverse of ``encode_images``."""
    return [Image(data=base64.b64decode(d["data"]), mime_type=d["mime"], width=d["width"], height=d["height"],
                  seed=d["seed"], model=d["model"], timings=d["timings"], metadata=d["metadata"])
            for d in json.loads(data)]
