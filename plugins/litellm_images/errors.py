"""litellm's exceptions mapped onto SakaiBot's; the order of checks matters (they subclass each other)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from core import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ContentRejected,
    InvalidRequest,
    QuotaExceeded,
    SakaiError,
)
from core.logs import mask_secrets

CONTENT_CODES = {"moderation_blocked", "content_policy_violation"}


def map_litellm_error(litellm: ModuleType, exc: Exception) -> SakaiError:
    """The SakaiError for an exception raised by ``litellm.aimage_generation`` or ``aimage_edit``."""
    detail = mask_secrets(f"{type(exc).__name__}: {str(exc)[:500]}")
    code = _code(exc)
    text = str(exc).lower()
    if isinstance(exc, litellm.ContentPolicyViolationError) or code in CONTENT_CODES or "safety system" in text:
        return ContentRejected(detail=detail)
    if isinstance(exc, litellm.RateLimitError):
        if code == "insufficient_quota" or "quota" in text:
            return QuotaExceeded("The image service's credit for this bot is used up. Tell the bot's admin.",
                                 detail=detail)
        return BackendRateLimited(retry_after=_retry_after(exc), detail=detail)
    if isinstance(exc, litellm.Timeout):  # before APIConnectionError, which it subclasses
        return BackendTimeout(detail=detail)
    transient = (litellm.APIConnectionError, litellm.ServiceUnavailableError, litellm.InternalServerError,
                 litellm.BadGatewayError)
    if isinstance(exc, transient) or _status(exc) >= 500:  # litellm classes by error type, not status
        return BackendUnavailable(detail=detail)
    if _status(exc) == 429:
        return BackendRateLimited(retry_after=_retry_after(exc), detail=detail)
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError) or _status(exc) in (401, 403):
        return BackendAuthError(detail=detail)
    if isinstance(exc, litellm.BadRequestError | litellm.UnsupportedParamsError):
        return InvalidRequest(f"The image service did not accept this request: {_message(exc)}")
    return BackendError(detail=detail)


def _status(exc: Exception) -> int:
    return int(getattr(exc, "status_code", 0) or 0)


def _code(exc: Exception) -> str | None:
    code = getattr(exc, "code", None)
    body = getattr(exc, "body", None)
    if code is None and isinstance(body, dict):
        code = body.get("code") or (body.get("error") or {}).get("code")
    return str(code) if code else None


def _retry_after(exc: Exception) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    response = getattr(exc, "response", None)
    if not headers and response is not None:
        headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", exc)).split())
    for prefix in ("litellm.BadRequestError: ", "OpenAIException - "):
        text = text.replace(prefix, "")
    return mask_secrets(text)[:200]
