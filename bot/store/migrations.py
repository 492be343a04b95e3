"""Schema, as an ordered list of sqlite-utils migrations. Append new ones; never edit an applied one."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("mimicbot")


@migrations()
def m001_accounts_posts_fetches(db: Database) -> None:
    db["accounts"].create(
        {
            "id": int,
            "network": str,  # x, bsky, mastodon, file
            "handle": str,
            "display_name": str,
            "user_id": str,
            "avatar_url": str,
            "protected": int,
            "since_id": str,  # newest post id stored: the cursor for the next fetch
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"network", "handle"},
    )
    db["accounts"].create_index(["network", "handle"], unique=True)
    db["posts"].create(
        {
            "id": int,
            "account_id": int,
            "post_id": str,
            "raw_text": str,
            "clean_text": str,
            "is_retweet": int,
            "is_reply": int,
            "is_quote": int,
            "is_short": int,
            "lang": str,
            "created_at": str,
            "fetched_at": str,
        },
        pk="id",
        foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "post_id", "raw_text"},
    )
    db["posts"].create_index(["account_id", "post_id"], unique=True)
    db["fetch_runs"].create(
        {
            "id": int,
            "account_id": int,
            "source": str,
            "started_at": str,
            "finished_at": str,
            "downloaded": int,
            "retweets": int,
            "short": int,
            "kept": int,
            "chars": int,
            "new": int,
        },
        pk="id",
        foreign_keys=[("account_id", "accounts", "id")],
    )


@migrations()
def m002_jobs(db: Database) -> None:
    """Training jobs, shared by the daemon's pool and the CLI: queued → running → succeeded | failed | cancelled."""
    db["jobs"].create(
        {
            "id": int,
            "model_id": str,
            "state": str,
            "request": str,  # JSON: the TrainRequest without the texts (rebuilt from the store at claim time)
            "requested_by": str,  # "cli", "discord:<user id>", ...
            "guild_id": int,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "error": str,
            # progress, as the trainer last reported it
            "step": int,
            "total": int,
            "loss": float,
            "tokens_per_s": float,
            "eta_s": float,
            "phase": str,
            "progress_at": str,
            "result": str,  # JSON: the training.json summary
            # who runs it: the pool's process (host + pid) and its training child
            "owner_host": str,
            "owner_pid": int,
            "worker_pid": int,
            "cancel_requested": int,
            # where a Discord face shows progress, so its edits survive a restart
            "status_channel_id": int,
            "status_message_id": int,
        },
        pk="id",
        not_null={"model_id", "state", "request", "created_at"},
        defaults={"cancel_requested": 0},
    )
    db["jobs"].create_index(["state", "id"])
    db["jobs"].create_index(["model_id"])


@migrations()
def m003_posting(db: Database) -> None:
    """Schedules (the source of truth the daemon serves), the outgoing-posts ledger, and small posting state
    (the schedules version the daemon watches, the X mentions cursor)."""
    db["schedules"].create(
        {
            "id": int,
            "model_id": str,
            "target": str,  # "x", "discord:<channel id>", ...
            "kind": str,  # "cron" or "interval"
            "spec": str,  # 5-field crontab, or the interval in seconds
            "timezone": str,  # IANA name; cron fields are read in it
            "require_approval": int,
            "approval_channel_id": int,  # Discord channel for drafts (None: the MIMICBOT_APPROVAL_CHANNEL_ID)
            "paused": int,
            "anchor_at": str,  # ISO UTC: intervals count from here, so their fire times survive restarts
            "last_fire_at": str,  # ISO UTC: the scheduled time of the latest fire (claimed before posting)
            "last_status": str,
            "last_error": str,
            "run_requested_at": str,  # set by run-now; the daemon runs it once and clears it
            "rev": int,  # bumped on every edit; the daemon reschedules a job whose rev changed
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"model_id", "target", "kind", "spec", "timezone"},
        defaults={"require_approval": 0, "paused": 0, "rev": 1},
    )
    db["outgoing"].create(
        {
            "id": int,
            "model_id": str,
            "target": str,
            "kind": str,  # "post" or "reply"
            "text": str,  # exactly what is (or was to be) sent
            "status": str,  # draft | rejected | sending | sent | failed | unknown
            "remote_id": str,
            "schedule_id": int,
            "fire_key": str,  # unique when set: one post per schedule fire, across restarts
            "reply_to_id": str,  # the mention answered
            "reply_to_user_id": str,
            "conversation_id": str,
            "draft_channel_id": int,
            "draft_message_id": int,
            "decided_by": str,
            "error": str,
            "created_at": str,
            "updated_at": str,
            "sent_at": str,
        },
        pk="id",
        not_null={"model_id", "target", "kind", "text", "status", "created_at"},
    )
    db["outgoing"].create_index(["fire_key"], unique=True)
    db["outgoing"].create_index(["status"])
    db["outgoing"].create_index(["target", "id"])
    db["outgoing"].create_index(["reply_to_id"])
    db["outgoing"].create_index(["reply_to_user_id", "created_at"])
    db["outgoing"].create_index(["conversation_id"])
    db["posting_state"].create({"key": str, "value": str}, pk="key")


@migrations()
def m004_guild_settings(db: Database) -> None:
    """Per-server settings of the Discord face, one row a setting (value as JSON); defaults live in code."""
    db["guild_settings"].create(
        {"guild_id": int, "key": str, "value": str, "updated_at": str},
        pk=("guild_id", "key"),
        not_null={"guild_id", "key", "value"},
    )


@migrations()
def m005_reclean_posts_as_the_recipe(db: Database) -> None:
    """Stored posts were cleaned by rules that differed from the recipe's in four cases (links glued to the
    word before them, a bare `http:`, upper-case schemes, `&amp;amp;`); clean every stored post again from
    its raw text, so that training and the card's counts are the recipe's."""
    from ..cleaning import clean_post

    rows = db.execute("select id, raw_text, is_retweet from posts").fetchall()
    changed = []
    for post_id, raw_text, is_retweet in rows:
        clean = clean_post(raw_text, bool(is_retweet))
        changed.append((clean.text, int(clean.short), post_id))
    db.conn.executemany("update posts set clean_text = ?, is_short = ? where id = ?", changed)


@migrations()
def m006_schedule_prompt(db: Database) -> None:
    """A schedule's fixed opener (None: its posts start from the start-of-post token alone)."""
    db["schedules"].add_column("prompt", str)


@migrations()
def m007_post_parent_text(db: Database) -> None:
    """The text of the message a post answers, when its source gives it (raw, as the network gave it)."""
    db["posts"].add_column("parent_text", str)


@migrations()
def m008_discord_members(db: Database) -> None:
    """Discord members who agreed, per server, that their messages there may be learned (with the time they
    agreed), and the backfill cursor of each member in each channel. Their messages are posts of an account of
    network `discord`, under the handle kept here; their avatar URL is kept only when they agreed to that too."""
    db["discord_members"].create(
        {
            "guild_id": int,
            "user_id": int,
            "handle": str,  # the account's handle (bot/naming.py discord_member_handle): never the user id
            "display_name": str,  # their display name in that server, as the card shows it
            "consented_at": str,  # ISO UTC: when they agreed
            "consent_text": str,  # the words they agreed to
            "avatar_url": str,  # None unless they agreed to show their avatar on the card
            "avatar_consented_at": str,
            "updated_at": str,
        },
        pk=("guild_id", "user_id"),
        not_null={"guild_id", "user_id", "handle", "consented_at"},
    )
    db["discord_members"].create_index(["handle"], unique=True)
    db["discord_backfill"].create(
        {
            "guild_id": int,
            "user_id": int,
            "channel_id": int,
            "before_id": str,  # the oldest message read in this channel so far: reading resumes before it
            "done": int,  # 1: the channel's history was read to its start (or the member's limit was reached)
            "scanned": int,  # messages of everyone read in this channel (only the member's are kept)
            "learned": int,  # the member's messages found
            "started_at": str,
            "updated_at": str,
        },
        pk=("guild_id", "user_id", "channel_id"),
        not_null={"guild_id", "user_id", "channel_id"},
        defaults={"done": 0, "scanned": 0, "learned": 0},
    )
