"""Benchmark 7 — reading a consenting member's past Discord messages (cogs/learning.py's backfill).

A fake Discord on 127.0.0.1 (tests/discord/fake_discord.py: real HTTP, real gateway) holds one channel of N past
messages, a third of them one member's. The daemon's own bot, logged in and connected to it, reads the channel:

- baseline: discord.py alone, `async for m in channel.history(limit=None)` to the channel's start — what reading
  costs with nothing stored (HTTP, JSON, building Message objects);
- mimicbot: the member's backfill — the same reading, plus filtering, cleaning, and storing each page of her
  messages with the channel's cursor in one SQLite transaction (off the event loop).

Prints messages read per second for both, the ratio, and the event loop's lag during the backfill (the bot keeps
serving while it reads). Run it on a quiet machine for figures to compare; the load average is printed beside.

    python bench/discord_backfill.py [--messages 9000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import discord.http  # noqa: E402

from bench.common import save_results, show  # noqa: E402
from bot.app import App  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.discord.bot import DiscordBot  # noqa: E402
from bot.discord.options import DiscordOptions  # noqa: E402
from bot.service import Mimicbot  # noqa: E402
from tests.discord.fake_discord import TOKEN, FakeDiscord  # noqa: E402

CONSENT = "I agree that my messages in this server's learning channels may be used to train a model of my voice."


async def lag_probe(samples: list[float], stop: asyncio.Event, every: float = 0.01) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(every)
        samples.append(time.perf_counter() - start - every)


async def run(n: int) -> dict:
    async with FakeDiscord() as fake:
        discord.http.Route.BASE = fake.api
        guild = fake.add_guild(channels=("general",))
        ada, grace, bob = (fake.add_member(guild, name) for name in ("ada", "grace", "bob"))
        general = guild["channels"][0]
        fake.fill_history(general, [((ada, grace, bob)[i % 3], f"a sentence written by someone, number {i} of many")
                                    for i in range(n)])
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(mimicbot_data_dir=Path(tmp) / "data", mimicbot_models_dir=Path(tmp) / "models",
                                _env_file=None)
            mimic = Mimicbot(settings)
            app = App(settings, service=mimic)
            bot = DiscordBot(settings, DiscordOptions(_env_file=None), app=app, guild_ready_timeout=0.05)
            await bot.login(TOKEN)
            connection = asyncio.create_task(bot.connect(reconnect=False))
            await asyncio.wait_for(bot.wait_until_ready(), 60)
            channel = bot.get_channel(int(general["id"]))
            try:
                start = time.perf_counter()
                read = sum([1 async for _ in channel.history(limit=None)])
                baseline_s = time.perf_counter() - start

                gid, uid = int(guild["id"]), int(ada["user"]["id"])
                await asyncio.to_thread(mimic.set_guild_setting, gid, "learn_channels", [channel.id])
                await asyncio.to_thread(mimic.opt_in, gid, uid, "Ada", CONSENT)
                lags, stop = [], asyncio.Event()
                probe = asyncio.create_task(lag_probe(lags, stop))
                start = time.perf_counter()
                await bot.get_cog("Learning").start_backfill(bot.get_guild(gid), uid)
                backfill_s = time.perf_counter() - start
                stop.set()
                await probe
                stored = mimic.member_progress(gid, uid)["stored"]
            finally:
                await bot.close()
                await asyncio.gather(connection, return_exceptions=True)
                mimic.close()
    lags_ms = sorted(x * 1000 for x in lags)
    return {"messages": read, "stored": stored, "baseline_s": baseline_s, "backfill_s": backfill_s,
            "baseline_per_s": read / baseline_s, "backfill_per_s": read / backfill_s,
            "lag_p50_ms": statistics.median(lags_ms), "lag_p99_ms": lags_ms[int(len(lags_ms) * 0.99) - 1],
            "lag_max_ms": lags_ms[-1], "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=9000)
    args = parser.parse_args()
    figures = asyncio.run(run(args.messages))
    load = ", ".join(f"{x:.2f}" for x in figures["load_average"])
    show("Discord backfill", [
        ("messages in the channel", f"{figures['messages']:,}"),
        ("baseline: history() alone", f"{figures['baseline_s']:.2f} s, {figures['baseline_per_s']:,.0f} messages/s"),
        ("mimicbot: backfill (read, filter, clean, store)",
         f"{figures['backfill_s']:.2f} s, {figures['backfill_per_s']:,.0f} messages/s, "
         f"{figures['stored']:,} of hers stored"),
        ("ratio (backfill / baseline speed)", f"{figures['backfill_per_s'] / figures['baseline_per_s']:.2f}×"),
        ("event-loop lag during the backfill", f"p50 {figures['lag_p50_ms']:.2f} ms, p99 {figures['lag_p99_ms']:.2f} ms, "
                                               f"max {figures['lag_max_ms']:.1f} ms"),
        ("load average (1, 5, 15 min)", load),
    ])
    save_results("discord_backfill", figures)


if __name__ == "__main__":
    main()
