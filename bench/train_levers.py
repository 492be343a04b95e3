"""Benchmark — training on a CPU without bf16 (issue 14, ask 2): each lever alone, and combinations, against the
recipe's step, in fp32, interleaved round by round in one run.

1. **Throughput** (GPT-2-124M-shaped model, fp32 — what a CPU without native bf16 trains in). Every variant is
   built first; then, round after round, each runs `--steps` optimizer steps of 1,024 tokens (the order rotates
   each round), so a change of load on this shared machine falls on every variant alike. The baseline is the
   recipe's step (the transformers Trainer's: fp32, GPT-2's dropout 0.1, fused AdamW — the Trainer's default
   optimizer in this transformers —, clipping at 1.0, one 1,024-token block); "ours" is mimicbot's fp32 step before
   this benchmark (dropout 0, one 1,024-token block; the trainer now takes `block_256`'s). The levers, each alone on
   top of "ours":
   - threads: 1 instead of every core; affinity: OMP_PROC_BIND=close OMP_PLACES=cores (a child process per round,
     since OpenMP reads them at start; `taskset` over both cores of a 2-core machine changes nothing);
   - frozen tied embedding: GPT-2's wte is also its output layer (38.6 M of 124 M weights): no weight gradient for
     the 50,257 × 768 output matmul, no AdamW update and no clipping norm over it;
   - frozen embedding and the bottom half of the blocks: no backward pass at all below layer 6;
   - LoRA rank 8 and 16 (the trainer's --lora; tokens/s only — its quality is issue 13's);
   - blocks of 256 tokens, 4 a step (the same 1,024 tokens a step): posts are ~20 tokens, and attention's cost
     grows with the block;
   - torch.compile (COMPILED: the whole model, or each transformer block; full and LoRA r8): the first step's extra
     time (compiling, with an empty inductor cache) and, in a second process, with the first one's cache on disk.
   Tokens/s, the ratio to the recipe, and the fraction of the fp32 matmul peak under each variant's FLOP model
   (PaLM's count: 6 FLOPs per weight per token, less what the variant skips, plus 12·layers·width·block for
   attention).
2. **Quality** (`--quality`): held-out loss at equal tokens, on the tiny model (bot/training/tiny.py), for the
   levers that change the math, 3 seeds: from its random weights, and from a "pretrained" tiny base (trained first
   on the other sample account's posts, so that its embedding has learned something, as GPT-2's has).
3. `--capped-avx2`: the throughput run again in a child with every library capped to AVX2
   (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2): the closest this machine comes
   to an AVX2 CPU; kept apart in the results (`training_levers_capped_avx2`).

4. `--isolated`: each variant alone in a fresh process, the variants alternating round by round (what one
   training job sees: no other model's steps between its own).

    python bench/train_levers.py [--rounds 3] [--steps 2] [--only recipe,ours,...] [--quality] [--capped-avx2]
                                 [--isolated]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, gpt2_124m_dir, machine, matmul_peak, print_machine, sample_posts, save_results, show  # noqa: E402
from bot.training import trainer as T  # noqa: E402

RECIPE_LR = 1.372e-4
AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
AFFINITY = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the variants -----------------------------------------------------------------------------------------------
# name -> (model kind, threads (None: every core), block, blocks a step, runs in a child with this env)
VARIANTS = {
    "recipe": ("recipe", None, 1024, 1, None),
    "ours": ("full", None, 1024, 1, None),
    "threads_1": ("full", 1, 1024, 1, None),
    "threads_2": ("full", 2, 1024, 1, None),
    "affinity_close": ("full", None, 1024, 1, AFFINITY),
    "frozen_wte": ("frozen_wte", None, 1024, 1, None),
    "frozen_wte_half": ("frozen_half", None, 1024, 1, None),
    "lora_r8": ("lora8", None, 1024, 1, None),
    "lora_r16": ("lora16", None, 1024, 1, None),
    "block_256": ("full", None, 256, 4, None),
    "frozen_wte+block_256": ("frozen_wte", None, 256, 4, None),
    "frozen_wte_half+block_256": ("frozen_half", None, 256, 4, None),
    "compiled+block_256": ("full", None, 256, 4, None),
    "compiled_blocks+block_256": ("full", None, 256, 4, None),
    "compiled_autotune+block_256": ("full", None, 256, 4, None),
    "lora_r8+block_256": ("lora8", None, 256, 4, None),
    "compiled_lora_r8+block_256": ("lora8", None, 256, 4, None),
    "compiled_blocks_lora_r8+block_256": ("lora8", None, 256, 4, None),
}
# variant -> how torch.compile is applied (dynamic=False: a step's blocks always have one shape):
#   "model": the whole model, loss included (the labels go in, HF computes the loss inside forward), forward and
#            backward (AOTAutograd); "blocks": each transformer block on its own (regional compilation: the 12 blocks
#            share one compiled graph, so it compiles once); "autotune": the whole model, mode
#            "max-autotune-no-cudagraphs" (inductor tries its own C++ GEMM templates against aten's)
COMPILED = {
    "compiled+block_256": "model",
    "compiled_blocks+block_256": "blocks",
    "compiled_autotune+block_256": "autotune",
    "compiled_lora_r8+block_256": "model",
    "compiled_blocks_lora_r8+block_256": "blocks",
}


def freeze_bottom(model, layers: int) -> None:
    """The tied embedding, the position embedding and the bottom `layers` blocks frozen."""
    model.transformer.wte.weight.requires_grad_(False)
    model.transformer.wpe.weight.requires_grad_(False)
    for block in model.transformer.h[:layers]:
        block.requires_grad_(False)


def build(kind: str, base: Path):
    """(model, optimizer) of one kind, as the trainer builds them (its own functions, where it has them)."""
    model, _ = T.load_base(str(base), "bench")
    if kind == "recipe":
        pass  # GPT-2's own dropout 0.1; the Trainer's default optimizer is fused AdamW, as make_optimizer's
    else:
        T.set_dropout(model, 0.0)
    if kind == "frozen_wte":
        T.freeze_tied_embedding(model)
    elif kind == "frozen_half":
        freeze_bottom(model, model.config.n_layer // 2)
    elif kind.startswith("lora"):
        model = T.with_lora(model, int(kind[4:]), str(base))
    model.train()
    return model, T.make_optimizer(model, 1e-3 if kind.startswith("lora") else RECIPE_LR)[0]


def transformer_blocks(model) -> list:
    """The model's repeated blocks (the classes transformers names in `_no_split_modules`: GPT2Block, ...), under a
    peft wrapper or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [m for m in base.modules() if type(m).__name__ in names]


def compiled(model, how: str):
    """The module a compiled variant steps with (its parameters are `model`'s)."""
    if how == "blocks":  # regional compilation: each block's forward
        for block in transformer_blocks(model):
            block.forward = torch.compile(block.forward, dynamic=False)
        return model
    return torch.compile(model, dynamic=False, mode="max-autotune-no-cudagraphs" if how == "autotune" else None)


def make(name: str, base: Path):
    """(the module to step with, optimizer) of one variant."""
    model, optimizer = build(VARIANTS[name][0], base)
    return (compiled(model, COMPILED[name]) if name in COMPILED else model), optimizer


def model_key(name: str) -> str:
    """Variants with the same key share one model (and optimizer): the same kind, compiled the same way."""
    return VARIANTS[name][0] + (f"|{COMPILED[name]}" if name in COMPILED else "")


def train_step(model, optimizer, batch: torch.Tensor) -> float:
    """One optimizer step as the trainer's loop does it (fp32: no autocast, no scaler; no KV cache: a training
    pass reads none, and transformers' cache object, updated block by block, made a compiled block recompile for
    each of the 12 layers until dynamo's limit of 8 left the rest uncompiled)."""
    loss = model(input_ids=batch, labels=batch, use_cache=False).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], T.MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def flop_per_token(name: str, cfg, n_params: int, lora_params: int = 0) -> float:
    """Training FLOPs per token under the variant's model (PaLM's count; attention counted without the causal
    half): 6 per weight (2 forward, 2 for the input's gradient, 2 for the weight's), less what is skipped."""
    kind, _, block, _, _ = VARIANTS[name]
    L, d, V = cfg.n_layer, cfg.n_embd, cfg.vocab_size
    per_layer = 12 * d * d  # a block's matmul weights
    attn = 12 * L * d * block  # QK^T and AV, forward (4·d·block per layer) and backward (8·d·block)
    full = 6 * n_params + attn
    if kind in ("full", "recipe"):
        return full
    if kind == "frozen_wte":
        return full - 2 * V * d  # the output layer's weight gradient
    if kind == "frozen_half":
        k = L // 2
        return full - 2 * V * d - k * (4 * per_layer + 8 * d * block)  # no backward at all below layer k
    # LoRA: no base weight gradient anywhere; the adapters' own 6 per weight
    return 4 * n_params + attn + 6 * lora_params


def data_blocks(base: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    stream = T.join_posts(T.tokenize(tok, sample_posts()), tok.eos_token_id)
    return T.pack(stream, 1024)


def batch_for(name: str, blocks: torch.Tensor, i: int) -> torch.Tensor:
    _, _, block, per_step, _ = VARIANTS[name]
    return blocks[i % len(blocks)].reshape(per_step, block)  # the same 1,024 tokens, as 4 blocks of 256 or 1


def child(name: str, steps: int, threads: int | None = None) -> None:
    """A variant in its own process (OpenMP settings read at start; a compiled variant's second job, which finds
    the first one's compiled graphs in the inductor cache): one warm-up step, then `steps` timed steps; prints
    {"first_step_s", "times"} as JSON on the last line."""
    base = gpt2_124m_dir()
    blocks = data_blocks(base)
    torch.set_num_threads(VARIANTS[name][1] or threads or os.cpu_count() or 1)
    model, optimizer = make(name, base)
    t = time.perf_counter()
    train_step(model, optimizer, batch_for(name, blocks, 0))
    first = time.perf_counter() - t
    times = []
    for i in range(steps):
        t = time.perf_counter()
        train_step(model, optimizer, batch_for(name, blocks, i + 1))
        times.append(time.perf_counter() - t)
    print(json.dumps({"first_step_s": first, "times": times}))


def run_child(name: str, steps: int, threads: int | None, env: dict | None = None) -> dict:
    args = [sys.executable, __file__, "--child", name, "--steps", str(steps),
            *(["--threads", str(threads)] if threads else [])]
    out = subprocess.run(args, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} failed in its child:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(names: list[str], rounds: int, steps: int, threads_all: int | None = None) -> dict:
    base = gpt2_124m_dir()
    blocks = data_blocks(base)
    cores = threads_all or os.cpu_count() or 1  # --threads: every variant but the threads lever on that many
    torch.set_num_threads(cores)
    # the fp32 matmul peak on the threads the variants use, measured again each round: the best is the machine's
    peaks = [machine()["fp32_gflops"]] if cores == torch.get_num_threads() == (os.cpu_count() or 1) else []
    figures: dict = {"model": "GPT-2 124M-shaped, random weights", "precision": "fp32", "tokens_per_step": 1024,
                     "threads": cores,
                     "rounds": rounds, "timed_steps_per_round": steps,
                     "load_average_before": load_average()}
    models: dict[str, tuple] = {}
    for name in names:
        if VARIANTS[name][4] is None and model_key(name) not in models:
            models[model_key(name)] = make(name, base)
    times: dict[str, list[float]] = {n: [] for n in names}
    # warm-up: one step each (the optimizer's state, the allocator's pools; a compiled variant compiles here, with
    # an empty inductor cache: main() points TORCHINDUCTOR_CACHE_DIR at a fresh folder)
    first_step: dict[str, float] = {}
    for name in names:
        kind, threads, _, _, env = VARIANTS[name]
        if env is None:
            torch.set_num_threads(threads or cores)
            t = time.perf_counter()
            train_step(*models[model_key(name)], batch_for(name, blocks, 0))
            first_step[name] = time.perf_counter() - t
            print(f"  first step of {name}: {first_step[name]:.1f} s", flush=True)
    torch.set_num_threads(cores)
    print("built and warmed up:", ", ".join(names), "| load", load_average(), flush=True)
    for r in range(rounds):
        torch.set_num_threads(cores)
        peaks.append(matmul_peak(torch.float32, seconds=1.0))
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            kind, threads, _, _, env = VARIANTS[name]
            if env is not None:
                times[name] += run_child(name, steps, threads_all, env)["times"]
                continue
            torch.set_num_threads(threads or cores)
            for i in range(steps):
                t = time.perf_counter()
                train_step(*models[model_key(name)], batch_for(name, blocks, r * steps + i + 1))
                times[name].append(time.perf_counter() - t)
            torch.set_num_threads(cores)
        print(f"round {r + 1}/{rounds}:", {n: round(1024 * steps / sum(times[n][-steps:]), 1) for n in names},
              "| load", load_average(), flush=True)
    # a second job: a fresh process compiling the same variant again, with the first one's inductor cache (FX graph
    # and AOTAutograd caches) on disk, as a second training job on the same machine would find it
    second_job = {}
    for name in names:
        if name in COMPILED:
            second_job[name] = run_child(name, 1, threads_all)["first_step_s"]
            print(f"  first step of {name} in a second process, inductor cache warm: {second_job[name]:.1f} s",
                  flush=True)
    figures["load_average_after"] = load_average()
    peak = max(peaks)
    figures["fp32_peak_gflops"] = round(peak, 1)
    figures["fp32_matmul_gflops_each_round"] = [round(p, 1) for p in peaks]
    # a loaded model of each kind for its parameter counts (child variants: counted on a fresh build)
    recipe_tps = None
    for name in names:
        model = models[model_key(name)][0] if model_key(name) in models else build(VARIANTS[name][0], base)[0]
        cfg = model.config
        n_all = sum(p.numel() for p in model.parameters())
        lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
        flop = flop_per_token(name, cfg, n_all - lora, lora)
        tps = 1024 * len(times[name]) / sum(times[name])
        recipe_tps = tps if name == "recipe" else recipe_tps
        figures[name] = {"tokens_per_s": round(tps, 1), "step_s_median": round(statistics.median(times[name]), 2),
                         "gflop_per_token": round(flop / 1e9, 3),
                         "fraction_of_fp32_peak": round(tps * flop / 1e9 / peak, 3),
                         "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                         "step_s": [round(t, 2) for t in times[name]]}
        if name in first_step:  # what the first step costs beyond a steady one: compiling, for a compiled variant
            figures[name]["first_step_s"] = round(first_step[name], 1)
            figures[name]["first_step_extra_s"] = round(first_step[name] - statistics.median(times[name]), 1)
        if name in second_job:
            figures[name]["first_step_s_second_job"] = round(second_job[name], 1)
            figures[name]["first_step_extra_s_second_job"] = round(second_job[name] - statistics.median(times[name]), 1)
    if recipe_tps:
        for name in names:
            figures[name]["ratio_to_recipe"] = round(figures[name]["tokens_per_s"] / recipe_tps, 2)
            # the same ratio round by round (each round's steps against the recipe's in that round), median: less
            # moved by a change of load between rounds than the ratio of the totals
            per_round = [sum(times["recipe"][r * steps:(r + 1) * steps]) / sum(times[name][r * steps:(r + 1) * steps])
                         for r in range(rounds)]
            figures[name]["ratio_to_recipe_median_of_rounds"] = round(statistics.median(per_round), 2)
    show("training levers, fp32, 124M-shaped (tokens/s; ratio to the recipe; fraction of the fp32 peak)",
         [(n, f"{figures[n]['tokens_per_s']:>6} tok/s  {figures[n].get('ratio_to_recipe', '-')}× "
              f"(median of rounds {figures[n].get('ratio_to_recipe_median_of_rounds', '-')}×)  "
              f"{figures[n]['fraction_of_fp32_peak']:.0%} of peak  ({figures[n]['gflop_per_token']} GFLOP/token)"
              + (f"  first step +{figures[n]['first_step_extra_s']} s" if "first_step_extra_s" in figures[n] else "")
              + (f" (second job +{figures[n]['first_step_extra_s_second_job']} s)"
                 if "first_step_extra_s_second_job" in figures[n] else ""))
          for n in names] + [("load average before / after",
                              f"{figures['load_average_before']} / {figures['load_average_after']}")])
    return figures


def isolated(names: list[str], rounds: int, steps: int, threads: int | None = None) -> dict:
    """Each variant alone in a fresh process (one warm-up step, then `steps` timed), the variants taking turns
    round by round: no other model's step between two of its own (interleaved variants share the allocator and
    the caches, which can favour one kind of step). A compiled variant's first round compiles with an empty
    inductor cache, later rounds find it there."""
    figures: dict = {"model": "GPT-2 124M-shaped, random weights", "precision": "fp32", "tokens_per_step": 1024,
                     "mode": "isolated: each variant alone in a fresh process, alternating", "rounds": rounds,
                     "timed_steps_per_round": steps, "load_average_before": load_average()}
    times: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = run_child(name, steps, threads)
            times[name] += out["times"]
            first[name].append(round(out["first_step_s"], 1))
        print(f"round {r + 1}/{rounds}:", {n: round(1024 * steps / sum(times[n][-steps:]), 1) for n in names},
              "| load", load_average(), flush=True)
    figures["load_average_after"] = load_average()
    for name in names:
        figures[name] = {"tokens_per_s": round(1024 * len(times[name]) / sum(times[name]), 1),
                         "step_s_median": round(statistics.median(times[name]), 2),
                         "step_s": [round(t, 2) for t in times[name]], "first_step_s_each_round": first[name]}
    for name in names:
        figures[name]["ratio_to_first"] = round(figures[name]["tokens_per_s"] / figures[names[0]]["tokens_per_s"], 2)
    show(f"isolated processes, ratio to {names[0]}",
         [(n, f"{figures[n]['tokens_per_s']:>6} tok/s  {figures[n]['ratio_to_first']}×  median step "
              f"{figures[n]['step_s_median']} s  first steps {figures[n]['first_step_s_each_round']}")
          for n in names] + [("load average before / after",
                              f"{figures['load_average_before']} / {figures['load_average_after']}")])
    return figures


# -- 2. quality ------------------------------------------------------------------------------------------------

QUALITY = {  # name -> (dropout, freeze: None | "wte" | "half", block divisor (blocks a step))
    "recipe": (0.1, None, 1),
    "ours": (0.0, None, 1),
    "frozen_wte": (0.0, "wte", 1),
    "frozen_wte_half": (0.0, "half", 1),
    "block_quarter": (0.0, None, 4),
    "frozen_wte+block_quarter": (0.0, "wte", 4),
    "frozen_wte_half+block_quarter": (0.0, "half", 4),
    "compiled+block_quarter": (0.0, None, 4),  # torch.compile of each block, as the trainer: the same math, fused
}


def fine_tune(base: Path, tok, posts: list[str], held: list[str], name: str, seed: int, epochs: int, lr: float,
              pretrain: bool = False):
    """The trainer's data and loop (fp32) on the tiny model under one variant; returns (model, held-out loss at
    the model's context, held-out loss at a quarter of it)."""
    dropout, freeze, per_step = QUALITY[name]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, _ = T.load_base(str(base), "bench")
    T.set_dropout(model, dropout)
    if freeze == "wte":
        T.freeze_tied_embedding(model)
    elif freeze == "half":
        freeze_bottom(model, model.config.n_layer // 2)
    context = model.config.n_positions
    block = context // per_step
    eot = tok.eos_token_id
    ids = T.tokenize(tok, posts)
    epochs_blocks = [T.pack(T.join_posts([ids[i] for i in rng.sample(range(len(ids)), len(ids))], eot), context)
                     for _ in range(epochs)]
    steps = sum(len(b) for b in epochs_blocks)
    optimizer, _ = T.make_optimizer(model, lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    if name.startswith("compiled"):
        compiled(model, "blocks")
    for blocks in epochs_blocks:
        for b in blocks:
            train_step(model, optimizer, b.reshape(per_step, block))  # the same tokens a step for every variant
            schedule.step()
    for b in transformer_blocks(model):
        b.__dict__.pop("forward", None)  # evaluated eagerly
    held_ids = T.join_posts(T.tokenize(tok, held), eot)
    cpu, fp32 = torch.device("cpu"), T.autocast_for(torch.device("cpu"), "fp32")
    return model, T.evaluate(model, held_ids, context, cpu, fp32), T.evaluate(model, held_ids, context // 4, cpu, fp32)


def pretrained_tiny(models_dir: Path) -> Path:
    """The tiny model trained (every weight, 8 epochs, lr 1e-3) on ada_bytes' posts: a base whose embedding has
    learned the tokens, standing for a pretrained GPT-2; the fine-tunes then learn grace_gardens'."""
    out = CACHE / "tiny-pretrained-ada"
    if (out / "config.json").exists():
        return out
    from transformers import AutoTokenizer

    tiny = T.ensure_tiny_base(models_dir)
    tok = AutoTokenizer.from_pretrained(tiny)
    model, _, _ = fine_tune(tiny, tok, account_posts("ada_bytes"), account_posts("ada_bytes")[:5], "ours", 0, 8, 1e-3)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def account_posts(handle: str) -> list[str]:
    from bot.cleaning import clean_post
    from bot.samples.generate import sample_path
    from bot.sources.files import ArchiveSource

    kept = [clean_post(p.text, p.is_retweet) for p in ArchiveSource(sample_path(handle)).read().posts]
    return [c.text for c in kept if c.kept]


def quality(seeds: int, names: list[str]) -> dict:
    from transformers import AutoTokenizer

    torch.set_num_threads(1)  # the tiny model: one thread is faster than two on a busy machine (bench/README.md)
    figures: dict = {"model": "tiny (2 layers, 128 wide, 256 context), fp32", "seeds": seeds,
                     "load_average_before": load_average()}
    models_dir = CACHE / "models"
    tiny = T.ensure_tiny_base(models_dir)
    for base_name, base, posts, epochs in (("random_base", tiny, sample_posts(), 4),
                                           ("pretrained_base", pretrained_tiny(models_dir),
                                            account_posts("grace_gardens"), 4)):
        tok = AutoTokenizer.from_pretrained(base)
        results: dict = {}
        for seed in range(seeds):
            kept, held = T.split_held_out(posts, 0.1, random.Random(seed))
            for name in names:
                _, loss, loss_short = fine_tune(base, tok, kept, held, name, seed, epochs, RECIPE_LR)
                results.setdefault(name, []).append((loss, loss_short))
            print(base_name, "seed", seed, {n: round(v[-1][0], 4) for n, v in results.items()},
                  "| load", load_average(), flush=True)
        section = {"epochs": epochs, "lr": RECIPE_LR, "trained_posts_per_seed": len(kept)}
        for name, losses in results.items():
            section[name] = {"held_out_loss": round(statistics.mean(x for x, _ in losses), 4),
                             "per_seed": [round(x, 4) for x, _ in losses],
                             "held_out_loss_quarter_context": round(statistics.mean(y for _, y in losses), 4)}
        figures[base_name] = section
        show(f"held-out loss at equal tokens, tiny model, {base_name} (mean of {seeds} seeds; lower is better)",
             [(n, f"{section[n]['held_out_loss']}  (at a quarter of the context: "
                  f"{section[n]['held_out_loss_quarter_context']})  seeds {section[n]['per_seed']}")
              for n in results])
    figures["load_average_after"] = load_average()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed steps of each variant a round")
    ap.add_argument("--only", help="comma-separated variants (recipe first); default: all (of --quality's with it)")
    ap.add_argument("--threads", type=int, help="torch threads for every variant but threads_* (default: every core)")
    ap.add_argument("--quality", action="store_true", help="the quality section only")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--capped-avx2", action="store_true", help="re-run in a child with the libraries capped to AVX2")
    ap.add_argument("--isolated", action="store_true", help="each variant alone in a fresh process, alternating")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--section", default="training_levers", help="the results section (default: training_levers, "
                    "training_levers_quality with --quality)")
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.steps, a.threads)
    only = [n.strip() for n in (a.only or ",".join(QUALITY if a.quality else VARIANTS)).split(",") if n.strip()]
    if a.capped_avx2:
        args = [sys.executable, __file__, "--rounds", str(a.rounds), "--steps", str(a.steps), "--only", ",".join(only),
                "--section", f"{a.section}_capped_avx2", *(["--isolated"] if a.isolated else []), *(["--threads", str(a.threads)] if a.threads else [])]
        sys.exit(subprocess.run(args, env={**os.environ, **AVX2_CAP}).returncode)
    if a.section.endswith("capped_avx2"):
        print("libraries capped to AVX2:", " ".join(f"{k}={v}" for k, v in AVX2_CAP.items()))
    print_machine()
    print("load average", load_average(), flush=True)
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        # compiled variants compile with an empty inductor cache, as a first training job on a machine does (the
        # default folder, /tmp/torchinductor_<user>, would hold earlier runs' graphs); children inherit it
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache)
        if a.quality:
            section = "training_levers_quality" if a.section == "training_levers" else a.section
            save_results(section, quality(a.seeds, only))
            return
        figures = (isolated if a.isolated else throughput)(only, a.rounds, a.steps, a.threads)
    if a.section.endswith("capped_avx2"):
        figures["capped"] = AVX2_CAP
    save_results(a.section, figures)


if __name__ == "__main__":
    main()
