"""``[platforms.telegram]``: mode, access lists and pacing; credentials only from the environment."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from core import PlatformSettings
from core.config import from_environment

log = logging.getLogger(__name__)


class TelegramSettings(PlatformSettings):
    """A bot (bot token) or a userbot (a StringSession of the user's own account)."""

    mode: Literal["bot", "userbot"] = "bot"
    api_id_env: str = "TELEGRAM_API_ID"
    api_hash_env: str = "TELEGRAM_API_HASH"
    bot_token_env: str = "TELEGRAM_BOT_TOKEN"
    session_env: str = "TELEGRAM_SESSION"
    api_id: int | None = None
    api_hash: SecretStr | None = None
    bot_token: SecretStr | None = None
    session: SecretStr | None = None
    allowed_users: list[int] = Field(default_factory=list, description="empty: everyone (bot) / only you (userbot)")
    allowed_chats: list[int] = Field(default_factory=list, description="chat ids as Telegram marks them: groups < 0")
    admins: list[int] = Field(default_factory=list, description="may cancel any job; skip caps and rate limits")
    edit_interval: float = Field(default=2.5, ge=0, le=60, description="seconds between edits of one status message")
    preview_interval: float = Field(default=5.0, ge=1, le=600,
                                    description="seconds between preview photos of one job (shared group budget)")
    flood_sleep_threshold: int = Field(default=5, ge=0, le=60, description="Telethon sleeps through shorter waits")
    max_flood_wait: float = Field(default=30.0, ge=0, le=600,
                                  description="no effect any more (every wait is waited out); kept so older files load")
    group_messages_per_minute: int = Field(default=20, ge=1, le=60,
                                           description="sends and edits per group per minute (Telegram: about 20)")
    send_as_file: bool = Field(default=False, description="send originals as documents unless --file is off")

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        for field, env_field, default in (("api_id", "api_id_env", "TELEGRAM_API_ID"),
                                          ("api_hash", "api_hash_env", "TELEGRAM_API_HASH"),
                                          ("bot_token", "bot_token_env", "TELEGRAM_BOT_TOKEN"),
                                          ("session", "session_env", "TELEGRAM_SESSION")):
            data = from_environment(data, field, env_field, default)
        return _session_file_to_string(data)

    @model_validator(mode="after")
    def _retired(self) -> TelegramSettings:
        """``max_flood_wait`` once skipped status edits during long waits; every wait is now held and the
        newest status sent after it, so a value set in a file still loads, with a warning that it does nothing."""
        if "max_flood_wait" in self.model_fields_set:
            log.warning("[platforms.telegram] max_flood_wait has no effect any more: status edits and images wait "
                        "out every flood wait and only the newest status is sent; remove it from the file")
        return self

    @model_validator(mode="after")
    def _credentials(self) -> TelegramSettings:
        if not self.enabled:
            return self
        missing = [env for value, env in ((self.api_id, self.api_id_env), (self.api_hash, self.api_hash_env))
                   if not value]
        if self.mode == "bot" and not self.bot_token:
            missing.append(self.bot_token_env)
        if self.mode == "userbot" and not self.session:
            missing.append(f"{self.session_env} (make one with: python -m platforms.telegram.login)")
        if missing:
            raise ValueError(f"set {', '.join(missing)} in the environment")
        return self


def _session_file_to_string(data: Any) -> Any:
    """A ``session`` naming an existing Telethon ``.session`` file is read into a session string.

    The original bot kept its login in such a file; reading it keeps that login (no new code by SMS).
    """
    if not isinstance(data, dict) or not data.get("session") or not data.get("enabled", False):
        return data
    value = data["session"]
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if len(text) > 1024 or not (text.endswith(".session") or Path(text + ".session").is_file()):
        return data  # a session string, as made by python -m platforms.telegram.login
    return {**data, "session": session_string_from_file(Path(text))}


def session_string_from_file(path: Path) -> str:
    """The login stored in a Telethon SQLite session file, as a ``StringSession`` string."""
    file = path if path.suffix == ".session" else Path(f"{path}.session")
    if not file.is_file():
        raise ValueError(f"{file}: no such Telethon session file")
    from telethon.sessions import SQLiteSession, StringSession  # only when Telegram is enabled

    try:
        session = SQLiteSession(str(file))
    except sqlite3.Error as exc:
        raise ValueError(f"{file}: not a Telethon session file ({exc})") from exc
    try:
        text = StringSession.save(session)  # save() encodes any Session
    finally:
        session.close()
    if not text:
        raise ValueError(f"{file}: holds no login; log in again with: python -m platforms.telegram.login")
    return text
