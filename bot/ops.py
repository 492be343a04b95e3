"""Operations: logging set-up, the daemon's heartbeat and `mimicbot health`, and online database backups.

Logs go to stderr (human lines) and to a rotating file of JSON lines, `<data dir>/logs/mimicbot.log`. Both
pass through the process's redactor (bot/redaction.py), which replaces every secret setting's value, in any
encoding, with `***`, so a token that reaches a message or a traceback is never written out.

The daemon (`mimicbot run`, bot/app.py) proves it is alive by rewriting `<data dir>/heartbeat.json` every
MIMICBOT_HEARTBEAT_SECONDS with the state of its parts (training pool, schedules, and X replies and Discord when
they are configured): `heartbeat_loop` does that. `mimicbot health` — Docker's healthcheck — reads it in another
process, checks that the database answers, that the heartbeat is fresh and all green, and that every part the
settings configure is there, and exits 0 or 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .atomic import atomic_path, write_atomic
from .config import Settings
from .errors import MimicbotError, ValidationError
from .redaction import Redactor, redact

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HEARTBEAT_FILE = "heartbeat.json"
STALE_AFTER_BEATS = 3  # a heartbeat older than this many intervals means the daemon is stuck or gone


class BackupError(MimicbotError):
    """A database backup could not be made; nothing was written at the destination."""


# -- logging --------------------------------------------------------------------------------------


class ConsoleFormatter(logging.Formatter):
    """The classic one-line format, redacted (tracebacks included)."""

    def __init__(self, redact: Callable[[str], str] = redact):
        super().__init__(CONSOLE_FORMAT)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, pid, and exc when there is a traceback."""

    def __init__(self, redact: Callable[[str], str] = redact):
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": self.redact(record.getMessage()),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exc"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (test runners and CliRunner swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_file_for(settings: Settings) -> Path:
    return settings.data_dir / "logs" / "mimicbot.log"


def setup_logging(level: str = "WARNING", settings: Settings | None = None, *, to_file: bool = True) -> Path | None:
    """Configure the root logger: stderr at `level` and, when `to_file`, the rotating JSON-lines file at `level`
    or INFO, whichever is lower (an operator's record of the daemon, whatever the console shows). Returns that file.

    Safe to call again (each call replaces the handlers an earlier one installed). Raises ValidationError for an
    unknown level. Without `settings`, they are loaded; if they cannot be, logging goes to stderr only and the
    command that needs them reports the problem itself.
    """
    name = level.upper()
    if name not in LOG_LEVELS:
        raise ValidationError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
    if settings is None:
        settings = _settings_or_none()
    if settings is not None:
        Redactor.for_settings(settings)  # registers its secrets: `redact` hides them, and any a client registers
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_mimicbot", False)]:
        root.removeHandler(handler)
        handler.close()
    console = StderrHandler()
    console.setFormatter(ConsoleFormatter(redact))
    handlers: list[logging.Handler] = [console]
    path = problem = None
    if to_file and settings is not None:
        try:
            rotating = _rotating_file(settings, redact)
        except OSError as e:  # an unwritable data dir must not stop `mimicbot health` or a fix from running
            problem = f"cannot write the log file {log_file_for(settings)}: {e}"
        else:
            rotating.setLevel(min(logging.getLevelName(name), logging.INFO))  # INFO whatever the console shows
            handlers.append(rotating)
            path = log_file_for(settings)
    console.setLevel(name)
    for handler in handlers:
        handler._mimicbot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    if problem:
        log.warning(problem)
    return path


def _rotating_file(settings: Settings, redact: Callable[[str], str]) -> logging.Handler:
    path = log_file_for(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=settings.mimicbot_log_file_mb * 1024 * 1024, backupCount=settings.mimicbot_log_backups,
        encoding="utf-8",
    )
    handler.setFormatter(JsonFormatter(redact))
    return handler


def _settings_or_none() -> Settings | None:
    try:
        return Settings()
    except Exception:  # noqa: BLE001 - a bad setting is reported by the command that reads it
        return None


# -- heartbeat ------------------------------------------------------------------------------------

Probe = Callable[[], bool]


def heartbeat_path(settings: Settings) -> Path:
    return settings.data_dir / HEARTBEAT_FILE


def _probe(fn: Probe) -> dict:
    try:
        return {"ok": bool(fn()), "detail": ""}
    except Exception as e:  # noqa: BLE001 - a probe that raises is a failed part, not a dead heartbeat
        return {"ok": False, "detail": f"{type(e).__name__}: {e}"}


def write_heartbeat(settings: Settings, probes: Mapping[str, Probe]) -> dict:
    """Run each probe and atomically (temp file, then rename) write the heartbeat; returns what was written."""
    beat = {
        "at": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "parts": {name: _probe(fn) for name, fn in probes.items()},
    }
    path = heartbeat_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(beat))
    return beat


async def heartbeat_loop(settings: Settings, probes: Mapping[str, Probe]) -> None:
    """Write the heartbeat now and every MIMICBOT_HEARTBEAT_SECONDS until cancelled; then remove it, so that a
    daemon that stopped is reported at once. Run it as a task of the daemon's event loop, e.g.
    `asyncio.create_task(heartbeat_loop(settings, {"discord": bot.is_ready, "pool": pool.alive}))`."""
    try:
        while True:
            try:
                write_heartbeat(settings, probes)
            except OSError as e:  # a full disk must not kill the daemon; health will see the stale beat
                log.warning("could not write the heartbeat: %s", e)
            await asyncio.sleep(settings.mimicbot_heartbeat_seconds)
    finally:
        heartbeat_path(settings).unlink(missing_ok=True)


class Heartbeat:
    """`heartbeat_loop` as one of the daemon's services (`bot.add_service(Heartbeat(settings, probes))`):
    `start` begins beating, `close` stops and removes the heartbeat."""

    def __init__(self, settings: Settings, probes: Mapping[str, Probe]):
        self.settings, self.probes = settings, probes
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(heartbeat_loop(self.settings, self.probes), name="mimicbot-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- health ---------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def check_health(settings: Settings, now: float | None = None) -> list[Check]:
    """The database, then the daemon's heartbeat and each part it reported."""
    return [check_database(settings.db_path), *check_heartbeat(settings, now)]


def check_database(db_path: Path) -> Check:
    """The database file exists and answers a query (never creates it)."""
    if not db_path.is_file():
        return Check("database", False, f"no database at {db_path}")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            tables = conn.execute("select count(*) from sqlite_master where type = 'table'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        return Check("database", False, f"{db_path}: {e}")
    return Check("database", True, f"{db_path} ({tables} tables)")


def check_heartbeat(settings: Settings, now: float | None = None) -> list[Check]:
    path = heartbeat_path(settings)
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
        age = (now if now is not None else time.time()) - float(beat["at"])
        parts = dict(beat.get("parts") or {})
    except FileNotFoundError:
        return [Check("daemon", False, f"no heartbeat at {path}: is `mimicbot run` running?")]
    except (ValueError, KeyError, TypeError, OSError) as e:
        return [Check("daemon", False, f"unreadable heartbeat {path}: {e}")]
    limit = STALE_AFTER_BEATS * settings.mimicbot_heartbeat_seconds
    if age > limit:
        return [Check("daemon", False, f"last heartbeat {age:.0f} s ago (limit {limit:.0f} s): stuck or stopped")]
    checks = [Check("daemon", True, f"pid {beat.get('pid')} on {beat.get('host')}, heartbeat {age:.0f} s ago")]
    for name, part in sorted(parts.items()):
        ok = bool(part.get("ok"))
        checks.append(Check(name, ok, part.get("detail") or ("up" if ok else "down")))
    for name in sorted(expected_parts(settings) - set(parts)):
        checks.append(Check(name, False, "configured, but the running daemon does not run it (restart it after "
                                         "changing the settings)"))
    return checks


def expected_parts(settings: Settings) -> set[str]:
    """The heartbeat parts the daemon runs with these settings: Discord and X replies only when configured, so
    that a daemon without Discord is healthy without it."""
    parts = {"pool", "schedules"}
    if settings.discord_token:
        parts.add("discord")
    if settings.replies_configured:
        parts.add("x-replies")
    return parts


# -- backup ---------------------------------------------------------------------------------------


def backup_database(source: Path, dest: Path) -> Path:
    """Copy a live SQLite database with SQLite's online backup API; returns the file written.

    `dest` is a file path, or a folder — one that exists, or any path ending in `/`, created when missing — to
    write `mimicbot-<UTC time>.db` into. The copy is written
    to a temporary file beside `dest`, checked (`PRAGMA integrity_check`), switched out of WAL mode so that it
    is one self-contained file, and only then renamed over `dest`: a failed backup leaves nothing behind and
    never damages an earlier backup. Writers are not blocked while it runs (WAL).
    """
    as_folder = str(dest).endswith(("/", os.sep)) or Path(dest).is_dir()
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if as_folder:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BackupError(f"cannot create the folder {dest}: {e.strerror or e}") from None
        dest = dest / f"mimicbot-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.db"
    if not dest.parent.is_dir():
        raise BackupError(f"folder {dest.parent} does not exist")
    if dest.exists() and dest.resolve() == source.resolve():
        raise BackupError("the backup path is the live database itself; choose another path")
    with atomic_path(dest) as tmp:
        _copy_checked(source, tmp)
    log.info("backed up %s to %s (%d bytes)", source, dest, dest.stat().st_size)
    return dest


def _copy_checked(source: Path, tmp: Path) -> None:
    try:
        src = sqlite3.connect(str(source), timeout=30)
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
            result = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as e:
        raise BackupError(f"could not back up {source}: {e}") from None
    if result != "ok":
        raise BackupError(f"the copy of {source} failed its integrity check: {result}")
