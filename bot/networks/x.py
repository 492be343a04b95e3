"""X (API v2 through tweepy): the one client factory and the one caller, for reading (bot/sources/x_api.py, the
mentions poll) and posting (bot/posting/x.py) alike.

tweepy hard-codes `https://api.twitter.com`. Rather than copy its request code, our clients carry an HTTP
session that rebases every URL onto the configured base (TWITTER_API_BASE), so a proxy or a local fake can
stand in: `x_client(settings, user_auth=..., asynchronous=...)` builds either client that way.

`XCaller` runs a client's method — awaited for the async client, in a worker thread for the sync one —, waits
out a 429 until its `x-rate-limit-reset` (bot/networks/base.py), and turns what X says into our errors. The
kinds it raises are the caller's to choose: SourceError and AuthError when reading, TargetError and
DeliveryUnknown when posting (a publishing call that timed out or met a 5xx may have gone through).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import requests
import tweepy
from tweepy.asynchronous import AsyncClient
from yarl import URL

from ..config import Settings
from ..errors import AuthError, ConfigError, MimicbotError, SourceError
from ..redaction import redact, register
from .base import DEFAULT_TIMEOUT, Caller, Sleep, chain, describe, http_base

TWEEPY_HOST = "https://api.twitter.com"  # what tweepy puts in front of every route

_USER_SECRETS = {
    "consumer_key": ("twitter_api_key", "TWITTER_API_KEY"),
    "consumer_secret": ("twitter_api_secret", "TWITTER_API_SECRET"),
    "access_token": ("twitter_access_token", "TWITTER_ACCESS_TOKEN"),
    "access_token_secret": ("twitter_access_secret", "TWITTER_ACCESS_SECRET"),
}
# The tweet field holding the whole text of a post over 280 characters (its `text` is then the first 280 of it):
# X sends it only when `tweet.fields` asks for it. Reading the timeline and the mentions poll both ask.
NOTE_TWEET = "note_tweet"
USER_CREDENTIALS = ", ".join(env for _, env in _USER_SECRETS.values())


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
    return http_base(settings.twitter_api_base, "TWITTER_API_BASE", "https://api.x.com")


def x_client(
    settings: Settings,
    *,
    user_auth: bool,
    asynchronous: bool,
    timeout: float = DEFAULT_TIMEOUT,
) -> RebasedClient | RebasedAsyncClient:
    """A tweepy v2 client on `settings.twitter_api_base`, with credentials from settings.

    `user_auth=False`: app-only bearer token (reading). `user_auth=True`: OAuth 1.0a user context
    (posting, mentions, /2/users/me); pass `user_auth=True` to the tweepy call as well. User context is
    sync-only: tweepy's AsyncClient signs the URL before our session sees it, so the signature would not
    match a rebased URL. From async code, run the sync client's calls in a worker thread (XCaller does).
    tweepy never sleeps on a 429 here (wait_on_rate_limit off): XCaller waits asynchronously.
    Raises AuthError when a credential is missing.
    """
    base = api_base(settings)
    if user_auth:
        if asynchronous:
            raise ConfigError("OAuth 1.0a user context needs the sync client (asynchronous=False)")
        credentials = {arg: _required_secret(settings, *names) for arg, names in _USER_SECRETS.items()}
    else:
        credentials = {"bearer_token": _required_secret(settings, "twitter_bearer_token", "TWITTER_BEARER_TOKEN")}
    register(credentials.values())  # tweepy and oauthlib log requests at DEBUG, credentials included
    cls = RebasedAsyncClient if asynchronous else RebasedClient
    return cls(**credentials, api_base=base, timeout=timeout, wait_on_rate_limit=False)


def _required_secret(settings: Settings, name: str, env: str) -> str:
    value = settings.secret(name)
    if not value:
        raise AuthError(f"no X credentials: set {env} in the environment or .env")
    return value


# -- Calling X -------------------------------------------------------------------------------------------


class XCaller(Caller):
    """Calls one X client's methods by name: `await caller("get_user", username="jack", what="...")`.

    `client` defaults to a client built from settings on first use (sync, user context, when `user_auth`).
    `refused` is the kind raised when X refuses the credentials; `not_found` (a hook a call may pass) makes
    the error for a 404.
    """

    network = "X"

    def __init__(self, settings: Settings, *, client: RebasedClient | RebasedAsyncClient | None = None,
                 user_auth: bool = True, error: type[MimicbotError] = SourceError,
                 unknown: type[MimicbotError] | None = None, refused: type[MimicbotError] = AuthError,
                 sleep: Sleep = asyncio.sleep, **limits):
        super().__init__(error=error, unknown=unknown, sleep=sleep, **limits)
        self.settings = settings
        self.user_auth = user_auth
        self.refused = refused
        self._client = client

    @property
    def client(self) -> RebasedClient | RebasedAsyncClient:
        if self._client is None:
            self._client = x_client(self.settings, user_auth=self.user_auth, asynchronous=False)
        return self._client

    async def __call__(self, method: str, *args, what: str, publishing: bool = False,
                       not_found: Callable[[], MimicbotError] | None = None, **kwargs) -> Any:
        try:
            call = getattr(self.client, method)
        except AuthError as e:  # credentials missing: nothing was sent
            raise self.refused(str(e)) from None
        return await self.call(call, *args, what=what, publishing=publishing, hooks={"not_found": not_found},
                               user_auth=self.user_auth, **kwargs)

    def rate_limit(self, e: BaseException) -> Mapping[str, Any] | None:
        if isinstance(e, tweepy.TooManyRequests):
            return dict(getattr(e.response, "headers", None) or {})
        return None

    def translate(self, e: BaseException, *, what: str, publishing: bool,
                  not_found: Callable[[], MimicbotError] | None = None, **_) -> MimicbotError | None:
        if isinstance(e, tweepy.HTTPException):
            detail = _messages(e)
            if isinstance(e, tweepy.Unauthorized) or (isinstance(e, tweepy.Forbidden) and not self.user_auth):
                if self.user_auth:
                    return self.refused(f"X refused the OAuth 1.0a credentials ({detail}); check {USER_CREDENTIALS}")
                return self.refused(f"X refused the bearer token ({detail}); check TWITTER_BEARER_TOKEN")
            if isinstance(e, tweepy.Forbidden):
                return self.error(f"X refused {what}: {detail}")
            if isinstance(e, tweepy.NotFound) and not_found is not None:
                return not_found()
            if isinstance(e, tweepy.TwitterServerError):
                if publishing:
                    return self.unknown(f"X had a server error during {what} ({detail}); it may or may not be "
                                        "posted")
                return self.error(f"X had a server error during {what} ({detail}); try again later")
            return self.error(f"X rejected {what}: {detail}")
        timed_out = isinstance(e, (requests.Timeout, asyncio.TimeoutError, aiohttp.ServerTimeoutError))
        never_sent = any(isinstance(x, (requests.ConnectTimeout, aiohttp.ClientConnectorError)) for x in chain(e))
        if timed_out and publishing and not never_sent:
            return self.unknown(f"X did not answer {what} in time; it may or may not be posted")
        if timed_out or isinstance(e, (requests.ConnectionError, aiohttp.ClientError)):
            return self.error(f"could not reach X at {self.settings.twitter_api_base} for {what}: {describe(e)}")
        return None


def full_text(tweet: tweepy.Tweet) -> str:
    """The whole text of a post: its `note_tweet` text when X sent one (a post over 280 characters), else `text`."""
    note = (tweet.data or {}).get(NOTE_TWEET) or {}
    text = note.get("text") if isinstance(note, dict) else None
    return text if isinstance(text, str) and text else tweet.text


def _messages(e: tweepy.HTTPException) -> str:
    status = getattr(e.response, "status_code", None) or getattr(e.response, "status", "?")
    return redact(f"HTTP {status}: " + ("; ".join(map(str, e.api_messages)) or "no detail"))
