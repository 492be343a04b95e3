"""bot/networks: the one rate-limit wait (read from each network's reset headers) and the one call loop, and
the layering that makes them the only door — reading and posting both go through bot/networks, and neither
imports the other."""

from __future__ import annotations

import ast
import asyncio
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.errors import SourceError
from bot.networks.base import (
    MAX_RATE_LIMIT_WAITS,
    RATE_LIMIT_FALLBACK,
    RATE_LIMIT_MARGIN,
    Caller,
    RateLimited,
    reset_wait,
)

BOT = Path(__file__).resolve().parent.parent / "bot"
NOW = 1_800_000_000.0


@pytest.mark.parametrize("headers, wait", [
    ({"x-rate-limit-reset": str(int(NOW) + 40)}, 40),  # X: epoch seconds
    ({"X-RateLimit-Reset": "2027-01-15T08:00:30.000Z"}, None),  # Mastodon: ISO 8601 (checked below)
    ({"ratelimit-reset": str(int(NOW) + 12)}, 12),  # Bluesky: epoch seconds
    ({"RateLimit-Reset": "25"}, 25),  # the IETF draft: seconds from now
    ({"Retry-After": "7"}, 7),
    ({"retry-after": "not a date"}, "fallback"),
    ({}, "fallback"),
    ({"x-rate-limit-reset": str(int(NOW) - 100)}, 0),  # already past: just the margin
])
def test_reset_wait_reads_every_networks_header(headers, wait):
    if wait is None:
        iso = datetime.fromtimestamp(NOW, timezone.utc) + timedelta(seconds=30)
        headers = {"X-RateLimit-Reset": iso.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        wait = 30
    got = reset_wait(headers, now=NOW)
    expected = RATE_LIMIT_FALLBACK if wait == "fallback" else wait + RATE_LIMIT_MARGIN
    assert got == pytest.approx(expected, abs=0.01)


def test_retry_after_as_an_http_date():
    when = datetime.fromtimestamp(NOW, timezone.utc) + timedelta(seconds=90)
    assert reset_wait({"Retry-After": format_datetime(when, usegmt=True)}, now=NOW) == pytest.approx(91, abs=0.01)


class _Flaky(Caller):
    network = "Flaky"


async def test_the_loop_waits_out_429s_without_blocking_then_answers():
    answers = [RateLimited({"retry-after": "0"}), RateLimited({"retry-after": "0"}), "done"]
    ticks = 0
    waits: list[float] = []

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0.05)  # the loop must keep running meanwhile

    def request():  # a sync client's call: run in a worker thread
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        time.sleep(0.02)
        return answer

    task = asyncio.create_task(ticker())
    try:
        result = await _Flaky(sleep=sleep).call(request, what="a test")
    finally:
        task.cancel()
    assert result == "done" and waits == [RATE_LIMIT_MARGIN, RATE_LIMIT_MARGIN] and ticks >= 10


async def test_the_loop_gives_up_with_one_clear_error():
    async def no_sleep(seconds: float) -> None:
        pass

    calls = 0

    async def always_limited():
        nonlocal calls
        calls += 1
        raise RateLimited({"retry-after": "2"})

    with pytest.raises(SourceError, match=r"Flaky kept rate-limiting the posts \(3 waits\); the limit resets in 3 s"):
        await _Flaky(sleep=no_sleep).call(always_limited, what="the posts")
    assert calls == MAX_RATE_LIMIT_WAITS + 1

    async def far_off():
        raise RateLimited({"retry-after": "3600"})

    with pytest.raises(SourceError, match=r"Flaky is rate-limiting the posts; the limit resets in 3601 s"):
        await _Flaky(sleep=no_sleep, max_wait=60).call(far_off, what="the posts")


async def test_errors_the_network_module_does_not_know_pass_unchanged():
    async def broken():
        raise KeyError("a bug of ours")

    with pytest.raises(KeyError):
        await _Flaky().call(broken, what="x")


def _imports(path: Path) -> set[str]:
    """The bot.* modules a file imports (relative imports resolved)."""
    package = path.relative_to(BOT.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("bot.")}


@pytest.mark.parametrize("package, forbidden", [
    ("posting", ("bot.sources",)),  # posting gets its clients from bot.networks, not from the readers
    ("sources", ("bot.posting",)),
    ("networks", ("bot.sources", "bot.posting", "bot.discord", "bot.service")),
])
def test_reading_and_posting_meet_only_in_networks(package, forbidden):
    offending = {str(path.relative_to(BOT)): sorted(m for m in _imports(path) if m.startswith(forbidden))
                 for path in (BOT / package).glob("*.py")}
    assert {k: v for k, v in offending.items() if v} == {}


def test_one_copy_of_the_rate_limit_constants():
    """The copies that lived in four modules are gone: only bot/networks/base.py defines them."""
    defining = [str(p.relative_to(BOT)) for p in BOT.rglob("*.py")
                if any(line.startswith(("RATE_LIMIT_MARGIN =", "RATE_LIMIT_FALLBACK =", "TIMELINE_CAP =",
                                        "DEFAULT_TIMEOUT ="))
                       for line in p.read_text().splitlines())]
    assert sorted(defining) == ["networks/base.py", "sources/base.py"]
