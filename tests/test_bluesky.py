"""Bluesky as a source and a posting target: atproto's AsyncClient over real HTTP against the fake XRPC server."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

import pytest
from typer.testing import CliRunner

from bot.errors import AuthError, ConfigError, ProtectedAccount, SourceError, UnknownAccount, ValidationError
from bot.posting import bluesky as bsky_target
from bot.posting.base import DeliveryUnknown, TargetError
from bot.posting.bluesky import BlueskyTarget, bluesky_length
from bot.posting.targets import build_target, validate_target_name
from bot.posting.text import graphemes
from bot.service import Mimicbot
from bot.sources import open_source
from bot.sources.bluesky import TIMELINE_CAP, BlueskySource, parse_time
from tests.fakes.bsky_server import EPOCH, FakeBluesky, bsky_settings
from tests.fakes.mastodon_server import TOKEN as MASTODON_TOKEN
from tests.fakes.mastodon_server import FakeMastodon
from tests.kit.posting import posting_settings

FEED = "app.bsky.feed.getAuthorFeed"
ALICE = "alice.bsky.social"
PASSWORD = "abcd-efgh-ijkl-mnop"


def seed(server: FakeBluesky, n: int, *, start: int = 0) -> dict[str, int]:
    """n feed items by alice, cycling post / repost / reply / short / post-with-link. Returns the kind counts."""
    if server.actor(ALICE) is None:
        server.add_actor(ALICE, display_name="Alice A.")
        server.add_actor("bob.bsky.social", display_name="Bob")
    bob_post = server.add_post("bob.bsky.social", "bob writes something worth sharing")
    counts = {"post": 0, "repost": 0, "reply": 0, "short": 0, "link": 0}
    for i in range(start, start + n):
        kind = ["post", "repost", "reply", "short", "link"][i % 5]
        counts[kind] += 1
        if kind == "repost":
            server.add_repost(ALICE, bob_post)
        elif kind == "reply":
            server.add_post(ALICE, f"replying to bob about thing {i}", reply_to=bob_post)
        elif kind == "short":
            server.add_post(ALICE, "ok")
        elif kind == "link":
            server.add_post(ALICE, f"read this example.com/long/pa... now {i} friends",
                            link=("example.com/long/pa...", f"https://example.com/long/path/{i}"))
        else:
            server.add_post(ALICE, f"alice thinks about post number {i} today")
    return counts


@pytest.fixture
def bot(bsky_server, tmp_path):
    b = Mimicbot(bsky_settings(bsky_server, tmp_path))
    yield b
    b.close()


@pytest.fixture(autouse=True)
def _no_kept_sessions():
    bsky_target.forget_sessions()
    yield
    bsky_target.forget_sessions()


def _counts(settings) -> dict[str, int]:
    con = sqlite3.connect(settings.db_path)
    try:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("accounts", "posts", "fetch_runs")}
    finally:
        con.close()


# -- source ----------------------------------------------------------------------------------------------------


async def test_fetch_pages_the_feed_and_counts_reposts_like_retweets(bot, bsky_server):
    counts = seed(bsky_server, 230)

    (report,) = await bot.fetch(["bsky:@Alice.BSKY.social"])

    assert (report.network, report.handle, report.display_name) == ("bsky", ALICE, "Alice A.")
    assert report.source == f"bsky:{ALICE}"
    assert report.downloaded == 230 == report.new
    assert report.retweets == counts["repost"] == 46
    assert report.short == counts["short"]
    assert report.kept == counts["post"] + counts["reply"] + counts["link"]
    pages = bsky_server.calls(FEED)
    assert len(pages) == 3  # 100 + 100 + 30
    did = bsky_server.actor(ALICE).did
    assert all(p.query["actor"] == [did] and p.query["limit"] == ["100"] for p in pages)
    assert all(p.query["filter"] == ["posts_with_replies"] for p in pages)
    assert "cursor" not in pages[0].query and all("cursor" in p.query for p in pages[1:])

    account = bot.store.get_account("bsky", ALICE)
    assert account["user_id"] == did and account["avatar_url"].startswith("https://cdn.bsky.app/")
    newest = bsky_server.feed_of(did)[0]
    assert parse_time(account["since_id"]) == newest["sort"]
    rows = bot.store.query("select * from posts where raw_text like 'read this%' order by id limit 1")
    assert "https://example.com/long/path/" in rows[0]["raw_text"]  # the link facet's full URL, put back
    assert rows[0]["clean_text"].startswith("read this now") and "example.com" not in rows[0]["clean_text"]
    replies = bot.store.query("select parent_text from posts where is_reply")
    assert len(replies) == counts["reply"]
    assert {r["parent_text"] for r in replies} == {"bob writes something worth sharing"}  # trained on as context
    reposts = bot.store.query("select post_id, raw_text from posts where is_retweet")
    assert all("/app.bsky.feed.repost/" in r["post_id"] for r in reposts)


async def test_a_reply_to_a_deleted_post_has_no_context(bot, bsky_server):
    seed(bsky_server, 1)
    gone = {"uri": "at://did:plc:gone/app.bsky.feed.post/3kgone", "cid": "bafygone", "record": {}}
    bsky_server.add_post(ALICE, "replying to a post that is gone now", reply_to=gone)
    await bot.fetch([f"bsky:{ALICE}"])
    (row,) = bot.store.query("select parent_text, is_reply from posts where raw_text like 'replying to a post%'")
    assert row["is_reply"] and row["parent_text"] is None


async def test_second_fetch_adds_none_and_later_ones_only_what_is_new(bot, bsky_server):
    seed(bsky_server, 150)
    await bot.fetch([f"bsky:{ALICE}"])
    bsky_server.requests.clear()

    (again,) = await bot.fetch([f"bsky:{ALICE}"])

    assert again.new == 0 and again.downloaded == 150
    assert len(bsky_server.calls(FEED)) == 1  # stopped at the stored newest item on the first page

    seed(bsky_server, 7, start=1000)  # 6 from seed's cycle + bob's post (not alice's)
    bsky_server.requests.clear()
    (later,) = await bot.fetch([f"bsky:{ALICE}"])
    assert later.new == 7 and later.downloaded == 157
    assert len(bsky_server.calls(FEED)) == 1


async def test_a_post_dated_in_the_future_does_not_hide_later_ones(bot, bsky_server):
    seed(bsky_server, 3)
    await bot.fetch([f"bsky:{ALICE}"])
    bsky_server.add_post(ALICE, "written on a phone whose clock says 2099", created_at=EPOCH.replace(year=2099))
    (report,) = await bot.fetch([f"bsky:{ALICE}"])
    assert report.new == 1
    cursor = parse_time(bot.store.get_account("bsky", ALICE)["since_id"])
    assert cursor.year == 2024  # when it was indexed: the feed sorts it there, and so does the cursor
    bsky_server.add_post(ALICE, "and a normal post written after it")
    (report,) = await bot.fetch([f"bsky:{ALICE}"])
    assert report.new == 1


async def test_feed_is_capped_at_3200_items(bsky_server, tmp_path):
    seed(bsky_server, 3250)
    result = await BlueskySource(ALICE, bsky_settings(bsky_server, tmp_path)).fetch()
    assert len(result.posts) == TIMELINE_CAP
    newest = [i["view"] for i in bsky_server.feed_of(bsky_server.actor(ALICE).did)[:TIMELINE_CAP]]
    expected = [v["reason"]["uri"] if "reason" in v else v["post"]["uri"] for v in newest]
    assert [p.id for p in result.posts] == expected
    assert len(bsky_server.calls(FEED)) == 32


async def test_unknown_account_stores_nothing(bot, bsky_server):
    seed(bsky_server, 5)
    await bot.fetch([f"bsky:{ALICE}"])
    before = _counts(bot.settings)
    with pytest.raises(UnknownAccount, match="nobody.bsky.social"):
        await bot.fetch([f"bsky:{ALICE}", "bsky:nobody.bsky.social"])
    assert _counts(bot.settings) == before


@pytest.mark.parametrize("spec", ["bsky:", "bsky:alice", "bsky:not a handle.com", "bsky:alice..bsky.social",
                                  "bsky:https://bsky.app/profile/alice.bsky.social"])
def test_bad_handles_are_refused_before_any_request(bsky_server, tmp_path, spec):
    with pytest.raises(ValidationError, match="not a Bluesky handle"):
        open_source(spec, bsky_settings(bsky_server, tmp_path))
    assert bsky_server.requests == []


async def test_suspended_and_logged_out_opt_out_accounts_are_protected(bsky_server, tmp_path):
    settings = bsky_settings(bsky_server, tmp_path)
    bsky_server.add_actor("gone.bsky.social").takendown = True
    bsky_server.add_actor("private.bsky.social", labels=["!no-unauthenticated"])
    with pytest.raises(ProtectedAccount, match="suspended"):
        await BlueskySource("gone.bsky.social", settings).fetch()
    with pytest.raises(ProtectedAccount, match="logged-out"):
        await BlueskySource("private.bsky.social", settings).fetch()
    assert bsky_server.calls(FEED) == []


async def test_server_down_is_source_error(tmp_path):
    with FakeBluesky() as server:
        settings = bsky_settings(server, tmp_path)
    with pytest.raises(SourceError, match="could not") as caught:
        await BlueskySource(ALICE, settings).fetch()
    assert type(caught.value) is SourceError


async def test_rate_limit_is_waited_out_then_the_fetch_goes_on(bsky_server, tmp_path):
    seed(bsky_server, 150)
    bsky_server.rate_limit(1, reset_in=30, nsid=FEED)
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    result = await BlueskySource(ALICE, bsky_settings(bsky_server, tmp_path), sleep=recording_sleep).fetch()

    assert len(result.posts) == 150
    assert len(waits) == 1 and 28 <= waits[0] <= 32  # until ratelimit-reset (+1 s margin), not a fixed guess
    assert len(bsky_server.calls(FEED)) == 3  # refused, retried, second page


async def test_rate_limit_resetting_too_late_is_a_clear_error(bsky_server, tmp_path):
    seed(bsky_server, 5)
    bsky_server.rate_limit(1, reset_in=3600)
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)

    source = BlueskySource(ALICE, bsky_settings(bsky_server, tmp_path), sleep=recording_sleep)
    with pytest.raises(SourceError, match=r"rate-limiting .* resets in 3\d\d\d s"):
        await source.fetch()
    assert waits == []


def test_cli_fetch_prints_the_table_as_json(bsky_server, tmp_path, monkeypatch):
    from bot.cli import _register, app

    seed(bsky_server, 20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BLUESKY_APPVIEW_URL", bsky_server.url)
    _register()
    result = CliRunner().invoke(app, ["fetch", f"bsky:{ALICE}", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["handle"], row["source"], row["downloaded"], row["retweets"]) == (ALICE, f"bsky:{ALICE}", 20, 4)

    result = CliRunner().invoke(app, ["fetch", "bsky:nobody.bsky.social"])
    assert result.exit_code == 2 and "no Bluesky account named nobody.bsky.social" in result.output


# -- target ----------------------------------------------------------------------------------------------------


def _poster_settings(server: FakeBluesky, tmp_path, **overrides):
    server.add_actor("mimic.bsky.social", display_name="mimic", password=PASSWORD)
    values = {"bluesky_handle": "@Mimic.bsky.social", "bluesky_app_password": PASSWORD, **overrides}
    return bsky_settings(server, tmp_path, **values)


async def test_one_session_serves_every_post(bsky_server, tmp_path):
    settings = _poster_settings(bsky_server, tmp_path)
    target = build_target("BSKY", settings)
    assert isinstance(target, BlueskyTarget) and validate_target_name(" Bsky ") == "bsky"

    uris = [await target.send(f"post number {i} from the bot") for i in range(3)]
    uris += [await build_target("bsky", settings).send(f"scheduled post {i}") for i in range(2)]  # as the daemon does

    assert len(bsky_server.calls("com.atproto.server.createSession")) == 1
    created = bsky_server.calls("com.atproto.repo.createRecord")
    me = bsky_server.actor("mimic.bsky.social")
    assert [c.body["record"]["text"] for c in created] == [f"post number {i} from the bot" for i in range(3)] + [
        f"scheduled post {i}" for i in range(2)]
    assert all(c.did == me.did and c.body["repo"] == me.did for c in created)
    assert all("facets" not in c.body["record"] for c in created)  # plain text: an @name notifies nobody
    assert uris == [u for u in bsky_server.posts if u.startswith(f"at://{me.did}/")]


async def test_reply_names_parent_and_thread_root(bsky_server, tmp_path):
    target = BlueskyTarget(_poster_settings(bsky_server, tmp_path))
    root = await target.send("a thread starts here")
    middle = await target.send("and goes on", reply_to=root)
    await target.send("and on", reply_to=middle)
    reply = bsky_server.calls("com.atproto.repo.createRecord")[-1].body["record"]["reply"]
    assert reply["parent"] == {"uri": middle, "cid": bsky_server.posts[middle]["cid"],
                               "$type": "com.atproto.repo.strongRef"}
    assert reply["root"]["uri"] == root and reply["root"]["cid"] == bsky_server.posts[root]["cid"]

    with pytest.raises(TargetError, match="no post"):
        await target.send("to nowhere", reply_to=root.replace(root.rsplit("/", 1)[1], "3zzzzzzzzzzzz"))


def test_length_counts_graphemes_and_bytes():
    assert bluesky_length("hello") == 5
    assert bluesky_length("e\u0301") == 1  # e + combining acute
    family = "👨‍👩‍👧‍👦"  # 7 code points, 25 bytes, one grapheme
    assert graphemes(family) == 1 and len(family) == 7
    assert bluesky_length(family) == 3  # its bytes weigh more than its one grapheme: 25 of the 3,000
    assert bluesky_length("🇫🇷🇩🇪") == 2
    assert bluesky_length(family * 120) == 300  # 3,000 bytes: exactly at the byte limit
    assert bluesky_length(family * 121) == 303  # 121 graphemes, but 3,025 bytes


async def test_too_long_is_refused_before_any_request_and_the_limit_is_the_servers(bsky_server, tmp_path):
    target = BlueskyTarget(_poster_settings(bsky_server, tmp_path))
    at_limit = "é" * 299 + "\u0065\u0301"  # 300 graphemes, 301 code points
    await target.send(at_limit)  # the fake enforces the real limits: accepted
    for too_long in ("x" * 301, "👨‍👩‍👧‍👦" * 121):
        with pytest.raises(TargetError, match="too long for Bluesky"):
            await target.send(too_long)
    with pytest.raises(TargetError, match="empty"):
        await target.send("   ")
    assert len(bsky_server.calls("com.atproto.repo.createRecord")) == 1


async def test_post_rate_limit_waits_then_posts_once(bsky_server, tmp_path):
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    target = BlueskyTarget(_poster_settings(bsky_server, tmp_path), sleep=recording_sleep)
    bsky_server.rate_limit(1, reset_in=20, nsid="com.atproto.repo.createRecord")
    await target.send("patience is a virtue, they say")
    assert len(waits) == 1 and 18 <= waits[0] <= 22
    assert len(bsky_server.calls("com.atproto.repo.createRecord")) == 2
    assert sum(p["record"]["text"].startswith("patience") for p in bsky_server.posts.values()) == 1

    bsky_server.rate_limit(1, reset_in=3600, nsid="com.atproto.repo.createRecord")
    with pytest.raises(TargetError, match=r"rate-limiting a post to Bluesky; the limit resets in 3\d\d\d s"):
        await target.send("this one must wait an hour")
    assert len(waits) == 1


async def test_wrong_password_fails_the_post_clearly_without_secrets(bsky_server, tmp_path, caplog):
    settings = _poster_settings(bsky_server, tmp_path, bluesky_app_password="wrong-pass-word-0000")
    refused = "Bluesky refused the login of mimic.bsky.social .*Invalid identifier or password.*BLUESKY_APP_PASSWORD"
    with caplog.at_level(logging.DEBUG), pytest.raises(TargetError, match=refused) as caught:
        await BlueskyTarget(settings).send("never posted")
    assert "wrong-pass-word-0000" not in str(caught.value) and "wrong-pass-word-0000" not in caplog.text
    assert bsky_server.calls("com.atproto.repo.createRecord") == []


async def test_secrets_are_never_logged(bsky_server, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        await BlueskyTarget(_poster_settings(bsky_server, tmp_path)).send("a quiet post")
    assert "HTTP Request" in caplog.text  # httpx did log its requests
    assert PASSWORD not in caplog.text
    assert not any(token in caplog.text for token in bsky_server.sessions)


async def test_missing_credentials_and_bad_urls_are_config_errors(bsky_server, tmp_path):
    with pytest.raises(AuthError, match="BLUESKY_HANDLE and BLUESKY_APP_PASSWORD"):
        build_target("bsky", bsky_settings(bsky_server, tmp_path))
    with pytest.raises(ConfigError, match="BLUESKY_BASE_URL must be an http"):
        await BlueskyTarget(_poster_settings(bsky_server, tmp_path, bluesky_base_url="bsky.social")).send("hi")
    with pytest.raises(ConfigError, match="BLUESKY_APPVIEW_URL must be an http"):
        await BlueskySource(ALICE, bsky_settings(bsky_server, tmp_path, bluesky_appview_url="ftp://x")).fetch()
    assert bsky_server.requests == []


async def test_a_refused_session_is_replaced_once(bsky_server, tmp_path):
    target = BlueskyTarget(_poster_settings(bsky_server, tmp_path))
    await target.send("first, with a fresh session")
    bsky_server.sessions.clear()  # the server forgets it (revoked)
    await target.send("second, after logging in again")
    assert len(bsky_server.calls("com.atproto.server.createSession")) == 2
    texts = [c.body["record"]["text"] for c in bsky_server.calls("com.atproto.repo.createRecord")]
    assert texts == ["first, with a fresh session", "second, after logging in again", "second, after logging in again"]
    assert sum(1 for p in bsky_server.posts.values() if p["record"]["text"].startswith("second")) == 1


async def test_sending_does_not_block_the_event_loop(bsky_server, tmp_path):
    target = BlueskyTarget(_poster_settings(bsky_server, tmp_path))
    await target.send("warm up the session")
    bsky_server.hold()  # the fake answers only after release(), which only this event loop can call

    async def release_when_held() -> None:
        while bsky_server.held == 0:
            await asyncio.sleep(0.01)
        bsky_server.release()

    uri, _ = await asyncio.gather(target.send("sent while the loop kept running"), release_when_held())
    assert bsky_server.posts[uri]["record"]["text"] == "sent while the loop kept running"


async def test_no_answer_to_a_post_is_delivery_unknown(bsky_server, tmp_path):
    target = BlueskyTarget(_poster_settings(bsky_server, tmp_path), timeout=0.3)
    await target.send("warm up the session")
    bsky_server.hold()
    try:
        with pytest.raises(DeliveryUnknown, match="may or may not be posted"):
            await target.send("did this go out?")
    finally:
        bsky_server.release()



async def test_mimicbot_post_to_bsky_and_mastodon_goes_through_guards_and_the_ledger(
        bsky_server, tmp_path, trained_models):
    """`mimicbot post MODEL --to bsky|mastodon` (and schedules and approvals, which build targets the same way)."""
    models_dir, model_id = trained_models
    bsky_server.add_actor("mimic.bsky.social", password=PASSWORD)
    with FakeMastodon() as mastodon_server:
        settings = posting_settings(tmp_path, models_dir, bluesky_base_url=bsky_server.url,
                                    bluesky_handle="mimic.bsky.social", bluesky_app_password=PASSWORD,
                                    mastodon_api_base=mastodon_server.url, mastodon_access_token=MASTODON_TOKEN)
        service = Mimicbot(settings)
        try:
            to_bsky = await service.post(model_id, "bsky")
            to_mastodon = await service.post(model_id, "mastodon")
            ledger = {e["target"]: e for e in service.outgoing()}
        finally:
            service.close()
    for outcome in (to_bsky, to_mastodon):
        assert outcome.status == "sent", outcome
        entry = ledger[outcome.target]
        assert (entry["status"], entry["remote_id"], entry["text"]) == ("sent", outcome.remote_id, outcome.text)
        assert outcome.text.endswith(" 🤖")  # the disclosure guard ran
    assert bsky_server.posts[to_bsky.remote_id]["record"]["text"] == to_bsky.text
    assert bluesky_length(to_bsky.text) <= 300
    (status,) = mastodon_server.calls("/api/v1/statuses")
    assert status.body["status"] == to_mastodon.text and status.body["visibility"] == "unlisted"
    assert any(s["id"] == to_mastodon.remote_id for s in mastodon_server.statuses)
