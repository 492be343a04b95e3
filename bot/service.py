"""The service API: the one set of nouns and verbs that the CLI and the Discord cogs are thin faces of.

Accounts are fetched from sources into the store; models are trained from stored accounts by jobs in a
pool of child processes; generation serves cached models. Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass

from .cleaning import clean_post
from .config import Settings, load_settings
from .errors import MimicbotError
from .sources import open_source
from .sources.base import FetchResult, Source
from .store import Store, utcnow

log = logging.getLogger(__name__)

MAX_ACCOUNTS = 3  # a cyborg is at most three people, as in the recipe


@dataclass
class FetchReport:
    """One account's line of the card's table after a fetch (totals over everything stored)."""

    handle: str
    display_name: str
    source: str
    network: str
    downloaded: int
    retweets: int
    short: int
    kept: int
    chars: int
    new: int
    warning: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Mimicbot:
    """One instance per process. Owns the store; the pool and cache are attached by the training and
    generation layers when the process serves them."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None):
        self.settings = settings or load_settings()
        self.store = store or Store(self.settings.db_path)

    def close(self) -> None:
        self.store.close()

    # -- fetching ---------------------------------------------------------------------------------

    def source(self, spec: str, handle: str | None = None) -> Source:
        return open_source(spec, self.settings, handle=handle)

    async def fetch(self, specs: list[str], handle: str | None = None) -> list[FetchReport]:
        """Fetch every source, then store each one atomically. A source that fails stores nothing;
        sources are all read before anything is written, so one bad source leaves the database unchanged."""
        sources = [self.source(s, handle) for s in specs]
        started = utcnow()
        results = []
        for src in sources:
            since = None
            existing = None
            result: FetchResult | None = None
            # an account is known only after its first read; the X source needs since_id up front
            known = getattr(src, "handle", None)
            network = getattr(src, "network", None)
            if known and network:
                existing = self.store.get_account(network, known)
                since = existing["since_id"] if existing else None
            result = await src.fetch(since_id=since)
            results.append((src, result))
        return [self.ingest(src.label, result, started) for src, result in results]

    def ingest(self, label: str, result: FetchResult, started: str | None = None) -> FetchReport:
        """Clean and store one fetch result in one transaction; returns the account's totals."""
        cleaned = [(raw, clean_post(raw.text, raw.is_retweet)) for raw in result.posts]
        with self.store.transaction() as db:
            account = self.store.upsert_account(result.account, db=db)
            new = self.store.add_posts(account["id"], cleaned, db=db)
            self.store.set_cursor(account["id"], _newer(account["since_id"], result.cursor), db=db)
            stats = self.store.account_stats(account["id"])
            self.store.record_fetch(account["id"], label, started or utcnow(), stats, new, db=db)
        return FetchReport(
            handle=account["handle"], display_name=account["display_name"], source=label,
            network=account["network"], new=new, warning=stats.warning, **stats.as_dict(),
        )

    def fetch_blocking(self, specs: list[str], handle: str | None = None) -> list[FetchReport]:
        return asyncio.run(self.fetch(specs, handle))

    # -- accounts ---------------------------------------------------------------------------------

    def accounts(self) -> list[dict]:
        return self.store.list_accounts()


def _newer(old: str | None, new: str | None) -> str | None:
    """The larger of two post ids (numeric ids compare as numbers)."""
    if not old or not new:
        return new or old
    if old.isdigit() and new.isdigit():
        return new if int(new) > int(old) else old
    return new


__all__ = ["FetchReport", "MAX_ACCOUNTS", "Mimicbot", "MimicbotError"]
