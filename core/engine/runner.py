"""Running one job: enhance, let plugins veto, generate with retries and a timeout, report.

Every failure ends as a ``SakaiError`` on the job; anything unexpected is logged with its
traceback and shown to the user as a plain ``BackendError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from core.engine.deadline import within
from core.engine.events import EventPath
from core.engine.isolation import Isolation
from core.engine.lanes import Lanes
from core.engine.provenance import provenance, with_text_chunks
from core.engine.retry import OnRetry
from core.engine.validation import check_prompt
from core.errors import BackendError, BackendTimeout, JobCancelled, SakaiError, UserError
from core.hooks.call import notify, pipeline
from core.hooks.index import HookIndex
from core.interfaces import Enhancer, ImageModel
from core.types import EventKind, Image, Job, JobState

log = logging.getLogger(__name__)


class JobRunner:
    """Takes one claimed job to its end state."""

    def __init__(self, models: dict[str, ImageModel], enhancers: list[Enhancer], lanes: Lanes,
                 events: EventPath, hooks: HookIndex, view: object, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.models = models
        self.enhancers = enhancers
        self.lanes = lanes
        self.events = events
        self.hooks = hooks
        self.hook = hooks.relay
        self.view = view
        self.sleep = sleep
        self.parking = False  # set on shutdown with a store: interrupted jobs are kept, not cancelled
        self.isolation = Isolation()

    async def run(self, job: Job) -> None:
        """Run ``job``; its final event is always emitted, whatever happens.

        Raises ``StoreError`` without running anything when the start cannot be recorded.
        """
        try:
            if not self.isolation.enter_now(job):
                await self.isolation.enter(job)
            try:
                ended = await self._run(job)
                if job.crashes and ended is not None:  # a suspect's end is on record before others may start
                    await asyncio.shield(ended)
            finally:
                self.isolation.leave(job)
        except asyncio.CancelledError:
            if self.parking and job.error is None and not self.events.finishing(job):  # kept for the restart
                await self.events.suspend(job)
            else:
                await self.events.finish(job, JobState.CANCELLED, job.error or JobCancelled())
            raise

    async def _run(self, job: Job) -> asyncio.Future[None] | None:
        """Record the start, enhance, let plugins veto, generate; begin the final step (its future)."""
        model = self.models[job.model]
        enhance = bool(self.enhancers) and job.request.options.enhance is not False
        await self.events.start(job, JobState.ENHANCING if enhance else JobState.GENERATING,
                                EventKind.ENHANCING if enhance else EventKind.GENERATING)
        try:
            if enhance:
                await self._enhance(job, model)
            if self.hooks.has("before_generate"):
                await pipeline(self.hook.before_generate, job=job, engine=self.view)
            images = await self._generate(job, model, switch=enhance)
        except SakaiError as exc:
            return await self._fail(job, exc)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            return await self._fail(job, _unexpected(exc))
        if self.hooks.has("after_generate"):
            return await self._succeed(job, images)
        self._keep(job, images)
        return self.events.finish_soon(job, JobState.DONE)  # the lane's slot is free while the store writes

    async def _enhance(self, job: Job, model: ImageModel) -> None:
        started = time.perf_counter()
        prompt = job.generation.prompt
        for enhancer in self.enhancers:
            prompt = await self._enhance_once(enhancer, prompt, job, model)
        job.timings["enhance"] = time.perf_counter() - started
        if prompt != job.generation.prompt:
            job.enhanced_prompt = prompt
            job.generation = dataclasses.replace(job.generation, prompt=prompt)
            await self.events.record(job, EventKind.ENHANCED, message=prompt)

    async def _enhance_once(self, enhancer: Enhancer, prompt: str, job: Job, model: ImageModel) -> str:
        """One enhancer's answer, or the prompt unchanged if it fails in any way."""
        try:
            answer = await enhancer.enhance(prompt, job.request, model)
            return check_prompt(answer, model.capabilities.max_prompt_length)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("enhancer %s failed for job %s, keeping the prompt: %s", enhancer.name, job.id, exc)
            return prompt

    async def _generate(self, job: Job, model: ImageModel, *, switch: bool) -> list[Image]:
        if switch:
            await self.events.set_state(job, JobState.GENERATING, EventKind.GENERATING)
        started = time.perf_counter()
        try:
            image = await self._attempt(job, model)
            failed = None
        except Exception as error:  # retried outside this handler: a later error is not "during" this one
            failed = error
        if failed is not None:
            image = await self.lanes.retry_policy(job.model).retry(failed, lambda: self._attempt(job, model),
                                                                   self.sleep, self._retrying(job))
        job.timings["generate"] = time.perf_counter() - started
        self.lanes.record(job.model, job.timings["generate"] + job.timings.get("enhance", 0.0))
        return image

    async def _attempt(self, job: Job, model: ImageModel) -> list[Image]:
        """One image with ``generate``; several (``--n``) with ``generate_batch``, the lane's timeout for each."""
        job.attempts += 1
        count = job.request.options.count
        timeout = self.lanes.timeout(job.model) * count
        progress = self.events.progress_for(job)
        try:
            if count == 1:
                return [await within(model.generate(job.generation, progress), timeout)]
            images = await within(model.generate_batch(job.generation, count, progress), timeout)  # the whole batch
        except TimeoutError as exc:
            raise BackendTimeout(f"The {job.model} model did not answer within {timeout:g} s.") from exc
        if len(images) != count:
            raise BackendError(detail=f"{job.model} made {len(images)} images for a batch of {count}")
        return list(images)

    def _retrying(self, job: Job) -> OnRetry:
        async def report(attempt: int, error: BaseException, delay: float) -> None:
            log.info("job %s attempt %d failed (%r); retrying in %.1f s", job.id, attempt, error, delay)
            await self.events.record(job, EventKind.RETRYING, message=f"retrying in {delay:.0f} s")
        return report

    async def _succeed(self, job: Job, images: list[Image]) -> asyncio.Future[None] | None:
        self._keep(job, images)
        # once per job; a plugin finds every image in job.results
        await notify(self.hook.after_generate, job=job, result=images[0], engine=self.view)
        return self.events.finish_soon(job, JobState.DONE)

    def _keep(self, job: Job, images: list[Image]) -> None:
        """The images become the job's results, each stamped with its model, timings and provenance."""
        for index, image in enumerate(images):
            image.model = image.model or job.model
            image.timings.update(job.timings)
            if image.mime_type == "image/png":
                image.data = with_text_chunks(image.data, provenance(job, image, index))
        job.results = images

    async def _fail(self, job: Job, error: SakaiError) -> asyncio.Future[None] | None:
        level = logging.INFO if isinstance(error, UserError) else logging.WARNING
        log.log(level, "job %s failed: %s: %s", job.id, type(error).__name__, error,
                exc_info=error.__cause__ is not None)
        if self.hooks.has("on_generation_error"):
            await notify(self.hook.on_generation_error, job=job, error=error, engine=self.view)
        state = JobState.CANCELLED if isinstance(error, JobCancelled) else JobState.FAILED
        return self.events.finish_soon(job, state, error)


def _unexpected(exc: Exception) -> BackendError:
    error = BackendError(detail=f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error

