"""The automatic1111 backend through the whole engine, against a fake WebUI on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import plugins.automatic1111 as a1111_plugin
from core import (
    BackendAuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CheckStatus,
    EventKind,
    InvalidImage,
    InvalidRequest,
    JobCancelled,
    JobState,
)
from core.cli import main
from core.imaging import inspect_image
from tests.fakes.automatic1111 import OOM, PASSWORD, USER, FakeAutomatic1111
from tests.utils import EventRecorder, request, settle


@pytest.fixture
async def server() -> AsyncIterator[FakeAutomatic1111]:
    fake = await FakeAutomatic1111().start()
    yield fake
    await fake.stop()


def model_config(server: FakeAutomatic1111, **keys: Any) -> dict[str, dict[str, Any]]:
    return {"sd": {"backend": "automatic1111", "url": server.url, "poll_interval": 0.02, "max_attempts": 1,
                   **keys}}


async def start(engine_factory, server, recorder: EventRecorder | None = None, **keys: Any):
    plugins = [("automatic1111", a1111_plugin), *([("recorder", recorder)] if recorder else [])]
    engine, _ = await engine_factory(model_config(server, **keys), plugins=plugins, max_pending_per_user=20)
    return engine


async def test_txt2img_gets_the_request_values_over_the_config(engine_factory, server):
    engine = await start(engine_factory, server, sampler="Euler a", cfg_scale=5.5,
                         checkpoint="sd_xl_base_1.0.safetensors [31e35c80fc]")
    handle = await engine.submit(request("a red fox", seed=42, steps=12, negative_prompt="blur", aspect_ratio="16:9"))
    image = await handle.result()
    sent = server.requests[-1]
    assert {k: sent[k] for k in ("prompt", "negative_prompt", "seed", "steps", "cfg_scale", "sampler_name")} == {
        "prompt": "a red fox", "negative_prompt": "blur", "seed": 42, "steps": 12, "cfg_scale": 5.5,
        "sampler_name": "Euler a"}
    assert sent["override_settings"] == {"sd_model_checkpoint": "sd_xl_base_1.0.safetensors [31e35c80fc]"}
    assert sent["width"] > sent["height"] and sent["width"] % 64 == 0
    assert image.mime_type == "image/png" and (image.width, image.height) == (sent["width"], sent["height"])
    assert image.seed == 42 and image.metadata["checkpoint"].startswith("sd_xl_base")


async def test_configured_steps_apply_when_the_request_names_none(engine_factory, server):
    engine = await start(engine_factory, server, steps=7)
    await (await engine.submit(request("a red fox"))).result()
    assert server.requests[-1]["steps"] == 7 and server.requests[-1]["seed"] >= 0


async def test_progress_rises_in_order_and_previews_reach_job_events(engine_factory, server):
    server.step_time = 0.02
    recorder = EventRecorder()
    engine = await start(engine_factory, server, recorder)
    handle = await engine.submit(request("a red fox", steps=20))
    await handle.result()
    progress = [e for e in recorder.events if e.kind is EventKind.PROGRESS]
    fractions = [e.progress for e in progress]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] <= 1
    previews = [e.preview for e in progress if e.preview]
    assert previews and all(inspect_image(p).mime_type == "image/png" for p in previews)


async def test_no_preview_is_asked_for_when_previews_are_off(engine_factory, server):
    server.step_time = 0.02
    recorder = EventRecorder()
    engine = await start(engine_factory, server, recorder, previews=False)
    await (await engine.submit(request("a red fox", steps=10))).result()
    progress = [e for e in recorder.events if e.kind is EventKind.PROGRESS]
    assert progress and not any(e.preview for e in progress)


async def test_cancel_interrupts_our_running_job(engine_factory, server):
    server.step_time = 0.05
    engine = await start(engine_factory, server)
    handle = await engine.submit(request("a red fox", steps=40))
    await _until(lambda: server.state.sampling_step >= 2)
    await engine.cancel(handle.job.id, handle.job.request.requester)
    with pytest.raises(JobCancelled):
        await handle.result()
    assert server.interrupts == [server.state.job_timestamp]


@pytest.mark.parametrize("task_ids", [True, False], ids=["exact", "inferred"])
async def test_cancel_while_another_clients_job_runs_leaves_that_job_alone(engine_factory, server, task_ids):
    server.step_time, server.task_ids = 0.02, task_ids
    engine = await start(engine_factory, server)
    async with httpx.AsyncClient() as other:
        foreign = asyncio.create_task(other.post(f"{server.url}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 8},
                                                 timeout=30))
        await _until(lambda: server.state.job != "")
        foreign_stamp = server.state.job_timestamp
        handle = await engine.submit(request("a red fox", steps=15))
        await _until(lambda: len(server.requests) == 2)
        await asyncio.sleep(0.06)  # a few polls see the foreign job
        await engine.cancel(handle.job.id, handle.job.request.requester)
        with pytest.raises(JobCancelled):
            await handle.result()
        answer = await foreign
    assert answer.status_code == 200 and foreign_stamp not in server.interrupts
    if task_ids:  # the server still runs our abandoned request: it is stopped as soon as it starts
        await _until(lambda: len(server.interrupts) == 1)
        assert server.state.interrupted and server.state.job_timestamp == server.interrupts[0]
    else:  # an older server cannot say which queued request is ours: nothing is interrupted
        await asyncio.sleep(0.1)
        assert server.interrupts == []


async def test_progress_is_inferred_on_servers_without_task_ids(engine_factory, server):
    server.step_time, server.task_ids = 0.02, False
    recorder = EventRecorder()
    engine = await start(engine_factory, server, recorder)
    await (await engine.submit(request("a red fox", steps=20))).result()
    fractions = [e.progress for e in recorder.events if e.kind is EventKind.PROGRESS]
    assert fractions and fractions == sorted(fractions)
    assert engine.models["sd"]._mode.value == "timestamps"


async def test_an_interrupt_from_the_servers_ui_cancels_the_job(engine_factory, server):
    server.step_time = 0.03
    engine = await start(engine_factory, server)
    handle = await engine.submit(request("a red fox", steps=30))
    await _until(lambda: server.state.sampling_step >= 3)
    async with httpx.AsyncClient() as ui:
        await ui.post(f"{server.url}/sdapi/v1/interrupt")
    with pytest.raises(JobCancelled, match="stopped on the image server"):
        await handle.result()
    assert handle.job.state is JobState.CANCELLED


async def test_timeout_interrupts_and_reports(engine_factory, server):
    server.step_time = 0.2
    engine = await start(engine_factory, server, timeout=0.5)
    handle = await engine.submit(request("a red fox", steps=50))
    with pytest.raises(BackendTimeout):
        await handle.result()
    await _until(lambda: len(server.interrupts) == 1)


async def test_basic_auth_is_sent_and_a_wrong_password_is_an_auth_error(engine_factory, server, monkeypatch):
    server.auth = True
    monkeypatch.setenv("A1111_AUTH", f"{USER}:{PASSWORD}")
    engine = await start(engine_factory, server, auth_env="A1111_AUTH")
    assert (await (await engine.submit(request("a fox"))).result()).mime_type == "image/png"
    assert (await engine.models["sd"].check()).status is CheckStatus.OK
    monkeypatch.setenv("A1111_AUTH", f"{USER}:wrong")
    engine = await start(engine_factory, server, auth_env="A1111_AUTH")
    with pytest.raises(BackendAuthError, match="auth_env"):
        await (await engine.submit(request("a fox"))).result()
    assert (await engine.models["sd"].check()).status is CheckStatus.BAD_CREDENTIALS


async def test_out_of_memory_is_unavailable_and_not_retried(engine_factory, server):
    server.fail_next.append(OOM)
    engine = await start(engine_factory, server, max_attempts=3)
    with pytest.raises(BackendUnavailable, match="ran out of GPU memory") as caught:
        await (await engine.submit(request("a fox"))).result()
    assert caught.value.retryable is False and len(server.requests) == 1


async def test_other_server_errors_are_retried(engine_factory, server):
    server.fail_next.append((500, {"error": "RuntimeError", "detail": "", "body": "", "errors": "boom"}))
    engine = await start(engine_factory, server, max_attempts=2)
    engine.sleep = _no_sleep
    handle = await engine.submit(request("a fox"))
    await handle.result()
    assert handle.job.attempts == 2


async def test_validation_errors_name_the_field(engine_factory, server):
    server.fail_next.append((422, {"detail": [{"loc": ["body", "width"], "msg": "ensure this value is a multiple",
                                               "type": "value_error"}]}))
    engine = await start(engine_factory, server)
    with pytest.raises(InvalidRequest, match="width: ensure this value"):
        await (await engine.submit(request("a fox"))).result()


async def test_not_found_names_the_setting(engine_factory, server):
    server.fail_next.append((404, {"error": "HTTPException", "detail": "Sampler not found", "body": "",
                                   "errors": "404: Sampler not found"}))
    engine = await start(engine_factory, server)
    with pytest.raises(BackendError, match="Sampler not found"):
        await (await engine.submit(request("a fox"))).result()


async def test_an_answer_without_images_is_invalid(engine_factory, server):
    server.fail_next.append((200, {"images": [], "parameters": {}, "info": "{}"}))
    engine = await start(engine_factory, server)
    with pytest.raises(InvalidImage, match="without a picture"):
        await (await engine.submit(request("a fox"))).result()


async def test_unreachable_server(engine_factory, server):
    await server.stop()
    engine = await start(engine_factory, server)
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await (await engine.submit(request("a fox"))).result()
    assert (await engine.models["sd"].check()).status is CheckStatus.UNREACHABLE


async def test_check_lists_checkpoints_and_flags_a_missing_one(engine_factory, server):
    engine = await start(engine_factory, server)
    result = await engine.models["sd"].check()
    assert result.status is CheckStatus.OK and "v1-5-pruned-emaonly" in result.detail
    engine = await start(engine_factory, server, checkpoint="nope.safetensors")
    result = await engine.models["sd"].check()
    assert result.status is CheckStatus.MISCONFIGURED and "nope.safetensors" in result.detail


async def test_one_at_a_time_by_default(engine_factory, server):
    engine = await start(engine_factory, server)
    assert engine.concurrency("sd") == 1 and engine.lanes.timeout("sd") == 600


async def test_sakaibot_check_lists_the_servers_checkpoints(server, tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\ndefault_model = "sd"\n[models.sd]\nbackend = "automatic1111"\nurl = "{server.url}"\n'
                      '[platforms.console]\nenabled = false\n', encoding="utf-8")
    code = await asyncio.to_thread(main, ["--config", str(config), "check"])  # the CLI runs its own event loop
    out = capsys.readouterr().out
    assert code == 0 and "✓ sd: ok: 2 checkpoint(s): v1-5-pruned-emaonly.safetensors [6ce0161689]" in out


def test_missing_password_variable_is_a_config_error(monkeypatch):
    from plugins.automatic1111.settings import Automatic1111Settings

    monkeypatch.delenv("NOPE_AUTH", raising=False)
    with pytest.raises(ValueError, match="set NOPE_AUTH"):
        Automatic1111Settings(backend="automatic1111", auth_env="NOPE_AUTH")


async def _until(condition, limit: int = 400) -> None:
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def _no_sleep(delay: float) -> None:
    await settle(1)


@pytest.mark.parametrize(("status", "body", "kind", "retryable", "text"), [
    (500, "Internal Server Error", BackendUnavailable, True, "unavailable"),  # Forge: no error middleware
    (500, '{"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory. Tried"}',
     BackendUnavailable, False, "GPU memory"),
    (422, '{"detail": [{"type": "int_parsing", "loc": ["body", "steps"], "msg": "Input should be a valid integer",'
          ' "input": "x"}]}', InvalidRequest, False, "steps: Input should be a valid integer"),  # pydantic 2 shape
    (401, '{"error": "HTTPException", "detail": "Not authenticated", "body": "", "errors": "401: Not authenticated"}',
     BackendAuthError, False, "login"),
])
def test_error_bodies_of_each_webui_flavour(status, body, kind, retryable, text):
    from plugins.automatic1111.errors import map_error

    error = map_error(status, body)
    assert type(error) is kind and error.retryable is retryable and text in error.user_message
