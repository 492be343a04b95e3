"""The training pool: claims queued jobs from SQLite and runs each one in a child process.

The daemon runs one `TrainingPool` (async API); `mimicbot train` runs the one job it queued with
`run_job_blocking` (blocking API). Both share the database, so either may run a job the other queued:
claiming is atomic across processes, and whoever does not run a job follows it through its row.

    pool = TrainingPool(store, settings)
    await pool.start()                      # re-queues jobs whose process died, then serves the queue
    job = await pool.submit(request, requested_by="discord:1234")
    async for event in pool.subscribe(job["id"]):
        ...                                 # progress/phase events, then {"type": "state", "state": "succeeded", ...}
    await pool.cancel(job["id"])
    await pool.close()                      # stops the children; their jobs are queued again for the next start

No call blocks the event loop: SQLite work runs in threads, each running job is supervised by a thread
of the pool's own executor (see worker.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

from ..config import Settings
from ..errors import ValidationError
from ..store import Store
from . import jobs
from .jobs import Owner
from .spec import TrainRequest
from .ray_executor import supervisor_for
from .worker import Stop, run_job

log = logging.getLogger(__name__)

QUEUE_POLL_S = 1.0  # how often the queue is read for jobs queued by another process
FOLLOW_POLL_S = 0.5  # how often a job run elsewhere is read by a follower
CLOSED = {"type": "closed"}  # ends every subscription when the pool closes


@dataclass
class _Running:
    job_id: int
    slot: int
    stop: Stop
    task: asyncio.Task | None = None


class TrainingPool:
    """At most `workers` training children at once; other jobs wait queued."""

    def __init__(self, store: Store, settings: Settings, workers: int | None = None):
        self.store = store
        self.settings = settings
        self.workers = workers or settings.train_workers
        self.owner = Owner.me()
        self.supervise = supervisor_for(settings)  # None: local child processes; MIMICBOT_EXECUTOR=ray: Ray tasks
        self._running: dict[int, _Running] = {}
        self._subscribers: dict[int, set[asyncio.Queue]] = {}
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mimicbot-train")
        self._dispatcher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> list[int]:
        """Re-queue jobs left running by a dead process of this host, then serve the queue. Returns those ids."""
        self._loop = asyncio.get_running_loop()
        recovered = await asyncio.to_thread(jobs.recover, self.store, self.owner)
        if recovered:
            log.info("re-queued jobs %s, left running by a process that is gone", recovered)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="mimicbot-training-pool")
        return recovered

    async def close(self) -> None:
        """Stop serving; running children are stopped and their jobs queued again (a cancel asked for
        meanwhile still wins). Subscriptions end."""
        self._closed = True
        self._wake.set()
        if self._dispatcher:
            await self._dispatcher
        for running in list(self._running.values()):
            running.stop.set("shutdown")
        await asyncio.gather(*(r.task for r in list(self._running.values()) if r.task), return_exceptions=True)
        self._executor.shutdown(wait=True)
        for queues in self._subscribers.values():
            for q in queues:
                q.put_nowait(CLOSED)

    # -- jobs -----------------------------------------------------------------------------------

    async def submit(self, req: TrainRequest, requested_by: str, guild_id: int | None = None,
                     status_channel_id: int | None = None) -> dict:
        """Queue a job; returns its row. The pool starts it as soon as a worker is free."""
        job = await asyncio.to_thread(jobs.enqueue, self.store, req, requested_by, guild_id, status_channel_id)
        self.notify()
        return job

    def notify(self) -> None:
        """Look at the queue now rather than at the next poll (a job was queued). Safe from any thread."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._wake.set)
        else:
            self._wake.set()

    async def cancel(self, job_id: int) -> dict:
        """Cancel a queued or running job. A job this pool runs is stopped before this returns; one that
        another process runs is flagged and stopped by that process within about a second."""
        job = await asyncio.to_thread(jobs.request_cancel, self.store, job_id)
        running = self._running.get(job_id)
        if running is None:
            return job
        running.stop.set("cancel")
        if running.task:
            await asyncio.wait([running.task])
        return await asyncio.to_thread(jobs.get, self.store, job_id)

    def alive(self) -> bool:
        """The pool is serving its queue (for `mimicbot health`, through the daemon's heartbeat)."""
        return self._dispatcher is not None and not self._dispatcher.done() and not self._closed

    def running(self) -> list[int]:
        """Ids of the jobs this pool is running now."""
        return sorted(self._running)

    # -- events ---------------------------------------------------------------------------------

    async def subscribe(self, job_id: int) -> AsyncIterator[dict]:
        """The job's events: first its current state (and progress), then each change, ending with a
        terminal state event (or when the pool closes). Raises UnknownJob for a bad id.

        A job this pool runs streams every event the trainer sends; a job run by another process is
        followed through its row, so progress arrives at the pace it is stored (about twice a second)."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.setdefault(job_id, set()).add(queue)
        try:
            row = await asyncio.to_thread(jobs.get, self.store, job_id)
            for event in jobs.row_events(None, row):
                yield event
            while row["state"] not in jobs.TERMINAL:
                try:
                    event = await asyncio.wait_for(queue.get(), FOLLOW_POLL_S)
                except TimeoutError:
                    if self._closed:
                        return
                    before, row = row, await asyncio.to_thread(jobs.get, self.store, job_id)
                    for event in self._polled_events(before, row):
                        yield event
                    continue
                if event is CLOSED:
                    return
                yield event
                if event["type"] == "state":
                    row = {**row, "state": event["state"]}
        finally:
            self._subscribers[job_id].discard(queue)
            if not self._subscribers[job_id]:
                del self._subscribers[job_id]

    def _polled_events(self, before: dict, row: dict) -> list[dict]:
        if row["id"] in self._running:  # its events come through the queue; only an end is news here
            return [jobs.state_event(row)] if row["state"] in jobs.TERMINAL else []
        return jobs.row_events(before, row)

    def _publish(self, event: dict) -> None:
        for queue in self._subscribers.get(event["job_id"], ()):
            queue.put_nowait(event)

    def _publish_threadsafe(self, event: dict) -> None:
        self._loop.call_soon_threadsafe(self._publish, event)

    # -- serving the queue ----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while not self._closed:
            self._wake.clear()
            while len(self._running) < self.workers and not self._closed:
                try:
                    job = await asyncio.to_thread(jobs.claim, self.store, self.owner)
                except Exception:  # noqa: BLE001 - a busy or broken database must not end the pool
                    log.exception("could not claim a training job")
                    break
                if job is None:
                    break
                self._launch(job)
            try:
                await asyncio.wait_for(self._wake.wait(), QUEUE_POLL_S)
            except TimeoutError:
                pass

    def _launch(self, job: dict) -> None:
        slot = min(set(range(self.workers)) - {r.slot for r in self._running.values()})
        running = _Running(job["id"], slot, Stop())
        self._running[job["id"]] = running
        running.task = asyncio.create_task(self._run(job, running), name=f"mimicbot-job-{job['id']}")

    async def _run(self, job: dict, running: _Running) -> None:
        try:
            await self._loop.run_in_executor(
                self._executor,
                lambda: run_job(self.store, job, data_dir=self.settings.data_dir,
                                on_event=self._publish_threadsafe, stop=running.stop, slot=running.slot,
                                supervise=self.supervise),
            )
        except Exception:  # noqa: BLE001 - logged; the pool keeps serving
            log.exception("job %s: could not be run", job["id"])
        finally:
            del self._running[job["id"]]
            self._wake.set()


# -- blocking API (the CLI) ---------------------------------------------------------------------------


def run_job_blocking(store: Store, settings: Settings, job_id: int,
                     on_event: Callable[[dict], None] | None = None, stop: Stop | None = None) -> dict:
    """Run this queued job in this process, or, when another process (the daemon) claimed it first,
    follow it from the database. Returns the job's final row. `stop.set("cancel")` cancels it."""
    job = jobs.claim(store, Owner.me(), job_id)
    if job is not None:
        return run_job(store, job, data_dir=settings.data_dir, on_event=on_event, stop=stop,
                       supervise=supervisor_for(settings))
    return follow_blocking(store, job_id, on_event, stop)


def follow_blocking(store: Store, job_id: int, on_event: Callable[[dict], None] | None = None,
                    stop: Stop | None = None) -> dict:
    """Follow a job through its row until it ends; a stop asks its owner to cancel it (once)."""
    on_event = on_event or (lambda event: None)
    before = None
    cancel_sent = False
    while True:
        if stop is not None and stop.requested and not cancel_sent:
            with suppress(ValidationError):  # it finished meanwhile: the row says how
                jobs.request_cancel(store, job_id)
            cancel_sent = True
        row = jobs.get(store, job_id)
        for event in jobs.row_events(before, row):
            on_event(event)
        if row["state"] in jobs.TERMINAL:
            return row
        before = row
        time.sleep(FOLLOW_POLL_S)
