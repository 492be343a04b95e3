"""The cleaner follows the huggingtweets recipe; properties hold for any text."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.cleaning import EOT, MIN_CHARS, clean_post, clean_text, is_short, joined_chars, stats

URLISH = st.sampled_from(["http://t.co/x", "https://example.com/a?b=1", "HTTPS://X.Y", "http:", "https://"])
PIECES = st.one_of(
    st.text(max_size=12),
    URLISH,
    st.sampled_from(["&amp;", "&lt;", "&gt;", "&amp;lt;", "\n", "\t", "\r\n", " ", "@bob", "#tag", "RT @x:", "🤖"]),
)
TEXTS = st.lists(PIECES, max_size=12).map("".join)


@given(TEXTS)
def test_never_raises_no_url_no_newline(text):
    out = clean_text(text)
    assert "\n" not in out and "\t" not in out and "\r" not in out
    assert not re.search(r"https?:", out, re.IGNORECASE)
    assert out == out.strip()
    assert "  " not in out


@given(TEXTS)
def test_idempotent(text):
    once = clean_text(text)
    assert clean_text(once) == once


def test_recipe_steps_in_order():
    raw = "Loving  this &amp; that\n\nsee https://t.co/abc  now &lt;3 #fun @pal"
    assert clean_text(raw) == "Loving this & that see now <3 #fun @pal"


def test_url_removed_with_surrounding_space():
    assert clean_text("a http://x.y b") == "a b"
    assert clean_text("https://only.link") == ""


def test_short_counts_plain_words_only():
    assert is_short("@a @b #c http://d")  # no plain word
    assert is_short("two words")
    assert not is_short("three plain words")
    assert is_short("hi @Bob #Tag HTTPx")  # 'HTTPx' contains http (case-insensitive)


def test_retweets_are_dropped_before_cleaning_and_counted():
    rt = clean_post("RT @someone: a b c d")
    assert rt.retweet and not rt.kept
    flagged = clean_post("looks original enough here", retweet_flag=True)
    assert flagged.retweet
    lone_link = clean_post("https://t.co/x")
    assert lone_link.short and not lone_link.retweet


def test_stats_match_the_card_table():
    posts = [clean_post(t) for t in ["RT @a: x y z", "ok", "this one is kept", "and so is this one"]]
    s = stats(posts)
    assert (s.downloaded, s.retweets, s.short, s.kept) == (4, 1, 1, 2)
    assert s.chars == len(EOT.join(["this one is kept", "and so is this one"]))


def test_thresholds_messages():
    s = stats([clean_post("word " * 10)] * 10)
    assert s.chars < MIN_CHARS and not s.enough
    assert s.warning == f"not enough tweets: {s.chars:,} characters kept, 6,000 needed"


def test_joined_chars_empty():
    assert joined_chars([]) == 0
