"""Benchmark 3 — daemon responsiveness: event-loop lag of the serving process while 2 training jobs run,
and while another process (a CLI) holds the database's write lock.

The daemon's parts that share its event loop — the training pool (supervising two child processes) and
the service — run here as in `mimicbot run`, without a Discord connection. A probe task asks the loop for
a 10 ms sleep over and over; lag is how late each wake-up comes. Baseline: the same probe with nothing
training, in the same run.

The writer phase: a separate process takes SQLite's write lock for WRITER_HOLD_S at a time (as a CLI import
or `train` does), while the daemon keeps doing what it does every few seconds — the schedule runner's poll,
building a training request from stored accounts, remembering a status message (a write that must wait for
the lock). Every SQLite call of the daemon runs in a thread: the loop must not wait for the lock (p99 < 50 ms).

The generation phase (`--generation`): the daemon answers generate requests one after another (as replies and
schedules do, through `agenerate`) on a 124M-shaped model that has no int8 copy yet: its first use starts the
background int8 conversion (a child process, bot/generation/ct2.py), transformers serves meanwhile, then the
int8 copy. Lag is reported while converting and after.

    python bench/daemon_lag.py [--steps 6] [--idle-seconds 5] [--writer-seconds 8] [--generation]
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
from bench.common import gpt2_124m_dir, print_machine, save_results, show  # noqa: E402

TICK = 0.010
WRITER_HOLD_S = 1.0  # how long the other process holds the write lock each time
WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
end = time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < end:
    conn.execute("BEGIN IMMEDIATE")
    time.sleep(float(sys.argv[3]))
    conn.execute("COMMIT")
    time.sleep(0.05)
"""


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(TICK)
        lags.append(max(0.0, loop.time() - t - TICK))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 2)


async def writer_phase(bot, job_id: int, seconds: float, base: str) -> dict:
    """Loop lag while another process holds the write lock, the daemon's periodic database work going on."""
    import inspect
    import subprocess

    from bot.posting.schedule_runner import ScheduleRunner
    from bot.training import jobs

    async def fire(schedule, key):  # never called: no schedule is due
        return None

    runner = ScheduleRunner(bot.schedules, fire, grace_seconds=60, poll_seconds=3600)
    await runner.start()

    async def daemon_work(stop: asyncio.Event, counts: dict) -> None:
        async def each(name, work):
            while not stop.is_set():
                result = work()
                if inspect.isawaitable(result):  # so that the same script measures code before the move
                    await result
                counts[name] = counts.get(name, 0) + 1
                await asyncio.sleep(0.2)

        await asyncio.gather(
            each("schedule polls", runner.sync),
            each("requests built", lambda: bot.build_request(["ada_bytes"], base_model=base, max_steps=1)),
            each("status writes", lambda: asyncio.to_thread(jobs.set_status_message, bot.store, job_id, 1, 2)),
        )

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(bot.settings.db_path), str(seconds),
                             str(WRITER_HOLD_S)], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    lags: list[float] = []
    counts: dict = {}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(probe(lags, stop)), asyncio.create_task(daemon_work(stop, counts))]
    await asyncio.to_thread(proc.wait)
    stop.set()
    await asyncio.gather(*tasks)
    await runner.stop()
    return {"writer_hold_s": WRITER_HOLD_S, "writer_samples": len(lags), "writer_lag_p50_ms": pct(lags, 0.5),
            "writer_lag_p99_ms": pct(lags, 0.99), "writer_lag_max_ms": round(1000 * max(lags), 2),
            **{f"writer_{k.replace(' ', '_')}": v for k, v in counts.items()}}


async def generation_phase(tmp: Path, seconds_after: float) -> dict:
    """Loop lag while generate requests are answered and the model is converted to int8 in the background."""
    import os
    import shutil

    from bot.config import Settings
    from bot.generation import ct2
    from bot.modelfolder import INT8_DIR
    from bot.service import Mimicbot

    if not ct2.available():
        return {"generation": "skipped: CTranslate2 is not installed"}
    source, model = gpt2_124m_dir(), tmp / "models" / "lag-124m"
    model.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            os.link(f, model / f.name) if f.suffix == ".safetensors" else shutil.copy2(f, model / f.name)
    assert not (model / INT8_DIR).exists()
    bot = Mimicbot(Settings(mimicbot_data_dir=tmp / "data-gen", mimicbot_models_dir=tmp / "models",
                            mimicbot_int8="auto", _env_file=None))
    converting: list[float] = []
    after: list[float] = []
    calls = {"converting": 0, "int8": 0}
    stop = asyncio.Event()
    task = asyncio.create_task(probe(converting, stop))

    async def requests(until: asyncio.Event, phase: str) -> None:
        while not until.is_set():
            await bot.agenerate("lag-124m", n=2, max_new_tokens=40)
            calls[phase] += 1

    t = time.perf_counter()
    await bot.agenerate("lag-124m", n=1, max_new_tokens=4)  # first use: load, and the conversion starts
    done = asyncio.Event()
    gen = asyncio.create_task(requests(done, "converting"))
    await asyncio.to_thread(bot.model_store.converter.wait)
    converted_s = time.perf_counter() - t
    done.set()
    await gen
    stop.set()
    await task
    stop = asyncio.Event()
    task = asyncio.create_task(probe(after, stop))
    done = asyncio.Event()
    gen = asyncio.create_task(requests(done, "int8"))
    await asyncio.sleep(seconds_after)
    done.set()
    await gen
    stop.set()
    await task
    engine = bot.cache.get("lag-124m").engine
    bot.close()
    return {"generation_converted_after_s": round(converted_s, 1), "generation_int8_in_use": engine is not None,
            "converting_calls": calls["converting"], "converting_samples": len(converting),
            "converting_lag_p50_ms": pct(converting, 0.5), "converting_lag_p99_ms": pct(converting, 0.99),
            "converting_lag_max_ms": round(1000 * max(converting), 2),
            "int8_calls": calls["int8"], "int8_samples": len(after), "int8_lag_p50_ms": pct(after, 0.5),
            "int8_lag_p99_ms": pct(after, 0.99), "int8_lag_max_ms": round(1000 * max(after), 2)}


async def run(steps: int, idle_seconds: float, writer_seconds: float, writer_only: bool) -> dict:
    from bot.config import Settings
    from bot.samples.generate import sample_path
    from bot.service import Mimicbot
    from bot.training.pool import TrainingPool

    tmp = Path(tempfile.mkdtemp(prefix="mimicbot-lag-"))
    settings = Settings(mimicbot_data_dir=tmp / "data", mimicbot_models_dir=tmp / "models", _env_file=None)
    bot = Mimicbot(settings)
    await bot.fetch([str(sample_path("ada_bytes")), str(sample_path("grace_gardens"))])
    idle_figures = await idle_phase(idle_seconds)

    if writer_only:  # a queued job for the status writes; nothing trains
        base = "tiny"
        job = bot.submit(await bot.build_request(["ada_bytes"], base_model=base, max_steps=1), requested_by="bench")
        writer = await writer_phase(bot, job["id"], writer_seconds, base)
        bot.close()
        return {**idle_figures, **writer}

    pool = bot.pool = TrainingPool(bot.store, settings, workers=2)
    await pool.start()
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
    writer = await writer_phase(bot, jobs[0], writer_seconds, base)
    await pool.close()
    bot.close()
    return {
        "jobs": len(jobs), "job_states": states, "training_wall_s": round(time.perf_counter() - t, 1),
        **idle_figures, **writer,
        "busy_samples": len(busy), "busy_lag_p50_ms": pct(busy, 0.5), "busy_lag_p99_ms": pct(busy, 0.99),
        "busy_lag_max_ms": round(1000 * max(busy), 2), "busy_lag_mean_ms": round(1000 * statistics.mean(busy), 2),
    }


async def idle_phase(seconds: float) -> dict:
    """The event loop's lag with nothing else running: the baseline of every phase."""
    idle: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(idle, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return {"idle_samples": len(idle), "idle_lag_p50_ms": pct(idle, 0.5), "idle_lag_p99_ms": pct(idle, 0.99)}


async def run_generation(idle_seconds: float, seconds_after: float) -> dict:
    import os

    tmp = Path(tempfile.mkdtemp(prefix="mimicbot-lag-"))
    figures = {"load_average_before": [round(x, 2) for x in os.getloadavg()], **await idle_phase(idle_seconds)}
    figures.update(await generation_phase(tmp, seconds_after))
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="training steps of each job (124M-shaped model)")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--writer-seconds", type=float, default=8.0, help="how long the other process writes")
    ap.add_argument("--writer-only", action="store_true", help="only the idle and writer phases (no training)")
    ap.add_argument("--generation", action="store_true", help="only the idle and generation/int8-conversion phases")
    ap.add_argument("--generation-seconds", type=float, default=20.0, help="int8 generation after the conversion")
    a = ap.parse_args()
    print_machine()
    if a.generation:
        figures = asyncio.run(run_generation(a.idle_seconds, a.generation_seconds))
        show("daemon event-loop lag: idle, generating while converting to int8, generating with int8",
             list(figures.items()))
        save_results("daemon_lag_generation", figures)
        return
    figures = asyncio.run(run(a.steps, a.idle_seconds, a.writer_seconds, a.writer_only))
    show("daemon event-loop lag: idle, 2 training jobs running, another process writing", list(figures.items()))
    save_results("daemon_lag_writer" if a.writer_only else "daemon_lag", figures)


if __name__ == "__main__":
    main()
