"""The core's own hook implementations, registered like any plugin and always answering last."""

from __future__ import annotations

from core.errors import SakaiError
from core.hookspecs import hookimpl
from core.interfaces import ImageModel
from core.types import ImageRequest, Job

GENERIC_ERROR = "Something went wrong while making your image. Please try again."


@hookimpl(trylast=True)
def render_error(job: Job | None, error: BaseException) -> str | None:
    """The error's own user message; never a traceback or an internal detail."""
    if isinstance(error, SakaiError):
        return error.user_message
    return GENERIC_ERROR


class DefaultModel:
    """Answers ``select_model`` with the configured default model."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl(trylast=True)
    def select_model(self, request: ImageRequest, models: dict[str, ImageModel]) -> str | None:
        """The configured default, when it is among the models."""
        return self.name if self.name in models else None
