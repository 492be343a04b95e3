"""A fake Discord on 127.0.0.1: the REST routes and gateway events the bot uses, held in memory. discord.py talks
to it over real HTTP and a real websocket; only its API base (`discord.http.Route.BASE`) is pointed here, and the
gateway's address comes from `GET /gateway/bot`, as from Discord.

- Logging in and syncing: `users/@me`, `oauth2/applications/@me`, `gateway/bot`, command PUTs.
- A server (`add_guild`) with text channels, threads and members, sent as GUILD_CREATE after READY.
- Channel history (`GET /channels/{id}/messages` with `before`/`after`/`around`/`limit`, newest first as Discord
  answers), with `rate_limit_next` 429s (`retry_after` in the body, `Via` header: discord.py waits and retries).
- Messages the bot sends or edits (`POST`/`PATCH /channels/{id}/messages`), typing, interaction callbacks and
  followups: recorded in `sent`, answered with message objects with ids.
- Gateway dispatches the tests send: `post()` (MESSAGE_CREATE), `edit()` (MESSAGE_UPDATE), `delete()`
  (MESSAGE_DELETE), `bulk_delete()` (MESSAGE_DELETE_BULK), `click()` (INTERACTION_CREATE for a button).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta

from aiohttp import WSMsgType, web
from discord.utils import time_snowflake

BOT_ID = "111111111111111111"
TOKEN = "MTExMTExMTExMTExMTExMTEx.GzXyZa.abcdefghijklmnopqrstuvwxyz0123456789AB"  # shaped like a token, fake


def _json(data, status: int = 200) -> web.Response:
    """A JSON answer as Discord sends it: discord.py reads the body as JSON only for exactly this type."""
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


class FakeDiscord:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.commands: dict[str, list[dict]] = {}  # PUT command lists, by path
        self.identified: list[dict] = []  # IDENTIFY payloads the gateway received
        self.connected = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.guilds: list[dict] = []  # GUILD_CREATE payloads sent after READY
        self.history: dict[int, list[dict]] = {}  # channel id -> its messages, oldest first
        self.history_requests: list[dict] = []  # (channel, query) of every GET of a channel's messages
        self.rate_limit_next = 0  # the next N history requests answer 429
        self.rate_limited = 0  # 429s answered
        self.sent: list[dict] = []  # what the bot sent or edited: {"method", "path", "body"}
        self.ws: web.WebSocketResponse | None = None
        self.seq = 0
        self._ids = itertools.count(1)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self.me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self.application)
        app.router.add_get("/api/v10/gateway/bot", self.gateway_bot)
        app.router.add_put("/api/v10/applications/{app}/commands", self.put_commands)
        app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", self.put_commands)
        app.router.add_get("/gateway", self.gateway)
        app.router.add_get("/api/v10/channels/{channel}/messages", self.get_messages)
        app.router.add_post("/api/v10/channels/{channel}/messages", self.post_message)
        app.router.add_patch("/api/v10/channels/{channel}/messages/{message}", self.patch_message)
        app.router.add_post("/api/v10/channels/{channel}/typing", self.typing)
        app.router.add_post("/api/v10/interactions/{id}/{token}/callback", self.interaction_callback)
        app.router.add_route("*", "/api/v10/webhooks/{app}/{token}", self.followup)
        app.router.add_route("*", "/api/v10/webhooks/{app}/{token}/messages/{message}", self.followup)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    @staticmethod
    def _unauthorised() -> web.Response:
        return _json({"message": "401: Unauthorized", "code": 0}, status=401)

    def _user(self) -> dict:
        return {"id": BOT_ID, "username": "mimicbot", "discriminator": "0", "global_name": None, "avatar": None,
                "bot": True, "flags": 0}

    async def me(self, request: web.Request) -> web.Response:
        return _json(self._user()) if self._authorised(request) else self._unauthorised()

    async def application(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        return _json({"id": BOT_ID, "name": "mimicbot", "description": "", "icon": None,
                                  "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
                                  "owner": {**self._user(), "id": "222222222222222222", "bot": False}, "flags": 0})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        return _json({"url": f"ws://127.0.0.1:{self.port}/gateway", "shards": 1,
                                  "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0,
                                                          "max_concurrency": 1}})

    async def put_commands(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        self.commands[request.path] = body
        return _json([{**c, "id": str(900 + i), "application_id": BOT_ID, "version": "1"}
                                  for i, c in enumerate(body)])

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        seq = 0
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            payload = json.loads(message.data)
            if payload["op"] == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
            elif payload["op"] == 2:  # identify
                self.identified.append(payload["d"])
                seq += 1
                self.ws, self.seq = ws, seq
                await self.dispatch("READY", {
                    "v": 10, "user": self._user(), "session_id": "fake-session",
                    "guilds": [{"id": g["id"], "unavailable": True} for g in self.guilds],
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway", "shard": [0, 1],
                    "application": {"id": BOT_ID, "flags": 0}})
                for guild in self.guilds:
                    await self.dispatch("GUILD_CREATE", guild)
                self.connected.set()
        return ws

    # -- the server's state ----------------------------------------------------------------------------

    def snowflake(self, when: datetime | None = None) -> str:
        """A new id, made at `when` (default now), unique in this fake."""
        return str(time_snowflake(when or datetime.now(UTC)) + next(self._ids) % 4096)

    def add_guild(self, name: str = "Test Server", channels: tuple[str, ...] = ("general", "random")) -> dict:
        """A server with text channels, the bot in it, an admin (Manage Server), and a role that can do nothing."""
        guild_id = self.snowflake()
        guild = {
            "id": guild_id, "name": name, "owner_id": "222222222222222222", "unavailable": False,
            "member_count": 1, "large": False, "features": [], "emojis": [], "stickers": [], "icon": None,
            "roles": [{"id": guild_id, "name": "@everyone", "permissions": str((1 << 10) | (1 << 11) | (1 << 16)),
                       "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False},
                      {"id": self.snowflake(), "name": "Admins", "permissions": str(1 << 5), "position": 1,
                       "color": 0, "hoist": False, "managed": False, "mentionable": False}],
            "channels": [], "threads": [], "members": [], "voice_states": [], "presences": [],
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "mfa_level": 0, "premium_tier": 0, "nsfw_level": 0, "preferred_locale": "en-US", "system_channel_id": None,
            "afk_timeout": 300, "joined_at": datetime.now(UTC).isoformat(),
        }
        for position, channel in enumerate(channels):
            guild["channels"].append({"id": self.snowflake(), "type": 0, "name": channel, "position": position,
                                      "permission_overwrites": [], "guild_id": guild_id, "nsfw": False,
                                      "parent_id": None, "topic": None, "last_message_id": None})
        self.guilds.append(guild)
        self.add_member(guild, "mimicbot", user=self._user())
        return guild

    def add_member(self, guild: dict, name: str, *, bot: bool = False, admin: bool = False,
                   user: dict | None = None) -> dict:
        user = user or {"id": self.snowflake(), "username": name, "discriminator": "0", "global_name": name.title(),
                        "avatar": None, "bot": bot}
        member = {"user": user, "roles": [guild["roles"][1]["id"]] if admin else [], "nick": None,
                  "joined_at": datetime.now(UTC).isoformat(), "deaf": False, "mute": False, "flags": 0}
        guild["members"].append(member)
        return member

    def add_thread(self, guild: dict, parent: dict, name: str) -> dict:
        thread = {"id": self.snowflake(), "type": 11, "name": name, "parent_id": parent["id"], "guild_id": guild["id"],
                  "owner_id": BOT_ID, "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
                  "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                      "archive_timestamp": datetime.now(UTC).isoformat()}}
        guild["threads"].append(thread)
        return thread

    def message(self, channel: dict, member: dict, content: str, *, when: datetime | None = None,
                kind: int = 0, webhook: bool = False, mentions: list[dict] = ()) -> dict:
        """A message payload as Discord sends it (MESSAGE_CREATE and channel history alike)."""
        when = when or datetime.now(UTC)
        data = {"id": self.snowflake(when), "channel_id": channel["id"], "author": member["user"], "content": content,
                "timestamp": when.isoformat(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
                "mentions": list(mentions), "mention_roles": [], "attachments": [], "embeds": [], "pinned": False,
                "type": kind,
                "flags": 0, "components": []}
        if webhook:
            data["webhook_id"] = self.snowflake()
        return data

    def fill_history(self, channel: dict, messages: list[tuple[dict, str]], *, end: datetime | None = None) -> list[dict]:
        """Past messages of a channel, (member, text) in the order written, one a minute up to `end` (default: an
        hour ago); returns their payloads."""
        end = end or datetime.now(UTC) - timedelta(hours=1)
        start = end - timedelta(minutes=len(messages))
        made = [self.message(channel, member, text, when=start + timedelta(minutes=i))
                for i, (member, text) in enumerate(messages)]
        stored = self.history.setdefault(int(channel["id"]), [])
        stored.extend(made)
        stored.sort(key=lambda m: int(m["id"]))
        return made

    # -- gateway dispatches ----------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict) -> None:
        self.seq += 1
        await self.ws.send_str(json.dumps({"op": 0, "t": event, "s": self.seq, "d": data}))


    async def post(self, channel: dict, member: dict, content: str, **kw) -> dict:
        """Someone writes in a channel: MESSAGE_CREATE (and the message joins the channel's history)."""
        data = self.message(channel, member, content, **kw)
        self.history.setdefault(int(channel["id"]), []).append(data)
        guild_member = {k: v for k, v in member.items() if k != "user"}
        await self.dispatch("MESSAGE_CREATE", {**data, "guild_id": self._guild_id_of(channel["id"]),
                                               "member": guild_member})
        return data

    async def edit(self, message: dict, content: str) -> None:
        """Someone edits their message: MESSAGE_UPDATE with the new text."""
        message.update(content=content, edited_timestamp=datetime.now(UTC).isoformat())
        await self.dispatch("MESSAGE_UPDATE", {**message, "guild_id": self._guild_id_of(message["channel_id"])})

    async def delete(self, message: dict) -> None:
        self._drop([message["id"]], message["channel_id"])
        await self.dispatch("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"],
                                               "guild_id": self._guild_id_of(message["channel_id"])})

    async def bulk_delete(self, messages: list[dict]) -> None:
        channel_id = messages[0]["channel_id"]
        self._drop([m["id"] for m in messages], channel_id)
        await self.dispatch("MESSAGE_DELETE_BULK", {"ids": [m["id"] for m in messages], "channel_id": channel_id,
                                                    "guild_id": self._guild_id_of(channel_id)})

    def _drop(self, ids: list[str], channel_id: str) -> None:
        self.history[int(channel_id)] = [m for m in self.history.get(int(channel_id), []) if m["id"] not in ids]

    def _guild_id_of(self, channel_id: str) -> str:
        return next(g["id"] for g in self.guilds if any(c["id"] == channel_id for c in g["channels"] + g["threads"]))

    async def click(self, message: dict, custom_id: str, member: dict) -> str:
        """Someone presses a button of a message the bot sent: INTERACTION_CREATE; returns the interaction's token."""
        token = f"token-{next(self._ids)}"
        channel_id = message["channel_id"]
        guild_id = self._guild_id_of(channel_id)
        await self.dispatch("INTERACTION_CREATE", {
            "id": self.snowflake(), "application_id": BOT_ID, "type": 3, "token": token, "version": 1,
            "data": {"custom_id": custom_id, "component_type": 2}, "channel_id": channel_id, "guild_id": guild_id,
            "channel": {"id": channel_id, "type": 0, "guild_id": guild_id, "name": "channel"},
            "member": {**member, "permissions": str((1 << 10) | (1 << 11))}, "message": message, "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "context": 0, "attachment_size_limit": 25 << 20,
            "app_permissions": "0"})
        return token

    async def slash(self, channel: dict, member: dict, name: str, **options) -> str:
        """Someone runs a slash command `/name option:value ...` (string options): INTERACTION_CREATE; returns the
        interaction's token (its answers are in `sent` under that token)."""
        token = f"token-{next(self._ids)}"
        guild_id = self._guild_id_of(channel["id"])
        await self.dispatch("INTERACTION_CREATE", {
            "id": self.snowflake(), "application_id": BOT_ID, "type": 2, "token": token, "version": 1,
            "data": {"id": self.snowflake(), "name": name, "type": 1,
                     "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()]},
            "channel_id": channel["id"], "guild_id": guild_id,
            "channel": {"id": channel["id"], "type": 0, "guild_id": guild_id, "name": channel.get("name", "channel")},
            "member": {**member, "permissions": str((1 << 10) | (1 << 11))}, "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "context": 0, "attachment_size_limit": 25 << 20,
            "app_permissions": str((1 << 10) | (1 << 11) | (1 << 16))})
        return token

    # -- REST: history and what the bot sends ----------------------------------------------------------

    async def get_messages(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        channel_id = int(request.match_info["channel"])
        query = dict(request.query)
        self.history_requests.append({"channel": channel_id, **query})
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            self.rate_limited += 1
            return web.Response(body=json.dumps({"message": "You are being rate limited.", "retry_after": 0.05,
                                                 "global": False}).encode(), status=429,
                                headers={"Content-Type": "application/json", "Via": "1.1 google",
                                         "Retry-After": "1", "X-RateLimit-Scope": "user"})
        limit = min(int(query.get("limit", 50)), 100)
        messages = self.history.get(channel_id, [])
        if "before" in query:
            found = [m for m in messages if int(m["id"]) < int(query["before"])][-limit:]
        elif "after" in query:
            found = [m for m in messages if int(m["id"]) > int(query["after"])][:limit]
        else:
            found = messages[-limit:]
        return _json(list(reversed(found)))  # newest first, as Discord answers

    def _bot_message(self, channel_id: str, body: dict) -> dict:
        return {"id": self.snowflake(), "channel_id": channel_id, "author": self._user(), "type": 0,
                "content": body.get("content") or "", "embeds": body.get("embeds") or [],
                "components": body.get("components") or [], "flags": body.get("flags", 0), "attachments": [],
                "timestamp": datetime.now(UTC).isoformat(), "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": [], "mention_roles": [], "pinned": False}

    async def _body(self, request: web.Request) -> dict:
        if request.content_type == "application/json":
            return await request.json()
        if request.content_type.startswith("multipart/"):
            async for part in await request.multipart():
                if part.name == "payload_json":
                    return json.loads(await part.text())
        return {}

    async def post_message(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await self._body(request)
        message = self._bot_message(request.match_info["channel"], body)
        self.sent.append({"method": "POST", "path": request.path, "body": body, "message": message})
        return _json(message)

    async def patch_message(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.sent.append({"method": "PATCH", "path": request.path, "body": body})
        return _json(self._bot_message(request.match_info["channel"], body))

    async def typing(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def interaction_callback(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.sent.append({"method": "POST", "path": request.path, "body": body.get("data") or {},
                          "token": request.match_info["token"], "kind": body.get("type")})
        answer = {"interaction": {"id": request.match_info["id"], "type": 3, "response_message_loading": False,
                                  "response_message_ephemeral": False}}
        if body.get("type") in (4, 5, 7):
            answer["resource"] = {"type": body["type"], "message": self._bot_message("0", body.get("data") or {})}
        return _json(answer)

    async def followup(self, request: web.Request) -> web.Response:
        body = await self._body(request) if request.method in ("POST", "PATCH") else {}
        self.sent.append({"method": request.method, "path": request.path, "body": body,
                          "token": request.match_info["token"]})
        if request.method == "DELETE":
            return web.Response(status=204)
        return _json(self._bot_message("0", body))

    def said(self, since: int = 0) -> list[str]:
        """The text of everything the bot sent or edited since `sent[since]`: contents and embeds' text."""
        out = []
        for entry in self.sent[since:]:
            body = entry["body"] or {}
            parts = [body.get("content") or ""]
            for embed in body.get("embeds") or []:
                parts += [embed.get("title") or "", embed.get("description") or ""]
                parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields") or []]
            out.append("\n".join(p for p in parts if p))
        return out
