"""Retries, timeouts, enhancers, hooks and shutdown."""

from __future__ import annotations

import asyncio

import pytest

from core import (
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ContentRejected,
    Enhancer,
    JobCancelled,
    JobRejected,
    JobState,
    ServiceStopping,
    hookimpl,
)
from core.types import EventKind
from tests.utils import EventRecorder, request, settle


async def _engine_recording_sleeps(engine_factory, **kwargs):
    engine, backend = await engine_factory(**kwargs)
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    engine.sleep = fake_sleep
    return engine, backend.models["a"], slept


async def test_retry_waits_at_least_the_backends_retry_after(engine_factory):
    engine, model, slept = await _engine_recording_sleeps(engine_factory, retry_initial_delay=0.1)
    model.failures = [BackendRateLimited(retry_after=7), BackendUnavailable()]
    handle = await engine.submit(request())
    await handle.result()
    assert handle.job.attempts == 3
    assert slept[0] >= 7 and 0.2 <= slept[1] <= 1.2  # second wait: backoff 0.2 s plus up to 1 s jitter


async def test_non_retryable_errors_fail_at_once_with_the_user_message(engine_factory):
    engine, model, slept = await _engine_recording_sleeps(engine_factory)
    model.failures = [ContentRejected()]
    handle = await engine.submit(request())
    with pytest.raises(ContentRejected):
        await handle.result()
    assert handle.job.attempts == 1 and slept == []
    assert "safety filter" in handle.job.error.user_message


async def test_a_retry_after_longer_than_we_wait_is_not_retried(engine_factory):
    engine, model, slept = await _engine_recording_sleeps(engine_factory, retry_max_delay=10)
    model.failures = [BackendRateLimited(retry_after=3600)]
    handle = await engine.submit(request())
    with pytest.raises(BackendRateLimited):
        await handle.result()
    assert handle.job.attempts == 1 and slept == []


async def test_retries_are_bounded(engine_factory):
    engine, model, slept = await _engine_recording_sleeps(engine_factory, max_attempts=3)
    model.failures = [BackendUnavailable() for _ in range(5)]
    recorder_kinds = []
    handle = await engine.submit(request())
    async for event in handle:
        recorder_kinds.append(event.kind)
    assert handle.job.attempts == 3 and len(slept) == 2
    assert recorder_kinds.count(EventKind.RETRYING) == 2 and recorder_kinds[-1] is EventKind.FAILED


async def test_a_model_slower_than_its_timeout_times_out(engine_factory):
    engine, _backend = await engine_factory({"a": {"backend": "fake", "latency": 5, "timeout": 0.05,
                                                  "max_attempts": 2}})
    engine.sleep = lambda delay: asyncio.sleep(0)
    handle = await engine.submit(request())
    with pytest.raises(BackendTimeout, match=r"within 0\.05 s"):
        await handle.result()
    assert handle.job.attempts == 2


async def test_an_unexpected_exception_becomes_a_generic_message(engine_factory, caplog):
    engine, backend = await engine_factory()
    backend.models["a"].failures = [KeyError("secret internals")]
    handle = await engine.submit(request())
    events = [e async for e in handle]
    assert events[-1].kind is EventKind.FAILED
    assert "internals" not in events[-1].message and "try again" in events[-1].message.lower()
    assert "secret internals" in caplog.text


class Shout(Enhancer):
    name = "shout"

    async def enhance(self, prompt, request, model):
        return prompt.upper() + ", highly detailed"


class Broken(Enhancer):
    name = "broken"

    def __init__(self, answer=None):
        self.answer = answer

    async def enhance(self, prompt, request, model):
        if self.answer is None:
            raise RuntimeError("LLM down")
        return self.answer


class EnhancerPlugin:
    def __init__(self, *enhancers):
        self.enhancers = enhancers

    @hookimpl
    def register_prompt_enhancers(self, register, engine):
        for enhancer in self.enhancers:
            register(enhancer)


async def test_enhancers_fold_in_order_and_report_the_prompt(engine_factory):
    recorder = EventRecorder()
    engine, backend = await engine_factory(plugins=[("enh", EnhancerPlugin(Broken(), Shout())), ("rec", recorder)])
    handle = await engine.submit(request("a fox"))
    await handle.result()
    assert backend.models["a"].calls[0].prompt == "A FOX, highly detailed"
    enhanced = [e for e in recorder.events if e.kind is EventKind.ENHANCED]
    assert enhanced[0].message == "A FOX, highly detailed" and handle.job.enhanced_prompt == enhanced[0].message
    kinds = [k for k in recorder.kinds(handle.id) if k != "position"]
    assert kinds[:4] == ["queued", "enhancing", "enhanced", "generating"]
    assert "enhance" in handle.job.timings


@pytest.mark.parametrize("answer", ["", "x" * 600, "bad\x00"])
async def test_an_unusable_enhancement_falls_back_to_the_original(engine_factory, answer):
    engine, backend = await engine_factory(plugins=[("enh", EnhancerPlugin(Broken(answer)))])
    await (await engine.submit(request("a fox"))).result()
    assert backend.models["a"].calls[0].prompt == "a fox"


async def test_raw_skips_enhancement(engine_factory):
    engine, backend = await engine_factory(plugins=[("enh", EnhancerPlugin(Shout()))])
    handle = await engine.submit(request("a fox", enhance=False))
    await handle.result()
    assert backend.models["a"].calls[0].prompt == "a fox" and handle.job.enhanced_prompt is None


class Veto:
    @hookimpl
    async def before_generate(self, job, engine):
        if "forbidden" in job.prompt:
            raise JobRejected("Not here, please.")


async def test_before_generate_can_veto(engine_factory):
    engine, backend = await engine_factory(plugins=[("veto", Veto())])
    handle = await engine.submit(request("something forbidden"))
    with pytest.raises(JobRejected):
        await handle.result()
    assert handle.job.state is JobState.FAILED and backend.models["a"].calls == []
    await (await engine.submit(request("fine"))).result()


class BrokenObservers:
    def __init__(self):
        self.after = 0

    @hookimpl
    def on_job_event(self, event, engine):
        raise RuntimeError("sync observer broke")

    @hookimpl
    async def after_generate(self, job, result, engine):
        self.after += 1
        raise RuntimeError("async observer broke")


async def test_failing_observers_do_not_fail_the_job(engine_factory, caplog):
    recorder = EventRecorder()
    broken = BrokenObservers()
    engine, _ = await engine_factory(plugins=[("broken", broken), ("rec", recorder)])
    handle = await engine.submit(request())
    await handle.result()
    assert handle.job.state is JobState.DONE and broken.after == 1
    assert recorder.kinds(handle.id)[-1] == "done"
    assert "sync observer broke" in caplog.text and "async observer broke" in caplog.text


async def test_shutdown_lets_running_jobs_finish_and_cancels_waiting_ones(engine_factory):
    engine, backend = await engine_factory({"a": {"backend": "fake", "latency": 0.05}})
    running = await engine.submit(request("running"))
    await settle()
    waiting = await engine.submit(request("waiting", user="u2"))
    await engine.stop(grace=5)
    assert running.job.state is JobState.DONE
    with pytest.raises(JobCancelled, match="shutting down"):
        await waiting.result()
    assert backend.models["a"].closed
    with pytest.raises(ServiceStopping):
        await engine.submit(request())


async def test_shutdown_cancels_jobs_that_outlive_the_grace(engine_factory):
    engine, backend = await engine_factory()
    backend.models["a"].gate = asyncio.Event()
    stuck = await engine.submit(request())
    await settle()
    await engine.stop(grace=0.05)
    with pytest.raises(JobCancelled, match="shutting down"):
        await stuck.result()
    assert backend.models["a"].active == 0


class Lifecycle:
    def __init__(self):
        self.calls = []

    @hookimpl
    async def startup(self, engine):
        self.calls.append("startup")

    @hookimpl
    def shutdown(self, engine):
        self.calls.append("shutdown")
        raise RuntimeError("shutdown errors are only logged")


async def test_lifecycle_hooks_run_once_each(engine_factory):
    plugin = Lifecycle()
    engine, _ = await engine_factory(plugins=[("life", plugin)])
    await engine.stop()
    await engine.stop()
    assert plugin.calls == ["startup", "shutdown"]
