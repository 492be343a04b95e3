"""Benchmark 5 — the copy check: how often it refuses genuine recombinations, and how often near copies.

Data: @ada_bytes's kept posts from the bundled sample archive (the product's own cleaning), indexed as the
trainer indexes them. The sample posts are opener + subject + tail; two sets of candidate posts are judged:

- **recombinations**: every opener x subject x tail of @ada_bytes that is not itself a training post (what a
  model that learned the voice writes; refusing them is the cost of the check);
- **near copies**: every training post of 12 words or more with one word swapped for a new one, in the middle,
  and with two words swapped (at a third and two thirds): copies a reader would call copies.

Each set is judged by the rule before coverage (exact copy, or one shared run of at least
min(16, max(8, ceil(0.9 x words))) words: the longest run is found here directly on the texts) and by the
product's check (bot/generation/anticopy.py, coverage by runs of 5+ words from one post). Quick (seconds).

    python bench/anticopy.py
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import save_results, show  # noqa: E402


def longest_common_run(a: list[str], b: list[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


class RunRule:
    """The rule before coverage, computed on the texts: exact copy or one long shared run."""

    def __init__(self, posts: list[list[str]]):
        self.posts = posts
        self.exact = {tuple(p) for p in posts}
        self.by_gram: dict[tuple, set[int]] = defaultdict(set)
        for i, words in enumerate(posts):
            for k in range(len(words) - 7):
                self.by_gram[tuple(words[k:k + 8])].add(i)

    def refuses(self, words: list[str]) -> bool:
        if tuple(words) in self.exact:
            return True
        limit = min(16, max(8, math.ceil(0.9 * len(words) - 1e-9)))
        candidates = set().union(*(self.by_gram.get(tuple(words[k:k + 8]), set()) for k in range(len(words) - 7)))
        return any(longest_common_run(words, self.posts[i]) >= limit for i in candidates)


def swapped(words: list[str], positions: list[int]) -> list[str]:
    out = list(words)
    for n, p in enumerate(positions):
        out[p] = f"zebra{n}"
    return out


def main() -> None:
    from bot.cleaning import clean_post
    from bot.generation.anticopy import WINDOW, build_index, normalise
    from bot.samples.generate import PEOPLE, sample_path
    from bot.sources.files import ArchiveSource

    texts = [c.text for p in ArchiveSource(sample_path("ada_bytes")).read().posts
             if (c := clean_post(p.text, p.is_retweet)).kept]
    index = build_index(texts)
    posts = [normalise(t) for t in texts]
    before = RunRule(posts)
    known = {tuple(p) for p in posts}

    person = PEOPLE["ada_bytes"]
    combos = [normalise(" ".join(c)) for c in itertools.product(person["openers"], person["subjects"], person["tails"])]
    recombinations = [w for w in combos if tuple(w) not in known]
    long_posts = [w for w in posts if len(w) >= 12]
    sets = {
        "recombinations": recombinations,
        "one word swapped in the middle": [swapped(w, [len(w) // 2]) for w in long_posts],
        "two words swapped": [swapped(w, [len(w) // 3, 2 * len(w) // 3]) for w in long_posts],
    }
    figures, rows = {"training_posts": len(texts), "window": WINDOW}, []
    for name, candidates in sets.items():
        old = sum(before.refuses(w) for w in candidates) / len(candidates)
        new = sum(index.check(" ".join(w)) is not None for w in candidates) / len(candidates)
        key = name.replace(" ", "_")
        figures[key] = {"n": len(candidates), "refused_before": round(old, 4), "refused_after": round(new, 4)}
        rows.append((f"{name} ({len(candidates):,})", f"refused before {old:.1%}, after {new:.1%}"))
    show(f"Copy check on @ada_bytes ({len(texts)} training posts): share refused", rows)
    save_results("anticopy", figures)


if __name__ == "__main__":
    main()
