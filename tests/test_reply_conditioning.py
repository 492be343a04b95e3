"""Replies that answer: a tiny model trained on (parent -> reply) pairs whose replies repeat their parent's topic
answers a held-out message on its topic far more often than it mentions that topic unprompted.

The trainer puts each known parent before its reply, outside the loss (bot/training/trainer.py, step 3); the
reply path puts the message answered before the post (`context`, bot/generation/sampling.py). Remove either and
the two rates below are the same.
"""

from __future__ import annotations

import random
import re

import pytest
import torch

from bot.cleaning import context_text
from bot.generation.models import ModelStore
from bot.generation.sampling import sample
from bot.training.spec import AccountData, TrainRequest
from bot.training.tiny import ensure_tiny_base
from bot.training.trainer import train

pytestmark = pytest.mark.slow

# words of the bundled samples: each is one token of the tiny base's tokenizer
TOPICS = ["coffee", "compiler", "parser", "regex", "tomatoes", "basil", "compost", "bees"]
ASKS = ["@ada_bytes what do you think about {t}", "tell me something about {t}", "any news about {t}",
        "do you still like {t}"]
OPENERS = ["yes", "oh", "well", "honestly"]
TAILS = ["is the best part of my day", "makes everything better", "all day and then a nap",
         "again and I am not even sorry"]
PLAIN = ["today was all about {t}", "thinking about {t} again", "a quiet morning with {t}"]
HELD_OUT = "so what about {t}"  # a message the model never read


def share_with_topic(texts: list[str | None], topic: str) -> float:
    posts = [t for t in texts if t]
    assert len(posts) >= 16, texts  # enough whole posts to measure
    return sum(bool(re.search(rf"\b{topic}\b", t)) for t in posts) / len(posts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    models_dir = tmp_path_factory.mktemp("models")
    ensure_tiny_base(models_dir)
    rng = random.Random(3)
    texts, parents = [], {}
    for t in TOPICS:
        for k, (opener, tail) in enumerate((o, tl) for o in OPENERS for tl in TAILS):
            reply = f"{opener} {t} {tail}"  # the reply repeats its parent's topic
            texts.append(reply)
            parents[reply] = context_text(ASKS[(k + rng.randrange(4)) % 4].format(t=t))
        texts += [p.format(t=t) for p in PLAIN]
    account = AccountData(handle="ada", display_name="Ada", texts=texts, parents=parents)
    req = TrainRequest(model_id="ada", accounts=[account], models_dir=str(models_dir), base_model="tiny", lr=3e-3,
                       epochs=15, block_size=64, seed=5, eval_fraction=0.0)
    info = train(req, models_dir / ".work" / "ada", lambda event: None)
    return ModelStore(models_dir).load("ada"), info


def test_replies_to_a_held_out_message_answer_its_topic(trained):
    loaded, info = trained
    assert info["accounts"][0]["replies_with_parent"] == len(TOPICS) * len(OPENERS) * len(TAILS)
    answered, unprompted = [], []
    for i, topic in enumerate(["coffee", "basil", "bees", "parser"]):
        message = context_text(HELD_OUT.format(t=topic))
        answered.append(share_with_topic(sample(loaded.model, loaded.tokenizer, "", 32, seed=i, context=message), topic))
        unprompted.append(share_with_topic(sample(loaded.model, loaded.tokenizer, "", 32, seed=i), topic))
    mean_answered, mean_unprompted = sum(answered) / 4, sum(unprompted) / 4
    # unprompted, a topic comes up about as often as any other (1 in 8); read first, most answers are about it
    assert mean_unprompted < 0.3, unprompted
    assert mean_answered > mean_unprompted + 0.35, (answered, unprompted)


def test_plain_posts_do_not_write_the_parents(trained):
    loaded, _ = trained
    posts = [t for t in sample(loaded.model, loaded.tokenizer, "", 64, seed=9) if t]
    asks = re.compile(r"what do you think|tell me something|any news about|do you still like")
    # the parents were read, never trained as posts: plain posts do not take their shape
    assert sum(bool(asks.search(p)) for p in posts) <= len(posts) // 10, posts
