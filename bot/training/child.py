"""The local training process: what `LocalExecutor` (bot/training/supervisor.py) spawns for one job.

It trains with bot/training/trainer.py and sends each of the trainer's events up the pipe, then a last `done`
(with the run's record) or `error` message. Ctrl-C is the parent's to handle; SIGTERM exits through Python so
that the libraries clean up; a child whose parent died stops at once; output goes to the job's log; training
runs at a lower priority than the daemon that serves commands.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from ..errors import MimicbotError
from ..modelfolder import disk_error, is_disk_error
from ..redaction import redact_output
from .spec import TrainRequest

PARENT_POLL_S = 1.0  # how often a child checks that its parent is still there
EXIT_ORPHANED = 3


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
        message = disk_error(e, request["model_id"]) if is_disk_error(e) else f"{type(e).__name__}: {e}"
        _send_quietly(conn, {"type": "error", "message": message})
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
    redact_output()  # the job log never holds a secret: Python's writes (tracebacks, warnings, logs) are redacted
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

