"""The Mastodon target: `status_post` on MASTODON_API_BASE with MASTODON_ACCESS_TOKEN, MASTODON_VISIBILITY
(unlisted by default: the bot's posts stay off the public timelines unless asked otherwise).

A content warning (`spoiler_text`) goes on every post when MIMICBOT_MASTODON_CW is set, or on one post with
`mimicbot post --to mastodon --cw TEXT` (which wins over the setting).

Length is counted as Mastodon's StatusLengthValidator counts it: grapheme clusters, every URL as 23, and a
mention of `@user@domain` as `@user`; the content warning counts towards the same 500. Each send carries an
Idempotency-Key, so a retry after a rate-limit wait can never publish the same post twice.
"""

from __future__ import annotations

import asyncio
import re
import uuid

from mastodon import Mastodon

from ..config import Settings
from ..errors import AuthError, ValidationError
from ..networks.base import DEFAULT_TIMEOUT, Sleep
from ..networks.mastodon import MastodonCaller, mastodon_client
from .base import DeliveryUnknown, TargetError
from .text import graphemes

MASTODON_MAX_LENGTH = 500
URL_LENGTH = 23
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def mastodon_length(text: str) -> int:
    """The length Mastodon gives `text`."""
    countable = _MENTION.sub(r"@\1", _URL.sub("x" * URL_LENGTH, text))
    return graphemes(countable)


class MastodonTarget:
    """Posts statuses as the account whose token is MASTODON_ACCESS_TOKEN."""

    name = "mastodon"
    max_length = MASTODON_MAX_LENGTH

    def __init__(self, settings: Settings, *, content_warning: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 sleep: Sleep = asyncio.sleep, max_rate_limit_wait: float = 60.0):
        token = settings.secret("mastodon_access_token")
        if not settings.mastodon_api_base or not token:
            raise AuthError("no Mastodon account to post as: set MASTODON_API_BASE (e.g. https://mastodon.social) "
                            "and MASTODON_ACCESS_TOKEN (Preferences → Development → New application, "
                            "scope write:statuses)")
        self.visibility = settings.mastodon_visibility
        self.content_warning = (content_warning or settings.mimicbot_mastodon_cw or "").strip() or None
        if self.content_warning and mastodon_length(self.content_warning) >= MASTODON_MAX_LENGTH:
            raise ValidationError(f"the content warning is {mastodon_length(self.content_warning)} characters: it "
                                  f"counts towards Mastodon's {MASTODON_MAX_LENGTH}, so it must be much shorter")
        self.client: Mastodon = mastodon_client(settings.mastodon_api_base.strip().rstrip("/"), token, timeout)
        self.call = MastodonCaller(self.client, error=TargetError, unknown=DeliveryUnknown, refused=TargetError,
                                   sleep=sleep, max_wait=max_rate_limit_wait)
        self._lock = asyncio.Lock()  # one requests session: one call at a time

    def length(self, text: str) -> int:
        """The status's length as Mastodon counts it, its content warning included."""
        return mastodon_length(text) + (mastodon_length(self.content_warning) if self.content_warning else 0)

    async def send(self, text: str, *, reply_to: str | None = None) -> str:
        """Publish `text` (a reply when `reply_to` is a status id); returns the new status's id."""
        if not text.strip():
            raise TargetError("nothing to post: the text is empty")
        if self.length(text) > self.max_length:
            cw = " (the content warning included)" if self.content_warning else ""
            raise TargetError(f"too long for Mastodon: {self.length(text)} characters{cw}, "
                              f"{self.max_length} allowed")
        what = f"a status ({self.visibility})" + (f" replying to {reply_to}" if reply_to else "")
        async with self._lock:
            status = await self.call("status_post", text, in_reply_to_id=reply_to, visibility=self.visibility,
                                     spoiler_text=self.content_warning, idempotency_key=uuid.uuid4().hex,
                                     publishing=True, what=what)
        return str(status["id"])
