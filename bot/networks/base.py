"""What every network's client shares: how long a 429 asks us to wait, and the one call loop that waits it out
without blocking the event loop and turns the network's errors into ours (bot/errors.py, or the posting kinds
TargetError / DeliveryUnknown).

The wait comes from the answer's own headers, whichever the network sends:
- `x-rate-limit-reset` (X: epoch seconds) and `X-RateLimit-Reset` (Mastodon: an ISO 8601 time),
- `ratelimit-reset` (Bluesky: epoch seconds; the IETF draft's form, seconds from now, is read too),
- `Retry-After` (seconds, or an HTTP date),
plus a margin of RATE_LIMIT_MARGIN; RATE_LIMIT_FALLBACK when none is there. A wait longer than the caller's
`max_wait`, or more than `max_waits` 429s in a row, ends the call with one clear error saying when to retry.
Sync clients (tweepy's user-context Client, Mastodon.py) run in a worker thread; every sleep is `await sleep(...)`.

Every error message made here passes through the process's redactor (bot/redaction.py) before it is raised:
an upstream that echoes the request (a proxy, a misbehaving server) cannot leak a token into what we show,
log or store.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from ..errors import ConfigError, MimicbotError, SourceError
from ..redaction import redact, redacted

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]

DEFAULT_TIMEOUT = 30.0  # seconds for one HTTP request
RATE_LIMIT_MARGIN = 1.0  # seconds past the announced reset before trying again
RATE_LIMIT_FALLBACK = 60.0  # when a 429 says nothing about its reset
MAX_RATE_LIMIT_WAITS = 3  # consecutive 429s waited out before giving up
MAX_RATE_LIMIT_WAIT = 15 * 60.0  # a longer wait is not waited: the call fails saying when to retry
RESET_HEADERS = ("x-rate-limit-reset", "x-ratelimit-reset", "ratelimit-reset")
_EPOCH_FLOOR = 1_000_000_000  # a reset value below this is a number of seconds from now, not a time


def http_base(url: str | None, setting: str, example: str) -> str:
    """`url` without its trailing slash, or a ConfigError naming `setting` when it is not an http(s) URL."""
    base = (url or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base):
        raise ConfigError(f"{setting} must be an http(s) URL such as {example}, not {url!r}")
    return base


def _instant(value: str, now: float) -> float | None:
    """A reset header's value as an epoch time: epoch seconds, seconds from now, ISO 8601 or an HTTP date."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if number >= _EPOCH_FLOOR else now + number
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def reset_wait(headers: Mapping[str, Any] | None, now: float | None = None) -> float:
    """Seconds to wait after a 429 whose answer carried `headers` (see the module docstring)."""
    now = time.time() if now is None else now
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items() if v is not None}
    for name in (*RESET_HEADERS, "retry-after"):
        if name in lowered and (at := _instant(lowered[name], now)) is not None:
            return max(0.0, at - now) + RATE_LIMIT_MARGIN
    return RATE_LIMIT_FALLBACK


class RateLimited(Exception):
    """A 429, as a network module recognised it: the headers that say when its window resets."""

    def __init__(self, headers: Mapping[str, Any] | None):
        super().__init__("rate limited")
        self.headers = headers or {}


class Caller:
    """One network's calls: awaited (or run in a worker thread when the client is sync), 429s waited out with
    `sleep` (asyncio.sleep: the event loop keeps running), every other failure translated.

    A network module subclasses it and says two things: `rate_limit(e)` — the headers of a 429, or None when
    `e` is not one — and `translate(e, what=..., publishing=..., **hooks)` — the error to raise instead of `e`
    (None: `e` is not the network's, let it through). `error` is the kind raised for a certain failure
    (SourceError when reading, TargetError when posting), `unknown` the kind for a request that creates
    something, went out, and got no clear answer (DeliveryUnknown when posting). `what` names the thing asked
    for, as in "the posts of bsky:alice.bsky.social".
    """

    network = "the network"

    def __init__(self, *, error: type[MimicbotError] = SourceError, unknown: type[MimicbotError] | None = None,
                 sleep: Sleep = asyncio.sleep, max_waits: int = MAX_RATE_LIMIT_WAITS,
                 max_wait: float = MAX_RATE_LIMIT_WAIT):
        self.error = error
        self.unknown = unknown or error
        self.sleep, self.max_waits, self.max_wait = sleep, max_waits, max_wait

    # -- what a network module says -------------------------------------------------------------------------

    def rate_limit(self, e: BaseException) -> Mapping[str, Any] | None:
        return e.headers if isinstance(e, RateLimited) else None

    def translate(self, e: BaseException, *, what: str, publishing: bool, **hooks) -> BaseException | None:
        return None

    # -- the loop -------------------------------------------------------------------------------------------

    async def run(self, request: Callable[..., Any], *args, **kwargs) -> Any:
        """`await request(...)` for a coroutine function; a sync one runs in a worker thread."""
        if inspect.iscoroutinefunction(request):
            return await request(*args, **kwargs)
        result = await asyncio.to_thread(request, *args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def call(self, request: Callable[..., Any], *args, what: str, publishing: bool = False,
                   hooks: Mapping[str, Any] | None = None, **kwargs) -> Any:
        """`request(*args, **kwargs)`, retried after each 429 while the waits allow (see the class docstring)."""
        for attempt in range(self.max_waits + 1):
            try:
                return await self.run(request, *args, **kwargs)
            except Exception as e:  # noqa: BLE001 - translated below, or raised unchanged
                headers = self.rate_limit(e)
                if headers is None:
                    translated = self.translate(e, what=what, publishing=publishing, **(hooks or {}))
                    if translated is None:
                        raise
                    raise redacted(translated) from None
                wait = reset_wait(headers)
                if wait > self.max_wait + RATE_LIMIT_MARGIN:  # X's windows are 15 minutes: 15 minutes is waited
                    raise redacted(self.error(f"{self.network} is rate-limiting {what}; the limit resets in "
                                              f"{wait:.0f} s, try again then")) from None
                if attempt == self.max_waits:
                    raise redacted(self.error(f"{self.network} kept rate-limiting {what} ({attempt} waits); "
                                              f"the limit resets in {wait:.0f} s, try again then")) from None
                log.warning("%s rate limit reached (%s); waiting %.0f s for it to reset", self.network, what, wait)
                await self.sleep(wait)
        raise AssertionError("unreachable")


def describe(e: BaseException) -> str:
    """A transport failure in a few words, redacted: "timed out", or the innermost cause's text."""
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    return redact(str(e) or type(e).__name__)


def chain(e: BaseException | None):
    """`e`, its cause, its cause's cause... (each once)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def root_cause(e: BaseException) -> str:
    last = list(chain(e))[-1]
    return redact(str(last) or type(last).__name__)
