"""XApiSource over real HTTP (tweepy + aiohttp) against the fake X API v2 on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.errors import AuthError, ConfigError, ProtectedAccount, SourceError, UnknownAccount
from bot.sources import open_source
from bot.networks.base import RATE_LIMIT_MARGIN
from bot.networks.x import x_client
from bot.sources.base import TIMELINE_CAP
from bot.sources.x_api import XApiSource
from tests.fakes.x_server import FakeXServer, settings_for

TIMELINE = "/2/users/\\d+/tweets"


def seed_timeline(server: FakeXServer, handle: str, n: int) -> dict[str, str]:
    """n tweets, oldest first, cycling plain / retweet / reply / quote / short. Returns id → kind."""
    server.add_user(handle, name="Jack Dorsey")
    kinds: dict[str, str] = {}
    for i in range(n):
        kind = [None, "retweet", "reply", "quote", None, "short"][i % 6]
        if kind == "retweet":
            tweet = server.add_tweet(handle, f"RT @someone: shared post {i}", kind="retweet")
        elif kind == "short":
            tweet = server.add_tweet(handle, "ok")
        else:
            tweet = server.add_tweet(handle, f"post number {i} about things", kind=kind)
        kinds[str(tweet.id)] = kind or "plain"
    return kinds


async def test_downloads_exactly_3200_newest_then_only_new_ones(x_server, tmp_path):
    # ids cross a digit boundary (9,900 → 13,399): the cursor must compare ids as numbers, not strings.
    x_server._next_tweet_id = 9_900
    kinds = seed_timeline(x_server, "jack", 3500)
    source = open_source("@Jack", settings_for(x_server, tmp_path))
    assert isinstance(source, XApiSource) and source.label == "@jack"

    first = await source.fetch()

    assert len(first.posts) == TIMELINE_CAP == 3200
    newest = sorted(kinds, key=int)[-3200:]
    assert sorted(p.id for p in first.posts) == sorted(newest)
    assert first.cursor == max(newest, key=int) == "13399"
    for post in first.posts:
        kind = kinds[post.id]
        assert post.is_retweet == (kind == "retweet")
        assert post.is_reply == (kind == "reply")
        assert post.is_quote == (kind == "quote")
        assert post.lang == "en"
        assert post.created_at.startswith("2020-01-") and post.created_at.endswith("+00:00")
    assert first.account.user_id == x_server.user("jack").id
    assert first.account.display_name == "Jack Dorsey"
    assert first.account.avatar_url.startswith("https://pbs.twimg.com/")
    assert first.account.network == "x" and first.account.handle == "jack" and not first.account.protected

    pages = x_server.requests_to(TIMELINE)
    assert len(pages) == 32  # stops at the cap although the server has more
    assert {p.query["max_results"] for p in pages} == {"100"}
    assert "pagination_token" not in pages[0].query and all("pagination_token" in p.query for p in pages[1:])
    assert "exclude" not in pages[0].query and "since_id" not in pages[0].query
    assert set(pages[0].query["tweet.fields"].split(",")) >= {"created_at", "referenced_tweets", "lang",
                                                               "in_reply_to_user_id"}
    lookup = x_server.requests_to("/2/users/by/username/jack")[0]
    assert {"protected", "profile_image_url"} <= set(lookup.query["user.fields"].split(","))

    second = await source.fetch(since_id=first.cursor)
    assert second.posts == [] and second.cursor == first.cursor
    assert x_server.requests_to(TIMELINE)[-1].query["since_id"] == first.cursor

    fresh = [x_server.add_tweet("jack", f"brand new {i}") for i in range(5)]
    third = await source.fetch(since_id=second.cursor)
    assert sorted(p.id for p in third.posts) == sorted(str(t.id) for t in fresh)
    assert third.cursor == str(fresh[-1].id)


async def test_retweet_detected_by_text_alone(x_server, tmp_path):
    x_server.add_user("ann")
    x_server.add_tweet("ann", "RT @bob: no referenced_tweets on this one")
    x_server.add_tweet("ann", "an RT @bob in the middle is not a retweet")
    result = await XApiSource("ann", settings_for(x_server, tmp_path)).fetch()
    flags = {p.text[:6]: p.is_retweet for p in result.posts}
    assert flags == {"RT @bo": True, "an RT ": False}


async def test_rate_limit_waits_for_reset_without_blocking_the_loop(x_server, tmp_path):
    seed_timeline(x_server, "jack", 150)
    x_server.rate_limit(1, reset_in=1)  # the user lookup is refused once
    waits: list[float] = []
    state = {"waiting": False, "ticks_while_waiting": 0}

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        state["waiting"] = True
        try:
            await asyncio.sleep(seconds / 5)  # the fake counts its 429s, it does not time them: a fifth will do
        finally:
            state["waiting"] = False

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            state["ticks_while_waiting"] += state["waiting"]

    source = XApiSource("jack", settings_for(x_server, tmp_path), sleep=recording_sleep)
    ticking = asyncio.create_task(ticker())
    asked = time.time()
    try:
        result = await source.fetch()
    finally:
        ticking.cancel()

    assert len(result.posts) == 150
    assert len(waits) == 1
    assert 0 < waits[0] <= 1 + RATE_LIMIT_MARGIN + (time.time() - asked)  # until reset, not longer
    assert waits[0] >= RATE_LIMIT_MARGIN
    assert state["ticks_while_waiting"] >= 5  # another task ran during the wait
    lookups = x_server.requests_to("/2/users/by/username/jack")
    assert len(lookups) == 2  # refused, then retried


async def test_endless_rate_limit_gives_up_with_a_clear_error(x_server, tmp_path):
    x_server.add_user("jack")
    x_server.rate_limit(100, reset_in=0)
    source = XApiSource("jack", settings_for(x_server, tmp_path), sleep=_no_wait)
    with pytest.raises(SourceError, match="rate-limiting"):
        await source.fetch()
    assert len(x_server.requests) == source.max_rate_limit_waits + 1


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


async def test_unknown_account(x_server, tmp_path):
    with pytest.raises(UnknownAccount, match="@nobody"):
        await XApiSource("nobody", settings_for(x_server, tmp_path)).fetch()


async def test_protected_account(x_server, tmp_path):
    x_server.add_user("secret", protected=True)
    x_server.add_tweet("secret", "you cannot see me")
    with pytest.raises(ProtectedAccount, match="protected"):
        await XApiSource("secret", settings_for(x_server, tmp_path)).fetch()
    assert not x_server.requests_to(TIMELINE)  # stopped at the lookup


async def test_suspended_account(x_server, tmp_path):
    x_server.add_user("banned", suspended=True)
    with pytest.raises(ProtectedAccount, match="suspended"):
        await XApiSource("banned", settings_for(x_server, tmp_path)).fetch()


async def test_refused_token_is_auth_error_without_the_token(x_server, tmp_path):
    x_server.add_user("jack")
    token = "wrong-but-very-secret-token-123"
    with pytest.raises(AuthError) as caught:
        await XApiSource("jack", settings_for(x_server, tmp_path, twitter_bearer_token=token)).fetch()
    message = str(caught.value)
    assert "refused the bearer token" in message and "TWITTER_BEARER_TOKEN" in message
    assert token not in message and token not in repr(caught.value.__cause__)
    assert x_server.requests[-1].auth is None


async def test_missing_token(x_server, tmp_path):
    with pytest.raises(AuthError, match="TWITTER_BEARER_TOKEN"):
        await XApiSource("jack", settings_for(x_server, tmp_path, twitter_bearer_token=None)).fetch()
    assert x_server.requests == []


async def test_token_never_logged(x_server, tmp_path, caplog):
    seed_timeline(x_server, "jack", 10)
    settings = settings_for(x_server, tmp_path)
    with caplog.at_level(logging.DEBUG):
        await XApiSource("jack", settings).fetch()
    assert "Making API request" in caplog.text  # tweepy did log its requests, headers included
    assert settings.secret("twitter_bearer_token") not in caplog.text


async def test_server_down_is_source_error(tmp_path):
    with FakeXServer() as server:
        settings = settings_for(server, tmp_path)
    # stopped: nothing listens on its port any more
    with pytest.raises(SourceError, match="could not reach X") as caught:
        await XApiSource("jack", settings).fetch()
    assert type(caught.value) is SourceError


async def test_slow_server_times_out_as_source_error(x_server, tmp_path):
    x_server.add_user("jack")
    x_server.stall(1, seconds=3)
    source = XApiSource("jack", settings_for(x_server, tmp_path), timeout=0.1)
    with pytest.raises(SourceError, match="timed out"):
        await source.fetch()


def test_bad_api_base_is_config_error(tmp_path):
    settings = settings_for(FakeXServer(), tmp_path, twitter_api_base="api.x.com")
    with pytest.raises(ConfigError, match="TWITTER_API_BASE"):
        x_client(settings, user_auth=False, asynchronous=False)


# -- the base-URL mechanism as the posting code will use it: sync tweepy.Client, OAuth 1.0a --------


def test_sync_user_context_client_posts_and_reads_mentions(x_server, tmp_path, caplog):
    settings = settings_for(x_server, tmp_path)
    client = x_client(settings, user_auth=True, asynchronous=False)
    fan = x_server.add_user("fan")
    mention = x_server.add_tweet(fan, "hey @mimicbot say something")

    with caplog.at_level(logging.DEBUG):
        me = client.get_me(user_auth=True).data
        created = client.create_tweet(text="a generated post", in_reply_to_tweet_id=mention.id, user_auth=True)
        mentions = client.get_users_mentions(me.id, user_auth=True, max_results=5, expansions=["author_id"])

    assert me.username == "mimicbot"
    posted = x_server.timeline(me.id)[0]
    assert str(posted.id) == created.data["id"] and posted.text == "a generated post"
    assert posted.referenced_tweets == [{"type": "replied_to", "id": str(mention.id)}]
    assert [t.id for t in mentions.data] == [mention.id]
    assert [u.username for u in mentions.includes["users"]] == ["fan"]
    assert {r.auth for r in x_server.requests} == {"oauth"}  # the fake verified each HMAC signature
    assert "oauth_token" in caplog.text  # oauthlib logged what it signed ...
    for name in ("twitter_api_key", "twitter_api_secret", "twitter_access_token", "twitter_access_secret"):
        assert settings.secret(name) not in caplog.text  # ... with every credential redacted


def test_sync_user_context_with_wrong_secret_is_refused(x_server, tmp_path):
    import tweepy

    settings = settings_for(x_server, tmp_path, twitter_access_secret="not-the-secret")
    client = x_client(settings, user_auth=True, asynchronous=False)
    with pytest.raises(tweepy.Unauthorized):
        client.create_tweet(text="hello", user_auth=True)
    assert x_server.timeline(x_server.me.id) == []


def test_user_context_needs_all_four_credentials(x_server, tmp_path):
    settings = settings_for(x_server, tmp_path, twitter_api_secret=None)
    with pytest.raises(AuthError, match="TWITTER_API_SECRET"):
        x_client(settings, user_auth=True, asynchronous=False)
    with pytest.raises(ConfigError, match="sync"):
        x_client(settings_for(x_server, tmp_path), user_auth=True, asynchronous=True)


# -- long posts: note_tweet ------------------------------------------------------------------------------


LONG = " ".join(f"word{i}" for i in range(120))  # 700+ characters: X keeps the whole only in note_tweet


async def test_long_posts_are_read_whole_from_note_tweet(x_server, tmp_path):
    x_server.add_user("jack")
    x_server.add_tweet("jack", "a short one")
    long = x_server.add_tweet("jack", LONG)
    assert len(long.text) == 280 and long.note_text == LONG  # what X holds: the start, and the whole
    result = await XApiSource("jack", settings_for(x_server, tmp_path)).fetch()
    texts = {p.id: p.text for p in result.posts}
    assert texts[str(long.id)] == LONG and "a short one" in texts.values()
    asked = x_server.requests_to(TIMELINE)[-1].query["tweet.fields"].split(",")
    assert "note_tweet" in asked


def test_the_fake_sends_note_tweet_only_when_asked(x_server, tmp_path):
    x_server.add_user("jack")
    long = x_server.add_tweet("jack", LONG)
    client = x_client(settings_for(x_server, tmp_path), user_auth=False, asynchronous=False)
    user_id = x_server.user("jack").id
    plain = client.get_users_tweets(user_id, tweet_fields=["created_at"])
    assert plain.data[0].text == long.text and "note_tweet" not in plain.data[0].data
    asked = client.get_users_tweets(user_id, tweet_fields=["created_at", "note_tweet"])
    assert asked.data[0].data["note_tweet"]["text"] == LONG
