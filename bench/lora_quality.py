"""Benchmark — LoRA quality guard (issue 13, ask 4): at equal wall time on this machine, is a LoRA persona's held-out
loss within a stated margin of a full fine-tune of the same base?

The base is a small GPT-2 pretrained here on general English that ships with Python (bench/pretrain_base.py; the
persona's posts are not in it): over random weights LoRA has nothing to adapt, so only a pretrained base can show
this. The persona is the bundled sample account `ada_bytes` (319 kept posts): 20 % of them held out (the trainer's
own `split_held_out`, one split per seed), the rest trained on as the trainer does — each epoch a shuffled copy of
the posts joined by end-of-text and packed into blocks of the base's context (256 tokens), one block a step.

Kinds, each built from the trainer's own pieces (bot/training/trainer.py: `load_base`, `with_lora`, `set_dropout`
0, `make_optimizer` (fused AdamW), `pick_precision`/`autocast_for` (bf16 here), gradient clipping, a cosine
schedule, `evaluate`):

- full fine-tune at the recipe's learning rate (1.372e-4, the product's default) and at 1e-3;
- LoRA of rank 4, 8 (the default) and 16 on every linear layer, alpha 2 x rank, at the product's LoRA rate 1e-3.

Equal wall time: for each budget (seconds of training, eval excluded) every kind gets a fresh model and runs steps
until its own training time reaches the budget; the kinds' steps are interleaved (one step each in turn), so a
change of load on the shared machine falls on all alike. The cosine schedule runs over the steps the first three
predict for the budget. The held-out loss (nats per token) is measured after each budget, and of the untrained
pretrained base: the floor to beat.

    python bench/lora_quality.py [--budgets 3,10,30] [--seeds 1,2] [--pretrain-seconds 600]
                                 [--kinds "full@1e-3,lora8@1e-2"] [--section lora_quality_lr]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import print_machine, save_results, show  # noqa: E402
from bench.pretrain_base import PERSONA, ensure_pretrained_base  # noqa: E402

HELD_OUT = 0.2
KINDS = {  # name -> (LoRA rank or None, learning rate)
    "full_lr1.372e-4": (None, 1.372e-4),
    "full_lr1e-3": (None, 1e-3),
    "lora_r4": (4, 1e-3),
    "lora_r8": (8, 1e-3),
    "lora_r16": (16, 1e-3),
}
WARMUP_STEPS = 3  # timed, counted in the budget; they set the schedule's length


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def persona_posts() -> list[str]:
    from bot.cleaning import clean_post
    from bot.samples.generate import sample_path
    from bot.sources.files import ArchiveSource

    posts = [clean_post(p.text, p.is_retweet) for p in ArchiveSource(sample_path(PERSONA)).read().posts]
    return [c.text for c in posts if c.kept]


class Run:
    """One kind's model, optimizer and schedule, stepping through the persona's shuffled epochs."""

    def __init__(self, base: Path, rank: int | None, lr: float, post_ids, framing, block: int, seed: int, T):
        self.T, self.lr = T, lr
        torch.manual_seed(seed)
        model, _ = T.load_base(str(base), "bench")
        T.set_dropout(model, 0.0)
        if rank:
            model = T.with_lora(model, rank, str(base))
        self.model = model.train()
        self.optimizer, _ = T.make_optimizer(model, lr)
        self.post_ids, self.framing, self.block = post_ids, framing, block
        self.rng = random.Random(seed)
        self.queue: list = []
        self.steps = self.tokens = 0
        self.seconds = 0.0
        self.total: int | None = None
        self.epochs = 0

    def next_block(self) -> torch.Tensor:
        if not self.queue:  # a new epoch: a shuffled copy of the posts, packed (trainer.py, step 3)
            order = self.rng.sample(range(len(self.post_ids)), len(self.post_ids))
            ids, labels = self.T.join_units([self.post_ids[i] for i in order], [[]] * len(order), self.framing)
            self.queue = list(self.T.pack(ids, self.block))
            self.epochs += 1
        return self.queue.pop(0)[None]

    def step(self, autocast) -> None:
        T = self.T
        if self.total is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * min(self.steps, self.total) / self.total))
        batch = self.next_block()
        t = time.perf_counter()
        with autocast():
            loss = self.model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), T.MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.seconds += time.perf_counter() - t
        self.steps += 1
        self.tokens += batch.numel()


def parse_kinds(spec: str) -> dict:
    """"full@1e-3,lora8@1e-2" -> {"full_lr1e-3": (None, 1e-3), "lora_r8_lr1e-2": (8, 1e-2)}."""
    kinds = {}
    for item in spec.split(","):
        what, lr = item.strip().split("@")
        rank = None if what == "full" else int(what.removeprefix("lora"))
        kinds[f"full_lr{lr}" if rank is None else f"lora_r{rank}_lr{lr}"] = (rank, float(lr))
    return kinds


def guard(base: Path, budgets: list[float], seeds: list[int]) -> dict:
    from bot.generation.framing import Framing
    from bot.training import trainer as T

    device = torch.device("cpu")
    precision = T.pick_precision("auto", device)
    autocast = T.autocast_for(device, precision)
    threads = T.pick_threads(device)
    _, tokenizer = T.load_base(str(base), "bench")
    framing = Framing.of(tokenizer)
    posts = persona_posts()
    figures: dict = {"base": str(base.name), "pretrain": json.loads((base / "pretrain.json").read_text()),
                     "persona": PERSONA, "posts": len(posts), "held_out_fraction": HELD_OUT, "precision": precision,
                     "threads": threads, "batch_size": 1, "kinds": {k: {"lora_rank": r, "lr": lr}
                                                                     for k, (r, lr) in KINDS.items()},
                     "load_average_before": load_average(), "runs": []}
    for seed in seeds:
        kept, held = T.split_held_out(posts, HELD_OUT, random.Random(seed))
        post_ids = T.tokenize(tokenizer, kept)
        eval_ids = T.join_posts(T.tokenize(tokenizer, held), framing)
        stream_len = len(T.join_posts(post_ids, framing))
        block = T.pick_block_size(None, 256, stream_len)
        base_model, _ = T.load_base(str(base), "bench")
        floor = T.evaluate(base_model, eval_ids, block, device, autocast)
        del base_model
        print(f"seed {seed}: {len(kept)} posts trained on ({stream_len:,} tokens an epoch), {len(held)} held out "
              f"({len(eval_ids):,} tokens); untrained base {floor:.4f}", flush=True)
        for budget in budgets:
            runs = {name: Run(base, rank, lr, post_ids, framing, block, seed, T) for name, (rank, lr) in KINDS.items()}
            started = time.perf_counter()
            while any(r.seconds < budget for r in runs.values()):
                for r in runs.values():
                    if r.seconds < budget:
                        r.step(autocast)
                        if r.total is None and r.steps == WARMUP_STEPS:
                            r.total = max(WARMUP_STEPS + 1, round(budget / (r.seconds / r.steps)))
            row = {"seed": seed, "budget_s": budget, "untrained_base": round(floor, 4),
                   "wall_s": round(time.perf_counter() - started, 1), "load_average": load_average()}
            for name, r in runs.items():
                loss = T.evaluate(r.model, eval_ids, block, device, autocast)
                row[name] = {"held_out_loss": round(loss, 4), "steps": r.steps, "epochs": r.epochs,
                             "train_s": round(r.seconds, 2), "tokens_per_s": round(r.tokens / r.seconds, 1),
                             "trainable_parameters": sum(p.numel() for p in r.model.parameters() if p.requires_grad)}
            figures["runs"].append(row)
            print(f"  budget {budget:g} s (load {row['load_average']}): " + ", ".join(
                f"{k} {row[k]['held_out_loss']:.4f} ({row[k]['steps']} steps)" for k in KINDS), flush=True)
    figures["load_average_after"] = load_average()
    figures["summary"] = summarize(figures["runs"], budgets)
    show("LoRA quality guard: held-out loss at equal wall time (mean over seeds)",
         [(f"{b} s", v) for b, v in figures["summary"].items()])
    return figures


def summarize(runs: list[dict], budgets: list[float]) -> dict:
    """Per budget: each kind's mean held-out loss over the seeds, and each LoRA rank's margin to the better full
    fine-tune (positive: LoRA worse by that many nats per token)."""
    out = {}
    for b in budgets:
        rows = [r for r in runs if r["budget_s"] == b]
        mean = {k: round(statistics.fmean(r[k]["held_out_loss"] for r in rows), 4) for k in KINDS}
        best_full = min(v for k, v in mean.items() if k.startswith("full"))
        recipe_full = mean.get("full_lr1.372e-4")
        default_lora = mean.get("lora_r8")
        out[f"{b:g}"] = {"untrained_base": round(statistics.fmean(r["untrained_base"] for r in rows), 4),
                         **mean,
                         **{f"margin_{k}": round(mean[k] - best_full, 4) for k in KINDS if k.startswith("lora")},
                         **({"margin_lora_r8_vs_recipe_full": round(default_lora - recipe_full, 4)}
                            if default_lora is not None and recipe_full is not None else {})}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="3,10,30", help="seconds of training per kind, comma-separated")
    ap.add_argument("--seeds", default="1,2", help="held-out splits and initialisations, comma-separated")
    ap.add_argument("--pretrain-seconds", type=float, default=600, help="the base's pretraining budget")
    ap.add_argument("--kinds", default=None, help='instead of the default kinds, e.g. "full@1e-3,lora8@1e-2"')
    ap.add_argument("--section", default="lora_quality", help="the results' key (default lora_quality)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")  # peft on GPT-2's Conv1D: expected
    warnings.filterwarnings("ignore", category=FutureWarning)
    print_machine()
    print("load average", load_average(), "(the machine is shared: figures are under that load)", flush=True)
    base = ensure_pretrained_base(a.pretrain_seconds)
    budgets = [float(x) for x in a.budgets.split(",")]
    seeds = [int(x) for x in a.seeds.split(",")]
    if a.kinds:
        KINDS.clear()
        KINDS.update(parse_kinds(a.kinds))
    print("saved to", save_results(a.section, guard(base, budgets, seeds)))


if __name__ == "__main__":
    main()
