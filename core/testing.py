"""A kit for testing SakaiBot plugins: a running engine, a recording platform, a model conformance check.

Third-party plugin authors import it in their own tests::

    from core.testing import RecordingPlatform, check_model_conformance, running_engine

    async def test_my_model_conforms():
        async with running_engine({"models": {"m": {"backend": "mine"}}}, plugins=[my_plugin]) as engine:
            await check_model_conformance(engine.models["m"])

Nothing here needs pytest; it raises ``AssertionError`` subclasses so any runner reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from PIL import Image as PILImage

from core.config import Settings
from core.engine import Engine
from core.engine.handle import JobHandle
from core.errors import SakaiError
from core.hooks.host import create_plugin_host
from core.imaging import clean_input, inspect_image
from core.interfaces import ImageModel, Platform
from core.types import (
    EventKind,
    GenerationOptions,
    GenerationRequest,
    Image,
    ImageRequest,
    InputImage,
    JobEvent,
    Requester,
    Size,
)

PluginSpec = ModuleType | object | tuple[str, object]
Fault = Callable[[], Awaitable[None] | None]

__all__ = [
    "ConformanceError", "ConformanceReport", "RecordingPlatform", "Sent", "build_engine",
    "check_model_conformance", "running_engine",
]


# ------------------------------------------------------------------------------------------ engine
def build_engine(config: Mapping[str, Any], plugins: Iterable[PluginSpec] = (), *,
                 load_entry_points: bool = False) -> Engine:
    """An engine from a dict shaped like ``config.toml`` (``models``, ``engine``, ``plugins``…); not started.

    Rate limits are off and no platform is configured unless the dict says otherwise; only the
    given plugins are loaded unless ``load_entry_points`` is true.
    """
    tables = {"platforms": {}, **config}
    tables["engine"] = {"rate_limit": None, **tables.get("engine", {})}
    if "default_model" not in tables["engine"] and tables.get("models"):
        tables["engine"]["default_model"] = next(iter(tables["models"]))
    host = create_plugin_host(load_entry_points=load_entry_points, extra=[_named(p) for p in plugins])
    return Engine(Settings(**tables), host)


@contextlib.asynccontextmanager
async def running_engine(config: Mapping[str, Any], plugins: Iterable[PluginSpec] = (), *,
                         load_entry_points: bool = False) -> AsyncIterator[Engine]:
    """A started engine that is always stopped afterwards, whatever the test did."""
    engine = build_engine(config, plugins, load_entry_points=load_entry_points)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop(grace=1)


def _named(plugin: PluginSpec) -> tuple[str, object]:
    if isinstance(plugin, tuple):
        return plugin
    name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return str(name), plugin


# ---------------------------------------------------------------------------------------- platform
@dataclass(slots=True)
class Sent:
    """One thing the platform would have sent: a status line, a preview, the photo or an error."""

    kind: str  # "status", "preview", "photo" or "error"
    job_id: str
    text: str = ""
    data: bytes | None = None


class RecordingPlatform(Platform):
    """A platform that sends nothing anywhere and records what it would have sent, in order."""

    name = "recording"

    def __init__(self, user: str = "tester", *, admin: bool = False) -> None:
        self.requester = Requester(platform=self.name, user_id=user, chat_id="chat", is_admin=admin)
        self.sent: list[Sent] = []
        self.events: list[JobEvent] = []
        self._engine: Engine | None = None
        self._followers: set[asyncio.Task[None]] = set()

    async def start(self, engine: Engine) -> None:
        """Remember the engine; there is nothing to connect."""
        self._engine = engine

    async def stop(self) -> None:
        """Stop following jobs."""
        for task in self._followers:
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Done when every job it asked for has finished."""
        await asyncio.gather(*self._followers, return_exceptions=True)

    async def image(self, prompt: str, model: str | None = None, *, images: tuple[bytes, ...] = (),
                    **options: Any) -> JobHandle:
        """Ask for an image as a user would (``images``: pictures they attached); what follows is recorded."""
        if self._engine is None:
            raise RuntimeError("start the platform with an engine first")
        request = ImageRequest(prompt=prompt, model=model, requester=self.requester,
                               options=GenerationOptions(**options), images=images)
        handle = await self._engine.submit(request)
        task = asyncio.create_task(self._follow(handle), name=f"recording-{handle.id}")
        self._followers.add(task)
        return handle

    async def _follow(self, handle: JobHandle) -> None:
        async for event in handle:
            self.events.append(event)
            self.sent.extend(self._render(event))
        if handle.job.error is not None and self._engine is not None:
            self.sent.append(Sent("error", handle.id, self._engine.render_error(handle.job, handle.job.error)))

    def _render(self, event: JobEvent) -> list[Sent]:
        """What one event shows: a status or preview, or one "photo" per image once done (``--n``)."""
        job = event.job
        if event.kind is EventKind.DONE and job.results:
            return [Sent("photo", job.id, f"{job.model} · seed {image.seed}", image.data) for image in job.results]
        if event.preview is not None:
            return [Sent("preview", job.id, f"{round((event.progress or 0) * 100)}%", event.preview)]
        detail = f" {round(event.progress * 100)}%" if event.progress is not None else ""
        return [Sent("status", job.id, f"{event.kind.value}{detail}")]

    def of_kind(self, kind: str) -> list[Sent]:
        """What was sent of one kind, in order."""
        return [item for item in self.sent if item.kind == kind]


# ------------------------------------------------------------------------------------- conformance
class ConformanceError(AssertionError):
    """The model does not honour the ``ImageModel`` contract; the message lists every problem."""


@dataclass(slots=True)
class ConformanceReport:
    """What the check did and found."""

    model: str
    calls: int = 0
    fractions: list[float] = field(default_factory=list)
    previews: int = 0
    cancelled_while_running: bool = False
    problems: list[str] = field(default_factory=list)


async def check_model_conformance(model: ImageModel, *, faults: Iterable[Fault] = (), sizes: int = 3,
                                  exact_size: bool = True, before_cancel: Fault | None = None,
                                  prompt: str = "a lighthouse at dusk", call_limit: float = 60.0,
                                  cancel_after: float = 0.2, cancel_within: float = 5.0) -> ConformanceReport:
    """Drive ``model`` through its declared capabilities and raise ``ConformanceError`` if it breaks the contract.

    Checked: every call with values the capabilities allow succeeds (sizes, seed, negative prompt,
    the longest prompt, the most steps); the bytes decode as the declared MIME type and size; the
    seed is echoed; progress fractions stay within 0..1 and never go down; previews are images;
    a model that declares ``inputs`` takes a picture (with ``strength`` and a mask where declared)
    and an upscaler each factor it offers, and both answer with an image of the asked size;
    each ``fault`` (a callable that makes the next call fail, e.g. by scripting a fake server)
    ends in a ``core.errors`` type rather than an HTTP or SDK exception; a cancelled call ends
    within ``cancel_within`` seconds (``before_cancel`` may slow the backend down so the cancel
    lands mid-call; the cancel comes at the first progress report or after ``cancel_after`` seconds).
    ``call_limit`` bounds each call (seconds), so a hang is reported too.
    ``exact_size=False`` skips only "the picture has the requested size", for fakes that shrink.
    """
    report = ConformanceReport(model.name)
    for request in _requests(model, prompt, sizes) + await _picture_requests(model, prompt):
        await _one_call(model, request, report, call_limit, exact_size)
    for number, fault in enumerate(faults, start=1):  # a fresh seed each: caching backends must run again
        await _one_fault(model, fault, _base_request(model, prompt, seed=_seed(model, number)), report, call_limit)
    if before_cancel is not None:
        await _arrange(before_cancel)
    await _cancellation(model, _base_request(model, prompt, seed=_seed(model, 0)), report, cancel_after,
                        cancel_within)
    if report.problems:
        raise ConformanceError(f"{model.name} breaks the ImageModel contract:\n- " + "\n- ".join(report.problems))
    return report


def _base_request(model: ImageModel, prompt: str, **changes: Any) -> GenerationRequest:
    caps = model.capabilities
    values: dict[str, Any] = {"prompt": prompt, "size": caps.sizes[0], "seed": 12345 if caps.supports_seed else None,
                              "negative_prompt": None, "steps": caps.default_steps, "original_prompt": prompt}
    values.update(changes)
    return GenerationRequest(**values)


def _seed(model: ImageModel, number: int) -> int | None:
    return 54321 + number if model.capabilities.supports_seed else None


def _requests(model: ImageModel, prompt: str, sizes: int) -> list[GenerationRequest]:
    caps = model.capabilities
    chosen = _spread(caps.sizes, sizes)
    out = [_base_request(model, prompt, size=size) for size in chosen]
    longest = ("x " * caps.max_prompt_length)[: caps.max_prompt_length].strip() or "x"
    out.append(_base_request(model, longest))
    if caps.supports_negative_prompt:
        out.append(_base_request(model, prompt, negative_prompt="blurry, low quality"))
    if caps.max_steps is not None:
        out.append(_base_request(model, prompt, steps=caps.max_steps))
    return out


async def _picture_requests(model: ImageModel, prompt: str) -> list[GenerationRequest]:
    """Calls with input pictures, as the engine makes them: cleaned ``InputImage``, a mask, each upscale."""
    caps, out = model.capabilities, []
    if caps.inputs is not None:
        size = caps.sizes[0]
        picture = await _input_picture(size.width, size.height)
        mask = await _input_picture(size.width, size.height, mask=True) if caps.inputs.masks else None
        out.append(_base_request(model, prompt, images=(picture,), mask=mask,
                                 strength=0.6 if caps.inputs.strength else None))
    for factor in caps.upscale_factors:
        small = await _input_picture(64, 48)
        out.append(_base_request(model, prompt, images=(small,), upscale=factor, size=Size(64 * factor, 48 * factor)))
    return out


async def _input_picture(width: int, height: int, *, mask: bool = False) -> InputImage:
    """A picture (or a mask: white on the lower half) through the engine's own checks."""
    def draw() -> bytes:
        picture = PILImage.linear_gradient("L").resize((width, height)).convert("L" if mask else "RGB")
        if mask:
            picture = picture.point(lambda value: 255 if value > 127 else 0)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()
    return await clean_input(await asyncio.to_thread(draw), mask=mask, max_pixels=width * height)


def _spread(sizes: tuple[Size, ...], count: int) -> list[Size]:
    """The first size, the widest and the tallest: the ones most likely to break."""
    picked = [sizes[0], max(sizes, key=lambda s: s.ratio), min(sizes, key=lambda s: s.ratio)]
    unique = list(dict.fromkeys(picked))
    return unique[: max(1, count)]


class _Recorder:
    """A ``Progress`` callback that keeps what it was told."""

    def __init__(self) -> None:
        self.fractions: list[float] = []
        self.previews: list[bytes] = []
        self.called = asyncio.Event()

    async def __call__(self, fraction: float, preview: bytes | None = None) -> None:
        self.fractions.append(fraction)
        if preview is not None:
            self.previews.append(preview)
        self.called.set()


async def _one_call(model: ImageModel, request: GenerationRequest, report: ConformanceReport, limit: float,
                    exact_size: bool) -> None:
    recorder = _Recorder()
    what = f"{request.size}, steps {request.steps}, prompt of {len(request.prompt)} chars" + (
        ", negative prompt" if request.negative_prompt else "") + (
        f", {len(request.images)} input picture(s)" if request.images else "") + (
        ", a mask" if request.mask else "") + (f", upscale {request.upscale}x" if request.upscale else "")
    report.calls += 1
    try:
        async with asyncio.timeout(limit):
            image = await model.generate(request, recorder)
    except TimeoutError:
        report.problems.append(f"{what}: no answer within {limit:g} s")
        return
    except Exception as exc:
        report.problems.append(f"{what}: a request the capabilities allow failed: {type(exc).__name__}: {exc}")
        return
    report.problems += [f"{what}: {problem}" for problem in _image_problems(image, request, exact_size)]
    report.problems += [f"{what}: {problem}" for problem in _progress_problems(recorder)]
    report.fractions += recorder.fractions
    report.previews += len(recorder.previews)


def _image_problems(image: Any, request: GenerationRequest, exact_size: bool) -> list[str]:
    if not isinstance(image, Image):
        return [f"generate returned {type(image).__name__}, not core.Image"]
    try:
        info = inspect_image(image.data)
    except SakaiError as exc:
        return [f"the bytes are not a valid image ({exc})"]
    problems = []
    if info.mime_type != image.mime_type:
        problems.append(f"declared {image.mime_type} but the bytes are {info.mime_type}")
    if (info.width, info.height) != (image.width, image.height):
        problems.append(f"declared {image.width}x{image.height} but the bytes are {info.width}x{info.height}")
    if exact_size and (info.width, info.height) != (request.size.width, request.size.height):
        problems.append(f"asked for {request.size} but got {info.width}x{info.height}")
    if request.seed is not None and image.seed not in (request.seed, None):
        problems.append(f"asked for seed {request.seed} but the image says {image.seed}")
    return problems


def _progress_problems(recorder: _Recorder) -> list[str]:
    problems = []
    fractions = recorder.fractions
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        problems.append(f"progress outside 0..1: {fractions}")
    if any(later < earlier for earlier, later in itertools.pairwise(fractions)):
        problems.append(f"progress went down: {fractions}")
    for preview in recorder.previews:
        try:
            inspect_image(preview)
        except SakaiError as exc:
            problems.append(f"a preview is not an image ({exc})")
            break
    return problems


async def _one_fault(model: ImageModel, fault: Fault, request: GenerationRequest, report: ConformanceReport,
                     limit: float) -> None:
    await _arrange(fault)
    name = getattr(fault, "__name__", repr(fault))
    try:
        async with asyncio.timeout(limit):
            await model.generate(request, _Recorder())
    except SakaiError as exc:
        if not exc.user_message:
            report.problems.append(f"fault {name}: {type(exc).__name__} has no user message")
    except TimeoutError:
        report.problems.append(f"fault {name}: no answer within {limit:g} s")
    except Exception as exc:
        report.problems.append(f"fault {name}: raised {type(exc).__module__}.{type(exc).__name__}, "
                               "not a core.errors type (translate it with `raise ... from exc`)")
    else:
        report.problems.append(f"fault {name}: the call succeeded; the fault did not reach the model")


async def _arrange(fault: Fault) -> None:
    arranged = fault()
    if arranged is not None:
        await arranged


async def _cancellation(model: ImageModel, request: GenerationRequest, report: ConformanceReport,
                        after: float, within: float) -> None:
    recorder = _Recorder()
    task = asyncio.create_task(model.generate(request, recorder))
    reported = asyncio.create_task(recorder.called.wait())
    # Cancel at the first progress report, or after a moment for models that report none.
    await asyncio.wait([task, reported], timeout=after, return_when=asyncio.FIRST_COMPLETED)
    reported.cancel()
    report.cancelled_while_running = not task.done()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=within)
    if not done:
        report.problems.append(f"cancelled, but generate was still running {within:g} s later")
        return
    error = None if task.cancelled() else task.exception()
    if error is not None and not isinstance(error, SakaiError):
        report.problems.append(f"cancelled, then raised {type(error).__name__} instead of CancelledError")
