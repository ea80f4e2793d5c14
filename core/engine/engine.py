"""The engine: the one composer. It builds each part with exactly what that part uses.

It knows platforms and backends only through what plugins registered; it never imports one.
Parts never see the engine: the runner gets models, enhancers, lanes and the event path; the
scheduler gets lanes, the queue, the runner, the event path and the job table; plugins get an
``EngineView``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel

from core.config import Settings, load_settings
from core.engine.admission import Admission, UserLimits
from core.engine.cancelling import Canceller
from core.engine.cluster_front import ClusterFront
from core.engine.cluster_node import node_id
from core.engine.cluster_registry import ClusterView, cluster_view
from core.engine.cluster_worker import ClusterWorker
from core.engine.continuity import Continuity
from core.engine.delivery import Deliveries
from core.engine.events import EventPath
from core.engine.handle import JobHandle
from core.engine.health import StoreHealth
from core.engine.intake import with_inputs
from core.engine.jobs import JobTable
from core.engine.lanes import Lanes
from core.engine.limits_keeper import LimitsKeeper
from core.engine.queue import JobQueue, LaneLoad, LaneSnapshot, QueueOrder
from core.engine.queues import create_queue
from core.engine.redis_link import QueueUnavailable
from core.engine.redis_queue import RedisQueue
from core.engine.runner import JobRunner
from core.engine.scheduler import LaneScheduler
from core.errors import (
    ConfigError,
    JobCancelled,
    QueueFull,
    ServiceStopping,
    StoreError,
    StoreUncertain,
)
from core.hooks.assembly import assemble
from core.hooks.call import lifecycle
from core.hooks.defaults import DefaultModel
from core.hooks.host import PluginHost, create_plugin_host
from core.hooks.registry import Registry
from core.http import create_http_client
from core.interfaces import Enhancer, ImageModel, Platform
from core.store import JobStore
from core.store.archive import ImageArchive
from core.types import EventKind, ImageRequest, Job, JobState, Requester

log = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "The bot is shutting down, so your request was cancelled. Please send it again later."
INTERRUPTED = "Your request was interrupted before it was queued. Please send it again."


class Engine:
    """Platform-neutral image generation with fair, bounded, per-model queues."""

    def __init__(self, settings: Settings, host: PluginHost, *, queue: JobQueue | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.host = host
        self.hook = host.hook
        self.hooks = host.hooks  # the same hooks, with which ones have implementations cached
        self._http = http
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        host.add(DefaultModel(settings.engine.default_model), "sakaibot.default-model", source="core")
        if settings.store.archive_dir:
            archive = ImageArchive(settings.store.archive_dir, settings.store.archive_days)
            host.add(archive, "sakaibot.archive", source="core")
        self.node = node_id(settings)
        self.local_worker = settings.queue.local_worker  # `sakaibot run --no-worker` turns it off
        self._build_plugins(settings)
        self._build_parts(settings, queue)

    def _build_plugins(self, settings: Settings) -> None:
        self.models: dict[str, ImageModel] = {}
        self.registry = Registry()
        self.registry.collect(host=self.host, engine=self)
        built = assemble(settings, self.registry, self)
        self.models.update(built.models)
        self.model_settings = built.model_settings
        self.platform_settings = built.platform_settings
        self.plugin_settings = built.plugin_settings
        self.registry.collect_enhancers(self.host, self)

    def _build_parts(self, settings: Settings, queue: JobQueue | None) -> None:
        path = settings.store.path
        self.store = JobStore(path, busy_timeout=settings.store.busy_timeout) if path else None
        self.health = StoreHealth(self.store)
        self.lanes = Lanes(self.models, self.model_settings, settings.engine)
        self.queue: JobQueue = queue or create_queue(settings, home=self.node, on_change=self._lane_changed)
        self.table = JobTable()
        shared = isinstance(self.queue, RedisQueue)
        self.events = EventPath(self.table, self.hooks, self, self.health.journal(), self.render_error,
                                self.health.failed, ended=(lambda job: self.limits.release(job)) if shared else None)
        self.admission = Admission(self.models, self.hooks, self, settings.engine, self.table.pending,
                                   self.store.is_banned if self.store else None,
                                   limits=_shared_limits(settings) if shared else None)
        self.limits = LimitsKeeper(self.admission, lambda: self.table.live.values())
        self.runner = JobRunner(self.models, self.registry.enhancers, self.lanes, self.events, self.hooks, self,
                                lambda delay: self.sleep(delay))
        self.scheduler = LaneScheduler(self.lanes, self.queue, self.runner, self.events, self.table,
                                       self.health.writable)
        self.deliveries = Deliveries(self.store, self.table, self.health)
        self.cluster = (ClusterFront(self.queue, self.node, self.table, self.events, self.store, self.requeue)
                        if isinstance(self.queue, RedisQueue) else None)
        self.worker: ClusterWorker | None = None
        self.canceller = Canceller(self.table, self.queue, self.scheduler, self.events, self.admission.is_admin,
                                   self.cluster.cancel_running if self.cluster else None)
        self.continuity = (Continuity(self.store, self.table, self.events, list(self.models), self.requeue,
                                      self.render_error) if self.store else None)
        self._inflight: dict[str, int] = dict.fromkeys(self.models, 0)
        self._accepting = self._stopped = self._closed = self._store_open = False
        self._add_lanes(self.queue, list(self.models))

    def _add_lanes(self, queue: JobQueue, names: list[str]) -> None:
        """Each model's lane; a shared queue also gets the lane's concurrency, which it enforces cluster-wide."""
        order = QueueOrder(self.settings.engine.queue_order)
        shared = isinstance(queue, RedisQueue)
        for name in names:
            queue.add_lane(name, order, self.settings.engine.max_queue_per_lane,
                           self.lanes.concurrency(name) if shared else None)

    def _lane_changed(self, lane: str) -> None:
        """Another process changed ``lane``'s order: positions are pushed again."""
        if hasattr(self, "scheduler"):
            self.scheduler.mark_dirty(lane)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, path: str | None = None, *, load_entry_points: bool = True,
                    plugins: Iterable[tuple[str, object]] = (), settings: Settings | None = None,
                    **kwargs: Any) -> Engine:
        """Load settings and plugins, then build the engine (no I/O until ``start``)."""
        settings = settings or load_settings(path)
        host = create_plugin_host(load_entry_points=load_entry_points, extra=plugins)
        return cls(settings, host, **kwargs)

    # ----------------------------------------------------------------- what plugins see (EngineView)
    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client, created on first use."""
        if self._http is None:
            self._http = create_http_client(self.lanes.total_concurrency())
        return self._http

    @property
    def enhancers(self) -> Sequence[Enhancer]:
        """The prompt enhancers, in the order they run."""
        return self.registry.enhancers

    def plugin_config(self, name: str) -> BaseModel | None:
        """A plugin's validated ``[plugins.<name>]`` table, or its defaults if absent."""
        if name in self.plugin_settings:
            return self.plugin_settings[name]
        section = self.registry.sections.get(name)
        return section.settings() if section else None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the store (counting crashed runs), run startup hooks, then start the lane workers.

        In a cluster the jobs run on workers: the front end catches up with the events they
        reported while it was away, then reads its stream; a crash of the front end is no job's
        fault, so no crash is counted. A local worker joins unless ``local_worker`` is off.
        """
        if self.store is not None:
            await self.store.open()
            self._store_open = True
            assert self.continuity is not None
            if self.cluster is None:
                await self.continuity.recover(self.settings.engine.max_crashes)
        await self._open_shared()
        if self.cluster is not None:
            await self.cluster.catch_up()
            self.cluster.start()
            self.limits.start()
            if self.local_worker:
                self._start_worker(list(self.models))
        self.scheduler.start(workers=self.cluster is None)
        self.health.start(self.settings.store.retention_days)
        await asyncio.sleep(0)  # let the workers park in take(), so the first jobs go straight to them
        self._accepting = True
        log.info("engine started with models %s%s", ", ".join(self.models),
                 f" (front end {self.node} of a cluster)" if self.cluster else "")

    async def _open_shared(self) -> None:
        """The HTTP client and the startup hooks, which front ends and workers both need."""
        if self._http is None:  # building an SSL context reads the CA bundle: keep it off the loop
            self._http = await asyncio.to_thread(create_http_client, self.lanes.total_concurrency())
        await lifecycle(self.hook.startup, raise_errors=True, engine=self)

    async def start_worker(self, models: Sequence[str] | None = None) -> ClusterWorker:
        """Run as a worker only (``sakaibot worker``): no platform, no store; jobs from the shared queue."""
        if self.cluster is None:
            raise ConfigError(['config: queue.backend: workers share a queue in Redis; set [queue] backend = "redis"'])
        names = list(models or self.models)
        unknown = [name for name in names if name not in self.models]
        if unknown:
            raise ConfigError([f"--models: {', '.join(unknown)} not configured (configured: {', '.join(self.models)})"])
        await self._open_shared()
        return self._start_worker(names)

    def _start_worker(self, names: list[str]) -> ClusterWorker:
        """A worker with its own queue connection (its own leases), serving ``names``."""
        queue = create_queue(self.settings)
        assert isinstance(queue, RedisQueue)
        self._add_lanes(queue, names)
        self.worker = ClusterWorker(queue, names, models=self.models, enhancers=self.registry.enhancers,
                                    lanes=self.lanes, hooks=self.hooks, view=self, render=self.render_error,
                                    sleep=lambda delay: self.sleep(delay), settings=self.settings.queue)
        self.worker.start()
        return self.worker

    async def resume(self, platform: str) -> list[JobHandle]:
        """Jobs ``platform`` left when the last process stopped: results to deliver, then jobs to run.

        A platform calls this once it is ready to deliver. Jobs of platforms that never ask (a one-off
        ``sakaibot generate``) stay in the store.
        """
        if self.continuity is None:
            return []
        if self.cluster is None:
            return await self.continuity.resume(platform)
        async with self.cluster.resuming:  # a worker's final event for a job being resumed waits
            return await self.continuity.resume(platform)

    async def requeue(self, job: Job) -> JobHandle:
        """Put a stored job back in its lane, past the caps it already passed once."""
        job.state, job.position, job.started_at = JobState.QUEUED, None, None
        handle = self.table.track(job)
        try:
            await self.admission.hold(job)
            await self.queue.put(job, force=True)
        except QueueUnavailable as exc:
            if self.cluster is None:
                self.table.release(job)
                raise
            log.warning("job %s waits for Redis to come back before it is queued again: %s", job.id, exc)
            self.cluster.put_when_back(job)  # its user still gets a handle, and the platform follows it
        except BaseException:
            self.table.release(job)
            raise
        self.scheduler.mark_dirty(job.model)
        await self.events.emit(job, EventKind.QUEUED)
        return handle

    async def stop(self, grace: float | None = None) -> None:
        """``quiesce`` then ``close``: no job left running, every resource released."""
        try:
            await self.quiesce(grace)
        finally:
            await self.close()

    async def quiesce(self, grace: float | None = None) -> None:
        """Stop accepting; suspend (with a store) or cancel waiting jobs; give running ones ``grace`` s.

        Platforms are still up meanwhile, so the last results and messages reach their users. Whatever
        fails on the way, the workers are stopped: a second call must never find them still running.
        """
        if self._stopped:
            return
        self._stopped, self._accepting = True, False
        grace = self.settings.engine.shutdown_grace if grace is None else grace
        if self.cluster is not None:
            await self._quiesce_cluster(grace)
            return
        self.runner.parking = self.events.journal is not None  # with a store, jobs are kept, not cancelled
        try:
            await self._set_aside_waiting()
            await self.scheduler.drain(grace, self._cancelled_by_shutdown)
            await self._set_aside_waiting()  # jobs handed back while draining (their start was not recorded)
        finally:
            await self.queue.close()
            await self.scheduler.stop()
            await self.health.stop()

    async def _quiesce_cluster(self, grace: float) -> None:
        """A cluster keeps waiting jobs in Redis and their events in this front end's stream for its return."""
        try:
            if self.worker is not None:
                await self.worker.stop(grace)
            assert self.cluster is not None
            await self.cluster.stop()
            await self.events.settle()
            await self.cluster.leave(JobCancelled(SHUTDOWN_MESSAGE))
        finally:
            await self.queue.close()
            await self.scheduler.stop()
            await self.health.stop()

    async def close(self) -> None:
        """Shutdown hooks, then models, HTTP client and store; once, after ``quiesce``."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.quiesce()
        finally:
            await lifecycle(self.hook.shutdown, raise_errors=False, engine=self)
            await self._close_resources()
        log.info("engine stopped")

    async def _set_aside_waiting(self) -> None:
        """Waiting jobs stay saved as queued (with a store) or are cancelled (without one)."""
        for job in self.table.waiting():
            if await self.queue.remove(job.id) is None:
                continue
            if self.runner.parking:
                await self.events.suspend(job)
            else:
                await self.events.finish(job, JobState.CANCELLED, JobCancelled(SHUTDOWN_MESSAGE))

    def _cancelled_by_shutdown(self, job_id: str) -> None:
        job = self.table.get(job_id)
        if not self.runner.parking and job is not None:
            job.error = JobCancelled(SHUTDOWN_MESSAGE)

    async def _close_resources(self) -> None:
        await self.limits.close()
        for model in self.models.values():
            await _quietly(model.aclose(), f"model {model.name} failed to close")
        if self._http is not None:
            await _quietly(self._http.aclose(), "the HTTP client failed to close")
        if self.store is not None and self._store_open:
            await _quietly(self.store.close(), "the job store failed to close")

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- requests
    async def submit(self, request: ImageRequest) -> JobHandle:
        """Admit a request and queue it; raise a ``SakaiError`` and change nothing if refused.

        With a store, the job is queued only once its row is committed: an acknowledged request
        survives a crash, and a failed write is a refusal the user sees.
        """
        if not self._accepting:
            raise ServiceStopping()
        self.health.check()
        name, generation = await self.admission.check(request)
        request = with_inputs(request, generation)  # the cleaned pictures: what the store and the model get
        self._reserve_room(name)
        job = Job(id=self.table.new_id(), request=request, model=name, generation=generation)
        handle = self.table.track(job)
        self.admission.admitted(request)  # counted before any await: concurrent requests see it
        written = False
        try:
            if self.admission.reserves or self.store is not None:  # else nothing counts a quota here
                quota = self._quota(job)
                if self.admission.reserves:
                    await self.admission.reserve(job, quota)
                await self._write_enqueue(job, None if self.admission.shares_quota else quota)
            written = True
            told = self.events.emit_now(job, EventKind.QUEUED, eta=self.lanes.eta(name, self.queue.waiting(name) + 1))
            if told is not None:
                await told
            await self.queue.put(job, force=True)  # after QUEUED, so no worker can overtake it
        except BaseException as exc:
            await self._abandon(job, saved=written or isinstance(exc, asyncio.CancelledError))
            raise
        finally:
            self._inflight[name] -= 1
        self.scheduler.mark_dirty(name)
        return handle

    async def _abandon(self, job: Job, *, saved: bool) -> None:
        """A submit that did not finish: a row that may be saved is ended, so a restart never runs it."""
        if saved:  # a cancelled writer's transaction still commits: treat it as saved
            await self.events.finish(job, JobState.CANCELLED, JobCancelled(INTERRUPTED))
        else:
            self.table.release(job)
            if self.admission.shares_quota:
                self.limits.release(job)

    def _reserve_room(self, lane: str) -> None:
        """A place in ``lane``, counting jobs whose durable write is still in flight."""
        if self.queue.waiting(lane) + self._inflight[lane] >= self.lanes.capacity:
            raise QueueFull(f"The {lane} queue is full ({self.queue.waiting(lane)} waiting). "
                            "Try again in a few minutes.")
        self._inflight[lane] += 1

    def _quota(self, job: Job) -> int | None:
        """The daily quota of ``job``'s user on its model (``None``: none, or an admin)."""
        if self.admission.is_admin(job.request.requester):
            return None
        return self.model_settings[job.model].daily_quota or self.settings.engine.daily_quota

    async def _write_enqueue(self, job: Job, quota: int | None) -> None:
        if self.store is None:
            return
        try:
            await self.store.enqueue(job, quota)
        except StoreError as exc:
            log.error("job store refused a new job: %s", exc)
            if isinstance(exc, StoreUncertain):  # refused, yet maybe saved: ended before the store is healthy again
                self.health.refused_unsure(job.id)
            self.health.failed(exc)
            raise

    def choose_model(self, request: ImageRequest) -> str:
        """The model a request runs on, or ``UnknownModel`` listing the available ones."""
        return self.admission.choose_model(request)

    def is_admin(self, requester: Requester) -> bool:
        """Admins skip caps, rate limits and quotas, and may cancel anyone's job."""
        return self.admission.is_admin(requester)

    @property
    def jobs(self) -> Mapping[str, Job]:
        """This process's live jobs by id."""
        return self.table.live

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a live job, to follow its events (e.g. after a platform reconnects)."""
        return self.table.handle(job_id)

    # ----------------------------------------------------------------- delivery (core/engine/delivery.py)
    async def begin_delivery(self, job_id: str) -> bool:
        """A platform is about to send a result: ``True`` to go ahead, ``False`` to skip it (see ``Deliveries``)."""
        return await self.deliveries.begin(job_id)

    async def note_delivery(self, job_id: str, fields: dict[str, str]) -> None:
        """Add to where a job is answered (e.g. a preview message), so a restart can tidy it."""
        await self.deliveries.note(job_id, fields)

    async def delivered(self, job_id: str) -> bool:
        """A platform delivered the image; ``False`` if it had been delivered already."""
        return await self.deliveries.done(job_id)

    async def past_job(self, job_id: str) -> Job | None:
        """A job by exact id, live or finished, with its whole request (for Reroll, Variation, /info)."""
        return await self.deliveries.past_job(job_id)

    def recent_job(self, job_id: str) -> Job | None:
        """A live job, or a finished one this process still remembers (its request, not its image)."""
        return self.table.recent(job_id)

    # ----------------------------------------------------------------- cancel and look up
    def find_job(self, job_id: str | None, by: Requester) -> Job:
        """A live job by id or unique id prefix; without an id, the caller's newest job."""
        return self.canceller.find(job_id, by)

    async def cancel(self, job_id: str | None, by: Requester) -> Job:
        """Cancel a waiting or running job of ``by`` (any job, for an admin); returns once it has ended."""
        return await self.canceller.cancel(job_id, by)

    def lane_loads(self) -> list[LaneLoad]:
        """Every lane's waiting and running counts, in O(lanes + running jobs)."""
        if isinstance(self.queue, RedisQueue):
            queue = self.queue
            return [LaneLoad(name, queue.waiting(name), queue.running(name), self.lanes.concurrency(name))
                    for name in self.models]
        running: dict[str, int] = dict.fromkeys(self.models, 0)
        for job_id in self.scheduler.running:
            job = self.table.get(job_id)
            if job is not None:
                running[job.model] += 1
        return [LaneLoad(name, self.queue.waiting(name), running[name], self.lanes.concurrency(name))
                for name in self.models]

    async def cluster_view(self) -> ClusterView:
        """Lanes read fresh from the shared queue and the workers alive; just the lanes without a cluster."""
        if not isinstance(self.queue, RedisQueue):
            return ClusterView(self.lane_loads(), None, time.time())
        limits = {name: self.lanes.concurrency(name) for name in self.models}
        return await cluster_view(self.queue.link, self.settings.queue.key_prefix, limits)

    def jobs_of(self, requester: Requester) -> list[Job]:
        """One user's live jobs, oldest first."""
        return self.table.of_user(f"{requester.platform}:{requester.user_id}")

    def snapshot(self) -> dict[str, LaneSnapshot]:
        """Every lane's waiting jobs in the order they will run (O(lane): for tests and tools, not chat)."""
        return {name: self.queue.snapshot(name) for name in self.models}

    def concurrency(self, model: str) -> int:
        """How many jobs of ``model`` may run at once."""
        return self.lanes.concurrency(model)

    @property
    def position_interval(self) -> float:
        """Seconds between position pushes in one lane (at least)."""
        return self.scheduler.position_interval

    @position_interval.setter
    def position_interval(self, value: float) -> None:
        self.scheduler.position_interval = value

    def running(self, model: str | None = None) -> list[Job]:
        """Jobs being enhanced or generated now."""
        return self.table.running(model)

    def render_error(self, job: Job | None, error: BaseException) -> str:
        """The text a user sees for ``error``, from the ``render_error`` hook."""
        return str(self.hook.render_error(job=job, error=error))

    # ----------------------------------------------------------------- platforms
    def enabled_platforms(self) -> list[Platform]:
        """Create the platforms enabled in config."""
        return [self.registry.platforms[name].create(settings)
                for name, settings in self.platform_settings.items() if settings.enabled]

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


def _shared_limits(settings: Settings) -> UserLimits:
    """Caps, quotas and rates counted in Redis (imported only in a cluster: memory mode never loads it)."""
    from core.engine.shared_limits import create_shared_limits
    return create_shared_limits(settings)
