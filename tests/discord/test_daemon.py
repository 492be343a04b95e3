"""The daemon's process: `mimicbot run` against a fake Discord on 127.0.0.1 (real HTTP and websocket), its
clean stop on SIGTERM/SIGINT, the token errors (exit code 2), and `mimicbot discord sync`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import discord.http
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.config import Settings
from bot.discord.runner import serve, sync_commands
from bot.ops import log_file_for
from bot.errors import ConfigError

from .fake_discord import BOT_ID, TOKEN, FakeDiscord

MESSAGE_CONTENT, MEMBERS = 1 << 15, 1 << 1  # gateway intent bits


@pytest.fixture
def cli(settings, monkeypatch):
    _register()
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    env = {"MIMICBOT_DATA_DIR": str(settings.data_dir), "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
    return lambda *args, **extra: CliRunner().invoke(app, list(args), env={**env, **extra})


@pytest.mark.parametrize("command", [("run",), ("discord", "sync")])
def test_a_missing_token_is_a_clear_error(cli, command):
    result = cli(*command)
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
        await serve(with_token(settings, wrong))
    assert wrong not in str(e.value)


async def test_sync_puts_every_slash_command_once(settings, fake_discord):
    names = await sync_commands(with_token(settings, TOKEN))
    body = fake_discord.commands[f"/api/v10/applications/{BOT_ID}/commands"]
    assert sorted(names) == sorted(c["name"] for c in body)
    commands = {c["name"]: c for c in body}
    assert set(commands) >= {"train", "generate", "models", "model", "jobs", "status", "cancel", "forget", "config",
                             "help"}
    assert "sync" not in commands  # the owner's prefix command only
    model = next(o for o in commands["generate"]["options"] if o["name"] == "model")
    assert model["required"] is True and model["autocomplete"] is True
    assert [o["name"] for o in commands["train"]["options"]] == ["handles", "epochs", "base_model"]
    dms = {name for name, c in commands.items() if c["dm_permission"]}
    assert {"generate", "help"} <= dms and not dms & {"train", "models", "model", "forget", "config", "cancel"}
    subcommands = {o["name"] for o in commands["config"]["options"]}
    assert subcommands == {"show", "trainer-role", "default-model", "replies", "link", "unlink", "max-queue"}
    await sync_commands(with_token(settings, TOKEN), guild_id=42)
    assert f"/api/v10/applications/{BOT_ID}/guilds/42/commands" in fake_discord.commands


async def test_the_daemon_connects_and_stops_cleanly_on_sigterm(settings, fake_discord):
    """`mimicbot run` as its own process: it logs in, connects to the gateway, and SIGTERM stops it with
    exit code 0: the pool and the database closed."""
    code = ("import sys, discord.http; discord.http.Route.BASE = sys.argv[1]; "
            "from bot.cli import main; sys.argv = ['mimicbot', 'run']; main()")
    env = {**os.environ, "DISCORD_TOKEN": TOKEN, "MIMICBOT_DATA_DIR": str(settings.data_dir),
           "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, fake_discord.api, env=env,
                                                cwd=settings.data_dir.parent, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(fake_discord.connected.wait(), 60)
        log_file = log_file_for(settings)
        await wait_for_text(log_file, "connected as mimicbot")
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
    assert "stopped" in out.decode()
    assert not (settings.data_dir / "mimicbot.db-wal").exists()  # the database was closed


async def test_ctrl_c_stops_the_daemon_cleanly(settings, fake_discord, caplog):
    """SIGINT (Ctrl-C), here in this process: `serve` handles it as SIGTERM, without a KeyboardInterrupt."""
    caplog.set_level(logging.INFO, logger="bot.discord")
    daemon = asyncio.create_task(serve(with_token(settings, TOKEN)))
    await asyncio.wait_for(fake_discord.connected.wait(), 60)
    await asyncio.wait_for(until_logged(caplog, "connected as mimicbot"), 60)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(daemon, 60)  # returns: no KeyboardInterrupt, no error
    messages = [r.getMessage() for r in caplog.records if r.name == "bot.discord"]
    assert messages[-3:] == ["stop signal received",
                             "shutting down: no new commands; stopping watchers, services and the training pool",
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
