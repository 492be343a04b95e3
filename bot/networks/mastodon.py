"""Mastodon (REST through Mastodon.py): the one client factory and the one caller, for reading
(bot/sources/mastodon.py) and posting (bot/posting/mastodon.py) alike.

Mastodon.py is synchronous: `MastodonCaller` runs each call in a worker thread, so the event loop never waits
on the network. The client is built with `ratelimit_method="throw"`: on a 429 it raises instead of sleeping in
its thread, and the caller waits (asynchronously) until the window's X-RateLimit-Reset, which Mastodon.py has
read (an ISO 8601 time) and set to our clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
from ..errors import AuthError, MimicbotError
from ..redaction import redact, register
from .base import DEFAULT_TIMEOUT, Caller, chain, http_base, root_cause


def api_base_for(settings: Settings, instance: str) -> tuple[str, str | None]:
    """(API base, token): the configured instance with its token, or the account's own instance, anonymously."""
    if settings.mastodon_api_base:
        return settings.mastodon_api_base.strip().rstrip("/"), settings.secret("mastodon_access_token")
    return f"https://{instance}", None


def mastodon_client(api_base: str, token: str | None, timeout: float = DEFAULT_TIMEOUT) -> Mastodon:
    """A Mastodon.py client that raises on a 429 (we wait asynchronously) instead of sleeping in its thread."""
    base = http_base(api_base, "MASTODON_API_BASE", "https://mastodon.social")
    register([token])  # an upstream may echo it: the caller's error text is redacted
    return Mastodon(api_base_url=base, access_token=token, ratelimit_method="throw", request_timeout=timeout,
                    session=requests.Session(), user_agent="mimicbot")


class MastodonCaller(Caller):
    """`await caller("account_lookup", "alice", what=...)` calls that method of `client` in a worker thread.

    `not_found()` (optional) makes the error for a 404; `refused` is the kind raised when the token is refused
    (AuthError when reading, TargetError when posting).
    """

    network = "Mastodon"

    def __init__(self, client: Mastodon, *, refused: type[MimicbotError] = AuthError, **kwargs):
        super().__init__(**kwargs)
        self.client = client
        self.refused = refused

    async def __call__(self, method: str, *args, what: str, publishing: bool = False,
                       not_found: Callable[[], MimicbotError] | None = None, **kwargs) -> Any:
        return await self.call(getattr(self.client, method), *args, what=what, publishing=publishing,
                               hooks={"not_found": not_found}, **kwargs)

    def rate_limit(self, e: BaseException) -> Mapping[str, Any] | None:
        if not isinstance(e, MastodonRatelimitError):
            return None
        reset = self.client.ratelimit_reset  # epoch seconds on our clock, None when unknown or past
        return {"x-rate-limit-reset": str(reset)} if reset else {}

    def translate(self, e: BaseException, *, what: str, publishing: bool,
                  not_found: Callable[[], MimicbotError] | None = None, **_) -> MimicbotError | None:
        if isinstance(e, MastodonNotFoundError):
            return (not_found and not_found()) or self.error(f"Mastodon found nothing for {what} ({_detail(e)})")
        if isinstance(e, MastodonUnauthorizedError):
            return self.refused(f"Mastodon refused the access token for {what} ({_detail(e)}); "
                                "check MASTODON_ACCESS_TOKEN")
        if isinstance(e, MastodonServerError):
            kind = self.unknown if publishing else self.error
            return kind(f"Mastodon had a server error during {what} ({_detail(e)})"
                        + ("; it may or may not be posted" if publishing else ""))
        if isinstance(e, MastodonAPIError):
            return self.error(f"Mastodon rejected {what} ({_detail(e)})")
        if isinstance(e, MastodonNetworkError):
            if publishing and not _never_sent(e):
                return self.unknown(f"Mastodon did not answer {what}; it may or may not be posted")
            return self.error(f"could not reach Mastodon at {self.client.api_base_url} for {what}: "
                              f"{root_cause(e)}")
        if isinstance(e, MastodonError):
            return self.error(f"Mastodon answered {what} with something unexpected: {redact(str(e))}")
        return None


def _detail(e: MastodonError) -> str:
    """`MastodonAPIError('Mastodon API returned error', 422, 'Unprocessable Entity', 'Validation failed: ...')`."""
    args = e.args
    if len(args) >= 4:
        return redact(f"HTTP {args[1]}: {args[3] or args[2]}")
    return redact(str(e))


def _never_sent(e: BaseException) -> bool:
    """The connection was never made (refused, unknown host, connect timeout): the request cannot have arrived."""
    return any(isinstance(x, (NewConnectionError, requests.ConnectTimeout)) for x in chain(e))
