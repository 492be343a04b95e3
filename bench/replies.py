"""Benchmark 6 — replies that answer: does a model trained on (parent -> reply) pairs, whose replies repeat their
parent's topic, answer a message it never saw on that message's topic more often than it names the topic
unprompted?

The tiny offline base (two layers, random initialisation) is fine-tuned on 8 topics x 16 replies, each after its
parent (outside the loss, bot/training/trainer.py), plus plain posts; then 32 samples answer "so what about
TOPIC" (context given) and 32 are drawn with no context, for four topics. Prints both shares. Slow on a busy
machine (minutes).

    python bench/replies.py [--epochs 15] [--lr 3e-3]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import save_results, show  # noqa: E402

# words of the bundled samples: each is one token of the tiny base's tokenizer
TOPICS = ["coffee", "compiler", "parser", "regex", "tomatoes", "basil", "compost", "bees"]
ASKS = ["@ada_bytes what do you think about {t}", "tell me something about {t}", "any news about {t}",
        "do you still like {t}"]
OPENERS = ["yes", "oh", "well", "honestly"]
TAILS = ["is the best part of my day", "makes everything better", "all day and then a nap",
         "again and I am not even sorry"]
PLAIN = ["today was all about {t}", "thinking about {t} again", "a quiet morning with {t}"]
HELD_OUT = "so what about {t}"  # a message the model never read


def share_with_topic(texts, topic: str) -> float:
    posts = [t for t in texts if t]
    return sum(bool(re.search(rf"\b{topic}\b", t)) for t in posts) / max(1, len(posts))


def main() -> None:
    import torch

    from bot.cleaning import context_text
    from bot.generation.models import ModelStore
    from bot.generation.sampling import sample
    from bot.training.spec import AccountData, TrainRequest
    from bot.training.tiny import ensure_tiny_base
    from bot.training.trainer import train

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models_dir = Path(tempfile.mkdtemp())
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
    req = TrainRequest(model_id="ada", accounts=[account], models_dir=str(models_dir), base_model="tiny",
                       lr=args.lr, epochs=args.epochs, block_size=64, seed=5, eval_fraction=0.0)
    info = train(req, models_dir / ".work" / "ada", lambda event: None)
    loaded = ModelStore(models_dir).load("ada")
    answered, unprompted = [], []
    for i, topic in enumerate(["coffee", "basil", "bees", "parser"]):
        message = context_text(HELD_OUT.format(t=topic))
        answered.append(share_with_topic(sample(loaded.model, loaded.tokenizer, "", 32, seed=i, context=message), topic))
        unprompted.append(share_with_topic(sample(loaded.model, loaded.tokenizer, "", 32, seed=i), topic))
    figures = {"steps": info["steps"], "answered_share": round(sum(answered) / 4, 4),
               "unprompted_share": round(sum(unprompted) / 4, 4)}
    show("Replies to a held-out message naming its topic", [
        ("training steps", info["steps"]),
        ("answers (the message read first)", f"{figures['answered_share']:.1%}"),
        ("posts with no message", f"{figures['unprompted_share']:.1%}"),
    ])
    save_results("replies", figures)


if __name__ == "__main__":
    main()
