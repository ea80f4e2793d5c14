"""The errors SakaiBot raises, each carrying a message fit to show a chat user.

Hierarchy::

    SakaiError                     user_message, retryable
    ├── UserError                  the request itself is wrong; fix it and send again
    │   ├── InvalidCommand         the text could not be parsed
    │   ├── UnknownModel           no model by that name
    │   ├── InvalidRequest         a field is out of range for the model
    │   │   └── InvalidInputImage  an image the user gave cannot be used (format, size, broken)
    │   ├── JobNotFound            no such job (or not yours)
    │   └── PermissionDenied       not allowed for this user
    ├── RateLimited                too many requests from one user (retry_after)
    ├── QueueFull                  a per-user or per-lane cap was reached
    ├── QuotaExceeded              a daily allowance is used up (reset_at)
    ├── JobRejected                a before_generate plugin vetoed the job
    ├── JobCancelled               cancelled by the user, an admin or shutdown
    ├── ServiceStopping            the bot is shutting down and takes no new requests
    ├── ConfigError                the configuration is invalid (names every bad key)
    │   └── StoreOpenError         the job store file cannot be used (path, reason, what to do)
    ├── StoreError                 the job store could not save or read (retryable)
    │   ├── StoreUncertain         the writer process died before answering: the write may have been saved
    │   └── StoreUnavailable       the store is failing; the engine admits nothing until it recovers
    └── BackendError               the model backend failed
        ├── BackendUnavailable     unreachable, 5xx, out of capacity (retryable)
        ├── BackendRateLimited     the backend asked us to slow down (retryable, retry_after)
        ├── BackendTimeout         no answer in time (retryable)
        ├── BackendAuthError       bad credentials or permissions
        ├── ContentRejected        the backend's safety filter refused the prompt or image
        └── InvalidImage           the backend answered with something that is not an image

Third-party errors are translated at the boundary with ``raise ... from exc`` so that the
engine never has to catch ``httpx`` or SDK exceptions.
"""

from __future__ import annotations

from datetime import datetime


class SakaiError(Exception):
    """Base of every error SakaiBot shows to a user."""

    default_message = "Something went wrong."
    retryable = False

    def __init__(self, user_message: str | None = None, *, detail: str | None = None) -> None:
        self.user_message = user_message or self.default_message
        self.detail = detail
        super().__init__(self.user_message)

    def __str__(self) -> str:
        return f"{self.user_message} [{self.detail}]" if self.detail else self.user_message


class UserError(SakaiError):
    """The request is wrong in a way the user can fix."""

    default_message = "That request is not valid."


class InvalidCommand(UserError):
    """The command text could not be parsed."""


class UnknownModel(UserError):
    """The request named a model that is not configured."""

    def __init__(self, name: str, available: list[str]) -> None:
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(f"Unknown model '{name}'. Available models: {listed}.")
        self.name = name
        self.available = available


class InvalidRequest(UserError):
    """A field of the request is out of range for the chosen model."""


class InvalidInputImage(InvalidRequest):
    """An image the user gave (a photo, an attachment, a mask) is refused: unknown or mislabelled format,
    truncated, too large in bytes or pixels. Not a ``BackendError``: nothing is retried, the user must
    send another picture."""

    default_message = "That picture cannot be used. Send a PNG, JPEG, WebP or GIF image."


class JobNotFound(UserError):
    """No job with that id is known to the caller."""

    default_message = "No such job."


class PermissionDenied(UserError):
    """The user may not do this."""

    default_message = "You are not allowed to do that."


class RateLimited(SakaiError):
    """One user sent more requests than the configured rate allows."""

    def __init__(self, retry_after: float, limit: str) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(f"Slow down: the limit is {limit}. Try again in {seconds} s.")
        self.retry_after = retry_after
        self.limit = limit


class QueueFull(SakaiError):
    """A per-user or per-lane cap on waiting jobs was reached."""

    default_message = "The queue is full. Try again in a moment."


class QuotaExceeded(SakaiError):
    """A daily allowance is used up until ``reset_at``."""

    def __init__(self, user_message: str | None = None, *, reset_at: datetime | None = None,
                 detail: str | None = None) -> None:
        if user_message is None:
            when = f" It resets at {reset_at:%H:%M} UTC." if reset_at else ""
            user_message = f"The daily quota is used up.{when}"
        super().__init__(user_message, detail=detail)
        self.reset_at = reset_at


class JobRejected(SakaiError):
    """A plugin vetoed the job before generation."""

    default_message = "This request was rejected."


class JobCancelled(SakaiError):
    """The job was cancelled before it finished."""

    default_message = "Cancelled."


class ServiceStopping(SakaiError):
    """The engine is shutting down or not started and takes no new requests."""

    default_message = "The bot is restarting and takes no new requests right now. Try again in a minute."


class ConfigError(SakaiError):
    """The configuration is invalid; the message names every bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid configuration:\n{lines}")


class StoreOpenError(ConfigError):
    """The job store file cannot be opened: corrupt, newer schema, unreadable, unwritable or in use."""

    def __init__(self, path: str, reason: str, advice: str) -> None:
        super().__init__([f"store: {path}: {reason}. {advice}"])
        self.path, self.reason, self.advice = path, reason, advice


class StoreError(SakaiError):
    """The job store could not save or read; nothing was acknowledged."""

    default_message = "I couldn't save your request just now. Please try again in a moment."
    retryable = True


class StoreUncertain(StoreError):
    """The store's writer process died after the write was sent and before it answered: the write may or
    may not have been committed. Shown like any ``StoreError``; the engine ends such a refused request's
    row before it takes new requests again, so the refusal holds (see ``StoreHealth``)."""


class StoreUnavailable(StoreError):
    """The job store is failing; no new request is admitted until a write succeeds again."""

    default_message = ("The bot can't save new requests right now (its storage is failing), so it isn't taking any. "
                       "Please try again later.")


class BackendError(SakaiError):
    """The model backend failed."""

    default_message = "The image service failed. Please try again later."


class BackendUnavailable(BackendError):
    """The backend cannot be reached or is out of capacity."""

    default_message = "The image service is unavailable right now. Please try again later."
    retryable = True


class BackendRateLimited(BackendError):
    """The backend asked us to slow down."""

    default_message = "The image service is busy. Please try again in a moment."
    retryable = True

    def __init__(self, user_message: str | None = None, *, retry_after: float | None = None,
                 detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.retry_after = retry_after


class BackendTimeout(BackendError):
    """The backend did not answer in time."""

    default_message = "The image service took too long to answer."
    retryable = True


class BackendAuthError(BackendError):
    """The backend refused our credentials."""

    default_message = "The image service refused the bot's credentials. Tell the bot's admin."


class ContentRejected(BackendError):
    """The backend's safety filter refused the prompt or the image."""

    default_message = "The image service's safety filter refused this prompt. Try rephrasing it."


class InvalidImage(BackendError):
    """The backend answered with something that is not a valid image."""

    default_message = "The image service sent back a broken image."
    retryable = True


def retry_after_of(error: BaseException) -> float | None:
    """The delay a failure asks for before the next attempt, if it names one."""
    value = getattr(error, "retry_after", None)
    return float(value) if value is not None else None
