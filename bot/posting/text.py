"""Text rules every network shares: X's weighted length, fitting a limit without cutting words, and making
@handles inert.

X counts characters the way `twitter-text` (config v3) does, and so do we, compactly:

- text is NFC-normalised first;
- a URL counts 23, whatever its length (X wraps every link in t.co);
- an emoji counts 2, a whole sequence (skin tone, ZWJ family, flag) included;
- any other code point counts 1 inside U+0000-U+10FF, U+2000-U+200D, U+2010-U+201F and U+2032-U+2037
  (Latin, Greek, Cyrillic, Hebrew, Arabic, Indic scripts, common punctuation), and 2 elsewhere (CJK, ...).

The limit is 280 of those units.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import regex

from .base import PostRejected

X_MAX_LENGTH = 280
X_URL_LENGTH = 23
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")
_TLDS = "com|org|net|io|co|ai|dev|app|me|ly|gg|tv|uk|de|fr|jp|ca|us|info|xyz|social"
_URL = re.compile(
    rf"(?i)\b(?:https?://[^\s]+|www\.[^\s]+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s]*)?)"
)
# "@" that starts a handle (not an e-mail address): "@jack", "<@123>" (Discord), "@everyone"
_MENTION_AT = re.compile(r"(?<![\w@])@(?=[A-Za-z0-9_])")
ZERO_WIDTH_SPACE = "\u200b"
ELLIPSIS = "…"


def _code_point_weight(ch: str) -> int:
    cp = ord(ch)
    return 1 if any(lo <= cp <= hi for lo, hi in _LIGHT_RANGES) else 2


def _plain_length(text: str) -> int:
    total = 0
    for grapheme in _GRAPHEME.findall(text):
        if _EMOJI.search(grapheme):
            total += 2
        else:
            total += sum(_code_point_weight(ch) for ch in grapheme)
    return total


def x_length(text: str) -> int:
    """The length X gives `text` (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    total, pos = 0, 0
    for match in _URL.finditer(text):
        total += _plain_length(text[pos:match.start()]) + X_URL_LENGTH
        pos = match.end()
    return total + _plain_length(text[pos:])


_UNPRINTABLE = regex.compile(r"[^\S ]|\p{Cc}|\p{Cs}|\uFFFD")  # control characters, broken bytes


def squeeze(text: str) -> str:
    """One line, single spaces, no control characters or broken bytes, no leading or trailing space."""
    return " ".join(_UNPRINTABLE.sub(" ", text).split())


def neutralise_mentions(text: str) -> str:
    """Make every @handle inert: a zero-width space after the "@" (as mstdn-ebooks does) keeps the text readable
    while X, Mastodon and Discord no longer link or notify the account. E-mail addresses are left alone."""
    return _MENTION_AT.sub("@" + ZERO_WIDTH_SPACE, text)


def fit(text: str, limit: int, length: Callable[[str], int] = len, suffix: str = "") -> str:
    """`text + suffix` if it is within `limit`; otherwise whole words dropped from the end, an ellipsis marking
    the cut, and the suffix kept. Never cuts inside a word. Raises PostRejected when not even one word fits."""
    text = squeeze(text)
    if length(text + suffix) <= limit:
        return text + suffix
    words = text.split(" ")
    while len(words) > 1:
        words.pop()
        candidate = " ".join(words).rstrip(",;:-–—") + ELLIPSIS + suffix
        if length(candidate) <= limit:
            return candidate
    raise PostRejected(f"too long: its first word alone is over the {limit}-character limit")


def graphemes(text: str) -> int:
    """User-perceived characters, the unit of Bluesky's and Mastodon's limits: an emoji sequence (family, flag,
    skin tone) or a letter with combining accents counts once."""
    return len(_GRAPHEME.findall(text))
