"""Posts from Mastodon through Mastodon.py.

`mastodon:@alice@example.social` reads from MASTODON_API_BASE when it is set (with MASTODON_ACCESS_TOKEN), else
anonymously from the account's own instance (https://example.social), which holds its whole history; the token
is never sent anywhere but MASTODON_API_BASE. The account is found with `accounts/lookup`, or, when the
instance does not know it yet, `accounts/search` (resolving it over WebFinger when a token is set).

Statuses come from `accounts/:id/statuses`, 40 a page, newest first, at most 3,200 (as for X): a first fetch
pages back with `max_id`; a later one pages forward from the stored newest id with `min_id`, so nothing
between two fetches is skipped. Boosts come back as RawPosts with `is_retweet=True` (dropped by cleaning,
counted). Only public and unlisted statuses are kept: a followers-only post is not for a public imitation.
A status behind a content warning (`spoiler_text`) is skipped by default — its text is neither stored nor
trained on, and the card counts it with the short posts (its text is empty); the fetch reports how many were
skipped. MIMICBOT_MASTODON_INCLUDE_CW=true reads them like any other (it applies to statuses fetched from then
on: one already stored stays as it was read).

A status's HTML becomes text with a real HTML parser: paragraphs become blank lines, `<br>` a newline, links
their text (the full URL, which cleaning then removes, as it does X's links), entities are unescaped, and the
`RE: <link>` line Mastodon adds to quote posts is dropped. The client and the call wrapper (worker threads,
rate-limit waits, errors) are Mastodon's, shared with posting: bot/networks/mastodon.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ProtectedAccount, UnknownAccount
from ..naming import parse_acct
from ..networks.base import DEFAULT_TIMEOUT, MAX_RATE_LIMIT_WAIT, Sleep
from ..networks.mastodon import MastodonCaller, api_base_for, mastodon_client
from .base import TIMELINE_CAP, AccountInfo, FetchResult, RawPost

__all__ = ["MastodonSource", "api_base_for", "html_to_text", "parse_acct", "raw_post"]

log = logging.getLogger(__name__)

NETWORK = "mastodon"
PAGE_SIZE = 40  # the largest `limit` accounts/:id/statuses accepts
READABLE = ("public", "unlisted")


# -- HTML to text -----------------------------------------------------------------------------------------------


class _StatusText(HTMLParser):
    BLOCKS = {"p", "div", "blockquote", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6"}
    VOID = {"br", "img", "hr", "wbr", "input", "meta", "link", "source"}
    SKIPPED_CLASSES = {"quote-inline"}  # Mastodon's "RE: <link>" paragraph for quote posts

    def __init__(self):
        super().__init__(convert_charrefs=True)  # every entity, named or numeric, unescaped
        self.parts: list[str] = []
        self._skipping = 0  # depth inside a skipped element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if tag == "br" and not self._skipping:
                self.parts.append("\n")
            return
        classes = set((dict(attrs).get("class") or "").split())
        if self._skipping or classes & self.SKIPPED_CLASSES:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str | None) -> str:
    """A status's HTML as the text its author typed (see the module docstring)."""
    if not html:
        return ""
    parser = _StatusText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", "".join(parser.parts))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- The statuses source ----------------------------------------------------------------------------------------


class MastodonSource:
    """A Mastodon account's public statuses, replies and boosts (boosts flagged as retweets)."""

    network = NETWORK

    def __init__(self, spec: str, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                 sleep: Sleep = asyncio.sleep, max_rate_limit_wait: float = MAX_RATE_LIMIT_WAIT):
        self.user, self.instance = parse_acct(spec)
        self.handle = f"{self.user}@{self.instance}"
        self.label = f"mastodon:@{self.handle}"
        self.api_base, self._token = api_base_for(settings, self.instance)
        self.include_cw = settings.mimicbot_mastodon_include_cw
        self.timeout = timeout
        self._sleep, self._max_wait = sleep, max_rate_limit_wait

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        client = mastodon_client(self.api_base, self._token, self.timeout)
        call = MastodonCaller(client, sleep=self._sleep, max_wait=self._max_wait)
        try:
            account = await self._account(call)
            statuses = await self._statuses(call, account.user_id, since_id)
        finally:
            client.session.close()
        ids = [str(s["id"]) for s in statuses] + ([since_id] if since_id else [])
        readable = [s for s in statuses if s.get("visibility", "public") in READABLE]
        posts = [raw_post(s, include_cw=self.include_cw) for s in readable]
        hidden = sum(1 for s in readable if behind_cw(s))
        note = None
        if hidden and not self.include_cw:
            note = (f"{hidden:,} status{'es' if hidden != 1 else ''} behind a content warning skipped (counted "
                    "with the short ones; MIMICBOT_MASTODON_INCLUDE_CW=true trains on them)")
        return FetchResult(account=account, posts=posts, cursor=max(ids, key=_id_order) if ids else None, note=note)

    async def _account(self, call: MastodonCaller) -> AccountInfo:
        def missing() -> UnknownAccount:
            return UnknownAccount(f"no Mastodon account @{self.handle} (asked {self.api_base})")

        try:
            found = await call("account_lookup", self.handle, what=f"the account {self.label}", not_found=missing)
        except UnknownAccount:  # not known to that instance yet: search, resolving over WebFinger with a token
            results = await call("account_search", self.handle, resolve=self._token is not None, limit=5,
                                 what=f"a search for {self.label}")
            found = next((a for a in results if self._is_this(a)), None)
            if found is None:
                raise missing() from None
        if found.get("suspended"):
            raise ProtectedAccount(f"{self.label} is suspended on Mastodon: its posts cannot be read")
        return AccountInfo(network=NETWORK, handle=self.handle, display_name=found.get("display_name") or self.user,
                           user_id=str(found["id"]), avatar_url=found.get("avatar"))

    def _is_this(self, account) -> bool:
        acct = str(account.get("acct", "")).lower()
        local_here = acct == self.user and urlsplit(account.get("url") or "").hostname == self.instance
        return acct == self.handle or local_here

    async def _statuses(self, call: MastodonCaller, account_id: str, since_id: str | None) -> list:
        """Newest first: back from the newest (`max_id`), or forward from `since_id` (`min_id`, each page the
        oldest statuses after it), until an empty page or the cap. At the cap, a forward walk keeps the oldest,
        so the next fetch goes on from there without a gap."""
        forward = since_id is not None
        statuses: list = []
        position = since_id
        while len(statuses) < TIMELINE_CAP:
            page = await call("account_statuses", account_id, limit=PAGE_SIZE,
                              **({"min_id": position} if forward else {"max_id": position}),
                              what=f"the statuses of {self.label}")
            if not page:
                break
            room = TIMELINE_CAP - len(statuses)
            statuses.extend(page[-room:] if forward else page[:room])
            position = str(page[0 if forward else -1]["id"])
        return statuses


def behind_cw(status) -> bool:
    """A status of the account's own (not a boost) with a content warning (`spoiler_text`)."""
    return status.get("reblog") is None and bool((status.get("spoiler_text") or "").strip())


def raw_post(status, *, include_cw: bool = False) -> RawPost:
    """A status as a RawPost. One behind a content warning keeps no text unless `include_cw`: cleaning then
    counts it as short and nothing of it is stored or trained on."""
    boosted = status.get("reblog")
    shown = boosted or status
    hidden = behind_cw(status) and not include_cw
    return RawPost(
        id=str(status["id"]),
        text="" if hidden else html_to_text(shown.get("content")),
        created_at=_utc(status.get("created_at")),
        is_retweet=boosted is not None,
        is_reply=status.get("in_reply_to_id") is not None,
        is_quote=bool(shown.get("quote")),
        lang=shown.get("language"),
    )


def _id_order(status_id: str) -> tuple[int, str]:
    """Mastodon's numeric ids and the fixed-width ids of other servers (ULIDs, flake ids) both sort this way."""
    return len(status_id), status_id


def _utc(value: datetime | str | None) -> str | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
