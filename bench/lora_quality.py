"""Benchmark — LoRA quality guard (issue 13, ask 4): at equal wall time on this machine, is a LoRA persona's held-out
loss within a stated margin of a full fine-tune of the same base?

The base is a small GPT-2 pretrained here on general English that ships with Python (bench/pretrain_base.py; the
persona's posts are not in it): over random weights LoRA has nothing to adapt, so only a pretrained base can show
this. `--shape wide` uses a second, 5x larger base (does a LoRA learning rate carry over between sizes?). The
persona is the bundled sample account `ada_bytes` (319 kept posts, generated from templates), or with `--persona
pyjokes` the 283 hand-written one-line jokes of the `pyjokes` package (posts that repeat much less): 20 % of the
posts held out (the trainer's own `split_held_out`, one split per seed), the rest trained on as the trainer does —
each epoch a shuffled copy of the posts joined by end-of-text and packed into blocks of the base's context (256
tokens), one block a step.

Kinds, each built from the trainer's own pieces (bot/training/trainer.py: `load_base`, `with_lora`, `set_dropout`
0, `make_optimizer` (fused AdamW), `pick_precision`/`autocast_for` (bf16 here), gradient clipping, a cosine
schedule, `evaluate`). By default the product's settings: a full fine-tune at the recipe's learning rate (1.372e-4,
the product's default) and at 1e-3; LoRA of rank 4, 8 (the default) and 16 at the product's LoRA rate (spec.py
LORA_LR) through the product's `with_lora`. `--kinds` names others: "full@LR" or "lora<rank>[+option...]@LR", the
options in LORA_OPTIONS below (an adapter built here with peft's LoraConfig instead of `with_lora`).

Equal wall time: for each budget (seconds of training, eval excluded) every kind gets a fresh model and runs steps
until its own training time reaches the budget; the kinds' steps are interleaved (one step each in turn), so a
change of load on the shared machine falls on all alike. The cosine schedule runs over the steps the first three
predict for the budget. The held-out loss (nats per token) is measured after each budget, and of the untrained
pretrained base: the floor to beat.

    python bench/lora_quality.py [--budgets 3,10,30] [--seeds 1,2] [--pretrain-seconds 600] [--shape wide]
                                 [--persona pyjokes] [--kinds "full@1e-3,lora8+nohead@1e-2"] [--section NAME]
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
from bot.training.spec import LORA_LR, LORA_RANK, RECIPE_LR  # noqa: E402

HELD_OUT = 0.2
KINDS = {  # name -> (LoRA rank or None, learning rate, LoRA options); by default the product's own settings
    "full_lr1.372e-4": (None, RECIPE_LR, ()),
    "full_lr1e-3": (None, 1e-3, ()),
    "lora_r4": (4, LORA_LR, ()),
    "lora_r8": (LORA_RANK, LORA_LR, ()),
    "lora_r16": (16, LORA_LR, ()),
}
# LoRA options a kind may name after its rank ("lora8+head+plus16@2e-3"); none: the product's own `with_lora`
LORA_OPTIONS = {
    "head": "the output layer (lm_head) gets an adapter too (the product's with_lora does since this work)",
    "nohead": "every linear layer but the output layer (peft's all-linear: the product's before this work)",
    "head<N>": "the output layer's adapter has rank N (the others the kind's rank)",
    "headonly": "only the output layer gets an adapter",
    "tie": "peft's ensure_weight_tying: a tied input embedding gets the output layer's adapter too",
    "attn": "only the attention's linear layers",
    "mlp": "only the MLP's linear layers",
    "rs": "rsLoRA: scaling alpha/sqrt(r) instead of alpha/r",
    "a<N>": "alpha N (default 2 x rank)",
    "plus<K>": "LoRA+: the B matrices learn K times faster than the A matrices",
    "pissa": "PiSSA init (principal singular vectors, 4-iteration randomized SVD; its time counts in the budget)",
    "bias": "every bias trains too",
}
PERSONAS = ("ada_bytes", "pyjokes")
WARMUP_STEPS = 3  # timed, counted in the budget; they set the schedule's length


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def persona_posts(persona: str = PERSONA) -> list[str]:
    """The persona's kept posts. `ada_bytes`: the bundled sample account (posts generated from templates, so held-out
    posts share most of their phrases with the trained ones). `pyjokes`: the 283 English one-line jokes the `pyjokes`
    package ships (the `bench` extra installs it), each written by hand, no two from one template: a persona whose
    posts repeat much less. Neither is in the base's tokenizer or pretraining."""
    from bot.cleaning import clean_post

    if persona == "pyjokes":
        try:
            import pyjokes
        except ImportError:
            raise SystemExit("the pyjokes persona needs the pyjokes package: pip install -e '.[bench]'") from None
        texts = list(dict.fromkeys(pyjokes.get_jokes(language="en", category="all")))
        return [c.text for c in (clean_post(t, False) for t in texts) if c.kept]
    from bot.samples.generate import sample_path
    from bot.sources.files import ArchiveSource

    posts = [clean_post(p.text, p.is_retweet) for p in ArchiveSource(sample_path(persona)).read().posts]
    return [c.text for c in posts if c.kept]


def lora_config(model, rank: int, options: tuple[str, ...], base: str):
    """A peft LoraConfig for a kind's options (LORA_OPTIONS); dropout 0 as the product's."""
    from peft import LoraConfig

    from bot.training.trainer import lora_targets

    linear = lora_targets(model)  # every linear layer's name, the output layer's included
    head = model.get_output_embeddings()
    head_name = next(n for n, m in model.named_modules() if m is head).rsplit(".", 1)[-1]
    head_rank = next((int(o[4:]) for o in options if o.startswith("head") and o[4:].isdigit()), None)
    with_head = head_rank is not None or "head" in options or "headonly" in options
    body = [n for n in linear if n != head_name]
    if "attn" in options:
        body = [r".*\.attn\.(c_attn|c_proj)"]
    elif "mlp" in options:
        body = [r".*\.mlp\.(c_fc|c_proj)"]
    if "headonly" in options:
        body = []
    if len(body) == 1 and body[0].startswith(".*"):  # a regex: peft takes one string
        targets: str | list[str] = body[0] + (f"|{head_name}" if with_head else "")
    else:
        targets = body + ([head_name] if with_head else [])
    alpha = next((int(o[1:]) for o in options if o[:1] == "a" and o[1:].isdigit()), 2 * rank)
    patterns = {"rank_pattern": {head_name: head_rank}, "alpha_pattern": {head_name: alpha * head_rank / rank}} \
        if head_rank else {}
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM",
                      base_model_name_or_path=base, use_rslora="rs" in options,
                      init_lora_weights="pissa_niter_4" if "pissa" in options else True,
                      bias="all" if "bias" in options else "none", ensure_weight_tying="tie" in options, **patterns)


def optimizer_for(model, lr: float, options: tuple[str, ...], T):
    """The product's optimizer (fused AdamW), or with `plus<K>` the same AdamW with the B matrices (and biases, as
    peft's create_loraplus_optimizer groups them) at K times the rate."""
    ratio = next((float(o[4:]) for o in options if o.startswith("plus")), None)
    if ratio is None:
        return T.make_optimizer(model, lr)[0]
    a, b = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (b if "lora_B" in name or p.ndim == 1 else a).append(p)
    groups = [{"params": a, "lr": lr}, {"params": b, "lr": lr * ratio}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=T.WEIGHT_DECAY, fused=True)


class Run:
    """One kind's model, optimizer and schedule, stepping through the persona's shuffled epochs."""

    def __init__(self, base: Path, rank: int | None, lr: float, options: tuple[str, ...], post_ids, framing,
                 block: int, seed: int, T):
        from peft import get_peft_model

        self.T, self.lr = T, lr
        torch.manual_seed(seed)
        model, _ = T.load_base(str(base), "bench")
        T.set_dropout(model, 0.0)
        t = time.perf_counter()
        if rank and not options:
            model = T.with_lora(model, rank, str(base))  # the product's adapter
        elif rank:
            model.config._name_or_path = str(base)
            model = get_peft_model(model, lora_config(model, rank, options, str(base)))
        self.model = model.train()
        self.optimizer = optimizer_for(model, lr, options, T)
        for group in self.optimizer.param_groups:
            group["peak_lr"] = group["lr"]
        self.init_s = time.perf_counter() - t  # PiSSA's SVD is training time: it counts in the budget
        self.post_ids, self.framing, self.block = post_ids, framing, block
        self.rng = random.Random(seed)
        self.queue: list = []
        self.steps = self.tokens = 0
        self.seconds = self.init_s if "pissa" in options else 0.0
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
                share = min(self.steps, self.total) / self.total
                group["lr"] = group["peak_lr"] * 0.5 * (1 + math.cos(math.pi * share))
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
    """"full@1e-3,lora8@1e-2,lora8+head+plus16@2e-3" -> {"full_lr1e-3": (None, 1e-3, ()), "lora_r8_lr1e-2":
    (8, 1e-2, ()), "lora_r8+head+plus16_lr2e-3": (8, 2e-3, ("head", "plus16"))}."""
    kinds = {}
    for item in spec.split(","):
        what, lr = item.strip().split("@")
        what, *options = what.split("+")
        for o in options:
            if o not in LORA_OPTIONS and not (o[:1] == "a" and o[1:].isdigit()) and not (
                    o.startswith("plus") and o[4:].replace(".", "", 1).isdigit()) and not (
                    o.startswith("head") and o[4:].isdigit()):
                raise SystemExit(f"unknown LoRA option {o!r} in {item!r}; options: {', '.join(LORA_OPTIONS)}")
        rank = None if what == "full" else int(what.removeprefix("lora"))
        name = f"full_lr{lr}" if rank is None else "+".join([f"lora_r{rank}", *options]) + f"_lr{lr}"
        kinds[name] = (rank, float(lr), tuple(options))
    return kinds


def guard(base: Path, budgets: list[float], seeds: list[int], persona: str = PERSONA) -> dict:
    from bot.generation.framing import Framing
    from bot.training import trainer as T

    device = torch.device("cpu")
    precision = T.pick_precision("auto", device)
    autocast = T.autocast_for(device, precision)
    threads = T.pick_threads(device)
    _, tokenizer = T.load_base(str(base), "bench")
    framing = Framing.of(tokenizer)
    posts = persona_posts(persona)
    figures: dict = {"base": str(base.name), "pretrain": json.loads((base / "pretrain.json").read_text()),
                     "persona": persona, "posts": len(posts), "held_out_fraction": HELD_OUT, "precision": precision,
                     "threads": threads, "batch_size": 1,
                     "kinds": {k: {"lora_rank": r, "lr": lr, "options": list(o)} for k, (r, lr, o) in KINDS.items()},
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
            runs = {name: Run(base, rank, lr, options, post_ids, framing, block, seed, T)
                    for name, (rank, lr, options) in KINDS.items()}
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
                             "train_s": round(r.seconds, 2), "init_s": round(r.init_s, 3),
                             "tokens_per_s": round(r.tokens / r.seconds, 1),
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
    """Per budget: each kind's mean held-out loss over the seeds, and each LoRA kind's margin to the best full
    fine-tune and to the product's (the recipe's rate) where it ran (positive: LoRA worse by that many nats per
    token)."""
    out = {}
    for b in budgets:
        rows = [r for r in runs if r["budget_s"] == b]
        mean = {k: round(statistics.fmean(r[k]["held_out_loss"] for r in rows), 4) for k in KINDS}
        fulls = [v for k, v in mean.items() if k.startswith("full")]
        best_full = min(fulls) if fulls else None
        recipe_full = mean.get("full_lr1.372e-4")
        loras = [k for k in KINDS if k.startswith("lora")]
        out[f"{b:g}"] = {"untrained_base": round(statistics.fmean(r["untrained_base"] for r in rows), 4),
                         **mean,
                         **({f"margin_{k}": round(mean[k] - best_full, 4) for k in loras}
                            if best_full is not None else {}),
                         **({f"margin_{k}_vs_recipe_full": round(mean[k] - recipe_full, 4) for k in loras}
                            if recipe_full is not None else {})}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="3,10,30", help="seconds of training per kind, comma-separated")
    ap.add_argument("--seeds", default="1,2", help="held-out splits and initialisations, comma-separated")
    ap.add_argument("--pretrain-seconds", type=float, default=600, help="the base's pretraining budget")
    ap.add_argument("--kinds", default=None, help='instead of the default kinds, e.g. "full@1e-3,lora8@1e-2"')
    ap.add_argument("--section", default="lora_quality", help="the results' key (default lora_quality)")
    ap.add_argument("--persona", default=PERSONA, choices=PERSONAS, help=f"whose posts (default {PERSONA})")
    ap.add_argument("--shape", default="small", help="the base's shape (bench/pretrain_base.py SHAPES; default small)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")  # peft on GPT-2's Conv1D: expected
    warnings.filterwarnings("ignore", category=FutureWarning)
    print_machine()
    print("load average", load_average(), "(the machine is shared: figures are under that load)", flush=True)
    base = ensure_pretrained_base(a.pretrain_seconds, shape=a.shape)
    budgets = [float(x) for x in a.budgets.split(",")]
    seeds = [int(x) for x in a.seeds.split(",")]
    if a.kinds:
        KINDS.clear()
        KINDS.update(parse_kinds(a.kinds))
    print("saved to", save_results(a.section, guard(base, budgets, seeds, a.persona)))


if __name__ == "__main__":
    main()
