"""Replies that answer (issue 16, ask 3), end to end on the tiny offline model: an account's replies, each with
the message it answers, are imported from a .jsonl file, trained through a queued job (the training child
process), and answered through the service's reply path (`Mimicbot.areply`, what Discord @mentions use; X
mention replies reach the same `generate(..., context=message)`).

The account's replies repeat the two topic words of their message; the held-out messages name pairs of words
that no training message or reply names together, in a wording no training message has (tests/kit/replies.py).
Answers to them share more of their words than the model's plain posts do. Trained on the same posts without
their messages, the model's answers share no more than its plain posts: the effect is the conditioning's.
Measured (bench/replies.py, README "Replies", 3 seeds): 45.5 % of a held-out message's words against 20.0 % for
plain posts when trained with the messages; 17.8 % against 20.2 % without them. The first test fails when the
message is dropped at generation (measured: 19.0 % against 20.8 %) or when the trainer stops putting the parent
before its reply (17.4 % against 20.1 %).
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from bot.cleaning import context_text
from bot.config import Settings
from bot.service import Mimicbot
from tests.kit.replies import reply_data, shared_share, write_jsonl

pytestmark = pytest.mark.slow

# enough for the tiny two-layer model to learn to copy from what it read: 30 epochs of ~75 blocks of 64
# tokens, 4 a step (~570 steps, 18-30 s on one loaded core); the recipe's lr is far too small for a model
# trained from random weights
HYPER = dict(base_model="tiny", epochs=30, lr=3e-3, batch_size=4, block_size=64, seed=1)
SAMPLES = 8  # per held-out message, answers and plain posts alike


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread, here and in the training child (which reads OMP_NUM_THREADS): on a busy 2-core machine
    two threads of a model this small spend their time waiting for each other (measured: 40 steps in 1.3 s on
    one thread, 28 s on two, load average 7)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained(tmp_path, parents: bool) -> tuple[Mimicbot, str, list[str]]:
    """A service with a model trained on the account's posts (with or without their messages) through a queued
    job; the held-out messages."""
    lines, held_out = reply_data(seed=1)
    bot = Mimicbot(Settings(mimicbot_data_dir=tmp_path / "data", mimicbot_models_dir=tmp_path / "models",
                            _env_file=None))
    bot.fetch_blocking([str(write_jsonl(tmp_path / "ada.jsonl", lines, parents=parents))], handle="ada")
    req = asyncio.run(bot.build_request(["ada"], **HYPER))
    assert sum(1 for a in req.accounts for _ in a.parents) == (sum("parent" in line for line in lines) if parents
                                                               else 0)
    job = bot.run_job(bot.submit(req)["id"])
    assert job["state"] == "succeeded", job
    return bot, req.model_id, held_out


def shares(bot: Mimicbot, model_id: str, held_out: list[str]) -> tuple[float, float, int, int]:
    """(share of each held-out message's words in its answers, the same share in plain posts, how many of each)."""
    answered, plain = [], []
    for i, message in enumerate(held_out):
        answers = asyncio.run(bot.areply(model_id, message, SAMPLES, seed=i)).texts
        posts = asyncio.run(bot.agenerate(model_id, "", SAMPLES, seed=1000 + i)).texts  # a schedule's post
        read = context_text(message)  # the message as the model reads it: "@ada" is dropped
        answered.append((shared_share(read, answers), len(answers)))
        plain.append((shared_share(read, posts), len(posts)))
    mean = lambda rows: sum(s for s, _ in rows) / len(rows)  # noqa: E731
    return mean(answered), mean(plain), sum(n for _, n in answered), sum(n for _, n in plain)


def test_replies_to_a_message_never_read_share_its_words(tmp_path, one_thread):
    bot, model_id, held_out = trained(tmp_path, parents=True)
    trained_pairs = bot.model(model_id)["training"]["accounts"][0]["replies_with_parent"]
    assert trained_pairs > 150  # the card counts the replies trained after their message
    answered, plain, n_answers, n_posts = shares(bot, model_id, held_out)
    print(f"answers share {answered:.1%} of the message's words, plain posts {plain:.1%} ({n_answers} answers, "
          f"{n_posts} posts; trained in {bot.model(model_id)['training']['train_seconds']} s)")
    assert n_answers >= 0.75 * SAMPLES * len(held_out) and n_posts >= 0.75 * SAMPLES * len(held_out)
    # measured 45-46 % against 19.5-21 % over seeds 1-3; without the conditioning both are about 20 %
    assert answered >= plain + 0.15


def test_without_the_messages_in_training_answers_share_no_more_than_posts(tmp_path, one_thread):
    """The control: the same posts, imported without their messages (the replies train as plain posts). The
    model reads the message when it answers, but never learned to use what it reads."""
    bot, model_id, held_out = trained(tmp_path, parents=False)
    answered, plain, _, _ = shares(bot, model_id, held_out)
    print(f"answers share {answered:.1%} of the message's words, plain posts {plain:.1%}")
    assert answered < plain + 0.05
