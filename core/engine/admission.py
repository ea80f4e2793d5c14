"""Who may queue what: the model, the request's validity, bans, plugin vetoes, caps and the rate limit.

Every check runs before anything changes, so a refused request leaves no trace and uses up no rate.
The daily quota is not checked here: it is reserved atomically with the job's durable write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from core.config import EngineSettings
from core.engine.intake import admit_pictures, with_inputs
from core.engine.ratelimit import UserRateLimiter
from core.engine.validation import resolve
from core.errors import PermissionDenied, QueueFull, UnknownModel
from core.hooks.call import pipeline
from core.interfaces import ImageModel
from core.types import GenerationRequest, ImageRequest, Requester

Banned = Callable[[str], Awaitable[bool]]


class Admission:
    """The engine's door: checks a request against models, bans, plugins, caps and the rate."""

    def __init__(self, models: dict[str, ImageModel], hook: Any, view: object, settings: EngineSettings,
                 pending: Counter[str], banned: Banned | None = None) -> None:
        self.models = models
        self.hook = hook
        self.view = view
        self.settings = settings
        self.pending = pending
        self.banned = banned
        self.limiter = UserRateLimiter(settings.rate_limit)

    def choose_model(self, request: ImageRequest) -> str:
        """The model a request runs on, or ``UnknownModel`` listing the available ones."""
        if request.model is not None:
            name = request.model.strip().lower()
            if name not in self.models:
                raise UnknownModel(request.model, list(self.models))
            return name
        chosen = self.hook.select_model(request=request, models=self.models)
        if chosen not in self.models:
            raise UnknownModel(str(chosen), list(self.models))
        return str(chosen)

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
        generation = await admit_pictures(request, name, self.models, generation)  # checked, cleaned off the loop
        request = with_inputs(request, generation)  # plugins vet the cleaned pictures
        hook = self.hook.admit_request
        if hook.get_hookimpls():
            await pipeline(hook, request=request, model=name, engine=self.view)
        if not self.is_admin(request.requester):
            self._check_cap(user, request.options.count)
            self.limiter.check(user)
        return name, generation

    def _check_cap(self, user: str, count: int) -> None:
        """Every image asked for (``--n``) takes a place under the per-user cap."""
        cap, waiting = self.settings.max_pending_per_user, self.pending[user]
        if waiting + count <= cap:
            return
        if waiting >= cap:
            raise QueueFull(f"You already have {cap} requests waiting. Wait for one to finish, or /cancel one.")
        raise QueueFull(f"You may have {cap} images waiting and {waiting} already are; ask for at most "
                        f"{cap - waiting} (--n {cap - waiting}), or wait for one to finish.")

    def admitted(self, request: ImageRequest) -> None:
        """Count a queued request against the user's rate."""
        if not self.is_admin(request.requester):
            self.limiter.hit(f"{request.requester.platform}:{request.requester.user_id}")
