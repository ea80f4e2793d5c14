"""Who may queue what: the model, the request's validity, bans, plugin vetoes, caps, quota and rate.

Every check runs before anything changes, so a refused request leaves no trace and uses up no rate.
Caps, quota and rate are counted by a ``UserLimits``: ``LocalLimits`` in one process (the daily
quota is then reserved atomically with the job's durable write), or ``SharedLimits``
(``core.engine.shared_limits``) when several front ends share them through Redis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from core.config import EngineSettings
from core.engine.intake import admit_pictures, involves_pictures, with_inputs
from core.engine.ratelimit import UserRateLimiter
from core.engine.validation import resolve
from core.errors import PermissionDenied, QueueFull, UnknownModel
from core.hooks.call import pipeline
from core.hooks.defaults import DefaultModel
from core.hooks.index import HookIndex
from core.interfaces import ImageModel
from core.types import GenerationRequest, ImageRequest, Job, Requester

Banned = Callable[[str], Awaitable[bool]]


class UserLimits(Protocol):
    """What counts a user's requests: the pending cap, the daily quota and the rate.

    The composer calls, for a user who is not exempt (``check``, ``admitted``) or for every job
    (``reserve``, ``release``): ``check`` before the job exists (refuse, count nothing);
    ``admitted`` once the job is tracked, before any await; ``reserve`` once it has an id, before
    its durable write; ``release`` once it has ended, or when it was never accepted.
    """

    shares_quota: bool  # True: ``reserve`` takes the daily quota, so the store must not

    async def check(self, user: str, count: int = 1) -> None:
        """Raise the refusal (cap for ``count`` more images, rate) that needs no job id; count nothing."""

    def admitted(self, user: str) -> None:
        """Count a request that passed ``check`` and is being queued."""

    async def reserve(self, job: Job, quota: int | None, *, exempt: bool) -> None:
        """Count ``job`` (atomically where that matters), or raise the refusal and count nothing."""

    async def release(self, job: Job) -> None:
        """``job`` ended: free what it held (idempotent per job id)."""

    async def hold(self, job: Job) -> None:
        """Count a job restored after a restart (it passed the limits once), refusing nothing."""

    async def keep_alive(self, live: Callable[[], Iterable[Job]]) -> None:
        """Keep the live jobs of this process counted, until cancelled (returns at once if nothing expires)."""

    async def aclose(self) -> None:
        """Release connections, if any."""


def cap_refusal(cap: int, waiting: int, count: int) -> QueueFull:
    """The refusal of ``count`` more images for a user with ``waiting`` of ``cap`` taken."""
    if waiting >= cap or count == 1:
        return QueueFull(f"You already have {cap} requests waiting. Wait for one to finish, or /cancel one.")
    return QueueFull(f"You may have {cap} images waiting and {waiting} already are; ask for at most "
                     f"{cap - waiting} (--n {cap - waiting}), or wait for one to finish.")


class LocalLimits:
    """Limits counted in this process: the job table's pending counts and an in-memory rate window.

    The quota is the store's (reserved in its enqueue transaction), so ``reserve`` and ``release``
    have nothing to do here.
    """

    shares_quota = False

    def __init__(self, settings: EngineSettings, pending: Counter[str]) -> None:
        self.settings = settings
        self.pending = pending
        self.limiter = UserRateLimiter(settings.rate_limit)

    async def check(self, user: str, count: int = 1) -> None:
        """The cap on waiting images (every image asked for with ``--n`` takes a place), then the rate."""
        cap, waiting = self.settings.max_pending_per_user, self.pending[user]
        if waiting + count > cap:
            raise cap_refusal(cap, waiting, count)
        self.limiter.check(user)

    def admitted(self, user: str) -> None:
        """Count one request against the user's rate."""
        self.limiter.hit(user)

    async def reserve(self, job: Job, quota: int | None, *, exempt: bool) -> None:
        """Nothing: the job table counted the job, ``admitted`` the rate, and the store takes the quota."""

    async def release(self, job: Job) -> None:
        """Nothing: the job table frees the slot, the store stops counting a failed job's quota."""

    async def hold(self, job: Job) -> None:
        """Nothing: the job table counts a requeued job when it tracks it."""

    async def keep_alive(self, live: Callable[[], Iterable[Job]]) -> None:
        """Nothing expires in this process."""

    async def aclose(self) -> None:
        """Nothing to close."""


class Admission:
    """The engine's door: checks a request against models, bans, plugins, caps and the rate."""

    def __init__(self, models: dict[str, ImageModel], hooks: HookIndex | None, view: object, settings: EngineSettings,
                 pending: Counter[str], banned: Banned | None = None, limits: UserLimits | None = None) -> None:
        self.models = models
        self.hooks = hooks
        self.view = view
        self.settings = settings
        self.pending = pending
        self.banned = banned
        self.limits: UserLimits = limits or LocalLimits(settings, pending)
        self.reserves = not isinstance(self.limits, LocalLimits)  # False: ``reserve`` has nothing to do

    def choose_model(self, request: ImageRequest) -> str:
        """The model a request runs on, or ``UnknownModel`` listing the available ones."""
        if request.model is not None:
            name = request.model.strip().lower()
            if name not in self.models:
                raise UnknownModel(request.model, list(self.models))
            return name
        chosen = self._select_model(request)
        if chosen not in self.models:
            raise UnknownModel(str(chosen), list(self.models))
        return str(chosen)

    def _select_model(self, request: ImageRequest) -> object:
        """The ``select_model`` hook's answer; the core's default, when alone, is asked without pluggy."""
        assert self.hooks is not None
        sole = self.hooks.sole("select_model")
        if isinstance(sole, DefaultModel):
            return sole.select_model(request=request, models=self.models)
        return self.hooks.relay.select_model(request=request, models=self.models)

    def is_admin(self, requester: Requester) -> bool:
        """Admins skip caps, rate limits and quotas, and may cancel anyone's job."""
        return requester.is_admin or f"{requester.platform}:{requester.user_id}" in self.settings.admins

    async def check(self, request: ImageRequest) -> tuple[str, GenerationRequest]:
        """The model and resolved request, or the ``SakaiError`` that refuses it; counts nothing."""
        name = self.choose_model(request)
        generation = resolve(request, self.models[name].capabilities)
        user = f"{request.requester.platform}:{request.requester.user_id}"
        if self.banned is not None and await self.banned(user):
            raise PermissionDenied("You are banned from using this bot.")
        if involves_pictures(request):
            generation = await admit_pictures(request, name, self.models, generation)  # cleaned off the loop
            request = with_inputs(request, generation)  # plugins vet the cleaned pictures
        if self.hooks is not None and self.hooks.has("admit_request"):
            await pipeline(self.hooks.relay.admit_request, request=request, model=name, engine=self.view)
        if not self.is_admin(request.requester):
            await self.limits.check(user, request.options.count)
        return name, generation

    def admitted(self, request: ImageRequest) -> None:
        """Count a queued request against the user's rate (shared limits count it in ``reserve``)."""
        if not self.is_admin(request.requester):
            self.limits.admitted(f"{request.requester.platform}:{request.requester.user_id}")

    async def reserve(self, job: Job, quota: int | None) -> None:
        """Count a job that has an id against its user's cap, quota and rate, where the limits are shared.

        Call before the job's durable write; pass the store ``None`` for the quota when
        ``shares_quota`` (the limits took it). Nothing happens with local limits.
        """
        await self.limits.reserve(job, quota, exempt=self.is_admin(job.request.requester))

    async def release(self, job: Job) -> None:
        """``job`` ended, or was never accepted: give back what ``reserve`` took (idempotent)."""
        await self.limits.release(job)

    async def hold(self, job: Job) -> None:
        """Count a job restored after a restart (``requeue``), past the caps it passed once."""
        await self.limits.hold(job)

    @property
    def shares_quota(self) -> bool:
        """True when the limits reserve the daily quota themselves (then the store must not)."""
        return self.limits.shares_quota
