"""Discord members' consent, their backfill cursors and their messages — as rows keyed by ids, with no Discord
object anywhere (the core never imports discord; bot/discord/cogs/learning.py reads Discord and calls the
service, which calls this).

A member's messages are posts of an account of network `discord` whose handle is kept in `discord_members`.
Every write of a message happens in a transaction that first checks the member's consent row, so once an
opt-out has deleted that row nothing of theirs can be stored again, whatever was still in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..cleaning import clean_post, discord_text
from ..sources.base import AccountInfo, RawPost
from . import Store, utcnow

NETWORK = "discord"


@dataclass(frozen=True)
class MemberMessage:
    """One message of a consenting member, as the Discord face read it."""

    id: int
    channel_id: int
    text: str
    created_at: str | None = None  # ISO 8601 UTC


class Members:
    def __init__(self, store: Store):
        self.store = store

    # -- consent ----------------------------------------------------------------------------------

    def get(self, guild_id: int, user_id: int) -> dict | None:
        rows = self.store.query("select * from discord_members where guild_id = ? and user_id = ?",
                                [guild_id, user_id])
        return rows[0] if rows else None

    def by_handle(self, handle: str) -> dict | None:
        rows = self.store.query("select * from discord_members where handle = ?", [handle])
        return rows[0] if rows else None

    def consenting(self, guild_id: int | None = None) -> list[dict]:
        if guild_id is None:
            return self.store.query("select * from discord_members order by guild_id, user_id")
        return self.store.query("select * from discord_members where guild_id = ? order by user_id", [guild_id])

    def agree(self, guild_id: int, user_id: int, handle: str, display_name: str, consent_text: str) -> dict:
        """Record consent (the time and the words), and create the member's account; agreeing again keeps the first
        time and refreshes the display name."""
        now = utcnow()
        with self.store.transaction() as db:
            row = self.get(guild_id, user_id)
            if row is None:
                db["discord_members"].insert({"guild_id": guild_id, "user_id": user_id, "handle": handle,
                                              "display_name": display_name, "consented_at": now,
                                              "consent_text": consent_text, "updated_at": now})
            else:
                handle = row["handle"]
                db["discord_members"].update((guild_id, user_id), {"display_name": display_name, "updated_at": now})
            self._upsert_account(handle, display_name, db)
        return self.get(guild_id, user_id)

    def set_display_name(self, guild_id: int, user_id: int, display_name: str) -> None:
        with self.store.transaction() as db:
            row = self.get(guild_id, user_id)
            if row is None or row["display_name"] == display_name:
                return
            db["discord_members"].update((guild_id, user_id), {"display_name": display_name, "updated_at": utcnow()})
            self._upsert_account(row["handle"], display_name, db)

    def set_avatar(self, guild_id: int, user_id: int, avatar_url: str | None) -> dict:
        """Show (a URL) or stop showing (None) the member's avatar on the cards of models trained from now on."""
        with self.store.transaction() as db:
            row = self.get(guild_id, user_id)
            if row is None:
                return None
            db["discord_members"].update((guild_id, user_id), {
                "avatar_url": avatar_url, "avatar_consented_at": utcnow() if avatar_url else None})
            account = self.store.get_account(NETWORK, row["handle"])
            if account is not None:
                db["accounts"].update(account["id"], {"avatar_url": avatar_url})
        return self.get(guild_id, user_id)

    def _upsert_account(self, handle: str, display_name: str, db) -> dict:
        return self.store.upsert_account(AccountInfo(network=NETWORK, handle=handle, display_name=display_name), db=db)

    def revoke(self, guild_id: int, user_id: int) -> str | None:
        """Delete the consent row and the cursors (so nothing more is stored); the member's handle, or None."""
        with self.store.transaction() as db:
            row = self.get(guild_id, user_id)
            if row is None:
                return None
            db.execute("delete from discord_members where guild_id = ? and user_id = ?", [guild_id, user_id])
            db.execute("delete from discord_backfill where guild_id = ? and user_id = ?", [guild_id, user_id])
        return row["handle"]

    def revoke_handle(self, handle: str, db) -> None:
        """Inside forget's transaction: an account forgotten is no longer learned."""
        for row in db.execute("select guild_id, user_id from discord_members where handle = ?", [handle]).fetchall():
            db.execute("delete from discord_backfill where guild_id = ? and user_id = ?", list(row))
        db.execute("delete from discord_members where handle = ?", [handle])

    # -- messages ---------------------------------------------------------------------------------

    def learn(self, guild_id: int, user_id: int, messages: Iterable[MemberMessage],
              cursor: tuple[int, str | None, bool, int] | None = None) -> int:
        """Store a consenting member's messages (cleaned like posts; one already stored is left as it is) and, for a
        backfill, the channel's cursor `(channel_id, before_id, done, scanned)`, in one transaction. Nothing is
        stored when the member has not agreed (or has withdrawn). Returns how many messages were new."""
        with self.store.transaction() as db:
            row = self.get(guild_id, user_id)
            if row is None:
                return 0
            account = self.store.get_account(NETWORK, row["handle"]) or self._upsert_account(
                row["handle"], row["display_name"] or "member", db)
            posts = []
            for m in messages:
                raw = RawPost(id=str(m.id), text=discord_text(m.text), created_at=m.created_at)
                posts.append((raw, clean_post(raw.text)))
            new = self.store.add_posts(account["id"], posts, db=db) if posts else 0
            if cursor is not None:
                channel_id, before_id, done, scanned = cursor
                now = utcnow()
                old = db.execute("select scanned, learned, started_at from discord_backfill where guild_id = ? and "
                                 "user_id = ? and channel_id = ?", [guild_id, user_id, channel_id]).fetchone()
                db["discord_backfill"].upsert({
                    "guild_id": guild_id, "user_id": user_id, "channel_id": channel_id, "before_id": before_id,
                    "done": int(done), "scanned": (old[0] if old else 0) + scanned,
                    "learned": (old[1] if old else 0) + new, "started_at": old[2] if old else now,
                    "updated_at": now}, pk=("guild_id", "user_id", "channel_id"))
            return new

    def edit(self, message_id: int, text: str) -> bool:
        """Replace the text of a stored message (an edit on Discord); False when it is not stored."""
        raw = discord_text(text)
        clean = clean_post(raw)
        with self.store.transaction() as db:
            cur = db.execute(
                "update posts set raw_text = ?, clean_text = ?, is_short = ? where post_id = ? and account_id in "
                "(select id from accounts where network = ?)",
                [raw, clean.text, int(clean.short), str(message_id), NETWORK])
            return cur.rowcount > 0

    def delete(self, message_ids: Iterable[int]) -> int:
        """Remove stored messages (deleted on Discord); returns how many were stored."""
        ids = [str(i) for i in message_ids]
        if not ids:
            return 0
        with self.store.transaction() as db:
            marks = ", ".join("?" * len(ids))
            return db.execute(f"delete from posts where post_id in ({marks}) and account_id in "
                              "(select id from accounts where network = ?)", [*ids, NETWORK]).rowcount

    # -- backfill -----------------------------------------------------------------------------------

    def cursor(self, guild_id: int, user_id: int, channel_id: int) -> dict | None:
        rows = self.store.query("select * from discord_backfill where guild_id = ? and user_id = ? and channel_id = ?",
                                [guild_id, user_id, channel_id])
        return rows[0] if rows else None

    def cursors(self, guild_id: int, user_id: int) -> list[dict]:
        return self.store.query("select * from discord_backfill where guild_id = ? and user_id = ? order by channel_id",
                                [guild_id, user_id])

    def stored_count(self, handle: str) -> int:
        account = self.store.get_account(NETWORK, handle)
        if account is None:
            return 0
        return self.store.query("select count(*) as n from posts where account_id = ?", [account["id"]])[0]["n"]
