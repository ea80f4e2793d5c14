"""Chat, the same on every platform: commands, messages, accounts, and the service adapters call."""

from core.chat.service import ChatService, JobReply, Reply, TextReply

__all__ = ["ChatService", "JobReply", "Reply", "TextReply"]
