"""Benchmark 2 — generation: the huggingtweets demo call against the path `mimicbot generate -n 10` uses, on a
GPT-2-124M-shaped model that **ends its posts as a fine-tuned one does**, in one run.

The model: the 124M-shaped random model (common.py) fine-tuned by mimicbot's trainer on the sample posts joined by
end-of-text until it writes end-of-text at about post length (checked and printed: the share of rows that end
within the budget and their mean length); kept in bench/.cache/models/bench-124m-posts. The trainer also makes its
int8 copy (bot/generation/ct2.py) when CTranslate2 is installed.

Measured, interleaved repeat by repeat so that load from other processes falls on every side alike:
- 10 samples: the recipe's demo call — transformers `pipeline("text-generation")`, fp32 (the recipe's), max_length
  160, top_p 0.95, temperature 1.0, top_k 50, rows stopped at end-of-text, each cut at its first newline
  afterwards — against `Mimicbot.generate(n=10)` on the int8 path and on the transformers path (the dtype
  MIMICBOT_GENERATION_DTYPE=auto picks here: bf16 where the CPU has it, else fp32).
- Warm single post (n=1, unseeded as posts and replies are drawn): p50/p95 over 20 calls on each path; and the
  seeded call's cost on the int8 path (a fresh CTranslate2 generator, see ct2.py).
- The cached model's memory (its weights, as the cache counts them, and the process's resident memory added).
- Fixed length (`--fixed`, separate from the stop rule): 10 rows forced to exactly 40 and 156 new tokens,
  transformers fp32 `generate` against the int8 engine — the engine's own gain, whatever the model's endings.

    python bench/generation.py [--repeats 3] [--train-steps 60] [--block-size 128] [--fixed]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, gpt2_124m_dir, print_machine, sample_posts, save_results, show  # noqa: E402

PROMPT = "My dream is"
MODEL_ID = "bench-124m-posts"
MODELS = CACHE / "models"
CAPS = ("CT2_FORCE_CPU_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def recipe_config(eot_id: int):
    """The generation defaults huggingtweets stored in its models' config (max_length 160, counting the
    prompt), replacing the ones our trainer saved, so that the baseline runs the recipe's call."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=True, max_length=160, min_length=10, top_p=0.95, temperature=1.0, top_k=50,
                            pad_token_id=eot_id, eos_token_id=eot_id)


def baseline_call(generator) -> list[str]:
    out = generator(PROMPT, num_return_sequences=10)
    return [o["generated_text"].split("\n")[0].strip() for o in out]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post_model(steps: int, lr: float, block_size: int) -> Path:
    """The 124M-shaped model fine-tuned on the sample posts until it ends posts (trained once, then cached)."""
    path = MODELS / MODEL_ID
    if (path / "config.json").exists():
        return path
    from bot.training import trainer as T
    from bot.training.spec import AccountData, TrainRequest

    posts = sample_posts() * 8
    req = TrainRequest(model_id=MODEL_ID, models_dir=str(MODELS), base_model=str(gpt2_124m_dir()), epochs=1,
                       accounts=[AccountData("bench", "Bench", texts=posts)], lr=lr, max_steps=steps,
                       block_size=block_size, eval_fraction=0.02, seed=0, int8=True)
    t = time.perf_counter()
    info = T.train(req, MODELS / f".work-{MODEL_ID}", lambda e: None)
    print(f"trained {MODEL_ID}: {info['steps']} steps, {info['trained_tokens']:,} tokens in "
          f"{time.perf_counter() - t:.0f} s, held-out loss {info['eval']['loss_before']:.2f} -> "
          f"{info['eval']['loss_after']:.2f}; int8 copy: {info.get('int8')}", flush=True)
    return path


def endings(model_dir: Path, rows: int = 40) -> dict:
    """How the model ends its posts under the recipe's settings: the share of rows that write end-of-text within
    the 160-token budget, and the new tokens of a row (until end-of-text) against the training posts' length."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    eot = tok.eos_token_id
    ids = torch.tensor([[eot] + tok(PROMPT)["input_ids"]])
    torch.manual_seed(0)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=recipe_config(eot),
                             num_return_sequences=rows)
    new = out[:, ids.shape[1]:].tolist()
    lengths = [row.index(eot) + 1 if eot in row else None for row in new]
    ended = [n for n in lengths if n is not None]
    posts = [len(tok(p)["input_ids"]) + 1 for p in sample_posts()]
    return {"rows": rows, "ended_within_budget": round(len(ended) / rows, 2),
            "mean_new_tokens_ended": round(statistics.mean(ended), 1) if ended else None,
            "median_new_tokens_ended": statistics.median(ended) if ended else None,
            "training_post_mean_tokens": round(statistics.mean(posts), 1),
            # a batch of 10 rows runs until its longest row ends (or the budget, 156 new tokens here)
            "batch_of_10_new_tokens_mean": statistics.mean(
                max(n or 156 for n in lengths[i:i + 10]) for i in range(0, rows - 9, 10))}


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--singles", type=int, default=20)
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--block-size", type=int, default=128, help="short blocks: the model learns endings in minutes")
    ap.add_argument("--fixed", action="store_true", help="also the fixed-length comparison (40 and 156 tokens)")
    a = ap.parse_args()
    print_machine()
    print("load average before:", os.getloadavg())
    model_dir = post_model(a.train_steps, a.lr, a.block_size)

    import torch
    from transformers import pipeline

    from bot.config import Settings
    from bot.generation import ct2
    from bot.service import Mimicbot

    if ct2.available() and not ct2.ready(model_dir):
        ct2.convert(model_dir)
    ends = endings(model_dir)
    show("the benchmark model's endings (recipe settings)", list(ends.items()))

    torch.manual_seed(0)
    generator = pipeline("text-generation", model=str(model_dir), device="cpu", dtype=torch.float32)
    generator.model.generation_config = recipe_config(generator.tokenizer.eos_token_id)
    settings = dict(mimicbot_models_dir=MODELS, mimicbot_data_dir=CACHE / "data", _env_file=None)
    paths = {"int8": Mimicbot(Settings(**settings, mimicbot_int8="auto"))} if ct2.available() else {}
    paths["transformers"] = Mimicbot(Settings(**settings, mimicbot_int8="off"))

    figures: dict = {"model": f"{MODEL_ID} (124M-shaped, fine-tuned {a.train_steps} steps to end posts)",
                     "endings": ends}
    memory = {}
    for name, bot in paths.items():  # cold: load and first call, then the cached model's memory
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        bot.generate(MODEL_ID, PROMPT, n=1)
        loaded = bot.cache.get(MODEL_ID)
        gc.collect()
        memory[name] = {"first_call_s": round(time.perf_counter() - t, 2), "weights_mb": round(loaded.nbytes / 2**20, 1),
                        "rss_added_mb": round(rss_mb() - before, 1),
                        "engine": "ctranslate2 int8" if loaded.engine is not None else
                        f"transformers {next(loaded.model.parameters()).dtype}"}
    assert "int8" not in paths or paths["int8"].cache.get(MODEL_ID).engine is not None, "int8 path not in use"
    baseline_call(generator)  # warm-up

    ten = {"recipe": [], **{name: [] for name in paths}}
    texts, results = [], {}
    for _ in range(a.repeats):  # interleaved
        t = time.perf_counter()
        texts = baseline_call(generator)
        ten["recipe"].append(time.perf_counter() - t)
        for name, bot in paths.items():
            t = time.perf_counter()
            results[name] = bot.generate(MODEL_ID, PROMPT, n=10)
            ten[name].append(time.perf_counter() - t)
    single = {name: [] for name in paths}
    for _ in range(a.singles):
        for name, bot in paths.items():
            t = time.perf_counter()
            bot.generate(MODEL_ID, PROMPT, n=1)
            single[name].append(time.perf_counter() - t)
    seeded = []
    if "int8" in paths:
        for i in range(min(10, a.singles)):
            t = time.perf_counter()
            paths["int8"].generate(MODEL_ID, PROMPT, n=1, seed=i)
            seeded.append(time.perf_counter() - t)

    base = min(ten["recipe"])
    figures["ten_samples_s"] = {k: round(min(v), 3) for k, v in ten.items()}
    figures["ten_samples_ratio_vs_recipe"] = {k: round(base / min(v), 2) for k, v in ten.items() if k != "recipe"}
    # a call's time is set by its longest row, random on both sides: the medians say more than the luckiest calls
    figures["ten_samples_median_s"] = {k: round(statistics.median(v), 3) for k, v in ten.items()}
    median = statistics.median(ten["recipe"])
    figures["ten_samples_median_ratio_vs_recipe"] = {k: round(median / statistics.median(v), 2)
                                                     for k, v in ten.items() if k != "recipe"}
    figures["ten_samples_refused_attempts"] = {k: [r.rejected, r.attempts] for k, r in results.items()}
    figures["single_post_p50_s"] = {k: round(statistics.median(v), 3) for k, v in single.items()}
    figures["single_post_p95_s"] = {k: round(p(v, 0.95), 3) for k, v in single.items()}
    if seeded:
        figures["single_post_seeded_p50_s (int8: fresh generator)"] = round(statistics.median(seeded), 3)
    figures["memory"] = memory
    if "int8" in memory:
        figures["memory_ratio_int8_vs_transformers"] = round(memory["int8"]["weights_mb"]
                                                             / memory["transformers"]["weights_mb"], 2)
    figures["mean_words"] = {"recipe": round(statistics.mean(len(t.split()) for t in texts), 1),
                             **{k: round(statistics.mean(len(t.split()) for t in r.texts), 1) if r.texts else 0
                                for k, r in results.items()}}
    del generator
    if a.fixed and "int8" in paths:
        figures["fixed_length"] = fixed_length(model_dir, a.repeats)
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    show("generation (124M-shaped, ends its posts)", [(k, v) for k, v in figures.items() if k != "endings"])
    for name, r in results.items():
        for t in r.texts[:2]:
            print(f"   {name}:", t)
    for t in texts[:2]:
        print("   recipe:", t)
    # An instruction set capped by environment (CT2_FORCE_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2,
    # ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2) approximates a smaller machine class on this one: its
    # figures are kept apart from this machine's own
    capped = {k: os.environ[k] for k in CAPS if k in os.environ}
    if capped:
        figures["isa_capped_by"] = capped
    save_results(f"generation_capped_{capped.get('CT2_FORCE_CPU_ISA', 'isa').lower()}" if capped else "generation",
                 figures)
    for bot in paths.values():
        bot.close()


def fixed_length(model_dir: Path, repeats: int) -> dict:
    """10 rows of exactly L new tokens: transformers fp32 (the recipe's engine) against the int8 engine."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    import ctranslate2

    tok = AutoTokenizer.from_pretrained(model_dir)
    eot = tok.eos_token_id
    ids = [eot] + tok(PROMPT)["input_ids"]
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ct = ctranslate2.Generator(str(model_dir / "ct2-int8"), compute_type="int8", intra_threads=torch.get_num_threads())

    def hf_run(length):
        cfg = GenerationConfig(do_sample=True, num_return_sequences=10, max_new_tokens=length, min_new_tokens=length,
                               top_p=0.95, top_k=50, pad_token_id=eot, eos_token_id=eot)
        x = torch.tensor([ids])
        with torch.inference_mode():
            hf.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=cfg)

    def ct_run(length):
        ct.generate_batch([tok.convert_ids_to_tokens(ids)] * 10, max_length=length, min_length=length,
                          sampling_topk=50, sampling_topp=0.95, include_prompt_in_result=False)

    out = {}
    for length in (40, 156):
        hf_run(4), ct_run(4)
        times = {"transformers_fp32": [], "int8": []}
        for _ in range(repeats):
            for name, fn in (("transformers_fp32", hf_run), ("int8", ct_run)):
                t = time.perf_counter()
                fn(length)
                times[name].append(time.perf_counter() - t)
        out[f"{length}_tokens_s"] = {k: round(min(v), 3) for k, v in times.items()}
        out[f"{length}_tokens_ratio"] = round(min(times["transformers_fp32"]) / min(times["int8"]), 2)
    return out


if __name__ == "__main__":
    main()
