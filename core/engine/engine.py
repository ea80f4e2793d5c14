"""The engine: admits requests, schedules them in per-model lanes, runs them, reports events.

It knows platforms and backends only through what plugins registered; it never imports one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from pydantic import BaseModel

from core.config import Settings, load_settings
from core.engine import continuity
from core.engine.admission import Admission
from core.engine.handle import JobHandle
from core.engine.memory_queue import InMemoryQueue
from core.engine.queue import JobQueue, LaneSnapshot, QueueOrder
from core.engine.retry import RetryPolicy
from core.engine.runner import JobRunner
from core.engine.scheduler import LaneScheduler
from core.errors import (
    ConfigError,
    JobCancelled,
    JobNotFound,
    ServiceStopping,
)
from core.hooks.assembly import assemble
from core.hooks.call import lifecycle, notify
from core.hooks.defaults import DefaultModel
from core.hooks.host import PluginHost, create_plugin_host
from core.hooks.registry import Registry
from core.http import create_http_client
from core.interfaces import ImageModel, Platform
from core.store import JobStore
from core.store.observer import StoreObserver
from core.types import EventKind, ImageRequest, Job, JobEvent, JobState, Requester

log = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "The bot is shutting down, so your request was cancelled. Please send it again later."
RECENT_JOBS = 1000
FINAL_KINDS = {JobState.DONE: EventKind.DONE, JobState.FAILED: EventKind.FAILED,
               JobState.CANCELLED: EventKind.CANCELLED}


class Engine:
    """Platform-neutral image generation with fair, bounded, per-model queues."""

    def __init__(self, settings: Settings, host: PluginHost, *, queue: JobQueue | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.host = host
        self.hook = host.hook
        host.add(DefaultModel(settings.engine.default_model), "sakaibot.default-model", source="core")
        self.store: JobStore | None = None
        if settings.store.path:
            self.store = JobStore(settings.store.path)
            observer = StoreObserver(self.store, settings.store.archive_dir, settings.store.archive_days)
            host.add(observer, "sakaibot.store", source="core")
        self.registry = Registry()
        self._http = http
        self.registry.collect(host, self)
        built = assemble(settings, self.registry, self)
        self.models: dict[str, ImageModel] = built.models
        self.model_settings = built.model_settings
        self.platform_settings = built.platform_settings
        self.plugin_settings = built.plugin_settings
        self.registry.collect_enhancers(host, self)
        self.queue: JobQueue = queue or InMemoryQueue()
        self.admission = Admission(self)
        self.runner = JobRunner(self)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.scheduler = LaneScheduler(self)
        self.jobs: dict[str, Job] = {}
        self._handles: dict[str, JobHandle] = {}
        self._policies: dict[str, RetryPolicy] = {}
        self._recent: OrderedDict[str, Job] = OrderedDict()
        self.parking = False
        self._accepting = False
        self._stopped = False
        self._closed = False
        order = QueueOrder(settings.engine.queue_order)
        for name in self.models:
            self.queue.add_lane(name, order, settings.engine.max_queue_per_lane)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, path: str | None = None, *, load_entry_points: bool = True,
                    plugins: Iterable[tuple[str, object]] = (), settings: Settings | None = None,
                    **kwargs: Any) -> Engine:
        """Load settings and plugins, then build the engine (no I/O until ``start``)."""
        settings = settings or load_settings(path)
        host = create_plugin_host(load_entry_points=load_entry_points, extra=plugins)
        return cls(settings, host, **kwargs)

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client, created on first use."""
        if self._http is None:
            self._http = create_http_client(sum(self.concurrency(name) for name in self.models))
        return self._http

    def concurrency(self, model: str) -> int:
        """How many jobs of ``model`` may run at once: config, else the model's default."""
        configured = self.model_settings[model].concurrency
        return configured or self.models[model].capabilities.default_concurrency

    def model_timeout(self, model: str) -> float:
        """Seconds one attempt of ``model`` may take."""
        return self.model_settings[model].timeout

    def retry_policy(self, model: str) -> RetryPolicy:
        """The retry rules for ``model``."""
        policy = self._policies.get(model)
        if policy is None:
            engine = self.settings.engine
            attempts = self.model_settings[model].max_attempts or engine.max_attempts
            policy = self._policies[model] = RetryPolicy(attempts, engine.retry_initial_delay, engine.retry_max_delay)
        return policy

    def plugin_config(self, name: str) -> BaseModel | None:
        """A plugin's validated ``[plugins.<name>]`` table, or its defaults if absent."""
        if name in self.plugin_settings:
            return self.plugin_settings[name]
        section = self.registry.sections.get(name)
        return section.settings() if section else None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Run startup hooks, then start a worker per unit of lane concurrency."""
        if self.store is not None:
            await self.store.open()
        if self._http is None:  # building an SSL context reads the CA bundle: keep it off the loop
            total = sum(self.concurrency(name) for name in self.models)
            self._http = await asyncio.to_thread(create_http_client, total)
        await lifecycle(self.hook.startup, raise_errors=True, engine=self)
        self.scheduler.start()
        await asyncio.sleep(0)  # let the workers park in take(), so the first jobs go straight to them
        self._accepting = True
        log.info("engine started with models %s", ", ".join(self.models))

    async def resume(self, platform: str) -> list[JobHandle]:
        """Jobs ``platform`` left when the last process stopped, queued again in their original order.

        A platform calls this once it is ready to deliver. Jobs of platforms that never ask (a one-off
        ``sakaibot generate``) stay in the store.
        """
        return [] if self.store is None else await continuity.resume(self, self.store, platform)

    async def requeue(self, job: Job) -> JobHandle:
        """Put a stored job back in its lane, past the caps it already passed once."""
        job.state, job.position, job.started_at = JobState.QUEUED, None, None
        handle = self._track(job)
        await self.queue.put(job, force=True)
        self.scheduler.mark_dirty(job.model)
        await self.emit(job, EventKind.QUEUED)
        return handle

    async def begin_delivery(self, job_id: str) -> bool:
        """A platform is about to send a result: ``True`` to go ahead, ``False`` to skip it.

        ``False`` means it was delivered already, or a crash interrupted a send twice (the resend
        after a crash is the only one allowed). Call ``delivered`` once the send succeeded.
        """
        if self.store is None:
            return True
        return await self.store.begin_delivery(job_id)

    async def past_job(self, job_id: str) -> Job | None:
        """A job by exact id, live or finished, with its whole request (for Reroll, Variation, /info)."""
        job = self.recent_job(job_id)
        if job is None and self.store is not None:
            job = await self.store.job(job_id)
        return job

    async def delivered(self, job_id: str) -> bool:
        """A platform delivered the image; ``False`` if it had been delivered already."""
        if self.store is None:
            return True
        return await self.store.mark_delivered(job_id)

    async def stop(self, grace: float | None = None) -> None:
        """``quiesce`` then ``close``: no job left running, every resource released."""
        await self.quiesce(grace)
        await self.close()

    async def quiesce(self, grace: float | None = None) -> None:
        """Stop accepting; suspend (with a store) or cancel waiting jobs; give running ones ``grace`` s.

        Platforms are still up meanwhile, so the last results and messages reach their users.
        """
        if self._stopped:
            return
        self._stopped = True
        self._accepting = False
        grace = self.settings.engine.shutdown_grace if grace is None else grace
        self.parking = self.store is not None
        if self.parking:
            await self._suspend_waiting()
        else:
            await self._cancel_waiting(SHUTDOWN_MESSAGE)
        await self.scheduler.drain(grace, self._cancelled_by_shutdown)
        await self.queue.close()
        await self.scheduler.stop()

    async def close(self) -> None:
        """Shutdown hooks, then models, HTTP client and store; once, after ``quiesce``."""
        if self._closed:
            return
        self._closed = True
        await self.quiesce()
        await lifecycle(self.hook.shutdown, raise_errors=False, engine=self)
        await self._close_resources()
        if self.store is not None:
            await self.store.close()
        log.info("engine stopped")

    async def _cancel_waiting(self, message: str) -> None:
        for job in [j for j in self.jobs.values() if j.state is JobState.QUEUED]:
            if await self.queue.remove(job.id) is not None:
                await self.finish(job, JobState.CANCELLED, JobCancelled(message))

    async def _suspend_waiting(self) -> None:
        """With a store, waiting jobs stay saved as queued and run after the restart."""
        for job in [j for j in self.jobs.values() if j.state is JobState.QUEUED]:
            if await self.queue.remove(job.id) is not None:
                await continuity.suspend(self, job)

    async def park(self, job: Job) -> None:
        """An interrupted job is kept for the next start (used by the runner when stopping)."""
        await continuity.suspend(self, job)

    def _cancelled_by_shutdown(self, job_id: str) -> None:
        if not self.parking and job_id in self.jobs:
            self.jobs[job_id].error = JobCancelled(SHUTDOWN_MESSAGE)

    async def _close_resources(self) -> None:
        for model in self.models.values():
            try:
                await model.aclose()
            except Exception:
                log.exception("model %s failed to close", model.name)
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- requests
    async def submit(self, request: ImageRequest) -> JobHandle:
        """Admit a request and queue it; raise a ``SakaiError`` and change nothing if refused."""
        if not self._accepting:
            raise ServiceStopping()
        name, generation = await self.admission.check(request)
        job = Job(id=self._new_id(), request=request, model=name, generation=generation)
        handle = self._track(job)
        try:
            await self.queue.put(job)
        except BaseException:
            self.forget(job)
            raise
        self.admission.admitted(request)
        self.scheduler.mark_dirty(name)
        await self.emit(job, EventKind.QUEUED)
        return handle

    def choose_model(self, request: ImageRequest) -> str:
        """The model a request runs on, or ``UnknownModel`` listing the available ones."""
        return self.admission.choose_model(request)

    def is_admin(self, requester: Requester) -> bool:
        """Admins skip caps, rate limits and quotas, and may cancel anyone's job."""
        return self.admission.is_admin(requester)

    def _new_id(self) -> str:
        while True:
            job_id = secrets.token_hex(6)
            if job_id not in self.jobs:
                return job_id

    def _track(self, job: Job) -> JobHandle:
        handle = JobHandle(job)
        self.jobs[job.id] = job
        self._handles[job.id] = handle
        self.admission.pending[job.user_key] += 1
        return handle

    def forget(self, job: Job) -> None:
        """Stop tracking ``job`` in this process (it finished, or is kept for the next one)."""
        self.jobs.pop(job.id, None)
        self._handles.pop(job.id, None)
        pending = self.admission.pending
        pending[job.user_key] -= 1
        if pending[job.user_key] <= 0:
            del pending[job.user_key]

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a live job, to follow its events (e.g. after a platform reconnects)."""
        return self._handles.get(job_id)

    # ----------------------------------------------------------------- cancel and look up
    def find_job(self, job_id: str | None, by: Requester) -> Job:
        """A live job by id or unique id prefix; without an id, the caller's newest job."""
        visible = [j for j in self.jobs.values()
                   if self._may_touch(j, by) and not isinstance(j.error, JobCancelled)]
        if job_id:
            key = job_id.strip().lower()
            visible = [j for j in visible if j.id.startswith(key)]
        if not visible:
            raise JobNotFound("No such job of yours is waiting or running." if job_id else
                              "You have no job waiting or running.")
        if job_id and len(visible) > 1:
            raise JobNotFound(f"'{job_id}' matches several jobs; give more of the id.")
        return max(visible, key=lambda j: j.created_at)

    def _may_touch(self, job: Job, by: Requester) -> bool:
        owner = job.request.requester
        return self.is_admin(by) or (owner.platform, owner.user_id) == (by.platform, by.user_id)

    async def cancel(self, job_id: str | None, by: Requester) -> Job:
        """Cancel a waiting or running job of ``by`` (any job, for an admin)."""
        job = self.find_job(job_id, by)
        mine = job.request.requester.user_id == by.user_id
        error = JobCancelled("Cancelled." if mine else "Cancelled by an admin.")
        if await self.queue.remove(job.id) is not None:
            self.scheduler.mark_dirty(job.model)
            await self.finish(job, JobState.CANCELLED, error)
            return job
        task = self.scheduler.running.get(job.id)
        if task is None:  # handed to a worker that has not started it yet: it will skip the job
            await self.finish(job, JobState.CANCELLED, error)
            return job
        job.error = error
        handle = self._handles[job.id]
        task.cancel()
        await handle.wait()
        return job

    def snapshot(self) -> dict[str, LaneSnapshot]:
        """Every lane's waiting jobs in the order they will run."""
        return {name: self.queue.snapshot(name) for name in self.models}

    @property
    def position_interval(self) -> float:
        """Seconds between position pushes in one lane."""
        return self.scheduler.position_interval

    @position_interval.setter
    def position_interval(self, value: float) -> None:
        self.scheduler.position_interval = value

    def running(self, model: str | None = None) -> list[Job]:
        """Jobs being enhanced or generated now."""
        return [j for j in self.jobs.values()
                if j.state in (JobState.ENHANCING, JobState.GENERATING) and model in (None, j.model)]

    # ----------------------------------------------------------------- events
    async def emit(self, job: Job, kind: EventKind, **fields: Any) -> None:
        """Deliver an event to the job's handle and to ``on_job_event`` observers."""
        event = JobEvent(kind, job, **fields)
        # Observers first: the job store has written a state before any platform acts on it.
        await notify(self.hook.on_job_event, event=event, engine=self)
        handle = self._handles.get(job.id)
        if handle is not None:
            handle.push(event)

    async def set_state(self, job: Job, state: JobState, kind: EventKind) -> None:
        """Move a running job to ``state`` and tell everyone."""
        job.state = state
        job.position = None
        await self.emit(job, kind)

    async def finish(self, job: Job, state: JobState, error: BaseException | None = None) -> None:
        """Record a job's end and emit its final event, exactly once."""
        if job.state.finished:
            return
        job.state, job.error, job.finished_at = state, error, time.time()
        message = self.render_error(job, error) if error is not None else None
        await self.emit(job, FINAL_KINDS[state], message=message)
        self.forget(job)
        self.remember(job)

    def remember(self, job: Job) -> None:
        """Keep a finished job in memory for buttons and /info (the last ``RECENT_JOBS``)."""
        self._recent[job.id] = job
        if len(self._recent) > RECENT_JOBS:
            self._recent.popitem(last=False)

    def recent_job(self, job_id: str) -> Job | None:
        """A finished job still in memory (the last ``RECENT_JOBS``), e.g. for a reroll button."""
        return self._recent.get(job_id) or self.jobs.get(job_id)

    def progress_for(self, job: Job) -> Callable[..., Awaitable[None]]:
        """The callback a model calls to report progress on ``job``."""
        async def progress(fraction: float, preview: bytes | None = None) -> None:
            await self.emit(job, EventKind.PROGRESS, progress=min(1.0, max(0.0, float(fraction))),
                            preview=preview)
        return progress

    def render_error(self, job: Job | None, error: BaseException) -> str:
        """The text a user sees for ``error``, from the ``render_error`` hook."""
        return self.hook.render_error(job=job, error=error)

    # ----------------------------------------------------------------- platforms
    def enabled_platforms(self) -> list[Platform]:
        """Create the platforms enabled in config."""
        created = []
        for name, settings in self.platform_settings.items():
            if settings.enabled:
                created.append(self.registry.platforms[name].create(settings))
        return created

    async def serve(self, platforms: list[Platform] | None = None) -> None:
        """Start the platforms and serve until every one of them is done or this is cancelled."""
        platforms = self.enabled_platforms() if platforms is None else platforms
        if not platforms:
            raise ConfigError(["platforms: none is enabled; set enabled = true under [platforms.<name>]"])
        started = []
        try:
            for platform in platforms:
                await platform.start(self)
                started.append(platform)
            await asyncio.gather(*(p.wait_closed() for p in started))
        finally:
            await self.quiesce()  # jobs end (or are kept) while platforms can still deliver
            for platform in reversed(started):
                await _quietly(platform.stop(), f"platform {platform.name} failed to stop")


async def _quietly(awaitable: Awaitable[Any], message: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception(message)
