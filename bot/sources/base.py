"""The nouns every post source speaks: an account, its raw posts, and what one fetch returned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

TIMELINE_CAP = 3200  # posts read from one account at most: X's API never serves more; Bluesky, Mastodon alike


@dataclass(frozen=True)
class AccountInfo:
    """Who wrote the posts. `network` is where the ids live: x, bsky, mastodon or file."""

    network: str
    handle: str  # normalised: no leading @, lowercase
    display_name: str
    user_id: str | None = None
    avatar_url: str | None = None
    protected: bool = False


@dataclass(frozen=True)
class RawPost:
    """One post as the network gave it, before cleaning."""

    id: str
    text: str
    created_at: str | None = None  # ISO 8601, UTC
    is_retweet: bool = False  # a retweet/repost/reblog: dropped by cleaning, counted
    is_reply: bool = False
    is_quote: bool = False
    lang: str | None = None
    reply_to_id: str | None = None  # the post this one answers, when it is a reply
    parent_text: str | None = None  # that post's text, when the source gives it: trained on as the reply's context


@dataclass
class FetchResult:
    account: AccountInfo
    posts: list[RawPost] = field(default_factory=list)
    cursor: str | None = None  # newest post id seen (since_id for the next fetch)
    note: str | None = None  # what a person should know about this read (e.g. posts skipped, and why)


class Source(Protocol):
    """A place posts come from. `since_id` is the newest id already stored, or None."""

    label: str  # how the person named it: "@jack", "archive.zip", "bsky:alice.bsky.social"

    async def fetch(self, since_id: str | None = None) -> FetchResult: ...
