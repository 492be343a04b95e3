"""The daemon's process: `mimicbot run` against a fake Discord on 127.0.0.1 (real HTTP and websocket), its
clean stop on SIGTERM/SIGINT, the token errors (exit code 2), and `mimicbot discord sync`."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from pathlib import Path

import discord.http
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.config import Settings
from bot.app import run_daemon
from bot.discord.face import sync_commands
from bot.ops import check_health, heartbeat_path, log_file_for, write_heartbeat
from bot.store import Store
from bot.errors import ConfigError

from .fake_discord import BOT_ID, TOKEN, FakeDiscord

MESSAGE_CONTENT, MEMBERS = 1 << 15, 1 << 1  # gateway intent bits


@pytest.fixture
def cli(settings, monkeypatch):
    _register()
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    env = {"MIMICBOT_DATA_DIR": str(settings.data_dir), "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
    return lambda *args, **extra: CliRunner().invoke(app, list(args), env={**env, **extra})


def test_sync_without_a_token_is_a_clear_error(cli):
    """`discord sync` needs the token; `run` does not (it runs the daemon without Discord: tests/test_daemon.py)."""
    result = cli("discord", "sync")
    assert result.exit_code == 2
    assert "DISCORD_TOKEN is not set" in result.output


def test_a_malformed_token_is_refused_without_showing_it(cli):
    secret = "my-secret-value-that-is-not-a-token"
    result = cli("run", DISCORD_TOKEN=secret)
    assert result.exit_code == 2
    assert "does not look like a bot token" in result.output and secret not in result.output
    result = cli("run", DISCORD_TOKEN="Bot " + TOKEN)
    assert result.exit_code == 2 and "without the 'Bot ' prefix" in result.output and TOKEN not in result.output


def test_start_runs_the_daemon_when_a_token_is_set(cli):
    """`make run` is `mimicbot start`: with a token it is `mimicbot run` (here refusing a malformed token)."""
    result = cli("start", DISCORD_TOKEN="not-a-token")
    assert result.exit_code == 2 and "does not look like a bot token" in result.output


@pytest.fixture
async def fake_discord(monkeypatch):
    async with FakeDiscord() as fake:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api)
        yield fake


def with_token(settings: Settings, token: str) -> Settings:
    return settings.model_copy(update={"discord_token": SecretStr(token)})


async def test_a_refused_token_is_a_clear_error(settings, fake_discord):
    wrong = TOKEN[:-4] + "AAAA"
    with pytest.raises(ConfigError, match=r"Discord refused DISCORD_TOKEN \(401 Unauthorized\)") as e:
        await run_daemon(with_token(settings, wrong))
    assert wrong not in str(e.value)


async def test_sync_puts_every_slash_command_once(settings, fake_discord):
    names = await sync_commands(with_token(settings, TOKEN))
    body = fake_discord.commands[f"/api/v10/applications/{BOT_ID}/commands"]
    assert sorted(names) == sorted(c["name"] for c in body)
    commands = {c["name"]: c for c in body}
    assert set(commands) >= {"train", "generate", "models", "model", "jobs", "status", "cancel", "forget", "config",
                             "help", "optin", "optout"}
    action = next(o for o in commands["optin"]["options"] if o["name"] == "action")
    assert [c["value"] for c in action["choices"]] == ["agree", "status", "avatar", "no-avatar"]
    assert "sync" not in commands  # the owner's prefix command only
    model = next(o for o in commands["generate"]["options"] if o["name"] == "model")
    assert model["required"] is True and model["autocomplete"] is True
    assert [o["name"] for o in commands["train"]["options"]] == ["handles", "epochs", "base_model", "lora", "qlora"]
    dms = {name for name, c in commands.items() if c["dm_permission"]}
    assert {"generate", "help"} <= dms and not dms & {"train", "models", "model", "forget", "config", "cancel",
                                                      "optin", "optout"}
    subcommands = {o["name"] for o in commands["config"]["options"]}
    assert subcommands == {"show", "trainer-role", "default-model", "replies", "link", "unlink", "max-queue", "learn"}
    await sync_commands(with_token(settings, TOKEN), guild_id=42)
    assert f"/api/v10/applications/{BOT_ID}/guilds/42/commands" in fake_discord.commands


async def test_the_daemon_connects_and_stops_cleanly_on_sigterm(settings, fake_discord):
    """`mimicbot run` with DISCORD_TOKEN, the installed console script as its own process: it prints that the
    Discord bot is on, logs in, connects to the gateway, reports Discord in its heartbeat, and SIGTERM stops it
    with exit code 0: the pool and the database closed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIMICBOT_", "TWITTER_"))}
    env.update(DISCORD_TOKEN=TOKEN, DISCORD_API_BASE=fake_discord.api, MIMICBOT_DATA_DIR=str(settings.data_dir),
               MIMICBOT_MODELS_DIR=str(settings.models_dir), MIMICBOT_HEARTBEAT_SECONDS="1")
    mimicbot = Path(sys.executable).with_name("mimicbot")
    proc = await asyncio.create_subprocess_exec(str(mimicbot), "run", env=env, cwd=settings.data_dir.parent,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(fake_discord.connected.wait(), 60)
        log_file = log_file_for(settings)
        await wait_for_text(log_file, "connected as mimicbot")
        await wait_for_text(heartbeat_path(settings), '"discord": {"ok": true')
        health = await asyncio.create_subprocess_exec(str(mimicbot), "health", env=env, cwd=settings.data_dir.parent,
                                                      stdout=asyncio.subprocess.PIPE)
        healthy, _ = await health.communicate()
        assert health.returncode == 0 and "ok   discord" in healthy.decode()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    (identify,) = fake_discord.identified
    assert identify["token"] == TOKEN and identify["shard"] == [0, 1]  # the sharded bot, one shard here
    assert identify["intents"] & MESSAGE_CONTENT and not identify["intents"] & MEMBERS
    log = log_file.read_text()
    assert "stop signal received" in log and "shut down cleanly" in log
    assert TOKEN not in log and TOKEN not in out.decode() + err.decode()  # never logged
    assert re.search(r"^  Discord bot +on +DISCORD_TOKEN is set$", out.decode(), re.MULTILINE)
    assert "stopped" in out.decode()
    assert not (settings.data_dir / "mimicbot.db-wal").exists()  # the database was closed


def test_health_fails_when_discord_is_configured_but_not_running(settings):
    """A heartbeat without Discord is healthy only while Discord is not configured."""
    write_heartbeat(settings, {"pool": lambda: True, "schedules": lambda: True})
    Store(settings.db_path).close()
    assert all(c.ok for c in check_health(settings))
    failing = [c for c in check_health(with_token(settings, TOKEN)) if not c.ok]
    assert [c.name for c in failing] == ["discord"] and "does not run it" in failing[0].detail


async def test_ctrl_c_stops_the_daemon_cleanly(settings, fake_discord, caplog):
    """SIGINT (Ctrl-C), here in this process: `serve` handles it as SIGTERM, without a KeyboardInterrupt."""
    caplog.set_level(logging.INFO, logger="bot")
    daemon = asyncio.create_task(run_daemon(with_token(settings, TOKEN)))
    await asyncio.wait_for(fake_discord.connected.wait(), 60)
    await asyncio.wait_for(until_logged(caplog, "connected as mimicbot"), 60)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(daemon, 60)  # returns: no KeyboardInterrupt, no error
    messages = [r.getMessage() for r in caplog.records if r.name in ("bot.app", "bot.discord")]
    assert messages[-4:] == ["stop signal received",
                             "shutting down: no new commands; stopping watchers, services and the training pool",
                             "Discord: no new commands; stopping watchers and the connection",
                             "shut down cleanly"]
    assert not (settings.data_dir / "mimicbot.db-wal").exists()


async def until_logged(caplog, text: str) -> None:
    while not any(text in r.getMessage() for r in caplog.records):
        await asyncio.sleep(0.05)


async def wait_for_text(path, text: str, timeout: float = 60) -> None:
    async def poll():
        while not (path.exists() and text in path.read_text()):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)
