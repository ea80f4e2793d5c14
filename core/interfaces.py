"""What plugins implement: image models, platforms and prompt enhancers."""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from core.types import MAX_SEED, GenerationRequest, Image, ImageRequest, Size

if TYPE_CHECKING:
    import httpx

    from core.engine import Engine


COMMON_RATIOS: tuple[tuple[int, int], ...] = (
    (1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (21, 9), (9, 21),
)


def sizes_for_area(area: int, multiple: int = 64,
                   ratios: tuple[tuple[int, int], ...] = COMMON_RATIOS) -> tuple[Size, ...]:
    """Sizes of about ``area`` pixels for the common ratios, rounded to ``multiple``."""
    out = []
    for w, h in ratios:
        height = (area * h / w) ** 0.5
        width = height * w / h
        out.append(Size(_round_to(width, multiple), _round_to(height, multiple)))
    return tuple(out)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


class InputSupport(BaseModel):
    """What a model does with input images; ``Capabilities.inputs`` is ``None`` for text-only models."""

    model_config = ConfigDict(frozen=True)

    image_to_image: bool = False  # redraws the input image following the prompt
    edit: bool = False  # follows an instruction ("make the sky red") on the input image
    masks: bool = False  # paints only where a mask is white (inpainting)
    max_images: int = Field(default=1, ge=1)
    max_bytes: int = Field(default=10_000_000, ge=1)  # per input image, after the engine's checks
    max_pixels: int = Field(default=4096 * 4096, ge=1)
    strength: bool = False  # takes ``GenerationRequest.strength``


class Capabilities(BaseModel):
    """What a model accepts; the engine checks requests against it before queueing."""

    model_config = ConfigDict(frozen=True)

    sizes: tuple[Size, ...] = (Size(1024, 1024),)
    max_prompt_length: int = 2048
    supports_seed: bool = True
    supports_negative_prompt: bool = False
    max_steps: int | None = None
    default_steps: int | None = None
    default_concurrency: int = Field(default=1, ge=1)
    inputs: InputSupport | None = None  # None: text to image only
    upscale_factors: tuple[int, ...] = ()  # an upscaler: the factors it offers for ``GenerationRequest.upscale``
    max_batch: int = Field(default=1, ge=1)  # images one ``generate_batch`` call makes natively


class Progress(Protocol):
    """How a model reports progress; the engine turns calls into job events."""

    async def __call__(self, fraction: float, preview: bytes | None = None) -> None:
        """Report ``fraction`` in [0, 1] done, with an optional preview image."""


class _BatchShare:
    """Image ``index``'s part of a batch's progress: its fraction ``f`` reported as ``(index + f) / count``."""

    def __init__(self, progress: Progress, index: int, count: int) -> None:
        self.progress, self.index, self.count = progress, index, count

    async def __call__(self, fraction: float, preview: bytes | None = None) -> None:
        """Report ``fraction`` of this image as the batch's share."""
        await self.progress((self.index + min(1.0, max(0.0, float(fraction)))) / self.count, preview)


class CheckStatus(enum.StrEnum):
    """The outcome of ``sakaibot check`` for one backend."""

    OK = "ok"
    BAD_CREDENTIALS = "bad credentials"
    UNREACHABLE = "unreachable"
    MISCONFIGURED = "misconfigured"


@dataclass(slots=True, frozen=True)
class CheckResult:
    """Whether a backend can be used, without generating an image."""

    status: CheckStatus
    detail: str = ""


class ImageModel(abc.ABC):
    """A configured image model; a backend plugin creates one per ``[models.<name>]`` table."""

    name: str
    description: str
    capabilities: Capabilities

    @abc.abstractmethod
    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        """Make one image or raise a ``BackendError``."""

    async def generate_batch(self, request: GenerationRequest, count: int, progress: Progress) -> list[Image]:
        """Make ``count`` images for one request (``--n``); all of them or raise a ``BackendError``.

        The default calls ``generate`` once per image with consecutive seeds (seed, seed + 1, …), so
        every image can be made again alone; a backend that batches natively (``max_batch > 1``)
        overrides this and makes them in one call. ``progress`` covers the whole batch, 0 to 1 once:
        the default gives image ``i`` the share ``(i + f) / count``.
        """
        images: list[Image] = []
        for index in range(count):
            seed = None if request.seed is None else (request.seed + index) % (MAX_SEED + 1)
            share = progress if count == 1 else _BatchShare(progress, index, count)
            images.append(await self.generate(dataclasses.replace(request, seed=seed), share))
        return images

    async def check(self) -> CheckResult:
        """Tell whether the backend is reachable with the configured credentials."""
        return CheckResult(CheckStatus.OK, "no remote service")

    async def aclose(self) -> None:  # noqa: B027 - optional for models that hold nothing
        """Release what the model holds; called once at shutdown."""


class Enhancer(abc.ABC):
    """Rewrites a prompt before generation; the engine falls back to the input on any error."""

    name: str

    @abc.abstractmethod
    async def enhance(self, prompt: str, request: ImageRequest, model: ImageModel) -> str:
        """Return the improved prompt."""


@runtime_checkable
class EngineView(Protocol):
    """What plugins receive as ``engine``: all a backend, enhancer or observer needs, and no more."""

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (one connection pool for every backend)."""

    @property
    def models(self) -> Mapping[str, ImageModel]:
        """The configured models by name."""

    @property
    def enhancers(self) -> Sequence[Enhancer]:
        """The prompt enhancers in the order they run."""

    def plugin_config(self, name: str) -> BaseModel | None:
        """A plugin's validated ``[plugins.<name>]`` table, or its defaults if absent."""


class Platform(abc.ABC):
    """A chat platform adapter: it translates, the engine does the work."""

    name: str

    @abc.abstractmethod
    async def start(self, engine: Engine) -> None:
        """Connect and begin handling commands; return once running."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending replies are the engine's to cancel."""

    async def wait_closed(self) -> None:
        """Wait until the platform has nothing more to do; most serve until stopped."""
        await asyncio.Event().wait()


class ModelSettings(BaseModel):
    """Settings every ``[models.<name>]`` table has; backends subclass it for their own keys."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    description: str | None = None
    concurrency: int | None = Field(default=None, ge=1, le=256)
    timeout: float = Field(default=120.0, gt=0)
    max_attempts: int | None = Field(default=None, ge=1, le=10)
    daily_quota: int | None = Field(default=None, ge=1, description="images per user per UTC day")
    enabled: bool = True


class PlatformSettings(BaseModel):
    """Settings every ``[platforms.<name>]`` table has."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False


ModelFactory = Callable[[str, Any, EngineView], ImageModel]
PlatformFactory = Callable[[Any], Platform]


@dataclass(slots=True, frozen=True)
class BackendType:
    """A kind of model backend a plugin offers; config instances name it in ``backend``."""

    name: str
    create: ModelFactory
    settings: type[ModelSettings] = ModelSettings
    description: str = ""


@dataclass(slots=True, frozen=True)
class PlatformType:
    """A chat platform a plugin offers; it starts when ``[platforms.<name>] enabled = true``."""

    name: str
    create: PlatformFactory
    settings: type[PlatformSettings] = PlatformSettings
    description: str = ""


@dataclass(slots=True, frozen=True)
class ConfigSection:
    """A ``[plugins.<name>]`` table with the model that validates it."""

    name: str
    settings: type[BaseModel]
