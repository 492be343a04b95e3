"""Posting from the daemon: `/schedule add|list|remove|pause|resume|run` and the approval buttons.

The schedules themselves run in the app (bot/app.py, bot/posting/daemon.py), with or without Discord. When this
cog loads it gives the app the running client (so `discord:` targets post through it) and itself as the approval
sink: a schedule that needs a human sends its draft to the approval channel with Approve / Reject buttons. The buttons are a `DynamicItem` whose
custom_id carries the draft's ledger id (`mimicbot:draft:approve:42`), registered on the bot at load, so they
keep working after a restart; only admins (Manage Server) and the bot's owners may press them, and only the
first press of a draft counts (the ledger moves it out of "draft" atomically).
"""

from __future__ import annotations

import asyncio
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import MimicbotError, UnknownOutgoing
from ...redaction import redact
from .. import checks
from ..context import MimicContext
from ..converters import model_autocomplete
from ..formatting import clip, neutralise

log = logging.getLogger(__name__)

APPROVERS = "Only members with the **Manage Server** permission can approve or reject drafts."


class DraftButton(discord.ui.DynamicItem[discord.ui.Button], template=r"mimicbot:draft:(?P<action>approve|reject):(?P<id>\d+)"):
    """Approve or Reject one draft; survives restarts (the id is in the custom_id)."""

    def __init__(self, action: str, entry_id: int):
        style = discord.ButtonStyle.success if action == "approve" else discord.ButtonStyle.danger
        super().__init__(discord.ui.Button(label=action.title(), style=style,
                                           custom_id=f"mimicbot:draft:{action}:{entry_id}"))
        self.action = action
        self.entry_id = entry_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match):
        return cls(match["action"], int(match["id"]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        user = interaction.user
        if await interaction.client.is_owner(user) or (
                isinstance(user, discord.Member) and user.guild_permissions.manage_guild):
            return True
        await interaction.response.send_message(APPROVERS, ephemeral=True)
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        mimic = interaction.client.mimic
        who = f"discord:{interaction.user.id}"
        try:
            if self.action == "approve":
                outcome = await mimic.approve_draft(self.entry_id, who, discord_client=interaction.client)
            else:
                outcome = await asyncio.to_thread(mimic.reject_draft, self.entry_id, who)
        except UnknownOutgoing as e:
            await interaction.followup.send(redact(str(e)), ephemeral=True)
            return
        except MimicbotError as e:
            await interaction.followup.send(f"Could not do that: {redact(str(e))}", ephemeral=True)
            return
        if interaction.message is not None:  # the draft itself, edited by the bot that sent it
            await interaction.message.edit(content=decided_text(outcome, interaction.user), view=None,
                                           allowed_mentions=discord.AllowedMentions.none())


def draft_view(entry_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(DraftButton("approve", entry_id))
    view.add_item(DraftButton("reject", entry_id))
    return view


def draft_text(entry: dict) -> str:
    schedule = f" (schedule {entry['schedule_id']})" if entry.get("schedule_id") else ""
    return clip(neutralise(f"**Draft** for `{entry['target']}` from `{entry['model_id']}`{schedule}:\n"
                           f">>> {entry['text']}"), 2000)


def decided_text(outcome, user: discord.abc.User) -> str:
    verdicts = {"sent": f"✅ Approved by {user.display_name} and posted (id {outcome.remote_id}).",
                "rejected": f"❌ Not posted: {outcome.error}.",
                "failed": f"⚠️ Approved, but sending failed: {outcome.error}.",
                "unknown": f"⚠️ Approved; whether it was posted is unknown: {outcome.error}."}
    verdict = verdicts.get(outcome.status, outcome.status)
    return clip(neutralise(f"{verdict}\n>>> {outcome.text or ''}"), 2000)  # the name and the error too


class Scheduler(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(DraftButton)
        self.bot.app.attach_discord(self.bot, approvals=self)

    async def cog_unload(self) -> None:
        self.bot.app.detach_discord()
        self.bot.remove_dynamic_items(DraftButton)

    # -- the approval sink ---------------------------------------------------------------------------

    async def request(self, entry: dict, channel_id: int) -> int:
        """Post a draft with its buttons in `channel_id`; returns the message id."""
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        message = await channel.send(draft_text(entry), view=draft_view(entry["id"]),
                                     allowed_mentions=discord.AllowedMentions.none())
        return message.id

    # -- commands ----------------------------------------------------------------------------------

    @commands.hybrid_group(fallback="list")
    @commands.guild_only()
    @checks.admin_only()
    async def schedule(self, ctx: MimicContext) -> None:
        """The schedules: when each model posts where.

        Example: `!schedule` or `/schedule list`"""
        rows = await ctx.run(ctx.mimic.list_schedules)
        if not rows:
            await ctx.send("No schedules yet. Add one with `/schedule add`.")
            return
        lines = [schedule_line(r) for r in rows]
        await ctx.send(clip("\n".join(lines), 2000))

    @schedule.command(name="add")
    @checks.admin_only()
    @app_commands.describe(model="The model that writes the posts", when="A cron line ('0 9 * * mon-fri') or an "
                           "interval ('90m', '2h')", to="'here' (this channel), a channel id, or 'x'",
                           approval="Drafts wait for Approve in this channel", timezone="IANA zone for a cron line",
                           prompt="How each post starts (default: none, the model writes the whole post)")
    @app_commands.autocomplete(model=model_autocomplete)
    async def schedule_add(self, ctx: MimicContext, model: str, when: str, to: str = "here",
                           approval: bool = False, timezone: str | None = None, prompt: str | None = None) -> None:
        """Add a schedule.

        Example: `/schedule add ada_bytes "0 9 * * *" x` or `!schedule add ada_bytes 2h here`"""
        target = target_name(to, ctx.channel.id)
        cron, every = (when, None) if len(when.split()) == 5 else (None, when)
        row = await ctx.run(ctx.mimic.add_schedule, model, target, cron=cron, every=every, timezone=timezone,
                            require_approval=approval, approval_channel_id=ctx.channel.id if approval else None,
                            prompt=prompt)
        await ctx.send(f"Added {schedule_line(row)}")

    @schedule.command(name="remove")
    @checks.admin_only()
    async def schedule_remove(self, ctx: MimicContext, schedule_id: int) -> None:
        """Delete a schedule. Example: `/schedule remove 3`"""
        row = await ctx.run(ctx.mimic.remove_schedule, schedule_id)
        await ctx.send(f"Removed schedule {row['id']}.")

    @schedule.command(name="pause")
    @checks.admin_only()
    async def schedule_pause(self, ctx: MimicContext, schedule_id: int) -> None:
        """Pause a schedule. Example: `/schedule pause 3`"""
        row = await ctx.run(ctx.mimic.pause_schedule, schedule_id)
        await ctx.send(f"Paused schedule {row['id']}.")

    @schedule.command(name="resume")
    @checks.admin_only()
    async def schedule_resume(self, ctx: MimicContext, schedule_id: int) -> None:
        """Resume a schedule; missed times are not made up. Example: `/schedule resume 3`"""
        row = await ctx.run(ctx.mimic.resume_schedule, schedule_id)
        await ctx.send(f"Resumed schedule {row['id']}.")

    @schedule.command(name="run")
    @checks.admin_only()
    async def schedule_run(self, ctx: MimicContext, schedule_id: int) -> None:
        """Fire a schedule once, now. Example: `/schedule run 3`"""
        await ctx.run(ctx.mimic.run_schedule_now, schedule_id)
        if self.bot.app.posting is not None:  # the app serves: look at the request now, not at the next poll
            await self.bot.app.posting.runner.sync()
        await ctx.send(f"Running schedule {schedule_id} now.")


def target_name(to: str, here: int) -> str:
    """'here' → this channel; '<#123>' or '123' → that channel; anything else as written ('x')."""
    value = to.strip()
    if value.lower() == "here":
        return f"discord:{here}"
    if m := re.fullmatch(r"<#(\d+)>|(\d+)", value):
        return f"discord:{m.group(1) or m.group(2)}"
    return value


def schedule_line(row: dict) -> str:
    state = "paused" if row["paused"] else "active"
    approval = ", needs approval" if row["require_approval"] else ""
    last = f", last: {row['last_status']}" if row.get("last_status") else ""
    opener = f", opens with “{row['prompt']}”" if row.get("prompt") else ""
    missing = [] if row["target"].startswith("discord:") else row.get("missing_credentials")  # this bot posts those
    keys = f"; posts nothing until {', '.join(missing)} are set" if missing else ""
    return neutralise(f"`{row['id']}` {row['model_id']} → {row['target']}, {row['when']}{opener}{approval} "
                      f"({state}{last}{keys})")


async def setup(bot) -> None:
    await bot.add_cog(Scheduler(bot))
