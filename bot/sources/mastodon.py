"""Posts from Mastodon through Mastodon.py, and the call wrapper that posting to Mastodon shares.

`mastodon:@alice@example.social` reads from MASTODON_API_BASE when it is set (with MASTODON_ACCESS_TOKEN), else
anonymously from the account's own instance (https://example.social), which holds its whole history; the token
is never sent anywhere but MASTODON_API_BASE. The account is found with `accounts/lookup`, or, when the
instance does not know it yet, `accounts/search` (resolving it over WebFinger when a token is set).

Statuses come from `accounts/:id/statuses`, 40 a page, newest first, at most 3,200 (as for X): a first fetch
pages back with `max_id`; a later one pages forward from the stored newest id with `min_id`, so nothing
between two fetches is skipped. Boosts come back as RawPosts with `is_retweet=True` (dropped by cleaning,
counted). Only public and unlisted statuses are kept: a followers-only post is not for a public imitation.

A status's HTML becomes text with a real HTML parser: paragraphs become blank lines, `<br>` a newline, links
their text (the full URL, which cleaning then removes, as it does X's links), entities are unescaped, and the
`RE: <link>` line Mastodon adds to quote posts is dropped. Mastodon.py is synchronous: each call runs in a
worker thread, so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)
from urllib3.exceptions import NewConnectionError

from ..config import Settings
from ..errors import (
    AuthError,
    ConfigError,
    MimicbotError,
    ProtectedAccount,
    SourceError,
    UnknownAccount,
)
from ..naming import parse_acct
from .base import AccountInfo, FetchResult, RawPost

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]

NETWORK = "mastodon"
PAGE_SIZE = 40  # the largest `limit` accounts/:id/statuses accepts
TIMELINE_CAP = 3200
DEFAULT_TIMEOUT = 30.0
RATE_LIMIT_MARGIN = 1.0
RATE_LIMIT_FALLBACK = 60.0
READABLE = ("public", "unlisted")


def api_base_for(settings: Settings, instance: str) -> tuple[str, str | None]:
    """(API base, token): the configured instance with its token, or the account's own instance, anonymously."""
    if settings.mastodon_api_base:
        return settings.mastodon_api_base.strip().rstrip("/"), settings.secret("mastodon_access_token")
    return f"https://{instance}", None


def mastodon_client(api_base: str, token: str | None, timeout: float = DEFAULT_TIMEOUT) -> Mastodon:
    """A Mastodon.py client that raises on a 429 (we wait asynchronously) instead of sleeping in its thread."""
    if not re.match(r"^https?://[^/\s]+", api_base):
        raise ConfigError(f"MASTODON_API_BASE must be an http(s) URL such as https://mastodon.social, "
                          f"not {api_base!r}")
    return Mastodon(api_base_url=api_base, access_token=token, ratelimit_method="throw", request_timeout=timeout,
                    session=requests.Session(), user_agent="mimicbot")


# -- Calling the network ---------------------------------------------------------------------------------------


class MastodonCaller:
    """Runs Mastodon.py calls in a worker thread with their errors turned into ours.

    A 429 is waited out with `sleep` (asyncio.sleep) when its window (X-RateLimit-Reset) resets within
    `max_wait` seconds, at most `max_waits` times; otherwise a clear error. `error` is raised for a certain
    failure, `unknown` when a request that creates something went out and no clear answer came back.
    """

    def __init__(self, client: Mastodon, *, error: type[MimicbotError] = SourceError,
                 unknown: type[MimicbotError] = SourceError, sleep: Sleep = asyncio.sleep, max_waits: int = 3,
                 max_wait: float = 15 * 60.0):
        self.client = client
        self.error, self.unknown = error, unknown
        self.sleep, self.max_waits, self.max_wait = sleep, max_waits, max_wait

    async def __call__(self, method: str, *args, what: str, publishing: bool = False,
                       not_found: Callable[[], MimicbotError] | None = None, **kwargs) -> Any:
        call = getattr(self.client, method)
        for attempt in range(self.max_waits + 1):
            try:
                return await asyncio.to_thread(call, *args, **kwargs)
            except MastodonRatelimitError:
                wait = self.reset_wait()
                if attempt == self.max_waits or wait > self.max_wait:
                    raise self.error(f"Mastodon is rate-limiting {what}; the limit resets in {wait:.0f} s, "
                                     "try again then") from None
                log.warning("Mastodon rate limit reached (%s); waiting %.0f s for it to reset", what, wait)
                await self.sleep(wait)
            except MastodonNotFoundError as e:
                raise (not_found and not_found()) or self.error(f"Mastodon found nothing for {what} "
                                                                f"({_detail(e)})") from None
            except MastodonUnauthorizedError as e:
                raise AuthError(f"Mastodon refused the access token for {what} ({_detail(e)}); "
                                "check MASTODON_ACCESS_TOKEN") from None
            except MastodonServerError as e:
                kind = self.unknown if publishing else self.error
                raise kind(f"Mastodon had a server error during {what} ({_detail(e)})"
                           + ("; it may or may not be posted" if publishing else "")) from None
            except MastodonAPIError as e:
                raise self.error(f"Mastodon rejected {what} ({_detail(e)})") from None
            except MastodonNetworkError as e:
                if publishing and not _never_sent(e):
                    raise self.unknown(f"Mastodon did not answer {what}; it may or may not be posted") from None
                raise self.error(f"could not reach Mastodon at {self.client.api_base_url} for {what}: "
                                 f"{_root_cause(e)}") from None
            except MastodonError as e:
                raise self.error(f"Mastodon answered {what} with something unexpected: {e}") from None
        raise AssertionError("unreachable")

    def reset_wait(self, now: float | None = None) -> float:
        """Seconds until the window resets (Mastodon.py keeps X-RateLimit-Reset, set to our clock), plus a margin."""
        reset = self.client.ratelimit_reset
        now = time.time() if now is None else now
        if reset is None or reset <= now:
            return RATE_LIMIT_FALLBACK
        return reset - now + RATE_LIMIT_MARGIN


def _detail(e: MastodonError) -> str:
    """`MastodonAPIError('Mastodon API returned error', 422, 'Unprocessable Entity', 'Validation failed: ...')`."""
    args = e.args
    if len(args) >= 4:
        return f"HTTP {args[1]}: {args[3] or args[2]}"
    return str(e)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _never_sent(e: BaseException) -> bool:
    """The connection was never made (refused, unknown host, connect timeout): the request cannot have arrived."""
    return any(isinstance(x, (NewConnectionError, requests.ConnectTimeout)) for x in _chain(e))


def _root_cause(e: BaseException) -> str:
    last = list(_chain(e))[-1]
    return str(last) or type(last).__name__


# -- HTML to text -----------------------------------------------------------------------------------------------


class _StatusText(HTMLParser):
    BLOCKS = {"p", "div", "blockquote", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6"}
    VOID = {"br", "img", "hr", "wbr", "input", "meta", "link", "source"}
    SKIPPED_CLASSES = {"quote-inline"}  # Mastodon's "RE: <link>" paragraph for quote posts

    def __init__(self):
        super().__init__(convert_charrefs=True)  # every entity, named or numeric, unescaped
        self.parts: list[str] = []
        self._skipping = 0  # depth inside a skipped element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if tag == "br" and not self._skipping:
                self.parts.append("\n")
            return
        classes = set((dict(attrs).get("class") or "").split())
        if self._skipping or classes & self.SKIPPED_CLASSES:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str | None) -> str:
    """A status's HTML as the text its author typed (see the module docstring)."""
    if not html:
        return ""
    parser = _StatusText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", "".join(parser.parts))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- The statuses source ----------------------------------------------------------------------------------------


class MastodonSource:
    """A Mastodon account's public statuses, replies and boosts (boosts flagged as retweets)."""

    network = NETWORK

    def __init__(self, spec: str, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                 sleep: Sleep = asyncio.sleep, max_rate_limit_wait: float = 15 * 60.0):
        self.user, self.instance = parse_acct(spec)
        self.handle = f"{self.user}@{self.instance}"
        self.label = f"mastodon:@{self.handle}"
        self.api_base, self._token = api_base_for(settings, self.instance)
        self.timeout = timeout
        self._sleep, self._max_wait = sleep, max_rate_limit_wait

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        client = mastodon_client(self.api_base, self._token, self.timeout)
        call = MastodonCaller(client, sleep=self._sleep, max_wait=self._max_wait)
        try:
            account = await self._account(call)
            statuses = await self._statuses(call, account.user_id, since_id)
        finally:
            client.session.close()
        ids = [str(s["id"]) for s in statuses] + ([since_id] if since_id else [])
        posts = [raw_post(s) for s in statuses if s.get("visibility", "public") in READABLE]
        return FetchResult(account=account, posts=posts, cursor=max(ids, key=_id_order) if ids else None)

    async def _account(self, call: MastodonCaller) -> AccountInfo:
        def missing() -> UnknownAccount:
            return UnknownAccount(f"no Mastodon account @{self.handle} (asked {self.api_base})")

        try:
            found = await call("account_lookup", self.handle, what=f"the account {self.label}", not_found=missing)
        except UnknownAccount:  # not known to that instance yet: search, resolving over WebFinger with a token
            results = await call("account_search", self.handle, resolve=self._token is not None, limit=5,
                                 what=f"a search for {self.label}")
            found = next((a for a in results if self._is_this(a)), None)
            if found is None:
                raise missing() from None
        if found.get("suspended"):
            raise ProtectedAccount(f"{self.label} is suspended on Mastodon: its posts cannot be read")
        return AccountInfo(network=NETWORK, handle=self.handle, display_name=found.get("display_name") or self.user,
                           user_id=str(found["id"]), avatar_url=found.get("avatar"))

    def _is_this(self, account) -> bool:
        acct = str(account.get("acct", "")).lower()
        local_here = acct == self.user and urlsplit(account.get("url") or "").hostname == self.instance
        return acct == self.handle or local_here

    async def _statuses(self, call: MastodonCaller, account_id: str, since_id: str | None) -> list:
        """Newest first: back from the newest (`max_id`), or forward from `since_id` (`min_id`, each page the
        oldest statuses after it), until an empty page or the cap. At the cap, a forward walk keeps the oldest,
        so the next fetch goes on from there without a gap."""
        forward = since_id is not None
        statuses: list = []
        position = since_id
        while len(statuses) < TIMELINE_CAP:
            page = await call("account_statuses", account_id, limit=PAGE_SIZE,
                              **({"min_id": position} if forward else {"max_id": position}),
                              what=f"the statuses of {self.label}")
            if not page:
                break
            room = TIMELINE_CAP - len(statuses)
            statuses.extend(page[-room:] if forward else page[:room])
            position = str(page[0 if forward else -1]["id"])
        return statuses


def raw_post(status) -> RawPost:
    boosted = status.get("reblog")
    shown = boosted or status
    return RawPost(
        id=str(status["id"]),
        text=html_to_text(shown.get("content")),
        created_at=_utc(status.get("created_at")),
        is_retweet=boosted is not None,
        is_reply=status.get("in_reply_to_id") is not None,
        is_quote=bool(shown.get("quote")),
        lang=shown.get("language"),
    )


def _id_order(status_id: str) -> tuple[int, str]:
    """Mastodon's numeric ids and the fixed-width ids of other servers (ULIDs, flake ids) both sort this way."""
    return len(status_id), status_id


def _utc(value: datetime | str | None) -> str | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
