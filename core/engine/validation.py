"""Checking a request against its model and turning it into the values the model receives."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping

from core.errors import InvalidRequest
from core.interfaces import Capabilities, InputSupport
from core.types import MAX_SEED, GenerationOptions, GenerationRequest, ImageRequest, InputImage, Size

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


def choose_size(caps: Capabilities, options: GenerationOptions, image: InputImage | None = None) -> Size:
    """The supported size nearest to what was asked: an exact size, a ratio, the input image's shape, or the default."""
    if options.aspect_ratio is None and image is not None and not (options.width and options.height):
        ratio = image.width / image.height
        return min(caps.sizes, key=lambda s: (abs(s.ratio - ratio) / ratio, -s.width * s.height))
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


def check_inputs(request: ImageRequest, model: str, models: Mapping[str, Capabilities]) -> None:
    """Refuse what ``model`` cannot do with the request's images, naming the models that can; cheap, no decoding.

    Runs before any image is decoded, so a picture sent to a text-only model costs nothing.
    """
    caps, options = models[model], request.options
    if options.upscale is not None:
        _check_upscale(request, model, models)
        return
    if not request.images:
        if request.mask is not None or options.strength is not None:
            raise InvalidRequest("A mask or --strength needs a picture to work on. Attach or reply to one.")
        return
    inputs = caps.inputs
    if inputs is None:
        raise InvalidRequest(f"The {model} model makes images from text only; it cannot use the picture you "
                             f"sent. {_able(models, lambda c: c.inputs is not None)}")
    if len(request.images) > inputs.max_images:
        raise InvalidRequest(f"The {model} model takes at most {inputs.max_images} "
                             f"picture{'s' if inputs.max_images > 1 else ''}; you sent {len(request.images)}.")
    if request.mask is not None and not inputs.masks:
        raise InvalidRequest(f"The {model} model does not take a mask. "
                             f"{_able(models, lambda c: c.inputs is not None and c.inputs.masks)}")
    if options.strength is not None and not inputs.strength:
        raise InvalidRequest(f"The {model} model does not take --strength; leave it out.")


def _check_upscale(request: ImageRequest, model: str, models: Mapping[str, Capabilities]) -> None:
    factor, factors = request.options.upscale, models[model].upscale_factors
    if not factors:
        names = ", ".join(f"{name} ({'x, '.join(map(str, caps.upscale_factors))}x)"
                          for name, caps in sorted(models.items()) if caps.upscale_factors)
        able = f"Models that can: {names}." if names else "No model here can upscale."
        raise InvalidRequest(f"The {model} model cannot upscale. {able}")
    if factor not in factors:
        offered = " or ".join(f"{f}x" for f in factors)
        raise InvalidRequest(f"The {model} model upscales by {offered}, not {factor}x.")
    if len(request.images) != 1 or request.mask is not None:
        raise InvalidRequest("An upscale takes exactly one picture (and no mask). Attach or reply to one.")
    if request.options.count != 1 or request.options.strength is not None:
        raise InvalidRequest("An upscale makes one image from the picture; leave out --n and --strength.")


def _able(models: Mapping[str, Capabilities], can: Callable[[Capabilities], bool]) -> str:
    names = sorted(name for name, caps in models.items() if can(caps))
    return f"Models that can: {', '.join(names)}." if names else "No model here can."


def input_limits(caps: Capabilities) -> InputSupport:
    """The input limits a model declares; an upscaler without ``inputs`` gets the defaults."""
    return caps.inputs or InputSupport()


def resolve(request: ImageRequest, caps: Capabilities, rng: random.Random | None = None, *,
            images: tuple[InputImage, ...] = (), mask: InputImage | None = None) -> GenerationRequest:
    """Validate ``request`` for a model with ``caps``; pick a seed if the user gave none.

    ``images`` and ``mask`` are the request's pictures once cleaned (``core.engine.intake``).
    """
    options = request.options
    upscale_only = options.upscale is not None and not request.prompt.strip()  # an upscale needs no words
    prompt = "" if upscale_only else check_prompt(request.prompt, caps.max_prompt_length)
    negative = _negative(caps, options.negative_prompt)
    seed = options.seed
    if not caps.supports_seed:
        if seed is not None:
            raise InvalidRequest("This model does not take a seed; leave out --seed.")
    elif seed is None:
        seed = (rng or _RNG).randint(0, MAX_SEED)
    first = images[0] if images else None
    size = choose_size(caps, options, first)
    if options.upscale is not None and first is not None:
        size = Size(first.width * options.upscale, first.height * options.upscale)
    strength = options.strength if caps.inputs is not None and caps.inputs.strength and images else None
    if mask is not None and first is not None and (mask.width, mask.height) != (first.width, first.height):
        raise InvalidRequest(f"The mask is {mask.width}x{mask.height} but the picture is "
                             f"{first.width}x{first.height}; they must be the same size.")
    return GenerationRequest(prompt=prompt, size=size, seed=seed,
                             negative_prompt=negative, steps=check_steps(caps, options.steps),
                             original_prompt=prompt, images=images, mask=mask, strength=strength,
                             upscale=options.upscale)


def _negative(caps: Capabilities, negative: str | None) -> str | None:
    if negative is None or not negative.strip():
        return None
    if not caps.supports_negative_prompt:
        raise InvalidRequest("This model does not take a negative prompt; leave out --no.")
    return check_prompt(negative, caps.max_prompt_length, what="negative prompt")


_RNG = random.SystemRandom()
