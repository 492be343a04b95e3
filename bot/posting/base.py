"""The small interface every posting target implements, so more networks plug in without touching the rest."""

from __future__ import annotations

from typing import Protocol


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
