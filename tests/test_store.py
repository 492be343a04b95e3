"""The store: WAL mode, migrations, and two processes writing at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.samples.generate import sample_path
from bot.service import Mimicbot
from bot.store import Store
from bot.store.migrations import migrations


def test_wal_and_migrations(settings):
    s = Store(settings.db_path)
    assert s.db.journal_mode == "wal"
    assert s.query("pragma busy_timeout")[0]["timeout"] >= 5000
    assert not migrations.pending(s.db)
    assert {"accounts", "posts", "fetch_runs"} <= set(s.db.table_names())
    s.close()
    Store(settings.db_path).close()  # re-opening applies nothing twice


@pytest.mark.slow  # starts processes
def test_two_processes_write_at_the_same_time(settings):
    """The daemon and the CLI share the file: a second process importing while this one writes."""
    code = (
        "import sys; from pathlib import Path; from bot.config import Settings; from bot.service import Mimicbot;"
        "s = Settings(mimicbot_data_dir=Path(sys.argv[1]), _env_file=None);"
        "b = Mimicbot(s); b.fetch_blocking([sys.argv[2]]); b.close()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(settings.data_dir), str(sample_path("grace_gardens"))])
    bot = Mimicbot(settings)
    for _ in range(5):
        bot.fetch_blocking([str(sample_path("ada_bytes"))])
    assert proc.wait(timeout=120) == 0
    counts = {a["handle"]: a["downloaded"] for a in bot.accounts()}
    assert counts == {"ada_bytes": 400, "grace_gardens": 300}
    assert bot.store.query("select count(*) as n from fetch_runs")[0]["n"] == 6
    bot.close()


def test_delete_account(settings):
    bot = Mimicbot(settings)
    bot.fetch_blocking([str(sample_path("ada_bytes"))])
    acc = bot.store.get_account("x", "ada_bytes")
    assert bot.store.delete_account(acc["id"]) == 400
    assert bot.accounts() == []
    bot.close()


@pytest.mark.slow  # starts a process
def test_a_write_lock_held_past_the_busy_timeout_is_one_clear_error_and_writes_nothing(settings):
    """Another process (a CLI import, the daemon) holds the write lock longer than the busy timeout: the fetch
    fails with StoreBusy naming the cause, not a `database is locked` traceback, and stores nothing."""
    from bot.errors import StoreBusy

    Store(settings.db_path).close()  # the tables exist
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(3); c.execute('COMMIT')",
         str(settings.db_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        bot = Mimicbot(settings, store=Store(settings.db_path, busy_timeout_ms=300))
        try:
            bot.fetch_blocking([str(sample_path("ada_bytes"))])
        except StoreBusy as e:
            assert "is busy: another process" in str(e) and "0.3 s; nothing was written" in str(e)
        else:
            raise AssertionError("the fetch wrote while another process held the lock")
    finally:
        holder.wait(10)
    assert bot.store.query("select count(*) as n from posts")[0]["n"] == 0
    assert bot.store.query("select count(*) as n from accounts")[0]["n"] == 0
    bot.close()


def test_posts_cleaned_by_the_old_rules_are_cleaned_again_as_the_recipe(settings):
    """Migration m005: a database written before cleaning followed the recipe exactly is re-cleaned on open."""
    from sqlite_utils import Database

    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_path)
    migrations.apply(db, stop_before="m005_reclean_posts_as_the_recipe")
    db["accounts"].insert({"id": 1, "network": "x", "handle": "ada"})
    old = [  # raw text, what the old rules stored, was it short then
        ("Great:https://t.co/x stuff to read", "Great: stuff to read", 0),
        ("fish &amp;amp; chips tonight", "fish & chips tonight", 0),
        ("look HTTP://T.CO/X", "look", 1),
        ("RT @bob: a b c", "", 0),
    ]
    db["posts"].insert_all({"account_id": 1, "post_id": str(i), "raw_text": raw, "clean_text": clean, "is_retweet":
                            int(raw.startswith("RT @")), "is_short": short} for i, (raw, clean, short) in enumerate(old))
    db.close()
    store = Store(settings.db_path)
    rows = store.query("select clean_text, is_short, is_retweet from posts order by post_id")
    assert [(r["clean_text"], r["is_short"]) for r in rows] == [
        ("Great:stuff to read", 0),  # the link went with the space after it
        ("fish &amp; chips tonight", 0),
        ("look HTTP://T.CO/X", 1),  # 'HTTP://T.CO/X' contains http: one plain word
        ("", 0),
    ]
    assert rows[3]["is_retweet"] == 1
    assert not migrations.pending(store.db)
    store.close()
