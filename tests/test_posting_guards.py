"""Guards before anything is posted: X's weighted length, fitting without cutting words, inert @handles,
the blocklist, the anti-copy rule, the repeat window and the disclosure."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.generation.anticopy import build_index
from bot.posting.base import PostRejected
from bot.posting.guards import GuardConfig, Guards
from bot.posting.ledger import Ledger
from bot.posting.poster import Poster
from bot.posting.text import ELLIPSIS, X_MAX_LENGTH, fit, neutralise_mentions, x_length
from bot.posting.x import XTarget
from bot.store import Store


def x_target(settings: Settings) -> XTarget:
    return XTarget(settings)


# -- X's weighted length ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("hello world", 11),
    ("café", 4),  # Latin-1: weight 1
    ("日本語", 6),  # CJK: weight 2 each
    ("こんにちは", 10),
    ("🤖", 2),
    ("👨‍👩‍👧‍👦", 2),  # a ZWJ family is one emoji
    ("👍🏽", 2),  # with a skin tone
    ("🇫🇷", 2),  # a flag: two regional indicators, one emoji
    ("see https://example.com/a/very/long/path/that/goes/on/and/on?x=1", 4 + 23),
    ("www.example.org and example.com", 23 + 5 + 23),
    ("“quoted” — dash…", 16),  # general punctuation U+2010-U+201F and U+2026 are light... except U+2026
    ("e\u0301", 1),  # NFC: e + combining acute becomes é
])
def test_x_length_counts_like_x(text, expected):
    if "…" in text:  # U+2026 lies outside X's light ranges (U+2010-U+201F): it weighs 2
        expected += 1
    assert x_length(text) == expected


def test_fit_drops_whole_words_and_keeps_the_suffix():
    words = " ".join(f"word{i:03d}" for i in range(60))  # 60 × 7 + 59 spaces = 479
    fitted = fit(words, X_MAX_LENGTH, x_length, suffix=" 🤖")
    assert x_length(fitted) <= X_MAX_LENGTH
    assert fitted.endswith(ELLIPSIS + " 🤖")
    kept = fitted.removesuffix(ELLIPSIS + " 🤖").split(" ")
    assert kept == [f"word{i:03d}" for i in range(len(kept))]  # every kept word whole, in order
    assert len(kept) > 30
    # one more word would not have fitted
    longer = " ".join(f"word{i:03d}" for i in range(len(kept) + 1)) + ELLIPSIS + " 🤖"
    assert x_length(longer) > X_MAX_LENGTH


def test_fit_counts_cjk_double():
    text = " ".join(["日本語"] * 60)  # 60 × 6 + 59 = 419 weighted, 239 code points
    assert len(text) < X_MAX_LENGTH < x_length(text)
    fitted = fit(text, X_MAX_LENGTH, x_length)
    assert x_length(fitted) <= X_MAX_LENGTH and "日本" not in fitted.replace("日本語", "")


def test_fit_refuses_a_single_giant_word():
    with pytest.raises(PostRejected, match="first word alone"):
        fit("a" * 300 + " b", X_MAX_LENGTH, x_length)


def test_short_text_is_left_alone():
    assert fit("  hello   there ", 280, x_length, suffix=" 🤖") == "hello there 🤖"


def test_mentions_are_made_inert_but_emails_are_not():
    out = neutralise_mentions("hi @jack and @Some_One, mail me@example.com; <@123456> @everyone")
    assert "@jack" not in out and "@\u200bjack" in out
    assert "@\u200bSome_One" in out
    assert "me@example.com" in out
    assert "<@\u200b123456>" in out and "@\u200beveryone" in out
    assert out.replace("\u200b", "") == "hi @jack and @Some_One, mail me@example.com; <@123456> @everyone"


# -- the guard chain ---------------------------------------------------------------------------------------


def test_blocklist_matches_whole_words_in_any_case(settings):
    guards = Guards(GuardConfig(blocklist=("darn", "bad word")))
    target = x_target(settings)
    assert "blocklisted 'DARN'" in guards.reason("well DARN it")
    assert "blocklisted 'bad word'" in guards.reason("a bad \n word here")
    assert guards.reason("darning socks is fine") is None
    with pytest.raises(PostRejected, match="blocklisted"):
        guards.prepare("oh darn", target)


def test_copy_of_a_training_post_is_refused(settings):
    training = ["my dream is a quiet kitchen full of fresh bread and strong coffee every morning"]
    guards = Guards(GuardConfig(), copy_check=build_index(training).check)
    assert guards.reason(training[0]).startswith("copies a training post: exact copy")
    assert "copies a training post" in guards.reason(training[0].upper() + "!!")
    assert guards.reason("my dream is a loud garage full of old bikes") is None


def test_repeat_of_a_recent_post_is_refused_but_older_ones_are_not(settings):
    store = Store(settings.db_path)
    ledger = Ledger(store)
    old = "the first thing I ever posted about the moon and its many quiet craters"
    ledger.open(model_id="m", target="x", text=old + " 🤖")
    for i in range(3):
        ledger.open(model_id="m", target="x", text=f"post {i} about the garden and how the tomatoes are doing 🤖")
    poster = Poster(store, Settings(**{**settings.model_dump(), "mimicbot_repeat_window": 3}, _env_file=None),
                    generate=None)
    guards = poster.guards("m")
    assert "repeats one of the last 3 posts" in guards.reason("post 1 about the garden and how the tomatoes are doing")
    # a near-repeat (one word changed out of many) is a repeat too
    assert "repeats" in guards.reason("post 2 about the garden and how the tomatoes are growing")
    assert guards.reason(old) is None  # outside the window of 3
    # with a wider window the old one counts
    wide = Poster(store, settings, generate=None).guards("m")
    assert "repeats" in wide.reason(old)
    store.close()


def test_prepare_neutralises_adds_disclosure_and_fits(settings):
    guards = Guards(GuardConfig(disclosure=" (automated)"))
    text = guards.prepare("thanks @jack " + "very " * 80 + "much", x_target(settings))
    assert "@jack" not in text and "@\u200bjack" in text
    assert text.endswith(ELLIPSIS + " (automated)")
    assert x_length(text) <= 280


def test_first_acceptable_reports_every_reason(settings):
    guards = Guards(GuardConfig(blocklist=("nope",)), copy_check=build_index(["copied words here"]).check)
    target = x_target(settings)
    candidate, text = guards.first_acceptable(["nope", "", "a fine new post"], target)
    assert candidate == "a fine new post" and text == "a fine new post 🤖"
    with pytest.raises(PostRejected) as e:
        guards.first_acceptable(["nope", "", "copied words here"], target)
    assert len(e.value.reasons) == 3
    assert "3 tried" in str(e.value) and "empty" in str(e.value) and "exact copy" in str(e.value)


def test_guard_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIMICBOT_BLOCKLIST", "foo, bar baz ,")
    monkeypatch.setenv("MIMICBOT_DISCLOSURE", " #bot")
    monkeypatch.setenv("MIMICBOT_REPEAT_WINDOW", "7")
    config = GuardConfig.from_settings(Settings())
    assert config == GuardConfig(disclosure=" #bot", blocklist=("foo", "bar baz"), repeat_window=7)
