"""A fake Discord on 127.0.0.1 for the daemon's tests: the few REST routes that logging in and syncing use,
and a gateway that says HELLO and READY. discord.py talks to it over real HTTP and a real websocket; only
its API base (`discord.http.Route.BASE`) is pointed here, and the gateway's address comes from
`GET /gateway/bot`, as from Discord.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

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
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": seq, "d": {
                    "v": 10, "user": self._user(), "guilds": [], "session_id": "fake-session",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway", "shard": [0, 1],
                    "application": {"id": BOT_ID, "flags": 0}}}))
                self.connected.set()
        return ws
