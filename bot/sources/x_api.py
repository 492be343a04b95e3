"""Posts from the X API v2 through tweepy, against `settings.twitter_api_base`.

tweepy hard-codes `https://api.twitter.com`. Rather than copy its request code, our clients carry an HTTP
session that rebases every URL onto the configured base, so a proxy or a local fake can stand in:
`x_client(settings, user_auth=..., asynchronous=...)` builds either client that way. Use it for posting too.

`XApiSource` reads an account's timeline the way the recipe does: `GET /2/users/:id/tweets`, 100 a page,
replies and retweets included, at most the 3,200 most recent tweets (the API's cap, enforced here).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import timezone
from functools import partial
from typing import Any, Awaitable, Callable

import aiohttp
import requests
import tweepy
from tweepy.asynchronous import AsyncClient
from yarl import URL

from ..config import Settings
from ..errors import AuthError, ConfigError, ProtectedAccount, SourceError, UnknownAccount
from .base import AccountInfo, FetchResult, RawPost, normalise_handle

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"  # what tweepy puts in front of every route
TIMELINE_CAP = 3200  # the API never serves more of a timeline than this
PAGE_SIZE = 100  # the largest max_results /2/users/:id/tweets accepts
USER_FIELDS = ["name", "username", "profile_image_url", "protected"]
TWEET_FIELDS = ["created_at", "referenced_tweets", "lang", "in_reply_to_user_id"]
DEFAULT_TIMEOUT = 30.0  # seconds for one HTTP request


# -- Clients on a configurable base URL ---------------------------------------------------------------


def rebase_url(url: str | URL, base: str) -> str | URL:
    """`https://api.twitter.com/2/x?q` → `{base}/2/x?q`, keeping the type (tweepy passes both)."""
    text = str(url)
    if not text.startswith(TWEEPY_HOST):
        return url
    rebased = base.rstrip("/") + text[len(TWEEPY_HOST):]
    return URL(rebased, encoded=True) if isinstance(url, URL) else rebased


class RebasedSession(requests.Session):
    """A requests session for `tweepy.Client`: rebased URLs and a timeout on every request.

    OAuth 1.0a signing (requests-oauthlib) runs when the request is prepared, after the rebase, so the
    signature covers the URL actually sent.
    """

    def __init__(self, base: str, timeout: float = DEFAULT_TIMEOUT):
        super().__init__()
        self.base = base
        self.timeout = timeout

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, rebase_url(url, self.base), *args, **kwargs)


class RebasedAiohttpSession:
    """Stands in for the aiohttp session of `AsyncClient`, which only calls `request(...)` on it.

    The real `aiohttp.ClientSession` is opened lazily, inside the running event loop; `close()` it when done.
    """

    def __init__(self, base: str, timeout: float = DEFAULT_TIMEOUT):
        self.base = base
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def request(self, method: str, url, **kwargs):
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session.request(method, rebase_url(url, self.base), **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class RebasedAsyncClient(AsyncClient):
    """tweepy's AsyncClient on `api_base`. An async context manager: leaving it closes the HTTP session."""

    def __init__(self, *args, api_base: str, timeout: float = DEFAULT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.session = RebasedAiohttpSession(api_base, timeout)

    async def aclose(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> RebasedAsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


class RebasedClient(tweepy.Client):
    """tweepy's (sync) Client on `api_base`; for posting and mentions with OAuth 1.0a user context."""

    def __init__(self, *args, api_base: str, timeout: float = DEFAULT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.session = RebasedSession(api_base, timeout)


def api_base(settings: Settings) -> str:
    base = settings.twitter_api_base.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base):
        raise ConfigError(f"TWITTER_API_BASE must be an http(s) URL such as https://api.x.com, not {base!r}")
    return base


_USER_SECRETS = {
    "consumer_key": ("twitter_api_key", "TWITTER_API_KEY"),
    "consumer_secret": ("twitter_api_secret", "TWITTER_API_SECRET"),
    "access_token": ("twitter_access_token", "TWITTER_ACCESS_TOKEN"),
    "access_token_secret": ("twitter_access_secret", "TWITTER_ACCESS_SECRET"),
}


def x_client(
    settings: Settings,
    *,
    user_auth: bool,
    asynchronous: bool,
    wait_on_rate_limit: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> RebasedClient | RebasedAsyncClient:
    """A tweepy v2 client on `settings.twitter_api_base`, with credentials from settings.

    `user_auth=False`: app-only bearer token (reading). `user_auth=True`: OAuth 1.0a user context
    (posting, mentions, /2/users/me); pass `user_auth=True` to the tweepy call as well. User context is
    sync-only: tweepy's AsyncClient signs the URL before our session sees it, so the signature would not
    match a rebased URL. From async code, run the sync client's calls in `asyncio.to_thread`.
    Raises AuthError when a credential is missing.
    """
    base = api_base(settings)
    if user_auth:
        if asynchronous:
            raise ConfigError("OAuth 1.0a user context needs the sync client (asynchronous=False)")
        credentials = {arg: _required_secret(settings, *names) for arg, names in _USER_SECRETS.items()}
    else:
        credentials = {"bearer_token": _required_secret(settings, "twitter_bearer_token", "TWITTER_BEARER_TOKEN")}
    _REDACT.secrets.update(credentials.values())
    cls = RebasedAsyncClient if asynchronous else RebasedClient
    return cls(**credentials, api_base=base, timeout=timeout, wait_on_rate_limit=wait_on_rate_limit)


def _required_secret(settings: Settings, name: str, env: str) -> str:
    value = settings.secret(name)
    if not value:
        raise AuthError(f"no X credentials: set {env} in the environment or .env")
    return value


class _RedactSecrets(logging.Filter):
    """tweepy, requests-oauthlib and oauthlib log each request at DEBUG, credentials included.

    Every credential handed to a client is registered here and replaced in their log records.
    """

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT = _RedactSecrets()
_CHATTY_LOGGERS = (
    "tweepy.client", "tweepy.asynchronous.client", "requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849",
)
for _name in _CHATTY_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACT)


# -- The timeline source -------------------------------------------------------------------------------


Sleep = Callable[[float], Awaitable[Any]]


class XApiSource:
    """An X account's recent posts (at most 3,200) read with the app's bearer token."""

    network = "x"
    max_rate_limit_waits = 5  # consecutive 429s before giving up
    rate_limit_margin = 1.0  # seconds past x-rate-limit-reset before retrying
    rate_limit_fallback = 60.0  # seconds to wait when a 429 carries no reset time

    def __init__(
        self, handle: str, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, sleep: Sleep = asyncio.sleep
    ):
        self.handle = normalise_handle(handle)
        self.label = f"@{self.handle}"
        self.settings = settings
        self.timeout = timeout
        self._sleep = sleep

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        since_id = since_id if since_id and since_id.isdigit() else None  # X ids are numbers; others mean "all"
        async with x_client(self.settings, user_auth=False, asynchronous=True, timeout=self.timeout) as client:
            account = await self._account(client)
            posts = await self._timeline(client, account, since_id)
        ids = [p.id for p in posts] + ([since_id] if since_id else [])
        cursor = max(ids, key=int) if ids else None
        return FetchResult(account=account, posts=posts, cursor=cursor)

    async def _account(self, client: RebasedAsyncClient) -> AccountInfo:
        response = await self._call(partial(client.get_user, username=self.handle, user_fields=USER_FIELDS))
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

    async def _timeline(self, client: RebasedAsyncClient, account: AccountInfo, since_id: str | None) -> list[RawPost]:
        posts: list[RawPost] = []
        token = None
        while len(posts) < TIMELINE_CAP:
            response = await self._call(
                partial(
                    client.get_users_tweets,
                    account.user_id,
                    max_results=PAGE_SIZE,
                    pagination_token=token,
                    since_id=since_id,
                    tweet_fields=TWEET_FIELDS,
                )
            )
            if response.data is None and response.errors:
                raise self._lookup_error(response.errors)
            posts.extend(_raw_post(t) for t in response.data or [])
            token = response.meta.get("next_token")
            if not token:
                break
        return posts[:TIMELINE_CAP]

    async def _call(self, request: Callable[[], Awaitable[Any]]):
        """`await request()`, translated into our errors; after a 429, waits for the window to reset and retries."""
        for attempt in range(self.max_rate_limit_waits + 1):
            try:
                return await request()
            except tweepy.TooManyRequests as e:
                if attempt == self.max_rate_limit_waits:
                    break
                await self._wait_for_reset(e.reset_time)
            except tweepy.HTTPException as e:
                raise self._http_error(e) from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                raise SourceError(f"could not reach X at {self.settings.twitter_api_base}: {_describe(e)}") from None
        raise SourceError(f"X kept rate-limiting requests for {self.label}; try again later")

    async def _wait_for_reset(self, reset_time: int | None) -> None:
        wait = self.rate_limit_fallback if reset_time is None else max(0.0, reset_time - time.time())
        wait += self.rate_limit_margin
        log.warning("X rate limit reached while reading %s; waiting %.0f s", self.label, wait)
        await self._sleep(wait)

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
            return UnknownAccount(f"no X account named {self.label}")
        reason = error.get("detail") or error.get("title") or "no detail"
        return SourceError(f"X could not return {self.label}: {reason}")

    def _http_error(self, e: tweepy.HTTPException) -> SourceError:
        status = getattr(e.response, "status", None) or getattr(e.response, "status_code", "?")
        detail = _REDACT.redact("; ".join(map(str, e.api_messages)) or "no detail")  # in case a server echoes one
        if isinstance(e, (tweepy.Unauthorized, tweepy.Forbidden)):
            return AuthError(f"X refused the bearer token (HTTP {status}: {detail}); check TWITTER_BEARER_TOKEN")
        if isinstance(e, tweepy.NotFound):
            return UnknownAccount(f"no X account named {self.label}")
        if isinstance(e, tweepy.TwitterServerError):
            return SourceError(f"X had a server error (HTTP {status}) reading {self.label}; try again later")
        return SourceError(f"X rejected the request for {self.label} (HTTP {status}: {detail})")


def _raw_post(tweet: tweepy.Tweet) -> RawPost:
    kinds = {ref.type for ref in tweet.referenced_tweets or []}
    created = tweet.created_at.astimezone(timezone.utc).isoformat() if tweet.created_at else None
    return RawPost(
        id=str(tweet.id),
        text=tweet.text,
        created_at=created,
        is_retweet="retweeted" in kinds or tweet.text.startswith("RT @"),
        is_reply="replied_to" in kinds or tweet.in_reply_to_user_id is not None,
        is_quote="quoted" in kinds,
        lang=tweet.lang,
    )


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return _REDACT.redact(str(e) or type(e).__name__)

