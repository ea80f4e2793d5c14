"""The comfyui backend through the whole engine, against a fake ComfyUI on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import plugins.comfyui as comfy_plugin
from core import (
    BackendError,
    BackendUnavailable,
    CheckStatus,
    EventKind,
    InvalidImage,
    InvalidRequest,
    JobCancelled,
    JobState,
)
from core.cli import main
from core.errors import ConfigError
from core.imaging import inspect_image
from plugins.comfyui.default_workflow import DEFAULT_WORKFLOW
from plugins.comfyui.results import first_image
from plugins.comfyui.workflow import Workflow
from tests.fakes.comfyui import OOM, FakeComfyUI
from tests.utils import EventRecorder, request

CKPT = "sd_xl_base_1.0.safetensors"


@pytest.fixture
async def server() -> AsyncIterator[FakeComfyUI]:
    fake = await FakeComfyUI().start()
    yield fake
    await fake.stop()


async def start(engine_factory, server, recorder: EventRecorder | None = None, **keys: Any):
    config = {"comfy": {"backend": "comfyui", "url": server.url, "checkpoint": CKPT, "max_attempts": 1, **keys}}
    plugins = [("comfyui", comfy_plugin), *([("recorder", recorder)] if recorder else [])]
    engine, _ = await engine_factory(config, plugins=plugins, max_pending_per_user=20)
    return engine


def sent_graph(server: FakeComfyUI, index: int = -1) -> dict[str, Any]:
    return server.prompts[index]["prompt"]


async def test_default_workflow_is_filled_with_typed_values(engine_factory, server):
    engine = await start(engine_factory, server, sampler="dpmpp_2m", scheduler="karras", cfg=5.0)
    image = await (await engine.submit(request("a red fox", seed=42, steps=9, negative_prompt="blur",
                                               aspect_ratio="3:2"))).result()
    graph = sent_graph(server)
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (42, 9, 5.0)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("dpmpp_2m", "karras")
    assert graph["4"]["inputs"]["ckpt_name"] == CKPT
    assert graph["6"]["inputs"]["text"] == "a red fox" and graph["7"]["inputs"]["text"] == "blur"
    latent = graph["5"]["inputs"]
    assert latent["width"] > latent["height"] and latent["width"] % 64 == 0
    assert (image.width, image.height) == (latent["width"], latent["height"]) and image.seed == 42
    assert server.prompts[-1]["client_id"] and image.metadata["filename"].startswith("SakaiBot_")


async def test_progress_in_order_and_binary_previews_reach_job_events(engine_factory, server):
    recorder = EventRecorder()
    engine = await start(engine_factory, server, recorder)
    await (await engine.submit(request("a red fox", steps=10))).result()
    progress = [e for e in recorder.events if e.kind is EventKind.PROGRESS]
    fractions = [e.progress for e in progress]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) >= 10
    previews = [e.preview for e in progress if e.preview]
    assert len(previews) == 5 and all(inspect_image(p).mime_type == "image/jpeg" for p in previews)


async def test_a_user_workflow_with_text_around_the_prompt(engine_factory, server, tmp_path: Path):
    graph = json.loads(DEFAULT_WORKFLOW)
    graph["6"]["inputs"]["text"] = "masterpiece, {{prompt}}, best quality"
    graph["7"]["inputs"]["text"] = "lowres"
    graph["5"]["inputs"].update(width=768, height=512)
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(graph))
    engine = await start(engine_factory, server, workflow=str(path), size=[768, 512])
    caps = engine.models["comfy"].capabilities
    assert not caps.supports_negative_prompt and [str(s) for s in caps.sizes] == ["768x512"]
    image = await (await engine.submit(request("a red fox"))).result()
    assert sent_graph(server)["6"]["inputs"]["text"] == "masterpiece, a red fox, best quality"
    assert (image.width, image.height) == (768, 512)


async def test_validation_errors_name_the_node(engine_factory, server):
    engine = await start(engine_factory, server, sampler="no_such_sampler")
    with pytest.raises(InvalidRequest, match=r"node 3 \(KSampler\): Value not in list: sampler_name"):
        await (await engine.submit(request("a fox"))).result()


async def test_a_missing_checkpoint_is_named_by_check_and_by_validation(engine_factory, server):
    engine = await start(engine_factory, server, checkpoint="gone.safetensors")
    result = await engine.models["comfy"].check()
    assert result.status is CheckStatus.MISCONFIGURED and "gone.safetensors" in result.detail
    with pytest.raises(InvalidRequest, match=r"CheckpointLoaderSimple.*gone\.safetensors"):
        await (await engine.submit(request("a fox"))).result()


async def test_execution_error_names_the_node_and_oom_is_not_retried(engine_factory, server):
    server.fail_at = dict(OOM)
    engine = await start(engine_factory, server, max_attempts=3)
    with pytest.raises(BackendUnavailable, match="ran out of GPU memory") as caught:
        await (await engine.submit(request("a fox"))).result()
    assert caught.value.retryable is False and len(server.prompts) == 1
    server.fail_at = {"node_type": "VAEDecode", "exception_type": "RuntimeError", "exception_message": "bad vae"}
    with pytest.raises(BackendError, match=r"failed at node 8 \(VAEDecode\): bad vae"):
        await (await engine.submit(request("a fox"))).result()


async def test_cancel_while_running_interrupts_that_prompt(engine_factory, server):
    server.step_time = 0.05
    engine = await start(engine_factory, server)
    handle = await engine.submit(request("a red fox", steps=40))
    await _until(lambda: server.running is not None)
    await asyncio.sleep(0.15)
    running = server.running.prompt_id
    await engine.cancel(handle.job.id, handle.job.request.requester)
    with pytest.raises(JobCancelled):
        await handle.result()
    assert server.interrupts == [running] and server.deleted == []
    await _until(lambda: running in server.history)


async def test_cancel_while_waiting_deletes_from_the_queue_and_leaves_the_running_prompt(engine_factory, server):
    server.step_time = 0.05
    engine = await start(engine_factory, server)
    async with httpx.AsyncClient() as other:
        foreign = json.loads(DEFAULT_WORKFLOW.replace("{{checkpoint}}", CKPT).replace("{{sampler}}", "euler")
                             .replace("{{scheduler}}", "normal").replace("{{prompt}}", "x")
                             .replace("{{negative_prompt}}", ""))
        foreign["3"]["inputs"].update(seed=1, steps=20, cfg=7)
        foreign["5"]["inputs"].update(width=512, height=512)
        assert (await other.post(f"{server.url}/prompt", json={"prompt": foreign, "client_id": "other"})).is_success
    await _until(lambda: server.running is not None)
    handle = await engine.submit(request("a red fox"))
    await _until(lambda: len(server.pending) == 1)
    ours = server.pending[0].prompt_id
    await engine.cancel(handle.job.id, handle.job.request.requester)
    with pytest.raises(JobCancelled):
        await handle.result()
    assert server.deleted == [ours] and server.interrupts == [] and server.pending == []


async def test_cancel_before_the_queue_answers_still_names_our_prompt(engine_factory, server):
    server.hold_answers = asyncio.Event()  # the prompt is queued but its id has not reached us yet
    engine = await start(engine_factory, server)
    handle = await engine.submit(request("a red fox", steps=40))
    await _until(lambda: bool(server.pending) or server.running is not None)
    await engine.cancel(handle.job.id, handle.job.request.requester)
    with pytest.raises(JobCancelled):
        await handle.result()
    server.hold_answers.set()
    ours = server.prompts[0]["prompt_id"]
    assert server.deleted == [ours] or server.interrupts == [ours]
    await _until(lambda: server.running is None and not server.pending)


async def test_an_interrupt_from_elsewhere_cancels_the_job(engine_factory, server):
    server.step_time = 0.03
    engine = await start(engine_factory, server)
    handle = await engine.submit(request("a red fox", steps=30))
    await _until(lambda: server.running is not None)
    async with httpx.AsyncClient() as ui:
        await ui.post(f"{server.url}/interrupt")
    with pytest.raises(JobCancelled, match="stopped on the image server"):
        await handle.result()
    assert handle.job.state is JobState.CANCELLED


async def test_an_identical_request_is_served_from_the_cache(engine_factory, server):
    engine = await start(engine_factory, server)
    first = await (await engine.submit(request("a fox", seed=7))).result()
    second = await (await engine.submit(request("a fox", seed=7))).result()
    assert first.metadata["filename"] == second.metadata["filename"]


async def test_a_preview_only_workflow_gives_its_temp_image(engine_factory, server, tmp_path: Path):
    graph = json.loads(DEFAULT_WORKFLOW)
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    path = tmp_path / "preview_only.json"
    path.write_text(json.dumps(graph))
    engine = await start(engine_factory, server, workflow=str(path))
    image = await (await engine.submit(request("a fox"))).result()
    assert image.mime_type == "image/png" and server.history  # fetched with /view?type=temp


def test_a_finished_prompt_without_an_image_output_is_invalid():
    with pytest.raises(InvalidImage, match="without an image"):
        first_image({"outputs": {"12": {"text": ["hello"]}}, "status": {"status_str": "success"}})


async def test_unreachable_server(engine_factory, server):
    await server.stop()
    engine = await start(engine_factory, server)
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await (await engine.submit(request("a fox"))).result()
    assert (await engine.models["comfy"].check()).status is CheckStatus.UNREACHABLE


async def test_check_reports_the_device(engine_factory, server):
    engine = await start(engine_factory, server)
    result = await engine.models["comfy"].check()
    assert result.status is CheckStatus.OK and "Fake GPU" in result.detail


async def test_sakaibot_check_names_a_missing_checkpoint(server, tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\ndefault_model = "c"\n[models.c]\nbackend = "comfyui"\nurl = "{server.url}"\n'
                      'checkpoint = "sdxl.safetensors"\n[platforms.console]\nenabled = false\n', encoding="utf-8")
    code = await asyncio.to_thread(main, ["--config", str(config), "check"])  # the CLI runs its own event loop
    out = capsys.readouterr().out
    assert code == 1 and "✗ c: misconfigured: checkpoint(s) not on the server: sdxl.safetensors" in out


@pytest.mark.parametrize(("text", "message"), [
    ('{"1": {"class_type": "X", "inputs": {}}}', "no {{prompt}} placeholder"),
    ('{"1": {"class_type": "X", "inputs": {"t": "{{colour}}"}}}', "unknown placeholder"),
    ('{"1": {"class_type": "X", "inputs": {"t": "{{prompt}}", "s": "x{{seed}}"}}}', "must be the whole value"),
    ('{"nodes": [], "links": []}', "API format"),
    ("not json", "not JSON"),
])
def test_bad_workflows_are_refused_at_load(text, message):
    with pytest.raises(ValueError, match=message):
        Workflow.parse(text, "w.json")


async def test_default_workflow_without_a_checkpoint_is_a_config_error(engine_factory, server):
    with pytest.raises(ConfigError, match="set checkpoint"):
        await engine_factory({"c": {"backend": "comfyui", "url": server.url}}, plugins=[("comfyui", comfy_plugin)])


async def _until(condition, limit: int = 400) -> None:
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize(("status", "body", "text"), [
    (400, '{"error": "no prompt", "node_errors": []}', "no prompt"),  # older builds: a plain string
    (400, '{"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", '
          '"extra_info": {}}, "node_errors": {}}', "No prompt provided"),
    (400, '{"error": {"type": "missing_node_type", "message": "Node \'Foo\' not found.", "details": "Node ID \'#3\'",'
          ' "extra_info": {}}, "node_errors": {}}', "Node 'Foo' not found.: Node ID '#3'"),
])
def test_prompt_refusals_of_each_comfyui_age(status, body, text):
    from plugins.comfyui.errors import map_prompt_error

    error = map_prompt_error(status, body)
    assert isinstance(error, InvalidRequest) and text in error.user_message


def test_a_body_that_is_not_json_is_a_server_fault():
    from plugins.comfyui.errors import map_prompt_error

    assert isinstance(map_prompt_error(500, "500 Internal Server Error"), BackendUnavailable)
