"""Where a 10-sample call on the int8 path spends its time, and the levers on it (issue 14: "10 samples >= 5x the
recipe's demo call"), on bench/generation.py's model (124M-shaped, fine-tuned until it ends its posts), in one run.

1. Breakdown of one call's parts, each timed alone on the cached engine, 13 rows as generate draws for 10: framing
   (the prompt's ids, the stop ids), CTranslate2's generate_batch with the stop rule's per-token callback (and the
   decoding steps it ran: its longest row), decoding the rows, the copy check of 10 posts; then the per-token
   callback's own cost (the same fixed-length batch with a callback that never stops a row, and with none), and
   a decoding step's cost by batch size and thread count.
2. Calls, interleaved call by call with the recipe's demo call (bench/generation.py's baseline): `generate(n=10)`
   with spare rows 0, 0.1, 0.2, 0.3 (the product: the engine stopping the spares once the rows before them give 10
   posts, the rows split between one worker per core), 0.3 on one worker of two threads, and the previous product
   (0.3, one worker of two threads, every row run to its end: the engine without `enough`). For each: min / median
   seconds, the ratio to the recipe, how often a second round was needed, and the rows refused; from the refusal
   rate, the chance of a second round at each spare (binomial).

    python bench/generation_ten.py [--calls 12]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, print_machine, save_results, show  # noqa: E402
from bench.generation import CAPS, MODEL_ID, MODELS, PROMPT, baseline_call, post_model, recipe_config  # noqa: E402

N = 10


def previous_generate(loaded, n: int, spare: float = 0.3, **settings):
    """generate() as it was before the engine stopped spare rows: every row of the round run to its end, then read
    in order (the loop of bot/generation/__init__.py, written out here as the baseline)."""
    from bot.generation import CUT, EXTRA_ROUNDS, GenerationResult, refusal, resolve_settings

    settings = resolve_settings(loaded, PROMPT, **settings)
    texts, reasons, attempts = [], [], 0
    for round_ in range(1 + EXTRA_ROUNDS):
        missing = n - len(texts)
        if missing <= 0:
            break
        batch = missing + int(spare * missing) if round_ == 0 else 2 * missing
        for text in loaded.engine.sample(loaded.tokenizer, PROMPT, batch, **settings):
            if len(texts) == n:
                break
            attempts += 1
            reason = CUT if text is None else refusal(loaded, PROMPT, text, texts)
            (reasons.append(reason) if reason else texts.append(text))
    return GenerationResult(texts, len(reasons), attempts, 0.0, loaded.model_id, PROMPT, settings, reasons)


def timed(fn, repeats: int = 1):
    best, out = math.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def breakdown(loaded, repeats: int) -> dict:
    import ctranslate2

    from bot.generation import refusal
    from bot.generation.ct2 import Int8Engine, _post
    from bot.generation.framing import Framing
    from bot.generation.sampling import reading, stop_token_ids

    engine, tok = loaded.engine, loaded.tokenizer
    rows = N + int(0.3 * N)

    def frame():
        stop = set(stop_token_ids(tok).tolist())
        ids, post_len, budget = reading(tok, PROMPT, None, engine.context, max_length=160, max_new_tokens=None)
        return stop, Framing.of(tok).stops, tok.convert_ids_to_tokens(ids), budget, max(0, 10 - post_len)

    t_frame, (stop, stops, start, budget, at_least) = timed(frame, 20)
    parts = {"framing_ms": [], "generate_batch_ms": [], "decode_ms": [], "copy_check_ms": [], "steps": [],
             "row_tokens": []}
    for _ in range(repeats):
        ended = [False] * rows

        def cb(step):
            if step.token_id in stop:
                ended[step.batch_id] = True
                return True
            return False

        t, results = timed(lambda: engine.generator.generate_batch(  # as the product calls it (unseeded)
            [start] * rows, max_batch_size=-(-rows // engine.workers), max_length=budget, min_length=at_least,
            end_token=[tok.eos_token_id], return_end_token=True, include_prompt_in_result=False, sampling_topk=50,
            sampling_topp=0.95, sampling_temperature=1.0, callback=cb))
        ids = [r.sequences_ids[0] for r in results]
        t_dec, posts = timed(lambda: [_post(tok, PROMPT, row, True, stops) for row in ids])
        kept = []
        t_chk, _ = timed(lambda: [kept.append(p) for p in posts[:N] if not refusal(loaded, PROMPT, p, kept)])
        parts["framing_ms"].append(t_frame * 1000)
        parts["generate_batch_ms"].append(t * 1000)
        parts["decode_ms"].append(t_dec * 1000)
        parts["copy_check_ms"].append(t_chk * 1000)
        parts["steps"].append(max(map(len, ids)))
        parts["row_tokens"].append(sum(map(len, ids)))
    out = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    out["workers"] = engine.workers
    out["generate_batch_ms_per_step"] = round(statistics.median(
        t / s for t, s in zip(parts["generate_batch_ms"], parts["steps"])), 2)

    def fixed(gen, n, length, callback=None):
        kw = {"callback": callback} if callback else {}
        return timed(lambda: gen.generate_batch([start] * n, max_length=length, min_length=length,
                                                include_prompt_in_result=False, sampling_topk=50,
                                                sampling_topp=0.95, **kw), 3)[0]

    calls = [0]

    def never(step):
        calls[0] += 1
        return False

    one = Int8Engine(MODELS / MODEL_ID, workers=1).generator  # one batch on every core (before: the product's)
    with_cb, without = [], []
    for _ in range(3):  # interleaved
        with_cb.append(fixed(one, rows, 30, never))
        without.append(fixed(one, rows, 30))
    out["callback_13x30_s"] = {"with_callback": round(min(with_cb), 3), "without": round(min(without), 3),
                               "callback_calls": calls[0] // 9}
    per_step = {}
    for threads in (1, 2):
        gen = Int8Engine(MODELS / MODEL_ID, threads=threads, workers=1).generator
        fixed(gen, 1, 4)
        for n in (1, 10, 13):
            per_step[f"{threads}_threads_batch_{n}_ms"] = round((fixed(gen, n, 30) - fixed(gen, n, 2)) / 28 * 1000, 1)
        del gen
    out["ms_per_step"] = per_step
    # 13 rows as two batches (7 + 6), each on its own worker thread of one core, against one batch on two threads
    import ctranslate2 as c2

    two = c2.Generator(str(MODELS / MODEL_ID / "ct2-int8"), compute_type="int8", intra_threads=1, inter_threads=2)
    split, whole = [], []
    for _ in range(3):
        split.append(timed(lambda: two.generate_batch([start] * rows, max_batch_size=7, max_length=30, min_length=30,
                                                      include_prompt_in_result=False, sampling_topk=50,
                                                      sampling_topp=0.95), 3)[0])
        whole.append(fixed(one, rows, 30))
    out["13x30_two_workers_of_one_thread_vs_one_of_two_s"] = [round(min(split), 3), round(min(whole), 3)]
    del two, one
    out["ctranslate2"] = ctranslate2.__version__
    return out


def calls(loaded, generator, repeats: int) -> dict:
    from bot.generation import generate
    from bot.generation.ct2 import Int8Engine

    one_worker = dataclasses.replace(loaded, engine=Int8Engine(MODELS / MODEL_ID, workers=1))
    configs = {f"spare_{s}": (lambda s=s: generate(loaded, PROMPT, N, spare=s)) for s in (0.0, 0.1, 0.2, 0.3)}
    configs["spare_0.3_one_worker_of_two_threads"] = lambda: generate(one_worker, PROMPT, N, spare=0.3)
    configs["previous_product_0.3_one_worker_rows_run_out"] = lambda: previous_generate(one_worker, N, 0.3)
    for fn in configs.values():  # warm
        fn()
    baseline_call(generator)
    times = {"recipe": [], **{k: [] for k in configs}}
    second_rounds, refused, attempts = {k: 0 for k in configs}, {k: 0 for k in configs}, {k: 0 for k in configs}
    for _ in range(repeats):
        t = time.perf_counter()
        baseline_call(generator)
        times["recipe"].append(time.perf_counter() - t)
        for name, fn in configs.items():
            t = time.perf_counter()
            r = fn()
            times[name].append(time.perf_counter() - t)
            spare = 0.3 if "0.3" in name else float(name.split("_")[1])
            second_rounds[name] += r.attempts > N + int(spare * N)
            refused[name] += r.rejected
            attempts[name] += r.attempts
            assert len(r.texts) == N, (name, r.reasons)
    base_min, base_med = min(times["recipe"]), statistics.median(times["recipe"])
    out = {"calls_each": repeats, "seconds_min": {k: round(min(v), 3) for k, v in times.items()},
           "seconds_median": {k: round(statistics.median(v), 3) for k, v in times.items()},
           "ratio_vs_recipe_min": {k: round(base_min / min(v), 2) for k, v in times.items() if k != "recipe"},
           "ratio_vs_recipe_median": {k: round(base_med / statistics.median(v), 2) for k, v in times.items()
                                      if k != "recipe"},
           "calls_with_a_second_round": second_rounds, "rows_refused_of_examined": {
               k: [refused[k], attempts[k]] for k in configs}}
    p = sum(refused.values()) / max(1, sum(attempts.values()))
    out["refusal_rate_per_row"] = round(p, 4)
    def p_second(spare: float) -> float:  # fewer than N of the first round's rows kept
        rows = N + int(spare * N)
        return sum(math.comb(rows, k) * (1 - p) ** k * p ** (rows - k) for k in range(N))

    out["p_second_round_binomial"] = {s: round(p_second(s), 4) for s in (0.0, 0.1, 0.2, 0.3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=12)
    ap.add_argument("--breakdown-repeats", type=int, default=8)
    a = ap.parse_args()
    print_machine()
    load_before = [round(x, 2) for x in os.getloadavg()]
    print("load average before:", load_before)
    model_dir = post_model(60, 1e-3, 128)

    import torch
    from transformers import pipeline

    from bot.config import Settings
    from bot.generation import ct2
    from bot.service import Mimicbot

    if not ct2.ready(model_dir):
        ct2.convert(model_dir)
    bot = Mimicbot(Settings(mimicbot_models_dir=MODELS, mimicbot_data_dir=CACHE / "data", _env_file=None,
                            mimicbot_int8="auto"))
    bot.generate(MODEL_ID, PROMPT, n=1)
    loaded = bot.cache.get(MODEL_ID)
    assert loaded.engine is not None, "int8 path not in use"
    figures = {"model": f"{MODEL_ID} (bench/generation.py's)", "load_average_before": load_before,
               "breakdown_13_rows": breakdown(loaded, a.breakdown_repeats)}
    show("one 10-sample call's parts (13 rows), medians", list(figures["breakdown_13_rows"].items()))
    torch.manual_seed(0)
    generator = pipeline("text-generation", model=str(model_dir), device="cpu", dtype=torch.float32)
    generator.model.generation_config = recipe_config(generator.tokenizer.eos_token_id)
    figures["calls"] = calls(loaded, generator, a.calls)
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    show("10-sample calls, interleaved with the recipe's demo call", list(figures["calls"].items()))
    print("load average after:", figures["load_average_after"])
    capped = {k: os.environ[k] for k in CAPS if k in os.environ}
    if capped:
        figures["isa_capped_by"] = capped
    save_results(f"generation_ten_capped_{capped.get('CT2_FORCE_CPU_ISA', 'isa').lower()}" if capped
                 else "generation_ten", figures)
    bot.close()


if __name__ == "__main__":
    main()
