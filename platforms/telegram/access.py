"""Who the Telegram adapter answers: a userbot that answers strangers is a hole."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Access:
    """Allow lists and admins from config."""

    userbot: bool
    allowed_users: frozenset[int]
    allowed_chats: frozenset[int]
    admins: frozenset[int]

    def allows(self, user_id: int | None, chat_id: int | None, outgoing: bool) -> bool:
        """Whether a command from ``user_id`` in ``chat_id`` may be answered."""
        if outgoing:
            return self.userbot  # a userbot's own commands; a bot never sees its own messages as commands
        listed = user_id in self.allowed_users or chat_id in self.allowed_chats or user_id in self.admins
        if self.userbot:
            return listed
        return listed or not (self.allowed_users or self.allowed_chats)

    def is_admin(self, user_id: int | None, outgoing: bool) -> bool:
        """Admins, and the account owner of a userbot."""
        return (outgoing and self.userbot) or user_id in self.admins
