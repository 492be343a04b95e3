"""One grammar for naming an account (bot/naming.py), and the three places that read it agreeing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ValidationError
from bot.naming import AccountSpec, file_handle, parse_spec

GOOD = [
    # spec                                  network     handle                  account_id            path
    ("@jack", "x", "jack", None, None),
    ("jack", "x", "jack", None, None),
    ("  @Ada_Bytes  ", "x", "ada_bytes", None, None),
    ("a" * 15, "x", "a" * 15, None, None),
    ("imported_handle_of_30_chars_xx", "x", "imported_handle_of_30_chars_xx", None, None),
    ("bsky:alice.bsky.social", "bsky", "alice.bsky.social", None, None),
    ("bsky:@Alice.Bsky.Social", "bsky", "alice.bsky.social", None, None),
    ("BSKY:alice.example.com", "bsky", "alice.example.com", None, None),
    ("mastodon:@alice@mastodon.social", "mastodon", "alice@mastodon.social", None, None),
    ("mastodon:Alice@Example.Social", "mastodon", "alice@example.social", None, None),
    ("Mastodon:@a.b-c@host.example", "mastodon", "a.b-c@host.example", None, None),
    ("discord:123456789012345678", "discord", None, "123456789012345678", None),
    ("discord:<@123456789012345678>", "discord", None, "123456789012345678", None),
    ("discord:<@!123456789012345678>", "discord", None, "123456789012345678", None),
    ("archive.zip", "file", None, None, "archive.zip"),
    ("./data/tweets.js", "file", None, None, "data/tweets.js"),
    ("posts.TXT", "file", None, None, "posts.TXT"),
    ("dir/posts.jsonl", "file", None, None, "dir/posts.jsonl"),
    ("C:\\exports\\archive.zip", "file", None, None, "C:\\exports\\archive.zip"),
]

BAD = [
    ("", "name an account"),
    ("   ", "name an account"),
    ("@", "neither an X handle"),
    ("a" * 31, "neither an X handle"),
    ("jack!", "neither an X handle"),
    ("@ja ck", "neither an X handle"),
    ("@@jack", "neither an X handle"),
    ("bsky:", "is not a Bluesky handle"),
    ("bsky:../etc", "is not a Bluesky handle"),
    ("bsky:alice", "is not a Bluesky handle"),
    ("bsky:" + "a" * 250 + ".com", "is not a Bluesky handle"),
    ("mastodon:alice", "is not a Mastodon account"),
    ("mastodon:@alice@", "is not a Mastodon account"),
    ("mastodon:@@alice@host.social", "is not a Mastodon account"),
    ("discord:12", "is not a Discord user"),
    ("discord:alice", "is not a Discord user"),
    ("https://x.com/jack", "is a URL"),
    ("ftp://host/file.zip", "is a URL"),
]


@pytest.mark.parametrize("spec, network, handle, account_id, path", GOOD)
def test_specs_parse_to_one_account(spec, network, handle, account_id, path):
    parsed = parse_spec(spec)
    assert parsed == AccountSpec(network, handle, account_id, Path(path) if path else None)
    assert parse_spec(parsed.spec) == parsed  # the canonical form reads back the same


@pytest.mark.parametrize("spec, message", BAD)
def test_bad_specs_say_which_form_was_meant(spec, message):
    with pytest.raises(ValidationError, match=message):
        parse_spec(spec)


def test_without_paths_a_path_or_url_is_not_a_handle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weird name").mkdir()
    for spec in ("archive.zip", "../data/mimicbot.db", "/etc/passwd", "https://x.com/ada", "weird name"):
        with pytest.raises(ValidationError, match="is not an account handle"):
            parse_spec(spec, allow_paths=False)
    assert parse_spec("weird name").path == Path("weird name")  # an existing non-handle is a path for the CLI
    (tmp_path / "data").mkdir()
    assert parse_spec("data") == AccountSpec("x", "data")  # a handle stays a handle even if a folder has its name


def test_file_handles():
    assert file_handle("@Carol") == "carol"
    for bad in ("a b", "../x", "", "a" * 31, "名前"):
        with pytest.raises(ValidationError, match="is not a handle"):
            file_handle(bad)


def test_the_three_readers_agree(settings, tmp_path):
    """open_source, the service and the Discord converter read one spec the same way."""
    from bot.discord.converters import parse_handle, parse_handles
    from bot.service import Mimicbot
    from bot.sources import open_source
    from bot.sources.bluesky import BlueskySource
    from bot.sources.mastodon import MastodonSource
    from bot.sources.x_api import XApiSource

    for spec, kind, handle in (("@Ada_Bytes", XApiSource, "ada_bytes"),
                               ("bsky:@Ada.bsky.social", BlueskySource, "ada.bsky.social"),
                               ("mastodon:Ada@Example.Social", MastodonSource, "ada@example.social")):
        source = open_source(spec, settings)
        assert isinstance(source, kind) and source.handle == handle
        assert parse_handle(spec) == handle
        assert parse_handles(spec) == [parse_spec(spec).spec]
    # a Discord user names a person, not posts: refused by each reader with its own reason
    with pytest.raises(ValidationError, match="not a post source"):
        open_source("discord:123456789012345678", settings)
    with pytest.raises(ValidationError, match="is a Discord user"):
        parse_handles("discord:123456789012345678")
    # a 16-30 character handle names an imported account, never an X fetch
    with pytest.raises(ValidationError, match="longer than X's 15"):
        open_source("imported_handle_of_30_chars_xx", settings)
    txt = tmp_path / "p.txt"
    txt.write_text("\n".join(f"post number {i} has a handful of ordinary words in it" for i in range(200)))
    with Mimicbot(settings) as bot:
        bot.fetch_blocking([str(txt)], handle="imported_handle_of_30_chars_xx")
        assert bot._stored_account("@Imported_Handle_Of_30_Chars_XX")["handle"] == "imported_handle_of_30_chars_xx"
        assert parse_handles("imported_handle_of_30_chars_xx") == ["@imported_handle_of_30_chars_xx"]
        with pytest.raises(ValidationError, match="is not a Mastodon account"):
            bot.fetch_blocking(["mastodon:nobody"])
