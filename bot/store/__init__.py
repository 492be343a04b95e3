"""The SQLite store: one file on disk, WAL mode, shared safely by the daemon and the CLI.

Everything that must survive a restart lives here: accounts and their posts, fetch runs, training
jobs, models, schedules, outgoing posts. Tables are created by `migrations.py`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from ..cleaning import CleanPost, CleanStats, context_text, joined_chars
from ..errors import StoreBusy
from ..sources.base import AccountInfo, RawPost
from .migrations import migrations

BUSY_TIMEOUT_MS = 10_000


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """A thin, typed layer over sqlite-utils. Safe to share between threads of one process."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_ms / 1000, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.RLock()
        self.db = Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.enable_wal()
        with self._lock:
            migrations.apply(self.db)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One atomic write: all of it lands or none of it does.

        Starts with BEGIN IMMEDIATE so that two processes (daemon and CLI) queue on the busy
        timeout instead of failing when a read transaction tries to become a write one.
        """
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                with self.db.atomic():  # nested: a savepoint
                    yield self.db
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self._busy(e) from None
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.OperationalError as e:
                    conn.execute("ROLLBACK")
                    raise self._busy(e) from None

    def _busy(self, error: sqlite3.OperationalError) -> Exception:
        """Another process held the write lock past the busy timeout: one clear line, nothing written."""
        if "locked" not in str(error) and "busy" not in str(error):
            return error
        return StoreBusy(f"the database {self.path} is busy: another process (the daemon, or another mimicbot "
                         f"command) held it for more than {self.busy_timeout_ms / 1000:g} s; nothing was written — "
                         "try again")

    def query(self, sql: str, params: Iterable | dict = ()) -> list[dict]:
        with self._lock:
            return list(self.db.query(sql, params))

    # -- accounts -----------------------------------------------------------------------------

    def upsert_account(self, info: AccountInfo, db: Database | None = None) -> dict:
        """Create or refresh an account; returns its row. Cursors are left as they were."""
        db = db or self.db
        with self._lock:
            now = utcnow()
            row = self.get_account(info.network, info.handle)
            fields = {
                "display_name": info.display_name,
                "user_id": info.user_id,
                "avatar_url": info.avatar_url,
                "protected": int(info.protected),
                "updated_at": now,
            }
            if row is None:
                db["accounts"].insert({"network": info.network, "handle": info.handle, "created_at": now, **fields})
            else:
                fields = {k: v for k, v in fields.items() if v is not None}
                db["accounts"].update(row["id"], fields)
            return self.get_account(info.network, info.handle)

    def get_account(self, network: str, handle: str) -> dict | None:
        rows = self.query("select * from accounts where network = ? and handle = ?", [network, handle])
        return rows[0] if rows else None

    def account_by_id(self, account_id: int) -> dict | None:
        rows = self.query("select * from accounts where id = ?", [account_id])
        return rows[0] if rows else None

    def find_accounts(self, handle: str) -> list[dict]:
        """Accounts with this handle on any network, the one with the most kept posts first."""
        return self.query(
            """select a.*, (select count(*) from posts p where p.account_id = a.id
                            and not p.is_retweet and not p.is_short) as kept
               from accounts a where a.handle = ? order by kept desc, a.id""",
            [handle],
        )

    def list_accounts(self) -> list[dict]:
        return self.query(
            """select a.*,
                 count(p.id) as downloaded,
                 coalesce(sum(p.is_retweet), 0) as retweets,
                 coalesce(sum(p.is_short), 0) as short,
                 coalesce(sum(case when not p.is_retweet and not p.is_short then 1 else 0 end), 0) as kept
               from accounts a left join posts p on p.account_id = a.id
               group by a.id order by a.network, a.handle"""
        )

    def set_cursor(self, account_id: int, since_id: str | None, db: Database | None = None) -> None:
        if since_id is not None:
            with self._lock:
                (db or self.db)["accounts"].update(account_id, {"since_id": since_id})

    def delete_account(self, account_id: int) -> int:
        """Remove an account with its posts and fetch runs; returns the number of posts removed."""
        with self.transaction() as db:
            n = db.execute("select count(*) from posts where account_id = ?", [account_id]).fetchone()[0]
            db.execute("delete from posts where account_id = ?", [account_id])
            db.execute("delete from fetch_runs where account_id = ?", [account_id])
            db.execute("delete from accounts where id = ?", [account_id])
            return n

    # -- posts --------------------------------------------------------------------------------

    def add_posts(
        self, account_id: int, posts: Iterable[tuple[RawPost, CleanPost]], db: Database | None = None
    ) -> int:
        """Insert posts not stored yet (unique per account and post id); returns how many were new."""
        db = db or self.db
        now = utcnow()
        rows = [
            {
                "account_id": account_id,
                "post_id": raw.id,
                "raw_text": raw.text,
                "clean_text": clean.text,
                "is_retweet": int(clean.retweet),
                "is_reply": int(raw.is_reply),
                "is_quote": int(raw.is_quote),
                "is_short": int(clean.short),
                "lang": raw.lang,
                "parent_text": raw.parent_text,
                "created_at": raw.created_at,
                "fetched_at": now,
            }
            for raw, clean in posts
        ]
        with self._lock:
            before = db.execute("select count(*) from posts where account_id = ?", [account_id]).fetchone()[0]
            db["posts"].insert_all(rows, ignore=True, batch_size=500)
            after = db.execute("select count(*) from posts where account_id = ?", [account_id]).fetchone()[0]
        return after - before

    def kept_texts(self, account_id: int) -> list[str]:
        """The cleaned texts training sees, oldest first."""
        rows = self.query(
            """select clean_text from posts where account_id = ? and not is_retweet and not is_short
               order by created_at, id""",
            [account_id],
        )
        return [r["clean_text"] for r in rows]

    def kept_parents(self, account_id: int) -> dict[str, str]:
        """Kept replies whose parent's text is stored: cleaned reply text -> the parent as the model reads it."""
        rows = self.query(
            """select clean_text, parent_text from posts where account_id = ? and not is_retweet and not is_short
               and parent_text is not null order by created_at, id""",
            [account_id],
        )
        return {r["clean_text"]: parent for r in rows if (parent := context_text(r["parent_text"]))}

    def account_stats(self, account_id: int) -> CleanStats:
        row = self.query(
            """select count(*) as downloaded, coalesce(sum(is_retweet), 0) as retweets,
                      coalesce(sum(is_short), 0) as short
               from posts where account_id = ?""",
            [account_id],
        )[0]
        kept = self.kept_texts(account_id)
        return CleanStats(row["downloaded"], row["retweets"], row["short"], len(kept), joined_chars(kept))

    def record_fetch(self, account_id: int, source: str, started_at: str, stats: CleanStats, new: int,
                     db: Database | None = None) -> None:
        with self._lock:
            (db or self.db)["fetch_runs"].insert(
                {"account_id": account_id, "source": source, "started_at": started_at,
                 "finished_at": utcnow(), "new": new, **stats.as_dict()}
            )
