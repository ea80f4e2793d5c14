"""Logging set-up that keeps secrets out of every record, and the masking backends use on error text.

Secrets are masked twice over: every configured secret value (learned from the settings at
start-up), and anything shaped like a credential (an ``Authorization`` header, ``Bearer …``,
``api_key=…``), because a backend may echo a key SakaiBot never knew was secret.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_SECRET = 4
CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+|token\s+)?[^\s\"',;}]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"(?i)((?:api[_-]?key|api[_-]?token|access[_-]?token|x-api-key|token|secret|password)"
               r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]{4,}"),
    re.compile(r"\b(sk-(?:or-)?(?:v1-)?)[A-Za-z0-9_-]{8,}"),
)
_known: set[str] = set()


def remember_secrets(secrets: Iterable[str]) -> None:
    """Learn secret values to mask wherever ``mask_secrets`` runs (logs, backend errors)."""
    _known.update(s for s in secrets if len(s) >= MIN_SECRET)


def mask_secrets(text: str) -> str:
    """``text`` with every known secret and anything shaped like a credential replaced by ``***``."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in CREDENTIAL_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and traceback with every secret masked."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.add(secrets)

    @property
    def secrets(self) -> list[str]:
        """The secret values being masked, longest first."""
        return sorted(_known, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secrets, e.g. once plugin settings are validated."""
        remember_secrets(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True

    def redact(self, text: str) -> str:
        """``text`` with every secret masked."""
        return mask_secrets(text)


class TerminalFormatter(logging.Formatter):
    """One line per record; tracebacks only when debugging, otherwise the exception's own line."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        """The record, with its exception shortened unless tracebacks are wanted."""
        if self.tracebacks or not record.exc_info:
            return super().format(record)
        line = super().format(_without_traceback(record))
        error = record.exc_info[1]
        return f"{line} ({type(error).__name__}: {mask_secrets(str(error))})" if error else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        """``time``, ``level``, ``logger``, ``message`` and, with an exception, ``error`` (and ``traceback``)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["error"] = f"{type(error).__name__}: {mask_secrets(str(error))}"
            if self.tracebacks:
                entry["traceback"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _without_traceback(record: logging.LogRecord) -> logging.LogRecord:
    copy = logging.makeLogRecord(record.__dict__)
    copy.exc_info, copy.exc_text = None, None
    return copy


def secrets_in(*values: Any) -> list[str]:
    """Every ``SecretStr`` value inside pydantic models, dicts and lists."""
    found: list[str] = []
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            stack.extend(getattr(value, name) for name in type(value).model_fields)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return found


def setup_logging(level: str, secrets: Iterable[str] = (), fmt: str = "text") -> RedactSecrets:
    """Log to stderr at ``level``, with secrets masked; returns the filter to add secrets later.

    Tracebacks are written only at DEBUG: a dropped connection is routine and one line says enough.
    """
    handler = logging.StreamHandler()
    tracebacks = logging.getLevelName(level) <= logging.DEBUG
    handler.setFormatter(JsonFormatter(tracebacks) if fmt == "json" else TerminalFormatter(tracebacks))
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "LiteLLM", "telethon", "discord"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return redactor
