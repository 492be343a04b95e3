"""Training progress in Discord: one status message a job, edited as the job goes, then a result message.

The message's channel and id are stored on the job row, so a watcher can pick it up again after the
15-minute interaction limit and after a restart: while the interaction that made the message is alive
the message is edited through it; after that, or after a restart, through the bot's own token by id.
Edits happen at most every `DiscordOptions.progress_interval` seconds; the end is shown at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import discord

from ..errors import MimicbotError
from ..service import PROGRESS_KEYS, TERMINAL
from .formatting import FAIL_COLOUR, OK_COLOUR, clip, model_embed, neutralise, status_embed

log = logging.getLogger("bot.discord.progress")


class EditThrottle:
    """True at most once per `interval` seconds; counting starts when the message is sent."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last = clock()

    def ready(self) -> bool:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False


class StatusMessage:
    """Where a job's progress shows. `live` is the message object the command got back (edited through the
    interaction's webhook while it lasts); without it, or once it expires, the message is found by id."""

    def __init__(self, bot: discord.Client, channel_id: int, message_id: int, *, live=None,
                 interaction: discord.Interaction | None = None):
        self.bot = bot
        self.channel_id = channel_id
        self.message_id = message_id
        self.live = live
        self.interaction = interaction

    def _interaction_alive(self) -> bool:
        return self.interaction is not None and not self.interaction.is_expired()

    async def channel(self) -> discord.abc.Messageable:
        return self.bot.get_channel(self.channel_id) or await self.bot.fetch_channel(self.channel_id)

    async def edit(self, **fields) -> None:
        if self.live is not None and (self.interaction is None or self._interaction_alive()):
            try:
                await self.live.edit(**fields)
                return
            except (discord.NotFound, discord.Forbidden) as e:  # expired token, deleted message
                log.debug("status message %s: live edit failed (%s); finding it by id", self.message_id, e)
            except discord.HTTPException as e:
                if e.status != 401:
                    raise
        channel = await self.channel()
        try:
            message = await channel.fetch_message(self.message_id)
        except discord.NotFound:  # deleted: show progress in a new message from now on
            message = await channel.send(**fields)
            self.message_id = message.id
            self.live, self.interaction = message, None
            return
        self.live, self.interaction = message, None
        await message.edit(**fields)

    async def send(self, **fields) -> discord.Message:
        """A new message beside the status message (the result)."""
        if self._interaction_alive():
            return await self.interaction.followup.send(wait=True, **fields)
        return await (await self.channel()).send(**fields)


class ProgressWatcher:
    """Follows one job's events and keeps its status message current; announces the result."""

    def __init__(self, bot, job: dict, status: StatusMessage, clock: Callable[[], float] = time.monotonic):
        self.bot = bot
        self.job = dict(job)
        self.status = status
        self.throttle = EditThrottle(bot.options.progress_interval, clock)

    async def run(self) -> None:
        async for event in self.bot.mimic.follow(self.job["id"]):
            if event["type"] == "state":
                if await self._state(event):
                    break
            else:  # progress, or a phase change
                self.job.update({k: v for k, v in event.items() if k in PROGRESS_KEYS and v is not None})
                if self.throttle.ready():
                    await self._show()

    async def _show(self) -> None:
        shown_in = self.status.message_id
        try:
            await self.status.edit(embed=status_embed(self.job))
        except discord.HTTPException as e:  # a failed edit must not end the watch
            log.warning("job %s: could not edit its status message: %s", self.job["id"], e)
            return
        if self.status.message_id != shown_in:  # the message was deleted and replaced: remember the new one
            await asyncio.to_thread(self.bot.mimic.set_status_message, self.job["id"], self.status.channel_id,
                                    self.status.message_id)

    async def _state(self, event: dict) -> bool:
        """Apply a state event; True when it ends the job (after the end is announced)."""
        previous = self.job.get("state")
        self.job.update(state=event["state"], error=event.get("error"), result=event.get("result"))
        if event["state"] not in TERMINAL:
            if event["state"] != previous:
                await self._show()
                self.throttle.last = self.throttle.clock()
            return False
        await self._show()
        try:
            await self._announce()
        except discord.HTTPException as e:
            log.warning("job %s: could not announce its end: %s", self.job["id"], e)
        return True

    async def _announce(self) -> None:
        state = self.job["state"]
        if state == "succeeded":
            embed, file = await completion_message(self.bot, self.job)
            await self.status.send(embed=embed, **({"file": file} if file else {}))
        elif state == "failed":
            reason = neutralise(self.job.get("error") or "unknown error")
            embed = discord.Embed(title=f"Training {neutralise(self.job['model_id'])} failed",
                                  description=clip(reason, 2000), colour=FAIL_COLOUR)
            await self.status.send(embed=embed)


async def completion_message(bot, job: dict) -> tuple[discord.Embed, discord.File | None]:
    """The announcement of a trained model: its card's summary (data table, held-out perplexity, predictions
    picture) and a few of the sample posts its training drew (training.json): the daemon loads nothing."""
    try:
        model = await asyncio.to_thread(bot.mimic.model, job["model_id"])
    except MimicbotError:  # removed meanwhile: what the job recorded
        model = {"id": job["model_id"], "training": job.get("result") or {}}
    embed, file = model_embed(model, title_prefix="✅ ", colour=OK_COLOUR,
                              description=f"Model `{neutralise(job['model_id'])}` is ready (job #{job['id']}).")
    samples = [t for t in ((model.get("training") or {}).get("generation") or {}).get("samples", []) if t]
    samples = samples[:bot.options.completion_samples]
    if samples:
        embed.add_field(name="Sample posts", value=clip("\n".join(f"> {neutralise(t)}" for t in samples), 1024),
                        inline=False)
    embed.set_footer(text=f"/generate model:{job['model_id']}")
    return embed, file


__all__ = ["EditThrottle", "ProgressWatcher", "StatusMessage", "completion_message"]
