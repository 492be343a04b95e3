"""Learning a member's voice from the server itself, with their consent: `optin`, `optout`, the live listeners
(new messages, edits, single and bulk deletions) and the background backfill of past messages.

What is read: messages of members who agreed (`/optin`) in the text channels an admin enabled (`/config learn`)
and their threads; never direct messages, never bots or webhooks, never system messages (joins, pins, boosts),
never a command to the bot. Everything else is dropped before it reaches the service, and the service checks the
member's consent again in the transaction that stores a message, so an opt-out is final even for a page of
history that was being read at that moment.

Backfill: per member, per enabled channel, `channel.history()` from the newest message back, 100 a request
(discord.py waits out a 429 itself), at most `MIMICBOT_DISCORD_BACKFILL_LIMIT` of the member's messages per
server and `MIMICBOT_DISCORD_BACKFILL_SCAN_LIMIT` messages read per channel. After each page the member's messages
and the channel's cursor (the oldest message read) are stored together, so a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import UnknownAccount, ValidationError
from ...service import MIN_CHARS, STATS_ROWS, MemberMessage
from .. import guild_config
from ..context import MimicContext
from ..formatting import BOT_COLOUR, neutralise

log = logging.getLogger("bot.discord.learning")

PAGE = 100  # messages a history request returns at most (Discord's limit)
CACHE_S = 30.0  # how long a server's channels and consenting members are kept in memory between reads
LEARNED_TYPES = (discord.MessageType.default, discord.MessageType.reply)  # everything else is a system message
OPTIN_ACTIONS = ("agree", "status", "avatar", "no-avatar")

CONSENT = (
    "**Learn my voice in {server}?**\n"
    "If you agree, I will read and store your messages in this server's learning channels ({channels}) and their "
    "threads — up to {limit:,} of your past messages, and your new ones as you write them (edits replace them, "
    "deletions remove them) — to train a model that writes like you in this server. Only you, or someone with "
    "**Manage Server**, can start that training. Nothing of anyone else is kept. Your messages stay on this bot's "
    "server; your avatar is not shown unless you also agree to that (`optin avatar`).\n"
    "You can stop at any time with `optout`: I stop reading, and delete every message of yours I stored here and "
    "every model trained on them.\n\n"
    "*I agree that my messages in this server's learning channels may be used to train a model of my voice.*"
)
AGREE, DECLINE = "I agree", "No thanks"


class Learning(commands.Cog):
    def __init__(self, bot):
        self.bot = bot
        self.tasks: dict[tuple[int, int], asyncio.Task] = {}  # (guild, member) -> its backfill
        self._cache: dict[int, tuple[float, set[int], set[int]]] = {}  # guild -> (read at, channels, members)
        self._changes: dict[int, int] = {}  # guild -> how many times its state was invalidated
        self._again: set[tuple[int, int]] = set()  # backfills to run over the channel list once more

    async def cog_unload(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()

    # -- what may be read ---------------------------------------------------------------------------

    async def state(self, guild_id: int) -> tuple[set[int], set[int]]:
        """This server's learning channels and consenting members (re-read every CACHE_S seconds and after every
        change made here; the service checks consent again on every write)."""
        cached = self._cache.get(guild_id)
        if cached is None or time.monotonic() - cached[0] > CACHE_S:
            change = self._changes.get(guild_id, 0)
            config, members = await asyncio.gather(
                asyncio.to_thread(guild_config.load, self.bot.mimic, guild_id),
                asyncio.to_thread(self.bot.mimic.consenting_members, guild_id))
            cached = (time.monotonic(), set(config.learn_channels), {m["user_id"] for m in members})
            if self._changes.get(guild_id, 0) == change:  # a read begun before a change must not outlive it
                self._cache[guild_id] = cached
        return cached[1], cached[2]

    def invalidate(self, guild_id: int) -> None:
        self._changes[guild_id] = self._changes.get(guild_id, 0) + 1
        self._cache.pop(guild_id, None)

    def learnable(self, message: discord.Message, channels: set[int]) -> bool:
        """A member's own words in a learning channel (or a thread of one): not a bot's, a webhook's, a system
        message, a DM, or a command to this bot."""
        if message.guild is None or message.author.bot or message.webhook_id is not None:
            return False
        if message.type not in LEARNED_TYPES or not message.content:
            return False
        channel = message.channel
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        if channel_id not in channels:
            return False
        return not message.content.startswith(self.bot.options.prefix)

    # -- live learning --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or message.author.bot or self.bot.closing:
            return
        channels, members = await self.state(message.guild.id)
        if message.author.id not in members or not self.learnable(message, channels):
            return
        await asyncio.to_thread(self.bot.mimic.learn_message, message.guild.id, message.author.id, message.id,
                                message.channel.id, message.content, message.created_at.isoformat())

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edit replaces the stored text (only a message already stored: one of a consenting member's)."""
        content = payload.data.get("content")
        if payload.guild_id is None or content is None:
            return
        _, members = await self.state(payload.guild_id)
        author = int((payload.data.get("author") or {}).get("id") or 0)
        if author and author not in members:
            return
        await asyncio.to_thread(self.bot.mimic.edit_message, payload.message_id, content)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None and (await self.state(payload.guild_id))[1]:
            await asyncio.to_thread(self.bot.mimic.forget_messages, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None and (await self.state(payload.guild_id))[1]:
            await asyncio.to_thread(self.bot.mimic.forget_messages, sorted(payload.message_ids))

    # -- backfill ---------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """After a (re)connection: resume every consenting member's unfinished backfill."""
        rows = await asyncio.to_thread(self.bot.mimic.consenting_members)
        for row in rows:
            guild = self.bot.get_guild(row["guild_id"])
            if guild is not None:
                self.start_backfill(guild, row["user_id"])

    def start_backfill(self, guild: discord.Guild, user_id: int) -> asyncio.Task:
        """Read a member's past messages in every learning channel, in the background (one task a member)."""
        key = (guild.id, user_id)
        task = self.tasks.get(key)
        if task is not None and not task.done():
            self._again.add(key)  # a channel was enabled meanwhile: look at the list once more at the end
            return task
        task = asyncio.create_task(self._backfill(guild, user_id), name=f"mimicbot-backfill-{guild.id}-{user_id}")
        self.tasks[key] = task
        return task

    def stop_backfill(self, guild_id: int, user_id: int) -> asyncio.Task | None:
        task = self.tasks.pop((guild_id, user_id), None)
        if task is not None:
            task.cancel()
        return task

    async def _backfill(self, guild: discord.Guild, user_id: int) -> None:
        me, key = asyncio.current_task(), (guild.id, user_id)
        try:
            while True:
                self._again.discard(key)
                for channel in await self._channels(guild):
                    if not await self._backfill_channel(guild, channel, user_id):
                        return  # the member's limit is reached, or they withdrew
                if key not in self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged; live learning goes on, and the next start resumes
            log.exception("backfill guild=%s member=%s failed", guild.id, user_id)
        finally:
            if self.tasks.get((guild.id, user_id)) is me:
                del self.tasks[(guild.id, user_id)]

    async def _channels(self, guild: discord.Guild) -> list:
        """The learning channels that exist, each followed by its active threads."""
        self.invalidate(guild.id)
        channels, _ = await self.state(guild.id)
        out = []
        for channel_id in sorted(channels):
            channel = guild.get_channel(channel_id)
            if isinstance(channel, discord.TextChannel):
                out += [channel, *sorted(channel.threads, key=lambda t: t.id)]
        return out

    async def _backfill_channel(self, guild: discord.Guild, channel, user_id: int) -> bool:
        """Read one channel back from its cursor, a page at a time; False when the backfill should stop."""
        mimic, options = self.bot.mimic, self.bot.options
        cursor = await asyncio.to_thread(mimic.backfill_cursor, guild.id, user_id, channel.id)
        if cursor is not None and cursor["done"]:
            return True
        progress = await asyncio.to_thread(mimic.member_progress, guild.id, user_id)
        if progress is None:
            return False  # withdrew
        stored, scanned_before = progress["stored"], (cursor or {}).get("scanned") or 0
        if stored >= options.backfill_limit:
            return False
        before = discord.Object(int(cursor["before_id"])) if cursor and cursor["before_id"] else None
        page: list[MemberMessage] = []
        scanned = unsaved = 0
        oldest = before.id if before else None
        channels, _ = await self.state(guild.id)
        try:
            async for message in channel.history(limit=None, before=before):
                scanned += 1
                unsaved += 1
                oldest = message.id
                if message.author.id == user_id and self.learnable(message, channels):
                    page.append(MemberMessage(message.id, channel.id, message.content,
                                              message.created_at.isoformat()))
                full = stored + len(page) >= options.backfill_limit
                at_end = scanned_before + scanned >= options.backfill_scan_limit
                if not (full or at_end or unsaved == PAGE):
                    continue
                # the member's limit leaves the channel unfinished: a higher limit resumes it from here
                stored += await self._save(guild.id, user_id, page, (channel.id, str(oldest), at_end, unsaved))
                page, unsaved = [], 0
                if full:
                    return False
                if at_end:
                    return True
                channels, members = await self.state(guild.id)
                if user_id not in members:
                    return False
                if self._parent_id(channel) not in channels:
                    return True  # disabled meanwhile
        except discord.Forbidden:
            log.warning("backfill guild=%s channel=%s: no permission to read its history (Read Message History)",
                        guild.id, channel.id)
            return True
        await self._save(guild.id, user_id, page, (channel.id, str(oldest) if oldest else None, True, unsaved))
        return True

    @staticmethod
    def _parent_id(channel) -> int:
        return channel.parent_id if isinstance(channel, discord.Thread) else channel.id

    async def _save(self, guild_id: int, user_id: int, page: list[MemberMessage], cursor) -> int:
        return await asyncio.to_thread(self.bot.mimic.learn_messages, guild_id, user_id, page, cursor)

    async def channel_enabled(self, guild: discord.Guild) -> None:
        """A channel was enabled: every consenting member's backfill looks at it."""
        self.invalidate(guild.id)
        for row in await asyncio.to_thread(self.bot.mimic.consenting_members, guild.id):
            self.start_backfill(guild, row["user_id"])

    # -- commands -------------------------------------------------------------------------------------

    @commands.hybrid_command()
    @commands.guild_only()
    @app_commands.describe(action="agree (the default): read the terms and agree; status: what I learned so far; "
                                  "avatar / no-avatar: show your avatar on your model's card, or not")
    @app_commands.choices(action=[app_commands.Choice(name=a, value=a) for a in OPTIN_ACTIONS])
    async def optin(self, ctx: MimicContext, action: str = "agree") -> None:
        """Let me learn your voice from your messages in this server's learning channels (you can stop any time).

        Example: `!optin`, `!optin status`"""
        action = action.strip().lower() if isinstance(action, str) else ""
        if action not in OPTIN_ACTIONS:
            raise ValidationError(f"choose one of {', '.join(OPTIN_ACTIONS)}")
        # the card names a member by their display name here: keep it current (nothing happens for a non-member)
        await ctx.run(ctx.mimic.set_member_name, ctx.guild.id, ctx.author.id, ctx.author.display_name)
        if action == "status":
            await self._status(ctx)
        elif action in ("avatar", "no-avatar"):
            url = ctx.author.display_avatar.url if action == "avatar" else None
            await ctx.run(ctx.mimic.set_member_avatar, ctx.guild.id, ctx.author.id, url)
            await ctx.send("Your avatar will show on the cards of your models trained from now on." if url else
                           "Your avatar will not show on the cards of your models trained from now on.",
                           ephemeral=True)
        else:
            await self._agree(ctx)

    async def _agree(self, ctx: MimicContext) -> None:
        if not self.bot.options.message_content:
            raise ValidationError("learning needs the Message Content intent, which this bot does not ask for "
                                  "(MIMICBOT_DISCORD_MESSAGE_CONTENT=false)")
        channels, _ = await self.state(ctx.guild.id)
        if not channels:
            raise ValidationError("no channel of this server is enabled for learning yet; an admin enables one "
                                  "with `/config learn #channel`")
        already = await ctx.run(ctx.mimic.member, ctx.guild.id, ctx.author.id)
        if already is not None:
            await ctx.send(f"You agreed on {already['consented_at'][:10]}; I am learning. "
                           "`optin status` shows how far, `optout` stops it.", ephemeral=True)
            return
        shown = [f"<#{c}>" for c in sorted(channels)]
        names = ", ".join(shown[:20]) + (f" and {len(shown) - 20} more" if len(shown) > 20 else "")
        text = CONSENT.format(server=neutralise(ctx.guild.name), channels=names, limit=self.bot.options.backfill_limit)
        if not await ctx.confirm(text, timeout=300, yes=AGREE, no=DECLINE):
            await ctx.send("Nothing was stored. You can agree later with `optin`.", ephemeral=True)
            return
        consent = CONSENT.rsplit("\n\n", 1)[1].strip("*")
        await ctx.run(ctx.mimic.opt_in, ctx.guild.id, ctx.author.id, ctx.author.display_name, consent)
        self.invalidate(ctx.guild.id)
        self.start_backfill(ctx.guild, ctx.author.id)
        await ctx.send("Thank you. I am reading your past messages in the learning channels now; `optin status` "
                       f"shows how far I got. Once I have {MIN_CHARS:,} characters of your words, `train` "
                       f"{ctx.author.mention} trains your model.", ephemeral=True)

    async def _status(self, ctx: MimicContext) -> None:
        progress = await ctx.run(ctx.mimic.member_progress, ctx.guild.id, ctx.author.id)
        if progress is None:
            await ctx.send("You have not opted in here: I store nothing of yours. `optin` shows the terms.",
                           ephemeral=True)
            return
        await ctx.send(embed=status_embed(progress, ctx.guild, running=(ctx.guild.id, ctx.author.id) in self.tasks,
                                          limit=self.bot.options.backfill_limit), ephemeral=True)

    @commands.hybrid_command()
    @commands.guild_only()
    async def optout(self, ctx: MimicContext) -> None:
        """Stop learning your voice here, and delete your stored messages and every model trained on them.

        Example: `!optout`"""
        task = self.stop_backfill(ctx.guild.id, ctx.author.id)
        await ctx.defer(ephemeral=True)
        try:
            report = await ctx.run(ctx.mimic.opt_out, ctx.guild.id, ctx.author.id)
        except UnknownAccount:
            await ctx.send("You had not opted in here: nothing of yours is stored.", ephemeral=True)
            return
        finally:
            self.invalidate(ctx.guild.id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        models = len(report["models"])
        await ctx.send(f"Done: I stopped learning your voice here and deleted {report['posts']:,} stored "
                       f"message(s) and {models} model(s) trained on them"
                       + (f", and cancelled {len(report['cancelled_jobs'])} training(s)"
                          if report["cancelled_jobs"] else "") + ".", ephemeral=True)


def status_embed(progress: dict, guild: discord.Guild, running: bool, limit: int) -> discord.Embed:
    stats = progress.get("stats") or {}
    embed = discord.Embed(title=f"Learning your voice in {neutralise(guild.name)}", colour=BOT_COLOUR)
    embed.add_field(name="Agreed", value=progress["consented_at"].replace("T", " ")[:16] + " UTC")
    channels = progress["channels"]
    read = sum(c["scanned"] or 0 for c in channels)
    done = sum(1 for c in channels if c["done"])
    state = "reading" if running else ("done" if channels and done == len(channels) else
                                       f"stopped at the limit of {limit:,} messages" if progress["stored"] >= limit
                                       else "waiting")
    embed.add_field(name="Past messages", value=f"{state}: {done} of {len(channels)} channel(s) read to the start, "
                                                f"{read:,} messages looked at")
    embed.add_field(name="Your messages stored", value=f"{progress['stored']:,}")
    embed.add_field(name="Data", value="\n".join(f"{label}: **{stats.get(key, 0):,}**" for label, key in STATS_ROWS),
                    inline=False)
    needed = progress["chars_needed"]
    embed.add_field(name="Training", value=f"{needed:,} more characters of your words are needed ({MIN_CHARS:,} in "
                    "all)" if needed else "enough to train: `train` with your mention", inline=False)
    return embed


async def setup(bot) -> None:
    await bot.add_cog(Learning(bot))
