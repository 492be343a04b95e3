"""Permission rules shared by the cogs. Each check raises NotAllowed with a message that says what is needed."""

from __future__ import annotations

import discord
from discord.ext import commands

from .errors import NotAllowed


async def is_admin(ctx: commands.Context) -> bool:
    """The bot's owner, or a member with the Manage Server permission in this server."""
    if await ctx.bot.is_owner(ctx.author):
        return True
    return isinstance(ctx.author, discord.Member) and ctx.author.guild_permissions.manage_guild


def admin_only():
    """Only admins (Manage Server) and the bot's owner."""

    async def predicate(ctx: commands.Context) -> bool:
        if await is_admin(ctx):
            return True
        raise NotAllowed("Only members with the **Manage Server** permission can do that.")

    return commands.check(predicate)


def can_train():
    """Admins, or members with one of the server's trainer roles (`/config trainer-role`)."""

    async def predicate(ctx: commands.Context) -> bool:
        if ctx.guild is None:  # checked here too: discord.py does not keep the order of checks
            raise commands.NoPrivateMessage()
        if await is_admin(ctx):
            return True
        config = await ctx.guild_config()
        allowed = set(config.train_role_ids)
        if allowed and any(r.id in allowed for r in getattr(ctx.author, "roles", [])):
            return True
        if await ctx.run(ctx.mimic.member, ctx.guild.id, ctx.author.id) is not None:
            ctx.own_voice_only = True  # a member who opted in may train their own voice, and only theirs
            return True
        roles = [ctx.guild.get_role(i) for i in config.train_role_ids]
        names = ", ".join(f"**{discord.utils.escape_markdown(r.name)}**" for r in roles if r)
        needed = f"one of these roles: {names}, or " if names else ""
        raise NotAllowed(f"Training a model needs {needed}the **Manage Server** permission.")

    return commands.check(predicate)


async def is_admin_or_linked(ctx: commands.Context, handle: str) -> bool:
    """For actions on one account: admins, or the member the server linked to that handle."""
    if await is_admin(ctx):
        return True
    config = await ctx.guild_config()
    return config.linked_handles.get(handle) == ctx.author.id
