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

4. `--profile`: where one training step's time goes, full fine-tune against LoRA r8 (torch profiler).

    python bench/lora.py [--steps 6] [--skip-train] [--skip-memory] [--block 256] [--ranks 8] [--compile]
                         [--section NAME] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, gpt2_124m_dir, print_machine, sample_posts, save_results, show  # noqa: E402
from bot.training.spec import LORA_RANK  # noqa: E402

PERSONAS = CACHE / "lora-personas"
COUNTS = (1, 10, 50)
RANKS = (4, 8, 16)


CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def capped() -> bool:
    """Whether the libraries were capped (to AVX2: ATEN_CPU_CAPABILITY=avx2 ...) for this run."""
    return any(k in os.environ for k in CAP_VARIABLES)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- 1. training throughput -----------------------------------------------------------------------------------


def throughput(steps: int, block: int = 1024, ranks=RANKS, compile_kinds: bool = False) -> dict:
    """The trainer's own loop (bot/training/trainer.py: its base loading, LoRA wrapping, fused AdamW, clipping)
    for `steps` optimizer steps of 1,024 tokens (one block, or 1,024 / `block` blocks of `block`: the trainer's
    default in fp32 is 4 of 256) after one warm-up step, fp32 (a CPU without bf16), for the full model and for
    LoRA at each rank; with `compile_kinds`, the full model and LoRA of the first rank compiled too (each
    transformer block, dynamic=False; their first step, which compiles, is reported apart). The trainer's eval and samples are left
    out: they are the same for both and not training."""
    from bench.train_levers import transformer_blocks
    from bot.training import trainer as T

    base = gpt2_124m_dir()
    blocks = token_blocks(base)
    per_step = 1024 // block
    figures: dict = {"model": "GPT-2 124M-shaped, random weights", "precision": "fp32", "block_size": block,
                     "blocks_per_step": per_step, "timed_steps": steps, "load_average_before": load_average()}
    T.pick_threads(torch.device("cpu"))
    # every kind is built first, then their steps are interleaved (full, r4, r8, r16, full, ...): the machine is
    # shared, and a change of load then falls on every kind alike
    kinds = [("full", None, False), *((f"lora_r{r}", r, False) for r in ranks)]
    if compile_kinds:
        kinds += [("full_compiled", None, True), (f"lora_r{ranks[0]}_compiled", ranks[0], True)]
    runs = {}
    for name, rank, compiled in kinds:
        model, optimizer = build(T, base, rank)
        if compiled:  # regional compilation, as bench/train_levers.py's compiled_blocks variants
            for layer in transformer_blocks(model):
                layer.forward = torch.compile(layer.forward, dynamic=False)
        runs[name] = (model, optimizer, [])
    for i in range(steps + 1):
        batch = blocks[i % len(blocks)].reshape(per_step, block)
        for name, (model, optimizer, times) in runs.items():
            t = time.perf_counter()
            train_step(T, model, optimizer, batch)
            times.append(time.perf_counter() - t)
        print("round", i, {k: round(v[2][-1], 2) for k, v in runs.items()}, "load", load_average(), flush=True)
    for name, (model, _, times) in runs.items():
        timed = times[1:]  # the first step warms up (and compiles)
        figures[name] = {"tokens_per_s": round(1024 * len(timed) / sum(timed), 1),
                         "step_s": [round(t, 2) for t in times], "first_step_s": round(times[0], 1),
                         "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    figures["load_average_after"] = load_average()
    for name in runs:
        figures[name]["speedup_vs_full"] = round(figures[name]["tokens_per_s"] / figures["full"]["tokens_per_s"], 2)
    show(f"training throughput: full fine-tune vs LoRA (124M-shaped, fp32, {per_step} x {block} tokens a step)",
         list(figures.items()))
    return figures


def token_blocks(base: Path) -> torch.Tensor:
    from bot.training import trainer as T

    tok = __import__("transformers").AutoTokenizer.from_pretrained(base)
    return T.pack(T.join_posts(T.tokenize(tok, sample_posts()), tok.eos_token_id), 1024)


def build(T, base: Path, rank: int | None):
    """(model, optimizer) as the trainer builds them: dropout 0, LoRA of `rank` on every linear layer or none."""
    model, _ = T.load_base(str(base), "bench")
    T.set_dropout(model, 0.0)
    if rank:
        model = T.with_lora(model, rank, str(base))
    model.train()
    return model, T.make_optimizer(model, 1e-3 if rank else 1.372e-4)[0]


def train_step(T, model, optimizer, batch: torch.Tensor) -> None:
    loss = model(input_ids=batch, labels=batch, use_cache=False).loss  # as the trainer: no KV cache in training
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), T.MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def profile(block: int, rank: int = 8, top: int = 18) -> dict:
    """Where a step's time goes, full fine-tune against LoRA: one warm-up step, then one step each under the torch
    profiler; the operators with the most self CPU time, and the step's forward / backward / optimizer split."""
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from bot.training import trainer as T

    base = gpt2_124m_dir()
    blocks = token_blocks(base)
    T.pick_threads(torch.device("cpu"))
    per_step = 1024 // block
    figures: dict = {"block_size": block, "blocks_per_step": per_step, "load_average_before": load_average()}
    for name, r in (("full", None), (f"lora_r{rank}", rank)):
        model, optimizer = build(T, base, r)
        batch = blocks[0].reshape(per_step, block)
        train_step(T, model, optimizer, batch)  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            with record_function("phase: forward + loss"):
                loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            with record_function("phase: backward"):
                loss.backward()
            with record_function("phase: clip + optimizer"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), T.MAX_GRAD_NORM)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            step_s = time.perf_counter() - t
        events = prof.key_averages()
        phases = {e.key.removeprefix("phase: "): round(e.cpu_time_total / 1e6, 3) for e in events
                  if e.key.startswith("phase: ")}
        ops = sorted((e for e in events if not e.key.startswith("phase: ")), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events if not e.key.startswith("phase: "))
        figures[name] = {"step_s": round(step_s, 2), "phases_s": phases,
                         "top_ops": [{"op": e.key, "calls": e.count, "self_s": round(e.self_cpu_time_total / 1e6, 3),
                                      "share": round(e.self_cpu_time_total / total, 3)} for e in ops[:top]]}
        print(f"\n== {name}: step {step_s:.2f} s, phases {phases}")
        print(events.table(sort_by="self_cpu_time_total", row_limit=top))
        del model, optimizer
    figures["load_average_after"] = load_average()
    return figures


# -- 2 and 3. many personas over one base -----------------------------------------------------------------------


def make_personas(count: int, rank: int = LORA_RANK) -> Path:
    """`count` LoRA persona folders over the 124M base (the product's adapter, `with_lora`: every linear layer and
    the output layer; random weights, distinct per persona), and `full`, the base itself as a whole model folder.
    Built once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from bot.generation import DEFAULTS
    from bot.training import trainer as T

    base = gpt2_124m_dir()
    stamp = PERSONAS / f".built-{count}-{rank}-head"
    if stamp.exists():
        return PERSONAS
    shutil.rmtree(PERSONAS, ignore_errors=True)
    PERSONAS.mkdir(parents=True)
    tok = AutoTokenizer.from_pretrained(base)
    model = T.with_lora(AutoModelForCausalLM.from_pretrained(base), rank, str(base))
    generation = GenerationConfig(do_sample=True, **DEFAULTS)
    for i in range(count):
        torch.manual_seed(i)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.02)
        T.save_model(model, tok, PERSONAS / f"p{i:02d}")  # as the trainer saves a persona
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
    show(f"memory: LoRA personas (rank {LORA_RANK}, the output layer included) over one 124M base vs one whole model",
         list(figures.items()))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="timed training steps of each kind (default 6)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--block", type=int, default=1024, help="training block (1,024 tokens a step: 1024/block blocks)")
    ap.add_argument("--ranks", default=",".join(map(str, RANKS)), help="LoRA ranks to time (default 4,8,16)")
    ap.add_argument("--compile", action="store_true", help="also time the full model and LoRA compiled")
    ap.add_argument("--profile", action="store_true", help="only profile one step of full and LoRA r8")
    ap.add_argument("--section", default="lora_throughput", help="results section of the throughput figures")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        child(a.child)
        return
    print_machine()
    print("load average", load_average(), "(the machine is shared: figures are under that load)", flush=True)
    if a.profile:
        print("saved to", save_results("lora_profile" + ("_capped_avx2" if capped() else ""), profile(a.block)))
        return
    if not a.skip_memory:
        print("saved to", save_results("lora_memory", personas_memory()))
    if not a.skip_train:
        ranks = tuple(int(r) for r in a.ranks.split(","))
        figures = throughput(a.steps, a.block, ranks, a.compile)
        if capped():
            figures["capped"] = {k: os.environ[k] for k in CAP_VARIABLES if k in os.environ}
        print("saved to", save_results(a.section, figures))


if __name__ == "__main__":
    main()
