"""The anti-copy rule: exact copies and long shared runs are refused, recombinations and fresh text pass."""

from __future__ import annotations

import json

import pytest

from bot.errors import MimicbotError
from bot.generation.anticopy import MAX_RUN, MIN_RUN, AntiCopyIndex, build_index, normalise, run_limit

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


def test_long_run_covering_the_text_is_refused(index):
    # the copy with one word tacked on: 13 of 14 words shared, limit ceil(0.9 * 14) = 13
    reason = index.check("Hot take: a compiler that explains itself and I am not even sorry. Really")
    assert reason == "shares 13 consecutive words with a training post (limit 13 for 14 words)"
    # the copy with its opener swapped for one word: 10 of 11 words, limit 10
    assert index.check("Honestly, coffee strong enough to fix flaky tests send help and coffee.") is not None


def test_recombination_of_two_posts_passes(index):
    # first half of post 0, second half of post 1: runs of 7 and 4 words with different posts
    assert index.longest_run(normalise("Hot take: a compiler that explains itself send help and coffee.")) == 0
    assert index.check("Hot take: a compiler that explains itself send help and coffee.") is None
    # opener + subject of one post with the tail of another: 8 of 14 words from post 0, under the limit of 13
    text = "Hot take: a compiler that explains itself and is that too much to ask?"
    assert index.longest_run(normalise(text)) == 8
    assert index.check(text) is None


def test_runs_are_counted_within_one_post_only():
    # windows matching post A then only post B back to back must not chain into one run of 10 words
    idx = build_index(["the quick brown fox jumps over the lazy dog today",
                       "quick brown fox jumps over the lazy dog again and again"])
    text = "the quick brown fox jumps over the lazy dog again zebra"  # 11 words: limit 10
    assert idx.longest_run(normalise(text)) == 9  # 'the ... dog' with A, 'quick ... again' with B
    assert idx.check(text) is None
    assert idx.check("the quick brown fox jumps over the lazy dog today zebra") is not None  # 10 with A


def test_fresh_text_passes(index):
    assert index.check("My dream is a quiet afternoon with a good book and no meetings at all") is None
    assert index.check("") is None


def test_threshold_edge():
    assert run_limit(5) == MIN_RUN and run_limit(8) == MIN_RUN
    assert run_limit(10) == 9 and run_limit(11) == 10 and run_limit(13) == 12
    assert run_limit(40) == MAX_RUN
    post = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"
    idx = build_index([post])
    words = post.split()
    # 10-word text: a 9-word run is the limit
    assert idx.check(" ".join(words[:9] + ["zebra"])) is not None
    assert idx.check(" ".join(words[:8] + ["zebra", "yak"])) is None
    # a long text: a run of MAX_RUN words is refused however much else it says
    long_text = " ".join(["alpha"] * 20 + words[:MAX_RUN])
    expected = f"shares {MAX_RUN} consecutive words with a training post (limit {MAX_RUN} for 36 words)"
    assert idx.check(long_text) == expected
    assert idx.check(" ".join(["alpha"] * 20 + words[:MAX_RUN - 1])) is None


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


def test_load_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "anticopy.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(MimicbotError, match="cannot read the anti-copy index"):
        AntiCopyIndex.load(bad)
    with pytest.raises(MimicbotError, match="cannot read"):
        AntiCopyIndex.load(tmp_path / "missing.json")


def test_salt_differs_between_indexes():
    a, b = build_index(TRAINING), build_index(TRAINING)
    assert a.salt != b.salt and a.exact != b.exact
    assert a.check("ship it now") == b.check("ship it now") is not None
