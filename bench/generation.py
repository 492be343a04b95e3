"""Benchmark 2 — generation: the huggingtweets demo call against the path `mimicbot generate -n 10` uses,
on the same trained GPT-2-124M-shaped model (bench/train_throughput.py leaves it in bench/.cache/models).

Baseline: transformers `pipeline("text-generation")`, 10 samples, `max_length` 160, top_p 0.95,
temperature 1.0, top_k 50 (generate's default, which the recipe left in place), each cut at its first newline
afterwards (the recipe's demo). Ours: Mimicbot.generate
(warm model cache). Also: warm single-post latency p50/p95 over 20 calls.

    python bench/generation.py [--model-dir DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, print_machine, save_results, show  # noqa: E402

PROMPT = "My dream is"


def recipe_config(eot_id: int):
    """The generation defaults huggingtweets stored in its models' config (max_length 160, counting the
    prompt), replacing the ones our trainer saved, so that the baseline runs the recipe's call."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=True, max_length=160, min_length=10, top_p=0.95, temperature=1.0, top_k=50,
                            pad_token_id=eot_id, eos_token_id=eot_id)


def baseline_call(generator) -> list[str]:
    out = generator(PROMPT, num_return_sequences=10)
    return [o["generated_text"].split("\n")[0].strip() for o in out]


def timed(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=CACHE / "models")
    ap.add_argument("--model", default="bench-124m")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print_machine()
    model_dir = a.models_dir / a.model
    if not (model_dir / "config.json").exists():
        sys.exit(f"{model_dir} is missing: run bench/train_throughput.py first (it trains that model)")

    import torch
    from transformers import pipeline

    from bot.config import Settings
    from bot.service import Mimicbot

    torch.manual_seed(0)
    generator = pipeline("text-generation", model=str(model_dir), device="cpu")
    generator.model.generation_config = recipe_config(generator.tokenizer.eos_token_id)
    baseline_call(generator)  # warm-up
    base_s, base_texts = timed(lambda: baseline_call(generator), a.repeats)
    del generator

    bot = Mimicbot(Settings(mimicbot_models_dir=a.models_dir, mimicbot_data_dir=CACHE / "data", _env_file=None))
    t = time.perf_counter()
    bot.generate(a.model, PROMPT, n=1, seed=0)
    cold_s = time.perf_counter() - t
    ours_s, result = timed(lambda: bot.generate(a.model, PROMPT, n=10), a.repeats)
    single = []
    for i in range(20):
        t = time.perf_counter()
        bot.generate(a.model, PROMPT, n=1, seed=i)
        single.append(time.perf_counter() - t)
    single.sort()
    figures = {
        "model": str(model_dir), "samples": 10,
        "baseline_s": round(base_s, 3), "ours_s": round(ours_s, 3), "ratio": round(base_s / ours_s, 2),
        "ours_refused": result.rejected, "ours_attempts": result.attempts,
        "ours_dtype": str(next(bot.cache.get(a.model).model.parameters()).dtype),
        "single_post_p50_s": round(statistics.median(single), 3),
        "single_post_p95_s": round(single[int(0.95 * (len(single) - 1))], 3),
        "first_call_s (load + generate)": round(cold_s, 2),
        "baseline_mean_words": round(statistics.mean(len(t.split()) for t in base_texts), 1),
        "ours_mean_words": round(statistics.mean(len(t.split()) for t in result.texts), 1) if result.texts else 0,
    }
    show("generation (10 samples, 124M-shaped)", list(figures.items()))
    for t in result.texts[:3]:
        print("   ours:", t)
    for t in base_texts[:3]:
        print("   base:", t)
    save_results("generation", figures)
    bot.close()


if __name__ == "__main__":
    main()
