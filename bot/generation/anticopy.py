"""The anti-copy check: a generated post must not reproduce one of the posts the model was trained on.

Bots of this kind reject generated text that repeats the training text: twitter_ebooks drops a sentence
that is verbatim a training sentence, and markovify rejects a sentence that shares a run of more than
`min(15, round(0.7 * len))` consecutive words with its corpus. Ours combines the two, measured in
normalised words (lower case, no mentions, URLs, punctuation or extra whitespace), run by run against
each training post separately:

- **exact copy**: the text's words are exactly one training post's words;
- **long run**: the text shares with one training post a run of consecutive words of at least
  `min(MAX_RUN, max(MIN_RUN, ceil(RATIO * words)))` words, where `words` is the generated text's length.

Why these numbers. A run shorter than MIN_RUN = 8 words is a phrase ("and I am not even sorry"), not a
copied post: people and models reuse phrases, and forbidding them forbids writing in someone's voice.
Above that, a run is a copy when it is most of what the bot would post: RATIO of the text. A run of
MAX_RUN = 16 words or more is a copied passage whatever the text's length (markovify caps at 15 and
rejects runs *longer* than the cap; 16 is the same limit stated inclusively).

RATIO is 0.9 rather than markovify's 0.7 because of what recombining short posts looks like. A post often
has three parts (an opener, a subject, a tail); a new post that joins one post's opener to a subject and
tail that another post has together shares that subject-and-tail run with the second post, typically
75-90 % of its words. That is the model doing its job, and the bundled sample data is made exactly that
way: of the 1,276 opener/subject/tail combinations of @ada_bytes that are not training posts, a ratio of
0.7 refuses 88 %, 0.8 refuses 70 %, and 0.9 refuses 28 % -- those that differ from a training post only
by a one-word opener, which a reader would call a copy. At 0.9 a text is refused when all but about one
word in ten is one training post verbatim: a post with a word swapped or tacked on at an edge, or a long
post reproduced inside a slightly longer text.

The index keeps keyed 64-bit hashes only (of each post's normalised words and of each run of
MIN_RUN consecutive words, with the post's number and position), never the texts, so it can be published
with a model without publishing the dataset. Hashes of short runs can still confirm a guessed phrase;
they cannot be read back.
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

MIN_RUN = 8
MAX_RUN = 16
RATIO = 0.9
FORMAT = "mimicbot-anticopy"
VERSION = 1

_MENTION = re.compile(r"(?<!\w)@\w+")
_WORD = re.compile(r"\w+")
_APOSTROPHES = re.compile(r"['\u2019]")


def normalise(text: str) -> list[str]:
    """The words a copy is judged on: lower case, without URLs, mentions, punctuation and emoji."""
    text = _MENTION.sub(" ", clean_text(text).lower())
    return _WORD.findall(_APOSTROPHES.sub("", text))


def run_limit(words: int) -> int:
    """Shortest shared run that makes a text of `words` words a copy (see the module docstring)."""
    return min(MAX_RUN, max(MIN_RUN, math.ceil(RATIO * words - 1e-9)))


@dataclass
class AntiCopyIndex:
    """Hashes of the training posts and of their MIN_RUN-word runs; `check` says whether a text copies one."""

    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    exact: set[int] = field(default_factory=set)
    runs: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))  # hash -> (post, pos)
    posts: int = 0

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
        for pos in range(len(words) - MIN_RUN + 1):
            self.runs[self._hash(words[pos:pos + MIN_RUN])].append((post, pos))

    def longest_run(self, words: list[str]) -> int:
        """Longest run of consecutive words `words` shares with any single training post (0 if < MIN_RUN)."""
        best = 0
        previous: dict[tuple[int, int], int] = {}  # (post, pos of the run's last window) -> windows so far
        for i in range(len(words) - MIN_RUN + 1):
            current = {}
            for post, pos in self.runs.get(self._hash(words[i:i + MIN_RUN]), ()):
                current[(post, pos)] = previous.get((post, pos - 1), 0) + 1
            if current:
                best = max(best, max(current.values()) + MIN_RUN - 1)
            previous = current
        return best

    def check(self, text: str) -> str | None:
        """None when `text` is new; otherwise why it counts as a copy of a training post."""
        words = normalise(text)
        if not words:
            return None
        if self._hash(words) in self.exact:
            return "exact copy of a training post"
        run, limit = self.longest_run(words), run_limit(len(words))
        if run >= limit:
            return f"shares {run} consecutive words with a training post (limit {limit} for {len(words)} words)"
        return None

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "min_run": MIN_RUN, "salt": self.salt.hex(), "posts": self.posts,
            "exact": sorted(self.exact),
            "runs": [[h, post, pos] for h, places in sorted(self.runs.items()) for post, pos in places],
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename)."""
        return write_atomic(path, json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> AntiCopyIndex:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("min_run") != MIN_RUN:
                raise ValueError(f"not a version {VERSION} anti-copy index with runs of {MIN_RUN} words")
            runs: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for h, post, pos in data["runs"]:
                runs[h].append((post, pos))
            return cls(salt=bytes.fromhex(data["salt"]), exact=set(data["exact"]), runs=runs, posts=data["posts"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MimicbotError(f"cannot read the anti-copy index {path}: {e}") from None


def build_index(texts: list[str]) -> AntiCopyIndex:
    """The index of a model's training posts (cleaned texts, one per post)."""
    index = AntiCopyIndex()
    for text in texts:
        index.add(text)
    return index
