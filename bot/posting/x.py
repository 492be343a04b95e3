"""The X target (tweepy `create_tweet`, OAuth 1.0a user context, through TWITTER_API_BASE) and the one call
wrapper posting and mention polling share: tweepy's sync client run in a worker thread, X errors turned into
ours, and a 429 answered by sleeping (asynchronously) until the window resets.

User context is sync-only in tweepy (see `bot.sources.x_api.x_client`), hence the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import requests
import tweepy

from ..config import Settings
from ..errors import AuthError
from ..sources.x_api import RebasedClient, x_client
from .base import DeliveryUnknown, TargetError
from .text import X_MAX_LENGTH, x_length

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]
RATE_LIMIT_MARGIN = 1.0  # seconds past x-rate-limit-reset before trying again
RATE_LIMIT_FALLBACK = 60.0  # when a 429 carries no reset time
MAX_RATE_LIMIT_WAITS = 3


def reset_wait(error: tweepy.TooManyRequests, now: float | None = None) -> float:
    """Seconds until the rate-limit window of a 429 resets (from its x-rate-limit-reset header), plus a margin."""
    reset = getattr(error.response, "headers", {}).get("x-rate-limit-reset")
    now = time.time() if now is None else now
    try:
        return max(0.0, int(reset) - now) + RATE_LIMIT_MARGIN
    except (TypeError, ValueError):
        return RATE_LIMIT_FALLBACK


class XCaller:
    """Runs sync tweepy calls without blocking the event loop and translates what X says.

    `publishing=True` marks calls that create something: for those, a timeout or a 5xx means "maybe posted"
    (DeliveryUnknown), never "not posted".
    """

    def __init__(self, settings: Settings, *, client: RebasedClient | None = None, sleep: Sleep = asyncio.sleep,
                 max_waits: int = MAX_RATE_LIMIT_WAITS):
        self.settings = settings
        self._client = client
        self.sleep = sleep
        self.max_waits = max_waits

    @property
    def client(self) -> RebasedClient:
        if self._client is None:
            self._client = x_client(self.settings, user_auth=True, asynchronous=False)
        return self._client

    async def __call__(self, method: str, *, what: str, publishing: bool = False, **kwargs):
        try:
            call = getattr(self.client, method)
        except AuthError as e:  # credentials missing: nothing was sent
            raise TargetError(str(e)) from None
        for attempt in range(self.max_waits + 1):
            try:
                return await asyncio.to_thread(call, user_auth=True, **kwargs)
            except tweepy.TooManyRequests as e:
                if attempt == self.max_waits:
                    raise TargetError(f"X kept rate-limiting {what}; try again later") from None
                wait = reset_wait(e)
                log.warning("X rate limit reached (%s); waiting %.0f s for the window to reset", what, wait)
                await self.sleep(wait)
            except (tweepy.Unauthorized, tweepy.Forbidden) as e:
                if isinstance(e, tweepy.Unauthorized):  # refused before anything was published
                    raise TargetError("X refused the OAuth 1.0a credentials (TWITTER_API_KEY, TWITTER_API_SECRET, "
                                    "TWITTER_ACCESS_TOKEN, TWITTER_ACCESS_SECRET)") from None
                raise TargetError(f"X refused {what}: {_messages(e)}") from None
            except tweepy.TwitterServerError as e:
                if publishing:
                    raise DeliveryUnknown(f"X had a server error during {what}; it may or may not be posted") from None
                raise TargetError(f"X had a server error during {what}: {_messages(e)}") from None
            except tweepy.HTTPException as e:
                raise TargetError(f"X rejected {what}: {_messages(e)}") from None
            except requests.Timeout:
                if publishing:
                    raise DeliveryUnknown(f"X did not answer {what} in time; it may or may not be posted") from None
                raise TargetError(f"X did not answer {what} in time") from None
            except requests.ConnectionError:
                raise TargetError(f"could not reach X at {self.settings.twitter_api_base} for {what}") from None


class XTarget:
    """Posts to the X account whose OAuth 1.0a user tokens are in the settings."""

    name = "x"
    max_length = X_MAX_LENGTH

    def __init__(self, settings: Settings, *, caller: XCaller | None = None):
        self.caller = caller or XCaller(settings)

    def length(self, text: str) -> int:
        return x_length(text)

    async def send(self, text: str, *, reply_to: str | None = None) -> str:
        what = f"a reply to {reply_to}" if reply_to else "a post"
        response = await self.caller("create_tweet", what=what, publishing=True, text=text,
                                     in_reply_to_tweet_id=reply_to)
        return str(response.data["id"])


def _messages(e: tweepy.HTTPException) -> str:
    status = getattr(e.response, "status_code", "?")
    return f"HTTP {status}: " + ("; ".join(map(str, e.api_messages)) or "no detail")
