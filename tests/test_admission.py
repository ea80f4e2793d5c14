"""Validation, caps and rate limits: a refused request gets a clear error and changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from core import InvalidRequest, QueueFull, RateLimited, UnknownModel
from tests.utils import request, settle


async def _blocked(engine_factory, **settings):
    engine, backend = await engine_factory(**settings)
    backend.models["a"].gate = asyncio.Event()
    return engine, backend


async def test_per_user_cap_refuses_and_changes_nothing(engine_factory):
    engine, _ = await _blocked(engine_factory, max_pending_per_user=2, rate_limit="100/minute")
    await engine.submit(request())
    await engine.submit(request())
    before = engine.snapshot()["a"].waiting
    with pytest.raises(QueueFull, match="2 requests waiting"):
        await engine.submit(request())
    assert engine.snapshot()["a"].waiting == before and len(engine.jobs) == 2
    await engine.submit(request(user="someone-else"))


async def test_lane_cap_refuses_and_releases_the_user_slot(engine_factory):
    engine, _ = await _blocked(engine_factory, max_queue_per_lane=1, max_pending_per_user=5)
    await engine.submit(request(user="a"))
    await settle()
    await engine.submit(request(user="b"))
    with pytest.raises(QueueFull, match="queue is full"):
        await engine.submit(request(user="c"))
    assert engine.admission.pending["test:c"] == 0 and len(engine.jobs) == 2


async def test_rate_limit_counts_only_admitted_requests(engine_factory):
    engine, _ = await _blocked(engine_factory, rate_limit="2/minute", max_pending_per_user=1)
    await engine.submit(request())
    with pytest.raises(QueueFull):
        await engine.submit(request())  # refused by the cap: must not use up the rate
    await engine.cancel(None, request().requester)
    await engine.submit(request())
    await engine.cancel(None, request().requester)
    with pytest.raises(RateLimited) as caught:
        await engine.submit(request())
    assert 0 < caught.value.retry_after <= 60
    assert "2/minute" in caught.value.user_message


async def test_admins_skip_caps_and_rate_limits(engine_factory):
    engine, _ = await _blocked(engine_factory, rate_limit="1/minute", max_pending_per_user=1, admins=["test:boss"])
    for _ in range(3):
        await engine.submit(request(user="boss"))
    assert len(engine.jobs) == 3


@pytest.mark.parametrize(("prompt", "options", "message"), [
    ("   ", {}, "empty"),
    ("x" * 501, {}, "at most 500"),
    ("bell\x07", {}, "control character"),
    ("ok", {"steps": 31}, "at most 30 steps"),
    ("ok", {"aspect_ratio": "9:1"}, "too extreme"),
    ("ok", {"negative_prompt": "\x00"}, "control character"),
])
async def test_invalid_requests_are_refused_before_queueing(engine_factory, prompt, options, message):
    engine, _ = await engine_factory()
    with pytest.raises(InvalidRequest, match=message):
        await engine.submit(request(prompt, **options))
    assert not engine.jobs


async def test_multiline_prompts_with_tabs_are_valid(engine_factory):
    engine, backend = await engine_factory()
    handle = await engine.submit(request("line one\n\tline two"))
    await handle.result()
    assert backend.models["a"].calls[0].prompt == "line one\n\tline two"


async def test_unknown_model_lists_the_available_ones(engine_factory):
    engine, _ = await engine_factory({"flux": {"backend": "fake"}, "sdxl": {"backend": "fake"}})
    with pytest.raises(UnknownModel) as caught:
        await engine.submit(request(model="dalle"))
    assert caught.value.user_message == "Unknown model 'dalle'. Available models: flux, sdxl."


async def test_aspect_ratio_maps_to_a_supported_size(engine_factory):
    engine, backend = await engine_factory()
    await (await engine.submit(request(aspect_ratio="16:9"))).result()
    size = backend.models["a"].calls[0].size
    assert size.width > size.height and abs(size.ratio - 16 / 9) < 0.05


async def test_a_ratio_the_model_cannot_approach_is_refused(engine_factory):
    from core import Capabilities, Size

    engine, backend = await engine_factory()
    backend.models["a"].capabilities = Capabilities(sizes=(Size(1024, 1024),))
    with pytest.raises(InvalidRequest, match=r"cannot make 16:9 images; it makes 1:1 \(1024x1024\)"):
        await engine.submit(request(aspect_ratio="16:9"))
    await (await engine.submit(request(aspect_ratio="5:4"))).result()
