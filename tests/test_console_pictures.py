"""``--image PATH`` on the console, and several images saved from one request."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core import Image
from core.errors import InvalidCommand
from core.testing import running_engine
from core.types import GenerationRequest, ImageRequest, Job, Requester, Size
from platforms.console.pictures import take_image
from platforms.console.platform import ConsolePlatform, ConsoleSettings, ConsoleTarget
from tests.fakes.picture_model import BACKEND, Admitted, pixels, png

INPUT = png(30, (96, 80))
CONFIG = {"engine": {"default_model": "pic"}, "models": {"pic": {"backend": BACKEND}}}


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line + "\n"


async def _console(tmp_path: Path, admitted: Admitted, *lines: str) -> str:
    out = io.StringIO()
    console = ConsolePlatform(ConsoleSettings(enabled=True, output_dir=tmp_path / "out"), lines=_lines(*lines),
                              out=out)
    async with running_engine(CONFIG, [admitted]) as engine:
        await engine.serve([console])
    return out.getvalue()


@pytest.mark.parametrize(("line", "rest", "path"), [
    ("/image=pic=make it red --image in.png --n 2", "/image=pic=make it red  --n 2", "in.png"),
    ('/image make it red --image "my photos/in.png"', "/image make it red", "my photos/in.png"),
    ("/upscale 2 --image in.png", "/upscale 2", "in.png"),
    ("/image a path--image is not an option", "/image a path--image is not an option", None),
])
def test_image_option_is_taken_out_of_the_line(line, rest, path):
    assert take_image(line) == (rest, Path(path) if path else None)


@pytest.mark.parametrize(("line", "message"), [
    ("/image cat --image", "--image needs a file"),
    ("/image cat --image a.png --image b.png", "given twice"),
])
def test_image_option_mistakes(line, message):
    with pytest.raises(InvalidCommand, match=message):
        take_image(line)


async def test_console_image_path_is_the_input(tmp_path):
    (tmp_path / "in.png").write_bytes(INPUT)
    admitted = Admitted()
    text = await _console(tmp_path, admitted, f"/image=pic=make it red --image {tmp_path / 'in.png'} --strength 0.5",
                          f"/upscale --image {tmp_path / 'in.png'}", f"/image=pic=x --image {tmp_path / 'nope.png'}",
                          f"/models --image {tmp_path / 'in.png'}")
    (edit, _), (upscale, model) = admitted.requests
    assert pixels(edit.images[0]) == pixels(INPUT) and edit.options.strength == 0.5
    assert model == "pic" and upscale.options.upscale == 2 and pixels(upscale.images[0]) == pixels(INPUT)
    assert f"There is no picture at {tmp_path / 'nope.png'}." in text
    assert "--image goes with /image or /upscale." in text
    assert text.count("✅ Done") == 2


async def test_several_images_are_saved_one_file_each(tmp_path):
    request = ImageRequest(prompt="four", model="pic", requester=Requester(platform="console", user_id="u",
                                                                           chat_id="console"))
    job = Job(id="abc123def456", request=request, model="pic",
              generation=GenerationRequest(prompt="four", size=Size(64, 64), seed=1, negative_prompt=None, steps=None,
                                           original_prompt="four"))
    job.results = [Image(png(n * 50), "image/png", 64, 64, seed=1 + n) for n in range(4)]
    said: list[str] = []
    await ConsoleTarget(said.append, tmp_path).deliver(job)
    saved = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in saved] == [f"abc123def456-{n}.png" for n in (1, 2, 3, 4)]
    assert [p.read_bytes() for p in saved] == [image.data for image in job.results]
    assert "4 images · seeds 1, 2, 3, 4" in said[0]
