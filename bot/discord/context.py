"""The bot's Context: discord.py's, plus what every cog needs (the service, the options, server settings)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from discord.ext import commands

from . import guild_config
from .guild_config import GuildConfig
from .views import Confirm

if TYPE_CHECKING:
    from ..service import Mimicbot
    from .bot import DiscordBotBase
    from .options import DiscordOptions

T = TypeVar("T")


class MimicContext(commands.Context):
    bot: DiscordBotBase

    @property
    def mimic(self) -> Mimicbot:
        return self.bot.mimic

    @property
    def options(self) -> DiscordOptions:
        return self.bot.options

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking service work (SQLite, files, models) off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def guild_config(self) -> GuildConfig:
        """This server's settings (defaults in DMs), read once per command."""
        cached = getattr(self, "_guild_config", None)
        if cached is None:
            cached = GuildConfig() if self.guild is None else await self.run(guild_config.load, self.mimic,
                                                                               self.guild.id)
            self._guild_config = cached
        return cached

    async def save_setting(self, key: str, value) -> GuildConfig:
        """Store one setting of this server and return the settings as they now are."""
        await self.run(guild_config.save, self.mimic, self.guild.id, key, value)
        self._guild_config = None
        return await self.guild_config()

    async def confirm(self, question: str, timeout: float = 60, yes: str | None = None, no: str | None = None) -> bool:
        """Ask the person a yes/no question with buttons; False when they say no or do not answer."""
        view = Confirm(self.author.id, timeout=timeout, yes=yes, no=no)
        view.message = await self.send(question, view=view)
        await view.wait()
        return bool(view.value)

    @property
    def requested_by(self) -> str:
        """How the job table names who asked: `discord:<user id>`."""
        return f"discord:{self.author.id}"
