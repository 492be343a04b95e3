"""The one error path: every failure kind becomes a friendly one-line reply and a log line with context.

`explain(error)` is a pure mapping from an exception (after unwrapping discord.py's wrappers) to what the
person is told and how loudly it is logged. People never see a traceback or a token; unexpected errors get
a short reference that matches the log line, so an admin can find the traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass

import discord
from discord import app_commands
from discord.ext import commands

from ..errors import MimicbotError
from ..redaction import redact
from .formatting import clip, duration, neutralise

log = logging.getLogger("bot.discord")


class ShuttingDown(commands.CheckFailure):
    """The daemon is stopping: no new commands."""


class NotAllowed(commands.CheckFailure):
    """A permission rule of ours (role allowed to train, admin-or-self) said no; the message says which."""


DM_ONLY = "That command only works in a server; in direct messages I can `generate` and `help`."
_CONVERSION = re.compile(r'Converting to "(?P<type>\w+)" failed for parameter "(?P<param>\w+)"')
_KINDS = {"int": "a whole number", "float": "a number", "bool": "yes or no (true/false)"}


@dataclass(frozen=True)
class Explanation:
    reply: str | None  # None: say nothing (unknown prefix command)
    level: int  # logging level of the log line
    reference: str | None = None  # set for unexpected errors: shown to the person and logged


def unwrap(error: BaseException) -> BaseException:
    """The exception that actually happened, under discord.py's invoke/hybrid/conversion wrappers."""
    while True:
        if isinstance(error, (commands.CommandInvokeError, commands.HybridCommandError, commands.ConversionError,
                              app_commands.CommandInvokeError)) and error.original is not None:
            error = error.original
        elif isinstance(error, app_commands.TransformerError) and error.__cause__ is not None:
            error = error.__cause__
        else:
            return error


def explain(error: BaseException) -> Explanation:
    e = unwrap(error)
    info, warn = logging.INFO, logging.WARNING
    match e:
        case MimicbotError():
            return Explanation(clip(neutralise(_line(redact(str(e)))), 1900), info)
        case commands.CommandNotFound() | app_commands.CommandNotFound():
            return Explanation(None, logging.DEBUG)
        case commands.CommandOnCooldown() | app_commands.CommandOnCooldown():
            return Explanation(f"Slow down a little: try again in {duration(max(1.0, e.retry_after))}.", info)
        case commands.MaxConcurrencyReached():
            return Explanation("That command is already running; wait for it to finish.", info)
        case ShuttingDown():
            return Explanation("I'm restarting; try again in a minute.", info)
        case commands.NoPrivateMessage() | app_commands.NoPrivateMessage():
            return Explanation(DM_ONLY, info)
        case commands.NotOwner():
            return Explanation("Only the bot's owner can do that.", info)
        case commands.MissingPermissions() | app_commands.MissingPermissions():
            return Explanation(f"You need the {_perms(e.missing_permissions)} permission to do that.", info)
        case commands.BotMissingPermissions() | app_commands.BotMissingPermissions():
            return Explanation(f"I need the {_perms(e.missing_permissions)} permission here to do that.", warn)
        case commands.CheckFailure() | app_commands.CheckFailure():
            text = neutralise(redact(str(e))) if isinstance(e, NotAllowed) else "You're not allowed to do that here."
            return Explanation(text, info)
        case commands.MissingRequiredArgument():
            return Explanation(f"Missing `{e.param.name}`. See `help` for how to use this command.", info)
        case commands.BadLiteralArgument():
            return Explanation(f"`{e.param.name}` must be one of {', '.join(map(str, e.literals))}.", info)
        case commands.RangeError():
            return Explanation(f"That value must be between {e.minimum} and {e.maximum}.", info)
        case commands.BadArgument() if (m := _CONVERSION.match(str(e))):
            kind = _KINDS.get(m["type"], f"a {m['type']}")
            return Explanation(f"`{m['param']}` must be {kind}. See `help` for how to use this command.", info)
        case commands.BadArgument() | commands.UserInputError():
            return Explanation(clip(neutralise(_line(redact(str(e)))), 300) or "I couldn't read those arguments.", info)
        case app_commands.TransformerError():
            return Explanation(f"I couldn't read {clip(neutralise(redact(str(e.value))), 100)!r}.", info)
        case discord.Forbidden():
            return Explanation("Discord didn't let me do that here (missing permissions?).", warn)
        case discord.HTTPException():
            return Explanation("Discord had a problem with that; try again in a moment.", warn)
        case _:
            ref = secrets.token_hex(3)
            return Explanation(f"Something went wrong on my side (reference `{ref}`); it has been logged.",
                               logging.ERROR, ref)


def _line(text: str) -> str:
    """One line: a reply is never more (an error's text may quote what was typed, line breaks and all)."""
    return " ".join(text.split())


def _perms(names: list[str]) -> str:
    return " and ".join(f"**{n.replace('_', ' ').replace('guild', 'server').title()}**" for n in names)


def context_line(ctx: commands.Context) -> str:
    """Who did what where, for the log: never message content beyond the command name, never a token."""
    where = f"guild={ctx.guild.id} channel={ctx.channel.id}" if ctx.guild else f"dm={ctx.channel.id}"
    how = "slash" if ctx.interaction else "prefix"
    name = ctx.command.qualified_name if ctx.command else (ctx.invoked_with or "?")
    return f"command={name} ({how}) user={ctx.author.id} {where}"
