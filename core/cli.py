"""The ``sakaibot`` command: generate, models, plugins, check, run, worker, queue.

Exit codes: 0 success, 1 a job, a backend or a platform failed, 2 the configuration (or the job
store) cannot be used, 130 interrupted. Errors are one plain message on stderr, never a traceback
(``-v`` logs the traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import io
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core import __version__
from core.chat.commands import OPTIONS
from core.chat.conversation import Conversation
from core.chat.messages import caption
from core.cli_target import FileTarget
from core.config import Settings, read_settings
from core.engine import Engine
from core.errors import ConfigError, InvalidCommand, InvalidInputImage, JobNotFound, SakaiError
from core.hooks.host import ENTRY_POINT_GROUP, PluginStatus
from core.imaging import sniff_input
from core.interfaces import CheckStatus
from core.logs import secrets_in, setup_logging
from core.types import GenerationOptions, Image, ImageRequest, Job, Requester

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130
CHECK_TIMEOUT = 20.0
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}
_SUFFIXES = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "WEBP": (".webp",), "GIF": (".gif",)}


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """Options valid before or after the command; sub-commands leave them alone unless given."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="config file (default: $SAKAIBOT_CONFIG, else ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="log debug detail, tracebacks included")
    parser.add_argument("--log-format", choices=("text", "json"), default=default,
                        help="log lines as text or one JSON object each (default: [logging] format)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; kept separate so tests can read it."""
    parser = argparse.ArgumentParser(prog="sakaibot", description="AI image generation for chat.")
    _global_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"sakaibot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")
    gen = _command(sub, "generate", "make images (from a prompt, or from a picture) through the whole engine")
    gen.add_argument("prompt", help="what to draw, in quotes")
    gen.add_argument("--model", help="model name (default: the configured default model)")
    gen.add_argument("--out", type=Path, metavar="FILE",
                     help="file to write; .png, .jpg, .webp or .gif (default: sakaibot-<job>.<ext>)")
    gen.add_argument("--seed", help="a number for repeatable results")
    gen.add_argument("--ar", help="aspect ratio, e.g. 16:9")
    gen.add_argument("--no", dest="negative", metavar="TEXT", help="negative prompt: what to leave out")
    gen.add_argument("--steps", help="sampling steps, where the model takes them")
    gen.add_argument("--raw", action="store_true", help="skip prompt enhancement")
    gen.add_argument("--image", dest="images", type=Path, action="append", default=[], metavar="PATH",
                     help="a picture to start from (PNG, JPEG, WebP or GIF; repeat for models that take several)")
    gen.add_argument("--mask", type=Path, metavar="PATH", help="white where an inpainting model may paint")
    gen.add_argument("--strength", type=_fraction, metavar="0-1", help="how far to move from the picture")
    gen.add_argument("--n", dest="count", type=_count, default=1, metavar="N",
                     help="how many images, 1 to 4 (written as FILE-1, FILE-2…)")
    gen.add_argument("--upscale", type=int, choices=(2, 3, 4), metavar="FACTOR",
                     help="upscale the --image by 2, 3 or 4, with a model that upscales")
    _command(sub, "models", "list the configured models")
    _command(sub, "plugins", "list plugins with their package and version, loaded and failed")
    _command(sub, "check", "validate the config, say what the environment turned on, reach every backend")
    run = _command(sub, "run", "start the enabled platforms and serve until Ctrl-C or SIGTERM")
    run.add_argument("--no-worker", action="store_true",
                     help="with [queue] backend = \"redis\": run no local worker (workers run elsewhere)")
    worker = _command(sub, "worker", "generate for the shared Redis queue, without platforms, until Ctrl-C or SIGTERM")
    worker.add_argument("--models", metavar="A,B", help="the models this worker serves (default: every configured one)")
    _command(sub, "queue", "show the shared queue: lanes (waiting, running, concurrency) and workers alive")
    return parser


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"takes a number from 0 to 1, not {text!r}")
    return value


def _count(text: str) -> int:
    if text not in ("1", "2", "3", "4"):
        raise argparse.ArgumentTypeError(f"takes 1, 2, 3 or 4 images, not {text!r}")
    return int(text)


def _command(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    _global_options(parser, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sakaibot`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        engine = _build(args)
        return asyncio.run(COMMANDS[args.command](engine, args))
    except ConfigError as exc:
        return _fail(exc.user_message, EXIT_CONFIG)
    except KeyboardInterrupt:
        return _fail("Interrupted.", EXIT_INTERRUPTED)
    except Exception as exc:  # the last resort: one line, the traceback only in the debug log
        log.debug("unexpected failure", exc_info=True)
        return _fail(f"sakaibot {args.command} failed: {type(exc).__name__}: {exc} (-v shows the traceback)",
                     EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    """Print plainly: rich would wrap long lines mid-word and read brackets as markup."""
    sys.stderr.write(message.rstrip() + "\n")
    sys.stderr.flush()
    return code


def _build(args: argparse.Namespace) -> Engine:
    """Settings, logging and the engine; every configuration problem of every table in one error."""
    settings, problems = read_settings(args.config)
    quiet = args.command not in ("run", "worker") and settings.logging.level in ("DEBUG", "INFO")
    level = "DEBUG" if args.verbose else "WARNING" if quiet else settings.logging.level
    redactor = setup_logging(level, secrets_in(settings), args.log_format or settings.logging.format)
    try:
        engine = Engine.from_config(settings=settings)
    except ConfigError as exc:
        raise ConfigError(problems + _in_file(exc.problems, settings, problems)) from None
    if problems:
        raise ConfigError(problems)
    redactor.add(secrets_in(engine.model_settings, engine.platform_settings, engine.plugin_settings))
    return engine


def _in_file(found: list[str], settings: Settings, earlier: list[str]) -> list[str]:
    """Name the file in the plugin tables' problems; drop a default-model complaint caused by a bad engine table."""
    engine_broken = any(": engine." in line for line in earlier)
    lines = [f"{settings.source}: {line.removeprefix('config: ')}" if line.startswith("config: ") else line
             for line in found]
    return [line for line in lines if not (engine_broken and "engine.default_model" in line)]


# ---------------------------------------------------------------------- generate
async def cmd_generate(engine: Engine, args: argparse.Namespace) -> int:
    """Run one request through queue, enhancers, hooks and model; write every image."""
    try:
        options = _options(args)
        _format_for(args.out)
        images = tuple([await _picture(path, "--image") for path in args.images])
        mask = None if args.mask is None else await _picture(args.mask, "--mask")
    except (InvalidCommand, InvalidInputImage) as exc:
        return _fail(exc.user_message, EXIT_FAILED)
    request = ImageRequest(prompt=args.prompt, model=args.model, options=options, images=images, mask=mask,
                           requester=Requester(platform="cli", user_id="local", is_admin=True))
    err = Console(stderr=True)
    submitted: list[str] = []
    async with engine:
        try:
            target, job = await _follow(engine, request, err, args.out, submitted)
        except SakaiError as exc:
            return _fail(f"✗ {engine.render_error(None, exc)}", EXIT_FAILED)
        except asyncio.CancelledError:
            return await _interrupted(engine, request, submitted)
    if not target.paths:
        return _fail(f"✗ {_why_not(engine, job, target)}", EXIT_FAILED)
    print("\n".join(str(path) for path in target.paths) + f"\n{caption(job)}")
    return 0


async def _picture(path: Path, flag: str) -> bytes:
    """A picture file's bytes, read off the loop; refused early if missing or if its name lies about its type."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise InvalidCommand(f"{flag} {path}: cannot be read ({exc.strerror or exc}).") from None
    sniff_input(data, declared=path.name, label=f"{flag} {path}")  # the engine decodes and cleans it
    return data


def _options(args: argparse.Namespace) -> GenerationOptions:
    """The options, read by the same rules and with the same sentences as in chat."""
    given = {"ar": args.ar, "seed": args.seed, "no": args.negative, "steps": args.steps}
    values: dict[str, Any] = {}
    for name, value in given.items():
        if value is not None:
            key, parse = OPTIONS[name]
            values[key] = parse(name, str(value))
    return GenerationOptions(**values, enhance=False if args.raw else None, count=args.count,
                             strength=args.strength, upscale=args.upscale)


def _format_for(out: Path | None) -> str | None:
    """The Pillow format ``--out`` asks for; refused before any work is done if SakaiBot cannot write it."""
    if out is None:
        return None
    wanted = FORMATS.get(out.suffix.lower())
    if wanted is None:
        known = ", ".join(FORMATS)
        raise InvalidCommand(f"--out {out}: SakaiBot writes {known} files, not '{out.suffix or 'no extension'}'.")
    return wanted


async def _follow(engine: Engine, request: ImageRequest, err: Console, out: Path | None,
                  submitted: list[str]) -> tuple[FileTarget, Job]:
    """The job through the same conversation as every chat platform: status, follow, deliver once."""
    handle = await engine.submit(request)
    submitted.append(handle.id)  # so Ctrl-C can name and cancel the job
    with err.status("queued", spinner="dots") as status:
        target = FileTarget(status, out, write_image)
        await Conversation(engine, "cli", interval=0.0).run(handle, target)
    return target, handle.job


def _why_not(engine: Engine, job: Job, target: FileTarget) -> str:
    """What the user is told when the conversation ended without files: the job's failure, or the files'."""
    if target.refused is not None:
        return target.refused
    if job.error is not None:
        return engine.render_error(job, job.error)
    return f"Job {job.id} ended ({job.state.value}) without an image."


async def _interrupted(engine: Engine, request: ImageRequest, submitted: list[str]) -> int:
    """Ctrl-C: cancel the job (it must not run again after a restart) and say what happened to it."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    job_id = submitted[0] if submitted else None
    if job_id is None:
        return _fail("Interrupted before the request was queued; nothing was made.", EXIT_INTERRUPTED)
    try:
        await engine.cancel(job_id, request.requester)
    except (JobNotFound, SakaiError):
        return _fail(f"Interrupted: job {job_id} had already finished; no file was written.", EXIT_INTERRUPTED)
    return _fail(f"Interrupted: job {job_id} was cancelled; no image was made.", EXIT_INTERRUPTED)


def write_image(path: Path, image: Image) -> None:
    """Write ``image``; re-encode with Pillow when the file name asks for another format."""
    wanted = _format_for(path)
    data = image.data
    if wanted and f".{image.extension}" not in _SUFFIXES[wanted]:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as picture:
            buffer = io.BytesIO()
            picture.convert("RGB" if wanted in ("JPEG", "GIF") else picture.mode).save(buffer, format=wanted)
            data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ---------------------------------------------------------------------- listings
async def cmd_models(engine: Engine, args: argparse.Namespace) -> int:
    """Print the configured models (names and descriptions as written: ``[schnell]`` is not markup)."""
    table = Table("model", "backend", "concurrency", "description", title="Models")
    default = engine.settings.engine.default_model
    for name, model in sorted(engine.models.items()):
        label = f"{name} (default)" if name == default else name
        cells = (label, engine.model_settings[name].backend, str(engine.concurrency(name)), model.description)
        table.add_row(*(escape(cell) for cell in cells))
    Console().print(table)
    return 0


async def cmd_plugins(engine: Engine, args: argparse.Namespace) -> int:
    """Print every plugin with its package, version and what it provides, or why it failed."""
    table = Table("plugin", "package", "version", "status", "provides / error", title="Plugins")
    packages = _packages()
    records = [r for r in engine.host.records.values() if r.source != "core"]  # the core's own parts
    for record in sorted(records, key=lambda r: r.name):
        failed = record.status is PluginStatus.FAILED
        detail = record.error if failed else ", ".join(record.provides)
        package, version = packages.get(record.name, (record.source, record.version))
        status = f"[{'red' if failed else 'green'}]{record.status}[/]"
        table.add_row(escape(record.name), escape(package or "-"), escape(version or "-"), status,
                      escape(detail or "-"))
    Console().print(table)
    return 0


def _packages() -> dict[str, tuple[str, str | None]]:
    """Entry-point name -> (distribution, version) for every installed ``sakaibot`` plugin."""
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = (dist.name, dist.version) if dist else (ep.value, None)
    return found


# ---------------------------------------------------------------------- check
async def cmd_check(engine: Engine, args: argparse.Namespace) -> int:
    """Say what the environment turned on, then report each backend; non-zero if anything is unusable."""
    for line in engine.settings.legacy:
        print(f"• {line}")
    failures = _check_enhancer(engine)
    async with engine:
        for name, model in sorted(engine.models.items()):
            ok, text = await _check_one(model)
            failures += not ok
            print(f"{'✓' if ok else '✗'} {name}: {text}")
    for name, settings in sorted(engine.platform_settings.items()):
        if settings.enabled:
            print(f"✓ platform {name}: enabled, credentials present")
    print(f"config: ok ({engine.settings.source})" if not failures else f"{failures} problem(s) found")
    return EXIT_FAILED if failures else 0


def _check_enhancer(engine: Engine) -> int:
    """An enhancer with a model but no way to run is configured and unusable: a failure."""
    settings = engine.plugin_settings.get("enhancer")
    why_off = getattr(settings, "why_off", None)
    if settings is None or why_off is None or not getattr(settings, "model", None):
        return 0
    reason = why_off()
    if reason is None:
        print(f"✓ prompt enhancement: {settings.model}")  # type: ignore[attr-defined]
        return 0
    enabled = getattr(settings, "enabled", True)
    print(f"{'✗' if enabled else '•'} prompt enhancement: off, {reason}")
    return int(enabled)


async def _check_one(model: Any) -> tuple[bool, str]:
    try:
        result = await asyncio.wait_for(model.check(), CHECK_TIMEOUT)
    except TimeoutError:
        return False, f"unreachable: no answer within {CHECK_TIMEOUT:g} s"
    except SakaiError as exc:
        return False, f"unreachable: {exc.user_message}"
    detail = f": {result.detail}" if result.detail else ""
    return result.status is CheckStatus.OK, f"{result.status}{detail}"


# ---------------------------------------------------------------------- run
async def cmd_run(engine: Engine, args: argparse.Namespace) -> int:
    """Serve the enabled platforms until they finish, or Ctrl-C / SIGTERM (a second signal changes nothing)."""
    if not any(settings.enabled for settings in engine.platform_settings.values()):
        return _fail("Nothing to run: no platform is enabled. Set enabled = true under [platforms.<name>] "
                     "(console, telegram, discord), or set the original bot's TELEGRAM_* variables.", EXIT_CONFIG)
    stop = _stop_on_signals()
    if getattr(args, "no_worker", False):
        engine.local_worker = False
    if await _unless_stopped(_started(engine), stop) is None:
        await engine.stop()
        return 0
    serving = asyncio.create_task(engine.serve(), name="serve")
    stopping = asyncio.create_task(stop.wait(), name="signals")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            print("stopping: finishing running jobs, keeping waiting ones…", file=sys.stderr)
            serving.cancel()  # serve() then quiesces the engine while platforms can still deliver
        (outcome,) = await asyncio.gather(serving, return_exceptions=True)
    finally:
        stopping.cancel()
        await engine.stop()
    if engine.health.failure is not None and _served(outcome) == 0:
        return _fail(f"✗ The job store failed and had not recovered when the bot stopped: {engine.health.failure}. "
                     "New requests were refused meanwhile; check the disk and the [store] path.", EXIT_FAILED)
    return _served(outcome)


def _served(outcome: BaseException | None) -> int:
    """Exit code of ``run``: a platform or the engine failing is a failure a supervisor should see."""
    if outcome is None or isinstance(outcome, asyncio.CancelledError):
        return 0
    if isinstance(outcome, ConfigError):
        return _fail(outcome.user_message, EXIT_CONFIG)
    log.debug("serving failed", exc_info=outcome)
    message = outcome.user_message if isinstance(outcome, SakaiError) else f"{type(outcome).__name__}: {outcome}"
    return _fail(f"sakaibot run stopped: {message}", EXIT_FAILED)


async def _started(engine: Engine) -> bool:
    await engine.start()
    return True


async def _unless_stopped(starting: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Run a start-up that may wait a long time (Redis down: it retries); ``None`` if a signal came first."""
    start = asyncio.ensure_future(starting)
    signalled = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({start, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if start.done():
        return start.result()  # its failure is the command's
    print("stopping before start-up finished…", file=sys.stderr, flush=True)
    start.cancel()
    await asyncio.gather(start, return_exceptions=True)
    return None


# ---------------------------------------------------------------------- worker and queue (a cluster on Redis)
def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return stop


async def cmd_worker(engine: Engine, args: argparse.Namespace) -> int:
    """Serve the shared queue until SIGTERM/SIGINT, then hand claimed jobs back and exit cleanly."""
    models = [name.strip() for name in args.models.split(",") if name.strip()] if args.models else None
    stop = _stop_on_signals()
    try:
        worker = await _unless_stopped(engine.start_worker(models), stop)
        if worker is None:
            return 0
        print(f"worker {worker.id} serving {', '.join(worker.serve)}", file=sys.stderr, flush=True)
        await stop.wait()
        print("stopping: finishing running jobs, handing the rest back…", file=sys.stderr, flush=True)
    finally:
        await engine.stop()
    return 0


async def cmd_queue(engine: Engine, args: argparse.Namespace) -> int:
    """Print every lane's waiting and running jobs and its concurrency, and the workers alive."""
    try:
        view = await engine.cluster_view()
    finally:
        await engine.stop()
    table = Table("lane", "waiting", "running", "concurrency")
    for load in view.lanes:
        table.add_row(load.name, str(load.waiting), str(load.running), str(load.concurrency))
    out = Console(highlight=False)
    out.print(table)
    if view.workers is None:
        out.print("workers: this process (the embedded queue)")
        return 0
    out.print(f"workers alive: {len(view.workers)}")
    for worker in view.workers:
        out.print(f"  {escape(worker.id)}  {escape(worker.host)} pid {worker.pid}  "
                  f"models {escape(', '.join(worker.models))}  running {worker.running}")
    return 0


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "generate": cmd_generate, "models": cmd_models, "plugins": cmd_plugins, "check": cmd_check, "run": cmd_run,
    "worker": cmd_worker, "queue": cmd_queue,
}


if __name__ == "__main__":
    sys.exit(main())
