"""The daemon's process: `mimicbot run` (the bot, the training pool, the model cache and added services in
one process) and `mimicbot discord sync` (log in over REST, sync the slash command tree, leave).

SIGINT and SIGTERM stop the daemon cleanly (see MimicBotBase.close). A missing, malformed or refused
DISCORD_TOKEN is a ConfigError (exit code 2) that says what to do; the token itself is never printed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal

import aiohttp
import discord

from ..config import Settings
from ..errors import ConfigError, MimicbotError
from ..ops import Heartbeat
from .bot import create_bot
from .options import DiscordOptions

log = logging.getLogger("bot.discord")

# three base64url parts: the bot's id, a timestamp, an HMAC
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}$")
PORTAL = "https://discord.com/developers/applications"


def require_token(settings: Settings) -> str:
    token = (settings.secret("discord_token") or "").strip()
    if not token:
        raise ConfigError("DISCORD_TOKEN is not set: put the bot's token in .env or the environment "
                          "(the README's section 'The Discord bot' shows how to create the bot)")
    if token.lower().startswith("bot "):
        raise ConfigError("DISCORD_TOKEN must be the bare token, without the 'Bot ' prefix")
    if not _TOKEN_SHAPE.match(token):
        raise ConfigError("DISCORD_TOKEN does not look like a bot token (three parts separated by dots): copy it "
                          f"again from {PORTAL} → your application → Bot → Reset Token")
    return token


def _login_error(e: Exception) -> MimicbotError:
    if isinstance(e, discord.LoginFailure):
        return ConfigError(f"Discord refused DISCORD_TOKEN (401 Unauthorized): it was reset or mistyped; get a new "
                           f"one at {PORTAL} → your application → Bot → Reset Token")
    if isinstance(e, discord.PrivilegedIntentsRequired):
        return ConfigError("Discord refused the Message Content intent: enable it at "
                           f"{PORTAL} → your application → Bot → Privileged Gateway Intents, or set "
                           "MIMICBOT_DISCORD_MESSAGE_CONTENT=false to use slash commands and mentions only")
    return MimicbotError(f"could not reach Discord: {type(e).__name__}: {e}")


LOGIN_ERRORS = (discord.LoginFailure, discord.PrivilegedIntentsRequired, aiohttp.ClientConnectionError)


async def serve(settings: Settings, options: DiscordOptions | None = None, *,
                stop: asyncio.Event | None = None) -> None:
    """Run the bot until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly."""
    token = require_token(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    bot = create_bot(settings, options)
    bot.add_service(Heartbeat(settings, {  # read by `mimicbot health` (Docker's healthcheck)
        "discord": lambda: bot.is_ready() and not bot.is_closed(),
        "pool": lambda: bot.pool is not None and bot.pool.alive()}))
    try:
        async with bot:
            runner = asyncio.create_task(bot.start(token), name="mimicbot-discord")
            stopper = asyncio.create_task(stop.wait(), name="mimicbot-stop")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("stop signal received")
                await bot.close()
            else:
                stopper.cancel()
            await runner  # raises what ended the connection, if anything did
    except LOGIN_ERRORS as e:
        raise _login_error(e) from None
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def sync_commands(settings: Settings, options: DiscordOptions | None = None,
                        guild_id: int | None = None) -> list[str]:
    """Sync the slash command tree (globally, or to one server at once); returns the synced names."""
    token = require_token(settings)
    bot = create_bot(settings, options, serve=False)
    async with bot:
        try:
            await bot.login(token)  # REST only; runs setup_hook, which loads the cogs
        except LOGIN_ERRORS as e:
            raise _login_error(e) from None
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
    return [command.name for command in synced]
