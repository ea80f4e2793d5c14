"""Interaction tokens are sealed for the job store: readable only with the bot token, and only for 15 minutes."""

from __future__ import annotations

import time

from cryptography.fernet import Fernet

from platforms.discord import sealing


def test_a_sealed_token_opens_with_the_same_bot_token_only():
    sealed = sealing.seal("interaction-token-abc", "bot-token-1")
    assert "interaction-token-abc" not in sealed
    assert sealing.unseal(sealed, "bot-token-1") == "interaction-token-abc"
    assert sealing.unseal(sealed, "bot-token-2") == ""
    assert sealing.unseal(sealed[:-4] + "AAAA", "bot-token-1") == ""  # tampered


def test_a_token_sealed_more_than_fifteen_minutes_ago_is_refused():
    old = time.time() - sealing.TOKEN_LIFETIME - 5
    fernet = sealing._fernet("bot-token-1")
    sealed = fernet.encrypt_at_time(b"interaction-token-abc", int(old)).decode()
    assert isinstance(fernet, Fernet) and sealing.unseal(sealed, "bot-token-1") == ""
    assert sealing.unseal("", "bot-token-1") == "" and sealing.seal("", "bot-token-1") == ""
