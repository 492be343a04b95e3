"""Operations (bot/ops.py, bot/cli/ops.py): logging with rotation and redaction, the daemon's heartbeat and
`mimicbot health`, and `mimicbot db backup` with SQLite's online backup API."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.errors import ValidationError
from bot.ops import (
    BackupError,
    backup_database,
    check_health,
    heartbeat_loop,
    heartbeat_path,
    log_file_for,
    setup_logging,
    write_heartbeat,
)
from bot.store import Store

DISCORD = "discord-token-0123456789abcdef"
HF = "hf_token_ABCDEFGHIJKLMNOP"


@pytest.fixture
def secret_settings(settings):
    return settings.model_copy(update={"discord_token": SecretStr(DISCORD), "hf_token": SecretStr(HF),
                                       "mimicbot_heartbeat_seconds": 10.0})


@pytest.fixture
def cli(settings, monkeypatch):
    """`mimicbot ...` in this process, with the test's data and models folders."""
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    _register()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture(autouse=True)
def restore_logging():
    """Each test's handlers are removed afterwards (setup_logging changes the root logger)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def log_lines(settings) -> list[dict]:
    return [json.loads(line) for line in log_file_for(settings).read_text(encoding="utf-8").splitlines()]


# -- logging ----------------------------------------------------------------------------------------


def test_log_file_has_json_lines_and_never_a_secret(secret_settings, capsys):
    path = setup_logging("INFO", secret_settings)
    assert path == secret_settings.data_dir / "logs" / "mimicbot.log"
    log = logging.getLogger("bot.test")
    log.debug("not at INFO")
    log.info("connecting with %s to %s", DISCORD, "discord")
    try:
        raise RuntimeError(f"refused token {HF}")
    except RuntimeError:
        log.exception("push failed")

    lines = log_lines(secret_settings)
    assert [(entry["level"], entry["logger"], entry["msg"]) for entry in lines] == [
        ("INFO", "bot.test", "connecting with *** to discord"),
        ("ERROR", "bot.test", "push failed"),
    ]
    assert "RuntimeError: refused token ***" in lines[1]["exc"]
    assert lines[0]["pid"] == os.getpid() and lines[0]["ts"].endswith("+00:00")
    console = capsys.readouterr().err
    assert "connecting with *** to discord" in console and "refused token ***" in console
    for text in (console, log_file_for(secret_settings).read_text()):
        assert DISCORD not in text and HF not in text


def test_log_file_rotates(secret_settings):
    settings = secret_settings.model_copy(update={"mimicbot_log_file_mb": 1, "mimicbot_log_backups": 2})
    setup_logging("INFO", settings)
    log = logging.getLogger("bot.test")
    line = "x" * 10_000
    for _ in range(260):  # about 2.6 MB of log: two rotations
        log.info(line)
    path = log_file_for(settings)
    rotated = sorted(p.name for p in path.parent.iterdir())
    assert rotated == ["mimicbot.log", "mimicbot.log.1", "mimicbot.log.2"]
    assert all(p.stat().st_size <= 1024 * 1024 for p in path.parent.iterdir())


def test_the_file_keeps_info_when_the_console_shows_warnings_only(settings, capsys):
    setup_logging("WARNING", settings)
    logging.getLogger("bot.test").info("job 3: succeeded")
    logging.getLogger("bot.test").warning("disk nearly full")
    assert [e["msg"] for e in log_lines(settings)] == ["job 3: succeeded", "disk nearly full"]
    console = capsys.readouterr().err
    assert "disk nearly full" in console and "job 3" not in console


def test_setup_again_replaces_its_handlers_and_refuses_a_bad_level(settings):
    setup_logging("INFO", settings)
    setup_logging("DEBUG", settings)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_mimicbot", False)]
    assert len(ours) == 2 and logging.getLogger().level == logging.DEBUG
    with pytest.raises(ValidationError, match="unknown log level 'LOUD'"):
        setup_logging("LOUD", settings)


def test_an_unwritable_log_folder_leaves_the_console(settings, capsys):
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "logs").write_text("a file where the folder should be")
    assert setup_logging("INFO", settings) is None
    logging.getLogger("bot.test").warning("still heard")
    console = capsys.readouterr().err
    assert "cannot write the log file" in console and "still heard" in console


def test_cli_log_level_option(cli, settings):
    res = cli("--log-level", "loud", "health")
    assert res.exit_code == 2 and "unknown log level 'loud'" in res.output
    Store(settings.db_path).close()
    assert cli("--log-level", "info", "db", "backup", str(settings.data_dir / "b.db")).exit_code == 0
    assert any(e["msg"].startswith("backed up") for e in log_lines(settings))


# -- heartbeat and health ---------------------------------------------------------------------------


def test_health_reports_each_failure_then_passes(cli, settings):
    res = cli("health")
    assert res.exit_code == 1
    assert "FAIL database: no database at" in res.output and "FAIL daemon: no heartbeat" in res.output

    Store(settings.db_path).close()
    write_heartbeat(settings, {"discord": lambda: False, "pool": lambda: True})
    res = cli("health")
    assert res.exit_code == 1
    assert "ok   database" in res.output and "FAIL discord: down" in res.output and "ok   pool: up" in res.output

    write_heartbeat(settings, {"discord": lambda: True, "pool": lambda: True})
    res = cli("health")
    assert res.exit_code == 1 and "FAIL schedules: configured, but the running daemon does not run it" in res.output

    write_heartbeat(settings, {"discord": lambda: True, "pool": lambda: True, "schedules": lambda: True})
    res = cli("health", "--json")
    assert res.exit_code == 0
    report = json.loads(res.output)
    assert report["healthy"] is True
    assert [c["name"] for c in report["checks"]] == ["database", "daemon", "discord", "pool", "schedules"]


def test_a_stale_or_broken_heartbeat_is_unhealthy(settings):
    Store(settings.db_path).close()
    beat = write_heartbeat(settings, {"pool": lambda: True, "schedules": lambda: True})
    limit = 3 * settings.mimicbot_heartbeat_seconds
    fresh = check_health(settings, now=beat["at"] + limit - 1)
    assert all(c.ok for c in fresh)
    stale = check_health(settings, now=beat["at"] + limit + 1)
    assert [c.name for c in stale if not c.ok] == ["daemon"] and "stuck or stopped" in stale[1].detail
    heartbeat_path(settings).write_text("{not json")
    assert "unreadable heartbeat" in check_health(settings)[1].detail


def test_a_probe_that_raises_is_a_failed_part(settings):
    def pool_alive():
        raise RuntimeError("dispatcher crashed")

    Store(settings.db_path).close()
    write_heartbeat(settings, {"pool": pool_alive})
    (pool,) = [c for c in check_health(settings) if c.name == "pool"]
    assert not pool.ok and pool.detail == "RuntimeError: dispatcher crashed"


def test_a_corrupt_database_fails_health(settings):
    settings.data_dir.mkdir(parents=True)
    settings.db_path.write_bytes(b"this is not a database" * 100)
    db = check_health(settings)[0]
    assert db.name == "database" and not db.ok and "not a database" in db.detail


async def test_heartbeat_loop_beats_until_cancelled_then_removes_itself(settings):
    fast = settings.model_copy(update={"mimicbot_heartbeat_seconds": 0.05})
    calls = []
    task = asyncio.create_task(heartbeat_loop(fast, {"discord": lambda: calls.append(1) or True}))
    async with asyncio.timeout(30):
        while len(calls) < 3:  # it beats again and again
            await asyncio.sleep(0.01)
    beat = json.loads(heartbeat_path(fast).read_text())
    assert beat["pid"] == os.getpid() and beat["parts"] == {"discord": {"ok": True, "detail": ""}}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not heartbeat_path(fast).exists()


# -- backup -----------------------------------------------------------------------------------------


def rows(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("select network, handle from accounts order by id").fetchall()
    finally:
        conn.close()


def add_account(store: Store, handle: str) -> None:
    with store.transaction() as db:
        db["accounts"].insert({"network": "x", "handle": handle, "created_at": "now", "updated_at": "now"})


def test_backup_is_a_complete_self_contained_copy_while_a_writer_holds_a_transaction(settings, tmp_path):
    store = Store(settings.db_path)
    add_account(store, "ada")
    writer = sqlite3.connect(settings.db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("insert into accounts (network, handle) values ('x', 'uncommitted')")
    try:
        out = backup_database(settings.db_path, tmp_path / "backup.db")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        store.close()
    assert out == tmp_path / "backup.db"
    assert rows(out) == [("x", "ada")]  # committed data only
    conn = sqlite3.connect(out)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"  # one file, no -wal beside it
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_backup_into_a_folder_and_over_an_older_backup(settings, tmp_path):
    store = Store(settings.db_path)
    add_account(store, "ada")
    folder = tmp_path / "backups"
    folder.mkdir()
    first = backup_database(settings.db_path, folder)
    assert first.parent == folder and first.name.startswith("mimicbot-") and first.suffix == ".db"
    add_account(store, "grace")
    store.close()
    again = backup_database(settings.db_path, first)
    assert again == first and rows(first) == [("x", "ada"), ("x", "grace")]


def test_backup_refuses_bad_paths_and_leaves_nothing(settings, tmp_path):
    with pytest.raises(BackupError, match="no database at"):
        backup_database(settings.db_path, tmp_path / "b.db")
    Store(settings.db_path).close()
    with pytest.raises(BackupError, match="does not exist"):
        backup_database(settings.db_path, tmp_path / "missing" / "b.db")
    with pytest.raises(BackupError, match="the live database itself"):
        backup_database(settings.db_path, settings.db_path)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"garbage" * 1000)
    with pytest.raises(BackupError, match="could not back up"):
        backup_database(broken, tmp_path / "b.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.db", "data"]


def test_cli_backup(cli, settings, tmp_path):
    res = cli("db", "backup", str(tmp_path / "b.db"))
    assert res.exit_code == 2 and "no database at" in res.output
    store = Store(settings.db_path)
    add_account(store, "ada")
    store.close()
    started = time.time()
    res = cli("db", "backup", str(tmp_path / "b.db"))
    assert res.exit_code == 0, res.output
    assert f"to {tmp_path / 'b.db'}" in res.output
    assert rows(tmp_path / "b.db") == [("x", "ada")] and (tmp_path / "b.db").stat().st_mtime >= started - 1


async def test_the_apps_heartbeat_reports_its_live_parts(settings):
    """The heartbeat the app starts (bot/app.py), probing its real training pool and schedule runner."""
    from bot.app import App

    app = App(settings)
    try:
        await app.start()
        async with asyncio.timeout(30):
            while not heartbeat_path(settings).exists():
                await asyncio.sleep(0.01)
        assert [(c.name, c.ok) for c in check_health(settings)] == [("database", True), ("daemon", True),
                                                                     ("pool", True), ("schedules", True)]
        pool = app.pool
        await pool.close()
        write_heartbeat(settings, app.probes)
        assert [c.ok for c in check_health(settings) if c.name == "pool"] == [False]
    finally:
        await app.stop()
        app.close()
    assert not heartbeat_path(settings).exists()
