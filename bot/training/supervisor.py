"""Supervising one training run, wherever it runs: the protocol every executor implements, and the loop that
drives it.

    outcome = run_job(store, job, executor=LocalExecutor(), data_dir=..., stop=stop)

An **executor** starts a run for a claimed job (`launch`) and hands back a **Run**: a stream of the trainer's
messages (`poll`, `recv`; EOFError once the run ended and every message was read), a way to end it (`end`),
the reason when it died without a last word (`death`) and a last step once it succeeded (`complete`, where the
Ray executor installs an uploaded model). Two executors implement it: `LocalExecutor` below (a spawned child
process, bot/training/child.py) and `RayExecutor` (a Ray task, bot/training/ray_executor.py).

The supervisor (`run_job`, blocking: call it from a thread) stores progress in SQLite at most twice a second,
stops the run when asked to (locally through `Stop`, or from any process through the job's `cancel_requested`
flag) and records how the job ended. Whoever wants to watch a job reads its row (bot/training/follow.py):
there is one way to watch a job, whichever process runs it.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import MimicbotError
from ..modelfolder import disk_error
from ..store import Store
from . import jobs
from .spec import TrainRequest

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5  # at most two progress writes a second per job
CANCEL_POLL_S = 0.5  # how often the database's cancel flag is read
PIPE_POLL_S = 0.1
EXIT_GRACE_S = 10.0  # a child that sent its result gets this long to exit on its own
TERMINATE_GRACE_S = 5.0  # after SIGTERM, before SIGKILL


class Stop:
    """Why a running job should stop: "cancel" (the job ends cancelled) or "shutdown" (it is queued again so the
    next start re-runs it). Thread-safe; a cancel wins over a shutdown."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason != "cancel":
            self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:  # `if stop:` reads "a stop was asked for"; so never write `stop or Stop()`
        return self.requested


@dataclass
class Outcome:
    """How a run ended: a job state (queued again after a shutdown), with its error or its result."""

    state: str
    error: str | None = None
    result: dict | None = None

    @classmethod
    def stopped(cls, stop: Stop) -> Outcome:
        return cls(jobs.CANCELLED if stop.reason == "cancel" else jobs.QUEUED)


class LaunchError(MimicbotError):
    """The executor could not start the run (the job fails with this message)."""


class Run(Protocol):
    """One training in progress, as the supervisor sees it."""

    def poll(self, timeout: float) -> bool:
        """True when `recv` has a message, or the run has ended (then `recv` raises EOFError)."""

    def recv(self) -> dict:
        """The next message of the trainer: progress and phase events, then "done" (result) or "error"."""

    def end(self, graceful: bool) -> None:
        """Wait for a run that is finishing on its own (`graceful`), or stop it now."""

    def death(self) -> str:
        """Why the run ended without a last message, in plain words (after `end`)."""

    def complete(self, outcome: Outcome) -> Outcome:
        """A last step after a run succeeded (e.g. install an uploaded model); returns the outcome."""


class Executor(Protocol):
    """Starts runs: a local child process, a Ray task."""

    def launch(self, store: Store, job_id: int, req: TrainRequest, work_dir: Path, log_path: Path,
               slot: int) -> Run:
        """Start training `req` in `work_dir`; LaunchError when it cannot start."""


def work_dir_for(models_dir: str | Path, job_id: int) -> Path:
    """Scratch space of one run, beside the models so that publishing is a rename on one file system."""
    return Path(models_dir) / ".work" / f"job-{job_id}"


def log_path_for(data_dir: Path, job_id: int) -> Path:
    """The run's stdout/stderr (library warnings, a trainer's traceback). Kept after the job ends."""
    return data_dir / "logs" / f"job-{job_id}.log"


# -- the supervisor ---------------------------------------------------------------------------------


def run_job(store: Store, job: dict, *, executor: Executor, data_dir: Path, stop: Stop | None = None,
            slot: int = 0) -> dict:
    """Run a job this process has claimed until it ends; returns its final row. Blocks for the whole run."""
    stop = stop if stop is not None else Stop()  # not `or`: an unset Stop is falsy
    job_id = job["id"]
    try:
        req = jobs.request_for(store, job)
    except MimicbotError as e:
        return _end(store, job_id, Outcome(jobs.FAILED, str(e)))
    work_dir = work_dir_for(req.models_dir, job_id)
    shutil.rmtree(work_dir, ignore_errors=True)  # what a killed earlier run of this job left
    try:
        work_dir.mkdir(parents=True)
    except OSError as e:  # a read-only or full models folder: the job fails, it is never left running
        return _end(store, job_id, Outcome(jobs.FAILED, disk_error(e, req.model_id)))
    try:
        outcome = supervise(store, job_id, executor, req, work_dir, log_path_for(data_dir, job_id), stop, slot)
    except Exception as e:  # noqa: BLE001 - never leave a job running because the supervisor broke
        log.exception("job %s: supervisor error", job_id)
        outcome = Outcome(jobs.FAILED, f"the training supervisor failed: {type(e).__name__}: {e}")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return _end(store, job_id, outcome)


def supervise(store: Store, job_id: int, executor: Executor, req: TrainRequest, work_dir: Path, log_path: Path,
              stop: Stop, slot: int) -> Outcome:
    """Launch the run, follow its messages until it ends or is stopped, and say how it ended."""
    if stop.requested:
        return Outcome.stopped(stop)
    try:
        run = executor.launch(store, job_id, req, work_dir, log_path, slot)
    except LaunchError as e:
        return Outcome(jobs.FAILED, str(e))
    progress = ProgressWriter(store, job_id)
    outcome: Outcome | None = None
    try:
        outcome = _pump(store, job_id, run, progress, stop)
    finally:
        run.end(graceful=outcome is None or outcome.state in (jobs.SUCCEEDED, jobs.FAILED))
        progress.flush()
    if outcome is None:
        return Outcome(jobs.FAILED, run.death())
    if outcome.state != jobs.SUCCEEDED:
        return outcome
    try:
        return run.complete(outcome)
    except OSError as e:
        return Outcome(jobs.FAILED, disk_error(e, req.model_id))


class ProgressWriter:
    """Merges progress fields and writes them at most every PROGRESS_INTERVAL_S."""

    def __init__(self, store: Store, job_id: int):
        self.store, self.job_id = store, job_id
        self.pending: dict = {}
        self.written_at = 0.0

    def add(self, event: dict) -> None:
        self.pending.update({k: event[k] for k in jobs.PROGRESS_KEYS if k in event})
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        if self.pending and (force or time.monotonic() - self.written_at >= PROGRESS_INTERVAL_S):
            jobs.record_progress(self.store, self.job_id, self.pending)
            self.pending, self.written_at = {}, time.monotonic()


def _pump(store: Store, job_id: int, run: Run, progress: ProgressWriter, stop: Stop) -> Outcome | None:
    """Read the run's messages until its last one, its death (None) or a stop."""
    checked_at = time.monotonic()
    while True:
        if stop.requested:
            return _last_word(run) or Outcome.stopped(stop)
        if time.monotonic() - checked_at >= CANCEL_POLL_S:
            checked_at = time.monotonic()
            if jobs.cancel_requested(store, job_id):
                stop.set("cancel")
                continue
        progress.flush(force=False)
        if not run.poll(PIPE_POLL_S):
            continue
        try:
            message = run.recv()
        except (EOFError, OSError):
            return None
        if (outcome := _final(message)) is not None:
            return outcome
        progress.add(message)


def _final(message: dict) -> Outcome | None:
    """The outcome a run's last message carries, or None for a progress/phase event."""
    if message.get("type") == "done":
        return Outcome(jobs.SUCCEEDED, result=message.get("result"))
    if message.get("type") == "error":
        return Outcome(jobs.FAILED, message.get("message") or "the trainer failed")
    return None


def _last_word(run: Run) -> Outcome | None:
    """On a stop: a result already waiting wins (its model is published by then)."""
    try:
        while run.poll(0):
            if (outcome := _final(run.recv())) is not None:
                return outcome
    except (EOFError, OSError):
        pass
    return None


def _end(store: Store, job_id: int, outcome: Outcome) -> dict:
    final = jobs.finish(store, job_id, outcome.state, outcome.error, outcome.result)
    log.info("job %s: %s%s", job_id, final["state"], f" ({final['error']})" if final["error"] else "")
    return final


# -- the local executor: a spawned child process ------------------------------------------------------


class LocalExecutor:
    """Each run is a child process (multiprocessing, spawn) running bot/training/child.py; its messages come up
    a pipe whose only writer is the child, so the child's death is an end of file here."""

    def launch(self, store: Store, job_id: int, req: TrainRequest, work_dir: Path, log_path: Path,
               slot: int) -> Run:
        from .child import child_main

        ctx = multiprocessing.get_context("spawn")
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=child_main, args=(req.to_dict(), str(work_dir), writer, str(log_path), slot),
                            name=f"mimicbot-train-{job_id}")
        child.start()
        writer.close()  # the child holds the only writer: its death is EOF here
        jobs.set_worker(store, job_id, child.pid)
        log.info("job %s: training %s in process %s", job_id, req.model_id, child.pid)
        return ChildRun(child, reader)


class ChildRun:
    def __init__(self, child, reader):
        self.child, self.reader = child, reader
        self.exitcode: int | None = None

    def poll(self, timeout: float) -> bool:
        return self.reader.poll(timeout)

    def recv(self) -> dict:
        return self.reader.recv()

    def end(self, graceful: bool) -> None:
        """Wait for a child that is finishing on its own; stop one that is not: SIGTERM, then SIGKILL."""
        self.reader.close()
        child = self.child
        if graceful:
            child.join(EXIT_GRACE_S)
        if child.is_alive():
            child.terminate()
            child.join(TERMINATE_GRACE_S)
        if child.is_alive():
            child.kill()
            child.join()
        self.exitcode = child.exitcode
        child.close()

    def death(self) -> str:
        return death_reason(self.exitcode)

    def complete(self, outcome: Outcome) -> Outcome:
        return outcome  # the child published the model itself


def death_reason(exitcode: int | None) -> str:
    """Why a child ended without a word, in plain language."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        reason = f"training process was killed by signal {number} ({name})"
        return reason + " — out of memory?" if number == signal.SIGKILL else reason
    return f"training process exited with code {exitcode} before reporting a result"


def executor_for(settings) -> Executor:
    """The executor MIMICBOT_EXECUTOR names: local child processes, or Ray tasks."""
    if settings.mimicbot_executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(settings)
    return LocalExecutor()


__all__ = ["ChildRun", "Executor", "LaunchError", "LocalExecutor", "Outcome", "ProgressWriter", "Run", "Stop",
           "death_reason", "executor_for", "log_path_for", "run_job", "supervise", "work_dir_for"]
