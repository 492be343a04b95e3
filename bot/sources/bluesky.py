"""Posts from Bluesky through `atproto`'s AsyncClient (client and call wrapper: bot/networks/bluesky.py).

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
from datetime import datetime, timezone
from functools import partial

from atproto_client import AsyncClient, models
from ..config import Settings
from ..errors import MimicbotError, ProtectedAccount, UnknownAccount
from ..naming import bluesky_handle
from ..networks.base import DEFAULT_TIMEOUT, MAX_RATE_LIMIT_WAIT, Sleep
from ..networks.bluesky import BlueskyCaller, bsky_client
from .base import TIMELINE_CAP, AccountInfo, FetchResult, RawPost

log = logging.getLogger(__name__)

NETWORK = "bsky"
PAGE_SIZE = 100  # the largest `limit` getAuthorFeed accepts
_GONE = {"AccountTakedown": "suspended", "AccountDeactivated": "deactivated", "AccountSuspended": "suspended"}
NO_LOGGED_OUT_VIEWERS = "!no-unauthenticated"  # a self-label: "do not show my posts to logged-out viewers"




# -- The author feed source ---------------------------------------------------------------------------------


class BlueskySource:
    """A Bluesky account's public posts, replies and reposts (reposts flagged as retweets)."""

    network = NETWORK

    def __init__(self, spec: str, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                 sleep: Sleep = asyncio.sleep, max_rate_limit_wait: float = MAX_RATE_LIMIT_WAIT):
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
    reply = getattr(record, "reply", None)
    parent = getattr(item.reply, "parent", None) if item.reply else None  # a PostView; NotFoundPost has no record
    parent_record = getattr(parent, "record", None)
    return RawPost(
        id=(reason.uri or f"repost:{post.uri}") if repost else post.uri,
        text=expand_links(getattr(record, "text", "") or "", getattr(record, "facets", None)),
        created_at=_iso(parse_time(reason.indexed_at if repost else getattr(record, "created_at", post.indexed_at))),
        is_retweet=repost,
        is_reply=reply is not None,
        is_quote=isinstance(embed, (models.AppBskyEmbedRecord.Main, models.AppBskyEmbedRecordWithMedia.Main)),
        lang=langs[0] if langs else None,
        reply_to_id=reply.parent.uri if reply is not None and not repost else None,
        parent_text=(expand_links(getattr(parent_record, "text", "") or "", getattr(parent_record, "facets", None))
                     or None) if parent_record is not None and not repost else None,
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
