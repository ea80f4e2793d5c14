"""The interaction token, sealed before it goes into the job store.

Finishing a response after a restart needs the interaction's token (valid 15 minutes), so the job's
delivery record must carry it; but secrets never reach the store in the clear. The token is sealed
with Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``) under a key derived from the bot
token, which lives only in the environment: a copied database reveals nothing, and a sealed token
older than Discord's 15 minutes is refused on unsealing as well.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

TOKEN_LIFETIME = 15 * 60  # seconds an interaction token is valid for


def _fernet(secret: str) -> Fernet:
    key = hashlib.sha256(b"sakaibot interaction token|" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(token: str, secret: str) -> str:
    """``token`` encrypted and authenticated under ``secret`` (the bot token)."""
    return _fernet(secret).encrypt(token.encode()).decode() if token and secret else ""


def unseal(sealed: str, secret: str) -> str:
    """The token again; ``""`` if it is missing, forged, sealed under another secret, or expired."""
    if not sealed or not secret:
        return ""
    try:
        return _fernet(secret).decrypt(sealed.encode(), ttl=TOKEN_LIFETIME).decode()
    except InvalidToken:
        return ""
