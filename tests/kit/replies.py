"""Data for "replies that answer" (tests/test_replies_answer.py, bench/replies.py): an account whose replies
repeat the two topic words of the message they answer, and messages it never read.

Sixteen topic words, each one token of the tiny base's tokenizer (words of the bundled samples). Every message
names two of them ("@ada tell me about coffee and bees"); the account's reply names the same two
("honestly coffee and bees all day and then a nap"). Eight pairs are held out: no message and no reply of the
account names both words of a held-out pair together (each word alone is in many), and the held-out messages
are worded in a way no training message is ("so what about X and Y"). A model that answers a held-out
message with its two words has copied them from what it read: nothing else in its training tells it which two
words to write. Plain posts (no message) name no topic word.

A reply is at least nine tokens long: the recipe's `min_length` (10, end-of-text included) forbids a shorter
post, and a model made to go on past its reply's end writes a second post after it.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

TOPICS = ["coffee", "compiler", "parser", "regex", "tomatoes", "basil", "compost", "bees", "kettle", "laptop",
          "lavender", "lettuce", "pumpkin", "robins", "roses", "worms"]
ASKS = ["@ada what do you think about {a} and {b}", "@ada tell me about {a} and {b}",
        "@ada any news on {a} and {b}", "@ada do you still like {a} and {b}"]
OPENERS = ["yes", "oh", "well", "honestly"]
TAILS = ["is the best part of my day", "all day and then a nap", "every morning before work",
         "again and I am not even sorry"]
PLAIN = ["today was a quiet day at home", "going for a long walk in the rain", "finally finished the whole review",
         "the weekend was over much too soon", "learned something new this morning",
         "maybe tomorrow will be a better day"]
HELD_OUT = "@ada so what about {a} and {b}"  # worded like no training message
HELD_OUT_PAIRS = 8
REPLIES_PER_PAIR = 2


def reply_data(seed: int = 1) -> tuple[list[dict], list[str]]:
    """(the account's posts as .jsonl lines — a reply with its "parent" —, the held-out messages)."""
    rng = random.Random(seed)
    pairs = list(itertools.combinations(TOPICS, 2))
    rng.shuffle(pairs)
    held, trained = pairs[:HELD_OUT_PAIRS], pairs[HELD_OUT_PAIRS:]
    lines, seen = [], set()
    for a, b in trained:
        for _ in range(REPLIES_PER_PAIR):
            text = f"{rng.choice(OPENERS)} {a} and {b} {rng.choice(TAILS)}"
            if text not in seen:  # one parent per reply text
                seen.add(text)
                lines.append({"text": text, "parent": rng.choice(ASKS).format(a=a, b=b)})
    lines += [{"text": text} for text in PLAIN]
    rng.shuffle(lines)
    return lines, [HELD_OUT.format(a=a, b=b) for a, b in held]


def write_jsonl(path: Path, lines: list[dict], parents: bool = True) -> Path:
    """The posts as a .jsonl import; `parents=False` leaves the messages out (the replies become plain posts)."""
    rows = lines if parents else [{"text": line["text"]} for line in lines]
    Path(path).write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return Path(path)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def shared_share(message: str, texts: list[str]) -> float:
    """The mean share of `message`'s words that each text also uses (0 for no text)."""
    wanted = words(message)
    return sum(len(wanted & words(t)) / len(wanted) for t in texts) / len(texts) if texts else 0.0
