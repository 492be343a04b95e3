"""Archive, text and JSONL imports through the real store and the CLI."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from bot.cli import app, main  # noqa: F401
from bot.errors import SourceError, ValidationError
from bot.samples.generate import sample_path
from bot.service import Mimicbot
from tests.helpers import account_js, many_posts, tweet, write_archive_zip, ytd

runner = CliRunner()


def _cli(*args):
    from bot.cli import _register

    _register()
    return runner.invoke(app, list(args))


@pytest.fixture
def bot(settings):
    b = Mimicbot(settings)
    yield b
    b.close()


def test_sample_archive_stats(bot):
    (r,) = bot.fetch_blocking([str(sample_path("ada_bytes"))])
    assert (r.handle, r.display_name, r.network) == ("ada_bytes", "Ada Bytes", "x")
    assert r.downloaded == 400 == r.new
    assert r.retweets + r.short + r.kept == r.downloaded
    assert r.chars >= 6000
    again = bot.fetch_blocking([str(sample_path("ada_bytes"))])[0]
    assert again.new == 0 and again.downloaded == 400


def test_zip_folder_and_bare_js_agree(bot, tmp_path):
    items = [tweet(1, "RT @x: retweeted thing here"), tweet(2, "hello &amp; welcome to my page"), tweet(3, "ok")]
    files = {"data/account.js": account_js("Alice", "Alice A."), "data/tweets.js": ytd("tweets", items)}
    z = write_archive_zip(tmp_path / "a.zip", files)
    folder = tmp_path / "unpacked"
    (folder / "data").mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    bare = tmp_path / "bare" / "tweet.js"
    bare.parent.mkdir()
    bare.write_text(ytd("tweet", items))
    for src, handle in ((z, None), (folder, None), (bare, "alice")):
        r = bot.source(str(src), handle).read()
        assert r.account.handle == "alice"
        assert [p.is_retweet for p in r.posts] == [True, False, False]
    (rep,) = bot.fetch_blocking([str(z)])
    assert (rep.downloaded, rep.retweets, rep.short, rep.kept) == (3, 1, 1, 1)
    stored = bot.store.query("select clean_text from posts where not is_retweet and not is_short")
    assert stored == [{"clean_text": "hello & welcome to my page"}]


def test_multipart_archive(bot, tmp_path):
    z = write_archive_zip(tmp_path / "big.zip", {
        "data/account.js": account_js("bob", "Bob"),
        "data/tweets.js": ytd("tweets", many_posts(5)),
        "data/tweets-part1.js": ytd("tweets_part1", many_posts(5, start=5)),
        "data/tweets-part2.js": ytd("tweets_part2", many_posts(3, start=10)),
    })
    (r,) = bot.fetch_blocking([str(z)])
    assert r.downloaded == 13


def _snapshot(settings):
    con = sqlite3.connect(settings.db_path)
    try:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("accounts", "posts", "fetch_runs")}
    finally:
        con.close()


@pytest.mark.parametrize(
    "files, message",
    [
        ({"data/tweets.js": "window.YTD.tweets.part0 = [ {\"tweet\": "}, "not valid JSON"),
        ({"data/tweets.js": "window.YTD.tweets.part0 = {}"}, "no JSON array"),
        ({"data/tweets.js": ytd("tweets", [{"tweet": {"id_str": "1"}}])}, "not a tweet with full_text"),
        ({"data/like.js": ytd("like", [])}, "has no data/tweets.js"),
    ],
)
def test_malformed_archive_leaves_database_unchanged(bot, settings, tmp_path, files, message):
    bot.fetch_blocking([str(sample_path("grace_gardens"))])
    before = _snapshot(settings)
    bad = write_archive_zip(tmp_path / "bad.zip", {"data/account.js": account_js("eve", "Eve"), **files})
    with pytest.raises(SourceError, match=message):
        # the good source first: nothing may be written when a later one fails
        bot.fetch_blocking([str(sample_path("ada_bytes")), str(bad)])
    assert _snapshot(settings) == before


def test_not_a_zip(bot, tmp_path):
    p = tmp_path / "fake.zip"
    p.write_text("hello")
    with pytest.raises(SourceError, match="not a zip file"):
        bot.fetch_blocking([str(p)])


def test_txt_and_jsonl(bot, tmp_path):
    txt = tmp_path / "posts.txt"
    txt.write_text("first post has enough words\n\nsecond post also has words\nfirst post has enough words\n")
    (r,) = bot.fetch_blocking([str(txt)], handle="@Carol")
    assert (r.handle, r.network, r.downloaded, r.kept) == ("carol", "file", 3, 3)
    assert bot.fetch_blocking([str(txt)], handle="carol")[0].new == 0
    jl = tmp_path / "posts.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t}) for t in ["one two three four", "RT @z: nope", "hi"]))
    (r,) = bot.fetch_blocking([str(jl)], handle="dave")
    assert (r.downloaded, r.retweets, r.short, r.kept) == (3, 1, 1, 1)


def test_txt_needs_handle_and_jsonl_errors(bot, tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a b c\n")
    with pytest.raises(ValidationError, match="--handle"):
        bot.fetch_blocking([str(txt)])
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"text": "fine words here"}\n{"txt": 1}\n')
    with pytest.raises(SourceError, match="line 2"):
        bot.fetch_blocking([str(jl)], handle="x")


def test_cli_fetch_table_json_and_errors(settings, monkeypatch):
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    res = _cli("fetch", str(sample_path("ada_bytes")), str(sample_path("grace_gardens")))
    assert res.exit_code == 0, res.output
    for label in ("Tweets downloaded", "Retweets", "Short tweets", "Tweets kept", "Ada Bytes", "Grace Gardens"):
        assert label in res.output
    res = _cli("fetch", str(sample_path("ada_bytes")), "--json")
    data = json.loads(res.stdout)
    assert data[0]["handle"] == "ada_bytes" and data[0]["new"] == 0 and data[0]["downloaded"] == 400
    assert set(data[0]) == {"handle", "display_name", "source", "downloaded", "retweets", "short", "kept", "chars", "new"}
    res = _cli("fetch", "missing.zip")
    assert res.exit_code == 2 and "no such file" in res.stderr
    res = _cli("accounts", "list", "--json")
    assert [a["handle"] for a in json.loads(res.stdout)] == ["ada_bytes", "grace_gardens"]


def test_a_handle_named_like_a_folder_stays_a_handle(settings, tmp_path):
    from bot.sources import open_source
    from bot.sources.x_api import XApiSource

    (tmp_path / "data").mkdir(exist_ok=True)  # cwd is tmp_path (the settings fixture)
    assert isinstance(open_source("data", settings), XApiSource)
    assert not isinstance(open_source("./data", settings), XApiSource)
    (tmp_path / "my-archive").mkdir()
    assert not isinstance(open_source("my-archive", settings), XApiSource)


def test_replies_keep_the_message_they_answer_when_the_source_has_it(bot, tmp_path):
    items = [tweet(1, "what should I plant first this spring, friends?"),
             tweet(2, "@alice plant the tomatoes first &amp; the basil after", in_reply_to_status_id_str="1001"),
             tweet(3, "@bob an answer to a post that is not in the archive", in_reply_to_status_id_str="77")]
    z = write_archive_zip(tmp_path / "a.zip", {"data/account.js": account_js("alice", "Alice"),
                                               "data/tweets.js": ytd("tweets", items)})
    posts = bot.source(str(z)).read().posts
    assert [p.parent_text for p in posts] == [None, "what should I plant first this spring, friends?", None]
    assert [p.reply_to_id for p in posts] == [None, "1001", "77"]
    lines = [{"text": "a plain post with enough words"},
             {"text": "@carol yes I would love some cuttings", "parent": "@alice want some &amp; rose cuttings?"}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines))
    bot.fetch_blocking([str(z)])
    bot.fetch_blocking([str(jsonl)], handle="carol")
    alice = bot.store.get_account("x", "alice")["id"]
    carol = bot.store.get_account("file", "carol")["id"]
    # the parent as the model reads it: cleaned, its opening @mentions dropped
    assert bot.store.kept_parents(alice) == {"@alice plant the tomatoes first & the basil after":
                                             "what should I plant first this spring, friends?"}
    assert bot.store.kept_parents(carol) == {"@carol yes I would love some cuttings": "want some & rose cuttings?"}
