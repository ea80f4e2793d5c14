"""Who may queue what: the model, the request's validity, plugin vetoes, caps and the rate limit.

Every check runs before anything changes, so a refused request leaves no trace and uses up no rate.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from core.engine.ratelimit import UserRateLimiter
from core.engine.validation import resolve
from core.errors import QueueFull, UnknownModel
from core.hooks.call import pipeline
from core.types import GenerationRequest, ImageRequest, Requester

if TYPE_CHECKING:
    from core.engine import Engine


class Admission:
    """The engine's door: checks a request, and counts what each user has pending."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limiter = UserRateLimiter(engine.settings.engine.rate_limit)
        self.pending: Counter[str] = Counter()

    def choose_model(self, request: ImageRequest) -> str:
        """The model a request runs on, or ``UnknownModel`` listing the available ones."""
        models = self.engine.models
        if request.model is not None:
            name = request.model.strip().lower()
            if name not in models:
                raise UnknownModel(request.model, list(models))
            return name
        chosen = self.engine.hook.select_model(request=request, models=models)
        if chosen not in models:
            raise UnknownModel(str(chosen), list(models))
        return chosen

    def is_admin(self, requester: Requester) -> bool:
        """Admins skip caps, rate limits and quotas, and may cancel anyone's job."""
        return requester.is_admin or f"{requester.platform}:{requester.user_id}" in self.engine.settings.engine.admins

    async def check(self, request: ImageRequest) -> tuple[str, GenerationRequest]:
        """The model and resolved request, or the ``SakaiError`` that refuses it; counts nothing."""
        name = self.choose_model(request)
        generation = resolve(request, self.engine.models[name].capabilities)
        hook = self.engine.hook.admit_request
        if hook.get_hookimpls():
            await pipeline(hook, request=request, model=name, engine=self.engine)
        if not self.is_admin(request.requester):
            user = f"{request.requester.platform}:{request.requester.user_id}"
            self._check_cap(user)
            self.limiter.check(user)
        return name, generation

    def _check_cap(self, user: str) -> None:
        cap = self.engine.settings.engine.max_pending_per_user
        if self.pending[user] >= cap:
            raise QueueFull(f"You already have {cap} requests waiting. Wait for one to finish, or /cancel one.")

    def admitted(self, request: ImageRequest) -> None:
        """Count a queued request against the user's rate."""
        if not self.is_admin(request.requester):
            self.limiter.hit(f"{request.requester.platform}:{request.requester.user_id}")
