"""Cloudflare backends against a fake Workers AI on 127.0.0.1 (real HTTP) and respx."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from core import (
    BackendAuthError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    CheckStatus,
    ContentRejected,
    InvalidImage,
    InvalidRequest,
    QuotaExceeded,
)
from core.config import EngineSettings, Settings
from core.engine import Engine
from core.errors import ConfigError
from core.hooks.host import create_plugin_host
from tests.fakes.workers_ai import ACCOUNT, FLUX, FLUX2, SDXL, TOKEN, FakeWorkersAI, Fault, picture
from tests.utils import request


@pytest.fixture
async def server() -> AsyncIterator[FakeWorkersAI]:
    fake = await FakeWorkersAI().start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)


def cf_settings(base_url: str, **extra_models: dict[str, Any]) -> Settings:
    models = {
        "flux": {"backend": "cloudflare", "model": FLUX, "base_url": base_url},
        "sdxl": {"backend": "cloudflare", "model": SDXL, "base_url": base_url},
        "klein": {"backend": "cloudflare", "model": FLUX2, "base_url": base_url},
        **extra_models,
    }
    return Settings(engine=EngineSettings(default_model="flux", rate_limit=None, max_pending_per_user=100),
                    models=models, platforms={})


@pytest.fixture
async def engine(server) -> AsyncIterator[Engine]:
    built = Engine(cf_settings(server.base_url), create_plugin_host())
    built.slept = []

    async def no_sleep(delay: float) -> None:
        built.slept.append(delay)

    built.sleep = no_sleep
    await built.start()
    yield built
    await built.stop(grace=1)


async def generate(engine: Engine, model: str, **options: Any):
    handle = await engine.submit(request("a lighthouse at dusk", model=model, **options))
    return await handle.result(), handle.job


async def test_flux_sends_its_schema_and_returns_the_jpeg(engine, server):
    image, _job = await generate(engine, "flux", seed=42, steps=6)
    sent = server.requests[-1]
    assert sent["fields"] == {"prompt": "a lighthouse at dusk", "seed": 42, "steps": 6}
    assert image.mime_type == "image/jpeg" and image.seed == 42 and image.model == "flux"


async def test_sdxl_sends_size_steps_and_negative_and_returns_png_bytes(engine, server):
    image, _ = await generate(engine, "sdxl", aspect_ratio="16:9", negative_prompt="blur", steps=12, seed=1)
    fields = server.requests[-1]["fields"]
    assert fields["num_steps"] == 12 and fields["negative_prompt"] == "blur" and fields["guidance"] == 7.5
    assert fields["width"] > fields["height"] and fields["width"] % 64 == 0
    assert image.mime_type == "image/png"


async def test_flux2_goes_as_multipart(engine, server):
    image, _ = await generate(engine, "klein", seed=3)
    sent = server.requests[-1]
    assert sent["content_type"] == "multipart/form-data"
    assert sent["fields"]["prompt"] == "a lighthouse at dusk" and sent["fields"]["seed"] == "3"
    assert image.mime_type == "image/png"


@pytest.mark.parametrize(("model", "options", "message"), [
    ("flux", {"negative_prompt": "x"}, "negative prompt"),
    ("flux", {"steps": 9}, "at most 8 steps"),
    ("flux", {"aspect_ratio": "16:9"}, "cannot make 16:9"),
    ("klein", {"steps": 4}, "does not take a step count"),
])
async def test_options_a_model_does_not_take_are_refused_before_sending(engine, server, model, options, message):
    with pytest.raises(InvalidRequest, match=message):
        await engine.submit(request("x", model=model, **options))
    assert server.requests == []


async def test_429_with_retry_after_is_retried_after_that_long(engine, server):
    server.fail_next(Fault(429, 3021, "rate limiting: inference request per min rate reached", {"Retry-After": "5"}))
    _, job = await generate(engine, "flux")
    assert job.attempts == 2 and engine.slept[0] >= 5


async def test_429_without_retry_after_backs_off(engine, server):
    server.fail_next(Fault(429, 3040, "Capacity temporarily exceeded, please try again."))
    _, job = await generate(engine, "sdxl")
    assert job.attempts == 2 and 1 <= engine.slept[0] <= 2


async def test_5xx_is_retried_and_then_reported(engine, server):
    server.fail_next(*[Fault(502, body=b"<html>bad gateway</html>", content_type="text/html")] * 3)
    with pytest.raises(BackendUnavailable) as caught:
        await generate(engine, "sdxl")
    assert "unavailable" in caught.value.user_message and len(engine.slept) == 2


async def test_nsfw_is_rejected_at_once(engine, server):
    server.fail_next(Fault(400, 3030, "AiError: AiError: Input prompt contains NSFW content (abc)"))
    with pytest.raises(ContentRejected, match="safety filter"):
        await generate(engine, "flux")
    assert len(server.requests) == 1


@pytest.mark.parametrize("code", [3036, 4006])
async def test_daily_quota_says_when_it_resets_and_stops_calling(engine, server, code):
    message = "you have used up your daily free allocation of 10,000 neurons, please upgrade"
    server.fail_next(Fault(429, code, message))
    with pytest.raises(QuotaExceeded) as caught:
        await generate(engine, "flux")
    assert "resets at 00:00 UTC" in caught.value.user_message and caught.value.reset_at.hour == 0
    with pytest.raises(QuotaExceeded):
        await generate(engine, "flux")
    assert len(server.requests) == 1  # the second request never left


async def test_schema_errors_are_user_errors(engine, server):
    server.fail_next(Fault(400, 5006, "AiError: Bad input: Type mismatch of '/seed'"))
    with pytest.raises(InvalidRequest, match="did not accept this request: Bad input"):
        await generate(engine, "flux")


async def test_bad_token_is_an_auth_error(server, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "wrong-token-000")
    engine = Engine(cf_settings(server.base_url), create_plugin_host())
    async with engine:
        with pytest.raises(BackendAuthError, match="credentials"):
            await generate(engine, "flux")


async def test_a_slow_answer_times_out(server):
    settings = cf_settings(server.base_url, slow={"backend": "cloudflare", "model": SDXL, "base_url": server.base_url,
                                                  "timeout": 0.2, "max_attempts": 1})
    server.fail_next(Fault(delay=2))
    async with Engine(settings, create_plugin_host()) as engine:
        with pytest.raises(BackendTimeout):
            await generate(engine, "slow")


async def test_a_body_cut_short_is_a_retryable_transport_error(engine, server):
    server.fail_next(Fault(cut_connection=True))
    _, job = await generate(engine, "sdxl")
    assert job.attempts == 2


async def test_truncated_image_bytes_are_invalid(engine, server):
    png = picture("PNG", (128, 128))
    server.fail_next(*[Fault(200, body=png[: len(png) // 2], content_type="image/png")] * 3)
    with pytest.raises(InvalidImage, match="broken image"):
        await generate(engine, "sdxl")


async def test_html_in_place_of_an_image_is_invalid(engine, server):
    server.fail_next(*[Fault(200, body=b"<html>hello</html>", content_type="image/png")] * 3)
    with pytest.raises(InvalidImage):
        await generate(engine, "sdxl")


async def test_a_jpeg_labelled_png_is_reported_as_jpeg(engine, server):
    server.fail_next(Fault(200, body=picture("JPEG"), content_type="image/png"))
    image, _ = await generate(engine, "sdxl")
    assert image.mime_type == "image/jpeg" and image.extension == "jpg"


async def test_check_reports_ok_bad_credentials_and_unreachable(server, monkeypatch):
    async with Engine(cf_settings(server.base_url), create_plugin_host()) as engine:
        assert (await engine.models["flux"].check()).status is CheckStatus.OK
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "wrong-token-000")
    async with Engine(cf_settings(server.base_url), create_plugin_host()) as engine:
        assert (await engine.models["flux"].check()).status is CheckStatus.BAD_CREDENTIALS
    async with Engine(cf_settings("http://127.0.0.1:9/client/v4"), create_plugin_host()) as engine:
        assert (await engine.models["flux"].check()).status is CheckStatus.UNREACHABLE


def test_missing_credentials_fail_at_start_up_naming_the_variable(monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    with pytest.raises(ConfigError, match=r"models\.flux: .*CLOUDFLARE_API_TOKEN"):
        Engine(cf_settings("http://127.0.0.1:9"), create_plugin_host())


async def test_custom_workers_from_the_original_bot(server, monkeypatch):
    monkeypatch.setenv("FLUX_WORKER_URL", f"{server.root}/worker/flux")
    monkeypatch.setenv("SDXL_WORKER_URL", f"{server.root}/worker/sdxl")
    monkeypatch.setenv("SDXL_API_KEY", "sdxl-key-123")
    settings = cf_settings(server.base_url,
                           myflux={"backend": "cloudflare-worker", "url_env": "FLUX_WORKER_URL"},
                           mysdxl={"backend": "cloudflare-worker", "url_env": "SDXL_WORKER_URL", "method": "POST",
                                   "api_key_env": "SDXL_API_KEY"})
    async with Engine(settings, create_plugin_host()) as engine:
        flux, _ = await generate(engine, "myflux")
        sdxl, _ = await generate(engine, "mysdxl")
        assert (await engine.models["mysdxl"].check()).status is CheckStatus.OK
    assert flux.mime_type == "image/jpeg" and sdxl.mime_type == "image/png"
    assert server.requests[0] == {"worker": "flux", "method": "GET", "query": {"prompt": "a lighthouse at dusk"}}
    assert server.requests[1]["json"] == {"prompt": "a lighthouse at dusk"}


async def test_a_worker_error_sent_with_status_200_is_mapped(server, monkeypatch):
    worker = {"backend": "cloudflare-worker", "url": f"{server.root}/worker/flux"}
    settings = cf_settings(server.base_url, myflux=worker)
    error = json.dumps({"error": "AiError: 3030: Input prompt contains NSFW content"}).encode()
    server.fail_next(Fault(200, body=error, content_type="application/json"))
    async with Engine(settings, create_plugin_host()) as engine:
        with pytest.raises(ContentRejected):
            await generate(engine, "myflux")


@respx.mock(assert_all_called=True)
async def test_request_shape_on_the_wire(respx_mock):
    route = respx_mock.post(f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/{FLUX}").mock(
        return_value=httpx.Response(200, json={"result": {"image": base64.b64encode(picture("JPEG")).decode()},
                                               "success": True, "errors": [], "messages": []}))
    settings = Settings(engine=EngineSettings(default_model="flux", rate_limit=None),
                        models={"flux": {"backend": "cloudflare", "model": FLUX}}, platforms={})
    async with Engine(settings, create_plugin_host()) as engine:
        await generate(engine, "flux", seed=7)
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}" and sent.headers["User-Agent"].startswith("SakaiBot/")
    assert json.loads(sent.content) == {"prompt": "a lighthouse at dusk", "seed": 7, "steps": 4}


@pytest.mark.parametrize(("status", "body", "headers", "expected", "retryable"), [
    (429, {"errors": [{"code": 3021, "message": "rate"}]}, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"},
     BackendRateLimited, True),
    (408, {"errors": [{"code": 3007, "message": "Request timeout"}]}, {}, BackendTimeout, True),
    (403, {"errors": [{"code": 3041, "message": "model agreement"}]}, {}, BackendAuthError, False),
    (413, {"errors": [{"code": 3006, "message": "Request is too large"}]}, {}, InvalidRequest, False),
    (400, {"errors": [{"code": 3030, "message": "Model input is not valid: x"}]}, {}, InvalidRequest, False),
    (400, {"errors": [{"code": 3030, "message": "Your output has been flagged."}]}, {}, ContentRejected, False),
    (503, {"errors": []}, {}, BackendUnavailable, True),
])
def test_error_mapping_table(status, body, headers, expected, retryable):
    from plugins.cloudflare.errors import map_error

    error = map_error(status, body["errors"], {k.lower(): v for k, v in headers.items()})
    assert type(error) is expected and error.retryable is retryable
    if expected is BackendRateLimited:
        assert error.retry_after > 3600  # an HTTP date far ahead; the engine will not wait that long


async def test_cli_generate_with_flux_against_the_fake(server, tmp_path, monkeypatch):
    from core.cli import main

    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\ndefault_model = "flux"\n[models.flux]\nbackend = "cloudflare"\n'
                      f'model = "{FLUX}"\nbase_url = "{server.base_url}"\n[platforms.console]\nenabled = false\n')
    monkeypatch.chdir(tmp_path)
    code = await _in_thread(main, ["--config", str(config), "generate", "a lighthouse", "--model", "flux",
                                   "--out", "flux.jpg"])
    written = await _in_thread(Path(tmp_path / "flux.jpg").read_bytes)
    assert code == 0 and written[:3] == b"\xff\xd8\xff"


async def _in_thread(func, *args):
    import asyncio

    return await asyncio.to_thread(func, *args)
