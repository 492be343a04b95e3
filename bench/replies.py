"""Benchmark 6 — replies that answer: do answers to a message the model never read share more of its words than
the model's plain posts do, and is that the conditioning's doing?

The data is the test's (tests/kit/replies.py, tests/test_replies_answer.py): an account whose 224 replies
repeat the two topic words of the message they answer (112 pairs of 16 words), 6 plain posts naming none, and
8 held-out messages naming pairs never seen together, in a wording no training message has. For each seed the
tiny offline base (two layers, random initialisation) is trained twice through the service, as a person would
(a .jsonl import, a queued job, the training child): once with the messages (the replies train after their
parent, the parent outside the loss), once without them (the baseline: every reply a plain post). Each model
then answers every held-out message 8 times (`Mimicbot.areply`) and writes 8 plain posts per message
(`agenerate` with no opener, as a schedule does). Printed: the mean share of the held-out message's words
(as the model reads it: "so what about X and Y") in the answers and in the plain posts, and the share of
answers naming both topic words. One torch thread (OMP_NUM_THREADS=1, also in the training child): on a busy
2-core machine a model this small trains many times faster on one thread than on two.

    python bench/replies.py [--seeds 1 2 3] [--epochs 30] [--lr 3e-3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported; the training child inherits it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import save_results, show  # noqa: E402
from tests.kit.replies import reply_data, shared_share, words, write_jsonl  # noqa: E402

SAMPLES = 8


def run(seed: int, parents: bool, hyper: dict) -> dict:
    from bot.cleaning import context_text
    from bot.config import Settings
    from bot.service import Mimicbot

    folder = Path(tempfile.mkdtemp(prefix="mimicbot-replies-"))
    lines, held_out = reply_data(seed=seed)
    bot = Mimicbot(Settings(mimicbot_data_dir=folder / "data", mimicbot_models_dir=folder / "models", _env_file=None))
    bot.fetch_blocking([str(write_jsonl(folder / "ada.jsonl", lines, parents=parents))], handle="ada")
    req = asyncio.run(bot.build_request(["ada"], base_model="tiny", seed=seed, **hyper))
    started = time.perf_counter()
    job = bot.run_job(bot.submit(req)["id"])
    if job["state"] != "succeeded":
        raise SystemExit(f"training failed: {job.get('error')}")
    wall = time.perf_counter() - started
    record = bot.model(req.model_id)["training"]
    answered = plain = both = 0.0
    for i, message in enumerate(held_out):
        read = context_text(message)
        answers = asyncio.run(bot.areply(req.model_id, message, SAMPLES, seed=i)).texts
        posts = asyncio.run(bot.agenerate(req.model_id, "", SAMPLES, seed=1000 + i)).texts
        answered += shared_share(read, answers) / len(held_out)
        plain += shared_share(read, posts) / len(held_out)
        topics = words(read) - words("so what about and")
        both += sum(topics <= words(a) for a in answers) / max(1, len(answers)) / len(held_out)
    shutil.rmtree(folder, ignore_errors=True)
    return {"answered": answered, "plain": plain, "both_topics": both, "steps": record["steps"],
            "train_s": record["train_seconds"], "job_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=64)
    args = parser.parse_args()
    hyper = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "block_size": args.block_size}
    load = os.getloadavg()
    rows, figures = [], {"hyperparameters": hyper, "seeds": args.seeds}
    for parents, name in ((True, "with_parents"), (False, "without_parents")):
        results = [run(seed, parents, hyper) for seed in args.seeds]
        mean = {k: round(sum(r[k] for r in results) / len(results), 4) for k in ("answered", "plain", "both_topics")}
        figures[name] = {**mean, "per_seed": results}
        label = "trained with the messages" if parents else "baseline: trained without them"
        each = {k: ", ".join(f"{r[k]:.1%}" for r in results) for k in ("answered", "plain")}
        rows += [(f"{label}: answers", f"{mean['answered']:.1%} of the message's words ({each['answered']})"),
                 (f"{label}: plain posts", f"{mean['plain']:.1%} ({each['plain']})"),
                 (f"{label}: answers naming both topics", f"{mean['both_topics']:.1%}"),
                 (f"{label}: steps, training s", ", ".join(f"{r['steps']} in {r['train_s']} s" for r in results))]
    figures["load_average"] = {"start": round(load[0], 2), "end": round(os.getloadavg()[0], 2)}
    rows.append(("load average (start; end)", f"{load[0]:.1f}; {os.getloadavg()[0]:.1f}"))
    show("Replies to held-out messages: share of the message's words", rows)
    save_results("replies", figures)


if __name__ == "__main__":
    main()
