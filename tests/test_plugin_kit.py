"""The plugin kit (core.testing) on every built-in backend, and a third-party package installed for real."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx
from PIL import Image as PILImage

import plugins.automatic1111
import plugins.cloudflare
import plugins.comfyui
import plugins.litellm_images
import plugins.preview
from core import Capabilities, GenerationRequest, Image, ImageModel, InvalidRequest, Progress, Size
from core.testing import ConformanceError, RecordingPlatform, check_model_conformance, running_engine
from tests.fakes.automatic1111 import OOM as A1111_OOM
from tests.fakes.automatic1111 import FakeAutomatic1111
from tests.fakes.comfyui import OOM as COMFY_OOM
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.openai_edits import openai_edits
from tests.fakes.workers_ai import ACCOUNT, FLUX, SDXL, TOKEN, FakeWorkersAI, Fault

# ------------------------------------------------------------------------------ conformance, per backend


async def test_preview_conforms():
    config = {"models": {"p": {"backend": "preview", "latency": 0.02, "area": 128 * 128}}}
    async with running_engine(config, [plugins.preview]) as engine:
        report = await check_model_conformance(engine.models["p"])
    assert report.fractions and report.cancelled_while_running


@pytest.fixture
async def workers_ai(monkeypatch) -> AsyncIterator[FakeWorkersAI]:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    fake = await FakeWorkersAI().start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize("model_id", [FLUX, SDXL])
async def test_cloudflare_conforms(workers_ai, model_id):
    config = {"models": {"cf": {"backend": "cloudflare", "model": model_id, "base_url": workers_ai.base_url}}}
    faults = [lambda: workers_ai.fail_next(Fault(500, body=b"<html>oops</html>", content_type="text/html")),
              lambda: workers_ai.fail_next(Fault(cut_connection=True)),
              lambda: workers_ai.fail_next(Fault(401, 10000, "Authentication error"))]
    async with running_engine(config, [plugins.cloudflare]) as engine:
        # The fake answers with small pictures (to keep the suite fast), so the size itself is not compared.
        await check_model_conformance(engine.models["cf"], faults=faults, exact_size=False,
                                      before_cancel=lambda: workers_ai.fail_next(Fault(delay=0.5)))


async def test_cloudflare_worker_conforms(workers_ai):
    config = {"models": {"w": {"backend": "cloudflare-worker", "url": f"{workers_ai.root}/worker/flux"}}}
    faults = [lambda: workers_ai.fail_next(Fault(502, body=b"bad gateway", content_type="text/plain")),
              lambda: workers_ai.fail_next(Fault(cut_connection=True))]
    async with running_engine(config, [plugins.cloudflare]) as engine:
        await check_model_conformance(engine.models["w"], faults=faults, exact_size=False,
                                      before_cancel=lambda: workers_ai.fail_next(Fault(delay=0.5)))


class OpenAIImages:
    """A respx side effect that answers like OpenAI's images endpoint, at the requested size."""

    def __init__(self) -> None:
        self.next: list[httpx.Response] = []
        self.slow = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.slow:
            await asyncio.sleep(30)
        if self.next:
            return self.next.pop(0)
        width, height = (int(v) for v in json.loads(request.content)["size"].split("x"))
        buffer = io.BytesIO()
        PILImage.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG", compress_level=1)
        return httpx.Response(200, json={"created": 1, "data": [{"b64_json": base64.b64encode(buffer.getvalue())
                                                                 .decode()}]})


async def test_litellm_images_conforms(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-secret-key")
    api = OpenAIImages()
    error = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    config = {"models": {"gpt": {"backend": "litellm", "model": "openai/gpt-image-1", "api_base": "http://127.0.0.1:9/v1",
                                 "api_key_env": "TEST_OPENAI_KEY", "sizes": ["1024x1024", "1536x1024"]}}}
    faults = [lambda: api.next.append(httpx.Response(401, json=error)),
              lambda: api.next.append(httpx.Response(400, json=error))]
    with respx.mock:
        respx.post("http://127.0.0.1:9/v1/images/generations").mock(side_effect=api)
        respx.post("http://127.0.0.1:9/v1/images/edits").mock(side_effect=openai_edits)  # gpt-image edits
        async with running_engine(config, [plugins.litellm_images]) as engine:
            await check_model_conformance(engine.models["gpt"], faults=faults, sizes=2,
                                          before_cancel=lambda: setattr(api, "slow", True))


async def test_automatic1111_conforms():
    server = await FakeAutomatic1111(step_time=0.002).start()
    config = {"models": {"sd": {"backend": "automatic1111", "url": server.url, "poll_interval": 0.01,
                                "area": 256 * 256, "max_steps": 30}}}
    faults = [lambda: server.fail_next.append(A1111_OOM),
              lambda: server.fail_next.append((422, {"detail": [{"loc": ["body", "seed"], "msg": "bad"}]})),
              lambda: setattr(server, "auth", True)]
    try:
        async with running_engine(config, [plugins.automatic1111]) as engine:
            report = await check_model_conformance(engine.models["sd"], faults=faults,
                                                   before_cancel=lambda: _slow_a1111(server))
    finally:
        await server.stop()
    assert report.fractions and report.previews and report.cancelled_while_running
    assert server.interrupts  # the cancel reached the server


def _slow_a1111(server: FakeAutomatic1111) -> None:
    server.auth, server.step_time = False, 0.05


async def test_comfyui_conforms():
    server = await FakeComfyUI(step_time=0.002).start()
    config = {"models": {"c": {"backend": "comfyui", "url": server.url, "checkpoint": "sd_xl_base_1.0.safetensors",
                               "area": 256 * 256, "max_steps": 30}}}
    faults = [lambda: setattr(server, "fail_at", dict(COMFY_OOM)),
              lambda: setattr(server, "fail_at", {"node_type": "VAEDecode", "exception_type": "RuntimeError",
                                                  "exception_message": "bad"})]
    try:
        async with running_engine(config, [plugins.comfyui]) as engine:
            report = await check_model_conformance(engine.models["c"], faults=faults,
                                                   before_cancel=lambda: setattr(server, "step_time", 0.05))
    finally:
        await server.stop()
    assert report.fractions and report.previews and report.cancelled_while_running and server.interrupts


# ------------------------------------------------------------------------ the check catches broken models


class Broken(ImageModel):
    """A model that breaks the contract in one chosen way."""

    def __init__(self, fault: str) -> None:
        self.name, self.description, self.fault = f"broken-{fault}", "broken", fault
        self.capabilities = Capabilities(sizes=(Size(64, 64), Size(96, 64)), max_steps=4, default_steps=2)

    async def generate(self, request: GenerationRequest, progress: Progress) -> Image:
        if self.fault == "backwards":
            await progress(0.6)
            await progress(0.3)
        if self.fault == "leaky":
            raise httpx.ConnectError("refused")
        if self.fault == "stubborn" and request.seed == 54321:  # the check's cancellation call
            await _ignore_cancel(0.2)
        size = (64, 64) if self.fault == "one-size" else (request.size.width, request.size.height)
        buffer = io.BytesIO()
        PILImage.new("RGB", size).save(buffer, format="PNG")
        mime = "image/jpeg" if self.fault == "mislabelled" else "image/png"
        return Image(buffer.getvalue(), mime, *size, seed=request.seed)


async def _ignore_cancel(seconds: float) -> None:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)


@pytest.mark.parametrize(("fault", "found"), [
    ("backwards", "progress went down"),
    ("one-size", "asked for 96x64 but got 64x64"),
    ("mislabelled", "declared image/jpeg but the bytes are image/png"),
    ("leaky", "a request the capabilities allow failed: ConnectError"),
    ("stubborn", "still running"),
])
async def test_the_check_names_what_a_broken_model_does(fault, found):
    with pytest.raises(ConformanceError, match=found):
        await check_model_conformance(Broken(fault), cancel_after=0.05, cancel_within=0.1)
    await asyncio.sleep(0.45 if fault == "stubborn" else 0)  # let the stubborn call end inside this test


async def test_a_fault_that_leaks_an_http_error_is_reported():
    model = Broken("fine")
    original = model.generate
    leaks: list[bool] = []

    async def generate(request: GenerationRequest, progress: Progress) -> Image:
        if leaks and leaks.pop():
            raise httpx.ReadTimeout("slow")
        return await original(request, progress)

    model.generate = generate  # type: ignore[method-assign]
    with pytest.raises(ConformanceError, match=r"raised httpx.ReadTimeout, not a core.errors type"):
        await check_model_conformance(model, faults=[lambda: leaks.append(True)])


# ---------------------------------------------------------------------------------- recording platform


async def test_recording_platform_records_statuses_previews_and_the_photo():
    server = await FakeComfyUI(step_time=0.005).start()
    config = {"models": {"c": {"backend": "comfyui", "url": server.url, "checkpoint": "sd_xl_base_1.0.safetensors",
                               "area": 256 * 256}}}
    platform = RecordingPlatform()
    try:
        async with running_engine(config, [plugins.comfyui]) as engine:
            await platform.start(engine)
            await platform.image("a red fox", steps=6)
            await platform.wait_closed()
            await platform.stop()
    finally:
        await server.stop()
    kinds = [item.kind for item in platform.sent]
    assert kinds[0] == "status" and kinds[-1] == "photo" and "preview" in kinds
    assert platform.of_kind("photo")[0].data.startswith(b"\x89PNG")


async def test_recording_platform_records_the_error_a_user_would_see():
    server = await FakeComfyUI(step_time=0.001, fail_at=dict(COMFY_OOM)).start()
    config = {"models": {"c": {"backend": "comfyui", "url": server.url, "checkpoint": "sd_xl_base_1.0.safetensors",
                               "area": 256 * 256, "max_attempts": 1}}}
    platform = RecordingPlatform()
    try:
        async with running_engine(config, [plugins.comfyui]) as engine:
            await platform.start(engine)
            with pytest.raises(InvalidRequest, match=r"at most 60 steps"):
                await platform.image("a fox", steps=61)  # refused before queueing: nothing is sent
            await platform.image("a fox")
            await platform.wait_closed()
    finally:
        await server.stop()
    assert platform.sent[-1].kind == "error" and "ran out of GPU memory" in platform.sent[-1].text
    assert not platform.of_kind("photo")


# --------------------------------------------------------------- a third-party package, installed for real

SAMPLE = Path(__file__).parent / "sample_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample package installed once per session into its own folder, as pip would for a user."""
    root = tmp_path_factory.mktemp("sample")
    source = shutil.copytree(SAMPLE, root / "src")  # building in place would leave build/ in the repository
    target = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return target


def sakaibot(site: Path, workdir: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``sakaibot`` command in a fresh process that sees the installed package."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAKAIBOT_")}
    environ.update(PYTHONPATH=os.pathsep.join([str(site), str(Path(__file__).parents[1])]), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "core.cli", "--config", str(workdir / "config.toml"), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=workdir, env=environ,
                          check=False)


def write_config(workdir: Path, model: str) -> None:
    (workdir / "config.toml").write_text(f"""
[engine]
default_model = "x"
rate_limit = "off"

[models.x]
{model}

[platforms.console]
enabled = true
output_dir = "{workdir / 'out'}"
""", encoding="utf-8")


def test_sample_plugin_is_discovered_configured_listed_and_serves_image(installed: Path, tmp_path: Path):
    write_config(tmp_path, 'backend = "sample"\ncolour = "#228833"\nsize = 128')
    models_out = sakaibot(installed, tmp_path, "models")  # only a discovered, registered backend gets this far
    assert re.search(r"x \(default\)\s.*sample\s.*#228833 swatches", models_out.stdout), models_out.stdout
    served = sakaibot(installed, tmp_path, "run", stdin="/image=x=a cat\n")
    assert served.returncode == 0, served.stderr
    saved = list((tmp_path / "out").glob("*.png"))
    assert len(saved) == 1
    with PILImage.open(saved[0]) as picture:
        assert picture.size == (128, 128) and picture.getpixel((5, 5)) == (0x22, 0x88, 0x33)
        assert picture.text["prompt"] == "a cat"


def test_a_broken_sample_plugin_is_reported_and_the_rest_works(installed: Path, tmp_path: Path):
    write_config(tmp_path, 'backend = "preview"')
    listed = sakaibot(installed, tmp_path, "plugins", SAKAIBOT_SAMPLE_BROKEN="1")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"sample\s.*failed.*RuntimeError: the sample plugin is broken on purpose", listed.stdout)
    assert "sakaibot-sample-plugin" in listed.stdout  # found through its package's entry point, then reported
    assert re.search(r"preview\s.*loaded", listed.stdout)
    served = sakaibot(installed, tmp_path, "run", stdin="/image=x=a cat\n", SAKAIBOT_SAMPLE_BROKEN="1")
    assert served.returncode == 0, served.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 1
