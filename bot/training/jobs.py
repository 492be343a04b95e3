"""Training jobs in SQLite: the one queue that the daemon's pool and the CLI share, possibly at the same time.

A job goes queued → running → succeeded | failed | cancelled. Every state change is one statement guarded
by the state it leaves (`... where state = 'queued'`), inside `store.transaction()` (BEGIN IMMEDIATE), so two
processes never both claim, finish or cancel the same job.

The `request` column holds the TrainRequest *without* the posts' texts: hyperparameters, model id and each
account's network, handle and name. The texts are read from the store when a job is claimed
(`request_for`). Why: a job row stays small (3 accounts × 3,200 posts would be about 1 MB of text copied
into every job, read on every `jobs list`); the posts table stays the one copy of the data; and a job that
was queued, or re-queued after a restart, trains on the freshest posts. The texts and statistics that a
run actually used are recorded by the trainer in the model's training.json, which becomes `result`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownAccount, UnknownJob, ValidationError
from ..redaction import redact
from ..store import Store, utcnow
from .spec import AccountData, TrainRequest

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
PROGRESS_KEYS = ("step", "total", "loss", "tokens_per_s", "eta_s", "phase")

# a job queued again: no trace of the run that stopped
_REQUEUED = {"state": QUEUED, "started_at": None, "owner_host": None, "owner_pid": None, "worker_pid": None,
             **{k: None for k in PROGRESS_KEYS}, "progress_at": None, "error": None, "cancel_requested": 0}


@dataclass(frozen=True)
class Owner:
    """The process that runs a job: a pool in the daemon or in a `mimicbot train`."""

    host: str
    pid: int

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid())

    def alive(self) -> bool:
        """True unless the process is known to be gone. Another host's processes cannot be checked: alive."""
        if self.host != socket.gethostname():
            return True
        return pid_alive(self.pid)


def pid_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie (dead, waiting to be reaped)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux): existence is all we know
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


# -- rows -----------------------------------------------------------------------------------------


def _update(db, job_id: int, fields: dict, only_in: str | None = None) -> None:
    """Set fields of one job; with `only_in`, only while the job is in that state."""
    sql = f"update jobs set {', '.join(f'{k} = ?' for k in fields)} where id = ?"
    params = [*fields.values(), job_id]
    if only_in:
        sql, params = sql + " and state = ?", [*params, only_in]
    db.execute(sql, params)


def _ended(state: str, error: str | None = None, result: dict | None = None) -> dict:
    return {"state": state, "finished_at": utcnow(), "error": error, "worker_pid": None,
            "result": json.dumps(result) if result is not None else None}


def _decode(row: dict) -> dict:
    row = dict(row)
    for key in ("request", "result"):
        if row.get(key):
            row[key] = json.loads(row[key])
    row["cancel_requested"] = bool(row.get("cancel_requested"))
    return row


def get(store: Store, job_id: int) -> dict:
    """The job's row; UnknownJob for an id that is no job's (a number SQLite cannot hold, or not a number)."""
    valid = isinstance(job_id, int) and not isinstance(job_id, bool) and 0 < job_id < 2**63
    rows = store.query("select * from jobs where id = ?", [job_id]) if valid else []
    if not rows:
        shown = str(job_id) if valid or isinstance(job_id, int) else repr(job_id)
        raise UnknownJob(f"no training job with id {shown if len(shown) <= 30 else shown[:29] + '…'}")
    return _decode(rows[0])


def list_jobs(store: Store, states: tuple[str, ...] | None = None, limit: int = 50,
              guild_id: int | None = None) -> list[dict]:
    """The newest jobs first, of these states and this Discord server when given (ValidationError for a state
    that does not exist)."""
    clauses, params = [], []
    if unknown := [s for s in states or () if s not in ACTIVE + TERMINAL]:
        raise ValidationError(f"unknown state {unknown[0]!r}; one of {', '.join(ACTIVE + TERMINAL)}")
    if states:
        clauses.append(f"state in ({', '.join('?' for _ in states)})")
        params.extend(states)
    if guild_id is not None:
        clauses.append("guild_id = ?")
        params.append(guild_id)
    where = f"where {' and '.join(clauses)}" if clauses else ""
    return [_decode(r) for r in store.query(f"select * from jobs {where} order by id desc limit ?", [*params, limit])]


def enqueue(store: Store, req: TrainRequest, requested_by: str, guild_id: int | None = None,
            status_channel_id: int | None = None) -> dict:
    """Add a queued job; returns its row."""
    request = req.to_dict()
    request["accounts"] = [{k: v for k, v in a.items() if k not in ("texts", "parents")} for a in request["accounts"]]
    with store.transaction() as db:
        job_id = db["jobs"].insert({
            "model_id": req.model_id, "state": QUEUED, "request": json.dumps(request),
            "requested_by": requested_by, "guild_id": guild_id, "status_channel_id": status_channel_id,
            "created_at": utcnow(), "cancel_requested": 0,
        }).last_pk
    return get(store, job_id)


def set_status_message(store: Store, job_id: int, channel_id: int | None, message_id: int | None) -> None:
    """Where a Discord face shows this job's progress (so its edits survive a restart)."""
    with store.transaction() as db:
        _update(db, job_id, {"status_channel_id": channel_id, "status_message_id": message_id})


# -- the pool's side --------------------------------------------------------------------------------


def claim(store: Store, owner: Owner, job_id: int | None = None) -> dict | None:
    """Atomically take the oldest queued job (or that one job) for `owner`; None when there is none."""
    sql, params = "select id from jobs where state = ?", [QUEUED]
    if job_id is not None:
        sql, params = sql + " and id = ?", [*params, job_id]
    sql += " order by id limit 1"
    if not store.query(sql, params):  # the usual answer, found without taking the write lock
        return None
    with store.transaction() as db:
        row = db.execute(sql, params).fetchone()
        if row is None:
            return None
        _update(db, row[0], {"state": RUNNING, "started_at": utcnow(), "owner_host": owner.host,
                             "owner_pid": owner.pid, "phase": "starting"}, only_in=QUEUED)
    return get(store, row[0])


def set_worker(store: Store, job_id: int, pid: int | None) -> None:
    with store.transaction() as db:
        _update(db, job_id, {"worker_pid": pid})


def record_progress(store: Store, job_id: int, event: dict) -> None:
    """Store whichever progress fields the event carries (a progress event has all, a phase event one)."""
    fields = {k: event[k] for k in PROGRESS_KEYS if k in event}
    if not fields:
        return
    fields["progress_at"] = utcnow()
    with store.transaction() as db:
        _update(db, job_id, fields, only_in=RUNNING)


def cancel_requested(store: Store, job_id: int) -> bool:
    rows = store.query("select cancel_requested from jobs where id = ?", [job_id])
    return bool(rows and rows[0]["cancel_requested"])


def finish(store: Store, job_id: int, state: str, error: str | None = None, result: dict | None = None) -> dict:
    """A running job reaches a terminal state (or `queued` again, when its pool shuts down)."""
    with store.transaction() as db:
        error = redact(error) if error else error  # a source's or a library's text: never a secret in the database
        _update(db, job_id, _REQUEUED if state == QUEUED else _ended(state, error, result), only_in=RUNNING)
    return get(store, job_id)


def recover(store: Store, owner: Owner | None = None) -> list[int]:
    """Jobs left `running` by a process of this host that is gone: back to queued (or cancelled, if a
    cancel was asked for meanwhile). Returns their ids."""
    owner = owner or Owner.me()
    recovered = []
    with store.transaction() as db:
        rows = db.execute(
            "select id, owner_pid, cancel_requested from jobs where state = ? and owner_host = ?",
            [RUNNING, owner.host],
        ).fetchall()
        for job_id, pid, cancel in rows:
            if pid_alive(pid):
                continue
            _update(db, job_id, _ended(CANCELLED) if cancel else _REQUEUED)
            recovered.append(job_id)
    return recovered


def request_cancel(store: Store, job_id: int) -> dict:
    """Cancel from any process. A queued job is cancelled at once; a running one gets `cancel_requested`,
    which its pool notices within about a second (or, if that pool's process is gone, cancelled at once).
    Raises ValidationError for a job that already finished other than cancelled."""
    with store.transaction() as db:
        job = get(store, job_id)
        orphaned = job["state"] == RUNNING and not Owner(job["owner_host"], job["owner_pid"]).alive()
        if job["state"] == QUEUED or orphaned:
            _update(db, job_id, {**_ended(CANCELLED), "cancel_requested": 1}, only_in=job["state"])
        elif job["state"] == RUNNING:
            _update(db, job_id, {"cancel_requested": 1})
        elif job["state"] != CANCELLED:
            raise ValidationError(f"job {job_id} has already {job['state']}; there is nothing to cancel")
    return get(store, job_id)


# -- the request, rebuilt ---------------------------------------------------------------------------


def account_data(store: Store, account: dict) -> AccountData:
    """One stored account as the trainer sees it: its kept texts and the card's statistics."""
    return AccountData(
        handle=account["handle"],
        display_name=account["display_name"] or account["handle"],
        network=account["network"],
        avatar_url=account["avatar_url"],
        texts=store.kept_texts(account["id"]),
        parents=store.kept_parents(account["id"]),
        stats=store.account_stats(account["id"]).as_dict(),
    )


def request_for(store: Store, job: dict) -> TrainRequest:
    """The job's full TrainRequest, with each account's kept texts read from the store now."""
    request = dict(job["request"])
    accounts = []
    for a in request["accounts"]:
        row = store.get_account(a["network"], a["handle"])
        if row is None:
            raise UnknownAccount(f"@{a['handle']} ({a['network']}) was removed from the store after job "
                                 f"{job['id']} was queued; fetch it again")
        accounts.append(account_data(store, row))
    request["accounts"] = accounts
    return TrainRequest.from_dict(request)


# -- events ---------------------------------------------------------------------------------------


def progress_event(job: dict) -> dict:
    return {"type": "progress", "job_id": job["id"], **{k: job[k] for k in PROGRESS_KEYS}}


def state_event(job: dict) -> dict:
    """A state change as followers see it; the terminal ones carry the error or the result."""
    return {"type": "state", "job_id": job["id"], "state": job["state"], "model_id": job["model_id"],
            "error": job["error"], "result": job["result"]}


def _progress(job: dict) -> tuple:
    return tuple(job[k] for k in (*PROGRESS_KEYS, "progress_at"))


def row_events(before: dict | None, job: dict) -> list[dict]:
    """Events that tell a follower what changed between two reads of a job's row."""
    events = []
    # the fields, not only progress_at: that has one-second resolution, and a run writes twice a second
    if job["progress_at"] and (before is None or _progress(job) != _progress(before)):
        events.append(progress_event(job))
    if before is None or job["state"] != before["state"]:
        events.append(state_event(job))
    return events
