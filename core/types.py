"""The values that travel through the engine: requests, jobs, events and images."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**32 - 1


class Requester(BaseModel):
    """Who asked, and where the answer goes."""

    model_config = ConfigDict(frozen=True)

    platform: str
    user_id: str
    chat_id: str | None = None
    group_id: str | None = None  # a Discord guild: chat defaults apply to the whole group
    display_name: str | None = None
    is_admin: bool = False


class GenerationOptions(BaseModel):
    """What the user asked for beyond the prompt; checked against the model later."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aspect_ratio: str | None = Field(default=None, pattern=r"^\d{1,3}:\d{1,3}$")
    width: int | None = Field(default=None, ge=64, le=4096)
    height: int | None = Field(default=None, ge=64, le=4096)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    steps: int | None = Field(default=None, ge=1, le=150)
    enhance: bool | None = None  # None: the user's or chat's setting, else on
    as_file: bool = False
    count: int = Field(default=1, ge=1, le=4)  # images in one request; each counts toward quotas and caps
    strength: float | None = Field(default=None, ge=0.0, le=1.0)  # how far to move from the input image
    upscale: int | None = Field(default=None, ge=2, le=4)  # an upscale of the input image by this factor


class ImageRequest(BaseModel):
    """One request for an image, as a platform hands it to the engine.

    ``images`` and ``mask`` are the raw bytes a user gave (a photo, an attachment); the engine
    checks and cleans them before queueing and keeps only the cleaned bytes in the request, so the
    store and a reroll carry what the model will see. In JSON they travel as base64.
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    prompt: str
    model: str | None = None
    requester: Requester
    options: GenerationOptions = GenerationOptions()
    images: tuple[bytes, ...] = ()  # input images, in the order the user gave them
    mask: bytes | None = None  # white where the model may paint, for inpainting models
    delivery: dict[str, str] = Field(default_factory=dict)  # where the platform answers: chat, status message…


@dataclass(slots=True, frozen=True)
class Size:
    """Width and height in pixels."""

    width: int
    height: int

    @property
    def ratio(self) -> float:
        """Width over height."""
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(slots=True, frozen=True)
class InputImage:
    """An input image after the engine's checks: format sniffed, metadata stripped, size known."""

    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass(slots=True, frozen=True)
class GenerationRequest:
    """The resolved values a model receives: no aspect ratios, no optional seed."""

    prompt: str
    size: Size
    seed: int | None
    negative_prompt: str | None
    steps: int | None
    original_prompt: str
    images: tuple[InputImage, ...] = ()  # checked input images; empty for text-to-image
    mask: InputImage | None = None
    strength: float | None = None  # set only when the model declares it takes one
    upscale: int | None = None  # an upscale request: the factor; ``images[0]`` is the picture


@dataclass(slots=True)
class Image:
    """A finished image, kept in memory as bytes."""

    data: bytes
    mime_type: str
    width: int
    height: int
    seed: int | None = None
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def extension(self) -> str:
        """The file extension that matches the bytes' format."""
        return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(self.mime_type, "bin")


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    ENHANCING = "enhancing"
    GENERATING = "generating"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True once the job can no longer change."""
        return self in _FINISHED


_FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@dataclass(slots=True, eq=False)
class Job:
    """One request on its way through the engine; mutated only by the engine."""

    id: str
    request: ImageRequest
    model: str
    generation: GenerationRequest
    state: JobState = JobState.QUEUED
    position: int | None = None
    attempts: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    enhanced_prompt: str | None = None
    results: list[Image] = field(default_factory=list)  # one per image asked for (``options.count``)
    error: BaseException | None = None
    timings: dict[str, float] = field(default_factory=dict)
    crashes: int = 0  # runs a dead process left unfinished; such a job is suspect and runs alone
    user_key: str = ""

    def __post_init__(self) -> None:
        # The identity used for fairness, caps and rate limits; read on every queue operation.
        who = self.request.requester
        self.user_key = f"{who.platform}:{who.user_id}"

    @property
    def prompt(self) -> str:
        """The prompt the model gets: the enhanced one when there is one."""
        return self.enhanced_prompt or self.request.prompt

    @property
    def result(self) -> Image | None:
        """The first image, the one a single-image request made."""
        return self.results[0] if self.results else None

    @result.setter
    def result(self, image: Image | None) -> None:
        self.results = [] if image is None else [image]


class EventKind(enum.StrEnum):
    """What happened to a job."""

    QUEUED = "queued"
    POSITION = "position"
    ENHANCING = "enhancing"
    ENHANCED = "enhanced"
    GENERATING = "generating"
    PROGRESS = "progress"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"  # the process is stopping; the stored job runs again after the restart

    @property
    def final(self) -> bool:
        """True for the last event a job emits in this process."""
        return self in _FINAL_EVENTS


_FINAL_EVENTS = frozenset({EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED, EventKind.SUSPENDED})


@dataclass(slots=True)
class JobEvent:
    """A change in one job, for its platform and for observers."""

    kind: EventKind
    job: Job
    position: int | None = None
    progress: float | None = None
    preview: bytes | None = None
    message: str | None = None
    eta: float | None = None  # seconds until a queued job is likely done; None before the model has history
    at: float = field(default_factory=time.monotonic)
