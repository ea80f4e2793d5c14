"""Parsing chat commands, shared by every platform.

``/image=<model>=<prompt>`` as SakaiBot users type it, ``/image <prompt>`` with the default
model, Midjourney-style options (``--ar 16:9 --seed 42 --no text --steps 20 --raw --n 4
--strength 0.6``), ``/upscale [2-4]`` (on a picture: attached, or replied to), and
``/models``, ``/queue``, ``/cancel [job]``, ``/help``. Pictures themselves never travel in the
text: each platform finds them (an attachment, a photo replied to) and hands their bytes along.
Any text either parses to a command, is not a command for us (``None``), or raises
``InvalidCommand`` with a message for the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.engine.validation import parse_ratio
from core.errors import InvalidCommand, InvalidRequest
from core.types import MAX_SEED, GenerationOptions

IMAGE_USAGE = ("Use /image=<model>=<prompt> or /image <prompt> [--ar 16:9] [--seed 42] [--no text] [--steps N] [--raw] "
               "[--n 1-4] [--strength 0-1].")
UPSCALE_USAGE = "Use /upscale, or /upscale 2 (2 to 4 times), on a picture: attach it, or reply to it."
NAME_RE = re.compile(r"^/(?P<name>[A-Za-z_]+)(?:@(?P<bot>\w+))?")
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
OPTION_RE = re.compile(r"(?:^|(?<=\s))(?:--|\u2014|\u2013)(?P<name>[A-Za-z][\w-]*)")
NAMES = {"image": "image", "img": "image", "imagine": "image", "models": "models", "queue": "queue",
         "cancel": "cancel", "help": "help", "start": "help", "history": "history", "info": "info",
         "settings": "settings", "stats": "stats", "ban": "ban", "unban": "unban", "upscale": "upscale",
         "upscaled": "upscale"}
SETTING_KEYS = ("model", "aspect", "enhance", "file")
SETTINGS_USAGE = ("Use /settings to see yours, /settings <model|aspect|enhance|file> <value> to set one "
                  "(\"default\" clears it), /settings reset; admins: /settings chat|pin <key> <value>.")


@dataclass(frozen=True, slots=True)
class ImageCommand:
    """Make an image."""

    prompt: str
    model: str | None
    options: GenerationOptions


@dataclass(frozen=True, slots=True)
class UpscaleCommand:
    """Make a picture bigger: ``factor`` times (``None``: the upscaler's smallest), by ``model`` if named."""

    factor: int | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ModelsCommand:
    """List the models."""


@dataclass(frozen=True, slots=True)
class QueueCommand:
    """Show the queue."""


@dataclass(frozen=True, slots=True)
class CancelCommand:
    """Cancel a job (the newest of the user's when no id is given)."""

    job_id: str | None


@dataclass(frozen=True, slots=True)
class HelpCommand:
    """Explain the commands."""


@dataclass(frozen=True, slots=True)
class HistoryCommand:
    """The caller's last jobs."""

    limit: int | None


@dataclass(frozen=True, slots=True)
class InfoCommand:
    """Everything about one job."""

    job_id: str


@dataclass(frozen=True, slots=True)
class SettingsCommand:
    """Show or change defaults: ``scope`` is user, chat (admin) or pin (admin)."""

    scope: str = "user"
    key: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class StatsCommand:
    """Jobs, failures and latency per model (admins)."""


@dataclass(frozen=True, slots=True)
class BanCommand:
    """Ban or unban a user (admins)."""

    user: str
    banned: bool


Command = (ImageCommand | UpscaleCommand | ModelsCommand | QueueCommand | CancelCommand | HelpCommand | HistoryCommand
           | InfoCommand | SettingsCommand | StatsCommand | BanCommand)


def parse_command(text: str, bot_username: str | None = None) -> Command | None:
    """Parse one chat message; ``None`` when it is not a command for this bot."""
    stripped = text.lstrip()
    head = NAME_RE.match(stripped)
    if head is None:
        return None
    name = NAMES.get(head["name"].lower())
    if name is None or not _addressed_to_us(head["bot"], bot_username):
        return None
    rest = stripped[head.end():]
    if name == "image":
        return _parse_image(rest)
    if rest and not rest[0].isspace():
        return None
    words = rest.split()
    parser = ARGUMENT_PARSERS.get(name)
    if parser is not None:
        return parser(words)
    simple: dict[str, type[ModelsCommand | QueueCommand | HelpCommand | StatsCommand]] = {
        "models": ModelsCommand, "queue": QueueCommand, "help": HelpCommand, "stats": StatsCommand}
    return simple[name]()


def _addressed_to_us(mention: str | None, bot_username: str | None) -> bool:
    if mention is None or bot_username is None:
        return True
    return mention.lower() == bot_username.lstrip("@").lower()


def _parse_cancel(words: list[str]) -> CancelCommand:
    if len(words) > 1:
        raise InvalidCommand("Use /cancel to cancel your newest request, or /cancel <job id>.")
    return CancelCommand(words[0] if words else None)


def _parse_history(words: list[str]) -> HistoryCommand:
    if len(words) > 1 or (words and not (words[0].isdigit() and 1 <= int(words[0]) <= 50)):
        raise InvalidCommand("Use /history, or /history <1-50>.")
    return HistoryCommand(int(words[0]) if words else None)


def _parse_info(words: list[str]) -> InfoCommand:
    if len(words) != 1:
        raise InvalidCommand("Use /info <job id> (the id is under each image and in /history).")
    return InfoCommand(words[0].lstrip("#").lower())


def _parse_settings(words: list[str]) -> SettingsCommand:
    scope = "user"
    if words and words[0].lower() in ("chat", "pin"):
        scope, words = words[0].lower(), words[1:]
    if scope == "user" and [w.lower() for w in words] == ["reset"]:
        return SettingsCommand("user", "reset")
    if not words and scope == "user":
        return SettingsCommand()
    if len(words) != 2 or words[0].lower() not in SETTING_KEYS:
        raise InvalidCommand(SETTINGS_USAGE)
    return SettingsCommand(scope, words[0].lower(), words[1])


def _parse_upscale(words: list[str]) -> UpscaleCommand:
    """``/upscale``, ``/upscale 4``, ``/upscale x2`` or ``/upscale 2x``, optionally ``--model <name>``."""
    model = None
    if len(words) >= 2 and words[-2].lower() in ("--model", "\u2014model", "\u2013model"):
        model, words = _model("model", words[-1]), words[:-2]
    if not words:
        return UpscaleCommand(None, model)
    factor = words[0].lower().strip("x\u00d7")
    if len(words) > 1 or factor not in ("2", "3", "4"):
        raise InvalidCommand(UPSCALE_USAGE)
    return UpscaleCommand(int(factor), model)


def _parse_ban(banned: bool) -> Any:
    def parse(words: list[str]) -> BanCommand:
        if len(words) != 1:
            raise InvalidCommand(f"Use /{'ban' if banned else 'unban'} <user id> (or <platform>:<user id>).")
        return BanCommand(words[0], banned)
    return parse


ARGUMENT_PARSERS: dict[str, Any] = {"upscale": _parse_upscale,
                                    "cancel": _parse_cancel, "history": _parse_history, "info": _parse_info,
                                    "settings": _parse_settings, "ban": _parse_ban(True), "unban": _parse_ban(False)}


def _parse_image(rest: str) -> ImageCommand | None:
    model: str | None = None
    spaced = rest.lstrip(" \t")
    if spaced.startswith("="):  # /image=flux=a cat, and as typed on phones: /image = flux = a cat
        model, separator, rest = spaced[1:].partition("=")
        model = model.strip()
        if not separator or not MODEL_RE.match(model):
            raise InvalidCommand(f"That is not a model and a prompt. {IMAGE_USAGE}")
    elif rest and not rest[0].isspace():
        return None
    return image_command(rest, model)


def image_command(text: str, model: str | None = None) -> ImageCommand:
    """A prompt with its ``--options`` (as typed after ``/image``, or in a platform's prompt field)."""
    prompt, options = split_options(text)
    if not prompt:
        raise InvalidCommand(f"Describe the image you want. {IMAGE_USAGE}")
    chosen = options.pop("model", None)
    if model and chosen and chosen != model.lower():
        raise InvalidCommand(f"The model is named twice ({model} and {chosen}); name it once.")
    name = model or chosen
    return ImageCommand(prompt=prompt, model=name.lower() if name else None, options=_build_options(options))


def split_options(text: str) -> tuple[str, dict[str, Any]]:
    """The prompt before the first ``--option``, and the options' parsed values."""
    matches = list(OPTION_RE.finditer(text))
    prompt = text[: matches[0].start()] if matches else text
    values: dict[str, Any] = {}
    for n, match in enumerate(matches):
        end = matches[n + 1].start() if n + 1 < len(matches) else len(text)
        _take_option(match["name"].lower(), text[match.end():end].strip(), values)
    return prompt.strip(), values


def _take_option(name: str, value: str, into: dict[str, Any]) -> None:
    spec = OPTIONS.get(name)
    if spec is None:
        known = ", ".join(f"--{n}" for n in OPTION_HELP)
        raise InvalidCommand(f"Unknown option --{name}. Options: {known}.")
    key, parse = spec
    if key in into:
        raise InvalidCommand(f"--{name} is given twice; give it once.")
    into[key] = parse(name, value)


def _flag(name: str, value: str) -> bool:
    if value:
        raise InvalidCommand(f"--{name} takes no value, but got '{_short(value)}'. Put options after the prompt.")
    return True


def _integer(low: int, high: int) -> Any:
    def parse(name: str, value: str) -> int:
        if not re.fullmatch(r"\d{1,10}", value) or not low <= int(value) <= high:
            raise InvalidCommand(f"--{name} takes a whole number from {low} to {high}, not '{_short(value)}'.")
        return int(value)
    return parse


def _fraction(name: str, value: str) -> float:
    number = value.replace(",", ".")
    if not value or not re.fullmatch(r"(?:0|1)?(?:\.\d{1,4})?", number) or not 0 <= float(number) <= 1:
        raise InvalidCommand(f"--{name} takes a number from 0 to 1, like 0.6, not '{_short(value)}'.")
    return float(number)


def _ratio(name: str, value: str) -> str:
    if not re.fullmatch(r"\d{1,3}:\d{1,3}", value):
        raise InvalidCommand(f"--{name} takes a ratio like 16:9, not '{_short(value)}'.")
    try:
        parse_ratio(value)
    except InvalidRequest as exc:
        raise InvalidCommand(exc.user_message) from None
    return value


def _text(name: str, value: str) -> str:
    if not value:
        raise InvalidCommand(f"--{name} needs some text after it.")
    return value


def _model(name: str, value: str) -> str:
    if not MODEL_RE.match(value):
        raise InvalidCommand(f"--{name} takes a model name, not '{_short(value)}'. See /models.")
    return value.lower()


def _short(value: str, limit: int = 40) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


OPTIONS: dict[str, tuple[str, Any]] = {
    "ar": ("aspect_ratio", _ratio),
    "aspect": ("aspect_ratio", _ratio),
    "seed": ("seed", _integer(0, MAX_SEED)),
    "no": ("negative_prompt", _text),
    "steps": ("steps", _integer(1, 150)),
    "raw": ("raw", _flag),
    "file": ("as_file", _flag),
    "model": ("model", _model),
    "n": ("count", _integer(1, 4)),
    "strength": ("strength", _fraction),
}
OPTION_HELP = {
    "ar": "aspect ratio, e.g. --ar 16:9",
    "seed": "a number for repeatable results, e.g. --seed 42",
    "no": "what to leave out, e.g. --no text, watermark",
    "steps": "sampling steps, where the model takes them",
    "raw": "use the prompt exactly as written (no enhancement)",
    "file": "send the image as a file, uncompressed",
    "model": "the model, e.g. --model flux (same as /image=flux=...)",
    "n": "how many images at once, 1 to 4, e.g. --n 4",
    "strength": "with a picture: how far to move from it, 0 (keep) to 1 (ignore), e.g. --strength 0.6",
}


def _build_options(values: dict[str, Any]) -> GenerationOptions:
    raw = values.pop("raw", False)
    try:
        return GenerationOptions(**values, enhance=False if raw else None)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidCommand(f"Option {first['loc'][0]}: {first['msg']}.") from None
