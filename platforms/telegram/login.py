"""One-time userbot login: ``python -m platforms.telegram.login`` prints a session string.

Put the string in ``TELEGRAM_SESSION`` (a secret: it is your account). Telegram asks for your
phone number, the code it sends, and your 2FA password if you have one.
"""

from __future__ import annotations

import asyncio
import os
import sys

from telethon import TelegramClient
from telethon.sessions import StringSession


async def login(api_id: int, api_hash: str) -> str:
    """Log in interactively and return the session string."""
    client = TelegramClient(StringSession(), api_id, api_hash)
    await client.start()  # prompts for phone, code and password on the terminal
    session = StringSession.save(client.session)
    await client.disconnect()
    return session


def main() -> None:
    """Print the session string on stdout, the instructions on stderr."""
    api_id = int(os.environ.get("TELEGRAM_API_ID") or input("api_id (my.telegram.org): "))
    api_hash = os.environ.get("TELEGRAM_API_HASH") or input("api_hash: ")
    session = asyncio.run(login(api_id, api_hash))
    print("Set this as TELEGRAM_SESSION (keep it secret):", file=sys.stderr)
    print(session)


if __name__ == "__main__":
    main()
