"""The Discord bot: one Bot subclass, a face of the daemon's app (bot/app.py), that loads one cog a feature in
`setup_hook` and turns every failure into one friendly reply (RoboDanny's shape).

The bot owns nothing of the core: the app built the service, the training pool, the schedules and the
heartbeat, and starts and stops them; the bot reaches them through `bot.app` (`bot.mimic` is the app's
service, `bot.pool` the app's pool while it serves). Cogs that need the core at its start register
`app.before_serving` hooks (the training cog follows unfinished jobs again before the pool serves, so that
not even a job that ends at once goes unannounced) and the scheduler cog gives the app the running client and
itself as the approval sink (`app.attach_discord`).

Shutdown (`close`, on SIGINT/SIGTERM): new commands are refused, cogs are unloaded (progress watchers stop),
the connection closes; then the app stops its parts (bot/app.py).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from ..config import Settings
from ..redaction import redact
from .context import MimicContext
from .errors import ShuttingDown, context_line, explain, unwrap
from .options import DiscordOptions

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("bot.discord")

EXTENSIONS = (
    "bot.discord.cogs.meta",  # help
    "bot.discord.cogs.admin",  # config, sync
    "bot.discord.cogs.models",  # models, model, forget
    "bot.discord.cogs.generation",  # generate
    "bot.discord.cogs.training",  # train, jobs, cancel, progress messages
    "bot.discord.cogs.replies",  # answers to @mentions
    "bot.discord.cogs.learning",  # optin, optout, learning members' messages (with their consent)
)
OPTIONAL_EXTENSIONS = ("bot.discord.cogs.scheduler",)  # loaded when the module exists
DM_COMMANDS = ("generate", "help")  # the commands that work in direct messages


class DiscordBotBase:
    """Everything the bot does, independent of sharding (see DiscordBot and SingleDiscordBot below)."""

    def __init__(self, settings: Settings, options: DiscordOptions | None = None, *, app: App,
                 extensions: tuple[str, ...] | None = None, intents: discord.Intents | None = None,
                 **kwargs) -> None:
        options = options or DiscordOptions()
        super().__init__(
            command_prefix=options.prefix,
            intents=intents or default_intents(options),
            allowed_mentions=discord.AllowedMentions.none(),  # nothing the bot sends can ping
            help_command=None,  # a hybrid `help` lives in cogs/meta.py
            case_insensitive=True,
            owner_ids=_owner_ids(settings),
            chunk_guilds_at_startup=False,
            **kwargs,
        )
        self.settings = settings
        self.options = options
        self.app = app
        self.mimic = app.service
        self.initial_extensions = extensions if extensions is not None else _available(EXTENSIONS,
                                                                                    OPTIONAL_EXTENSIONS)
        self.closing = False
        self.tree.on_error = self.on_app_command_error

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def pool(self):
        """The app's training pool while the app serves, else None."""
        return self.app.pool

    async def setup_hook(self) -> None:
        for extension in self.initial_extensions:
            await self.load_extension(extension)

    async def close(self) -> None:
        if self.closing:
            return await super().close()
        self.closing = True
        log.info("Discord: no new commands; stopping watchers and the connection")
        await super().close()  # unloads the cogs, closes the connection

    # -- commands -------------------------------------------------------------------------------

    async def get_context(self, origin, /, *, cls=MimicContext):
        return await super().get_context(origin, cls=cls)

    async def bot_check(self, ctx: commands.Context) -> bool:
        """Every command: none while shutting down; in DMs only DM_COMMANDS (each command is also marked
        guild-only for Discord, which then hides it in DMs; this is the rule for prefix commands)."""
        if self.closing:
            raise ShuttingDown()
        if ctx.guild is None and (ctx.command.root_parent or ctx.command).name not in DM_COMMANDS:
            raise commands.NoPrivateMessage()
        return True

    async def on_command_error(self, ctx: MimicContext, error: commands.CommandError) -> None:
        """The one error path: a friendly line to the person, a line with context to the log."""
        explanation = explain(error)
        if explanation.reply is None:
            return
        ref = f" [ref {explanation.reference}]" if explanation.reference else ""
        exc_info = error if explanation.level >= logging.ERROR else None
        log.log(explanation.level, "%s failed%s: %s", context_line(ctx), ref, _one_line(error), exc_info=exc_info)
        try:
            await ctx.reply(explanation.reply, ephemeral=True)
        except discord.HTTPException as e:
            log.warning("%s: could not send the error reply: %s", context_line(ctx), e)

    async def on_app_command_error(self, interaction: discord.Interaction,
                                   error: app_commands.AppCommandError) -> None:
        """Errors of pure app commands and autocomplete (hybrid commands go through on_command_error)."""
        explanation = explain(error)
        where = f"interaction={interaction.command.qualified_name if interaction.command else '?'} " \
                f"user={interaction.user.id} guild={interaction.guild_id}"
        log.log(explanation.level, "%s failed: %s", where, _one_line(error),
                exc_info=error if explanation.level >= logging.ERROR else None)
        if explanation.reply and interaction.type is discord.InteractionType.application_command:
            try:
                if interaction.response.is_done():
                    await interaction.followup.send(explanation.reply, ephemeral=True)
                else:
                    await interaction.response.send_message(explanation.reply, ephemeral=True)
            except discord.HTTPException as e:
                log.warning("%s: could not send the error reply: %s", where, e)

    async def on_error(self, event_method: str, /, *args, **kwargs) -> None:
        log.exception("error in event %s", event_method)

    async def on_ready(self) -> None:
        log.info("connected as %s (id %s) to %d servers", self.user, self.user.id, len(self.guilds))


class DiscordBot(DiscordBotBase, commands.AutoShardedBot):
    """The daemon's bot: shards chosen by Discord."""


class SingleDiscordBot(DiscordBotBase, commands.Bot):
    """The same bot on one connection (dpytest drives only unsharded clients)."""


def create_bot(settings: Settings, options: DiscordOptions | None = None, *, sharded: bool = True,
               **kwargs) -> DiscordBotBase:
    return (DiscordBot if sharded else SingleDiscordBot)(settings, options, **kwargs)


def default_intents(options: DiscordOptions) -> discord.Intents:
    """Guilds and messages, no privileged intent but Message Content (for prefix commands, if wanted).
    Members are not needed: commands and interactions carry their member."""
    intents = discord.Intents.default()
    intents.message_content = options.message_content
    return intents


def _owner_ids(settings: Settings) -> set[int]:
    return {int(part) for part in settings.discord_owner_ids.replace(" ", "").split(",") if part.isdigit()}


def _available(required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[str, ...]:
    return required + tuple(name for name in optional if importlib.util.find_spec(name) is not None)


def _one_line(error: BaseException) -> str:
    e = unwrap(error)
    return f"{type(e).__name__}: {' '.join(redact(str(e)).split())}"[:500]


__all__ = ["EXTENSIONS", "DiscordBot", "DiscordBotBase", "SingleDiscordBot", "create_bot"]
