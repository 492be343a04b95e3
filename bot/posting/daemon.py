"""What the daemon runs for posting: the schedule runner, the X reply loop (when MIMICBOT_REPLY_MODEL is set),
and the fire of one schedule (post now, or draft for approval). The Discord cog owns one of these; it passes
the running client (Discord targets) and itself as the approval sink. Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .ledger import Ledger
from .poster import ApprovalSink, PostOutcome
from .replies import ReplyConfig, ReplyLoop
from .runner import ScheduleRunner
from .targets import build_target

if TYPE_CHECKING:
    from ..service import Mimicbot

log = logging.getLogger(__name__)


class PostingDaemon:
    def __init__(self, service: Mimicbot, *, discord_client=None, approvals: ApprovalSink | None = None,
                 reply_loop: ReplyLoop | None = None):
        self.service = service
        self.settings = service.settings
        self.discord_client = discord_client
        self.approvals = approvals
        self.runner = ScheduleRunner(service.schedules, self.fire,
                                     grace_seconds=self.settings.mimicbot_schedule_grace_seconds,
                                     poll_seconds=self.settings.mimicbot_schedule_poll_seconds,
                                     on_poll=self.surface_interrupted)
        config = ReplyConfig.from_settings(self.settings)
        self.replies = reply_loop or (ReplyLoop(service.store, self.settings, service.poster, config)
                                      if config else None)
        self._reply_task: asyncio.Task | None = None

    def surface_interrupted(self) -> list[dict]:
        """Sends left "sending" longer than any send takes (a crash, here or in a CLI) → "unknown", logged.
        Run at start and at every schedules poll; never retried (see bot/posting/ledger.py)."""
        entries = Ledger(self.service.store).mark_interrupted()
        for entry in entries:
            log.warning("outgoing post %s to %s was interrupted while sending; marked unknown (not retried): %r",
                        entry["id"], entry["target"], entry["text"])
        return entries

    async def start(self) -> None:
        self.surface_interrupted()
        await self.runner.start()
        if self.replies is not None:
            self._reply_task = asyncio.create_task(self.replies.run(), name="x-replies")

    async def stop(self) -> None:
        if self._reply_task is not None:
            self._reply_task.cancel()
            await asyncio.gather(self._reply_task, return_exceptions=True)
            self._reply_task = None
        await self.runner.stop()

    async def fire(self, schedule: dict, fire_key: str) -> PostOutcome:
        """One fire of a schedule: a post, or a draft in the approval channel when the schedule needs a human."""
        target = build_target(schedule["target"], self.settings, discord_client=self.discord_client)
        poster = self.service.poster
        if schedule["require_approval"]:
            channel = schedule["approval_channel_id"] or self.settings.mimicbot_approval_channel_id
            if self.approvals is None or not channel:
                return PostOutcome("failed", target.name, error="approval needs the Discord daemon and a channel")
            outcome = await poster.draft(schedule["model_id"], target, self.approvals, channel,
                                         fire_key=fire_key, schedule_id=schedule["id"])
        else:
            outcome = await poster.post(schedule["model_id"], target, fire_key=fire_key, schedule_id=schedule["id"])
        log.info("schedule %s fired (%s): %s %s", schedule["id"], fire_key, outcome.status, outcome.error or "")
        return outcome
