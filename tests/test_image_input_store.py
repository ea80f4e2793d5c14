"""Pictures and batches in the job store: a restart keeps the input picture and every undelivered image."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

from PIL import Image as PILImage

from core.engine import Engine
from core.store import JobStore
from core.store.migrations import migrate
from core.types import EventKind
from tests.test_input_images import GPS_IFD, photo_with_gps
from tests.utils import FakeBackendPlugin, make_engine, request

BOUND = 10.0
MODELS = {"a": {"backend": "fake", "inputs": {"image_to_image": True, "strength": True, "masks": True}}}


def engine_on(path: Path) -> tuple[Engine, FakeBackendPlugin]:
    """An engine on the store file ``path`` with one fake model that takes pictures."""
    return make_engine(MODELS, store={"path": str(path)}, max_pending_per_user=100)


async def test_a_restart_between_the_request_and_the_result_keeps_the_input_picture(tmp_path):
    path = tmp_path / "jobs.db"
    first, backend = engine_on(path)
    await first.start()
    backend.models["a"].gate = asyncio.Event()  # blocks the first job: the second waits in the queue
    running = await first.submit(request("first", seed=1))
    mask = PILImage.new("L", (40, 20), 255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    waiting = await first.submit(request("make it dusk", seed=5, images=(photo_with_gps(orientation=1),),
                                         mask=buffer.getvalue(), strength=0.7))
    cleaned, cleaned_mask, asked = waiting.job.request.images, waiting.job.request.mask, waiting.job.generation
    await first.stop(grace=0.1)  # engine stopped: the waiting job stays queued in the file
    assert running.id != waiting.id

    second, backend = engine_on(path)
    await second.start()
    try:
        handles = {handle.id: handle for handle in await second.resume("test")}
        resumed = handles[waiting.id]
        assert (await asyncio.wait_for(resumed.wait(), BOUND)).kind is EventKind.DONE
        (call,) = [c for c in backend.models["a"].calls if c.prompt == "make it dusk"]
        assert tuple(image.data for image in call.images) == cleaned and call.images == asked.images
        assert call.mask is not None and call.mask.data == cleaned_mask and call.strength == 0.7
        with PILImage.open(io.BytesIO(call.images[0].data)) as picture:
            assert not picture.getexif().get_ifd(GPS_IFD)  # what was kept is the cleaned picture
        past = await second.past_job(waiting.id)  # a reroll after the restart has the picture too
        assert past is not None and past.request.images == cleaned
    finally:
        await second.stop(grace=1)
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT request FROM jobs WHERE id = ?", (waiting.id,)).fetchone()[0]
        inputs = db.execute("SELECT idx, length(data) FROM job_inputs WHERE job_id = ? ORDER BY idx",
                            (waiting.id,)).fetchall()
    assert '"images"' not in stored and len(stored) < 1000  # the bytes are beside the row, not base64 in it
    assert inputs == [(-1, len(cleaned_mask)), (0, len(cleaned[0]))]


async def test_four_images_made_before_a_crash_are_all_delivered_after_the_restart(tmp_path):
    path = tmp_path / "jobs.db"
    first, _ = engine_on(path)
    await first.start()
    handle = await first.submit(request("a fox", seed=10, count=4))
    assert (await asyncio.wait_for(handle.wait(), BOUND)).kind is EventKind.DONE
    made = [image.data for image in handle.job.results]
    await first.stop()  # done, never delivered: what a crash before the send leaves

    second, _ = engine_on(path)
    await second.start()
    try:
        (again,) = await second.resume("test")
        assert [image.data for image in again.job.results] == made
        assert [image.seed for image in again.job.results] == [10, 11, 12, 13]
        assert await second.begin_delivery(again.id) and await second.delivered(again.id)
    finally:
        await second.stop()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM pending_results").fetchone()[0] == 0
        assert db.execute("SELECT images FROM jobs WHERE id = ?", (handle.id,)).fetchone()[0] == 4


async def test_schema_4_files_keep_their_pending_image_through_step_5(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db, target=4)
        db.execute("INSERT INTO jobs (id, platform, user_id, model, state, request, generation, result, created_at,"
                   " finished_at) VALUES ('j1', 'test', 'u1', 'a', 'done', ?, ?, ?, 1.0, 2.0)",
                   (request("old").model_dump_json(exclude={"images", "mask"}),
                    '{"prompt": "old", "width": 8, "height": 8, "seed": 3, "negative_prompt": null, "steps": null,'
                    ' "original_prompt": "old"}',
                    '{"mime_type": "image/png", "width": 8, "height": 8, "seed": 3, "bytes": 5, "metadata": {}}'))
        db.execute("INSERT INTO pending_results (job_id, data) VALUES ('j1', x'89504e4701')")
    store = JobStore(path)
    await store.open()
    try:
        (job,) = await store.undelivered("test")
        assert [image.data for image in job.results] == [b"\x89PNG\x01"] and job.result.seed == 3
        assert job.generation.images == () and job.generation.strength is None
        assert await store.used_today("test", "u1", "a") == 0  # created in 1970: not today
    finally:
        await store.close()


async def test_old_remembered_jobs_drop_their_pictures_and_a_reroll_reads_them_from_the_store(tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr("core.engine.jobs.RECENT_INPUTS", 1)
    engine, _ = engine_on(tmp_path / "jobs.db")
    await engine.start()
    try:
        handles = [await engine.submit(request(f"picture {n}", images=(photo_with_gps(),))) for n in range(2)]
        for handle in handles:
            await asyncio.wait_for(handle.wait(), BOUND)
        older, newer = (engine.recent_job(handle.id) for handle in handles)
        assert older is not None and older.request.images == () and older.generation.images == ()
        assert newer is not None and newer.request.images == handles[1].job.request.images  # the newest keeps them
        past = await engine.past_job(handles[0].id)
        assert past is not None and past.request.images == handles[0].job.request.images
        assert past.generation.images[0].width == 20
    finally:
        await engine.stop()
