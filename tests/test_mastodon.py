"""Mastodon as a source and a posting target: Mastodon.py over real HTTP against the fake REST API."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from typer.testing import CliRunner

from bot.errors import AuthError, ConfigError, ProtectedAccount, SourceError, UnknownAccount, ValidationError
from bot.posting.base import DeliveryUnknown, TargetError
from bot.posting.mastodon import MastodonTarget, mastodon_length
from bot.posting.targets import build_target
from bot.service import Mimicbot
from bot.sources import open_source
from bot.networks.mastodon import api_base_for
from bot.sources.mastodon import TIMELINE_CAP, MastodonSource, html_to_text
from tests.fakes.mastodon_server import TOKEN, FakeMastodon, mastodon_settings

STATUSES = "/api/v1/accounts/{}/statuses"
ALICE = "@alice@example.social"


def seed(server: FakeMastodon, n: int, *, start: int = 0) -> dict[str, int]:
    """n statuses by alice, cycling public / boost / reply / short / unlisted-with-link / private."""
    if server.account("alice") is None:
        server.add_account("alice", display_name="Alice 🐘")
        server.add_account("bob")
    bob = server.add_status("bob", "<p>bob has a thought worth boosting</p>")
    counts = {"public": 0, "boost": 0, "reply": 0, "short": 0, "link": 0, "private": 0}
    for i in range(start, start + n):
        kind = ["public", "boost", "reply", "short", "link", "private"][i % 6]
        counts[kind] += 1
        if kind == "boost":
            server.add_status("alice", "", reblog_of=bob)
        elif kind == "reply":
            server.add_status("alice", f'<p><span class="h-card"><a href="https://example.social/@bob" '
                                       f'class="u-url mention">@<span>bob</span></a></span> I agree with {i} of '
                                       "those</p>", reply_to=bob)
        elif kind == "short":
            server.add_status("alice", "<p>ok</p>")
        elif kind == "link":
            server.add_status("alice", f'<p>look at <a href="https://news.example/{i}" rel="nofollow noopener" '
                                       f'target="_blank"><span class="invisible">https://</span><span class="">'
                                       f'news.example/{i}</span><span class="invisible"></span></a> it is {i} '
                                       "&amp; worth it</p>", visibility="unlisted")
        elif kind == "private":
            server.add_status("alice", f"<p>for followers only, number {i} here</p>", visibility="private")
        else:
            server.add_status("alice", f"<p>alice writes status {i} about her day</p><p>and more here</p>")
    return counts


@pytest.fixture
def bot(mastodon_server, tmp_path):
    b = Mimicbot(mastodon_settings(mastodon_server, tmp_path))
    yield b
    b.close()


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


# -- HTML ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("html, text", [
    ("<p>one</p><p>two</p>", "one\n\ntwo"),
    ("<p>line<br>break<br />and<br/>more</p>", "line\nbreak\nand\nmore"),
    ("<p>Tom &amp; Jerry &lt;3 it&#39;s &quot;fine&quot; &#x1F600; caf&eacute;</p>",
     'Tom & Jerry <3 it\'s "fine" 😀 café'),
    ('<p><a href="https://ex.com/a/very/long/path" rel="nofollow"><span class="invisible">https://</span>'
     '<span class="ellipsis">ex.com/a/very/lo</span><span class="invisible">ng/path</span></a> read</p>',
     "https://ex.com/a/very/long/path read"),
    ('<p><span class="h-card"><a href="https://m.s/@bob" class="u-url mention">@<span>bob</span></a></span> hi '
     '<a href="https://m.s/tags/cats" class="mention hashtag" rel="tag">#<span>cats</span></a></p>',
     "@bob hi #cats"),
    ('<p class="quote-inline">RE: <a href="https://m.s/@x/1"><span class="invisible">https://</span>m.s/@x/1</a>'
     "</p><p>my take on it</p>", "my take on it"),
    ("<p>a list:</p><ul><li>first</li><li>second</li></ul>", "a list:\n\nfirst\n\nsecond"),
    ("<p>  spaced   out  </p>", "spaced   out"),
    ("", ""),
    ("plain text, no tags", "plain text, no tags"),
])
def test_html_to_text(html, text):
    assert html_to_text(html) == text


# -- source ----------------------------------------------------------------------------------------------------


async def test_fetch_pages_statuses_and_counts_boosts_like_retweets(bot, mastodon_server):
    counts = seed(mastodon_server, 100)

    (report,) = await bot.fetch([ALICE.join(["mastodon:", ""])])

    readable = 100 - counts["private"]  # followers-only statuses are never kept
    assert (report.network, report.handle, report.display_name) == ("mastodon", "alice@example.social", "Alice 🐘")
    assert report.source == "mastodon:@alice@example.social"
    assert report.downloaded == readable == report.new == 84
    assert report.retweets == counts["boost"]
    assert report.short == counts["short"]
    assert report.kept == counts["public"] + counts["reply"] + counts["link"]
    alice = mastodon_server.account("alice")
    pages = mastodon_server.calls(STATUSES.format(alice.id))
    assert len(pages) == 4  # 40 + 40 + 20 + an empty page
    assert "max_id" not in pages[0].query and all(p.query["limit"] == "40" for p in pages)
    mine = [s for s in mastodon_server.statuses if s["account"]["id"] == alice.id]
    assert [p.query.get("max_id") for p in pages[1:]] == [mine[-40]["id"], mine[-80]["id"], mine[0]["id"]]

    account = bot.store.get_account("mastodon", "alice@example.social")
    assert account["since_id"] == mine[-1]["id"] and account["user_id"] == alice.id
    assert account["avatar_url"].endswith(f"/avatars/{alice.id}.png")
    texts = {r["raw_text"]: r for r in bot.store.query("select * from posts")}
    assert "alice writes status 0 about her day\n\nand more here" in texts
    link = texts["look at https://news.example/4 it is 4 & worth it"]
    assert link["clean_text"] == "look at it is 4 & worth it"
    assert texts["@bob I agree with 2 of those"]["is_reply"] == 1
    assert not any("followers only" in t for t in texts)
    boosts = bot.store.query("select raw_text from posts where is_retweet")
    assert {b["raw_text"] for b in boosts} == {"bob has a thought worth boosting"}


async def test_second_fetch_adds_none_and_later_ones_walk_forward(bot, mastodon_server):
    seed(mastodon_server, 50)
    await bot.fetch(["mastodon:" + ALICE])
    alice = mastodon_server.account("alice")
    newest = bot.store.get_account("mastodon", "alice@example.social")["since_id"]
    mastodon_server.requests.clear()

    (again,) = await bot.fetch(["mastodon:" + ALICE])

    assert again.new == 0
    (page,) = mastodon_server.calls(STATUSES.format(alice.id))
    assert page.query["min_id"] == newest

    seed(mastodon_server, 60, start=1000)  # 50 readable
    mastodon_server.requests.clear()
    (later,) = await bot.fetch(["mastodon:" + ALICE])
    assert later.new == 50
    pages = mastodon_server.calls(STATUSES.format(alice.id))
    assert len(pages) == 3  # 40 + 20 + empty, walking forward from the stored newest: no gap
    assert pages[0].query["min_id"] == newest and "max_id" not in pages[0].query


async def test_statuses_are_capped(mastodon_server, tmp_path, monkeypatch):
    # Mastodon.py turns each status into typed objects at ~5 ms apiece here: 3,200 would take 15 s, so the
    # cap is lowered to a page and a half (its logic is the same at any size).
    assert TIMELINE_CAP == 3200
    monkeypatch.setattr("bot.sources.mastodon.TIMELINE_CAP", 60)
    mastodon_server.add_account("alice")
    for i in range(100):
        mastodon_server.add_status("alice", f"<p>status {i}</p>")
    settings = mastodon_settings(mastodon_server, tmp_path)
    result = await MastodonSource(ALICE, settings).fetch()
    assert [p.text for p in result.posts] == [f"status {i}" for i in range(99, 39, -1)]  # the newest 60
    assert len(mastodon_server.requests) == 1 + 2  # lookup, two pages of 40

    for i in range(100, 200):
        mastodon_server.add_status("alice", f"<p>status {i}</p>")
    later = await MastodonSource(ALICE, settings).fetch(since_id=result.cursor)
    # walking forward, the 60 oldest new ones: the next fetch goes on from status 159, without a gap
    assert sorted(p.text for p in later.posts) == sorted(f"status {i}" for i in range(100, 160))
    assert later.cursor == _status_id(mastodon_server, "status 159")


def _status_id(server: FakeMastodon, text: str) -> str:
    return next(s["id"] for s in server.statuses if s["content"] == f"<p>{text}</p>")


async def test_remote_account_is_found_by_resolving_search(mastodon_server, tmp_path):
    bob = mastodon_server.add_account("bob", domain="remote.example", known=False)
    mastodon_server.add_status(bob, "<p>hello from elsewhere on the fediverse</p>")

    anonymous = mastodon_settings(mastodon_server, tmp_path, mastodon_access_token=None)
    with pytest.raises(UnknownAccount, match="@bob@remote.example"):
        await MastodonSource("@bob@remote.example", anonymous).fetch()

    result = await MastodonSource("@bob@remote.example", mastodon_settings(mastodon_server, tmp_path)).fetch()
    assert result.account.user_id == bob.id and [p.text for p in result.posts] == [
        "hello from elsewhere on the fediverse"]
    (search,) = [r for r in mastodon_server.calls("/api/v1/accounts/search") if r.authenticated]
    assert search.query["q"] == "bob@remote.example" and search.query["resolve"] == "1"


async def test_unknown_and_suspended_accounts(mastodon_server, tmp_path):
    settings = mastodon_settings(mastodon_server, tmp_path)
    with pytest.raises(UnknownAccount, match="no Mastodon account @nobody@example.social"):
        await MastodonSource("@nobody@example.social", settings).fetch()
    mastodon_server.add_account("gone").suspended = True
    with pytest.raises(ProtectedAccount, match="suspended"):
        await MastodonSource("@gone@example.social", settings).fetch()


@pytest.mark.parametrize("spec", ["mastodon:alice", "mastodon:@alice", "mastodon:@alice@", "mastodon:@a b@x.social",
                                  "mastodon:https://example.social/@alice", "mastodon:@alice@localhost"])
def test_bad_addresses_are_refused_before_any_request(mastodon_server, tmp_path, spec):
    with pytest.raises(ValidationError, match="expected mastodon:@user@instance"):
        open_source(spec, mastodon_settings(mastodon_server, tmp_path))
    assert mastodon_server.requests == []


def test_the_token_only_goes_to_the_configured_instance(tmp_path):
    from bot.config import Settings

    unset = Settings(_env_file=None, mastodon_access_token="secret-token")
    assert api_base_for(unset, "example.social") == ("https://example.social", None)
    source = open_source("mastodon:@Alice@Example.Social", unset)
    assert (source.handle, source.label, source.api_base) == (
        "alice@example.social", "mastodon:@alice@example.social", "https://example.social")
    configured = Settings(_env_file=None, mastodon_api_base="https://home.example/", mastodon_access_token="t")
    assert api_base_for(configured, "example.social") == ("https://home.example", "t")


async def test_server_down_is_source_error(tmp_path):
    with FakeMastodon() as server:
        settings = mastodon_settings(server, tmp_path)
    with pytest.raises(SourceError, match="could not reach Mastodon") as caught:
        await MastodonSource(ALICE, settings).fetch()
    assert type(caught.value) is SourceError


async def test_rate_limit_is_waited_out_then_the_fetch_goes_on(mastodon_server, tmp_path):
    seed(mastodon_server, 60)
    alice = mastodon_server.account("alice")
    mastodon_server.rate_limit(1, reset_in=30, path=STATUSES.format(alice.id))
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    source = MastodonSource(ALICE, mastodon_settings(mastodon_server, tmp_path), sleep=recording_sleep)
    result = await source.fetch()

    assert len(result.posts) == 50
    assert len(waits) == 1 and 28 <= waits[0] <= 32  # until X-RateLimit-Reset (+1 s margin)
    assert len(mastodon_server.calls(STATUSES.format(alice.id))) == 4  # refused, retried, second page, empty


async def test_rate_limit_resetting_too_late_is_a_clear_error(mastodon_server, tmp_path):
    seed(mastodon_server, 5)
    mastodon_server.rate_limit(1, reset_in=3600)
    source = MastodonSource(ALICE, mastodon_settings(mastodon_server, tmp_path), sleep=_no_wait)
    limited = r"rate-limiting the account mastodon:@alice@example.social; the limit resets in 3\d\d\d s"
    with pytest.raises(SourceError, match=limited):
        await source.fetch()


def test_cli_fetch_prints_the_table_as_json(mastodon_server, tmp_path, monkeypatch):
    from bot.cli import _register, app

    seed(mastodon_server, 12)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MASTODON_API_BASE", mastodon_server.url)
    monkeypatch.delenv("MASTODON_ACCESS_TOKEN", raising=False)
    _register()
    result = CliRunner().invoke(app, ["fetch", "mastodon:" + ALICE, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["handle"], row["downloaded"], row["retweets"]) == ("alice@example.social", 10, 2)


# -- target ----------------------------------------------------------------------------------------------------


async def test_posts_unlisted_statuses_with_an_idempotency_key(mastodon_server, tmp_path):
    target = build_target("mastodon", mastodon_settings(mastodon_server, tmp_path))
    assert isinstance(target, MastodonTarget)

    first = await target.send("a generated thought\n\nin two paragraphs")
    second = await target.send("and a reply to it", reply_to=first)

    posted = mastodon_server.calls("/api/v1/statuses")
    assert [p.body["status"] for p in posted] == ["a generated thought\n\nin two paragraphs", "and a reply to it"]
    assert all(p.body["visibility"] == "unlisted" and p.authenticated for p in posted)
    assert posted[1].body["in_reply_to_id"] == first
    keys = [p.headers["Idempotency-Key"] for p in posted]
    assert len(set(keys)) == 2 and all(len(k) == 32 for k in keys)
    mine = {s["id"]: s for s in mastodon_server.statuses if s["account"]["id"] == mastodon_server.me.id}
    assert mine[second]["in_reply_to_id"] == first and mine[first]["visibility"] == "unlisted"

    public = MastodonTarget(mastodon_settings(mastodon_server, tmp_path, mastodon_visibility="public"))
    await public.send("for everyone")
    assert mastodon_server.calls("/api/v1/statuses")[-1].body["visibility"] == "public"


def test_length_counts_like_mastodon():
    assert mastodon_length("hello") == 5
    assert mastodon_length("see https://example.com/" + "a" * 200) == len("see ") + 23
    assert mastodon_length("hi @bob@example.social!") == len("hi @bob!")
    assert mastodon_length("👨‍👩‍👧‍👦 e\u0301") == 3
    assert mastodon_length("write to me@example.social") == len("write to me@example.social")  # not a mention


async def test_too_long_is_refused_before_any_request(mastodon_server, tmp_path):
    target = MastodonTarget(mastodon_settings(mastodon_server, tmp_path))
    await target.send("x" * 500)
    with pytest.raises(TargetError, match="too long for Mastodon: 501"):
        await target.send("x" * 501)
    assert len(mastodon_server.calls("/api/v1/statuses")) == 1


async def test_post_rate_limit_waits_then_posts_once_with_the_same_key(mastodon_server, tmp_path):
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    target = MastodonTarget(mastodon_settings(mastodon_server, tmp_path), sleep=recording_sleep)
    mastodon_server.rate_limit(1, reset_in=20, path="/api/v1/statuses")
    await target.send("posted after the window resets")
    assert len(waits) == 1 and 18 <= waits[0] <= 22
    attempts = mastodon_server.calls("/api/v1/statuses")
    assert len(attempts) == 2 and attempts[0].headers["Idempotency-Key"] == attempts[1].headers["Idempotency-Key"]
    assert sum(1 for s in mastodon_server.statuses if "window resets" in s["content"]) == 1

    mastodon_server.rate_limit(1, reset_in=3600, path="/api/v1/statuses")
    with pytest.raises(TargetError, match=r"resets in 3\d\d\d s"):
        await target.send("not within the hour")
    assert len(waits) == 1


async def test_refused_token_fails_the_post_clearly_without_the_token(mastodon_server, tmp_path, caplog):
    settings = mastodon_settings(mastodon_server, tmp_path, mastodon_access_token="not-the-token")
    with caplog.at_level(logging.DEBUG), pytest.raises(TargetError, match="MASTODON_ACCESS_TOKEN") as caught:
        await MastodonTarget(settings).send("never posted")
    assert "not-the-token" not in str(caught.value) and "not-the-token" not in caplog.text
    with caplog.at_level(logging.DEBUG):
        await MastodonTarget(mastodon_settings(mastodon_server, tmp_path)).send("posted quietly")
    assert TOKEN not in caplog.text


def test_missing_settings_and_bad_urls_are_config_errors(mastodon_server, tmp_path):
    with pytest.raises(AuthError, match="MASTODON_API_BASE .* and MASTODON_ACCESS_TOKEN"):
        build_target("mastodon", mastodon_settings(mastodon_server, tmp_path, mastodon_access_token=None))
    with pytest.raises(ConfigError, match="MASTODON_API_BASE must be an http"):
        build_target("mastodon", mastodon_settings(mastodon_server, tmp_path, mastodon_api_base="mastodon.social"))


async def test_sending_does_not_block_the_event_loop(mastodon_server, tmp_path):
    target = MastodonTarget(mastodon_settings(mastodon_server, tmp_path))
    mastodon_server.hold()  # the fake answers only after release(), which only this event loop can call

    async def release_when_held() -> None:
        while mastodon_server.held == 0:
            await asyncio.sleep(0.01)
        mastodon_server.release()

    status_id, _ = await asyncio.gather(target.send("sent while the loop kept running"), release_when_held())
    assert any(s["id"] == status_id for s in mastodon_server.statuses)


async def test_no_answer_to_a_post_is_delivery_unknown(mastodon_server, tmp_path):
    target = MastodonTarget(mastodon_settings(mastodon_server, tmp_path), timeout=0.2)
    mastodon_server.hold()
    try:
        with pytest.raises(DeliveryUnknown, match="may or may not be posted"):
            await target.send("did this go out?")
    finally:
        mastodon_server.release()



# -- content warnings ------------------------------------------------------------------------------------------


def _seed_cw(server: FakeMastodon) -> None:
    server.add_account("alice", display_name="Alice")
    server.add_status("alice", "<p>an ordinary status about the garden today</p>")
    server.add_status("alice", "<p>the ending of the film, in detail, every twist</p>", spoiler_text="film spoilers")
    server.add_status("alice", "<p>a long and heavy story about the news</p>", spoiler_text="news, heavy")
    server.add_status("alice", "<p>another plain status about the weather here</p>")


async def test_statuses_behind_a_content_warning_are_skipped_and_counted(mastodon_server, tmp_path):
    _seed_cw(mastodon_server)
    bot = Mimicbot(mastodon_settings(mastodon_server, tmp_path))
    try:
        (report,) = await bot.fetch(["mastodon:" + ALICE])
        texts = [r["raw_text"] for r in bot.store.query("select raw_text from posts")]
    finally:
        bot.close()
    assert report.downloaded == 4 and report.kept == 2 and report.short == 2  # counted with the short ones
    assert "2 statuses behind a content warning skipped" in report.warning
    assert not any("film" in t or "news" in t for t in texts)  # neither stored nor trained on


async def test_a_setting_includes_statuses_behind_a_content_warning(mastodon_server, tmp_path):
    _seed_cw(mastodon_server)
    bot = Mimicbot(mastodon_settings(mastodon_server, tmp_path, mimicbot_mastodon_include_cw=True))
    try:
        (report,) = await bot.fetch(["mastodon:" + ALICE])
    finally:
        bot.close()
    assert report.downloaded == report.kept == 4 and report.short == 0
    assert "content warning" not in (report.warning or "")


async def test_the_target_sets_a_content_warning(mastodon_server, tmp_path):
    settings = mastodon_settings(mastodon_server, tmp_path)
    plain = await MastodonTarget(settings).send("no warning on this one")
    warned = await build_target("mastodon", settings, content_warning="cats, loudly").send("MEOW")
    by_default = await MastodonTarget(mastodon_settings(mastodon_server, tmp_path,
                                                        mimicbot_mastodon_cw="bot talk")).send("hello")
    statuses = {s["id"]: s for s in mastodon_server.statuses}
    assert statuses[plain]["spoiler_text"] == ""
    assert statuses[warned]["spoiler_text"] == "cats, loudly" and statuses[warned]["sensitive"]
    assert statuses[by_default]["spoiler_text"] == "bot talk"
    assert mastodon_server.calls("/api/v1/statuses")[1].body["spoiler_text"] == "cats, loudly"


async def test_the_content_warning_counts_towards_the_length(mastodon_server, tmp_path):
    target = MastodonTarget(mastodon_settings(mastodon_server, tmp_path), content_warning="w" * 20)
    assert target.length("x" * 480) == 500
    with pytest.raises(TargetError, match="too long for Mastodon: 501 characters \\(the content warning included"):
        await target.send("x" * 481)
    assert mastodon_server.calls("/api/v1/statuses") == []


def test_a_content_warning_is_for_mastodon_only(mastodon_server, tmp_path):
    settings = mastodon_settings(mastodon_server, tmp_path)
    with pytest.raises(ValidationError, match="content warning .* Mastodon only"):
        build_target("x", settings, content_warning="hmm")
    with pytest.raises(ValidationError, match="content warning is 500 characters"):
        MastodonTarget(settings, content_warning="w" * 500)


@pytest.mark.slow
def test_cli_post_takes_a_content_warning(mastodon_server, tmp_path, monkeypatch, trained_models):
    from bot.cli import _register, app

    models_dir, model_id = trained_models
    monkeypatch.chdir(tmp_path)
    for name, value in {"MIMICBOT_DATA_DIR": tmp_path / "data", "MIMICBOT_MODELS_DIR": models_dir,
                        "MASTODON_API_BASE": mastodon_server.url, "MASTODON_ACCESS_TOKEN": TOKEN,
                        "MIMICBOT_POST_CANDIDATES": 2}.items():
        monkeypatch.setenv(name, str(value))
    _register()
    result = CliRunner().invoke(app, ["post", model_id, "--to", "mastodon", "--cw", "bot talk", "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "sent"
    status = next(s for s in mastodon_server.statuses if s["id"] == outcome["remote_id"])
    assert status["spoiler_text"] == "bot talk"
    refused = CliRunner().invoke(app, ["post", model_id, "--to", "x", "--cw", "bot talk"])
    assert refused.exit_code == 2 and "Mastodon only" in refused.output
