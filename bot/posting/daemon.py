"""What the daemon runs for schedules: the schedule runner and the fire of one schedule (post now, or draft
for approval). The app (bot/app.py) owns one; the Discord face, when attached, sets `discord_client` (Discord
targets go through the running client) and `approvals` (the sink that shows drafts with Approve / Reject
buttons). Without them, Discord targets go over REST and schedules that need approval fail with the reason.
Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .poster import ApprovalSink, PostOutcome
from .schedule_runner import ScheduleRunner
from .targets import build_target

if TYPE_CHECKING:
    from ..service import Mimicbot

log = logging.getLogger(__name__)


class PostingDaemon:
    def __init__(self, service: Mimicbot, *, discord_client=None, approvals: ApprovalSink | None = None):
        self.service = service
        self.settings = service.settings
        self.discord_client = discord_client
        self.approvals = approvals
        self.runner = ScheduleRunner(service.schedules, self.fire,
                                     grace_seconds=self.settings.mimicbot_schedule_grace_seconds,
                                     poll_seconds=self.settings.mimicbot_schedule_poll_seconds,
                                     on_poll=self.surface_interrupted)

    def surface_interrupted(self) -> list[dict]:
        """Sends left "sending" longer than any send takes (a crash, here or in a CLI) → "unknown", logged.
        Run at start and at every schedules poll; never retried (see bot/posting/ledger.py)."""
        entries = self.service.poster.ledger.mark_interrupted()
        for entry in entries:
            log.warning("outgoing post %s to %s was interrupted while sending; marked unknown (not retried): %r",
                        entry["id"], entry["target"], entry["text"])
        return entries

    async def start(self) -> None:
        await asyncio.to_thread(self.surface_interrupted)
        await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()

    def alive(self) -> bool:
        """The runner serves schedules (for the heartbeat)."""
        return self.runner.alive()

    async def fire(self, schedule: dict, fire_key: str) -> PostOutcome:
        """One fire of a schedule: a post, or a draft in the approval channel when the schedule needs a human."""
        target = build_target(schedule["target"], self.settings, discord_client=self.discord_client)
        poster = self.service.poster
        if schedule["require_approval"]:
            channel = schedule["approval_channel_id"] or self.settings.mimicbot_approval_channel_id
            if self.approvals is None or not channel:
                why = "no approval channel is set" if self.approvals is not None else \
                    "approval drafts need the Discord bot (DISCORD_TOKEN), which is not running"
                return PostOutcome("failed", target.name, error=why)
            outcome = await poster.draft(schedule["model_id"], target, self.approvals, channel,
                                         fire_key=fire_key, schedule_id=schedule["id"], prompt=schedule.get("prompt") or "")
        else:
            outcome = await poster.post(schedule["model_id"], target, fire_key=fire_key, schedule_id=schedule["id"],
                                        prompt=schedule.get("prompt") or "")
        log.info("schedule %s fired (%s): %s %s", schedule["id"], fire_key, outcome.status, outcome.error or "")
        return outcome
