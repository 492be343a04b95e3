"""`mimicbot fetch @handle` end to end: tweepy over HTTP to the fake X server, into the real store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bot.cli import _register, app
from bot.service import Mimicbot
from tests.fakes.x_server import settings_for


def test_fetch_caps_at_3200_then_asks_only_for_newer(x_server, tmp_path):
    x_server.add_user("bigmouth", name="Big Mouth")
    x_server.add_tweets("bigmouth", [f"tweet number {i} is plain enough" for i in range(3_400)])
    x_server.add_tweets("bigmouth", [f"RT @other: shared thing {i}" for i in range(100)], kind="retweet")
    bot = Mimicbot(settings_for(x_server, tmp_path))
    (first,) = bot.fetch_blocking(["@BigMouth"])
    assert (first.handle, first.display_name, first.downloaded, first.new) == ("bigmouth", "Big Mouth", 3_200, 3_200)
    assert first.retweets == 100
    (second,) = bot.fetch_blocking(["bigmouth"])
    assert second.new == 0 and second.downloaded == 3_200
    since = [r for r in x_server.requests_to(r"/2/users/\d+/tweets") if "since_id" in r.query]
    assert since, "the second fetch must ask only for tweets newer than the newest stored"
    x_server.add_tweets("bigmouth", ["a brand new tweet appears here", "and another one right after"])
    (third,) = bot.fetch_blocking(["bigmouth"])
    assert third.new == 2 and third.downloaded == 3_202
    bot.close()


def test_cli_unknown_user_exit_2_database_unchanged(x_server, tmp_path, monkeypatch):
    s = settings_for(x_server, tmp_path)
    for k, v in {"MIMICBOT_DATA_DIR": str(tmp_path), "TWITTER_API_BASE": x_server.url,
                 "TWITTER_BEARER_TOKEN": s.secret("twitter_bearer_token")}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    _register()
    runner = CliRunner()
    x_server.add_user("real_one")
    x_server.add_tweets("real_one", [f"hello there number {i}" for i in range(10)])
    ok = runner.invoke(app, ["fetch", "@real_one", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["downloaded"] == 10
    res = runner.invoke(app, ["fetch", "@real_one", "@nobody_here"])
    assert res.exit_code == 2
    assert "nobody_here" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    bot = Mimicbot(s)
    assert [a["handle"] for a in bot.accounts()] == ["real_one"]
    assert bot.store.query("select count(*) as n from fetch_runs")[0]["n"] == 1
    bot.close()


def test_a_reply_is_stored_with_the_post_it_answers(x_server, tmp_path):
    """X sends a reply's parent only when asked (expansions=referenced_tweets.id): it is stored whole (a long
    parent from its note_tweet) and trained on as the reply's context; a parent X cannot show leaves none."""
    x_server.add_user("ada", name="Ada")
    x_server.add_user("bob")
    long_question = "which lens would you pick " + " ".join(f"option{i}" for i in range(60))
    question = x_server.add_tweet("bob", long_question)
    x_server.add_tweet("ada", "@bob the fifty millimetre one, every time", in_reply_to=question)
    gone = x_server.add_tweet("bob", "a post that will be deleted")
    x_server.add_tweet("ada", "@bob agreed, a good point about the weather", in_reply_to=gone)
    x_server.tweets.remove(gone)
    bot = Mimicbot(settings_for(x_server, tmp_path))
    (report,) = bot.fetch_blocking(["@ada"])
    assert report.new == 2
    asked = x_server.requests_to(r"/2/users/\d+/tweets")[-1].query
    assert "referenced_tweets.id" in asked["expansions"].split(",")
    account_id = bot.store.db.execute("select id from accounts where handle = 'ada'").fetchone()[0]
    parents = bot.store.kept_parents(account_id)
    bot.close()
    assert list(parents.values()) == [long_question]  # whole, past X's 280 characters
    assert "fifty millimetre" in next(iter(parents))
