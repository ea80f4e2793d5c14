"""A small fake Discord on 127.0.0.1: REST plus a gateway websocket, enough for the real discord.py client.

discord.py takes its REST base from ``discord.http.Route.BASE`` and its gateway from
``DiscordWebSocket.DEFAULT_GATEWAY``; tests point both here. What a fake must get right
(from ../shared/reference/platforms.md): JSON content type exactly ``application/json``,
time-based snowflakes, the required interaction fields, ``Via`` on 429s, consistent message ids.
Attachments are real: users' uploads (an ``image`` option, a message's pictures) and the bot's own
files are served from a small CDN route with the ``content_type`` and ``size`` Discord states, so
``Attachment.read()`` downloads for real; message commands and modal submits are dispatched too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
from aiohttp import web

from tests.fakes import serve_locally

APP_ID = 1100000000000000001
BOT_USER = {"id": str(APP_ID), "username": "SakaiBot", "discriminator": "0", "global_name": "SakaiBot",
            "avatar": None, "bot": True}
DISCORD_EPOCH = 1420070400000
TOKEN_LIFE = 15 * 60  # an interaction token works for 15 minutes
NONCE_WINDOW = 5 * 60  # "the past few minutes" for enforce_nonce
EPHEMERAL = 64


def snowflake(offset: int = 0) -> int:
    """A snowflake made now, as Discord's are: interactions expire 15 minutes after theirs."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH) << 22) + (offset % (1 << 22))


def user_payload(user_id: int, name: str) -> dict[str, Any]:
    """A Discord user object."""
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py compares the content type for equality: no "; charset=utf-8".
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        headers=headers)


@dataclass
class Call:
    """One REST request the bot made."""

    method: str
    path: str
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.perf_counter)


class FakeDiscord:
    """Start, then ``slash(...)``, ``click(...)``, ``autocomplete(...)``; read ``calls`` and ``messages``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.files: dict[int, dict[str, bytes]] = {}
        self.faults: deque[tuple[str, web.Response]] = deque()
        self.commands: list[dict[str, Any]] = []
        self.acknowledge_deadline: float | None = 3.0  # Discord: answer within 3 seconds
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self.interactions: dict[str, dict[str, Any]] = {}
        self.identified = asyncio.Event()
        self.skew = 0.0  # seconds added to the fake's clock: "a restart 20 minutes later"
        self.nonces: dict[tuple[int, str], tuple[float, int]] = {}  # (channel, nonce) -> (when, message id)
        self.dms: dict[int, int] = {}  # user id -> DM channel id
        self.deleted: list[int] = []
        self.refused: list[Call] = []  # requests Discord refused (too large)
        self.cdn: dict[str, bytes] = {}  # attachment id -> bytes
        self.downloads: list[str] = []  # attachment ids the bot read from the CDN

    # ------------------------------------------------------------------ server
    async def start(self) -> FakeDiscord:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gw", self._gateway)
        app.router.add_get("/cdn/{id}/{name}", self._cdn_file)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner, self.root = await serve_locally(app)
        return self

    async def stop(self) -> None:
        """Close sockets and the server."""
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, path_fragment: str, response: web.Response) -> None:
        """Answer the next REST call whose path contains ``path_fragment`` with ``response``."""
        self.faults.append((path_fragment, response))

    @staticmethod
    def rate_limited(retry_after: float = 0.2) -> web.Response:
        """A 429 discord.py treats as a rate limit (it needs the Via header)."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        return _json(body, 429, {"Via": "1.1 google", "Retry-After": str(retry_after),
                                 "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": str(retry_after)})

    # ------------------------------------------------------------------ attachments
    def attachment(self, name: str, data: bytes, *, content_type: str | None = None,
                   stated_size: int | None = None, offset: int = 0) -> dict[str, Any]:
        """An attachment as Discord describes it, its bytes on the CDN (``stated_size``: the size it claims)."""
        attachment_id = str(snowflake(len(self.cdn) + 300 + offset))
        self.cdn[attachment_id] = data
        kind = content_type or mimetypes.guess_type(name)[0]
        url = f"{self.root}/cdn/{attachment_id}/{name}"
        payload = {"id": attachment_id, "filename": name, "size": stated_size or len(data), "url": url,
                   "proxy_url": url}
        return payload | ({"content_type": kind} if kind else {})

    async def _cdn_file(self, request: web.Request) -> web.Response:
        attachment_id = request.match_info["id"]
        if attachment_id not in self.cdn:
            return web.Response(status=404)
        self.downloads.append(attachment_id)
        return web.Response(body=self.cdn[attachment_id], content_type="application/octet-stream")

    def user_message(self, user: dict[str, Any], content: str, attachments: list[dict[str, Any]],
                     channel_id: int = 5000) -> dict[str, Any]:
        """A message a user posted (for message commands)."""
        self._counter += 1
        message = self._message(snowflake(self._counter), {"content": content}, channel_id)
        message.update({"author": user, "attachments": attachments})
        message.pop("application_id")
        self.messages[int(message["id"])] = message
        return message

    async def message_command(self, name: str, message: dict[str, Any], user: dict[str, Any]) -> str:
        """A user runs a message context-menu command (type 3) on ``message``."""
        command = next((c for c in self.commands if c["name"] == name), {"id": str(snowflake()), "name": name})
        data = {"id": command["id"], "name": name, "type": 3, "target_id": message["id"],
                "resolved": {"messages": {message["id"]: message}}}
        payload = self._interaction(2, data, user)
        await self.send_event("INTERACTION_CREATE", payload)
        return payload["token"]

    def modal_of(self, token: str) -> dict[str, Any]:
        """The modal the bot opened in answer to one interaction (callback type 9)."""
        call = next(c for c in self.for_token(token) if c.path.endswith("/callback") and c.json["type"] == 9)
        return dict(call.json["data"])

    async def submit_modal(self, token: str, user: dict[str, Any], *values: str) -> str:
        """The user fills in the modal opened for ``token`` (its text inputs, in order) and submits it."""
        modal = self.modal_of(token)
        inputs = [row["component"] if row["type"] == 18 else row["components"][0] for row in modal["components"]]
        components = [{"type": 18, "id": n + 1, "component": {"type": 4, "id": n + 2, "custom_id": item["custom_id"],
                                                                "value": value}}
                      for n, (item, value) in enumerate(zip(inputs, values, strict=True))]
        payload = self._interaction(5, {"custom_id": modal["custom_id"], "components": components}, user)
        await self.send_event("INTERACTION_CREATE", payload)
        return payload["token"]

    # ------------------------------------------------------------------ gateway
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for frame in socket:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            await self._on_frame(socket, json.loads(frame.data))
        return socket

    async def _on_frame(self, socket: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        if op == 1:
            await socket.send_json({"op": 11})
        elif op == 2:
            await self._dispatch(socket, "READY", {
                "v": 10, "user": BOT_USER, "guilds": [], "session_id": "fake-session",
                "resume_gateway_url": f"{self.root.replace('http', 'ws')}/gw",
                "application": {"id": str(APP_ID), "flags": 0}, "shard": [0, 1]})
            self.identified.set()
        elif op == 6:
            await self._dispatch(socket, "RESUMED", {})

    async def _dispatch(self, socket: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await socket.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        """Dispatch a gateway event to the connected bot."""
        await self.identified.wait()
        await self._dispatch(self._sockets[-1], event, data)

    # ------------------------------------------------------------------ interactions
    def _interaction(self, kind: int, data: dict[str, Any], user: dict[str, Any], *,
                     message: dict[str, Any] | None = None, channel_id: int = 5000,
                     guild: tuple[int, list[int]] | None = None) -> dict[str, Any]:
        self._counter += 1
        interaction_id = snowflake(self._counter)
        token = f"token-{interaction_id}"
        payload = {
            "id": str(interaction_id), "application_id": str(APP_ID), "type": kind, "data": data, "token": token,
            "version": 1, "channel_id": str(channel_id), "channel": {"id": str(channel_id), "type": 1},
            "user": user, "attachment_size_limit": self.attachment_size_limit, "app_permissions": "0",
            "locale": "en-US", "entitlements": [], "authorizing_integration_owners": {}, "context": 1,
        }
        if message is not None:
            payload["message"] = message
        if guild is not None:  # a guild channel: the user arrives as a member with roles
            guild_id, roles = guild
            payload.pop("user")
            payload["guild_id"] = str(guild_id)
            payload["channel"] = {"id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": "images",
                                  "nsfw": False, "position": 0, "permission_overwrites": []}
            payload["member"] = {"user": user, "roles": [str(r) for r in roles], "joined_at": "2026-01-01T00:00:00",
                                 "deaf": False, "mute": False, "permissions": "0", "flags": 0}
            payload["context"] = 0
        self.interactions[token] = payload
        return payload

    attachment_size_limit = 10 * 1024 * 1024

    async def slash(self, name: str, user: dict[str, Any], *, guild: tuple[int, list[int]] | None = None,
                    **options: Any) -> str:
        """A user runs ``/name option=value ...`` (in a DM, or in ``guild`` = (id, their role ids))."""
        kinds = {str: 3, int: 4, bool: 5, float: 10, dict: 11}  # a dict is an attachment (type 11)
        opts = [{"name": k, "type": kinds[type(v)], "value": v["id"] if isinstance(v, dict) else v}
                for k, v in options.items() if v is not None]
        attachments = {v["id"]: v for v in options.values() if isinstance(v, dict)}
        command = next((c for c in self.commands if c["name"] == name), {"id": str(snowflake()), "name": name})
        data = {"id": command["id"], "name": name, "type": 1, "options": opts}
        if attachments:
            data["resolved"] = {"attachments": attachments}
        payload = self._interaction(2, data, user, guild=guild)
        await self.send_event("INTERACTION_CREATE", payload)
        return payload["token"]

    async def autocomplete(self, name: str, option: str, current: str, user: dict[str, Any]) -> str:
        """A user types in an autocompleted option."""
        command = next((c for c in self.commands if c["name"] == name), {"id": str(snowflake()), "name": name})
        opts = [{"name": "prompt", "type": 3, "value": "x"},
                {"name": option, "type": 3, "value": current, "focused": True}]
        payload = self._interaction(4, {"id": command["id"], "name": name, "type": 1, "options": opts}, user)
        await self.send_event("INTERACTION_CREATE", payload)
        return payload["token"]

    async def click(self, message_id: int, custom_id: str, user: dict[str, Any]) -> str:
        """A user presses a button under a message the bot sent."""
        message = self.messages[message_id]
        payload = self._interaction(3, {"custom_id": custom_id, "component_type": 2}, user, message=message)
        await self.send_event("INTERACTION_CREATE", payload)
        return payload["token"]

    # ------------------------------------------------------------------ REST
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body, files = await self._body(request)
        call = Call(request.method, path, body, files)
        self.calls.append(call)
        if any(len(data) > self.attachment_size_limit for data in files.values()):
            self.refused.append(call)  # Discord: 413, error 40005, nothing changes
            return _json({"message": "Request entity too large", "code": 40005}, 413)
        for n, (fragment, response) in enumerate(self.faults):
            if fragment in path:
                del self.faults[n]
                return response
        return await self._route(request.method, path, body, files, request)

    async def _body(self, request: web.Request) -> tuple[Any, dict[str, bytes]]:
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            body, files = None, {}
            async for part in reader:
                data = await part.read()
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    files[part.filename or part.name or "file"] = bytes(data)
            return body, files
        text = await request.text()
        return (json.loads(text) if text else None), {}

    async def _route(self, method: str, path: str, body: Any, files: dict[str, bytes],
                     request: web.Request) -> web.Response:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return _json(BOT_USER)
        if path == "/oauth2/applications/@me":
            return _json({"id": str(APP_ID), "name": "SakaiBot", "description": "", "icon": None, "bot_public": True,
                          "bot_require_code_grant": False, "verify_key": "0" * 64, "owner": BOT_USER, "flags": 0})
        if parts[0] == "applications" and parts[-1] == "commands" and method == "PUT":
            # Discord answers with every field; a message command's description is "" (it has none)
            self.commands = [{"description": "", **c, "id": str(snowflake(n)), "application_id": str(APP_ID),
                              "version": "1"} for n, c in enumerate(body)]
            return _json(self.commands)
        if parts[0] == "interactions" and parts[-1] == "callback":
            return self._callback(parts[1], parts[2], body)
        if parts[0] == "webhooks":
            if self._token_age(parts[2]) > TOKEN_LIFE:
                return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
            return self._webhook(method, parts, body, files)
        if parts[0] == "channels" and parts[-1] == "messages" and method == "POST":
            return _json(self._create(body or {}, files, int(parts[1])))
        if parts[0] == "channels" and len(parts) == 4 and method == "PATCH":
            return self._edit_in_channel(int(parts[1]), int(parts[3]), body or {})
        if path == "/users/@me/channels" and method == "POST":
            user_id = int(body["recipient_id"])
            channel_id = self.dms.setdefault(user_id, snowflake(len(self.dms) + 77))
            return _json({"id": str(channel_id), "type": 1, "recipients": [user_payload(user_id, "someone")],
                          "last_message_id": None})
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def now(self) -> float:
        """The fake's clock (wall clock plus ``skew``)."""
        return time.time() + self.skew

    def _token_age(self, token: str) -> float:
        """Seconds since the interaction behind ``token`` was created (its id is a snowflake)."""
        interaction_id = int(token.removeprefix("token-")) if token.startswith("token-") else 0
        return self.now() - ((interaction_id >> 22) + DISCORD_EPOCH) / 1000 if interaction_id else 0.0

    def _create(self, body: dict[str, Any], files: dict[str, bytes], channel_id: int) -> dict[str, Any]:
        """Create a message; with ``enforce_nonce`` a nonce seen in the last minutes returns that message."""
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            seen = self.nonces.get((channel_id, str(nonce)))
            if seen is not None and self.now() - seen[0] < NONCE_WINDOW:
                return self.messages[seen[1]]
        message = self._store(body, files, channel_id)
        if nonce is not None:
            message["nonce"] = str(nonce)
            self.nonces[(channel_id, str(nonce))] = (self.now(), int(message["id"]))
        return message

    def _edit_in_channel(self, channel_id: int, message_id: int, body: dict[str, Any]) -> web.Response:
        """The bot edits its own message; an ephemeral one is not in the channel for it."""
        message = self.messages.get(message_id)
        if message is None or int(message.get("flags") or 0) & EPHEMERAL:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        message.update({k: v for k, v in body.items() if k in ("content", "embeds", "components")})
        return _json(message)

    def _callback(self, interaction_id: str, token: str, body: dict[str, Any]) -> web.Response:
        created = self.interactions.get(token)
        if created and self.acknowledge_deadline is not None:
            age = time.time() - ((int(interaction_id) >> 22) + DISCORD_EPOCH) / 1000
            if age > self.acknowledge_deadline:
                return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if body.get("type") == 8:  # autocomplete answer
            return web.Response(status=204)
        data = body.get("data") or {}
        message = self._store(data | {"content": data.get("content", "")}, {}, int(created["channel_id"])
                              if created else 5000) if body.get("type") in (4, 5) else None
        if message is not None:
            self.interactions.setdefault(token, {})["original"] = int(message["id"])
        return _json({"interaction": {"id": interaction_id, "type": 2, "response_message_id":
                                      message["id"] if message else None,
                                      "response_message_loading": body.get("type") == 5,
                                      "response_message_ephemeral": False},
                      "resource": {"type": body.get("type"), "message": message} if message else None})

    def _webhook(self, method: str, parts: list[str], body: Any, files: dict[str, bytes]) -> web.Response:
        token = parts[2]
        channel_id = int(self.interactions.get(token, {}).get("channel_id", 5000))
        if method == "POST" and len(parts) == 3:
            return _json(self._store(body or {}, files, channel_id))
        target = parts[4] if len(parts) > 4 else "@original"
        message_id = self.interactions.get(token, {}).get("original") if target == "@original" else int(target)
        if int(message_id or 0) not in self.messages:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        if method == "PATCH":
            message = self.messages[int(message_id or 0)]
            message.update({k: v for k, v in (body or {}).items() if k in ("content", "embeds", "components")})
            if "attachments" in (body or {}):
                self._attach(message, body["attachments"], files)
            return _json(message)
        if method == "DELETE":
            self.deleted.append(int(message_id or 0))
            return web.Response(status=204)
        return _json(self.messages.get(int(message_id or 0), {}))

    def _attach(self, message: dict[str, Any], wanted: list[dict[str, Any]], files: dict[str, bytes]) -> None:
        """An edit's ``attachments`` lists what stays (existing ids) and what is new (the uploaded files)."""
        keep = {str(a.get("id")) for a in wanted}
        kept = [a for a in message["attachments"] if a["id"] in keep]
        new = [self.attachment(name, data, offset=n + 100) for n, (name, data) in enumerate(files.items())]
        message["attachments"] = kept + new
        self.files[int(message["id"])] = files

    def _message(self, message_id: int, body: dict[str, Any], channel_id: int) -> dict[str, Any]:
        return {"id": str(message_id), "channel_id": str(channel_id), "author": BOT_USER,
                "content": body.get("content") or "", "timestamp": "2026-11-24T00:00:00+00:00",
                "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
                "mention_roles": [], "attachments": [], "embeds": body.get("embeds") or [], "pinned": False,
                "type": 0, "flags": body.get("flags") or 0, "components": body.get("components") or [],
                "application_id": str(APP_ID)}

    def _store(self, body: dict[str, Any], files: dict[str, bytes], channel_id: int) -> dict[str, Any]:
        self._counter += 1
        message_id = snowflake(self._counter)
        message = self._message(message_id, body, channel_id)
        message["attachments"] = [self.attachment(name, data, offset=n) for n, (name, data) in enumerate(files.items())]
        self.files[message_id] = files
        self.messages[message_id] = message
        return message

    # ------------------------------------------------------------------ reading what happened
    def calls_to(self, fragment: str, method: str | None = None) -> list[Call]:
        """REST calls whose path contains ``fragment``."""
        return [c for c in self.calls if fragment in c.path and method in (None, c.method)]

    def for_token(self, token: str) -> list[Call]:
        """Every call made with one interaction's token, in order."""
        return [c for c in self.calls if token in c.path]


@contextlib.asynccontextmanager
async def running_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord; discord.py's class-level addresses, which the platform points at it, are
    restored after the test."""
    server = await FakeDiscord().start()
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    try:
        yield server
    finally:
        await server.stop()
