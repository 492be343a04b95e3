"""Replies on X against the fake X API: mentions read with since_id, answered in the model's voice, and the
loop guards — old mentions, bots, blocklisted accounts, per-conversation and per-user caps, a 429."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.posting.ledger import Ledger
from bot.posting.replies import ReplyConfig, ReplyLoop
from bot.posting.x import XCaller
from bot.service import Mimicbot
from tests.kit.posting import START, RecordingSleep, posting_settings

MENTIONS = r"/2/users/\d+/mentions"


@pytest.fixture
def loop(tmp_path, trained_models, x_server, clock):
    models_dir, model_id = trained_models
    settings = posting_settings(tmp_path, models_dir, x_server.url, mimicbot_reply_model=model_id,
                                mimicbot_reply_per_conversation=2, mimicbot_reply_per_user_hour=2,
                                mimicbot_reply_bot_threshold=4, mimicbot_reply_blocklist="@Troll, spammer",
                                mimicbot_reply_max_age_minutes=30)
    service = Mimicbot(settings)
    sleep = RecordingSleep(clock)
    replies = ReplyLoop(service.store, settings, service.poster, ReplyConfig.from_settings(settings),
                        caller=XCaller(settings, sleep=sleep), sleep=sleep)
    replies.sleep_recorder = sleep
    yield replies
    service.close()


def mention(server, author: str, text: str = "hey @mimicbot what do you think?", minutes_ago: float = 1,
            in_reply_to=None):
    if server.user(author) is None:
        server.add_user(author, name=author.title())
    return server.add_tweet(author, text, created_at=START - timedelta(minutes=minutes_ago), in_reply_to=in_reply_to)


async def test_mentions_are_answered_once_with_since_id(loop, x_server):
    first = mention(x_server, "alice")
    handled = await loop.poll_once()
    assert [h.outcome.status for h in handled] == ["sent"]
    reply = x_server.tweets[-1]
    assert reply.author_id == x_server.me.id
    assert reply.referenced_tweets == [{"type": "replied_to", "id": str(first.id)}]
    assert reply.text.endswith(" 🤖")
    entry = Ledger(loop.store).list()[0]
    assert entry["kind"] == "reply" and entry["reply_to_id"] == str(first.id) and entry["remote_id"] == str(reply.id)
    assert entry["reply_to_user_id"] == x_server.user("alice").id

    assert await loop.poll_once() == []  # nothing new: since_id kept
    assert x_server.requests_to(MENTIONS)[-1].query["since_id"] == str(first.id)
    assert set(x_server.requests_to(MENTIONS)[-1].query["tweet.fields"].split(",")) >= {"created_at", "author_id"}
    assert x_server.requests_to("/2/users/me") and len(x_server.requests_to("/2/users/me")) == 1  # asked once


async def test_a_restart_never_answers_a_backlog_of_old_mentions(loop, x_server):
    old = [mention(x_server, f"user{i}", minutes_ago=120 + i) for i in range(3)]
    fresh = mention(x_server, "bob", minutes_ago=2)
    handled = await loop.poll_once()  # first poll ever (no since_id), as after a long stop
    by_id = {h.mention.id: h for h in handled}
    assert all("older than" in by_id[str(t.id)].skipped for t in old)
    assert by_id[str(fresh.id)].outcome.status == "sent"
    assert len(x_server.requests_to("/2/tweets")) == 1


async def test_bots_blocklisted_accounts_and_ourselves_are_never_answered(loop, x_server):
    x_server.add_user("helperbot", name="Helper")
    x_server.add_user("news_feed", name="Automated News")
    x_server.add_user("troll", name="Troll")
    skipped = [mention(x_server, name) for name in ("helperbot", "news_feed", "troll")]
    x_server.add_tweet(x_server.me, "talking to myself @mimicbot", created_at=START)
    handled = await loop.poll_once()
    reasons = {h.mention.username: h.skipped for h in handled}
    assert "looks like a bot" in reasons["helperbot"] and "looks like a bot" in reasons["news_feed"]
    assert "blocklisted" in reasons["troll"]
    assert len(handled) == len(skipped)  # our own post is not a mention (the API leaves it out)
    assert x_server.requests_to("/2/tweets") == []


async def test_reply_caps_per_user_per_hour_and_per_conversation(loop, x_server, clock):
    # carol mentions us three times within the hour: two answers (the cap), the third skipped
    for i in range(3):
        mention(x_server, "carol", f"@mimicbot question {i}", minutes_ago=3 - i)
    handled = await loop.poll_once()
    assert [h.outcome.status if h.outcome else "skipped" for h in handled] == ["sent", "sent", "skipped"]
    assert "times this hour" in handled[2].skipped

    # an hour later she may be answered again
    clock.shift(timedelta(minutes=61))
    mention(x_server, "carol", "@mimicbot again", minutes_ago=-60)
    assert (await loop.poll_once())[0].outcome.status == "sent"

    # a thread that keeps answering our replies: 2 replies per conversation, then silence (a loop guard)
    root = mention(x_server, "dave", "@mimicbot start", minutes_ago=-61)
    await loop.poll_once()
    ours = x_server.tweets[-1]
    follow = mention(x_server, "erin", "@mimicbot and you?", minutes_ago=-61, in_reply_to=ours)
    handled = await loop.poll_once()
    assert handled[0].outcome.status == "sent"
    assert Ledger(loop.store).list()[0]["conversation_id"] == str(root.id)  # followed through the ledger
    ours = x_server.tweets[-1]
    mention(x_server, "frank", "@mimicbot and now?", minutes_ago=-61, in_reply_to=ours)
    handled = await loop.poll_once()
    assert "2 replies in this conversation" in handled[0].skipped
    assert follow.id


async def test_an_account_answered_too_often_is_treated_as_a_bot(loop, x_server, clock):
    for hour in range(2):  # 2 an hour (the per-hour cap) for 2 hours: 4 = the bot threshold
        for i in range(2):
            mention(x_server, "gina", f"@mimicbot hour {hour} no {i}", minutes_ago=-(hour * 61 + i))
        clock.move_to(START + timedelta(minutes=hour * 61 + 2))
        await loop.poll_once()
    clock.move_to(START + timedelta(minutes=200))
    mention(x_server, "gina", "@mimicbot once more", minutes_ago=-199)
    (handled,) = await loop.poll_once()
    assert "likely a bot" in handled.skipped
    assert len(x_server.requests_to("/2/tweets")) == 4


async def test_a_429_on_mentions_waits_for_the_reset_without_blocking(loop, x_server):
    mention(x_server, "hana")
    x_server.rate_limit(1, reset_in=90)
    handled = await loop.poll_once()
    assert handled[0].outcome.status == "sent"
    (wait,) = loop.sleep_recorder.waits
    assert 85 <= wait <= 92  # until x-rate-limit-reset (+1 s), through the injected asyncio sleep


async def test_a_long_mention_is_read_whole(tmp_path, x_server):
    """The mentions poll asks for note_tweet: a mention over 280 characters reaches the reply loop whole."""
    from bot.store import Store
    from tests.fakes.x_server import settings_for

    settings = settings_for(x_server, tmp_path)
    long_text = "@mimicbot " + " ".join(f"thought{i}" for i in range(60))
    assert len(long_text) > 280
    mention(x_server, "alice", long_text)
    store = Store(tmp_path / "db.sqlite")
    try:
        replies = ReplyLoop(store, settings, None, ReplyConfig(model_id="m"), caller=XCaller(settings))
        found = await replies.fetch(x_server.me.id, None)
    finally:
        store.close()
    assert [m.text for m in found] == [long_text] and [m.username for m in found] == ["alice"]
    assert "note_tweet" in x_server.requests_to(MENTIONS)[-1].query["tweet.fields"].split(",")


async def test_the_model_reads_the_mention_it_answers(tmp_path, trained_models, x_server, clock):
    """The reply is generated with the mention (cleaned, its opening @mentions dropped) as the model's context,
    and from the start-of-post token alone (no opener)."""
    from bot.posting.poster import Poster

    models_dir, model_id = trained_models
    settings = posting_settings(tmp_path, models_dir, x_server.url, mimicbot_reply_model=model_id)
    service = Mimicbot(settings)
    calls = []

    async def generate(model, n, prompt, context):
        calls.append((model, prompt, context))
        return [f"an answer to number {len(calls)} of them"]

    poster = Poster(service.store, settings, generate)
    replies = ReplyLoop(service.store, settings, poster, ReplyConfig.from_settings(settings),
                        caller=XCaller(settings, sleep=RecordingSleep(clock)), sleep=RecordingSleep(clock))
    mention(x_server, "alice", "@mimicbot @bob do you like compost &amp; bees? https://t.co/x")
    handled = await replies.poll_once()
    assert [h.outcome.status for h in handled] == ["sent"]
    assert calls == [(model_id, "", "do you like compost & bees?")]
    assert x_server.tweets[-1].text.startswith("an answer to number 1")
    service.close()
