"""The training pool: claims queued jobs from SQLite and runs each one through an executor (a local child
process, or a Ray task: bot/training/supervisor.py).

The daemon's app runs one `TrainingPool` (async API); `mimicbot train` runs the one job it queued with
`run_job_blocking` (blocking API). Both share the database, so either may run a job the other queued:
claiming is atomic across processes, and whoever does not run a job follows it through its row
(bot/training/follow.py, the one way to watch a job).

    pool = TrainingPool(store, settings)
    await pool.start()                      # re-queues jobs whose process died, then serves the queue
    job = await pool.submit(request, requested_by="discord:1234")
    await pool.cancel(job["id"])
    await pool.close()                      # stops the runs; their jobs are queued again for the next start

No call blocks the event loop: SQLite work runs in threads, each running job is supervised by a thread of the
pool's own executor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..config import Settings
from ..store import Store
from . import jobs
from .follow import follow_blocking
from .jobs import Owner
from .spec import TrainRequest
from .supervisor import Stop, executor_for, run_job

log = logging.getLogger(__name__)

QUEUE_POLL_S = 1.0  # how often the queue is read for jobs queued by another process


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
        self.executor = executor_for(settings)  # local child processes, or Ray tasks (MIMICBOT_EXECUTOR=ray)
        self._running: dict[int, _Running] = {}
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
        meanwhile still wins)."""
        self._closed = True
        self._wake.set()
        if self._dispatcher:
            await self._dispatcher
        for running in list(self._running.values()):
            running.stop.set("shutdown")
        await asyncio.gather(*(r.task for r in list(self._running.values()) if r.task), return_exceptions=True)
        self._executor.shutdown(wait=True)

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
                lambda: run_job(self.store, job, executor=self.executor, data_dir=self.settings.data_dir,
                                stop=running.stop, slot=running.slot),
            )
        except Exception:  # noqa: BLE001 - logged; the pool keeps serving
            log.exception("job %s: could not be run", job["id"])
        finally:
            del self._running[job["id"]]
            self._wake.set()


# -- blocking API (the CLI) ---------------------------------------------------------------------------


def run_job_blocking(store: Store, settings: Settings, job_id: int,
                     on_event: Callable[[dict], None] | None = None, stop: Stop | None = None) -> dict:
    """Run this queued job in a thread of this process (or, when another process — the daemon — claimed it
    first, leave it there) and follow it from the database until it ends; returns the final row. Its events go
    to `on_event`; `stop.set("cancel")` cancels it, wherever it runs."""
    job = jobs.claim(store, Owner.me(), job_id)
    runner = None
    if job is not None:
        runner = threading.Thread(target=run_job, args=(store, job), name=f"mimicbot-job-{job_id}", daemon=True,
                                  kwargs={"executor": executor_for(settings), "data_dir": settings.data_dir})
        runner.start()
    final = follow_blocking(store, job_id, on_event, stop)
    if runner is not None:
        runner.join()
    return final
