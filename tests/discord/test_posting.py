"""The daemon's posting through discord.py's own dispatch (dpytest): a schedule fires and posts to a Discord
channel and to X (the fake X API), a restart in between does not duplicate, and the approval flow posts only
approved drafts — with buttons that still work after a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.config import Settings
from bot.posting.ledger import Ledger
from tests.discord.conftest import TRAINED_MODEL, _now, sent_messages
from tests.fakes.x_server import TEST_CREDENTIALS

TWEETS = "/2/tweets"
NINE = datetime(2031, 3, 3, 9, 0, 1, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path, monkeypatch, x_server) -> Settings:
    monkeypatch.chdir(tmp_path)
    return Settings(_env_file=None, mimicbot_data_dir=tmp_path / "data", mimicbot_models_dir=tmp_path / "models",
                    twitter_api_base=x_server.url, mimicbot_schedule_grace_seconds=120, mimicbot_post_candidates=2, **TEST_CREDENTIALS)


def daemon_of(world):
    return world.app.posting


async def fire_at(world, clock, when: datetime) -> None:
    clock.move_to(when)
    runner = daemon_of(world).runner
    await runner.sync()
    runner.wakeup()
    await runner.settle()


async def restart_daemon(world) -> None:
    """What a restart does to posting: the app's parts stop, new ones start from the database."""
    await world.restart()


async def test_a_schedule_fires_and_posts_to_discord_and_x_once_across_a_restart(clock, world, x_server):
    mimic = world.mimic
    to_discord = mimic.add_schedule(TRAINED_MODEL, f"discord:{world.channel.id}", cron="0 9 * * *")
    to_x = mimic.add_schedule(TRAINED_MODEL, "x", cron="0 9 * * *")
    sent_messages()  # nothing before

    await fire_at(world, clock, NINE)

    (posted,) = sent_messages()
    assert posted.channel.id == world.channel.id and posted.content.endswith(" 🤖")
    assert len(x_server.requests_to(TWEETS)) == 1 and x_server.tweets[-1].text.endswith(" 🤖")
    ledger = {e["schedule_id"]: e for e in Ledger(mimic.store).list()}
    assert ledger[to_discord["id"]]["status"] == "sent" and ledger[to_discord["id"]]["remote_id"] == str(posted.id)
    assert ledger[to_x["id"]]["remote_id"] == str(x_server.tweets[-1].id)

    clock.move_to(datetime(2031, 3, 3, 9, 0, 40, tzinfo=UTC))  # a restart inside the grace window
    await restart_daemon(world)
    await fire_at(world, clock, datetime(2031, 3, 3, 9, 1, tzinfo=UTC))
    assert sent_messages() == [] and len(x_server.requests_to(TWEETS)) == 1
    assert len(Ledger(mimic.store).list()) == 2


async def test_schedule_commands(world, slash):
    run = await slash.invoke("schedule add", by=world.admin, model=TRAINED_MODEL, when="0 9 * * mon-fri", to="x")
    assert "Added `1` ada_bytes → x, cron 0 9 * * mon-fri (UTC)" in run.text
    run = await slash.invoke("schedule add", by=world.admin, model=TRAINED_MODEL, when="61 9 * * *", to="x")
    assert "bad cron expression '61 9 * * *'" in run.text
    run = await slash.invoke("schedule add", by=world.member, model=TRAINED_MODEL, when="2h")
    assert "Manage Server" in run.text and len(world.mimic.list_schedules()) == 1
    (reply,) = await world.say("!schedule add ada_bytes 2h here", member=world.admin)
    assert f"discord:{world.channel.id}, every 2h" in reply.content
    (reply,) = await world.say("!schedule pause 2", member=world.admin)
    assert world.mimic.schedules.get(2)["paused"] == 1
    (reply,) = await world.say("!schedule", member=world.admin)
    assert "(paused)" in reply.content and "`1`" in reply.content
    assert "posts nothing until" not in reply.content  # X has its keys here; this bot posts to its own channels
    await world.say("!schedule remove 1", member=world.admin)
    assert [r["id"] for r in world.mimic.list_schedules()] == [2]
    run = await slash.invoke("schedule add", by=world.admin, model=TRAINED_MODEL, when="2h", to="bsky")
    assert "posts nothing until BLUESKY_HANDLE, BLUESKY_APP_PASSWORD are set" in run.text


def draft_payloads(no_pings) -> list[dict]:
    return [p for p in no_pings.payloads if (p.get("content") or "").startswith("**Draft**")]


def clicked_message(message, payload: dict, world) -> dict:
    """The message as Discord echoes it in a button's interaction: with the components the bot sent."""
    return {"id": str(message.id), "channel_id": str(world.channel.id), "type": 0, "content": payload["content"],
            "embeds": [], "attachments": [], "mentions": [], "mention_roles": [], "pinned": False, "tts": False,
            "mention_everyone": False, "timestamp": _now(), "edited_timestamp": None, "flags": 0,
            "author": {"id": str(world.bot.user.id), "username": "FakeApp", "discriminator": "0001", "avatar": None,
                       "bot": True},
            "components": payload["components"]}


async def click(slash, message: dict, custom_id: str, user):
    before = set(asyncio.all_tasks())
    run = await slash.click(message, custom_id, by=user)
    pending = [t for t in asyncio.all_tasks() - before if t.get_name().startswith("discord-ui-dynamic-item")]
    await asyncio.gather(*pending)
    return run


async def test_approval_posts_only_approved_drafts_and_buttons_survive_a_restart(clock, world, slash, x_server,
                                                                                no_pings):
    mimic = world.mimic
    mimic.add_schedule(TRAINED_MODEL, "x", every="1h", require_approval=True, approval_channel_id=world.channel.id)
    ledger = Ledger(mimic.store)

    await fire_at(world, clock, datetime(2031, 3, 3, 9, 59, 31, tzinfo=UTC))  # created 08:59:30: due 09:59:30
    (first,) = sent_messages()
    assert first.content.startswith("**Draft** for `x`") and x_server.requests_to(TWEETS) == []
    (draft,) = ledger.list("draft")
    assert draft["draft_message_id"] == first.id
    payload = draft_payloads(no_pings)[-1]
    ids = [c["custom_id"] for row in payload["components"] for c in row["components"]]
    assert ids == [f"mimicbot:draft:approve:{draft['id']}", f"mimicbot:draft:reject:{draft['id']}"]

    await restart_daemon(world)  # the buttons are dynamic items: they work for drafts sent before

    refused = await click(slash, clicked_message(first, payload, world), ids[0], world.member)
    assert "Manage Server" in refused.text and ledger.get(draft["id"])["status"] == "draft"

    await click(slash, clicked_message(first, payload, world), ids[1], world.admin)
    assert ledger.get(draft["id"])["status"] == "rejected" and x_server.requests_to(TWEETS) == []
    assert "Not posted: rejected by" in world.edits_of(first.id)[-1]["content"]

    await fire_at(world, clock, datetime(2031, 3, 3, 10, 59, 31, tzinfo=UTC))
    (second,) = sent_messages()
    (draft2,) = ledger.list("draft")
    payload2 = draft_payloads(no_pings)[-1]
    approve = f"mimicbot:draft:approve:{draft2['id']}"
    await click(slash, clicked_message(second, payload2, world), approve, world.admin)
    entry = ledger.get(draft2["id"])
    assert entry["status"] == "sent" and entry["decided_by"] == f"discord:{world.admin.id}"
    assert len(x_server.requests_to(TWEETS)) == 1 and x_server.tweets[-1].text == entry["text"]
    assert "Approved by" in world.edits_of(second.id)[-1]["content"]

    again = await click(slash, clicked_message(second, payload2, world), approve, world.admin)
    assert "not a draft awaiting approval" in again.text and len(x_server.requests_to(TWEETS)) == 1
