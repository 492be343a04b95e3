"""Schedules: stored in SQLite (the source of truth), edited by `mimicbot schedule …` and `/schedule`, served by
the daemon's `ScheduleRunner`.

A schedule is a 5-field crontab (`0 9 * * mon-fri`) read in its IANA time zone, or an interval (`90m`,
`every 2h`, `1h30m`; at least a minute) counted from its anchor time, so its fire times are the same before
and after a restart. Every edit bumps the schedule's `rev` and the global schedules version in the same
transaction; the daemon polls the version and reschedules what changed, without a restart.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..config import Settings
from ..errors import ValidationError
from ..generation.prompts import check_opener
from ..redaction import redact
from ..store import Store, utcnow
from . import state
from .base import UnknownSchedule
from .targets import validate_target_name

MIN_INTERVAL = 60  # seconds: a bot posting more often than once a minute is spam
MAX_INTERVAL = 366 * 86400  # seconds: a schedule fires at least once a year
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"([0-9]+)\s*([smhdw])")  # ASCII digits: "\u0663h" is no interval here


def parse_interval(text: str) -> int:
    """`90m`, `every 2h`, `1h30m`, `3600` (seconds) → seconds. ValidationError if malformed or under a minute."""
    spec = text.strip().lower().removeprefix("every").strip()
    if len(spec) > 40:  # no interval is written that long (and 5,000 digits are past what int() reads)
        raise ValidationError(f"bad interval {_shown(text)}: use a number and a unit (s, m, h, d, w), e.g. 90m")
    if spec.isascii() and spec.isdigit():
        seconds = int(spec)
    else:
        parts = _INTERVAL.findall(spec)
        if not parts or _INTERVAL.sub("", spec).strip():
            raise ValidationError(f"bad interval {_shown(text)}: use a number and a unit (s, m, h, d, w), e.g. 90m or 1h30m")
        seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds < MIN_INTERVAL:
        raise ValidationError(f"interval {_shown(text)} is under a minute; the shortest is {MIN_INTERVAL} s")
    if seconds > MAX_INTERVAL:  # beyond this, datetime arithmetic overflows long before a post is due
        raise ValidationError(f"interval {_shown(text)} is over a year; the longest is {MAX_INTERVAL // 86400} days")
    return seconds


def _shown(text: str) -> str:
    """What was typed, quoted back short and escaped."""
    return repr(text if len(text) <= 40 else text[:39] + "…")


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {_shown(name)}: use an IANA name such as UTC or Europe/Paris") from None


def cron_trigger(expr: str, tz: ZoneInfo) -> CronTrigger:
    """A 5-field crontab (minute hour day month weekday) in `tz`; ValidationError saying what is wrong."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValidationError(f"bad cron expression {_shown(expr)}: expected 5 fields (minute hour day month weekday), "
                              f"got {len(fields)}")
    try:
        return CronTrigger.from_crontab(expr, timezone=tz)
    except ValueError as e:
        raise ValidationError(f"bad cron expression {expr!r}: {e}") from None


def trigger_for(schedule: dict) -> CronTrigger | IntervalTrigger:
    """The apscheduler trigger of a stored schedule."""
    tz = parse_timezone(schedule["timezone"])
    if schedule["kind"] == "cron":
        return cron_trigger(schedule["spec"], tz)
    anchor = datetime.fromisoformat(schedule["anchor_at"])
    return IntervalTrigger(seconds=int(schedule["spec"]), start_date=anchor, timezone=tz)


def describe(schedule: dict) -> str:
    if schedule["kind"] == "cron":
        return f"cron {schedule['spec']} ({schedule['timezone']})"
    return f"every {_human(int(schedule['spec']))}"


def _human(seconds: int) -> str:
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)


def next_fire(schedule: dict, now: datetime | None = None) -> datetime | None:
    """When the schedule fires next (None while paused)."""
    if schedule["paused"]:
        return None
    now = now or datetime.now(UTC)
    return trigger_for(schedule).get_next_fire_time(None, now)


class Schedules:
    """CRUD over the `schedules` table. Every write bumps the schedules version the daemon watches."""

    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings

    def add(self, model_id: str, target: str, *, cron: str | None = None, every: str | None = None,
            timezone: str | None = None, require_approval: bool = False,
            approval_channel_id: int | None = None, prompt: str | None = None) -> dict:
        """Validate and store a schedule; returns its row. Exactly one of `cron` and `every`. `prompt`: how each
        of its posts starts (None or "": the model writes the whole post from the start-of-post token)."""
        target = validate_target_name(target)
        prompt = check_opener(prompt)
        tz_name = timezone or self.settings.mimicbot_schedule_timezone
        tz = parse_timezone(tz_name)
        if (cron is None) == (every is None):
            raise ValidationError("give exactly one of a cron expression or an interval")
        if every is not None and timezone:
            raise ValidationError("a time zone only applies to a cron schedule; an interval counts from when it is "
                                  "added, in any zone: drop the time zone")
        if approval_channel_id is not None and not require_approval:
            raise ValidationError("an approval channel only applies to a schedule that needs approval: add --approval "
                                  "(or drop the channel)")
        if cron is not None:
            trigger = cron_trigger(cron, tz)
            if trigger.get_next_fire_time(None, datetime.now(tz)) is None:
                raise ValidationError(f"cron expression {cron!r} never fires (no such date): check its day and month")
            kind, spec = "cron", " ".join(cron.split())
        else:
            kind, spec = "interval", str(parse_interval(every))
        if require_approval and not (approval_channel_id or self.settings.mimicbot_approval_channel_id):
            raise ValidationError("a schedule that needs approval needs a Discord channel for its drafts: "
                                  "pass one or set MIMICBOT_APPROVAL_CHANNEL_ID")
        now = utcnow()
        row = {"model_id": model_id, "target": target, "kind": kind, "spec": spec, "timezone": tz_name,
               "require_approval": int(require_approval), "approval_channel_id": approval_channel_id,
               "paused": 0, "anchor_at": _first_interval_fire(kind, spec), "rev": 1, "prompt": prompt, "created_at": now,
               "updated_at": now}
        with self.store.transaction() as db:
            schedule_id = db["schedules"].insert(row).last_pk
            state.bump(db, state.SCHEDULES_VERSION)
        return self.get(schedule_id)

    def get(self, schedule_id: int) -> dict:
        valid = isinstance(schedule_id, int) and not isinstance(schedule_id, bool) and 0 < schedule_id < 2**63
        rows = self.store.query("select * from schedules where id = ?", [schedule_id]) if valid else []
        if not rows:  # (an id SQLite cannot hold is no schedule's either)
            raise UnknownSchedule(f"no schedule with id {str(schedule_id)[:30]}")
        return rows[0]

    def list(self) -> list[dict]:
        return self.store.query("select * from schedules order by id")

    def remove(self, schedule_id: int) -> dict:
        row = self.get(schedule_id)
        with self.store.transaction() as db:
            db.execute("delete from schedules where id = ?", [schedule_id])
            state.bump(db, state.SCHEDULES_VERSION)
        return row

    def remove_for_model(self, model_id: str) -> list[dict]:
        """Delete every schedule of a model (the model is gone); returns their rows."""
        with self.store.transaction() as db:
            rows = [dict(r) for r in db.query("select * from schedules where model_id = ? order by id", [model_id])]
            if rows:
                db.execute("delete from schedules where model_id = ?", [model_id])
                state.bump(db, state.SCHEDULES_VERSION)
        return rows

    def pause(self, schedule_id: int) -> dict:
        return self._edit(schedule_id, paused=1)

    def resume(self, schedule_id: int) -> dict:
        """Unpause. Fire times missed while paused are not made up: an interval counts again from now."""
        row = self.get(schedule_id)
        if not row["paused"]:
            return row
        return self._edit(schedule_id, paused=0, anchor_at=_first_interval_fire(row["kind"], row["spec"]),
                          last_fire_at=utcnow())

    def request_run(self, schedule_id: int) -> dict:
        """Ask the daemon to run the schedule once, now (it notices within MIMICBOT_SCHEDULE_POLL_SECONDS)."""
        return self._edit(schedule_id, run_requested_at=datetime.now(UTC).isoformat(timespec="microseconds"))

    def version(self) -> int:
        return int(state.read(self.store, state.SCHEDULES_VERSION) or 0)

    def claim_fire(self, schedule_id: int, fire_time: datetime) -> bool:
        """Record `fire_time` as the schedule's latest fire, only if it is later than the one recorded: the one
        caller that gets True runs it. (A restart computes the next fire after this time, so never repeats it.)"""
        iso = fire_time.astimezone(UTC).isoformat(timespec="seconds")
        with self.store.transaction() as db:
            cursor = db.execute(
                "update schedules set last_fire_at = ? where id = ? and paused = 0 "
                "and (last_fire_at is null or last_fire_at < ?)", [iso, schedule_id, iso])
            return cursor.rowcount == 1

    def claim_run_request(self, schedule_id: int, requested_at: str) -> bool:
        with self.store.transaction() as db:
            cursor = db.execute("update schedules set run_requested_at = null where id = ? and run_requested_at = ?",
                                [schedule_id, requested_at])
            return cursor.rowcount == 1

    def record_result(self, schedule_id: int, status: str, error: str | None = None) -> None:
        """The outcome of the latest fire (does not count as an edit)."""
        with self.store.transaction() as db:
            db.execute("update schedules set last_status = ?, last_error = ? where id = ?",
                       [status, redact(error) if error else error, schedule_id])

    def _edit(self, schedule_id: int, **fields) -> dict:
        self.get(schedule_id)
        with self.store.transaction() as db:
            sets = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"update schedules set {sets}, rev = rev + 1, updated_at = ? where id = ?",
                       [*fields.values(), utcnow(), schedule_id])
            state.bump(db, state.SCHEDULES_VERSION)
        return self.get(schedule_id)


def _first_interval_fire(kind: str, spec: str) -> str | None:
    """An interval's anchor: its first fire, one interval from now (its later fires follow from it)."""
    if kind != "interval":
        return None
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=int(spec))
    return first.isoformat()


def fire_window_start(now: datetime, grace: timedelta, last_fire_at: str | None) -> datetime:
    """Where a (re)started daemon starts looking for fire times: never before the grace window, never at or before
    the latest fire already claimed."""
    start = now - grace
    if last_fire_at:
        start = max(start, datetime.fromisoformat(last_fire_at) + timedelta(microseconds=1))
    return start
