"""Learning a member's voice from the server, with their consent (issue 15), through discord.py's own dispatch:
the bot logs in to a fake Discord on 127.0.0.1 (tests/discord/fake_discord.py), connects to its gateway, receives
READY and GUILD_CREATE, and from then on every message, edit, deletion and button press reaches it as a gateway
event, and everything it reads (channel history) or sends goes over real HTTP.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import discord
import discord.http
import pytest

from bot.app import App
from bot.discord.bot import DiscordBot
from bot.discord.options import DiscordOptions
from bot.service import MIN_CHARS, Mimicbot

from .fake_discord import TOKEN, FakeDiscord

WAIT = 60  # a safety net for a stuck test, never a measurement
SENTENCES = ("the garden looks wonderful after the rain this morning", "I finally fixed the flaky test in our build",
             "nobody tells you how much tea a deadline needs", "my cat has opinions about every single meeting",
             "reading old notebooks is like meeting a stranger who knows you")


def words(i: int) -> str:
    """A message of the member's: a different sentence each time, long enough to be kept."""
    return f"{SENTENCES[i % len(SENTENCES)]} number {i}"


@dataclass
class Server:
    fake: FakeDiscord
    bot: DiscordBot
    app: App
    mimic: Mimicbot
    guild: dict
    general: dict  # enabled for learning in most tests
    random: dict  # never enabled
    admin: dict
    ada: dict  # opts in
    grace: dict  # never opts in
    robot: dict  # a bot account

    @property
    def guild_id(self) -> int:
        return int(self.guild["id"])

    def uid(self, member: dict) -> int:
        return int(member["user"]["id"])

    async def settle(self) -> None:
        """Until the bot has read every event sent so far (its gateway sequence has caught up with the fake's) and
        the handlers those started (listeners, commands) have ended, or wait for a person (a command showing
        buttons) — those are given a few seconds, then left running."""
        def read_all() -> bool:
            return (self.bot._get_websocket(shard_id=0).sequence or 0) >= self.fake.seq

        async def until_read_all() -> None:
            while not read_all():
                await asyncio.sleep(0.001)

        for _ in range(3):  # a handler's reply can bring another event
            await asyncio.wait_for(until_read_all(), WAIT)
            await asyncio.sleep(0)  # the handlers that dispatch scheduled have started
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
                       and (t.get_name().startswith(("discord.py: on_", "CommandTree", "discord-ui"))
                            or "_run_event" in repr(t.get_coro()))]
            if pending:
                await asyncio.wait(pending, timeout=3)
            elif read_all():
                return

    async def say(self, member: dict, content: str, channel: dict | None = None) -> list[str]:
        """Post a message as a person; returns what the bot sent or edited meanwhile."""
        since = len(self.fake.sent)
        message = await self.fake.post(channel or self.general, member, content)
        await self.settle()
        self.last = message
        return self.fake.said(since)

    async def opt_in(self, member: dict) -> list[str]:
        """`!optin`, then the member presses "I agree" on the terms the bot showed."""
        since = len(self.fake.sent)
        await self.fake.post(self.general, member, "!optin")
        terms = await self.wait_for_sent(lambda e: "Learn my voice" in (e["body"].get("content") or ""), since)
        await self.fake.click(terms["message"], "confirm:yes", member)
        await self.wait_for_sent(lambda e: "Thank you" in (e["body"].get("content") or ""), since)
        await self.settle()
        return self.fake.said(since)

    async def wait_for_sent(self, predicate, since: int = 0) -> dict:
        async def poll():
            while True:
                for entry in self.fake.sent[since:]:
                    if predicate(entry):
                        return entry
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(poll(), WAIT)

    async def backfilled(self, member: dict) -> None:
        """Until the member's backfill task has finished."""
        cog = self.bot.get_cog("Learning")
        task = cog.tasks.get((self.guild_id, self.uid(member)))
        if task is not None:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT)

    def stored(self, member: dict) -> list[dict]:
        """The member's stored messages (id, raw and clean text), oldest first."""
        row = self.mimic.member(self.guild_id, self.uid(member))
        if row is None:
            return []
        account = self.mimic.store.get_account("discord", row["handle"])
        return self.mimic.store.query("select post_id, raw_text, clean_text, is_short from posts where account_id = ? "
                                      "order by cast(post_id as integer)", [account["id"]])

    def all_posts(self) -> int:
        return self.mimic.store.query("select count(*) as n from posts")[0]["n"]


@pytest.fixture
async def fake(monkeypatch):
    async with FakeDiscord() as fake:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api)
        yield fake


@pytest.fixture
def learn_options() -> DiscordOptions:
    return DiscordOptions(_env_file=None, progress_interval=0, train_max_steps=2, base_models="gpt2",
                          backfill_limit=10_000, train_rate=5)


async def start_server(fake: FakeDiscord, settings, options: DiscordOptions) -> Server:
    """The daemon's core and its Discord bot, logged in and connected to the fake's server (made on first use:
    a restart finds the same server, as after a real restart)."""
    if not fake.guilds:
        guild = fake.add_guild(channels=("general", "random"))
        fake.add_member(guild, "admin", admin=True)
        fake.add_member(guild, "ada"), fake.add_member(guild, "grace")
        fake.add_member(guild, "robot", bot=True)
    (guild,) = fake.guilds
    _, admin, ada, grace, robot = guild["members"]
    mimic = Mimicbot(settings)
    app = App(settings, service=mimic)
    bot = DiscordBot(settings, options, app=app, guild_ready_timeout=0.05)  # the daemon's own (sharded) bot
    await bot.login(TOKEN)  # REST; loads the cogs
    await app.start()
    bot.connection_task = asyncio.create_task(bot.connect(reconnect=False))
    await asyncio.wait_for(bot.wait_until_ready(), WAIT)
    assert bot.get_guild(int(guild["id"])) is not None
    general, random = guild["channels"]
    return Server(fake, bot, app, mimic, guild, general, random, admin, ada, grace, robot)


async def stop_server(server: Server) -> None:
    await server.bot.close()
    await asyncio.gather(server.bot.connection_task, return_exceptions=True)
    await server.app.stop()
    server.mimic.close()


@pytest.fixture
async def server(fake, settings, learn_options):
    server = await start_server(fake, settings, learn_options)
    yield server
    await stop_server(server)


async def enable(server: Server, channel: dict) -> None:
    said = await server.say(server.admin, f"!config learn <#{channel['id']}>")
    assert any(f"<#{channel['id']}>" in s for s in said), said


# -- consent ----------------------------------------------------------------------------------------------------


async def test_opt_in_shows_the_terms_and_records_consent_with_its_time(server):
    (said,) = await server.say(server.ada, "!optin")
    assert "no channel of this server is enabled for learning yet" in said  # nothing to agree to yet
    await enable(server, server.general)

    since = len(server.fake.sent)
    await server.fake.post(server.general, server.ada, "!optin")
    terms = await server.wait_for_sent(lambda e: "Learn my voice" in (e["body"].get("content") or ""), since)
    text = terms["body"]["content"]
    assert f"<#{server.general['id']}>" in text and "optout" in text and "10,000" in text
    assert "I agree that my messages in this server's learning channels may be used" in text
    buttons = [c["label"] for row in terms["body"]["components"] for c in row["components"]]
    assert buttons == ["I agree", "No thanks"]
    assert server.mimic.member(server.guild_id, server.uid(server.ada)) is None  # not before the click

    # someone else cannot press the member's button
    await server.fake.click(terms["message"], "confirm:yes", server.grace)
    await server.wait_for_sent(lambda e: "Only the person who ran the command" in (e["body"].get("content") or ""),
                               since)
    assert server.mimic.member(server.guild_id, server.uid(server.ada)) is None
    assert server.mimic.member(server.guild_id, server.uid(server.grace)) is None

    await server.fake.click(terms["message"], "confirm:yes", server.ada)
    await server.wait_for_sent(lambda e: "Thank you" in (e["body"].get("content") or ""), since)
    row = server.mimic.member(server.guild_id, server.uid(server.ada))
    assert row["consented_at"] and row["display_name"] == "Ada" and row["avatar_url"] is None
    assert row["consent_text"].startswith("I agree that my messages")
    assert str(server.uid(server.ada)) not in row["handle"] and row["handle"].startswith("ada_")


async def test_the_slash_commands_answer_only_the_member(server):
    """`/optin action:status` and `/optout` as slash commands: answered in an ephemeral message (flag 64)."""
    token = await server.fake.slash(server.general, server.grace, "optin", action="status")
    answer = await server.wait_for_sent(lambda e: e.get("token") == token and (e["body"].get("content") or ""))
    assert answer["body"]["content"].startswith("You have not opted in here: I store nothing of yours")
    assert answer["body"]["flags"] & 64
    token = await server.fake.slash(server.general, server.grace, "optout")
    answer = await server.wait_for_sent(lambda e: e.get("token") == token and (e["body"].get("content") or ""))
    assert answer["body"]["content"] == "You had not opted in here: nothing of yours is stored."
    assert server.all_posts() == 0


async def test_a_read_begun_before_a_change_is_not_kept_after_it(server):
    """A message arriving as an admin enables a channel starts a read of the server's state; when that read returns
    after the change (stale), it must not be cached over the change, or the next `!optin` finds no channel enabled."""
    cog = server.bot.get_cog("Learning")
    cog.invalidate(server.guild_id)
    reading = asyncio.create_task(cog.state(server.guild_id))
    for _ in range(3):  # the read starts in its threads (state, then gather's tasks, then to_thread)...
        await asyncio.sleep(0)
    time.sleep(0.5)  # ...and finishes while the loop is held here, before this change:
    server.mimic.set_guild_setting(server.guild_id, "learn_channels", [int(server.general["id"])])
    cog.invalidate(server.guild_id)
    stale, _ = await reading
    assert stale == set()
    channels, _ = await cog.state(server.guild_id)
    assert channels == {int(server.general["id"])}


async def test_declining_stores_nothing(server):
    await enable(server, server.general)
    server.fake.fill_history(server.general, [(server.ada, words(i)) for i in range(30)])
    since = len(server.fake.sent)
    await server.fake.post(server.general, server.ada, "!optin")
    terms = await server.wait_for_sent(lambda e: "Learn my voice" in (e["body"].get("content") or ""), since)
    await server.fake.click(terms["message"], "confirm:no", server.ada)
    await server.wait_for_sent(lambda e: "Nothing was stored" in (e["body"].get("content") or ""), since)
    await server.say(server.ada, words(99))
    assert server.mimic.member(server.guild_id, server.uid(server.ada)) is None
    assert server.all_posts() == 0 and server.fake.history_requests == []


# -- backfill ---------------------------------------------------------------------------------------------------


async def test_backfill_pages_through_thousands_of_messages_through_a_429(server):
    """3,000 past messages of three people in #general, 1,000 of them Ada's, a bot's and a system message among
    them; #random holds Ada's words too but is not enabled. The bot reads #general back 100 at a time, waits out a
    429 on the way, and stores exactly Ada's messages."""
    await enable(server, server.general)
    people = (server.ada, server.grace, server.admin)
    made = server.fake.fill_history(server.general, [(people[i % 3], words(i)) for i in range(3000)])
    server.fake.fill_history(server.general, [(server.robot, "I am a bot and I talk a lot here")])
    server.fake.history[int(server.general["id"])].append(
        server.fake.message(server.general, server.ada, "ada pinned a message to this channel", kind=6))
    server.fake.fill_history(server.random, [(server.ada, words(i)) for i in range(50)])
    server.fake.rate_limit_next = 1

    await server.opt_in(server.ada)
    await server.backfilled(server.ada)

    assert server.fake.rate_limited == 1
    requests = [r for r in server.fake.history_requests if r["channel"] == int(server.general["id"])]
    assert len(requests) >= 3000 // 100 + 1  # a page at a time, and the 429 asked again
    assert all(int(r["limit"]) <= 100 for r in requests)
    befores = [int(r["before"]) for r in requests if "before" in r]
    assert befores == sorted(befores, reverse=True)  # always further back
    assert not [r for r in server.fake.history_requests if r["channel"] == int(server.random["id"])]
    stored = server.stored(server.ada)
    ada_ids = sorted(int(m["id"]) for m in made if m["author"]["id"] == server.ada["user"]["id"])
    assert [int(p["post_id"]) for p in stored] == ada_ids  # hers, all of them, nobody else's, no system message
    assert server.all_posts() == len(ada_ids) == 1000
    cursor = server.mimic.backfill_cursor(server.guild_id, server.uid(server.ada), int(server.general["id"]))
    # looked at: the 3,000, the bot's, the system message, and the two commands typed live (`!config learn`, `!optin`)
    assert cursor["done"] == 1 and cursor["scanned"] == 3004 and cursor["learned"] == 1000

    progress = "\n".join(await server.say(server.ada, "!optin status"))
    assert "1 of 1 channel(s) read to the start, 3,004 messages looked at" in progress
    assert "Your messages stored: 1,000" in progress and "Tweets kept: **1,000**" in progress
    assert "enough to train" in progress


async def test_backfill_is_bounded_and_resumes_from_its_cursor(fake, settings, learn_options):
    """The limit stops a backfill where it is; the next start resumes the channel from its stored cursor (the oldest
    message read), never from the top, when the limit allows more."""
    server = await start_server(fake, settings, learn_options.model_copy(update={"backfill_limit": 250}))
    try:
        await enable(server, server.general)
        made = server.fake.fill_history(server.general, [(server.ada if i % 2 else server.grace, words(i))
                                                         for i in range(1000)])
        await server.opt_in(server.ada)
        await server.backfilled(server.ada)
        hers = [int(m["id"]) for m in made if m["author"] is server.ada["user"]]
        assert [int(p["post_id"]) for p in server.stored(server.ada)] == hers[-250:]  # the newest 250 of her 500
        g, u, c = server.guild_id, server.uid(server.ada), int(server.general["id"])
        cursor = server.mimic.backfill_cursor(g, u, c)
        assert cursor["done"] == 0 and cursor["learned"] == 250 and int(cursor["before_id"]) == hers[-250]
        status = "\n".join(await server.say(server.ada, "!optin status"))
        assert "stopped at the limit of 250 messages" in status
    finally:
        await stop_server(server)

    # the daemon starts again with a higher limit: on READY it resumes her backfill before the cursor
    fake.history_requests.clear()
    server = await start_server(fake, settings, learn_options)
    try:
        await asyncio.wait_for(_until(lambda: len(server.stored(server.ada)) == len(hers)), WAIT)
        await server.backfilled(server.ada)
        first = next(r for r in fake.history_requests if r["channel"] == c)
        assert first["before"] == cursor["before_id"]
        assert [int(p["post_id"]) for p in server.stored(server.ada)] == hers
        assert server.mimic.backfill_cursor(g, u, c)["done"] == 1
    finally:
        await stop_server(server)


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


# -- live learning ---------------------------------------------------------------------------------------------


async def test_live_messages_edits_and_deletions(server):
    await enable(server, server.general)
    await server.opt_in(server.ada)
    thread = server.fake.add_thread(server.guild, server.general, "plans")
    await server.fake.dispatch("THREAD_CREATE", {**thread, "newly_created": True})

    await server.say(server.ada, "hello <@222222222222222222>, see <https://example.com/x> :) <:blob:123456789012345678> "
                                 "in <#123456789012345678> at <t:1700000000:R> friends")
    first = server.last
    await server.say(server.ada, words(1), channel=thread)
    second = server.last
    await server.say(server.ada, words(2))
    third = server.last
    await server.say(server.ada, words(3))
    fourth = server.last
    stored = {p["post_id"]: p for p in server.stored(server.ada)}
    assert set(stored) == {first["id"], second["id"], third["id"], fourth["id"]}
    # Discord's markup as the recipe knows it: the mention an @word, the link gone, the emoji its name; no ids kept
    assert stored[first["id"]]["clean_text"] == ("hello @user, see :) :blob: in #channel at sometime friends")
    assert not re.search(r"\d{15}", stored[first["id"]]["raw_text"])

    await server.fake.edit(third, "what I really meant to say is this sentence")
    await server.settle()
    assert {p["post_id"]: p["clean_text"] for p in server.stored(server.ada)}[third["id"]] == \
        "what I really meant to say is this sentence"

    await server.fake.delete(first)
    await server.settle()
    assert first["id"] not in {p["post_id"] for p in server.stored(server.ada)}

    await server.fake.bulk_delete([second, fourth])
    await server.settle()
    assert [p["post_id"] for p in server.stored(server.ada)] == [third["id"]]


async def test_nothing_is_read_or_stored_that_should_not_be(server):
    """A member who did not opt in, a disabled channel, a bot, a webhook, a system message, a command."""
    await enable(server, server.general)
    server.fake.fill_history(server.random, [(server.ada, words(i)) for i in range(20)])
    await server.opt_in(server.ada)
    await server.backfilled(server.ada)
    before = server.all_posts()

    await server.say(server.grace, words(1))  # never opted in
    await server.say(server.ada, words(2), channel=server.random)  # not a learning channel
    await server.say(server.robot, words(3))  # a bot
    await server.fake.post(server.general, server.ada, words(4), webhook=True)  # a webhook under her name
    await server.fake.post(server.general, server.ada, "ada started a thread here", kind=18)  # a system message
    await server.say(server.ada, "!optin status")  # a command is not her voice
    await server.fake.edit(server.last, "!optin status, edited into words")
    await server.settle()
    assert server.all_posts() == before == 0
    assert not [r for r in server.fake.history_requests if r["channel"] == int(server.random["id"])]

    # a channel disabled later is no longer read
    await server.say(server.admin, f"!config learn <#{server.general['id']}> false")
    await server.say(server.ada, words(5))
    assert server.all_posts() == 0

    # a grace who never opted in cannot be trained, and the answer does not name her id
    said = "\n".join(await server.say(server.admin, f"!train <@{server.grace['user']['id']}>"))
    assert "has not opted in" in said and server.grace["user"]["id"] not in said
    assert server.mimic.jobs() == []


# -- training thresholds and opt-out ---------------------------------------------------------------------------


async def test_under_the_minimum_train_says_how_many_characters_are_still_needed(server):
    await enable(server, server.general)
    server.fake.fill_history(server.general, [(server.ada, words(i)) for i in range(20)])
    await server.opt_in(server.ada)
    await server.backfilled(server.ada)
    chars = server.mimic.member_progress(server.guild_id, server.uid(server.ada))["stats"]["chars"]
    assert 0 < chars < MIN_CHARS

    said = "\n".join(await server.say(server.ada, f"!train <@{server.ada['user']['id']}>"))
    assert f"Ada: not enough messages yet: {chars:,} characters kept, 6,000 needed — " \
           f"{MIN_CHARS - chars:,} more characters to go" in said
    status = "\n".join(await server.say(server.ada, "!optin status"))
    assert f"{MIN_CHARS - chars:,} more characters of your words are needed" in status
    # someone else's voice needs Manage Server
    said = "\n".join(await server.say(server.grace, f"!train <@{server.ada['user']['id']}>"))
    assert "Manage Server" in said
    # an admin may make a cyborg of members (up to three), each of whom must have enough
    await server.opt_in(server.grace)
    await server.say(server.grace, words(7))
    grace_chars = server.mimic.member_progress(server.guild_id, server.uid(server.grace))["stats"]["chars"]
    said = "\n".join(await server.say(server.admin, f"!train <@{server.ada['user']['id']}>,<@{server.grace['user']['id']}>"))
    assert f"Ada: not enough messages yet: {chars:,} characters kept" in said
    assert f"Grace: not enough messages yet: {grace_chars:,} characters kept" in said
    assert server.ada["user"]["id"] not in said and server.grace["user"]["id"] not in said
    four = ",".join(f"<@{m['user']['id']}>" for m in (server.ada, server.grace, server.admin, server.robot))
    said = "\n".join(await server.say(server.admin, f"!train {four}"))
    assert "a model learns from at most 3 accounts; 4 were given" in said
    assert server.mimic.jobs() == []


async def test_opt_out_deletes_every_message_stops_learning_and_cancels_queued_jobs(server):
    await enable(server, server.general)
    server.fake.fill_history(server.general, [(server.ada, words(i)) for i in range(400)])
    await server.opt_in(server.ada)
    await server.backfilled(server.ada)
    assert len(server.stored(server.ada)) == 400
    handle = server.mimic.member(server.guild_id, server.uid(server.ada))["handle"]
    # a training of her voice waits in the queue (the pool is stopped, so it stays queued)
    await server.app.stop()
    request = await server.mimic.build_request([server.mimic.member_spec(server.guild_id, server.uid(server.ada))],
                                               max_steps=1)
    job = server.mimic.submit(request, requested_by=f"discord:{server.uid(server.ada)}", guild_id=server.guild_id)
    assert request.model_id == handle

    said = "\n".join(await server.say(server.ada, "!optout"))
    assert "deleted 400 stored message(s)" in said and "cancelled 1 training(s)" in said
    assert server.mimic.member(server.guild_id, server.uid(server.ada)) is None
    assert server.all_posts() == 0 and server.mimic.store.get_account("discord", handle) is None
    assert server.mimic.store.query("select count(*) as n from discord_backfill")[0]["n"] == 0
    assert job["id"] not in [j["id"] for j in server.mimic.jobs()]  # cancelled, then forgotten with her

    await server.say(server.ada, words(1))  # she keeps talking: nothing is stored any more
    assert server.all_posts() == 0
    said = "\n".join(await server.say(server.ada, "!optout"))
    assert "nothing of yours is stored" in said


# -- the whole way: train, generate, opt out (a real training child on the tiny model) ------------------------


async def test_train_generate_and_opt_out_delete_the_model(fake, settings, learn_options, tiny_base):
    settings = settings.model_copy(update={"mimicbot_base_model": tiny_base})
    server = await start_server(fake, settings, learn_options)
    try:
        await enable(server, server.general)
        server.fake.fill_history(server.general, [(server.ada, words(i)) for i in range(300)])
        await server.opt_in(server.ada)
        await server.backfilled(server.ada)
        await server.say(server.ada, "!optin avatar")
        mention = f"<@{server.ada['user']['id']}>"

        await server.say(server.ada, f"!train {mention}")  # her own voice: no trainer role needed
        (job,) = server.mimic.jobs()
        handle = server.mimic.member(server.guild_id, server.uid(server.ada))["handle"]
        async for event in server.mimic.follow(job["id"]):
            pass
        assert server.mimic.job(job["id"])["state"] == "succeeded", server.mimic.job(job["id"])["error"]
        model = server.mimic.model(handle)
        card = (model["path"] / "README.md").read_text() if hasattr(model["path"], "read_text") else \
            open(f"{model['path']}/README.md").read()
        assert "Ada" in card and server.ada["user"]["id"] not in card and "messages in a Discord server" in card
        assert model["training"]["accounts"][0]["avatar_url"]  # she agreed to show it

        since = len(server.fake.sent)
        await server.fake.post(server.general, server.ada, f"!generate {mention}")
        posts = await server.wait_for_sent(lambda e: any("author" in x for x in e["body"].get("embeds") or ()), since)
        assert posts["body"]["embeds"][0]["author"]["name"].startswith("Ada 🤖")

        # her voice stays in her server: another server does not get her model
        elsewhere = server.fake.add_guild("Elsewhere", channels=("lobby",))
        stranger = server.fake.add_member(elsewhere, "stranger", admin=True)
        await server.fake.dispatch("GUILD_CREATE", elsewhere)
        await asyncio.wait_for(_until(lambda: server.bot.get_guild(int(elsewhere["id"]))), WAIT)
        said = "\n".join(await server.say(stranger, f"!generate {handle}", channel=elsewhere["channels"][0]))
        assert f"no model '{handle}' here" in said
        said = "\n".join(await server.say(stranger, f"!config default-model {handle}", channel=elsewhere["channels"][0]))
        assert f"no model '{handle}' here" in said

        # her model answers @mentions where an admin names it by her mention, and a schedule takes its id
        await server.say(server.admin, f"!config replies <#{server.general['id']}> true {mention}")
        since = len(server.fake.sent)
        await server.fake.post(server.general, server.grace, f"<@{server.fake._user()['id']}> what do you think",
                               mentions=[server.fake._user()])
        reply = await server.wait_for_sent(lambda e: e["body"].get("message_reference"), since)
        assert reply["body"]["content"]
        assert server.mimic.add_schedule(handle, f"discord:{server.general['id']}", every="2h")["model_id"] == handle

        said = "\n".join(await server.say(server.ada, "!optout"))
        assert "1 model(s)" in said
        assert handle not in server.mimic.model_ids() and server.all_posts() == 0
    finally:
        await stop_server(server)
