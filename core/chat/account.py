"""What users and admins ask of the job store: history, info, layered settings, stats, bans.

Settings layer from low to high: the chat's (or guild's) defaults, the user's own, then values an
admin pinned for the chat and pinned everywhere. Defaults fill what a command leaves out; pinned
values win even over what the command says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.chat.commands import BanCommand, HistoryCommand, ImageCommand, InfoCommand, SettingsCommand
from core.engine.validation import parse_ratio
from core.errors import InvalidCommand, JobNotFound, PermissionDenied, UserError
from core.interfaces import BackendType
from core.store import JobRecord, JobStore
from core.types import GenerationOptions, Requester

if TYPE_CHECKING:
    from core.engine import Engine

NO_STORE = "This bot keeps no history: set [store] path in its config."
LABELS = {"chat": "chat default", "user": "yours", "pin": "pinned by an admin", "pin*": "pinned everywhere"}
ON, OFF = {"on", "yes", "true", "1"}, {"off", "no", "false", "0"}


@dataclass(frozen=True, slots=True)
class Effective:
    """Settings after layering, and where each value came from."""

    values: dict[str, str]
    sources: dict[str, str]

    def pinned(self, key: str) -> bool:
        """Whether an admin pinned ``key``."""
        return self.sources.get(key, "").startswith("pin")


class AccountService:
    """Answers /history, /info, /settings, /stats, /ban, /unban and applies settings to /image."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def store(self) -> JobStore:
        """The job store, or a clear error when none is configured."""
        if self.engine.store is None:
            raise UserError(NO_STORE)
        return self.engine.store

    # ------------------------------------------------------------------ settings
    @staticmethod
    def _scopes(who: Requester) -> list[tuple[str, str, str]]:
        chat = _place(who)
        return [("chat", "chat", chat), ("user", "user", f"{who.platform}:{who.user_id}"),
                ("pin", "pin", chat), ("pin*", "pin", "*")]

    async def effective(self, who: Requester) -> Effective:
        """The layered settings for ``who`` where they are now."""
        if self.engine.store is None:
            return Effective({}, {})
        scopes = self._scopes(who)
        stored = await self.engine.store.settings([(scope, scope_id) for _, scope, scope_id in scopes])
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        for label, scope, scope_id in scopes:
            for key, value in stored[(scope, scope_id)].items():
                values[key], sources[key] = value, label
        return Effective(values, sources)

    async def apply(self, command: ImageCommand, who: Requester) -> ImageCommand:
        """``command`` with the caller's defaults filled in and pinned values forced."""
        settings = await self.effective(who)
        if not settings.values:
            return command
        options = command.options
        chosen = {
            "model": _pick(command.model, settings, "model"),
            "aspect": _pick(options.aspect_ratio, settings, "aspect"),
            "enhance": _pick(None if options.enhance is None else _word(options.enhance), settings, "enhance"),
            "file": _pick(_word(True) if options.as_file else None, settings, "file"),
        }
        updated = options.model_copy(update={
            "aspect_ratio": chosen["aspect"], "as_file": chosen["file"] == "on",
            "enhance": None if chosen["enhance"] is None else chosen["enhance"] == "on"})
        return ImageCommand(command.prompt, chosen["model"], GenerationOptions.model_validate(updated.model_dump()))

    async def settings(self, command: SettingsCommand, who: Requester) -> str:
        """Show, set or clear settings."""
        if command.key is None:
            return self._describe(await self.effective(who))
        if command.scope != "user" and not self.engine.is_admin(who):
            raise PermissionDenied("Only admins can set chat defaults or pin values.")
        if command.key == "reset":
            for key in ("model", "aspect", "enhance", "file"):
                await self.store.set_setting("user", f"{who.platform}:{who.user_id}", key, None)
            return "Your settings are back to the defaults."
        value = self._validate(command.key, command.value or "")
        scope_id = f"{who.platform}:{who.user_id}" if command.scope == "user" else _place(who)
        await self.store.set_setting(command.scope, scope_id, command.key, value)
        where = {"user": "Your", "chat": "The default", "pin": "Pinned"}[command.scope]
        return f"{where} {command.key}: {value or 'default'}."

    def _validate(self, key: str, raw: str) -> str | None:
        value = raw.strip().lower()
        if value in ("default", "reset", "none"):
            return None
        if key == "model" and value not in self.engine.models:
            raise InvalidCommand(f"Unknown model '{raw}'. Available: {', '.join(sorted(self.engine.models))}.")
        if key == "aspect":
            parse_ratio(value)
        if key in ("enhance", "file"):
            if value not in ON | OFF:
                raise InvalidCommand(f"{key} takes on or off.")
            value = "on" if value in ON else "off"
        return value

    @staticmethod
    def _describe(settings: Effective) -> str:
        lines = ["Your settings:"]
        for key in ("model", "aspect", "enhance", "file"):
            value = settings.values.get(key)
            where = LABELS.get(settings.sources.get(key, ""), "default")
            lines.append(f"• {key}: {value or 'default'} ({where})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ history and info
    async def history(self, command: HistoryCommand, who: Requester) -> str:
        """The caller's last jobs, newest first."""
        limit = command.limit or self.engine.settings.store.history_limit
        records = await self.store.history(who.platform, who.user_id, limit)
        if not records:
            return "You have no jobs yet."
        return "Your last jobs:\n" + "\n".join(_history_line(r) for r in records)

    async def info(self, command: InfoCommand, who: Requester) -> str:
        """Everything about one of the caller's jobs (any job, for an admin)."""
        mine = not self.engine.is_admin(who)
        found = await self.store.find(command.job_id, who.platform if mine else None, who.user_id if mine else None)
        if not found:
            raise JobNotFound(f"No job of yours starts with '{command.job_id}'.")
        if len(found) > 1 and found[0].id != command.job_id:
            raise JobNotFound(f"'{command.job_id}' matches several jobs; give more of the id.")
        return self._info_text(found[0])

    def _info_text(self, record: JobRecord) -> str:
        backend = self.engine.model_settings.get(record.model)
        plugin = self.engine.registry.owner_of(BackendType, backend.backend) if backend else None
        version = self.engine.host.records[plugin].version if plugin in self.engine.host.records else None
        options = {k: v for k, v in (record.request.get("options") or {}).items() if v not in (None, False, "")}
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in record.timings.items()) or "-"
        lines = [
            f"Job {record.id}: {record.state}",
            f"Model: {record.model} (plugin {plugin or '?'} {version or ''})".rstrip(),
            f"Seed: {record.generation.get('seed')}",
            f"Prompt: {record.prompt}",
            f"Enhanced: {record.enhanced_prompt or '-'}",
            f"Options: {options or '-'}",
            f"Size: {record.generation.get('width')}x{record.generation.get('height')}",
            f"Timings: {timings}",
            f"Attempts: {record.attempts}",
            f"Asked: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(record.created_at))}",
        ]
        if record.error:
            lines.append(f"Error: {record.error}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ admin
    def _admin(self, who: Requester) -> None:
        if not self.engine.is_admin(who):
            raise PermissionDenied("Only admins can do that.")

    async def stats(self, who: Requester) -> str:
        """Jobs, failures and mean latency per model over the last 24 hours, and the queues now."""
        self._admin(who)
        rows = await self.store.stats(time.time() - 86400)
        lines = ["Last 24 h:"] + [
            f"• {r.model}: {r.jobs} jobs, {r.failed} failed, " + (f"{r.mean_seconds:.1f} s mean" if r.mean_seconds
                                                                  else "no finished jobs") for r in rows]
        waiting = {name: len(lane.waiting) for name, lane in self.engine.snapshot().items()}
        lines.append("Now: " + ", ".join(f"{m} {n} waiting, {len(self.engine.running(m))} running"
                                         for m, n in sorted(waiting.items())))
        return "\n".join(lines)

    async def ban(self, command: BanCommand, who: Requester) -> str:
        """Ban or unban a user; a bare id means the admin's own platform."""
        self._admin(who)
        user = command.user if ":" in command.user else f"{who.platform}:{command.user}"
        if command.banned:
            await self.store.ban(user, f"{who.platform}:{who.user_id}")
            return f"{user} is banned."
        return f"{user} is unbanned." if await self.store.unban(user) else f"{user} was not banned."


def _place(who: Requester) -> str:
    """Where chat defaults and pins apply: the guild when there is one, else the chat."""
    return f"{who.platform}:{who.group_id or who.chat_id}"


def _pick(given: str | None, settings: Effective, key: str) -> str | None:
    if settings.pinned(key):
        return settings.values[key]
    return given if given is not None else settings.values.get(key)


def _word(flag: bool) -> str:
    return "on" if flag else "off"


def _history_line(record: JobRecord) -> str:
    flat = " ↵ ".join(" ".join(line.split()) for line in record.prompt.strip().splitlines())  # one entry, one line
    prompt = flat if len(flat) <= 60 else flat[:59] + "…"
    when = time.strftime("%m-%d %H:%M", time.gmtime(record.created_at))
    return f"• {record.id} {when} {record.model} {record.state}: {prompt}"
