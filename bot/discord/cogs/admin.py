"""Server settings (`config …`, for admins) and the owner's `sync` of the slash command tree.

Slash commands are synced by hand (`!sync` or `mimicbot discord sync`), never on start: Discord rate-limits
syncing, and an unchanged tree needs none.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import UnknownModel, ValidationError
from .. import checks
from ..context import MimicContext
from ..converters import mentioned_member, model_autocomplete, parse_handle
from ..errors import NotAllowed
from ..formatting import neutralise
from ..guild_config import GuildConfig

SYNC_SCOPES = ("global", "here", "clear-here")
MAX_QUEUE = 50  # the most trainings a server may allow at once


class Admin(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    async def cog_check(self, ctx: MimicContext) -> bool:
        """Every command here is for admins (and the owner), and all but `sync` work only in a server.
        A cog check runs for slash subcommands too, where a group's own checks would not."""
        if ctx.guild is None and ctx.command.name != "sync":
            raise commands.NoPrivateMessage()
        if not await checks.is_admin(ctx):
            raise NotAllowed("Only members with the **Manage Server** permission can change my settings.")
        return True

    @commands.hybrid_group(name="config", fallback="show")
    @commands.guild_only()
    async def config(self, ctx: MimicContext) -> None:
        """This server's settings (admins).

        Example: `!config`"""
        await ctx.send(embed=config_embed(await ctx.guild_config(), ctx))

    @config.command(name="trainer-role")
    @app_commands.describe(role="A role whose members may start trainings", allow="True to allow, False to remove")
    async def trainer_role(self, ctx: MimicContext, role: discord.Role, allow: bool = True) -> None:
        """Let a role's members train models (without it, only Manage Server can).

        Example: `!config trainer-role @Trainers` or `!config trainer-role @Trainers false`"""
        ids = [i for i in (await ctx.guild_config()).train_role_ids if i != role.id]
        config = await ctx.save_setting("train_role_ids", ids + [role.id] if allow else ids)
        await ctx.send(embed=config_embed(config, ctx))

    @config.command(name="default-model")
    @app_commands.describe(model="The model that answers mentions (empty: none)")
    @app_commands.autocomplete(model=model_autocomplete)
    async def default_model(self, ctx: MimicContext, model: str | None = None) -> None:
        """Set (or clear) the model that answers @mentions in enabled channels.

        Example: `!config default-model ada_bytes`"""
        model = await member_model(ctx, model)
        if model is not None:
            await ctx.run(ctx.mimic.model, model)  # UnknownModel for a typo
        config = await ctx.save_setting("default_model", model)
        await ctx.send(embed=config_embed(config, ctx))

    @config.command(name="replies")
    @app_commands.describe(channel="The channel", enabled="Answer @mentions there?",
                           model="The model that answers there (default: the server's default model)")
    @app_commands.autocomplete(model=model_autocomplete)
    async def replies(self, ctx: MimicContext, channel: discord.TextChannel, enabled: bool = True,
                      model: str | None = None) -> None:
        """Turn answers to @mentions on or off in a channel, optionally with its own model.

        Example: `!config replies #general true ada_bytes`"""
        model = await member_model(ctx, model)
        if model is not None:
            await ctx.run(ctx.mimic.model, model)
        channels = dict((await ctx.guild_config()).reply_channels)
        if enabled:
            channels[str(channel.id)] = model
        else:
            channels.pop(str(channel.id), None)
        config = await ctx.save_setting("reply_channels", channels)
        await ctx.send(embed=config_embed(config, ctx))

    @config.command(name="learn")
    @app_commands.describe(channel="A text channel (its threads too)",
                           enabled="Learn there from members who opted in? (default: on)")
    async def learn(self, ctx: MimicContext, channel: discord.TextChannel, enabled: bool = True) -> None:
        """Learn (or stop learning) the voices of members who opted in from a channel and its threads.

        Example: `!config learn #general` or `!config learn #general false`"""
        if enabled and not ctx.options.message_content:
            raise ValidationError("learning needs the Message Content intent (MIMICBOT_DISCORD_MESSAGE_CONTENT=true, "
                                  "and the intent turned on in the Developer Portal)")
        ids = [i for i in (await ctx.guild_config()).learn_channels if i != channel.id]
        config = await ctx.save_setting("learn_channels", sorted(ids + [channel.id]) if enabled else ids)
        learning = self.bot.get_cog("Learning")
        if learning is not None:
            if enabled:
                await learning.channel_enabled(ctx.guild)
            else:
                learning.invalidate(ctx.guild.id)
        await ctx.send(embed=config_embed(config, ctx))

    @config.command(name="link")
    @app_commands.describe(member="The person", handle="Their account's handle")
    async def link(self, ctx: MimicContext, member: discord.Member, handle: str) -> None:
        """Link a member to their account, so that they may `forget` it themselves.

        Example: `!config link @Ada ada_bytes`"""
        links = dict((await ctx.guild_config()).linked_handles)
        links[parse_handle(handle)] = member.id
        config = await ctx.save_setting("linked_handles", links)
        await ctx.send(embed=config_embed(config, ctx))

    @config.command(name="unlink")
    @app_commands.describe(handle="The account's handle")
    async def unlink(self, ctx: MimicContext, handle: str) -> None:
        """Remove a member's link to an account.

        Example: `!config unlink ada_bytes`"""
        links = dict((await ctx.guild_config()).linked_handles)
        if links.pop(parse_handle(handle), None) is None:
            raise ValidationError(f"@{parse_handle(handle)} is not linked to anyone here")
        config = await ctx.save_setting("linked_handles", links)
        await ctx.send(embed=config_embed(config, ctx))

    @config.command(name="max-queue")
    @app_commands.describe(jobs="Trainings this server may have queued or running at once")
    async def max_queue(self, ctx: MimicContext, jobs: commands.Range[int, 1, MAX_QUEUE]) -> None:
        """How many trainings this server may have queued or running at once.

        Example: `!config max-queue 2`"""
        if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= MAX_QUEUE:  # a raw interaction
            raise ValidationError(f"the queue limit must be between 1 and {MAX_QUEUE}")  # is not held to min/max
        config = await ctx.save_setting("max_queued", jobs)
        await ctx.send(embed=config_embed(config, ctx))

    # -- owner ----------------------------------------------------------------------------------

    @commands.command()
    @commands.is_owner()
    async def sync(self, ctx: MimicContext, scope: str = "global") -> None:
        """Sync the slash commands with Discord (owner only).

        `global` (the default) updates every server, which may take up to an hour to show; `here` copies
        them to this server only, at once (for testing); `clear-here` removes this server's copy.

        Example: `!sync` or `!sync here`"""
        if scope not in SYNC_SCOPES:
            raise ValidationError(f"scope must be one of {', '.join(SYNC_SCOPES)}")
        if scope != "global" and ctx.guild is None:
            raise ValidationError("`here` and `clear-here` only work in a server")
        if scope == "here":
            self.bot.tree.copy_global_to(guild=ctx.guild)
        elif scope == "clear-here":
            self.bot.tree.clear_commands(guild=ctx.guild)
        synced = await self.bot.tree.sync(guild=None if scope == "global" else ctx.guild)
        where = "everywhere (may take up to an hour to show)" if scope == "global" else "in this server"
        await ctx.send(f"Synced {len(synced)} slash commands {where}.")


async def member_model(ctx: MimicContext, model: str | None) -> str | None:
    """A model named by its id, or by a member's mention (their model in this server); a model of members of another
    server is not offered here (UnknownModel)."""
    member = mentioned_member(model) if isinstance(model, str) else None
    if member is not None:
        model = await ctx.run(ctx.mimic.member_model_id, ctx.guild.id, member)
    if model is not None:
        servers = await ctx.run(ctx.mimic.model_servers, model)  # UnknownModel for a typo
        if servers and ctx.guild.id not in servers:
            raise UnknownModel(f"no model {model!r} here")
    return model


def config_embed(config: GuildConfig, ctx: MimicContext) -> discord.Embed:
    guild = ctx.guild
    roles = [guild.get_role(i) for i in config.train_role_ids]
    role_text = ", ".join(r.mention for r in roles if r) or "none (members with **Manage Server**)"
    channels = [f"<#{cid}> → {f'`{model}`' if model else 'server default'}"
                for cid, model in config.reply_channels.items()]
    # mentions inside embeds never ping; they only show the name
    links = [f"{neutralise('@' + handle)} → <@{uid}>" for handle, uid in config.linked_handles.items()]
    embed = discord.Embed(title=f"Settings of {neutralise(guild.name)}")
    embed.add_field(name="Roles that may train", value=role_text, inline=False)
    embed.add_field(name="Default model", value=f"`{config.default_model}`" if config.default_model else "none")
    embed.add_field(name="Training queue limit",
                    value=str(config.max_queued or ctx.options.max_queued_per_guild))
    embed.add_field(name="Answers @mentions in", value="\n".join(channels) or "no channel", inline=False)
    embed.add_field(name="Linked accounts", value="\n".join(links) or "none", inline=False)
    learn = [f"<#{cid}>" for cid in config.learn_channels]
    embed.add_field(name="Learns from (members who opted in)", value=", ".join(learn) or "no channel", inline=False)
    return embed


async def setup(bot) -> None:
    await bot.add_cog(Admin(bot))
