"""Benchmark 3 — daemon responsiveness: event-loop lag of the serving process while 2 training jobs run.

The daemon's parts that share its event loop — the training pool (supervising two child processes) and
the service — run here as in `mimicbot run`, without a Discord connection. A probe task asks the loop for
a 10 ms sleep over and over; lag is how late each wake-up comes. Baseline: the same probe with nothing
training, in the same run.

    python bench/daemon_lag.py [--steps 6] [--idle-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import gpt2_124m_dir, save_results, show  # noqa: E402

TICK = 0.010


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(TICK)
        lags.append(max(0.0, loop.time() - t - TICK))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 2)


async def run(steps: int, idle_seconds: float) -> dict:
    from bot.config import Settings
    from bot.samples.generate import sample_path
    from bot.service import Mimicbot
    from bot.training.pool import TrainingPool

    tmp = Path(tempfile.mkdtemp(prefix="mimicbot-lag-"))
    settings = Settings(mimicbot_data_dir=tmp / "data", mimicbot_models_dir=tmp / "models", _env_file=None)
    bot = Mimicbot(settings)
    await bot.fetch([str(sample_path("ada_bytes")), str(sample_path("grace_gardens"))])
    pool = bot.pool = TrainingPool(bot.store, settings, workers=2)
    await pool.start()

    idle: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(idle, stop))
    await asyncio.sleep(idle_seconds)
    stop.set()
    await task

    base = str(gpt2_124m_dir())
    jobs = []
    for handle in ("ada_bytes", "grace_gardens"):
        req = await bot.build_request([handle], base_model=base, max_steps=steps, block_size=512)
        jobs.append((await pool.submit(req, requested_by="bench"))["id"])
    busy: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(busy, stop))
    t = time.perf_counter()
    both_running_at = None
    while True:
        states = [bot.job(j)["state"] for j in jobs]
        if both_running_at is None and states == ["running", "running"]:
            both_running_at = time.perf_counter() - t
        if all(s in ("succeeded", "failed", "cancelled") for s in states):
            break
        await asyncio.sleep(0.5)
    stop.set()
    await task
    await pool.close()
    bot.close()
    return {
        "jobs": len(jobs), "job_states": states, "training_wall_s": round(time.perf_counter() - t, 1),
        "idle_samples": len(idle), "idle_lag_p50_ms": pct(idle, 0.5), "idle_lag_p99_ms": pct(idle, 0.99),
        "busy_samples": len(busy), "busy_lag_p50_ms": pct(busy, 0.5), "busy_lag_p99_ms": pct(busy, 0.99),
        "busy_lag_max_ms": round(1000 * max(busy), 2), "busy_lag_mean_ms": round(1000 * statistics.mean(busy), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="training steps of each job (124M-shaped model)")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    a = ap.parse_args()
    figures = asyncio.run(run(a.steps, a.idle_seconds))
    show("daemon event-loop lag, 2 training jobs running", list(figures.items()))
    save_results("daemon_lag", figures)


if __name__ == "__main__":
    main()
