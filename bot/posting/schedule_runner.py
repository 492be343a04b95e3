"""The daemon's side of schedules: the SQLite rows served by an apscheduler 3.x `AsyncIOScheduler`.

How the scheduler is set, and why:

- **Job store in memory, SQLite the source of truth.** Jobs are rebuilt from the `schedules` table at start and
  whenever the schedules version changes (polled every MIMICBOT_SCHEDULE_POLL_SECONDS; the CLI and `/schedule`
  bump it in the same transaction as their edit), so the daemon picks up edits without a restart and there is
  one truth to back up.
- **misfire_grace_time = MIMICBOT_SCHEDULE_GRACE_SECONDS (default 300 s).** A post a few minutes late (a restart,
  a busy event loop, a slow generation) is still wanted; one hours late is not: a missed fire older than the
  grace is dropped, never posted late.
- **coalesce = True.** However many fire times were missed, at most one post is made for them.
- **max_instances = 1.** A schedule whose previous fire is still generating or sending does not start a second
  one (a manual run-now waits for the same per-schedule lock).
- **No backlog and no repeat across restarts.** Each fire first claims its scheduled time in the schedule's row
  (`last_fire_at`, only forwards), and the post carries a unique fire key in the ledger. At start, a job's
  first run time is the trigger's next fire time after max(now - grace, last_fire_at): a fire missed while the
  daemon was down runs once if it is within the grace, and one already claimed never runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .schedules import Schedules, fire_window_start, trigger_for

log = logging.getLogger(__name__)

Fire = Callable[[dict, str], Awaitable[object]]  # (schedule row, fire key) → outcome


def job_id(schedule_id: int) -> str:
    return f"schedule:{schedule_id}"


def latest_fire_time(trigger, now: datetime, grace: timedelta) -> datetime | None:
    """The trigger's latest fire time within (now - grace, now]: the run apscheduler just started (it runs only
    the latest of several due times, as coalesce is on)."""
    latest = None
    t = trigger.get_next_fire_time(None, now - grace)
    while t is not None and t <= now:
        latest = t
        t = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
    return latest


class ScheduleRunner:
    def __init__(self, schedules: Schedules, fire: Fire, *, grace_seconds: int, poll_seconds: float,
                 on_poll: Callable[[], object] | None = None):
        self.schedules = schedules
        self.fire = fire
        self.grace = timedelta(seconds=grace_seconds)
        self.poll_seconds = poll_seconds
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "misfire_grace_time": grace_seconds, "coalesce": True, "max_instances": 1})
        self._revs: dict[int, int] = {}
        self._version: int | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._inflight: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None
        self.on_poll = on_poll  # extra housekeeping run at every poll (the daemon surfaces interrupted sends)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self.scheduler.start()
        await self.sync()
        self._poller = asyncio.create_task(self._poll(), name="schedule-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.settle()

    def alive(self) -> bool:
        return self.scheduler.running and self._poller is not None and not self._poller.done()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.sync()
                if self.on_poll is not None:
                    await asyncio.to_thread(self.on_poll)
            except Exception:  # a locked database or a bad row must not kill the poller
                log.exception("could not reload schedules")

    # -- reconciling with the database --------------------------------------------------------------

    async def sync(self, force: bool = False) -> bool:
        """Reload the schedules if their version changed; start requested manual runs. True if reloaded.
        The database is read in a thread (a CLI writer holding it must not stall the event loop)."""
        version, rows = await asyncio.to_thread(lambda: (self.schedules.version(), self.schedules.list()))
        reloaded = force or version != self._version
        if reloaded:
            self._version = version
            self._reconcile(rows)
        for row in rows:
            if row["run_requested_at"] and await asyncio.to_thread(self.schedules.claim_run_request, row["id"],
                                                                   row["run_requested_at"]):
                self._spawn(self._run_manual(row["id"], row["run_requested_at"]))
        return reloaded

    def _reconcile(self, schedules: list[dict]) -> None:
        rows = {r["id"]: r for r in schedules}
        for schedule_id in list(self._revs):
            row = rows.get(schedule_id)
            if row is None or row["paused"]:
                self._revs.pop(schedule_id)
                if self.scheduler.get_job(job_id(schedule_id)):
                    self.scheduler.remove_job(job_id(schedule_id))
        now = datetime.now(UTC)
        for schedule_id, row in rows.items():
            if row["paused"] or self._revs.get(schedule_id) == row["rev"]:
                continue
            try:
                trigger = trigger_for(row)
            except Exception as e:
                log.error("schedule %s cannot be served: %s", schedule_id, e)
                continue
            first = trigger.get_next_fire_time(None, fire_window_start(now, self.grace, row["last_fire_at"]))
            self.scheduler.add_job(self._run, trigger, args=[schedule_id], id=job_id(schedule_id),
                                   name=f"schedule {schedule_id}", replace_existing=True, next_run_time=first)
            self._revs[schedule_id] = row["rev"]
            log.info("schedule %s (%s → %s) next at %s", schedule_id, row["model_id"], row["target"], first)

    def next_run_time(self, schedule_id: int) -> datetime | None:
        job = self.scheduler.get_job(job_id(schedule_id))
        return job.next_run_time if job else None

    # -- firing -------------------------------------------------------------------------------------

    async def _run(self, schedule_id: int) -> None:
        """apscheduler's job: claim the fire time, then post (one at a time per schedule)."""
        self._track()
        job = self.scheduler.get_job(job_id(schedule_id))
        now = datetime.now(UTC)
        trigger = job.trigger if job else trigger_for(await asyncio.to_thread(self.schedules.get, schedule_id))
        fire_time = latest_fire_time(trigger, now, self.grace) or now.replace(microsecond=0)
        async with self._lock(schedule_id):
            if not await asyncio.to_thread(self.schedules.claim_fire, schedule_id, fire_time):
                log.info("schedule %s: the fire at %s was handled already", schedule_id, fire_time)
                return
            key = f"schedule:{schedule_id}:{fire_time.astimezone(UTC).isoformat()}"
            await self._fire(schedule_id, key)

    async def _run_manual(self, schedule_id: int, requested_at: str) -> None:
        async with self._lock(schedule_id):
            await self._fire(schedule_id, f"schedule:{schedule_id}:manual:{requested_at}")

    async def _fire(self, schedule_id: int, key: str) -> None:
        try:
            row = await asyncio.to_thread(self.schedules.get, schedule_id)
            outcome = await self.fire(row, key)
        except Exception as e:
            log.exception("schedule %s failed", schedule_id)
            result = ("error", f"{type(e).__name__}: {e}")
        else:
            result = (getattr(outcome, "status", "done"), getattr(outcome, "error", None))
        await asyncio.to_thread(self.schedules.record_result, schedule_id, *result)

    def _lock(self, schedule_id: int) -> asyncio.Lock:
        return self._locks.setdefault(schedule_id, asyncio.Lock())

    # -- for callers that drive time (tests, run-now) -----------------------------------------------

    def wakeup(self) -> None:
        """Look for due jobs now (after the clock moved)."""
        self.scheduler.wakeup()

    async def settle(self) -> None:
        """Wait until every fire started so far has finished."""
        for _ in range(5):
            await asyncio.sleep(0)
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
            for _ in range(5):
                await asyncio.sleep(0)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None and task not in self._inflight:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
