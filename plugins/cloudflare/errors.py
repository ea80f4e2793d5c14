"""Cloudflare's answers mapped onto SakaiBot's errors.

Codes come from the Workers AI error table; where Cloudflare reuses a code (3030 covers both the
NSFW filter and some invalid inputs) or uses two for one thing (3036 in the docs, 4006 in
practice, for the daily free allocation), the message text decides as well.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import (
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

QUOTA_CODES = {3036, 4006}
CAPACITY_CODES = {3040}
AUTH_CODES = {10000, 3023, 5016, 5018, 3041}
BAD_INPUT_CODES = {5006, 5004, 3003, 5007, 3042, 3006}
TIMEOUT_CODES = {3007, 3008}
NSFW_RE = re.compile(r"nsfw|flagged", re.IGNORECASE)
QUOTA_RE = re.compile(r"daily free allocation", re.IGNORECASE)
CAPACITY_RE = re.compile(r"capacity temporarily exceeded|no more data centers", re.IGNORECASE)
MAX_SHOWN = 200


def next_utc_midnight(now: datetime | None = None) -> datetime:
    """When Cloudflare's daily allocation resets."""
    now = now or datetime.now(UTC)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds, from either of its two forms."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def map_error(status: int, errors: Sequence[Mapping[str, Any]], headers: Mapping[str, str],
              text: str = "") -> SakaiError:
    """The SakaiError for a failed Workers AI (or custom Worker) response."""
    codes = {int(e["code"]) for e in errors if str(e.get("code", "")).isdigit()}
    message = mask_secrets("; ".join(str(e.get("message", "")) for e in errors) or text)  # Workers echo headers
    detail = f"HTTP {status} {sorted(codes)} {message[:500]}"
    by_content = _by_content(codes, message, detail, headers)
    if by_content is not None:
        return by_content
    return _by_status(status, codes, message, detail, headers)


def _by_content(codes: set[int], message: str, detail: str, headers: Mapping[str, str]) -> SakaiError | None:
    if codes & QUOTA_CODES or QUOTA_RE.search(message):
        reset = next_utc_midnight()
        return QuotaExceeded(f"Cloudflare's free daily allowance for this bot is used up. It resets at 00:00 UTC "
                             f"(in {_until(reset)}).", reset_at=reset, detail=detail)
    if NSFW_RE.search(message):  # 3030 is also used for invalid input, so the text decides
        return ContentRejected(detail=detail)
    if codes & CAPACITY_CODES or CAPACITY_RE.search(message):
        return BackendRateLimited("Cloudflare is out of capacity right now.",
                                  retry_after=retry_after(headers), detail=detail)
    if codes & AUTH_CODES:
        return BackendAuthError(detail=detail)
    if codes & BAD_INPUT_CODES or 3030 in codes:
        return InvalidRequest(f"The image service did not accept this request: {_shown(message)}")
    if codes & TIMEOUT_CODES:
        return BackendTimeout(detail=detail)
    return None


def _by_status(status: int, codes: set[int], message: str, detail: str, headers: Mapping[str, str]) -> SakaiError:
    if status == 429:
        return BackendRateLimited(retry_after=retry_after(headers), detail=detail)
    if status in (401, 403):
        return BackendAuthError(detail=detail)
    if status == 408:
        return BackendTimeout(detail=detail)
    if status == 413:
        return InvalidRequest(f"The image service did not accept this request: {_shown(message)}")
    if status >= 500:
        return BackendUnavailable(detail=detail)
    return BackendError(detail=detail)


def _shown(message: str) -> str:
    text = re.sub(r"^(AiError: )+", "", " ".join(message.split()))
    return text[:MAX_SHOWN] or "no reason given"


def _until(moment: datetime) -> str:
    minutes = max(1, int((moment - datetime.now(UTC)).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
