"""The Discord tests' shared vocabulary (a pytest plugin, as Red's `redbot/pytest` is).

Real parts only: the bot is the product's bot class, driven through discord.py's own dispatch.

- Prefix commands go through dpytest (0.7.0): `world.say("!generate ada_bytes")` makes a message event,
  discord.py parses and invokes the command, dpytest's fake HTTP records what the bot sends.
- Slash commands go through discord.py's own interaction parsing: `slash.invoke("generate", model=...)`
  builds a raw INTERACTION_CREATE payload (the JSON Discord sends over the gateway) and hands it to
  `ConnectionState.parse_interaction_create`, which builds the Interaction and runs the command tree. The
  interaction's HTTP calls (the callback that acknowledges it, followups, edits) go through discord.py's
  webhook adapter; `RecordingWebhookAdapter` stands in for Discord's HTTP API there, records every call
  with its JSON body and answers as Discord does (message objects with ids).
- The autouse `no_pings` fixture inspects every message payload discord.py builds in a test (sends,
  replies, edits, interaction responses, followups) and fails the test if one could ping anyone.

The trained model is real: `trained_models` fine-tunes the tiny offline GPT-2 on the bundled @ada_bytes
sample once per session, in a training child process, exactly as `mimicbot train` does.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import discord
import discord.ext.test as dpytest
import pytest
from discord.ext.test import backend as dpy_backend
from discord.ext.test import callbacks as dpy_callbacks
from discord.ext.test import runner as dpy_runner
from discord.utils import time_snowflake
from discord.webhook import async_ as webhook_async

from bot.app import App
from bot.config import Settings
from bot.discord.bot import SingleDiscordBot, default_intents
from bot.discord.options import DiscordOptions
from bot.samples.generate import sample_path
from bot.service import Mimicbot

TRAINED_MODEL = "ada_bytes"
SAMPLES = ("ada_bytes", "grace_gardens")


# -- every payload, checked: nothing the bot sends may ping --------------------------------------------


class OutgoingLog:
    """Every message payload discord.py built during a test, from the one pair of functions that builds
    them all (`handle_message_parameters`, `interaction_message_response_params`), wherever they are used."""

    BUILDERS = {
        "handle_message_parameters": ("discord.abc", "discord.message", "discord.channel", "discord.interactions",
                                      "discord.webhook.async_"),
        "interaction_message_response_params": ("discord.interactions",),
    }

    def __init__(self):
        self.payloads: list[dict] = []
        self.dpytest_sends = 0

    def install(self, monkeypatch) -> None:
        for name, modules in self.BUILDERS.items():
            for module_name in modules:
                module = importlib.import_module(module_name)
                monkeypatch.setattr(module, name, self._recording(getattr(module, name)))

    def _recording(self, build):
        def recording(*args, **kwargs):
            params = build(*args, **kwargs)
            self.payloads.append(payload_of(params.payload, params.multipart))
            return params

        return recording


def payload_of(payload: dict | None, multipart: list | None) -> dict:
    """The JSON body of a request, whether sent as JSON or inside multipart's payload_json."""
    if payload is not None:
        return payload
    for part in multipart or []:
        if part["name"] == "payload_json":
            return json.loads(part["value"])
    return {}


def assert_cannot_ping(body: dict) -> None:
    """A message body pings nobody: text carries allowed_mentions that parse nothing and list nobody."""
    message = body.get("data", body) if "type" in body and isinstance(body.get("data"), dict) else body
    mentions = message.get("allowed_mentions")
    if message.get("content"):
        assert mentions is not None, f"text sent without allowed_mentions: {message.get('content')!r}"
    if mentions is not None:
        assert mentions.get("parse") == [], mentions
        assert not mentions.get("users") and not mentions.get("roles"), mentions
        assert not mentions.get("replied_user"), mentions


@pytest.fixture(autouse=True)
def no_pings(monkeypatch):
    log = OutgoingLog()
    log.install(monkeypatch)
    yield log
    for body in log.payloads:
        assert_cannot_ping(body)
    assert len(log.payloads) >= log.dpytest_sends, "a message reached dpytest without passing the builders"


# -- slash commands: raw interactions in, recorded HTTP out -------------------------------------------


@dataclass
class Call:
    method: str
    path: str  # e.g. /interactions/123/token-1/callback
    body: dict
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        parts = self.path.split("/")
        return parts[3] if len(parts) > 3 and parts[1] in ("interactions", "webhooks") else None


class RecordingWebhookAdapter(webhook_async.AsyncWebhookAdapter):
    """Discord's side of interaction HTTP: records each call and answers like Discord (messages with ids)."""

    def __init__(self, bot_user: discord.ClientUser, channel_of_token: dict[str, int]):
        super().__init__()
        self.bot_user = bot_user
        self.channel_of_token = channel_of_token
        self.calls: list[Call] = []
        self.messages: dict[int, dict] = {}
        self.original: dict[str, int] = {}  # interaction token -> id of its original response

    async def request(self, route, session=None, *, payload=None, multipart=None, files=None, params=None,
                      **_):
        body = payload_of(payload, multipart)
        saved = {}
        for f in files or []:
            f.fp.seek(0)
            saved[f.filename] = f.fp.read()
        call = Call(route.method, route.url.split("/api/v10", 1)[-1], body, saved)
        self.calls.append(call)
        assert_cannot_ping(body)
        return self._answer(call)

    def _answer(self, call: Call):
        parts = call.path.split("/")
        token = parts[3]
        if parts[1] == "interactions":  # POST /interactions/{id}/{token}/callback
            kind = call.body["type"]
            answer = {"interaction": {"id": parts[2], "type": 2, "response_message_loading": kind == 5,
                                      "response_message_ephemeral": False}}
            if kind in (4, 5, 7):
                message = self._message(token, call.body.get("data") or {}, call.files)
                if kind != 7:
                    self.original[token] = int(message["id"])
                answer["interaction"]["response_message_id"] = message["id"]
                answer["resource"] = {"type": kind, "message": message}
            return answer
        target = parts[5] if len(parts) > 5 else None  # /webhooks/{app}/{token}/messages/{id|@original}
        if target == "@original":
            target = self.original.get(token)
        if call.method == "POST":  # a followup
            return self._message(token, call.body, call.files)
        if call.method == "PATCH":
            message = self.messages[int(target)]
            message.update({k: v for k, v in call.body.items() if k in ("content", "embeds", "components")})
            message["edited_timestamp"] = _now()
            return message
        if call.method == "GET":
            return self.messages[int(target)]
        return None  # DELETE

    def _message(self, token: str, body: dict, files: dict) -> dict:
        message_id = time_snowflake(datetime.now(UTC)) + next(_ids)
        message = {
            "id": str(message_id), "channel_id": str(self.channel_of_token.get(token, 0)), "type": 0,
            "author": {"id": str(self.bot_user.id), "username": self.bot_user.name, "discriminator": "0001",
                       "avatar": None, "bot": True},
            "content": body.get("content") or "", "embeds": body.get("embeds") or [],
            "components": body.get("components") or [], "flags": body.get("flags", 0),
            "attachments": [{"id": str(i), "filename": name, "size": len(data), "url": f"https://cdn/{name}",
                             "proxy_url": f"https://cdn/{name}"} for i, (name, data) in enumerate(files.items())],
            "timestamp": _now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "pinned": False,
        }
        self.messages[message_id] = message
        return message

    def for_token(self, token: str) -> list[Call]:
        return [c for c in self.calls if c.token == token]


_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class SlashRun:
    """What one interaction made the bot do over HTTP, in order."""

    token: str
    adapter: RecordingWebhookAdapter

    @property
    def calls(self) -> list[Call]:
        return self.adapter.for_token(self.token)

    @property
    def original(self) -> dict:
        """The message the interaction's response created (as the adapter keeps it, edits applied)."""
        return self.adapter.messages[self.adapter.original[self.token]]

    @property
    def messages(self) -> list[dict]:
        """The message bodies the bot sent or edited, in order (response data, followups, edits)."""
        out = []
        for call in self.calls:
            if call.path.endswith("/callback"):
                if call.body.get("data"):
                    out.append(call.body["data"])
            elif call.method in ("POST", "PATCH"):
                out.append(call.body)
        return out

    @property
    def text(self) -> str:
        """All text shown: contents, embed titles, descriptions and fields."""
        return "\n".join(message_text(m) for m in self.messages)


def message_text(message: dict) -> str:
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", ""), (embed.get("author") or {}).get("name", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        parts.append((embed.get("footer") or {}).get("text", ""))
    return "\n".join(p for p in parts if p)


class SlashDriver:
    """Feeds raw interactions to the bot as Discord's gateway would, and records what it answers."""

    def __init__(self, world: World):
        self.world = world
        self.bot = world.bot
        self.tokens: dict[str, int] = {}
        self.adapter = RecordingWebhookAdapter(self.bot.user, self.tokens)
        webhook_async.async_context.set(self.adapter)  # the interaction's HTTP goes here
        self._n = itertools.count(1)

    async def invoke(self, name: str, *, by: discord.Member | None = None, where=None, **options) -> SlashRun:
        """Run `/name option=value …` (a subcommand as "group sub") as member `by` (default: an ordinary
        member) in channel `where` (default: the server's channel), and wait until the command finished."""
        parts = name.split()
        command = self.bot.tree.get_command(parts[0])
        assert command is not None, f"no slash command {parts[0]!r}"
        data = {"id": str(time_snowflake(datetime.now(UTC))), "name": parts[0], "type": 1}
        resolved: dict = {}
        if len(parts) == 2:
            sub = command.get_command(parts[1])
            data["options"] = [{"type": 1, "name": parts[1], "options": self._options(sub, options, resolved)}]
        else:
            data["options"] = self._options(command, options, resolved)
        if resolved:
            data["resolved"] = resolved
        return await self._send(2, data, by, where)

    def start(self, name: str, **options) -> asyncio.Task:
        """`invoke` for a command that waits for the person (a confirmation): it runs while the test acts."""
        return asyncio.create_task(self.invoke(name, **options))

    async def wait_for_message(self, predicate, timeout: float = 30) -> dict:
        """The first message the bot sent through an interaction that satisfies `predicate` (polled)."""
        async def poll():
            while True:
                for message in list(self.adapter.messages.values()):
                    if predicate(message):
                        return message
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(poll(), timeout)

    async def autocomplete(self, name: str, option: str, typed: str, **others) -> list[dict]:
        """The choices the bot offers while `option` is being typed."""
        command = self.bot.tree.get_command(name)
        opts = self._options(command, others, {})
        param = next(p for p in command.parameters if p.name == option)
        opts.append({"name": option, "type": param.type.value, "value": typed, "focused": True})
        run = await self._send(4, {"id": "1", "name": name, "type": 1, "options": opts}, None, None)
        (callback,) = run.calls
        assert callback.body["type"] == 8  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
        return callback.body["data"]["choices"]

    async def click(self, message: dict | discord.Message, custom_id: str, *, by=None, where=None) -> SlashRun:
        """Press a button of a message the bot sent."""
        if isinstance(message, discord.Message):
            message = {"id": str(message.id), "channel_id": str(message.channel.id), "type": 0, "content": "",
                       "embeds": [], "attachments": [], "mentions": [], "mention_roles": [], "pinned": False,
                       "tts": False, "mention_everyone": False, "timestamp": _now(), "edited_timestamp": None,
                       "author": {"id": str(self.bot.user.id), "username": "FakeApp", "discriminator": "0001",
                                  "avatar": None, "bot": True}, "flags": 0, "components": []}
        return await self._send(3, {"custom_id": custom_id, "component_type": 2}, by, where, message=message)

    def _options(self, command, values: dict, resolved: dict) -> list[dict]:
        params = {p.name: p for p in command.parameters}
        out = []
        for key, value in values.items():
            param = params[key]
            out.append({"name": key, "type": param.type.value, "value": self._raw(value, resolved)})
        return out

    def _raw(self, value, resolved: dict):
        if isinstance(value, discord.Role):
            resolved.setdefault("roles", {})[str(value.id)] = dpy_backend.facts.dict_from_role(value)
            return str(value.id)
        if isinstance(value, discord.Member):
            resolved.setdefault("users", {})[str(value.id)] = _user(value)
            resolved.setdefault("members", {})[str(value.id)] = {k: v for k, v in _member(value).items()
                                                                  if k != "user"}
            return str(value.id)
        if isinstance(value, discord.TextChannel):
            resolved.setdefault("channels", {})[str(value.id)] = {
                "id": str(value.id), "type": 0, "name": value.name, "permissions": "0", "guild_id": str(value.guild.id)}
            return str(value.id)
        return value

    async def _send(self, kind: int, data: dict, user, channel, message: dict | None = None) -> SlashRun:
        payload = self.payload(kind, data, user, channel, message)
        before = set(asyncio.all_tasks())
        self.bot._connection.parse_interaction_create(payload)  # what the gateway's INTERACTION_CREATE does
        await settle(before)
        return SlashRun(payload["token"], self.adapter)

    def interaction(self, *, age: timedelta = timedelta(0)) -> discord.Interaction:
        """An application-command interaction as discord.py builds it, made `age` ago (its id carries its
        time: past 15 minutes, Discord no longer accepts its token), without running any command."""
        return discord.Interaction(data=self.payload(2, {"id": "1", "name": "help", "type": 1}, None, None,
                                                     age=age), state=self.bot._connection)

    def payload(self, kind: int, data: dict, user, channel, message: dict | None = None, *,
                age: timedelta = timedelta(0)) -> dict:
        """The raw INTERACTION_CREATE data Discord would send for this person in this channel."""
        user = user or self.world.member
        channel = channel or self.world.channel
        token = f"token-{next(self._n)}"
        self.tokens[token] = channel.id
        payload = {
            "id": str(time_snowflake(datetime.now(UTC) - age) + next(_ids)), "application_id": str(self.bot.user.id),
            "type": kind, "token": token, "version": 1, "data": data, "channel_id": str(channel.id),
            "locale": "en-US", "entitlements": [], "attachment_size_limit": 25 << 20,
            "app_permissions": str(discord.Permissions.all().value),
        }
        if isinstance(channel, discord.DMChannel):
            payload.update(user=_user(user), context=1,
                           channel={"id": str(channel.id), "type": 1, "recipients": [_user(user)]})
        else:
            payload.update(guild_id=str(channel.guild.id), guild_locale="en-US", context=0,
                           channel={"id": str(channel.id), "type": 0, "name": channel.name,
                                    "guild_id": str(channel.guild.id)},
                           member={**_member(user), "permissions": str(channel.permissions_for(user).value)})
        if message is not None:
            payload["message"] = message
        return payload


async def settle(before: set[asyncio.Task]) -> None:
    """Wait for what the last event started: the command tree's invocation, views' callbacks, listeners."""
    names = ("CommandTree-invoker", "discord-ui-view-dispatch", "discord-ui-modal")
    while True:
        pending = [t for t in asyncio.all_tasks() - before if not t.done() and (
            t.get_name().startswith(names) or dpy_runner._task_coro_name(t) == "_run_event")]
        if not pending:
            return
        await asyncio.gather(*pending, return_exceptions=True)


def _user(user) -> dict:
    return {"id": str(user.id), "username": user.name, "discriminator": "0001", "avatar": None,
            "global_name": user.display_name, "bot": user.bot}


def _member(member: discord.Member) -> dict:
    return {"user": _user(member), "roles": [str(r.id) for r in member.roles if not r.is_default()],
            "joined_at": _now(), "deaf": False, "mute": False, "flags": 0, "nick": None}


# -- the world: a server with an admin, a member and a channel, and the bot in it ---------------------


@dataclass
class World:
    bot: SingleDiscordBot
    app: App  # the daemon's core the bot is a face of
    mimic: Mimicbot
    guild: discord.Guild
    channel: discord.TextChannel
    admin: discord.Member  # has Manage Server
    member: discord.Member  # an ordinary member
    other: discord.Member
    edits: list[tuple[int, dict]] = field(default_factory=list)  # (message id, body) of dpytest edits
    errors: list[Exception] = field(default_factory=list)  # errors of the last `say`
    said: discord.Message | None = None  # the person's message of the last `say`

    async def say(self, content: str, member: discord.Member | None = None, channel=None) -> list[discord.Message]:
        """Post a message as a person; returns what the bot sent in answer (sends, not edits)."""
        await dpytest.empty_queue()
        self.said = dpy_backend.make_message(content, member or self.member, channel or self.channel)
        await dpy_runner.run_all_events()
        self.errors = []  # what reached on_command_error (dpytest queues them; the reply was already sent)
        while not dpy_runner.error_queue.empty():
            self.errors.append(dpy_runner.error_queue.get_nowait()[1])
        return sent_messages()

    async def restart(self) -> None:
        """What a restart of the daemon does to the core: its parts stop (running jobs are queued again) and
        start afresh from the database, the cogs' before-serving hooks first."""
        await self.app.stop()
        await self.app.start()

    def add_member(self, name: str, bot: bool = False) -> discord.Member:
        """Someone joins the server (a bot account when `bot`)."""
        user = dpy_backend.get_state().store_user(dpy_backend.facts.make_user_dict(name, "0001", None, bot=bot))
        return dpy_backend.make_member(user, self.guild)

    def edits_of(self, message_id: int) -> list[dict]:
        return [body for mid, body in self.edits if mid == message_id]


def sent_messages() -> list[discord.Message]:
    out = []
    while not dpy_runner.sent_queue.empty():
        out.append(dpy_runner.sent_queue.get_nowait())
    return out


def text_of(message: discord.Message) -> str:
    """All text of a message dpytest recorded: content, embed titles, descriptions, authors, fields, footers."""
    return message_text({"content": message.content, "embeds": [e.to_dict() for e in message.embeds]})


def attach_dpytest(bot: discord.Client) -> None:
    """`dpytest.configure`, plus what it drops: it swaps in a new ConnectionState built without the options
    the bot was constructed with, so carry over what discord.py's Client.__init__ had put there — the
    allowed mentions (from the bot, not re-stated here: the safety check tests the bot's own choice) and
    the command tree (so interactions reach it)."""
    allowed = bot.allowed_mentions
    dpytest.configure(bot, members=["admin", "member", "other"])
    bot._connection.allowed_mentions = allowed
    bot._connection._command_tree = bot.tree
    bot.tree._state = bot._connection


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """The shared settings, with the offline tiny model as the bot's base model (as `mimicbot demo` runs)."""
    monkeypatch.chdir(tmp_path)
    return Settings(mimicbot_data_dir=tmp_path / "data", mimicbot_models_dir=tmp_path / "models",
                    mimicbot_base_model="tiny", _env_file=None)


@pytest.fixture
def options() -> DiscordOptions:
    """Test knobs: progress edited at every event, small steps, the tiny base model offered."""
    return DiscordOptions(_env_file=None, progress_interval=0, train_max_steps=2, base_models="gpt2",
                          generate_rate=2, generate_per=60, completion_samples=2, mention_per=60)


@pytest.fixture
def mimic(settings, trained_models):
    """The service over this test's database, holding the sample accounts and a copy of the trained model."""
    models_dir, _ = trained_models  # the session's tiny model of @ada_bytes (tests/kit/posting.py)
    shutil.copytree(models_dir, settings.models_dir, ignore=shutil.ignore_patterns(".work", ".trash-*"))
    service = Mimicbot(settings)
    service.fetch_blocking([str(sample_path(name)) for name in SAMPLES])
    yield service
    service.close()


@pytest.fixture
async def world(settings, options, mimic, no_pings):
    # dpytest keeps its members in the member cache, which needs the members intent (the product asks
    # for none: commands and interactions carry their member)
    intents = default_intents(options)
    intents.members = True
    app = App(settings, service=mimic)
    bot = SingleDiscordBot(settings, options, app=app, intents=intents)
    attach_dpytest(bot)
    await bot._async_setup_hook()  # the loop-bound parts `login()` sets up first
    config = dpytest.get_config()
    guild, channel = config.guilds[0], config.channels[0]
    admin, member, other = config.members
    role = dpy_backend.make_role("Admins", guild, permissions=discord.Permissions(manage_guild=True).value)
    await dpytest.add_role(admin, role)
    world = World(bot, app, mimic, guild, channel, guild.get_member(admin.id), guild.get_member(member.id),
                  guild.get_member(other.id))

    async def on_edit(channel, message, fields):  # dpytest's hook for message edits
        world.edits.append((message.id, fields["params"].payload or {}))

    async def on_send(message):  # dpytest's own queue, plus a count for the no_pings cross-check
        no_pings.dpytest_sends += 1
        await dpy_runner._message_callback(message)

    dpy_callbacks.set_callback(on_edit, "edit_message")
    dpy_callbacks.set_callback(on_send, "send_message")
    await bot.setup_hook()  # what login() runs next: the cogs (as the Discord face's attach does)
    await app.start()  # then the core serves: hooks, the pool, schedules, heartbeat
    bot._ready.set()  # the gateway's READY, which dpytest does not send
    yield world
    bot.ws = None  # dpytest's fake gateway has no socket to close
    await bot.close()
    await app.stop()
    dpy_callbacks.remove_callback("edit_message")
    await dpytest.empty_queue()


@pytest.fixture
async def slash(world) -> SlashDriver:
    return SlashDriver(world)
