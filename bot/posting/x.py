"""The X target: tweepy `create_tweet` with OAuth 1.0a user context, through TWITTER_API_BASE.

The client and the call wrapper are X's (bot/networks/x.py), shared with reading; `XCaller` here is that
caller with the posting kinds of error: TargetError when X certainly did not publish, DeliveryUnknown when a
publishing call went out and no clear answer came back. The mentions poll (replies.py) uses it too.
"""

from __future__ import annotations

import asyncio

from ..config import Settings
from ..networks import x as network
from ..networks.base import Sleep
from ..networks.x import RebasedClient
from .base import DeliveryUnknown, TargetError
from .text import X_MAX_LENGTH, x_length


class XCaller(network.XCaller):
    """Calls with the OAuth 1.0a user tokens in settings; errors are TargetError or DeliveryUnknown."""

    def __init__(self, settings: Settings, *, client: RebasedClient | None = None, sleep: Sleep = asyncio.sleep,
                 **limits):
        super().__init__(settings, client=client, user_auth=True, error=TargetError, unknown=DeliveryUnknown,
                         refused=TargetError, sleep=sleep, **limits)


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
