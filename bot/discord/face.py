"""Discord as a face of the daemon (bot/app.py): `DiscordFace` logs the bot in and connects it to the gateway
beside the core, and `sync_commands` (`mimicbot discord sync`) logs in over REST, syncs the slash command tree
and leaves.

A missing, malformed or refused DISCORD_TOKEN is a ConfigError (exit code 2) that says what to do, raised
before the core starts; the token itself is never printed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import aiohttp
import discord

from ..config import Settings
from ..errors import ConfigError, MimicbotError
from .bot import DiscordBotBase, create_bot
from .options import DiscordOptions, load_options

if TYPE_CHECKING:
    from ..app import App

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


def use_api_base(settings: Settings) -> None:
    """DISCORD_API_BASE (a proxy, or a local test server) instead of discord.com for this process's clients."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base.rstrip("/")


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


class DiscordFace:
    """The Discord bot as one face of the app: `attach` logs in over REST (a refused token fails here, before
    the core serves) and loads the cogs; `start` connects to the gateway (discord.py reconnects by itself);
    `close` unloads the cogs and disconnects. Its heartbeat part is "discord": connected and not closed."""

    name = "discord"

    def __init__(self, settings: Settings, options: DiscordOptions | None = None):
        self.token = require_token(settings)
        self.options = options or load_options()
        use_api_base(settings)
        self.bot: DiscordBotBase | None = None
        self._connection: asyncio.Task | None = None

    async def attach(self, app: App) -> None:
        self.bot = create_bot(app.settings, self.options, app=app)
        try:
            await self.bot.login(self.token)  # runs setup_hook: the cogs load and register their hooks
        except LOGIN_ERRORS as e:
            await self.bot.close()
            raise _login_error(e) from None
        app.add_probe("discord", lambda: self.bot.is_ready() and not self.bot.is_closed())

    async def start(self) -> None:
        self._connection = asyncio.create_task(self._connect(), name="mimicbot-discord")

    async def _connect(self) -> None:
        try:
            await self.bot.connect()
        except LOGIN_ERRORS as e:
            raise _login_error(e) from None

    @property
    def finished(self) -> asyncio.Future | None:
        return self._connection

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._connection is not None and not self._connection.done():
            self._connection.cancel()
            await asyncio.gather(self._connection, return_exceptions=True)


async def sync_commands(settings: Settings, options: DiscordOptions | None = None,
                        guild_id: int | None = None) -> list[str]:
    """Sync the slash command tree (globally, or to one server at once); returns the synced names."""
    from ..app import App

    token = require_token(settings)
    use_api_base(settings)
    app = App(settings)  # built, never started: the cogs need the service's nouns, not its parts
    try:
        bot = create_bot(settings, options, app=app)
        async with bot:
            try:
                await bot.login(token)  # REST only; runs setup_hook, which loads the cogs
            except LOGIN_ERRORS as e:
                raise _login_error(e) from None
            guild = discord.Object(id=guild_id) if guild_id else None
            if guild is not None:
                bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
    finally:
        app.close()
    return [command.name for command in synced]
