"""The outgoing ledger: every post goes through the `outgoing` table, written before it is sent.

    draft ──approve──▶ sending ──▶ sent (remote id recorded)
      └──reject──▶ rejected  │ └──▶ failed (the network said no: nothing was published)
                             └──▶ unknown (no answer, or the process died while sending)

An entry is claimed as "sending" before the request goes out and marked "sent" with the network's id after,
so a crash between the two leaves "sending" behind; `mark_interrupted` (run when the daemon starts) turns such
entries into "unknown". Nothing "unknown" is retried: the post may exist. `mimicbot post list --status unknown`
shows them and `mimicbot post resolve` settles them by hand.

A schedule's fire carries a `fire_key` (unique), so the same fire can never write two entries, whatever
restarts happen between.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from ..errors import ValidationError
from ..redaction import redact
from ..store import Store, utcnow
from ..errors import UnknownOutgoing

STATUSES = ("draft", "rejected", "sending", "sent", "failed", "unknown")
# Entries that count as "posted or maybe posted" for the repeat and reply-cap rules.
LIVE = ("draft", "sending", "sent", "unknown")
INTERRUPTED_AFTER = timedelta(minutes=2)  # longer than any single send may take (HTTP timeout is 30 s)


class Ledger:
    def __init__(self, store: Store):
        self.store = store

    # -- writing ------------------------------------------------------------------------------------

    def open(self, *, model_id: str, target: str, text: str, status: str = "sending", kind: str = "post",
             fire_key: str | None = None, schedule_id: int | None = None, **fields) -> int | None:
        """Write an entry (an intent to send, or a draft); returns its id, or None when `fire_key` already has one
        (that fire was handled before: do nothing)."""
        assert status in ("sending", "draft")
        now = utcnow()
        row = {"model_id": model_id, "target": target, "kind": kind, "text": text, "status": status,
               "fire_key": fire_key, "schedule_id": schedule_id, "created_at": now, "updated_at": now, **fields}
        try:
            with self.store.transaction() as db:
                return db["outgoing"].insert(row).last_pk
        except sqlite3.IntegrityError:
            if fire_key is not None and self.by_fire_key(fire_key) is not None:
                return None
            raise

    def claim_draft(self, entry_id: int, decided_by: str, text: str) -> bool:
        """draft → sending, atomically: only one approver wins a double click. False if it was not a draft."""
        return self._transition(entry_id, ("draft",), "sending", decided_by=decided_by, text=text)

    def reject_draft(self, entry_id: int, decided_by: str, reason: str | None = None) -> bool:
        return self._transition(entry_id, ("draft",), "rejected", decided_by=decided_by, error=reason)

    def sent(self, entry_id: int, remote_id: str) -> None:
        self._transition(entry_id, ("sending", "unknown"), "sent", remote_id=remote_id, sent_at=utcnow(), error=None)

    def failed(self, entry_id: int, error: str) -> None:
        self._transition(entry_id, ("sending", "draft", "unknown"), "failed", error=error)

    def unknown(self, entry_id: int, error: str) -> None:
        self._transition(entry_id, ("sending",), "unknown", error=error)

    def set_draft_message(self, entry_id: int, channel_id: int, message_id: int) -> None:
        with self.store.transaction() as db:
            db["outgoing"].update(entry_id, {"draft_channel_id": channel_id, "draft_message_id": message_id})

    def mark_interrupted(self, now: datetime | None = None) -> list[dict]:
        """Entries left "sending" longer than any send takes → "unknown". Returns them (to surface them)."""
        cutoff = ((now or datetime.now(UTC)) - INTERRUPTED_AFTER).isoformat(timespec="seconds")
        stale = self.store.query("select * from outgoing where status = 'sending' and updated_at <= ?", [cutoff])
        for row in stale:
            self.unknown(row["id"], "interrupted between intent and confirmation: check the network by hand")
        return [self.get(row["id"]) for row in stale]

    def resolve(self, entry_id: int, remote_id: str | None) -> dict:
        """Settle an "unknown" entry by hand: sent (with the id found on the network) or not sent."""
        entry = self.get(entry_id)
        if entry["status"] != "unknown":
            raise UnknownOutgoing(f"outgoing post {entry_id} is {entry['status']}, not unknown")
        if remote_id:
            self.sent(entry_id, remote_id)
        else:
            self._transition(entry_id, ("unknown",), "failed", error="resolved by hand: not posted")
        return self.get(entry_id)

    def _transition(self, entry_id: int, allowed: tuple[str, ...], status: str, **fields) -> bool:
        """Move an entry to `status` only from one of the `allowed` ones, atomically; True if it moved."""
        if fields.get("error"):
            fields["error"] = redact(fields["error"])  # error text may come from the network: never a secret
        sets = "".join(f", {k} = :{k}" for k in fields)
        olds = {f"old{i}": s for i, s in enumerate(allowed)}
        sql = (f"update outgoing set status = :status, updated_at = :now{sets} "
               f"where id = :id and status in ({', '.join(':' + k for k in olds)})")
        with self.store.transaction() as db:
            cursor = db.execute(sql, {"status": status, "now": utcnow(), "id": entry_id, **fields, **olds})
            return cursor.rowcount == 1

    # -- reading ------------------------------------------------------------------------------------

    def get(self, entry_id: int) -> dict:
        rows = self.store.query("select * from outgoing where id = ?", [entry_id])
        if not rows:
            raise UnknownOutgoing(f"no outgoing post with id {entry_id}")
        return rows[0]

    def by_fire_key(self, fire_key: str) -> dict | None:
        rows = self.store.query("select * from outgoing where fire_key = ?", [fire_key])
        return rows[0] if rows else None

    def list(self, status: str | None = None, limit: int = 50) -> list[dict]:
        if status is not None and status not in STATUSES:
            raise ValidationError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        where = "where status = ?" if status else ""
        return self.store.query(f"select * from outgoing {where} order by id desc limit ?",
                                [status, limit] if status else [limit])

    def recent_texts(self, n: int, exclude_id: int | None = None) -> list[str]:
        """The texts of the last `n` entries that were (or may have been, or may yet be) posted."""
        if n <= 0:
            return []
        rows = self.store.query(
            f"select text from outgoing where status in ({_in(LIVE)}) and id != ? order by id desc limit ?",
            [*LIVE, exclude_id or 0, n])
        return [r["text"] for r in rows]

    def replied_to(self, tweet_id: str) -> bool:
        """Whether a live reply to this post exists (so a re-read mention is never answered twice)."""
        rows = self.store.query(
            f"select 1 from outgoing where reply_to_id = ? and status in ({_in(LIVE)}) limit 1", [tweet_id, *LIVE])
        return bool(rows)

    def conversation_of(self, remote_id: str) -> str | None:
        """The conversation one of our own posts belongs to (to follow a thread that answers us)."""
        rows = self.store.query("select conversation_id from outgoing where remote_id = ?", [remote_id])
        return rows[0]["conversation_id"] if rows else None

    def replies_in_conversation(self, conversation_id: str) -> int:
        return self._count("conversation_id = ?", [conversation_id])

    def replies_to_user_since(self, user_id: str, since: datetime) -> int:
        return self._count("reply_to_user_id = ? and created_at >= ?",
                           [user_id, since.astimezone(UTC).isoformat(timespec="seconds")])

    def _count(self, where: str, params: list) -> int:
        rows = self.store.query(
            f"select count(*) as n from outgoing where kind = 'reply' and status in ({_in(LIVE)}) and {where}",
            [*LIVE, *params])
        return rows[0]["n"]


def _in(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))
