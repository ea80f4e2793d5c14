"""Checking a request against its model and turning it into the values the model receives."""

from __future__ import annotations

import math
import random
import re

from core.errors import InvalidRequest
from core.interfaces import Capabilities
from core.types import MAX_SEED, GenerationOptions, GenerationRequest, ImageRequest, Size

# Unicode categories Cc and Cs, except newline and tab, which multi-line prompts need.
CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_RATIO = 4.0
RATIO_TOLERANCE = 0.25  # nearest supported ratio may differ this much before we refuse


def check_prompt(prompt: str, max_length: int, what: str = "prompt") -> str:
    """Return the stripped prompt, or raise if it is empty, too long or has control characters."""
    text = prompt.replace("\r\n", "\n").strip()
    if not text:
        raise InvalidRequest(f"The {what} is empty. Describe the image you want.")
    if len(text) > max_length:
        raise InvalidRequest(f"The {what} is {len(text)} characters long; this model takes at most {max_length}.")
    bad = CONTROL_RE.search(text)
    if bad is not None:
        code = ord(bad.group())
        raise InvalidRequest(f"The {what} contains a control character (U+{code:04X}). Remove it and try again.")
    return text


def parse_ratio(text: str) -> float:
    """``"16:9"`` as a float, within 1:4 and 4:1."""
    left, _, right = text.partition(":")
    try:
        w, h = int(left), int(right)
    except ValueError:
        raise InvalidRequest(f"Aspect ratio '{text}' is not like 16:9.") from None
    if w <= 0 or h <= 0:
        raise InvalidRequest(f"Aspect ratio '{text}' must use positive numbers.")
    ratio = w / h
    if not 1 / MAX_RATIO <= ratio <= MAX_RATIO:
        raise InvalidRequest(f"Aspect ratio '{text}' is too extreme; use between 1:4 and 4:1.")
    return ratio


def choose_size(caps: Capabilities, options: GenerationOptions) -> Size:
    """The supported size nearest to what was asked: an exact size, a ratio, or the default."""
    if options.width and options.height:
        wanted = Size(options.width, options.height)
        if wanted in caps.sizes:
            return wanted
        supported = ", ".join(str(s) for s in caps.sizes)
        raise InvalidRequest(f"Size {wanted} is not supported by this model. Supported: {supported}.")
    if options.aspect_ratio is None:
        return caps.sizes[0]
    ratio = parse_ratio(options.aspect_ratio)
    nearest = min(caps.sizes, key=lambda s: abs(s.ratio - ratio) / ratio)
    if abs(nearest.ratio - ratio) / ratio > RATIO_TOLERANCE:
        offered = ", ".join(sorted({_ratio_label(s) for s in caps.sizes}))
        raise InvalidRequest(f"This model cannot make {options.aspect_ratio} images; it makes {offered}.")
    return nearest


def _ratio_label(size: Size) -> str:
    divisor = math.gcd(size.width, size.height)
    return f"{size.width // divisor}:{size.height // divisor} ({size})"


def check_steps(caps: Capabilities, steps: int | None) -> int | None:
    """The step count to send, or raise if the model does not take that many."""
    if steps is None:
        return caps.default_steps
    if caps.max_steps is None:
        raise InvalidRequest("This model does not take a step count; leave out --steps.")
    if steps > caps.max_steps:
        raise InvalidRequest(f"This model takes at most {caps.max_steps} steps; you asked for {steps}.")
    return steps


def resolve(request: ImageRequest, caps: Capabilities, rng: random.Random | None = None) -> GenerationRequest:
    """Validate ``request`` for a model with ``caps``; pick a seed if the user gave none."""
    options = request.options
    prompt = check_prompt(request.prompt, caps.max_prompt_length)
    negative = _negative(caps, options.negative_prompt)
    seed = options.seed
    if not caps.supports_seed:
        if seed is not None:
            raise InvalidRequest("This model does not take a seed; leave out --seed.")
    elif seed is None:
        seed = (rng or _RNG).randint(0, MAX_SEED)
    return GenerationRequest(prompt=prompt, size=choose_size(caps, options), seed=seed,
                             negative_prompt=negative, steps=check_steps(caps, options.steps),
                             original_prompt=prompt)


def _negative(caps: Capabilities, negative: str | None) -> str | None:
    if negative is None or not negative.strip():
        return None
    if not caps.supports_negative_prompt:
        raise InvalidRequest("This model does not take a negative prompt; leave out --no.")
    return check_prompt(negative, caps.max_prompt_length, what="negative prompt")


_RNG = random.SystemRandom()
