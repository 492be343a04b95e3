"""Benchmark — LoRA personas (issue 13): training speed, memory of many personas over one base, switch latency.

1. **Training throughput**: mimicbot's training step on the GPT-2-124M-shaped model, the same data and tokens,
   as a full fine-tune (the baseline, the recipe's way) and as LoRA adapters of rank 4, 8 and 16. Target: LoRA at
   least 1.3x the full fine-tune's tokens/s on a CPU without bf16.
2. **Memory**: a fresh process per count loads 1, 10 and 50 LoRA personas (rank 8, random adapters) over one
   124M base through the product's model store and cache; the baseline is a fresh process that loads one whole
   124M model the same way. Resident memory (VmRSS) is measured after loading and one forward pass (safetensors
   maps the weights lazily: before a pass, RSS misses most of them), less the process's memory once torch and
   transformers are imported. The cache's own count (parameter bytes, each base once) is given beside it. Target: 50 personas under 1.5x the memory of one whole model.
3. **Persona switch**: in the 10- and 50-persona processes, 300 requests to random personas: the cache hit and the
   adapter switch (`activate`, what a request does before sampling), p50/p99; against it, the load of a whole
   model (the only way to change persona when each is a whole model). That the switched adapter is the one used
   is proven by tests/test_bases.py (logits equal to the adapter loaded alone).
   Target: p99 under 50 ms.

    python bench/lora.py [--steps 6] [--skip-train] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, gpt2_124m_dir, print_machine, sample_posts, save_results, show  # noqa: E402

PERSONAS = CACHE / "lora-personas"
COUNTS = (1, 10, 50)
RANKS = (4, 8, 16)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- 1. training throughput -----------------------------------------------------------------------------------


def throughput(steps: int) -> dict:
    """The trainer's own loop (bot/training/trainer.py: its base loading, LoRA wrapping, fused AdamW, clipping)
    for `steps` optimizer steps of one 1,024-token block after one warm-up step, fp32 (a CPU without bf16), for
    the full model and for LoRA at each rank. The trainer's eval and samples are left out: they are the same
    for both and not training."""
    from bot.training import trainer as T

    base = gpt2_124m_dir()
    tok = __import__("transformers").AutoTokenizer.from_pretrained(base)
    stream = T.join_posts(T.tokenize(tok, sample_posts()), tok.eos_token_id)
    blocks = T.pack(stream, 1024)
    figures: dict = {"model": "GPT-2 124M-shaped, random weights", "precision": "fp32", "block_size": 1024,
                     "batch_size": 1, "timed_steps": steps, "load_average_before": load_average()}
    T.pick_threads(torch.device("cpu"))
    # every kind is built first, then their steps are interleaved (full, r4, r8, r16, full, ...): the machine is
    # shared, and a change of load then falls on every kind alike
    runs = {}
    for name, rank in [("full", None), *((f"lora_r{r}", r) for r in RANKS)]:
        model, _ = T.load_base(str(base), "bench")
        T.set_dropout(model, 0.0)
        if rank:
            model = T.with_lora(model, rank, str(base))
        model.train()
        runs[name] = (model, T.make_optimizer(model, 1e-3 if rank else 1.372e-4)[0], [])
    for i in range(steps + 1):
        batch = blocks[i % len(blocks)][None]
        for name, (model, optimizer, times) in runs.items():
            t = time.perf_counter()
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), T.MAX_GRAD_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t)
        print("round", i, {k: round(v[2][-1], 2) for k, v in runs.items()}, "load", load_average(), flush=True)
    for name, (model, _, times) in runs.items():
        timed = times[1:]  # the first step warms up
        figures[name] = {"tokens_per_s": round(1024 * len(timed) / sum(timed), 1),
                         "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    figures["load_average_after"] = load_average()
    for r in RANKS:
        figures[f"lora_r{r}"]["speedup_vs_full"] = round(figures[f"lora_r{r}"]["tokens_per_s"]
                                                         / figures["full"]["tokens_per_s"], 2)
    show("training throughput: full fine-tune vs LoRA (124M-shaped, fp32)", list(figures.items()))
    return figures


# -- 2 and 3. many personas over one base -----------------------------------------------------------------------


def make_personas(count: int, rank: int = 8) -> Path:
    """`count` LoRA persona folders over the 124M base (random adapters, distinct per persona), and `full`, the
    base itself as a whole model folder. Built once."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from bot.generation import DEFAULTS

    base = gpt2_124m_dir()
    stamp = PERSONAS / f".built-{count}-{rank}"
    if stamp.exists():
        return PERSONAS
    shutil.rmtree(PERSONAS, ignore_errors=True)
    PERSONAS.mkdir(parents=True)
    tok = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", task_type="CAUSAL_LM",
                                      base_model_name_or_path=str(base)))
    generation = GenerationConfig(do_sample=True, **DEFAULTS)
    for i in range(count):
        torch.manual_seed(i)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.02)
        out = PERSONAS / f"p{i:02d}"
        model.save_pretrained(out)
        tok.save_pretrained(out)
        generation.save_pretrained(out)
    full = PERSONAS / "full"
    shutil.copytree(base, full)
    generation.save_pretrained(full)
    stamp.touch()
    return PERSONAS


def resident(personas: int) -> dict:
    """In a fresh process: memory of `personas` LoRA personas over one base (0: one whole model), and for 50 the
    switch latencies."""
    res = subprocess.run([sys.executable, __file__, "--child", str(personas)], capture_output=True, text=True,
                         timeout=1800)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def child(personas: int) -> None:
    import gc

    import transformers  # noqa: F401 - imported before the baseline, as the product has it imported

    from bot.generation.cache import ModelCache
    from bot.generation.models import ModelStore
    from bot.generation.sampling import LOCK

    store = ModelStore(PERSONAS, dtype="fp32")
    cache = ModelCache(2, 100_000, store.load, store.stamp, max_adapters=64)
    gc.collect()
    before = rss_mb()
    ids = ["full"] if personas == 0 else [f"p{i:02d}" for i in range(personas)]
    t = time.perf_counter()
    for model_id in ids:
        loaded = cache.get(model_id)
    load_s = time.perf_counter() - t
    with LOCK, torch.inference_mode():  # one forward pass: the weights are read (safetensors maps them lazily)
        if loaded.activate:
            loaded.activate()
        loaded.model(input_ids=torch.tensor([[0, 5, 17, 33]]))
    gc.collect()
    after = rss_mb()
    stats = cache.stats()
    out = {"personas": personas, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
           "rss_models_mb": round(after - before, 1), "cache_mb": stats["mb"], "cache_base_mb": stats["base_mb"],
           "load_s": round(load_s, 2), "load_average": load_average()}
    if personas > 1:
        rng = random.Random(0)
        switches, gets = [], []
        current = None
        for _ in range(300):
            model_id = rng.choice([i for i in ids if i != current])
            t = time.perf_counter()
            loaded = cache.get(model_id)
            t_get = time.perf_counter()
            with LOCK:
                loaded.activate()
                t_switch = time.perf_counter()
            gets.append((t_get - t) * 1000)
            switches.append((t_switch - t) * 1000)
            current = model_id
        out.update(switch_p50_ms=round(percentile(switches, 50), 2), switch_p99_ms=round(percentile(switches, 99), 2),
                   switch_max_ms=round(max(switches), 2), cache_hit_p50_ms=round(percentile(gets, 50), 3))
    print(json.dumps(out))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def personas_memory() -> dict:
    make_personas(max(COUNTS))
    whole = resident(0)
    figures = {"one_whole_model": whole}
    for n in COUNTS:
        figures[f"personas_{n}"] = resident(n)
        figures[f"personas_{n}"]["ratio_to_one_whole_model"] = round(
            figures[f"personas_{n}"]["rss_models_mb"] / whole["rss_models_mb"], 2)
    show("memory: LoRA personas (rank 8) over one 124M base vs one whole model", list(figures.items()))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="timed training steps of each kind (default 6)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        child(a.child)
        return
    print_machine()
    print("load average", load_average(), "(the machine is shared: figures are under that load)", flush=True)
    if not a.skip_memory:
        print("saved to", save_results("lora_memory", personas_memory()))
    if not a.skip_train:
        print("saved to", save_results("lora_throughput", throughput(a.steps)))


if __name__ == "__main__":
    main()
