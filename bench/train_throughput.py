"""Benchmark 1 — training throughput: the huggingtweets recipe (transformers Trainer, fp32, batch 1 of
1,024-token blocks, AdamW, cosine) against mimicbot's trainer, on the same GPT-2-124M-shaped model, the same
data and the same number of trained tokens, in one run. Then a quality guard on the tiny model: held-out
loss after equal tokens, ours against the recipe's.

    python bench/train_throughput.py [--tokens 32768] [--batch-size 4] [--skip-quality]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, gpt2_124m_dir, matmul_peak, sample_posts, print_machine, save_results, show  # noqa: E402
from bot.training import trainer as T  # noqa: E402
from bot.training.spec import AccountData, TrainRequest  # noqa: E402

RECIPE_LR = 1.372e-4
MODELS = CACHE / "models"
TRAINED_ID = "bench-124m"


def flop_per_token(model) -> float:
    """Training FLOPs per token: 6N for the weights plus 12·L·d·T for attention scores (PaLM's estimate)."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.n_positions


def posts_for_tokens(tokenizer, want_tokens: int) -> list[str]:
    """The sample posts, repeated until they hold about `want_tokens` tokens."""
    base = sample_posts()
    per_round = sum(len(ids) + 1 for ids in T.tokenize(tokenizer, base))
    return base * max(1, math.ceil(want_tokens / per_round))


class _Blocks(torch.utils.data.Dataset):
    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def recipe_trainer(model, blocks: torch.Tensor, steps: int, out: str, seed: int = 0):
    """The recipe as huggingtweets ran it: transformers Trainer, fp32, batch 1, AdamW, cosine, no warm-up."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=1, max_steps=steps, learning_rate=RECIPE_LR,
        lr_scheduler_type="cosine", warmup_steps=0, use_cpu=True, report_to=[], save_strategy="no",
        logging_steps=10_000, seed=seed, disable_tqdm=True, dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=_Blocks(blocks))


def throughput(tokens: int, batch_size: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = gpt2_124m_dir()
    tok = AutoTokenizer.from_pretrained(base)
    posts = posts_for_tokens(tok, 100_000)
    stream = T.join_posts(T.tokenize(tok, posts), tok.eos_token_id)
    blocks = T.pack(stream, 1024)
    n_blocks = tokens // 1024
    print(f"data: {len(posts):,} posts, {len(stream):,} tokens, {len(blocks)} blocks; training {n_blocks} blocks "
          f"({n_blocks * 1024:,} tokens) each way", flush=True)

    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    fpt = flop_per_token(model)
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        metrics = recipe_trainer(model, blocks[:n_blocks], n_blocks, out).train().metrics
        base_wall = time.perf_counter() - t
    base_tps = n_blocks * 1024 / metrics["train_runtime"]
    del model

    # ours; the trained model stays in bench/.cache/models/bench-124m for the generation benchmark
    req = TrainRequest(model_id=TRAINED_ID, models_dir=str(MODELS), base_model=str(base), epochs=1,
                       accounts=[AccountData("bench", "Bench", texts=posts)], batch_size=batch_size,
                       max_steps=n_blocks // batch_size, eval_fraction=0.01, seed=0)
    t = time.perf_counter()
    info = T.train(req, MODELS / f".work-{TRAINED_ID}", lambda e: None)
    ours_wall = time.perf_counter() - t
    ours_tps = info["tokens_per_s"]
    figures = {
        "model": "GPT-2 124M-shaped, random weights", "trained_tokens": n_blocks * 1024,
        "flop_per_token": fpt, "peak_gflops_fp32": round(peak32, 1), "peak_gflops_bf16": round(peak16, 1),
        "baseline_tokens_per_s": round(base_tps, 1), "baseline_wall_s": round(base_wall, 1),
        "ours_tokens_per_s": ours_tps, "ours_wall_s": round(ours_wall, 1),
        "ours_precision": info["precision"], "ours_batch_size": batch_size,
        "ours_optimizer": info["hyperparameters"]["optimizer"],
        "ratio": round(ours_tps / base_tps, 2),
        "baseline_fraction_of_fp32_peak": round(base_tps * fpt / 1e9 / peak32, 3),
        "ours_fraction_of_peak": round(ours_tps * fpt / 1e9 / (peak16 if info["precision"] == "bf16" else peak32), 3),
    }
    show("training throughput (124M-shaped)", list(figures.items()))
    return figures


def quality(batch_size: int, seed: int = 0) -> dict:
    """Held-out loss on the tiny model after equal trained tokens: the recipe's Trainer against ours."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bot.training.tiny import ensure_tiny_base

    with tempfile.TemporaryDirectory() as models_dir:
        tiny = ensure_tiny_base(Path(models_dir))
        tok = AutoTokenizer.from_pretrained(tiny)
        posts = sample_posts()
        req = TrainRequest(model_id="bench-tiny", models_dir=models_dir, base_model="tiny",
                           accounts=[AccountData("bench", "Bench", texts=posts)], batch_size=batch_size, seed=seed)
        info = T.train(req, Path(models_dir) / ".work", lambda e: None)
        ours = info["eval"]["loss_after"]
        tokens = info["trained_tokens"]

        # the recipe on the same held-out split (same seed, same split function) and the same token count
        rng = random.Random(seed)
        kept, held = T.split_held_out(posts, req.eval_fraction, rng)
        eot = tok.eos_token_id
        block = min(1024, AutoModelForCausalLM.from_pretrained(tiny).config.n_positions)
        ids = T.tokenize(tok, kept)
        epochs = [T.pack(T.join_posts([ids[i] for i in rng.sample(range(len(ids)), len(ids))], eot), block)
                  for _ in range(req.epochs)]
        blocks = torch.cat(epochs)[: math.ceil(tokens / block)]
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
        with tempfile.TemporaryDirectory() as out:
            recipe_trainer(model, blocks, len(blocks), out, seed).train()
        base = T.evaluate(model, T.join_posts(T.tokenize(tok, held), eot), block, torch.device("cpu"),
                          T.autocast_for(torch.device("cpu"), "fp32"))
    figures = {"trained_tokens_ours": tokens, "trained_tokens_baseline": len(blocks) * block,
               "held_out_loss_baseline": round(base, 4), "held_out_loss_ours": ours,
               "ours_no_worse": ours <= base + 1e-3}
    show("quality guard (tiny model, equal tokens)", list(figures.items()))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=32_768, help="trained tokens for each side (default 32,768)")
    ap.add_argument("--batch-size", type=int, default=TrainRequest.batch_size)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    print_machine()
    figures = {}
    if not a.skip_throughput:
        figures["throughput"] = throughput(a.tokens, a.batch_size)
    if not a.skip_quality:
        figures["quality"] = quality(a.batch_size)
    save_results("training", figures)


if __name__ == "__main__":
    main()
