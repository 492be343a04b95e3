"""The cleaner follows the huggingtweets recipe; properties hold for any text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cleaning import EOT, MIN_CHARS, clean_post, clean_text, is_short, joined_chars, stats

URLISH = st.sampled_from(["http://t.co/x", "https://example.com/a?b=1", "HTTPS://X.Y", "http:", "https://",
                          "Great:https://t.co/x", "xhttp://y"])
PIECES = st.one_of(
    st.text(max_size=12),
    URLISH,
    st.sampled_from(["&amp;", "&lt;", "&gt;", "&amp;lt;", "&amp;amp;", "&", "amp;", "\n", "\t", "\r\n", " ", "  ",
                     "\u00a0", "\u2028", "@bob", "#tag", "RT @x:", "🤖"]),
)
TEXTS = st.lists(PIECES, max_size=12).map("".join)


def recipe_clean(tweet: str) -> str:
    """The recipe's cleaning, transcribed step by step from ../shared/reference/huggingtweets-recipe.md
    (a second, independent writing of it, for the equality test)."""
    tweet = tweet.replace("&amp;", "&")
    tweet = tweet.replace("&lt;", "<")
    tweet = tweet.replace("&gt;", ">")
    for w in ["http:", "https:"]:
        tweet = re.sub(f" {w}\\S+", "", tweet)
        tweet = re.sub(f"{w}\\S+ ", "", tweet)
        tweet = re.sub(f"\n{w}\\S+ ", "", tweet)
        tweet = re.sub(f"\n{w}\\S+", "", tweet)
        tweet = re.sub(f"{w}\\S+", "", tweet)
    tweet = re.sub(" +", " ", tweet)
    tweet = " ".join(tweet.split())
    return tweet.strip()


@given(TEXTS)
def test_byte_for_byte_the_recipe(text):
    assert clean_text(text) == recipe_clean(text)


@given(TEXTS)
def test_never_raises_no_newline_no_lower_case_link(text):
    out = clean_text(text)
    assert "\n" not in out and "\t" not in out and "\r" not in out
    assert not re.search(r"https?:\S", out)  # lower-case links with something after the colon all go
    assert out == out.strip()
    assert "  " not in out


@pytest.mark.parametrize("raw, clean", [
    # a link glued to the word before it and followed by a space goes with that space
    ("Great:https://t.co/x stuff", "Great:stuff"),
    ("see:http://a.b/c and more", "see:and more"),
    # a bare scheme is kept
    ("what is http: anyway", "what is http: anyway"),
    ("https:", "https:"),
    # upper-case schemes are kept: the patterns are case-sensitive
    ("look HTTP://T.CO/X now", "look HTTP://T.CO/X now"),
    ("HTTPS://x.y", "HTTPS://x.y"),
    # three entities, each unescaped once, in the order &amp; &lt; &gt;
    ("fish &amp;amp; chips", "fish &amp; chips"),
    ("a &amp;lt;3 b", "a <3 b"),
    ("a &amp;gt; b", "a > b"),
    ("&lt;&amp;gt;", "<>"),  # &amp; first, so the &gt; it makes is unescaped too
])
def test_the_four_quirks_of_the_recipe(raw, clean):
    assert clean_text(raw) == clean == recipe_clean(raw)


def test_not_idempotent_like_the_recipe():
    once = clean_text("fish &amp;amp;amp; chips")
    assert once == "fish &amp;amp; chips"
    assert clean_text(once) == "fish &amp; chips"
    assert clean_text(clean_text(once)) == "fish & chips"


def test_recipe_steps_in_order():
    raw = "Loving  this &amp; that\n\nsee https://t.co/abc  now &lt;3 #fun @pal"
    assert clean_text(raw) == "Loving this & that see now <3 #fun @pal"


def test_url_removed_with_surrounding_space():
    assert clean_text("a http://x.y b") == "a b"
    assert clean_text("https://only.link") == ""
    assert clean_text("first line\nhttps://t.co/x\nnext") == "first line next"


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
