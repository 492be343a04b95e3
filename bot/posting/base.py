"""The small interface every posting target implements, so more networks plug in without touching the rest."""

from __future__ import annotations

from typing import Protocol

from ..errors import MimicbotError


class Target(Protocol):
    """A place a generated post can be sent.

    `name` is how schedules and `mimicbot post --to` name it: `x`, `discord:<channel id>`, `bsky`, `mastodon`.
    `max_length` and `length()` describe the network's limit in its own unit (X counts URLs and wide characters
    specially, Bluesky counts graphemes, Mastodon characters).
    """

    name: str
    max_length: int

    def length(self, text: str) -> int: ...

    async def send(self, text: str, *, reply_to: str | None = None) -> str:
        """Publish `text` (already guarded and fitted); returns the network's id for the new post."""
        ...


# -- What can go wrong on the way out ------------------------------------------------------------------
# (Kept beside the interface so every target, present and future, raises the same kinds.)


class PostRejected(MimicbotError):
    """A guard refused the text: nothing was sent. `reasons` lists why (one line each)."""

    def __init__(self, message: str, reasons: list[str] | None = None):
        super().__init__(message)
        self.reasons = reasons or [message]


class TargetError(MimicbotError):
    """The network refused the post or could not be reached: it was certainly not published."""


class DeliveryUnknown(TargetError):
    """The request went out but no answer came back (timeout, 5xx): the post may or may not exist.
    The ledger marks it "unknown" and never retries it blindly."""


class UnknownSchedule(MimicbotError):
    """No schedule with that id."""

