"""The ``sakaibot`` command: generate, models, plugins, check, run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from core import __version__
from core.chat.messages import caption, status_text
from core.config import load_settings
from core.engine import Engine
from core.errors import ConfigError, SakaiError
from core.hooks.host import PluginStatus
from core.interfaces import CheckStatus
from core.logs import secrets_in, setup_logging
from core.types import EventKind, GenerationOptions, Image, ImageRequest, Requester

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130
CHECK_TIMEOUT = 20.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; kept separate so tests can read it."""
    parser = argparse.ArgumentParser(prog="sakaibot", description="AI image generation for chat.")
    parser.add_argument("--config", help="config file (default: $SAKAIBOT_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"sakaibot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make one image through the whole engine")
    gen.add_argument("prompt")
    gen.add_argument("--model", help="model name (default: the configured default)")
    gen.add_argument("--out", type=Path, help="file to write (default: sakaibot-<job>.<ext>)")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--ar", help="aspect ratio, e.g. 16:9")
    gen.add_argument("--no", dest="negative", help="negative prompt")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--raw", action="store_true", help="skip prompt enhancement")
    sub.add_parser("models", help="list the configured models")
    sub.add_parser("plugins", help="list plugins, loaded and failed")
    sub.add_parser("check", help="validate config and reach every configured backend")
    sub.add_parser("run", help="start the enabled platforms and serve until Ctrl-C")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sakaibot`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        settings = load_settings(args.config)
        quiet = args.command != "run" and settings.logging.level in ("DEBUG", "INFO")
        level = "DEBUG" if args.verbose else "WARNING" if quiet else settings.logging.level
        redactor = setup_logging(level, secrets_in(settings))
        engine = Engine.from_config(settings=settings)
        redactor.add(secrets_in(engine.model_settings, engine.platform_settings, engine.plugin_settings))
        return asyncio.run(COMMANDS[args.command](engine, args))
    except ConfigError as exc:
        err.print(exc.user_message, markup=False)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def cmd_generate(engine: Engine, args: argparse.Namespace) -> int:
    """Run one request through queue, enhancers, hooks and model; write the image."""
    err = Console(stderr=True)
    try:
        options = GenerationOptions(seed=args.seed, aspect_ratio=args.ar, negative_prompt=args.negative,
                                    steps=args.steps, enhance=False if args.raw else None)
    except ValueError as exc:
        err.print(f"Invalid option: {exc}", markup=False)
        return EXIT_FAILED
    request = ImageRequest(prompt=args.prompt, model=args.model, options=options,
                           requester=Requester(platform="cli", user_id="local", is_admin=True))
    async with engine:
        try:
            image, job = await _follow(engine, request, err)
        except SakaiError as exc:
            err.print(f"✗ {engine.render_error(None, exc)}", markup=False)
            return EXIT_FAILED
    out = args.out or Path(f"sakaibot-{job.id}.{image.extension}")
    await asyncio.to_thread(write_image, out, image)
    print(f"{out}\n{caption(job)}")
    return 0


async def _follow(engine: Engine, request: ImageRequest, err: Console) -> tuple[Image, Any]:
    handle = await engine.submit(request)
    with err.status("queued", spinner="dots") as status:
        async for event in handle:
            if not event.kind.final:
                status.update(status_text(event))
            if event.kind is EventKind.ENHANCED:
                err.print(f"✨ {event.message}", markup=False)
    return await handle.result(), handle.job


def write_image(path: Path, image: Image) -> None:
    """Write ``image``; re-encode with Pillow when the file name asks for another format."""
    wanted = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower())
    data = image.data
    if wanted and f".{image.extension}" not in _SUFFIXES[wanted]:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as picture:
            buffer = io.BytesIO()
            picture.convert("RGB" if wanted == "JPEG" else picture.mode).save(buffer, format=wanted)
            data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


_SUFFIXES = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "WEBP": (".webp",)}


async def cmd_models(engine: Engine, args: argparse.Namespace) -> int:
    """Print the configured models."""
    table = Table("model", "backend", "concurrency", "description", title="Models")
    default = engine.settings.engine.default_model
    for name, model in sorted(engine.models.items()):
        label = f"{name} (default)" if name == default else name
        table.add_row(label, engine.model_settings[name].backend, str(engine.concurrency(name)), model.description)
    Console().print(table)
    return 0


async def cmd_plugins(engine: Engine, args: argparse.Namespace) -> int:
    """Print every plugin with what it provides, or why it failed."""
    table = Table("plugin", "status", "source", "provides / error", title="Plugins")
    for record in sorted(engine.host.records.values(), key=lambda r: r.name):
        detail = record.error if record.status is PluginStatus.FAILED else ", ".join(record.provides)
        colour = "red" if record.status is PluginStatus.FAILED else "green"
        table.add_row(record.name, f"[{colour}]{record.status}[/]", record.source, detail or "-")
    Console().print(table)
    return 0


async def cmd_check(engine: Engine, args: argparse.Namespace) -> int:
    """Report each configured backend as reachable, bad credentials or unreachable."""
    failures = 0
    async with engine:
        for name, model in sorted(engine.models.items()):
            ok, text = await _check_one(model)
            failures += not ok
            print(f"{'✓' if ok else '✗'} {name}: {text}")
    print("config: ok" if not failures else f"{failures} backend(s) failed")
    return EXIT_FAILED if failures else 0


async def _check_one(model: Any) -> tuple[bool, str]:
    try:
        result = await asyncio.wait_for(model.check(), CHECK_TIMEOUT)
    except TimeoutError:
        return False, f"unreachable: no answer within {CHECK_TIMEOUT:g} s"
    except SakaiError as exc:
        return False, f"unreachable: {exc.user_message}"
    detail = f": {result.detail}" if result.detail else ""
    return result.status is CheckStatus.OK, f"{result.status}{detail}"


async def cmd_run(engine: Engine, args: argparse.Namespace) -> int:
    """Serve the enabled platforms until they finish, or Ctrl-C / SIGTERM (a second signal changes nothing)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await engine.start()
    serving = asyncio.create_task(engine.serve(), name="serve")
    stopping = asyncio.create_task(stop.wait(), name="signals")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            print("stopping: finishing running jobs, keeping waiting ones…", file=sys.stderr)
            serving.cancel()  # serve() then quiesces the engine while platforms can still deliver
        await asyncio.gather(serving, return_exceptions=True)
    finally:
        stopping.cancel()
        await engine.stop()
    return 0


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace], Awaitable[int]]] = {
    "generate": cmd_generate, "models": cmd_models, "plugins": cmd_plugins, "check": cmd_check, "run": cmd_run,
}


if __name__ == "__main__":
    sys.exit(main())
