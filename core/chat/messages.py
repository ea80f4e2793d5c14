"""The words users see, shared by every platform so the bot speaks the same everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.chat.commands import OPTION_HELP
from core.types import EventKind, Job, JobEvent

if TYPE_CHECKING:
    from core.engine import Engine
    from core.engine.cluster_registry import ClusterView
    from core.interfaces import ImageModel
    from core.types import Requester


def status_text(event: JobEvent) -> str:
    """One line for a job's status message."""
    job, kind = event.job, event.kind
    if kind in (EventKind.QUEUED, EventKind.POSITION):
        position = event.position or job.position
        where = f" - position {position}" if position else ""
        where += f" - about {duration(event.eta)}" if event.eta else ""
        return f"⏳ Queued for {job.model}{where}"
    if kind in (EventKind.ENHANCING, EventKind.ENHANCED):
        return "✨ Enhancing the prompt…"
    if kind is EventKind.GENERATING:
        return f"🎨 Generating with {job.model}…"
    if kind is EventKind.PROGRESS:
        return f"🎨 Generating with {job.model}… {round((event.progress or 0) * 100)}%"
    if kind is EventKind.RETRYING:
        return f"🔁 The service stumbled; {event.message or 'retrying'}…"
    if kind is EventKind.DONE:
        return f"✅ Done in {elapsed(job):.1f} s"
    if kind is EventKind.CANCELLED:
        return f"🚫 {event.message or 'Cancelled.'}"
    if kind is EventKind.SUSPENDED:
        return "⏸ The bot is restarting; your request is kept and will run when it is back."
    return f"❌ {event.message or 'Failed.'}"


def duration(seconds: float) -> str:
    """A wait as people say it: "40 s", "3 min", "2 h"."""
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600, 1):g} h"


def elapsed(job: Job) -> float:
    """Seconds from submission to the end (or now)."""
    end = job.finished_at or job.started_at or job.created_at
    return max(0.0, end - job.created_at)


def caption(job: Job, *, with_id: bool = False) -> str:
    """The text under finished images: model, seed(s), time (and the job id for ``/info``), and the prompt used.

    Several images share one caption, their seeds listed in the order the images are shown; an
    upscale says so instead of a seed.
    """
    parts = [f"🎨 {job.model}", _what(job), f"{elapsed(job):.1f} s", f"#{job.id}" if with_id else None]
    head = " · ".join(p for p in parts if p)
    if job.request.options.upscale:
        return f"{head}\n📝 {job.request.prompt}"
    if job.enhanced_prompt:
        return f"{head}\n✨ {job.enhanced_prompt}\n📝 {job.request.prompt}"
    return f"{head}\n📝 {job.generation.prompt}"


def seeds(job: Job) -> list[int]:
    """The seeds of the images, in order (the requested one when a model reports none)."""
    found = [image.seed for image in job.results if image.seed is not None]
    if found:
        return found
    return [job.generation.seed] if job.generation.seed is not None else []


def _what(job: Job) -> str | None:
    """"upscaled 2x", "seed 42", or "4 images · seeds 42, 43, 44, 45"."""
    if job.request.options.upscale:
        return f"upscaled {job.request.options.upscale}x"
    numbers = seeds(job)
    if len(job.results) > 1:
        listed = f" · seeds {', '.join(map(str, numbers))}" if numbers else ""
        return f"{len(job.results)} images{listed}"
    return f"seed {numbers[0]}" if numbers else None


def truncate_words(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut to ``limit`` characters at a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ellipsis)]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + ellipsis


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts its limits (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def truncate_utf16(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut at a word boundary to at most ``limit`` UTF-16 code units."""
    if utf16_length(text) <= limit:
        return text
    room = limit - utf16_length(ellipsis)
    cut, used = [], 0
    for char in text:
        used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            break
        cut.append(char)
    kept = "".join(cut)
    space = max(kept.rfind(" "), kept.rfind("\n"))
    if space > len(kept) // 2:
        kept = kept[:space]
    return kept.rstrip() + ellipsis


def models_text(engine: Engine) -> str:
    """The ``/models`` answer."""
    default = engine.settings.engine.default_model
    lines = ["Models:"]
    for name, model in sorted(engine.models.items()):
        mark = " (default)" if name == default else ""
        lines.append(f"• {name}{mark} - {model.description}{_abilities(model)}")
    lines.append("Use /image=<model>=<prompt>.")
    return "\n".join(lines)


def _abilities(model: ImageModel) -> str:
    """What a model does besides text to image, so people know where a picture or /upscale goes."""
    caps, found = model.capabilities, []
    if caps.inputs is not None and (caps.inputs.image_to_image or caps.inputs.edit):
        found.append("edits pictures" if caps.inputs.edit else "starts from a picture")
    if caps.upscale_factors:
        found.append("upscales " + "/".join(f"{f}x" for f in caps.upscale_factors))
    return f" ({', '.join(found)})" if found else ""


def queue_text(engine: Engine, requester: Requester, view: ClusterView | None = None) -> str:
    """The ``/queue`` answer: every lane's load (cluster-wide with a ``view``), the caller's jobs, the workers."""
    loads = view.lanes if view is not None else engine.lane_loads()
    lines = [f"• {lane.name}: {lane.running}/{lane.concurrency} running, {lane.waiting} waiting"
             for lane in sorted(loads, key=lambda lane: lane.name)]
    for job in engine.jobs_of(requester):  # what this user has, never a walk over the whole lane
        where = f"position {job.position}" if job.position else job.state.value
        lines.append(f"  your job {job.id} ({job.model}): {where}")
    text = "Queue:\n" + "\n".join(lines) if lines else "The queue is empty."
    if view is None or view.workers is None:  # the embedded queue: this process is the worker
        return text
    if not view.workers:
        return text + "\nNo workers are running right now: waiting jobs start when one joins."
    served = sorted({model for worker in view.workers for model in worker.models})
    return text + f"\nWorkers alive: {len(view.workers)} (serving {', '.join(served)})"


def help_text(engine: Engine) -> str:
    """The ``/help`` answer."""
    options = "\n".join(f"  --{name}: {text}" for name, text in OPTION_HELP.items())
    models = ", ".join(sorted(engine.models))
    return (
        "SakaiBot makes images from your words.\n"
        f"/image=<model>=<prompt> - e.g. /image={engine.settings.engine.default_model}=a lighthouse at dusk\n"
        "/image <prompt> - with the default model\n"
        "With a picture: attach it (or reply to it) with /image to start from it, or /upscale [2-4]\n"
        f"Options, after the prompt:\n{options}\n"
        f"/models - the models ({models})\n"
        "/queue - what is waiting\n"
        "/cancel [job] - cancel your newest (or the named) request\n"
        "/history [n] - your last jobs; /info <job> - everything about one\n"
        "/settings - your defaults (model, aspect, enhance, file)\n"
        "/help - this text"
    )
