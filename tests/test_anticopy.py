"""The anti-copy rule: exact and near copies are refused, recombinations and fresh text pass."""

from __future__ import annotations

import json

import pytest

from bot.errors import MimicbotError
from bot.generation.anticopy import (MAX_COVER, MIN_COVER, VERSION, WINDOW, AntiCopyIndex, build_index, cover_limit,
                                     normalise)
from tests.kit.models import v1_index_dict

TRAINING = [
    "Hot take: a compiler that explains itself and I am not even sorry.",
    "Reminder: coffee strong enough to fix flaky tests send help and coffee.",
    "Every morning the build finishing before my coffee does is that too much to ask?",
    "@grace_gardens Today I learned a regex I can still read tomorrow https://t.co/abc #python",
    "ship it now",
]


@pytest.fixture(scope="module")
def index() -> AntiCopyIndex:
    return build_index(TRAINING)


def test_normalise_drops_case_punctuation_mentions_urls():
    assert normalise("@bob HELLO,   world!! https://x.y/z  don't #Stop") == ["hello", "world", "dont", "stop"]


def test_exact_copy_after_normalisation_is_refused(index):
    assert index.check("hot take -- A compiler that explains itself, and I am NOT even sorry") == \
        "exact copy of a training post"
    # a mention and a URL around a copy do not make it new
    assert index.check("Today I learned a regex I can still read tomorrow #python @ada") == \
        "exact copy of a training post"
    # short posts are protected by the exact rule even though they are shorter than a run
    assert index.check("Ship it now!") == "exact copy of a training post"


def test_a_copy_with_a_word_tacked_on_or_swapped_at_an_edge_is_refused(index):
    # the copy with one word tacked on: 13 of 14 words covered, limit ceil(0.9 * 14) = 13
    reason = index.check("Hot take: a compiler that explains itself and I am not even sorry. Really")
    assert reason == f"reproduces 13 of its 14 words from one training post (runs of {WINDOW}+ words; limit 13)"
    # the copy with its opener swapped for one word: 10 of 11 words, limit 10
    assert index.check("Honestly, coffee strong enough to fix flaky tests send help and coffee.") is not None


LONG = ("I finally sat down this weekend and rewrote the whole parser from scratch because the old one kept "
        "eating my comments every time")  # 23 words


@pytest.mark.parametrize("position", [0, 5, 11, 17, 22])
def test_a_long_post_with_one_word_swapped_anywhere_is_refused(position):
    idx = build_index([LONG, *TRAINING])
    words = LONG.split()
    assert len(words) == 23
    words[position] = "zebra"
    assert idx.check(" ".join(words)) is not None  # position 11 passed the longest-run rule (run of 11 < 16)


def test_two_words_changed_are_refused_too():
    idx = build_index([LONG])
    words = LONG.split()
    words[7], words[15] = "zebra", "yak"  # runs of 7, 7 and 7 words: none of 8, all of 5
    assert idx.coverage(normalise(" ".join(words))) == 21
    assert idx.check(" ".join(words)) is not None


def test_recombination_of_two_posts_passes(index):
    # first half of post 0, second half of post 1: runs of 7 and 4 words with different posts
    text = "Hot take: a compiler that explains itself send help and coffee."
    assert index.coverage(normalise(text)) == 7
    assert index.check(text) is None
    # opener + subject of one post with the tail of another: 8 of 14 words from post 0, under the limit of 13
    text = "Hot take: a compiler that explains itself and is that too much to ask?"
    assert index.coverage(normalise(text)) == 8
    assert index.check(text) is None


def test_coverage_is_counted_within_one_post_only():
    # runs matching post A and runs matching only post B must not add up
    idx = build_index(["the quick brown fox jumps over the lazy dog today",
                       "quick brown fox jumps over the lazy dog again and again"])
    text = "the quick brown fox jumps over the lazy dog again zebra"  # 11 words: limit 10
    assert idx.coverage(normalise(text)) == 9  # 'the ... dog' with A, 'quick ... again' with B
    assert idx.check(text) is None
    assert idx.check("the quick brown fox jumps over the lazy dog today zebra") is not None  # 10 with A


def test_fresh_text_passes(index):
    assert index.check("My dream is a quiet afternoon with a good book and no meetings at all") is None
    assert index.check("") is None


def test_threshold_edge():
    assert cover_limit(5) == MIN_COVER and cover_limit(8) == MIN_COVER
    assert cover_limit(10) == 9 and cover_limit(11) == 10 and cover_limit(13) == 12
    assert cover_limit(40) == MAX_COVER
    post = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"
    idx = build_index([post])
    words = post.split()
    # 10-word text: 9 covered words is the limit
    assert idx.check(" ".join(words[:9] + ["zebra"])) is not None
    assert idx.check(" ".join(words[:8] + ["zebra", "yak"])) is None
    # a phrase shorter than MIN_COVER is never a copy, however short the text
    assert idx.check(" ".join(words[:WINDOW + 2])) is None
    # a long text: MAX_COVER covered words are refused however much else it says, in one run or several
    long_text = " ".join(["alpha"] * 20 + words[:MAX_COVER])
    assert idx.check(long_text) == (f"reproduces {MAX_COVER} of its 36 words from one training post "
                                    f"(runs of {WINDOW}+ words; limit {MAX_COVER})")
    assert idx.check(" ".join(["alpha"] * 20 + words[:MAX_COVER - 1])) is None
    split = " ".join(["alpha"] * 10 + words[:8] + ["beta"] * 10 + words[9:17])
    assert idx.check(split) is not None


def test_save_load_roundtrip_keeps_no_text(tmp_path, index):
    path = index.save(tmp_path / "anticopy.json")
    raw = path.read_text()
    assert "compiler" not in raw and "coffee" not in raw  # hashes only
    loaded = AntiCopyIndex.load(path)
    assert loaded.posts == len(TRAINING)
    for text in ("hot take a compiler that explains itself and i am not even sorry", "ship it now"):
        assert loaded.check(text) == index.check(text) == "exact copy of a training post"
    assert loaded.check("Hot take: a compiler that explains itself send help and coffee.") is None
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    assert json.loads(raw)["version"] == VERSION == 2 and loaded.version == VERSION


def test_a_version_1_index_still_loads_and_checks_by_coverage(tmp_path):
    path = tmp_path / "anticopy.json"
    path.write_text(json.dumps(v1_index_dict([LONG, *TRAINING])))
    old = AntiCopyIndex.load(path)
    assert old.version == 1 and old.window == 8
    assert old.check("ship it now") == "exact copy of a training post"
    words = LONG.split()
    words[11] = "zebra"
    assert old.check(" ".join(words)) is not None  # runs of 11 on each side: covered with 8-word runs too
    assert old.check("Hot take: a compiler that explains itself send help and coffee.") is None


def test_load_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "anticopy.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(MimicbotError, match="cannot read the anti-copy index"):
        AntiCopyIndex.load(bad)
    bad.write_text(json.dumps({"format": "mimicbot-anticopy", "version": 9}))
    with pytest.raises(MimicbotError, match="version 9 is not one this mimicbot reads"):
        AntiCopyIndex.load(bad)
    with pytest.raises(MimicbotError, match="cannot read"):
        AntiCopyIndex.load(tmp_path / "missing.json")


def test_salt_differs_between_indexes():
    a, b = build_index(TRAINING), build_index(TRAINING)
    assert a.salt != b.salt and a.exact != b.exact
    assert a.check("ship it now") == b.check("ship it now") is not None
