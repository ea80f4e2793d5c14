"""The litellm image backend against respx-mocked OpenAI endpoints (litellm's aiohttp transport is off)."""

from __future__ import annotations

import base64

import httpx
import pytest
import respx

from core import (
    BackendAuthError,
    BackendRateLimited,
    BackendUnavailable,
    ContentRejected,
    InvalidRequest,
    QuotaExceeded,
)
from core.config import EngineSettings, Settings
from core.engine import Engine
from core.hooks.host import create_plugin_host
from tests.fakes.workers_ai import picture
from tests.utils import request

API = "http://127.0.0.1:9/v1"  # a base nobody listens on: only respx answers
GENERATIONS = f"{API}/images/generations"


def _settings(**model: object) -> Settings:
    config = {"backend": "litellm", "model": "openai/gpt-image-1", "api_base": API, "api_key_env": "TEST_OPENAI_KEY",
              **model}
    return Settings(engine=EngineSettings(default_model="gpt", rate_limit=None, max_attempts=2,
                                          retry_initial_delay=0, retry_max_delay=1),
                    models={"gpt": config}, platforms={})


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-secret-key")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers={"retry-after": "0", **(headers or {})})


async def _generate(**model: object):
    async with Engine(_settings(**model), create_plugin_host()) as engine:
        engine.sleep = lambda delay: _nothing()
        handle = await engine.submit(request("a lighthouse at dusk", aspect_ratio="3:2"))
        return await handle.result(), handle.job


async def _nothing() -> None:
    return None


@respx.mock
async def test_b64_answer_becomes_a_checked_image():
    route = respx.post(GENERATIONS).mock(return_value=httpx.Response(200, json={
        "created": 1, "data": [{"b64_json": base64.b64encode(picture("PNG")).decode()}]}))
    image, job = await _generate()
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer sk-test-secret-key"
    body = __import__("json").loads(sent.content)
    assert body["prompt"] == "a lighthouse at dusk" and body["size"] == "1536x1024" and body["model"] == "gpt-image-1"
    assert image.mime_type == "image/png" and image.width == 64 and job.attempts == 1


@respx.mock
async def test_url_answer_is_downloaded_with_the_shared_client():
    respx.post(GENERATIONS).mock(return_value=httpx.Response(200, json={
        "created": 1, "data": [{"url": "http://127.0.0.1:9/files/img.jpg", "revised_prompt": "a lighthouse, dusk"}]}))
    respx.get("http://127.0.0.1:9/files/img.jpg").mock(return_value=httpx.Response(200, content=picture("JPEG")))
    image, _ = await _generate(model="openai/dall-e-3", sizes=["1792x1024", "1024x1024"])
    assert image.mime_type == "image/jpeg" and image.metadata["revised_prompt"] == "a lighthouse, dusk"


@pytest.mark.parametrize(("response", "expected"), [
    (_error(400, "moderation_blocked", "Your request was rejected by the safety system."), ContentRejected),
    (_error(400, "content_policy_violation", "Your request was rejected as a result of our safety system"),
     ContentRejected),
    (_error(429, "insufficient_quota", "You exceeded your current quota"), QuotaExceeded),
    (_error(401, "invalid_api_key", "Incorrect API key provided"), BackendAuthError),
    (_error(400, "invalid_value", "Invalid size"), InvalidRequest),
])
@respx.mock
async def test_errors_map_to_clear_messages(response, expected):
    route = respx.post(GENERATIONS).mock(return_value=response)
    with pytest.raises(expected) as caught:
        await _generate()
    assert "sk-test-secret-key" not in caught.value.user_message + str(caught.value)
    assert route.call_count >= 1


@respx.mock
async def test_rate_limits_and_server_errors_are_retried_by_the_engine():
    respx.post(GENERATIONS).mock(side_effect=[_error(429, "rate_limit_exceeded", "slow down")] * 3 + [
        httpx.Response(200, json={"created": 1, "data": [{"b64_json": base64.b64encode(picture("PNG")).decode()}]})])
    image, job = await _generate()
    assert job.attempts == 2 and image.mime_type == "image/png"


@respx.mock
async def test_persistent_server_errors_end_as_unavailable():
    respx.post(GENERATIONS).mock(return_value=_error(503, "server_error", "overloaded"))
    with pytest.raises((BackendUnavailable, BackendRateLimited)):
        await _generate()


def test_litellm_is_not_imported_unless_a_litellm_model_is_configured(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = ("import sys; from core.cli import main; main(['models']); "
              "print('LITELLM-IMPORTED' if 'litellm' in sys.modules else 'LITELLM-ABSENT')")
    (tmp_path / "config.toml").write_text((root / "config.toml").read_text())
    env = {**os.environ, "SAKAIBOT_CONFIG": str(tmp_path / "config.toml"), "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert "LITELLM-ABSENT" in out.stdout, out.stderr
