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


# -- long posts (note-tweet.js) and edited posts ---------------------------------------------------------------

LONG = ("Every spring I promise the tomatoes a better trellis and every spring I build the same wobbly thing out of "
        "garden canes and string, and then I stand there in the rain admiring it as if it were a cathedral. This "
        "year the trellis has a name, a budget and a plan, and the plan is mostly to keep the snails away from it. "
        "Wish me luck & send string.")
NOTE_TIME = ("Sat Dec 06 18:20:30 +0000 2025", "2025-12-06T18:20:30.000Z")


def _truncated(text: str) -> str:
    """How tweets.js shows a long post: about 275 characters, an ellipsis, the link to the whole post."""
    return text[:270].rstrip().replace("&", "&amp;") + "… https://t.co/AbCdEf123"


def _note(text: str, created: str = NOTE_TIME[1], **extra) -> dict:
    return {"noteTweet": {"noteTweetId": "9990001", "createdAt": created, "updatedAt": created,
                          "lifecycle": {"value": "1", "name": "Active"},
                          "core": {"text": text, "urls": [], "mentions": [], "hashtags": [], **extra.pop("core", {})},
                          **extra}}


def _edited(i: int, versions: list[int], text: str, first: bool) -> dict:
    ids = [str(1000 + v) for v in versions]
    info = ({"initial": {"editTweetIds": ids, "editableUntil": "2025-12-06T19:20:30.000Z", "editsRemaining": "4"}}
            if first else {"edit": {"initialTweetId": ids[0], "editControlInitial": {"editTweetIds": ids}}})
    return tweet(i, text, edit_info=info)


def _long_and_edited_archive(tmp_path, notes: list[dict]):
    items = [
        tweet(1, _truncated(LONG), created_at=NOTE_TIME[0]),
        tweet(2, "a plain post about the greenhouse door that sticks every single morning"),
        _edited(3, [3, 4, 5], "first draft of a post about compost that had a typo in it", first=True),
        _edited(4, [3, 4, 5], "second draft of a post about compost that still had a typo", first=False),
        _edited(5, [3, 4, 5], "final version of a post about compost with no typos left", first=False),
    ]
    return write_archive_zip(tmp_path / "long.zip", {
        "data/account.js": account_js("grower", "Grower"),
        "data/tweets.js": ytd("tweets", items),
        "data/note-tweet.js": ytd("note_tweet", notes),
    })


def test_long_posts_are_read_whole_and_edits_count_once(bot, tmp_path):
    z = _long_and_edited_archive(tmp_path, [_note(LONG)])
    source = bot.source(str(z))
    result = source.read()
    texts = {p.id: p.text for p in result.posts}
    assert texts["1001"] == LONG  # the note's whole text, not the 270 characters and the link
    assert sorted(texts) == ["1001", "1002", "1005"]  # the edit chain 1003 → 1004 → 1005 keeps its last version
    assert texts["1005"].startswith("final version")
    assert (source.notes_joined, source.edits_dropped) == (1, 2)
    (rep,) = bot.fetch_blocking([str(z)])
    assert rep.downloaded == 3 and rep.kept == 3
    stored = {r["post_id"]: r["clean_text"] for r in bot.store.query("select post_id, clean_text from posts")}
    assert stored["1001"].endswith("Wish me luck & send string.")  # statistics and cleaning see the whole post
    from bot.cleaning import joined_chars

    assert rep.chars == joined_chars(stored.values()) > len(LONG)


def test_a_note_naming_its_post_joins_by_id_even_at_another_time(bot, tmp_path):
    z = _long_and_edited_archive(tmp_path, [_note(LONG, "2020-01-01T00:00:00.000Z", tweetId="1001")])
    assert {p.id: p.text for p in bot.source(str(z)).read().posts}["1001"] == LONG


def test_a_note_joins_only_a_truncated_post_of_its_second(bot, tmp_path):
    other_second = _note(LONG, "2025-12-06T18:20:40.000Z")  # ten seconds off: another post's note
    z = _long_and_edited_archive(tmp_path, [other_second])
    source = bot.source(str(z))
    assert {p.id: p.text for p in source.read().posts}["1001"] == _truncated(LONG)
    assert source.notes_joined == 0
    # a post that is not cut (no ellipsis) is never replaced by a longer note that merely starts like it
    items = [tweet(1, "Every spring I promise", created_at=NOTE_TIME[0])]
    z2 = write_archive_zip(tmp_path / "short.zip", {"data/account.js": account_js("grower", "Grower"),
                                                    "data/tweets.js": ytd("tweets", items),
                                                    "data/note-tweet.js": ytd("note_tweet", [_note(LONG)])})
    assert [p.text for p in bot.source(str(z2)).read().posts] == ["Every spring I promise"]


# -- limits ----------------------------------------------------------------------------------------------------


def test_an_import_reads_at_most_its_budget_and_member_count(tmp_path):
    from bot.errors import MalformedImport
    from bot.sources.files import ArchiveSource, ImportLimits, JsonlFileSource, TextFileSource

    z = write_archive_zip(tmp_path / "big.zip", {"data/account.js": account_js("bob", "Bob"),
                                                 "data/tweets.js": ytd("tweets", many_posts(20_000))})
    assert len(ArchiveSource(z).read().posts) == 20_000  # about 2.5 MB: inside the default limits
    with pytest.raises(MalformedImport, match=r"data/tweets.js declares 3 MB of text, more than an import reads \(1 MB in all"):
        ArchiveSource(z, limits=ImportLimits(max_bytes=1 << 20)).read()
    with pytest.raises(MalformedImport, match="2 entries, over the 1 an import reads"):
        ArchiveSource(z, limits=ImportLimits(max_members=1)).read()
    txt = tmp_path / "p.txt"
    txt.write_text("short line\n" + "word " * 30 + "\n")
    with pytest.raises(MalformedImport, match="line 2: a post of 150 characters; at most 100"):
        TextFileSource(txt, "bob", ImportLimits(max_post_chars=100)).read()
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"text": "x" * 2000}) + "\n")
    with pytest.raises(MalformedImport, match=r"^p.jsonl holds more text than an import reads \(1,000 bytes in all"):
        JsonlFileSource(jl, "bob", ImportLimits(max_bytes=1000)).read()


def test_a_pipe_is_refused_not_waited_on(bot, tmp_path):
    import os

    from bot.errors import MalformedImport

    fifo = tmp_path / "posts.txt"
    os.mkfifo(fifo)
    with pytest.raises(MalformedImport, match="not a regular file"):
        bot.fetch_blocking([str(fifo)], handle="bob")


def test_a_malformed_import_is_one_line_and_exit_2_through_the_cli(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    bad = write_archive_zip(tmp_path / "evil.zip", {"data/account.js": account_js("eve", "Eve"),
                                                    "../../data/tweets.js": ytd("tweets", many_posts(3))})
    res = _cli("fetch", str(bad))
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "points outside the archive" in res.stderr
    assert "Traceback" not in res.output


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
