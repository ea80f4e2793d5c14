"""The shared command parser: examples, then properties over any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.chat.commands import (
    CancelCommand,
    HelpCommand,
    ImageCommand,
    InfoCommand,
    ModelsCommand,
    QueueCommand,
    UpscaleCommand,
    image_command,
    parse_command,
)
from core.errors import InvalidCommand, UserError


def test_seed_syntax_with_model_and_multiline_prompt():
    command = parse_command("/image=flux=a lighthouse at dusk\nwith fog = mystery")
    assert command == ImageCommand("a lighthouse at dusk\nwith fog = mystery", "flux", command.options)
    assert command.options.enhance is None  # not said: the user's setting decides


def test_default_model_form_with_every_option():
    command = parse_command("/image a cat in a spacesuit --ar 16:9 --seed 42 --no text, blur --steps 20 --raw --file")
    assert command.prompt == "a cat in a spacesuit" and command.model is None
    options = command.options
    assert (options.aspect_ratio, options.seed, options.negative_prompt) == ("16:9", 42, "text, blur")
    assert options.steps == 20
    assert options.enhance is False and options.as_file is True


def test_phone_dashes_count_as_options():
    assert parse_command("/image a cat —ar 3:2").options.aspect_ratio == "3:2"


def test_model_option_and_case():
    assert parse_command("/image a cat --model FLUX").model == "flux"
    assert parse_command("/image=SDXL=a cat").model == "sdxl"
    with pytest.raises(InvalidCommand, match="named twice"):
        parse_command("/image=sdxl=a cat --model flux")


@pytest.mark.parametrize(("text", "expected"), [
    ("/models", ModelsCommand()), ("/queue", QueueCommand()), ("/help", HelpCommand()), ("/start", HelpCommand()),
    ("/cancel", CancelCommand(None)), ("/cancel 3f2a", CancelCommand("3f2a")), ("  /queue  ", QueueCommand()),
    ("/image@SakaiBot=flux=cat", ImageCommand("cat", "flux", parse_command("/image cat").options)),
])
def test_other_commands(text, expected):
    assert parse_command(text, bot_username="SakaiBot") == expected


@pytest.mark.parametrize("text", ["hello", "", "/unknown", "/imagex=a=b", "/image2 cat", "/queued",
                                  "/image@OtherBot=flux=cat", "image=flux=cat", "/models@OtherBot"])
def test_not_for_us(text):
    assert parse_command(text, bot_username="SakaiBot") is None


@pytest.mark.parametrize(("text", "message"), [
    ("/image", "Describe the image"),
    ("/image=flux", "not a model and a prompt"),
    ("/image=flux=", "Describe the image"),
    ("/image==cat", "not a model and a prompt"),
    ("/image cat --seed -1", "whole number from 0"),
    ("/image cat --seed 99999999999", "whole number from 0"),
    ("/image cat --ar wide", "ratio like 16:9"),
    ("/image cat --ar 10:1", "too extreme"),
    ("/image cat --ar 0:1", "positive"),
    ("/image cat --no", "needs some text"),
    ("/image cat --raw please", "takes no value"),
    ("/image cat --seed 1 --seed 2", "given twice"),
    ("/image cat --upscale 2", "Unknown option --upscale"),
    ("/image cat --steps 0", "whole number from 1 to 150"),
    ("/cancel a b", "/cancel <job id>"),
    ("/image --ar 1:1", "Describe the image"),
])
def test_bad_input_gets_a_clear_user_error(text, message):
    with pytest.raises(InvalidCommand, match=message):
        parse_command(text)


@given(st.text())
def test_any_text_parses_or_raises_a_user_error(text):
    try:
        parse_command(text)
    except UserError as exc:
        assert exc.user_message and "Traceback" not in exc.user_message


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300).map(lambda t: "/image" + t))
def test_any_image_command_parses_or_raises_a_user_error(text):
    try:
        result = parse_command(text)
    except UserError:
        return
    assert result is None or isinstance(result, ImageCommand)


words = st.text(alphabet=st.characters(categories=("L", "N"), include_characters=" ,.'!\n"), min_size=1,
                max_size=80).filter(lambda s: s.strip())
models = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True)


@given(model=models, prompt=words, seed=st.none() | st.integers(0, 2**32 - 1),
       ratio=st.none() | st.sampled_from(["1:1", "16:9", "9:16", "4:3"]), negative=st.none() | words,
       raw=st.booleans())
def test_round_trip(model, prompt, seed, ratio, negative, raw):
    text = f"/image={model}={prompt}"
    if seed is not None:
        text += f" --seed {seed}"
    if ratio:
        text += f" --ar {ratio}"
    if negative:
        text += f" --no {negative}"
    if raw:
        text += " --raw"
    command = parse_command(text)
    assert command.model == model and command.prompt == prompt.strip()
    assert command.options.seed == seed and command.options.aspect_ratio == ratio
    assert command.options.negative_prompt == (negative.strip() if negative else None)
    assert command.options.enhance is (False if raw else None)


@pytest.mark.parametrize("text", ["/image = flux = a cat", "/image =flux= a cat", "/image= flux =a cat",
                                  "/image\t=\tflux\t=a cat"])
def test_spaces_around_the_equals_signs_are_accepted(text):
    command = parse_command(text)
    assert (command.model, command.prompt) == ("flux", "a cat")


def test_info_takes_the_id_as_printed_under_an_image():
    assert parse_command("/info #3F2A9C") == InfoCommand("3f2a9c")


def test_a_prompt_field_with_flags_parses_like_a_command():
    command = image_command("a cat --ar 16:9 --seed 9 --model Flux")
    assert (command.prompt, command.model, command.options.aspect_ratio, command.options.seed) == \
        ("a cat", "flux", "16:9", 9)
    with pytest.raises(InvalidCommand, match="Describe the image"):
        image_command("--ar 16:9")


spaces = st.text(alphabet=" \t", max_size=3)


@given(before=spaces, model=models, around=spaces, after=spaces, prompt=words)
def test_spaced_round_trip(before, model, around, after, prompt):
    command = parse_command(f"/image{before}={around}{model}{after}={prompt}")
    assert command.model == model and command.prompt == prompt.strip()


# ------------------------------------------------------------------ pictures: --n, --strength, /upscale
@given(prompt=words, count=st.integers(1, 4), strength=st.none() | st.integers(0, 10_000).map(lambda n: n / 10_000),
       comma=st.booleans())
def test_count_and_strength_round_trip(prompt, count, strength, comma):
    text = f"/image {prompt} --n {count}"
    if strength is not None:
        typed = f"{strength:.4f}".rstrip("0").rstrip(".") or "0"
        text += f" --strength {typed.replace('.', ',') if comma else typed}"
    command = parse_command(text)
    assert command.prompt == prompt.strip() and command.options.count == count
    assert command.options.strength == (None if strength is None else pytest.approx(strength, abs=1e-4))


@given(st.one_of(st.integers(), st.text(max_size=8)))
def test_count_outside_one_to_four_is_refused_with_its_range(value):
    text = f"/image a cat --n {value}"
    if str(value).strip() in {"1", "2", "3", "4"}:
        assert 1 <= parse_command(text).options.count <= 4
        return
    with pytest.raises(InvalidCommand):
        parse_command(text)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
def test_strength_is_between_zero_and_one_or_refused(value):
    try:
        strength = parse_command(f"/image a cat --strength {value}").options.strength
    except InvalidCommand as exc:
        assert "--strength takes a number from 0 to 1" in exc.user_message or "needs" in exc.user_message \
            or "Unknown option" in exc.user_message or "given twice" in exc.user_message
        return
    assert strength is not None and 0 <= strength <= 1


@pytest.mark.parametrize(("text", "expected"), [
    ("/upscale", UpscaleCommand()), ("/upscale 4", UpscaleCommand(4)), ("/upscale x2", UpscaleCommand(2)),
    ("/upscale 3x", UpscaleCommand(3)), ("/upscale --model big", UpscaleCommand(None, "big")),
    ("/upscale 2 --model Big", UpscaleCommand(2, "big")), ("/upscaled", UpscaleCommand()),
])
def test_upscale_command(text, expected):
    assert parse_command(text) == expected


@given(st.text(max_size=20))
def test_any_upscale_argument_parses_or_says_how(rest):
    try:
        command = parse_command(f"/upscale {rest}")
    except InvalidCommand as exc:
        assert "/upscale" in exc.user_message or "--model takes a model name" in exc.user_message
        return
    assert isinstance(command, UpscaleCommand) and command.factor in (None, 2, 3, 4)


@pytest.mark.parametrize(("text", "message"), [
    ("/image cat --n 0", "whole number from 1 to 4"), ("/image cat --n 5", "whole number from 1 to 4"),
    ("/image cat --strength 1.5", "from 0 to 1"), ("/image cat --strength -0.1", "from 0 to 1"),
    ("/image cat --strength", "from 0 to 1"), ("/upscale 5", "2 to 4 times"), ("/upscale 2 3", "2 to 4 times"),
])
def test_picture_option_mistakes(text, message):
    with pytest.raises(InvalidCommand, match=message):
        parse_command(text)
