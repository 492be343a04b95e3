"""The daemon's composition root: what `mimicbot run` builds, starts in order and stops in reverse.

    store → service → training pool → model cache → posting scheduler → reply poller → heartbeat

The store and the service are built with the `App`; the serving parts are built by `start()` (so a stop and a
start again is a restart) and stopped by `stop()` in reverse order. Nothing here waits for Discord: the core
runs whatever is configured — the training pool always (jobs queued by `mimicbot train` in another process
run here), the schedules (to X, Bluesky, Mastodon and Discord channels), X replies when MIMICBOT_REPLY_MODEL
is set and the X keys are — and each *face* is attached to it:

    app = App(settings)
    await app.serve(stop, faces=[DiscordFace(settings)])   # attach faces, start, wait for `stop`, stop

A face (bot/discord/face.py is the one there is) is built on the service in `attach()` — before the pool
serves, so that it can follow jobs that end at once — begins serving in `start()` and ends in `close()`. It may
register `before_serving` hooks, heartbeat probes (`add_probe`) and the Discord link that posting uses for
`discord:` targets and approval drafts (`attach_discord`). RoboDanny's `launcher.py` has the same shape: the
infrastructure first, then `async with Bot() as bot`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .config import Settings
from .ops import Heartbeat, Probe, heartbeat_path
from .service import Mimicbot

log = logging.getLogger("bot.app")

Hook = Callable[[], Awaitable[None]]


class Face(Protocol):
    """A way for people to reach the daemon (Discord). The core never imports one."""

    name: str

    async def attach(self, app: App) -> None:
        """Build on the app's service before it serves (check credentials, log in, register hooks)."""

    async def start(self) -> None:
        """Begin serving; `finished` completes if the face stops on its own (an error ends the daemon)."""

    async def close(self) -> None: ...

    @property
    def finished(self) -> asyncio.Future | None: ...


@dataclass(frozen=True)
class Part:
    """One line of what the daemon runs: a part, whether it is on, and why (or why not)."""

    name: str
    on: bool
    why: str


DAEMON_SECRETS = ("discord_token", "twitter_api_key", "twitter_access_token", "twitter_bearer_token",
                  "bluesky_app_password", "mastodon_access_token")


def stored_schedules(settings: Settings) -> int:
    """Active schedules in the database, read without creating it (0 when there is none yet)."""
    if not settings.db_path.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("select count(*) from schedules where paused = 0").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # an older database without schedules yet
        return 0


def daemon_reason(settings: Settings, schedules: int) -> str | None:
    """Why `mimicbot start` runs the daemon rather than the offline demo: a network credential, the X reply
    model or a stored schedule. None when nothing is configured."""
    for name in DAEMON_SECRETS:
        if getattr(settings, name):
            return f"{name.upper()} is set"
    if settings.mimicbot_reply_model:
        return "MIMICBOT_REPLY_MODEL is set"
    if schedules:
        return f"{schedules} schedule(s) are stored"
    return None


class App:
    """The daemon's parts, in the order they start. Construct, `serve()` (or `start()` / `stop()`), `close()`."""

    def __init__(self, settings: Settings, service: Mimicbot | None = None):
        self.settings = settings
        self._owns_service = service is None
        self.service = service or Mimicbot(settings)  # opens the store (WAL, migrations)
        self.store = self.service.store
        self.before_serving: list[Hook] = []  # run after the parts are built, before the pool serves
        self.pool = None  # the serving parts, built by start()
        self.posting = None
        self.replies = None
        self._reply_task: asyncio.Task | None = None
        self._heartbeat: Heartbeat | None = None
        self.probes: dict[str, Probe] = {}
        self._stops: list[tuple[str, Hook]] = []
        self.discord_client = None  # set by the Discord face: discord: targets and approval drafts use it
        self.approvals = None
        self.serving = False

    # -- what runs, and why ----------------------------------------------------------------------

    def plan(self) -> list[Part]:
        """Each part of the daemon, on or off, with the reason; printed at start."""
        s = self.settings
        workers = s.train_workers
        where = f"Ray ({s.ray_address or 'a local Ray instance'})" if s.mimicbot_executor == "ray" \
            else "child processes on this machine"
        schedules = self.service.list_schedules()
        active = [r for r in schedules if not r["paused"]]
        targets = sorted({r["target"].partition(":")[0] for r in active})
        unready = [t for t in targets if s.missing_credentials(t)]
        sched_why = (f"{len(active)} active of {len(schedules)}" + (f", to {', '.join(targets)}" if targets else "")
                     if schedules else "no schedules yet (add one with `mimicbot schedule add`)")
        if unready:
            sched_why += "; missing credentials for " + ", ".join(
                f"{t} ({', '.join(s.missing_credentials(t))})" for t in unready)
        posting = [n for n in ("x", "bsky", "mastodon", "discord") if not s.missing_credentials(n)]
        parts = [
            Part("training pool", True, f"{workers} worker(s), {where}"),
            Part("model cache", True, f"up to {s.mimicbot_cache_models} model(s), {s.mimicbot_cache_mb} MB"),
            Part("schedules", True, sched_why),
            Part("posting to", bool(posting), ", ".join(posting) if posting else
                 "no network credentials are set (.env.example lists them): schedules cannot post"),
        ]
        if not s.mimicbot_reply_model:
            parts.append(Part("X replies", False, "MIMICBOT_REPLY_MODEL is not set"))
        elif missing := s.missing_credentials("x"):
            parts.append(Part("X replies", False, f"MIMICBOT_REPLY_MODEL is set but {', '.join(missing)} not"))
        else:
            parts.append(Part("X replies", True, f"model {s.mimicbot_reply_model}, every "
                                                 f"{s.mimicbot_reply_poll_seconds:g} s"))
        parts.append(Part("heartbeat", True, f"{heartbeat_path(s)} every {s.mimicbot_heartbeat_seconds:g} s "
                                             "(read by `mimicbot health`)"))
        discord_why = "DISCORD_TOKEN is set" if s.discord_token else "DISCORD_TOKEN is not set"
        parts.append(Part("Discord bot", bool(s.discord_token), discord_why))
        return parts

    # -- links for faces -------------------------------------------------------------------------

    def add_probe(self, name: str, probe: Probe) -> None:
        """A part's health for the heartbeat (`mimicbot health`)."""
        self.probes[name] = probe

    def attach_discord(self, client, approvals=None) -> None:
        """Posting reaches `discord:` targets through this running client, and sends approval drafts to
        `approvals`; until then (or after `detach_discord`) Discord targets go over REST with DISCORD_TOKEN."""
        self.discord_client, self.approvals = client, approvals
        if self.posting is not None:
            self.posting.discord_client, self.posting.approvals = client, approvals

    def detach_discord(self) -> None:
        self.attach_discord(None, None)

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Build and start the serving parts in order. After `stop()`, this is a restart."""
        from .posting.daemon import PostingDaemon
        from .posting.replies import ReplyConfig, ReplyLoop
        from .training.pool import TrainingPool

        self.pool = TrainingPool(self.store, self.settings)
        self.service.pool = self.pool  # jobs queued through the service start at once
        for hook in list(self.before_serving):
            await hook()
        requeued = await self.pool.start()
        if requeued:
            log.info("training jobs %s were re-queued after a restart", requeued)
        self._stops.append(("training pool", self._stop_pool))
        self.add_probe("pool", self.pool.alive)

        cache = self.service.cache  # built now; models load on first use
        self._stops.append(("model cache", _async(cache.clear)))

        self.posting = PostingDaemon(self.service, discord_client=self.discord_client, approvals=self.approvals)
        await self.posting.start()
        self._stops.append(("schedules", self.posting.stop))
        self.add_probe("schedules", self.posting.alive)

        if self.settings.replies_configured:
            config = ReplyConfig.from_settings(self.settings)
            self.replies = ReplyLoop(self.store, self.settings, self.service.poster, config)
            self._reply_task = asyncio.create_task(self.replies.run(), name="mimicbot-x-replies")
            self._stops.append(("X replies", self._stop_replies))
            self.add_probe("x-replies", lambda: self._reply_task is not None and not self._reply_task.done())

        self._heartbeat = Heartbeat(self.settings, self.probes)
        await self._heartbeat.start()
        self._stops.append(("heartbeat", self._heartbeat.close))
        self.serving = True
        log.info("daemon started: %s", ", ".join(p.name for p in self.plan() if p.on))

    async def stop(self) -> None:
        """Stop the serving parts in reverse order; running training jobs are queued again for the next start."""
        self.serving = False
        while self._stops:
            name, stop = self._stops.pop()
            try:
                await stop()
            except Exception:  # noqa: BLE001 - one part failing to stop must not keep the others running
                log.exception("%s did not stop cleanly", name)
        self.probes.clear()

    def close(self) -> None:
        """Close the store (when the app built the service)."""
        if self._owns_service:
            self.service.close()

    async def serve(self, stop: asyncio.Event, faces: list[Face] = ()) -> None:
        """Attach the faces, start, serve until `stop` is set or a face ends on its own, then shut down:
        faces first (no new commands), then the parts in reverse. A face's error is raised after the stop."""
        attached: list[Face] = []
        error: BaseException | None = None
        try:
            for face in faces:
                await face.attach(self)
                attached.append(face)
            await self.start()
            for face in attached:
                await face.start()
            waits = {asyncio.ensure_future(stop.wait()): None}
            waits.update({f.finished: f for f in attached if f.finished is not None})
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in waits:
                if fut not in done and waits[fut] is None:
                    fut.cancel()
            ended = [waits[f] for f in done if waits[f] is not None]
            if ended:
                face = ended[0]
                error = face.finished.exception() if not face.finished.cancelled() else None
                log.error("the %s face stopped%s; shutting down", face.name, f": {error!r}" if error else "")
            else:
                log.info("stop signal received")
        finally:
            log.info("shutting down: no new commands; stopping watchers, services and the training pool")
            for face in reversed(attached):
                try:
                    await face.close()
                except Exception:  # noqa: BLE001 - the core must still stop
                    log.exception("the %s face did not close cleanly", face.name)
            await self.stop()
            log.info("shut down cleanly")
        if error is not None:
            raise error

    async def _stop_pool(self) -> None:
        pool, self.pool = self.pool, None
        self.service.pool = None
        await pool.close()

    async def _stop_replies(self) -> None:
        task, self._reply_task = self._reply_task, None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.replies = None


def _async(fn: Callable[[], object]) -> Hook:
    async def call() -> None:
        fn()

    return call


async def run_daemon(settings: Settings, stop: asyncio.Event | None = None, *, discord_options=None,
                     on_plan: Callable[[list[Part]], None] | None = None) -> None:
    """`mimicbot run`: the app with every face that is configured, until SIGINT/SIGTERM (or `stop`)."""
    import signal

    faces: list[Face] = []
    if settings.secret("discord_token"):
        from .discord.face import DiscordFace  # the one place the daemon reaches for discord

        faces.append(DiscordFace(settings, discord_options))  # a malformed token fails here, before anything runs
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    app = App(settings)
    try:
        if on_plan is not None:
            on_plan(app.plan())
        await app.serve(stop, faces)
    finally:
        app.close()
        for sig in signals:
            loop.remove_signal_handler(sig)


__all__ = ["App", "Face", "Part", "daemon_reason", "run_daemon", "stored_schedules"]
