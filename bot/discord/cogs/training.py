"""Training: `train`, `jobs`, `status`, `cancel`, and the watchers that keep status messages current."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import MimicbotError, UnknownJob, ValidationError
from ...service import ACTIVE, CANCELLED
from .. import checks
from ..context import MimicContext
from ..converters import parse_handles
from ..errors import NotAllowed
from ..formatting import job_line, neutralise, status_embed
from ..progress import ProgressWatcher, StatusMessage

log = logging.getLogger("bot.discord.training")


def _train_cooldown(ctx: commands.Context) -> app_commands.Cooldown:
    return app_commands.Cooldown(ctx.bot.options.train_rate, ctx.bot.options.train_per)


class Training(commands.Cog):
    def __init__(self, bot):
        self.bot = bot
        self.watchers: dict[int, asyncio.Task] = {}

    async def cog_load(self) -> None:
        self.bot.app.before_serving.append(self.resume)
        if self.bot.app.serving:  # loaded into a running daemon: follow what runs now
            await self.resume()

    async def cog_unload(self) -> None:
        self.bot.app.before_serving.remove(self.resume)
        tasks = list(self.watchers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.watchers.clear()

    # -- watchers -------------------------------------------------------------------------------

    def watch(self, job: dict, status: StatusMessage) -> asyncio.Task:
        """Follow a job until it ends (or the pool closes); one watcher a job."""
        old = self.watchers.pop(job["id"], None)
        if old is not None:
            old.cancel()
        watcher = ProgressWatcher(self.bot, job, status)
        task = asyncio.create_task(self._run_watcher(watcher), name=f"mimicbot-watch-job-{job['id']}")
        self.watchers[job["id"]] = task
        return task

    async def _run_watcher(self, watcher: ProgressWatcher) -> None:
        job_id = watcher.job["id"]
        try:
            await watcher.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged; the job itself is unaffected
            log.exception("job %s: progress watcher failed", job_id)
        finally:
            if self.watchers.get(job_id) is asyncio.current_task():
                del self.watchers[job_id]

    async def resume(self) -> None:
        """At a (re)start of the app, before the pool serves: follow every queued or running job that has a status
        message. Watchers read the job's row, so even a job that ends at once is announced."""
        rows = await asyncio.to_thread(self.bot.mimic.jobs, ACTIVE, 500)
        resumed = [job for job in rows if job.get("status_message_id") and job.get("status_channel_id")]
        for job in resumed:
            self.watch(job, StatusMessage(self.bot, job["status_channel_id"], job["status_message_id"]))
        await asyncio.sleep(0)
        if resumed:
            log.info("resumed progress messages of jobs %s", [job["id"] for job in resumed])

    # -- commands -------------------------------------------------------------------------------

    @commands.hybrid_command()
    @commands.guild_only()
    @checks.can_train()
    @commands.dynamic_cooldown(_train_cooldown, commands.BucketType.user)
    @app_commands.describe(handles="One to three accounts, separated by spaces or commas (three make a cyborg)",
                           epochs="Passes over the posts (default 4, the recipe's)",
                           base_model="The model to fine-tune (default: the bot's)",
                           lora="Train a small LoRA adapter over the base instead of the whole model",
                           qlora="LoRA over the base loaded 4-bit (QLoRA): the bot's machine needs a CUDA GPU")
    async def train(self, ctx: MimicContext, handles: str, epochs: commands.Range[int, 1, 20] = None,
                    base_model: str = None, lora: bool = None, qlora: bool = None) -> None:  # not Optional[...]: a bad epochs is an error
        """Train a model on one to three accounts' posts; progress shows in a message that keeps updating.

        Example: `!train ada_bytes`, `!train ada_bytes,grace_gardens 2` or `!train ada_bytes 4 tiny True`"""
        await ctx.defer()  # a slash command must be answered within 3 s; this says "thinking…"
        try:
            specs = parse_handles(handles, ctx.guild.id)
            await self._check_members(ctx, specs)
            base = self._base_model(base_model)
            await self._check_queue(ctx)
            request = await ctx.mimic.build_request(specs, epochs=epochs, base_model=base, lora=(lora or qlora) or None,
                                                    qlora=qlora or None, max_steps=ctx.options.train_max_steps)
            job = await ctx.run(ctx.mimic.submit, request, requested_by=ctx.requested_by, guild_id=ctx.guild.id,
                                status_channel_id=ctx.channel.id)
        except (MimicbotError, NotAllowed):
            ctx.command.reset_cooldown(ctx)  # a refused request does not cost the person their turn
            raise
        message = await ctx.send(embed=status_embed(job))
        await ctx.run(ctx.mimic.set_status_message, job["id"], message.channel.id, message.id)
        self.watch(job, StatusMessage(self.bot, message.channel.id, message.id, live=message,
                                      interaction=ctx.interaction))

    async def _check_members(self, ctx: MimicContext, specs: list[str]) -> None:
        """A member's voice (a mention, or the handle of a member's account) is trained by that member, or by someone
        with Manage Server, and only in its own server; a member who may train only because they opted in
        (checks.can_train) may name only themselves."""
        own = f"discord:{ctx.guild.id}/{ctx.author.id}"
        admin = await checks.is_admin(ctx)
        for spec in specs:
            if spec.startswith("discord:"):
                owner = spec
            else:
                member = await ctx.run(ctx.mimic.member_by_handle, spec.lstrip("@")) if spec.startswith("@") else None
                if member is None:
                    owner = None
                elif member["guild_id"] != ctx.guild.id:
                    raise ValidationError(f"{neutralise(spec)} is a member of another server; their voice is "
                                          "trained only there")
                else:
                    owner = f"discord:{member['guild_id']}/{member['user_id']}"
            if owner is not None and owner != own and not admin:
                raise NotAllowed("Only the member themself, or someone with the **Manage Server** permission, can "
                                 "train a member's voice.")
            if owner != own and getattr(ctx, "own_voice_only", False):
                raise NotAllowed("You may train your own voice (mention yourself); training other accounts needs "
                                 "the **Manage Server** permission or a trainer role.")

    def _base_model(self, name: str | None) -> str | None:
        if name is None:
            return None
        allowed = self._base_models()
        if name not in allowed:
            raise ValidationError(f"base model {name!r} is not offered here; choose one of {', '.join(allowed)}")
        return name

    def _base_models(self) -> list[str]:
        """The bot's default base model, then the others the options offer."""
        return list(dict.fromkeys([self.bot.settings.mimicbot_base_model, *self.bot.options.base_model_list]))

    @train.autocomplete("base_model")
    async def _base_model_autocomplete(self, interaction: discord.Interaction, current: str):
        return [app_commands.Choice(name=m, value=m) for m in self._base_models() if current in m][:25]

    async def _check_queue(self, ctx: MimicContext) -> None:
        config = await ctx.guild_config()
        cap = config.max_queued or ctx.options.max_queued_per_guild
        active = await ctx.run(ctx.mimic.jobs, ACTIVE, cap, ctx.guild.id)
        if len(active) >= cap:
            raise ValidationError(f"this server already has {len(active)} training job(s) queued or running "
                                  f"(the limit is {cap}); wait for one to finish or cancel one")

    @commands.hybrid_command(aliases=["queue"])
    @commands.guild_only()
    async def jobs(self, ctx: MimicContext) -> None:
        """This server's latest training jobs.

        Example: `!jobs`"""
        rows = await ctx.run(ctx.mimic.jobs, None, 10, ctx.guild.id)
        if not rows:
            await ctx.send("No training jobs in this server yet. Start one with `/train`.")
            return
        embed = discord.Embed(title="Training jobs", description="\n".join(job_line(j) for j in rows))
        await ctx.send(embed=embed)

    @commands.hybrid_command()
    @commands.guild_only()
    @app_commands.describe(job="The job's number (see /jobs)")
    async def status(self, ctx: MimicContext, job: int) -> None:
        """One training job's state and progress.

        Example: `!status 12`"""
        row = await self._job_of_this_server(ctx, job)
        await ctx.send(embed=status_embed(row))

    @commands.hybrid_command()
    @commands.guild_only()
    @app_commands.describe(job="The job's number (see /jobs)")
    async def cancel(self, ctx: MimicContext, job: int) -> None:
        """Cancel a queued or running training (yours, or any if you manage the server).

        Example: `!cancel 12`"""
        row = await self._job_of_this_server(ctx, job)
        if row["requested_by"] != ctx.requested_by and not await checks.is_admin(ctx):
            raise NotAllowed("Only the person who started that training, or an admin, can cancel it.")
        row = await ctx.mimic.acancel(job)
        if row["state"] == CANCELLED:
            await ctx.send(f"🚫 Cancelled job #{job} ({neutralise(row['model_id'])}).")
        else:
            await ctx.send(f"Asked job #{job} to stop; it stops within a few seconds.")

    async def _job_of_this_server(self, ctx: MimicContext, job_id: int) -> dict:
        row = await ctx.run(ctx.mimic.job, job_id)
        if row.get("guild_id") != ctx.guild.id and not await self.bot.is_owner(ctx.author):
            raise UnknownJob(f"no training job with id {job_id} in this server")
        return row


async def setup(bot) -> None:
    await bot.add_cog(Training(bot))
