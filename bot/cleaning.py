"""Cleaning, exactly the huggingtweets recipe (../shared/reference/huggingtweets-recipe.md), as pure functions.

Per post, in this order: retweets are dropped; `&amp;`, `&lt;`, `&gt;` are unescaped, each once, in that
order; links are removed by the recipe's five patterns, for `http:` and then `https:` (case-sensitive);
runs of spaces collapse to one; all whitespace folds to single spaces; the text is stripped. Mentions,
hashtags and emoji stay. A post with fewer than three "plain" words (words containing none of `http`,
`@`, `#`, in any case) is short and dropped.

The output is byte for byte the original's on any input, quirks included, and like the original it is
not idempotent: `&amp;amp;` cleans to `&amp;`, which cleans to `&`; a link glued to the word before it and
followed by a space goes with that space (`Great:https://t.co/x stuff` -> `Great:stuff`); a bare `http:`
and an upper-case `HTTP://x` are kept.
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

_ENTITIES = (("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))  # the recipe's order, each once
# The recipe's five link patterns, per scheme, in its order; S = the scheme then one or more non-spaces.
_LINKS = tuple(re.compile(p.format(S=re.escape(scheme) + r"\S+"))
               for scheme in ("http:", "https:") for p in (" {S}", "{S} ", "\n{S} ", "\n{S}", "{S}"))
_SPACES = re.compile(" +")
_NOT_PLAIN = ("http", "@", "#")


def unescape(text: str) -> str:
    """Unescape only `&amp;`, `&lt;`, `&gt;`, each once, in that order (so `&amp;lt;` gives `<` and
    `&amp;amp;` gives `&amp;`), as the recipe does."""
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return text


def remove_links(text: str) -> str:
    """The recipe's five link removals for `http:`, then for `https:` (case-sensitive)."""
    for pattern in _LINKS:
        text = pattern.sub("", text)
    return text


def clean_text(text: str) -> str:
    """One post's text, cleaned as the recipe cleans it. Never raises, never returns a line break; not
    idempotent (see the module docstring)."""
    text = remove_links(unescape(text))
    text = _SPACES.sub(" ", text)
    return " ".join(text.split()).strip()


_LEADING_MENTIONS = re.compile(r"^(?:@\w+\s*)+")


def context_text(text: str) -> str:
    """A message a reply answers, as the model reads it before the reply (in training and when answering):
    cleaned as a post is, without the @mentions that open it (the reply chain's addressees)."""
    return _LEADING_MENTIONS.sub("", clean_text(text)).strip()


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


# Discord's markup, turned into what the recipe knows before it cleans a message: a mention becomes an @word and a
# channel a #word (the recipe keeps @handles and #tags, and counts neither as a plain word); a custom emoji becomes
# its :name:; a link in <angle brackets> (Discord's "no preview" form) loses them, so the recipe removes the link.
# No id of anyone else is kept in the text.
_DISCORD_MARKUP = (
    (re.compile(r"<@!?\d+>"), "@user"),
    (re.compile(r"<@&\d+>"), "@role"),
    (re.compile(r"<#\d+>"), "#channel"),
    (re.compile(r"<a?:(\w{1,32}):\d+>"), r":\1:"),
    (re.compile(r"</([\w -]{1,64}):\d+>"), r"/\1"),  # a slash command's mention
    (re.compile(r"<t:-?\d+(?::[tTdDfFR])?>"), "sometime"),  # a timestamp
    (re.compile(r"<(https?:[^\s>]+)>"), r"\1"),
)


def discord_text(content: str) -> str:
    """A Discord message's text as it is stored and then cleaned like a post (clean_post)."""
    for pattern, replacement in _DISCORD_MARKUP:
        content = pattern.sub(replacement, content)
    return content
