"""The anti-copy check: a generated post must not reproduce one of the posts the model was trained on.

Bots of this kind reject generated text that repeats the training text: twitter_ebooks drops a sentence
that is verbatim a training sentence, and markovify rejects a sentence that shares a run of more than
`min(15, round(0.7 * len))` consecutive words with its corpus. A single longest run misses a copy with a
word changed in the middle (a 23-word post with its 11th word swapped shares runs of 11 words only), so ours
measures **coverage**: how many of the text's words lie in runs of at least WINDOW = 5 consecutive words
shared with one training post. Words are normalised (lower case, no mentions, links, punctuation or extra
whitespace), and each training post is taken separately:

- **exact copy**: the text's words are exactly one training post's words;
- **near copy**: the words covered by runs from one training post number at least
  `min(MAX_COVER, max(MIN_COVER, ceil(RATIO * words)))`, where `words` is the generated text's length.

Why these numbers. WINDOW = 5: a word or two changed anywhere in a post leaves runs of five words or more on
both sides of each change in any post of 12 words or more, so the copy is still covered. Fewer than MIN_COVER
= 8 covered words is a phrase ("and I am not even sorry"), not a copied post: people and models reuse
phrases, and forbidding them forbids writing in someone's voice. Above that, a text is a copy when the
covered words are most of what the bot would post: RATIO of the text. MAX_COVER = 16 covered words from one
post is a copied passage whatever the text's length (markovify caps its run at 15).

RATIO is 0.9 rather than markovify's 0.7 because of what recombining short posts looks like. A post often
has three parts (an opener, a subject, a tail); a new post that joins one post's opener to a subject and
tail that another post has together shares that subject-and-tail run with the second post, typically
75-90 % of its words. That is the model doing its job, and the bundled sample data is made exactly that
way. bench/anticopy.py measures it on @ada_bytes (the README has the figures): the share of genuine
recombinations refused is the same as the single-run rule's, and the near copies that rule let through
(a word swapped in the middle of a long post) are now refused.

The index keeps keyed 64-bit hashes only (of each post's normalised words and of each run of WINDOW
consecutive words, with the post's number), never the texts, so it can be published with a model without
publishing the dataset. Hashes of short runs can still confirm a guessed phrase; they cannot be read back.
An index of an older format (version 1: runs of 8 words, with positions) still loads and is checked the same
way with its own run length; the model store rebuilds it from the stored posts when it can.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_atomic
from ..cleaning import clean_text
from ..errors import MimicbotError

WINDOW = 5  # run length that counts towards coverage
MIN_COVER = 8
MAX_COVER = 16
RATIO = 0.9
FORMAT = "mimicbot-anticopy"
VERSION = 2
V1_WINDOW = 8  # version 1 stored runs of 8 words

_MENTION = re.compile(r"(?<!\w)@\w+")
_LINK = re.compile(r"https?:\S*", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_APOSTROPHES = re.compile(r"['\u2019]")


def normalise(text: str) -> list[str]:
    """The words a copy is judged on: lower case, without URLs, mentions, punctuation and emoji."""
    text = _MENTION.sub(" ", _LINK.sub(" ", clean_text(text)).lower())
    return _WORD.findall(_APOSTROPHES.sub("", text))


def cover_limit(words: int) -> int:
    """Fewest covered words that make a text of `words` words a copy (see the module docstring)."""
    return min(MAX_COVER, max(MIN_COVER, math.ceil(RATIO * words - 1e-9)))


@dataclass
class AntiCopyIndex:
    """Hashes of the training posts and of their WINDOW-word runs; `check` says whether a text copies one."""

    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    exact: set[int] = field(default_factory=set)
    runs: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # run hash -> posts that have it
    posts: int = 0
    window: int = WINDOW
    version: int = VERSION

    def _hash(self, words: list[str]) -> int:
        digest = hashlib.blake2b(" ".join(words).encode(), digest_size=8, key=self.salt).digest()
        return int.from_bytes(digest, "big")

    def add(self, text: str) -> None:
        words = normalise(text)
        if not words:
            return
        post = self.posts
        self.posts += 1
        self.exact.add(self._hash(words))
        for pos in range(len(words) - self.window + 1):
            self.runs[self._hash(words[pos:pos + self.window])].add(post)

    def coverage(self, words: list[str]) -> int:
        """Most words of `words` that lie in runs of at least `window` consecutive words shared with one
        training post (0 when no run is that long)."""
        covered: dict[int, set[int]] = defaultdict(set)  # post -> positions of `words` covered by it
        for i in range(len(words) - self.window + 1):
            for post in self.runs.get(self._hash(words[i:i + self.window]), ()):
                covered[post].update(range(i, i + self.window))
        return max(map(len, covered.values()), default=0)

    def check(self, text: str) -> str | None:
        """None when `text` is new; otherwise why it counts as a copy of a training post."""
        words = normalise(text)
        if not words:
            return None
        if self._hash(words) in self.exact:
            return "exact copy of a training post"
        covered, limit = self.coverage(words), cover_limit(len(words))
        if covered >= limit:
            return (f"reproduces {covered} of its {len(words)} words from one training post "
                    f"(runs of {self.window}+ words; limit {limit})")
        return None

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "window": self.window, "salt": self.salt.hex(),
            "posts": self.posts, "exact": sorted(self.exact),
            "runs": [[h, post] for h, posts in sorted(self.runs.items()) for post in sorted(posts)],
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename)."""
        return write_atomic(path, json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> AntiCopyIndex:
        """The index in `path`, of this format or version 1 (`version` says which; rebuild a version 1 index
        with `build_index` when the posts are at hand)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError("not a mimicbot anti-copy index")
            version = data.get("version")
            if version == 1 and data.get("min_run") == V1_WINDOW:
                window, places = V1_WINDOW, ((h, post) for h, post, _pos in data["runs"])
            elif version == VERSION and data.get("window") == WINDOW:
                window, places = WINDOW, ((h, post) for h, post in data["runs"])
            else:
                raise ValueError(f"version {version} is not one this mimicbot reads (1 or {VERSION})")
            runs: dict[int, set[int]] = defaultdict(set)
            for h, post in places:
                runs[h].add(post)
            return cls(salt=bytes.fromhex(data["salt"]), exact=set(data["exact"]), runs=runs, posts=data["posts"],
                       window=window, version=version)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MimicbotError(f"cannot read the anti-copy index {path}: {e}") from None


def build_index(texts: list[str]) -> AntiCopyIndex:
    """The index of a model's training posts (cleaned texts, one per post)."""
    index = AntiCopyIndex()
    for text in texts:
        index.add(text)
    return index
