"""Watching a job: the one way, whichever process runs it. The job's row is the truth — the supervisor stores
progress there at most twice a second, and every state change — so a watcher reads the row every
FOLLOW_POLL_S and turns what changed into events:

    {"type": "progress", "job_id", "step", "total", "loss", "tokens_per_s", "eta_s", "phase"}
    {"type": "state", "job_id", "state", "model_id", "error", "result"}   # the last one is terminal

`follow` is the async form (the Discord face's progress messages, through the service), `follow_blocking` the
blocking one (the CLI's progress bar); a Stop given to `follow_blocking` asks for the job's cancellation once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

from ..errors import ValidationError
from ..store import Store
from . import jobs
from .supervisor import Stop

FOLLOW_POLL_S = 0.5


class JobReader:
    """Reads one job's row and says what changed since the last read."""

    def __init__(self, store: Store, job_id: int):
        self.store, self.job_id = store, job_id
        self.row: dict | None = None

    def read(self) -> list[dict]:
        """The events since the last read (the first read: the current state and progress). UnknownJob for a
        bad id."""
        before, self.row = self.row, jobs.get(self.store, self.job_id)
        return jobs.row_events(before, self.row)

    @property
    def ended(self) -> bool:
        return self.row is not None and self.row["state"] in jobs.TERMINAL


async def follow(store: Store, job_id: int, poll_s: float = FOLLOW_POLL_S) -> AsyncIterator[dict]:
    """The job's events until it ends (its terminal state event is the last)."""
    reader = JobReader(store, job_id)
    while True:
        for event in await asyncio.to_thread(reader.read):
            yield event
        if reader.ended:
            return
        await asyncio.sleep(poll_s)


def follow_blocking(store: Store, job_id: int, on_event: Callable[[dict], None] | None = None,
                    stop: Stop | None = None, poll_s: float = FOLLOW_POLL_S) -> dict:
    """Follow a job until it ends; returns its final row. A stop asks whoever runs it to cancel it (once)."""
    on_event = on_event or (lambda event: None)
    reader = JobReader(store, job_id)
    cancel_sent = False
    while True:
        if stop is not None and stop.requested and not cancel_sent:
            with suppress(ValidationError):  # it finished meanwhile: the row says how
                jobs.request_cancel(store, job_id)
            cancel_sent = True
        for event in reader.read():
            on_event(event)
        if reader.ended:
            return reader.row
        time.sleep(poll_s)
