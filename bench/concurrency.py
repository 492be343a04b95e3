"""Benchmark 5 — many people at once: 100 concurrent generate calls on one cached model through the service
(as 100 `/generate` commands arriving together would), against the same 100 calls one after another in the
same run. Every call must be answered; latency p50/p99 is per call, from the moment all were submitted.

The model is the tiny offline one, fine-tuned for 2 steps on the bundled @ada_bytes archive (the point is
the service's behaviour under load — the cache's single load, the worker threads — not the model's speed).

    python bench/concurrency.py [--calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import print_machine, save_results, show  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))], 3)


async def timed(bot, model_id: str, seed: int, started: float) -> float:
    result = await bot.agenerate(model_id, n=1, seed=seed)
    assert result.texts and result.texts[0], "a call came back empty"
    return time.perf_counter() - started


async def run(calls: int) -> dict:
    from bot.config import Settings
    from bot.samples.generate import sample_path
    from bot.service import Mimicbot

    tmp = Path(tempfile.mkdtemp(prefix="mimicbot-concurrency-"))
    settings = Settings(mimicbot_data_dir=tmp / "data", mimicbot_models_dir=tmp / "models",
                        mimicbot_base_model="tiny", _env_file=None)
    bot = Mimicbot(settings)
    req = await bot.build_request([str(sample_path("ada_bytes"))], max_steps=2, seed=1)
    assert (await asyncio.to_thread(bot.run_job, bot.submit(req)["id"]))["state"] == "succeeded"
    model_id = req.model_id

    t = time.perf_counter()
    cold = await timed(bot, model_id, 0, t)  # the first call loads the model into the cache

    sequential = []
    t0 = time.perf_counter()
    for i in range(calls):
        sequential.append(await timed(bot, model_id, i, time.perf_counter()))
    sequential_wall = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = await asyncio.gather(*(timed(bot, model_id, i, t0) for i in range(calls)), return_exceptions=True)
    concurrent_wall = time.perf_counter() - t0
    failures = [r for r in results if isinstance(r, BaseException)]
    latencies = [r for r in results if not isinstance(r, BaseException)]
    bot.close()
    return {
        "calls": calls, "answered": len(latencies), "failed": len(failures),
        "failure_kinds": sorted({type(f).__name__ for f in failures}),
        "cold_first_call_s": round(cold, 2),
        "sequential_wall_s": round(sequential_wall, 2), "sequential_p50_s": pct(sequential, 0.5),
        "sequential_p99_s": pct(sequential, 0.99),
        "concurrent_wall_s": round(concurrent_wall, 2), "concurrent_p50_s": pct(latencies, 0.5),
        "concurrent_p99_s": pct(latencies, 0.99),
        "throughput_ratio": round(sequential_wall / concurrent_wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100)
    a = ap.parse_args()
    print_machine()
    figures = asyncio.run(run(a.calls))
    show(f"{a.calls} concurrent generate calls on one cached model", list(figures.items()))
    save_results("concurrency", figures)
    if figures["failed"]:
        raise SystemExit(f"{figures['failed']} of {a.calls} calls failed")


if __name__ == "__main__":
    main()
