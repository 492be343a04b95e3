"""Cleaning, exactly the huggingtweets recipe (../shared/reference/huggingtweets-recipe.md), as pure functions.

Per post, in this order: retweets are dropped; `&amp; &lt; &gt;` are unescaped; URLs (`http:`/`https:`)
are removed with the space around them; all whitespace folds to single spaces; the text is stripped.
Mentions, hashtags and emoji stay. A post with fewer than three "plain" words (words containing none
of `http`, `@`, `#`) is short and dropped.

Two deliberate refinements, both so that `clean_text(clean_text(x)) == clean_text(x)`:
the three entities are unescaped until none is left (`&amp;lt;` becomes `<`, not `&lt;`), and URL
matching ignores case (`HTTPS://` goes too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

EOT = "<|endoftext|>"
MIN_CHARS = 6_000  # below this, training is refused
WARN_CHARS = 40_000  # below this, a warning
MIN_PLAIN_WORDS = 3
DEFAULT_PROMPT = "My dream is"  # the recipe's start text for generation
# The model card's table: its row labels and the CleanStats field each one shows.
STATS_ROWS = (("Tweets downloaded", "downloaded"), ("Retweets", "retweets"), ("Short tweets", "short"),
              ("Tweets kept", "kept"))

_URL = re.compile(r"\s*https?:\S*\s*", re.IGNORECASE)
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_NOT_PLAIN = ("http", "@", "#")


def unescape(text: str) -> str:
    """Unescape only `&amp; &lt; &gt;`, as the recipe does, until none remains."""
    while True:
        before = text
        for entity, char in _ENTITIES:
            text = text.replace(entity, char)
        if text == before:
            return text


def clean_text(text: str) -> str:
    """One post's text, cleaned. Never raises, never returns a URL or a newline; idempotent."""
    text = unescape(text)
    text = _URL.sub(" ", text)
    return " ".join(text.split())


def plain_word_count(clean: str) -> int:
    return sum(1 for w in clean.split() if not any(s in w.lower() for s in _NOT_PLAIN))


def is_short(clean: str) -> bool:
    """Fewer than three plain words; a post that cleaning empties is therefore short."""
    return plain_word_count(clean) < MIN_PLAIN_WORDS


def is_retweet(text: str, flagged: bool = False) -> bool:
    """A retweet: flagged so by its source, or (archives mark none) its text starts with `RT @`."""
    return flagged or text.startswith("RT @")


@dataclass(frozen=True)
class CleanPost:
    text: str  # cleaned text ("" for a retweet)
    retweet: bool
    short: bool

    @property
    def kept(self) -> bool:
        return not (self.retweet or self.short)


def clean_post(raw_text: str, retweet_flag: bool = False) -> CleanPost:
    if is_retweet(raw_text, retweet_flag):
        return CleanPost("", True, False)
    text = clean_text(raw_text)
    return CleanPost(text, False, is_short(text))


@dataclass(frozen=True)
class CleanStats:
    """The card's table for one account, plus the characters that training will see."""

    downloaded: int
    retweets: int
    short: int
    kept: int
    chars: int

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def enough(self) -> bool:
        return self.chars >= MIN_CHARS

    @property
    def warning(self) -> str | None:
        if self.chars < MIN_CHARS:
            return f"not enough tweets: {self.chars:,} characters kept, {MIN_CHARS:,} needed"
        if self.chars < WARN_CHARS:
            return f"only {self.chars:,} characters kept; {WARN_CHARS:,} or more give a better model"
        return None


def joined_chars(texts: Iterable[str]) -> int:
    """Length of the kept texts joined by the end-of-text token, as the recipe measures it."""
    texts = list(texts)
    if not texts:
        return 0
    return sum(len(t) for t in texts) + len(EOT) * (len(texts) - 1)


def stats(posts: Iterable[CleanPost]) -> CleanStats:
    downloaded = retweets = short = 0
    kept: list[str] = []
    for p in posts:
        downloaded += 1
        if p.retweet:
            retweets += 1
        elif p.short:
            short += 1
        else:
            kept.append(p.text)
    return CleanStats(downloaded, retweets, short, len(kept), joined_chars(kept))
