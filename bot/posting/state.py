"""Small named values the posting side keeps in the `posting_state` table (cursors, versions)."""

from __future__ import annotations

from sqlite_utils import Database

from ..store import Store

SCHEDULES_VERSION = "schedules_version"  # bumped by every schedule edit; the daemon watches it
X_MENTIONS_SINCE = "x_mentions_since_id"  # newest mention handled
X_ME = "x_me"  # "id username" of the account the X tokens act as


def read(store: Store, key: str) -> str | None:
    rows = store.query("select value from posting_state where key = ?", [key])
    return rows[0]["value"] if rows else None


def write(db: Database, key: str, value: str) -> None:
    """Inside a transaction (`with store.transaction() as db`)."""
    db["posting_state"].upsert({"key": key, "value": value}, pk="key")


def bump(db: Database, key: str) -> int:
    """Add one to a counter, inside a transaction; returns the new value."""
    db.execute("insert into posting_state (key, value) values (?, '1') "
               "on conflict(key) do update set value = cast(value as integer) + 1", [key])
    return int(db.execute("select value from posting_state where key = ?", [key]).fetchone()[0])
