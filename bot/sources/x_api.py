"""Posts from the X API v2 through tweepy, against `settings.twitter_api_base`.

The client and the call wrapper (rate-limit waits, X's errors turned into ours) are X's, shared with posting:
bot/networks/x.py.

`XApiSource` reads an account's timeline the way the recipe does: `GET /2/users/:id/tweets`, 100 a page,
replies and retweets included, at most the 3,200 most recent tweets (the API's cap, enforced here).
"""

from __future__ import annotations

import asyncio
from datetime import timezone

import tweepy

from ..config import Settings
from ..errors import ProtectedAccount, SourceError, UnknownAccount
from ..networks.base import DEFAULT_TIMEOUT, MAX_RATE_LIMIT_WAITS, Sleep
from ..networks.x import NOTE_TWEET, RebasedAsyncClient, XCaller, full_text, x_client
from ..naming import normalise_handle
from .base import TIMELINE_CAP, AccountInfo, FetchResult, RawPost

PAGE_SIZE = 100  # the largest max_results /2/users/:id/tweets accepts
USER_FIELDS = ["name", "username", "profile_image_url", "protected"]
TWEET_FIELDS = ["created_at", "referenced_tweets", "lang", "in_reply_to_user_id", NOTE_TWEET]
# the posts a page's tweets refer to come along in `includes.tweets`: a reply's parent is trained on as its context
EXPANSIONS = ["referenced_tweets.id"]


class XApiSource:
    """An X account's recent posts (at most 3,200) read with the app's bearer token."""

    network = "x"
    max_rate_limit_waits = MAX_RATE_LIMIT_WAITS  # 429s in a row waited out before giving up

    def __init__(
        self, handle: str, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, sleep: Sleep = asyncio.sleep
    ):
        self.handle = normalise_handle(handle)
        self.label = f"@{self.handle}"
        self.settings = settings
        self.timeout = timeout
        self._sleep = sleep

    def caller(self, client: RebasedAsyncClient) -> XCaller:
        """Calls with the bearer token; errors are SourceError (AuthError, UnknownAccount...)."""
        return XCaller(self.settings, client=client, user_auth=False, sleep=self._sleep,
                       max_waits=self.max_rate_limit_waits)

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        since_id = since_id if since_id and since_id.isdigit() else None  # X ids are numbers; others mean "all"
        async with x_client(self.settings, user_auth=False, asynchronous=True, timeout=self.timeout) as client:
            call = self.caller(client)
            account = await self._account(call)
            posts = await self._timeline(call, account, since_id)
        ids = [p.id for p in posts] + ([since_id] if since_id else [])
        cursor = max(ids, key=int) if ids else None
        return FetchResult(account=account, posts=posts, cursor=cursor)

    def _unknown(self) -> UnknownAccount:
        return UnknownAccount(f"no X account named {self.label}")

    async def _account(self, call: XCaller) -> AccountInfo:
        response = await call("get_user", username=self.handle, user_fields=USER_FIELDS,
                              what=f"the account {self.label}", not_found=self._unknown)
        if response.data is None:
            raise self._lookup_error(response.errors)
        user = response.data
        if user.protected:
            raise ProtectedAccount(f"{self.label} is protected on X: only approved followers can read its posts")
        return AccountInfo(
            network="x",
            handle=self.handle,
            display_name=user.name or self.handle,
            user_id=str(user.id),
            avatar_url=user.profile_image_url,
            protected=bool(user.protected),
        )

    async def _timeline(self, call: XCaller, account: AccountInfo, since_id: str | None) -> list[RawPost]:
        posts: list[RawPost] = []
        token = None
        while len(posts) < TIMELINE_CAP:
            response = await call("get_users_tweets", account.user_id, max_results=PAGE_SIZE,
                                  pagination_token=token, since_id=since_id, tweet_fields=TWEET_FIELDS,
                                  expansions=EXPANSIONS, what=f"the posts of {self.label}", not_found=self._unknown)
            if response.data is None and response.errors:
                raise self._lookup_error(response.errors)
            included = {str(t.id): full_text(t) for t in (response.includes or {}).get("tweets", [])}
            posts.extend(raw_post(t, included) for t in response.data or [])
            token = response.meta.get("next_token")
            if not token:
                break
        return posts[:TIMELINE_CAP]

    def _lookup_error(self, errors: list[dict]) -> SourceError:
        """The v2 API answers 200 with an `errors` list when a user cannot be read."""
        error = errors[0] if errors else {}
        detail = str(error.get("detail", "")).lower()
        kind = str(error.get("type", ""))
        if "suspended" in detail:
            return ProtectedAccount(f"{self.label} is suspended on X: its posts cannot be read")
        if kind.endswith("/not-authorized-for-resource"):
            return ProtectedAccount(f"{self.label} is protected on X: only approved followers can read its posts")
        if kind.endswith("/resource-not-found"):
            return self._unknown()
        reason = error.get("detail") or error.get("title") or "no detail"
        return SourceError(f"X could not return {self.label}: {reason}")


def raw_post(tweet: tweepy.Tweet, included: dict[str, str] | None = None) -> RawPost:
    """One tweet as a RawPost; `included`: the texts of the tweets it refers to (a reply's parent among them)."""
    refs = {ref.type: str(ref.id) for ref in tweet.referenced_tweets or []}
    kinds = set(refs)
    parent = refs.get("replied_to")
    created = tweet.created_at.astimezone(timezone.utc).isoformat() if tweet.created_at else None
    return RawPost(
        id=str(tweet.id),
        text=full_text(tweet),
        created_at=created,
        is_retweet="retweeted" in kinds or tweet.text.startswith("RT @"),
        is_reply="replied_to" in kinds or tweet.in_reply_to_user_id is not None,
        is_quote="quoted" in kinds,
        lang=tweet.lang,
        reply_to_id=parent,
        parent_text=(included or {}).get(parent) if parent else None,
    )
