"""Posts from Bluesky through `atproto`'s AsyncClient, and the call wrapper that posting to Bluesky shares.

Reading needs no account: `app.bsky.actor.getProfile` and `app.bsky.feed.getAuthorFeed` are served to anyone by
the public AppView (BLUESKY_APPVIEW_URL, default https://public.api.bsky.app). The author feed is read with
`filter=posts_with_replies` (replies kept) and no pins, 100 items a page, following `cursor`, at most 3,200 items
(the bound X's timeline has, so corpora stay comparable). A repost comes back as a RawPost with
`is_retweet=True`: cleaning drops it and the card counts it, exactly as for X.

The cursor (`since_id`) is a time, not a URI. The author feed is ordered by each item's sort time (a post's
`min(createdAt, indexedAt)`, a repost's `indexedAt`), and there is no "newer than URI" parameter, so the only
stop condition that follows the feed's own order is a time: the cursor is the newest item's sort time (ISO 8601,
UTC), and a later fetch pages until it meets an item older than it. Items at exactly that time are read again
and deduplicated by the store (post ids are URIs), so nothing posted in the same millisecond is lost.

Links: Bluesky shortens a link in the text ("example.com/some/pa...") and keeps the full URL in a facet. The
full URL is put back, so cleaning removes links the same way it removes X's t.co links.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any, TypeVar

import httpx
from atproto_client import AsyncClient, models
from atproto_client.exceptions import (
    BadRequestError,
    InvokeTimeoutError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    RequestException,
    UnauthorizedError,
)
from atproto_client.models.common import XrpcError
from atproto_client.request import AsyncRequest
from atproto_core.exceptions import AtProtocolError

from ..config import Settings
from ..errors import (
    AuthError,
    ConfigError,
    MimicbotError,
    ProtectedAccount,
    SourceError,
    UnknownAccount,
)
from ..naming import bluesky_handle
from .base import AccountInfo, FetchResult, RawPost

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]

NETWORK = "bsky"
PAGE_SIZE = 100  # the largest `limit` getAuthorFeed accepts
TIMELINE_CAP = 3200
DEFAULT_TIMEOUT = 30.0
RATE_LIMIT_MARGIN = 1.0  # seconds past `ratelimit-reset` before trying again
RATE_LIMIT_FALLBACK = 60.0  # when a 429 says nothing about its reset
_GONE = {"AccountTakedown": "suspended", "AccountDeactivated": "deactivated", "AccountSuspended": "suspended"}
NO_LOGGED_OUT_VIEWERS = "!no-unauthenticated"  # a self-label: "do not show my posts to logged-out viewers"


def bsky_client(base_url: str, timeout: float = DEFAULT_TIMEOUT, *, setting: str) -> AsyncClient:
    """atproto's AsyncClient on `base_url` (it appends /xrpc), read from the setting named `setting`.
    Close it with `await client.request.close()`."""
    if not re.match(r"^https?://[^/\s]+", base_url.strip()):
        raise ConfigError(f"{setting} must be an http(s) URL such as https://bsky.social, not {base_url!r}")
    return AsyncClient(base_url.strip(), request=AsyncRequest(timeout=timeout))


# -- Calling the network ---------------------------------------------------------------------------------------


def reset_wait(error: RateLimitExceededError, now: float | None = None) -> float:
    """Seconds until a 429's window resets (`ratelimit-reset`, else `retry-after`), plus a margin."""
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    if error.reset_at is not None:
        wait = error.reset_at.timestamp() - now
    elif error.retry_after is not None:
        wait = error.retry_after
    else:
        return RATE_LIMIT_FALLBACK
    return max(0.0, wait) + RATE_LIMIT_MARGIN


def xrpc_error(error: RequestErrorBase) -> tuple[str, str]:
    """(error name, message) of an XRPC error answer, e.g. ("InvalidRequest", "Profile not found")."""
    content = error.response.content if error.response is not None else None
    if isinstance(content, XrpcError):
        return content.error or "", content.message or ""
    status = error.response.status_code if error.response is not None else "no answer"
    return f"HTTP {status}", ""


class BlueskyCaller:
    """Awaits atproto calls with their errors turned into ours.

    A 429 is waited out with `sleep` (asyncio.sleep: the event loop keeps running) when its window resets
    within `max_wait` seconds, at most `max_waits` times; otherwise the call fails with a message saying when
    to try again. `error` is raised for a certain failure and `unknown` when a request that creates something
    went out but no clear answer came back (sources use SourceError for both; posting uses TargetError and
    DeliveryUnknown). `what` names the thing asked for: "the posts of bsky:alice.bsky.social".
    """

    def __init__(self, *, error: type[MimicbotError] = SourceError, unknown: type[MimicbotError] = SourceError,
                 sleep: Sleep = asyncio.sleep, max_waits: int = 3, max_wait: float = 15 * 60.0, auth_hint: str = ""):
        self.error, self.unknown = error, unknown
        self.sleep, self.max_waits, self.max_wait = sleep, max_waits, max_wait
        self.auth_hint = auth_hint

    async def __call__(self, request: Callable[[], Awaitable[T]], *, what: str, publishing: bool = False,
                       bad_request: Callable[[str, str], MimicbotError | None] | None = None) -> T:
        for attempt in range(self.max_waits + 1):
            try:
                return await request()
            except RateLimitExceededError as e:
                wait = reset_wait(e)
                if attempt == self.max_waits or wait > self.max_wait:
                    raise self.error(f"Bluesky is rate-limiting {what}; the limit resets in {wait:.0f} s, "
                                     "try again then") from None
                log.warning("Bluesky rate limit reached (%s); waiting %.0f s for it to reset", what, wait)
                await self.sleep(wait)
            except BadRequestError as e:
                name, message = xrpc_error(e)
                raise (bad_request and bad_request(name, message)) or self.error(
                    f"Bluesky rejected {what} ({name}: {message or 'no detail'})") from None
            except UnauthorizedError as e:
                name, message = xrpc_error(e)
                hint = f"; {self.auth_hint}" if self.auth_hint else ""
                raise AuthError(f"Bluesky refused {what} ({name}: {message or 'no detail'}){hint}") from None
            except (AtProtocolError, httpx.HTTPError) as e:
                raise self._failure(e, what, publishing) from None
        raise AssertionError("unreachable")

    def _failure(self, e: Exception, what: str, publishing: bool) -> MimicbotError:
        """A transport failure, a server error or an answer of the wrong shape."""
        status = e.response.status_code if isinstance(e, RequestErrorBase) and e.response is not None else None
        never_sent = isinstance(e.__cause__, httpx.ConnectError) or isinstance(e, httpx.ConnectError)
        answered_badly = status is not None and (status >= 500 or status in (409, 413))
        timed_out = isinstance(e, (InvokeTimeoutError, httpx.TimeoutException))
        if publishing and not never_sent and (timed_out or answered_badly or isinstance(e, NetworkError)):
            return self.unknown(f"Bluesky did not confirm {what} ({_describe(e)}); it may or may not be posted")
        if isinstance(e, (NetworkError, RequestException, httpx.HTTPError)):
            return self.error(f"could not reach Bluesky for {what}: {_describe(e)}")
        return self.error(f"Bluesky answered {what} with something unexpected: {_describe(e)}")


def _describe(e: Exception) -> str:
    if isinstance(e, InvokeTimeoutError) or isinstance(e.__cause__, httpx.TimeoutException):
        return "timed out"
    cause = e.__cause__ if isinstance(e, RequestErrorBase) and e.response is None and e.__cause__ else e
    return str(cause) or type(cause).__name__


# -- The author feed source ---------------------------------------------------------------------------------


class BlueskySource:
    """A Bluesky account's public posts, replies and reposts (reposts flagged as retweets)."""

    network = NETWORK

    def __init__(self, spec: str, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                 sleep: Sleep = asyncio.sleep, max_rate_limit_wait: float = 15 * 60.0):
        self.handle = bluesky_handle(spec)
        self.label = f"bsky:{self.handle}"
        self.settings = settings
        self.timeout = timeout
        self.call = BlueskyCaller(sleep=sleep, max_wait=max_rate_limit_wait)

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        since = parse_time(since_id)
        client = bsky_client(self.settings.bluesky_appview_url, self.timeout, setting="BLUESKY_APPVIEW_URL")
        try:
            account = await self._account(client)
            posts, newest = await self._feed(client, account.user_id, since)
        finally:
            await client.request.close()
        cursor = newest if newest and (since is None or parse_time(newest) > since) else since_id
        return FetchResult(account=account, posts=posts, cursor=cursor)

    async def _account(self, client: AsyncClient) -> AccountInfo:
        profile = await self.call(partial(client.get_profile, self.handle), what=f"the profile of {self.label}",
                                  bad_request=self._account_error)
        if NO_LOGGED_OUT_VIEWERS in {label.val for label in profile.labels or []}:
            raise ProtectedAccount(f"{self.label} asked Bluesky not to show their posts to logged-out viewers")
        return AccountInfo(network=NETWORK, handle=self.handle, display_name=profile.display_name or self.handle,
                           user_id=profile.did, avatar_url=profile.avatar)

    async def _feed(self, client: AsyncClient, did: str, since: datetime | None) -> tuple[list[RawPost], str | None]:
        """Newest first, page by page, until the feed ends, the cap, or an item older than `since`."""
        posts: list[RawPost] = []
        newest: datetime | None = None
        cursor = None
        while len(posts) < TIMELINE_CAP:
            page = await self.call(
                partial(client.get_author_feed, did, cursor=cursor, filter="posts_with_replies", limit=PAGE_SIZE),
                what=f"the posts of {self.label}", bad_request=self._account_error)
            for item in page.feed:
                if isinstance(item.reason, models.AppBskyFeedDefs.ReasonPin):
                    continue  # a pinned post is out of the feed's order; it also appears in its place
                when = sort_time(item)
                if since is not None and when is not None and when < since:
                    return posts[:TIMELINE_CAP], _iso(newest)
                newest = when if newest is None or (when is not None and when > newest) else newest
                posts.append(raw_post(item))
            cursor = page.cursor
            if not cursor or not page.feed:
                break
        return posts[:TIMELINE_CAP], _iso(newest)

    def _account_error(self, name: str, message: str) -> MimicbotError | None:
        if name in _GONE:
            return ProtectedAccount(f"{self.label} is {_GONE[name]} on Bluesky: its posts cannot be read")
        if name in ("BlockedActor", "BlockedByActor"):
            return ProtectedAccount(f"{self.label} cannot be read: {message or name}")
        text = message.lower()
        if name == "InvalidRequest" and ("not found" in text or "resolve" in text or "actor" in text):
            return UnknownAccount(f"no Bluesky account named {self.handle}")
        return None


def raw_post(item: models.AppBskyFeedDefs.FeedViewPost) -> RawPost:
    post, reason = item.post, item.reason
    record = post.record
    repost = isinstance(reason, models.AppBskyFeedDefs.ReasonRepost)
    embed = getattr(record, "embed", None)
    langs = getattr(record, "langs", None) or []
    return RawPost(
        id=(reason.uri or f"repost:{post.uri}") if repost else post.uri,
        text=expand_links(getattr(record, "text", "") or "", getattr(record, "facets", None)),
        created_at=_iso(parse_time(reason.indexed_at if repost else getattr(record, "created_at", post.indexed_at))),
        is_retweet=repost,
        is_reply=getattr(record, "reply", None) is not None,
        is_quote=isinstance(embed, (models.AppBskyEmbedRecord.Main, models.AppBskyEmbedRecordWithMedia.Main)),
        lang=langs[0] if langs else None,
    )


def sort_time(item: models.AppBskyFeedDefs.FeedViewPost) -> datetime | None:
    """Where the AppView places an item in an author feed: a repost at its own time, a post at the earlier of
    its creation and indexing times (so a back-dated import sorts by its claimed date, a clock in the future
    by when it arrived)."""
    if isinstance(item.reason, models.AppBskyFeedDefs.ReasonRepost):
        return parse_time(item.reason.indexed_at)
    times = [t for t in (parse_time(getattr(item.post.record, "created_at", None)),
                         parse_time(item.post.indexed_at)) if t is not None]
    return min(times) if times else None


def expand_links(text: str, facets: list | None) -> str:
    """Put each link facet's full URL back in place of its shortened display text (facets index UTF-8 bytes)."""
    links = sorted(
        ((f.index.byte_start, f.index.byte_end, feature.uri)
         for f in facets or [] for feature in f.features
         if isinstance(feature, models.AppBskyRichtextFacet.Link)),
        reverse=True,
    )
    data = text.encode("utf-8")
    limit = len(data)
    for start, end, uri in links:
        if 0 <= start <= end <= limit:  # skip malformed and overlapping facets
            data = data[:start] + uri.encode("utf-8") + data[end:]
            limit = start
    return data.decode("utf-8", errors="replace")


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
