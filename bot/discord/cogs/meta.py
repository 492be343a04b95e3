"""`help`: every command with what it does and an example, or one command in full."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import ValidationError
from ..context import MimicContext
from ..formatting import BOT_COLOUR, clip

SECTIONS = (("Models", ("generate", "models", "model")),
            ("Training", ("train", "jobs", "status", "cancel")),
            ("Your voice (with your consent)", ("optin", "optout")),
            ("Data and settings", ("forget", "config", "sync", "help")))


class Meta(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @commands.hybrid_command(name="help")
    @app_commands.describe(command="A command to explain in full")
    async def help_command(self, ctx: MimicContext, command: str | None = None) -> None:
        """How to use me: every command, or one in full. Works in DMs too.

        Example: `!help` or `!help train`"""
        if command is None:
            await ctx.send(embed=overview(self.bot, ctx.options.prefix))
            return
        found = self.bot.get_command(command.strip().lstrip("/!"))
        if found is None or found.hidden:
            shown = command if len(command) <= 40 else command[:39] + "…"
            raise ValidationError(f"no command {shown!r}; `help` lists them")
        await ctx.send(embed=details(found, ctx.options.prefix))


def overview(bot: commands.Bot, prefix: str) -> discord.Embed:
    embed = discord.Embed(title="mimicbot", colour=BOT_COLOUR, description=(
        "I learn to write like a person from their posts, then write new ones in that voice. "
        f"Every command works as `/name` and as `{prefix}name`; in DMs only `generate` and `help` do."))
    listed: set[str] = set()
    for title, names in (*SECTIONS, ("More", tuple(sorted(c.name for c in bot.commands)))):
        lines = []
        for name in names:
            cmd = bot.get_command(name)
            if cmd is not None and not cmd.hidden and cmd.name not in listed:
                listed.add(cmd.name)
                lines.append(usage(cmd, prefix) + f" — {cmd.short_doc}")
        if lines:
            embed.add_field(name=title, value=clip("\n".join(lines), 1024), inline=False)
    embed.set_footer(text=f"{prefix}help <command> for details and an example · @mention me in an enabled "
                          "channel and I answer in the server's model's voice")
    return embed


def usage(cmd: commands.Command, prefix: str) -> str:
    return f"`{prefix}{cmd.qualified_name} {cmd.signature}`".replace(" `", "`")


def details(cmd: commands.Command, prefix: str) -> discord.Embed:
    embed = discord.Embed(title=f"{prefix}{cmd.qualified_name} {cmd.signature}".strip(), colour=BOT_COLOUR,
                          description=clip(cmd.help or cmd.short_doc or "", 4000))
    if isinstance(cmd, commands.Group):
        embed.add_field(name="Subcommands", inline=False, value=clip("\n".join(
            usage(sub, prefix) + f" — {sub.short_doc}" for sub in cmd.commands), 1024))
    if cmd.aliases:
        embed.set_footer(text="Also: " + ", ".join(prefix + a for a in cmd.aliases))
    return embed


async def setup(bot) -> None:
    await bot.add_cog(Meta(bot))
