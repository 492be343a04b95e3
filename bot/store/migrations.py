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
