"""The job store on a real SQLite file: layering, quotas, history, info, bans, migrations, concurrency."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import time

import pytest
from PIL import Image as PILImage

from core import PermissionDenied, QuotaExceeded
from core.chat import ChatService, JobReply
from core.store import JobStore
from core.store.migrations import LATEST, migrate, version
from core.types import EventKind, JobState
from tests.utils import make_engine, request, requester


@pytest.fixture
async def stored(tmp_path):
    """An engine with a store, started, and a chat service on it."""
    engines = []

    async def build(**settings):
        settings.setdefault("max_pending_per_user", 50)
        store = {"path": str(tmp_path / "jobs.db"), **settings.pop("store", {})}
        engine, backend = make_engine({"a": {"backend": "fake"}, "b": {"backend": "fake", "daily_quota": 2}},
                                      store=store, **settings)
        await engine.start()
        engines.append(engine)
        return engine, backend, ChatService(engine)

    yield build
    for engine in engines:
        await engine.stop(grace=1)


async def _say(chat: ChatService, text: str, who=None) -> str:
    reply = await chat.handle(text, who or requester())
    if isinstance(reply, JobReply):
        await reply.handle.wait()
        return reply.handle.id
    return reply.text


async def test_settings_layer_chat_user_and_pins(stored):
    engine, backend, chat = await stored(admins=["test:root"])
    root, alice = requester("root"), requester("alice")
    assert "Only admins" in await _say(chat, "/settings chat model b", alice)
    await _say(chat, "/settings chat aspect 16:9", root)
    await _say(chat, "/settings model b", alice)
    await _say(chat, "/image a fox", alice)
    sent = backend.models["b"].calls[-1]
    assert sent.size.width > sent.size.height  # chat default aspect, user's model
    await _say(chat, "/settings pin enhance off", root)
    await _say(chat, "/settings pin model a", root)
    job_id = await _say(chat, "/image=b=a fox", alice)
    job = engine.recent_job(job_id)
    assert job.model == "a" and job.request.options.enhance is False  # pinned beats what the command says
    shown = await _say(chat, "/settings", alice)
    assert "model: a (pinned by an admin)" in shown and "aspect: 16:9 (chat default)" in shown
    assert await _say(chat, "/settings reset", alice) == "Your settings are back to the defaults."
    assert "Unknown model 'nope'" in await _say(chat, "/settings model nope", alice)
    assert "on or off" in await _say(chat, "/settings enhance maybe", alice)


async def test_daily_quota_refuses_with_the_reset_time_and_resets_the_next_day(stored, tmp_path):
    engine, _, _ = await stored()
    for _ in range(2):
        await (await engine.submit(request(model="b"))).wait()
    with pytest.raises(QuotaExceeded) as caught:
        await engine.submit(request(model="b"))
    assert "used your 2 b images for today" in caught.value.user_message
    assert "resets at 00:00 UTC" in caught.value.user_message
    await (await engine.submit(request(model="a"))).wait()  # other models are not counted
    await (await engine.submit(request(model="b", admin=True))).wait()  # admins have no quota
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        db.execute("UPDATE jobs SET created_at = created_at - 86400")
    await (await engine.submit(request(model="b"))).wait()


async def test_history_and_info(stored):
    _engine, _, chat = await stored()
    first = await _say(chat, "/image=a=a lighthouse --seed 9 --ar 3:2")
    second = await _say(chat, "/image=a=a cat")
    history = await _say(chat, "/history")
    assert history.index(second) < history.index(first) and "a lighthouse" in history
    info = await _say(chat, f"/info {first[:6]}")
    assert f"Job {first}: done" in info and "Seed: 9" in info and "Prompt: a lighthouse" in info
    assert "plugin fake-backend" in info and "'aspect_ratio': '3:2'" in info and "generate" in info
    assert "No job of yours" in await _say(chat, f"/info {first}", requester("mallory"))


async def test_bans_are_for_admins_and_refuse_every_request(stored):
    engine, _, chat = await stored(admins=["test:root"])
    assert await _say(chat, "/ban mallory", requester("alice")) == "Only admins can do that."
    assert await _say(chat, "/ban mallory", requester("root")) == "test:mallory is banned."
    with pytest.raises(PermissionDenied, match="banned"):
        await engine.submit(request(user="mallory"))
    assert await _say(chat, "/unban mallory", requester("root")) == "test:mallory is unbanned."
    await (await engine.submit(request(user="mallory"))).wait()
    stats = await _say(chat, "/stats", requester("root"))
    assert stats.startswith("Last 24 h:") and "• a: 1 jobs, 0 failed" in stats


async def test_the_png_carries_its_provenance(stored):
    _, _, chat = await stored()
    reply = await chat.handle("/image=a=a red fox --seed 3 --no blur --ar 4:3", requester())
    assert isinstance(reply, JobReply)
    image = await reply.handle.result()
    with PILImage.open(io.BytesIO(image.data)) as picture:
        text = picture.text
    assert text["prompt"] == "a red fox" and text["seed"] == "3" and text["model"] == "a"
    assert json.loads(text["options"])["negative_prompt"] == "blur" and text["job"] == reply.handle.id


async def test_graceful_stop_keeps_waiting_jobs_and_the_next_start_runs_them_in_order(tmp_path):
    path = str(tmp_path / "jobs.db")
    engine, backend = make_engine(store={"path": path}, max_pending_per_user=20)
    await engine.start()
    backend.models["a"].gate = asyncio.Event()
    handles = [await engine.submit(request(f"p{n}", user=f"u{n}")) for n in range(4)]
    await asyncio.sleep(0.05)
    await engine.stop(grace=0.05)
    assert [(await h.wait()).kind for h in handles] == [EventKind.SUSPENDED] * 4
    again, backend = make_engine(store={"path": path}, max_pending_per_user=20)
    await again.start()
    resumed = await again.resume("test")
    assert [h.job.request.prompt for h in resumed] == ["p0", "p1", "p2", "p3"]
    await asyncio.gather(*(h.wait() for h in resumed))
    assert [c.prompt for c in backend.models["a"].calls] == ["p0", "p1", "p2", "p3"]
    assert all(h.job.state is JobState.DONE for h in resumed)
    for handle in resumed:
        assert await again.delivered(handle.id) is True
        assert await again.delivered(handle.id) is False  # never twice
    await again.stop()


async def test_archive_keeps_images_and_drops_old_ones(stored, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    old = archive / "old.png"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 40 * 86400, time.time() - 40 * 86400))
    _engine, _, chat = await stored(store={"archive_dir": str(archive), "archive_days": 30})
    job_id = await _say(chat, "/image=a=kept")
    assert (archive / f"{job_id}.png").exists() and not old.exists()


async def test_migrating_a_first_release_file_keeps_its_jobs(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path, isolation_level=None) as conn:
        assert migrate(conn, target=1) == 1
        conn.execute("INSERT INTO jobs (id, platform, user_id, model, state, request, generation, created_at) VALUES"
                     " ('abc123abc123', 'test', 'u1', 'a', 'done', ?, ?, ?)",
                     (request("from the old days").model_dump_json(),
                      '{"prompt": "x", "width": 8, "height": 8, "seed": 1, "negative_prompt": null, "steps": null,'
                      ' "original_prompt": "x"}', time.time()))
    store = JobStore(path)
    await store.open()
    try:
        history = await store.history("test", "u1")
        assert history[0].prompt == "from the old days" and history[0].delivered_at is None
        await store.set_setting("user", "test:u1", "model", "a")  # a table step 2 added
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert version(conn) == LATEST


async def test_concurrent_writers_lose_no_update(tmp_path):
    path = tmp_path / "shared.db"
    first, second = JobStore(path), JobStore(path)  # two connections on one file (one process: one lock)
    await first.open()
    await second.open()
    engine, _ = make_engine()
    jobs = [engine_job(engine, n) for n in range(200)]
    try:
        await asyncio.gather(*(first.enqueue(j, None) for j in jobs[::2]),
                             *(second.enqueue(j, None) for j in jobs[1::2]))
        results = await asyncio.gather(*(store.mark_delivered(j.id) for j in jobs for store in (first, second)))
        assert sum(results) == 200  # each job marked delivered exactly once
        assert len(await first.history("test", "u1", 500)) == 200
    finally:
        await first.close()
        await second.close()


def engine_job(engine, n):
    from core.engine.validation import resolve
    from core.types import Job

    req = request(f"job {n}")
    return Job(id=f"{n:012x}", request=req, model="a", generation=resolve(req, engine.models["a"].capabilities))
