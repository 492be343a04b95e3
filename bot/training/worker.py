"""One training job: the trainer runs in a child process (multiprocessing, spawn); a thread of the parent
supervises it.

The child sends the trainer's events up a pipe and ends with a `done` or an `error` message. The supervisor
(`run_job`, blocking: call it from a thread) stores progress in SQLite at most twice a second, hands every
event to `on_event`, stops the child when asked to (locally through `Stop`, or from any process through the
job's `cancel_requested` flag) and records how the job ended. A child that dies without a last message
(killed, out of memory, crashed) fails the job with a plain reason; the supervisor itself keeps going.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MimicbotError
from ..store import Store
from . import jobs
from .spec import TrainRequest

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5  # at most two progress writes a second per job
CANCEL_POLL_S = 0.5  # how often the database's cancel flag is read
PIPE_POLL_S = 0.1
EXIT_GRACE_S = 10.0  # a child that sent its result gets this long to exit on its own
TERMINATE_GRACE_S = 5.0  # after SIGTERM, before SIGKILL
PARENT_POLL_S = 1.0  # how often a child checks that its parent is still there
EXIT_ORPHANED = 3

EventSink = Callable[[dict], None]


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


def work_dir_for(models_dir: str | Path, job_id: int) -> Path:
    """Scratch space of one run, beside the models so that publishing is a rename on one file system."""
    return Path(models_dir) / ".work" / f"job-{job_id}"


def log_path_for(data_dir: Path, job_id: int) -> Path:
    """The child's stdout/stderr (library warnings, a trainer's traceback). Kept after the job ends."""
    return data_dir / "logs" / f"job-{job_id}.log"


# -- the child ------------------------------------------------------------------------------------


def child_main(request: dict, work_dir: str, conn, log_path: str, slot: int) -> None:
    """Entry point of the training process. Ctrl-C is the parent's to handle; output goes to the job's log."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _exit_with_parent()
    _redirect_output(log_path)
    _lower_priority()
    try:
        _pick_gpu(slot)
        from .trainer import train

        result = train(TrainRequest.from_dict(request), Path(work_dir), conn.send)
        conn.send({"type": "done", "result": result})
    except MimicbotError as e:
        _send_quietly(conn, {"type": "error", "message": str(e)})
    except SystemExit:  # stopped by the parent
        raise
    except BaseException as e:  # noqa: BLE001 - anything the trainer raises ends the job, with its type
        traceback.print_exc()
        _send_quietly(conn, {"type": "error", "message": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


TRAINING_NICENESS = 10


def _lower_priority() -> None:
    """Training uses every core it is given; the daemon that serves commands must still answer at once. A
    niceness of 10 gives the daemon's threads about ten times the training's share of a busy core."""
    try:
        os.nice(TRAINING_NICENESS)
    except OSError:  # not permitted here: train at the normal priority
        pass


def _exit_on_sigterm(signum, frame) -> None:
    """The parent stops a child with SIGTERM: exit through Python, so that what the libraries registered
    for clean-up at exit (tqdm's multiprocessing lock, ...) is released rather than reported as leaked."""
    raise SystemExit(128 + signum)


def _exit_with_parent() -> None:
    """A child whose parent died (killed, crashed) stops at once rather than train on and publish a model
    while its job, re-queued by the next start, runs again elsewhere."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="mimicbot-parent-watch", daemon=True).start()


def _redirect_output(log_path: str) -> None:
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _pick_gpu(slot: int) -> None:
    """With several GPUs, worker slot N trains on GPU N (mod the count)."""
    import torch

    if torch.cuda.device_count() > 1:
        torch.cuda.set_device(slot % torch.cuda.device_count())


def _send_quietly(conn, message: dict) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):  # the parent is gone; nobody to tell
        pass


# -- the supervisor -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    state: str
    error: str | None = None
    result: dict | None = None


class _ProgressWriter:
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


def run_job(store: Store, job: dict, *, data_dir: Path, on_event: EventSink | None = None,
            stop: Stop | None = None, slot: int = 0, supervise: Callable[..., _Outcome] | None = None) -> dict:
    """Run a job this process has claimed until it ends; returns its final row. Blocks for the whole run.
    `supervise` runs the training itself: a local child process by default (`_supervise`), or a Ray task
    (ray_executor.RaySupervisor), with the same arguments and the same outcome."""
    on_event = on_event or (lambda event: None)
    stop = stop if stop is not None else Stop()  # not `or`: an unset Stop is falsy
    job_id = job["id"]
    on_event(jobs.state_event(job))
    try:
        req = jobs.request_for(store, job)
    except MimicbotError as e:
        return _end(store, job_id, _Outcome(jobs.FAILED, str(e)), on_event)
    work_dir = work_dir_for(req.models_dir, job_id)
    shutil.rmtree(work_dir, ignore_errors=True)  # what a killed earlier run of this job left
    work_dir.mkdir(parents=True)
    try:
        outcome = (supervise or _supervise)(store, job_id, req, work_dir, log_path_for(data_dir, job_id), on_event,
                                            stop, slot)
    except Exception as e:  # noqa: BLE001 - never leave a job running because the supervisor broke
        log.exception("job %s: supervisor error", job_id)
        outcome = _Outcome(jobs.FAILED, f"the training supervisor failed: {type(e).__name__}: {e}")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return _end(store, job_id, outcome, on_event)


def _supervise(store: Store, job_id: int, req: TrainRequest, work_dir: Path, log_path: Path,
               on_event: EventSink, stop: Stop, slot: int) -> _Outcome:
    if stop.requested:
        return _stopped(stop)
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=child_main, args=(req.to_dict(), str(work_dir), writer, str(log_path), slot),
                        name=f"mimicbot-train-{job_id}")
    child.start()
    writer.close()  # the child holds the only writer: its death is EOF here
    jobs.set_worker(store, job_id, child.pid)
    log.info("job %s: training %s in process %s", job_id, req.model_id, child.pid)
    progress = _ProgressWriter(store, job_id)
    outcome: _Outcome | None = None
    try:
        outcome = _pump(store, job_id, reader, progress, on_event, stop)
    finally:
        reader.close()
        _reap(child, graceful=outcome is None or outcome.state in (jobs.SUCCEEDED, jobs.FAILED))
    exitcode = child.exitcode
    child.close()
    progress.flush()
    return outcome or _Outcome(jobs.FAILED, death_reason(exitcode))


def _pump(store: Store, job_id: int, reader, progress: _ProgressWriter, on_event: EventSink,
          stop: Stop) -> _Outcome | None:
    """Read the child's messages until its last one, its death (None) or a stop."""
    checked_at = time.monotonic()
    while True:
        if stop.requested:
            return _last_word(reader) or _stopped(stop)
        if time.monotonic() - checked_at >= CANCEL_POLL_S:
            checked_at = time.monotonic()
            if jobs.cancel_requested(store, job_id):
                stop.set("cancel")
                continue
        progress.flush(force=False)
        if not reader.poll(PIPE_POLL_S):
            continue
        try:
            message = reader.recv()
        except (EOFError, OSError):
            return None
        if (outcome := _final(message)) is not None:
            return outcome
        progress.add(message)
        on_event({**message, "job_id": job_id})


def _final(message: dict) -> _Outcome | None:
    """The outcome a child's last message carries, or None for a progress/phase event."""
    if message.get("type") == "done":
        return _Outcome(jobs.SUCCEEDED, result=message.get("result"))
    if message.get("type") == "error":
        return _Outcome(jobs.FAILED, message.get("message") or "the trainer failed")
    return None


def _last_word(reader) -> _Outcome | None:
    """On a stop: a result already waiting in the pipe wins (its model is published by then)."""
    try:
        while reader.poll(0):
            if (outcome := _final(reader.recv())) is not None:
                return outcome
    except (EOFError, OSError):
        pass
    return None


def _stopped(stop: Stop) -> _Outcome:
    return _Outcome(jobs.CANCELLED if stop.reason == "cancel" else jobs.QUEUED)


def _reap(child, graceful: bool) -> None:
    """Wait for a child that is finishing on its own; stop one that is not: SIGTERM, then SIGKILL."""
    if graceful:
        child.join(EXIT_GRACE_S)
    if child.is_alive():
        child.terminate()
        child.join(TERMINATE_GRACE_S)
    if child.is_alive():
        child.kill()
        child.join()


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


def _end(store: Store, job_id: int, outcome: _Outcome, on_event: EventSink) -> dict:
    final = jobs.finish(store, job_id, outcome.state, outcome.error, outcome.result)
    log.info("job %s: %s%s", job_id, final["state"], f" ({final['error']})" if final["error"] else "")
    on_event(jobs.state_event(final))
    return final
