"""The product as its users run it: the installed `mimicbot` console script in a subprocess, on scratch folders.

- `mimicbot start` with no token runs the offline demo to the end (what `make run` does on a fresh clone).
- `mimicbot run` with nothing configured runs the core (training pool, schedules, heartbeat) and says what is off.
- `mimicbot run` with only X credentials (a fake X v2 on 127.0.0.1): a job queued by `mimicbot train --queue` in
  another process is trained by the daemon, a schedule to X fires and posts exactly once, a mention is answered,
  `mimicbot health` is green without Discord, and SIGTERM stops it with exit 0.

The Discord-configured daemon runs the same console script against a fake Discord: tests/discord/test_daemon.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.samples.generate import sample_path
from tests.fakes.x_server import TEST_CREDENTIALS

MIMICBOT = Path(sys.executable).with_name("mimicbot")  # the console script pip installed
SECRETS = ("DISCORD_TOKEN", "TWITTER_BEARER_TOKEN", "TWITTER_API_KEY", "TWITTER_API_SECRET", "TWITTER_ACCESS_TOKEN",
           "TWITTER_ACCESS_SECRET", "BLUESKY_APP_PASSWORD", "MASTODON_ACCESS_TOKEN", "HF_TOKEN",
           "MIMICBOT_REPLY_MODEL")
STOP_WITHIN_S = 30  # docker-compose.yml's stop_grace_period is longer


def scratch_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a person's shell: no tokens, the stores in scratch folders."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("MIMICBOT_")}
    env.update(MIMICBOT_DATA_DIR=str(tmp_path / "data"), MIMICBOT_MODELS_DIR=str(tmp_path / "models"),
               MIMICBOT_HEARTBEAT_SECONDS="1", MIMICBOT_SCHEDULE_POLL_SECONDS="0.5", **extra)
    return env


def mimicbot(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(MIMICBOT), *args], cwd=tmp_path, env=env or scratch_env(tmp_path), text=True,
                          capture_output=True, timeout=timeout)


class Daemon:
    """`mimicbot run` in the background; its output is read when it stops."""

    def __init__(self, tmp_path: Path, env: dict):
        self.tmp_path = tmp_path
        self.log = tmp_path / "daemon.out"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([str(MIMICBOT), "run"], cwd=tmp_path, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, predicate, what: str, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.output()}")
            if value := predicate():
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")

    def stop(self) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to stop)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the daemon did not stop within {STOP_WITHIN_S} s:\n{self.output()}") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def plan_line(output: str, part: str) -> str:
    """The line of the start-up plan about one part ("  schedules      on   ...")."""
    (line,) = [line for line in output.splitlines() if line.startswith(f"  {part} ")]
    return line


def heartbeat(tmp_path: Path) -> dict | None:
    path = tmp_path / "data" / "heartbeat.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.slow
def test_start_without_any_token_runs_the_demo_to_the_end(tmp_path):
    """`make run` on a fresh clone: no .env, no token. The demo fetches, trains, generates and exits 0."""
    result = mimicbot(tmp_path, "start", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "running the offline demo" in result.stderr
    assert "1. fetch" in result.stdout and "3. generate" in result.stdout and "done in" in result.stdout
    model = tmp_path / "models" / "ada_bytes"
    assert (model / "config.json").is_file() and (model / "README.md").is_file()
    assert "Traceback" not in result.stderr


def test_run_with_nothing_configured_serves_the_core_and_says_what_is_off(tmp_path):
    daemon = Daemon(tmp_path, scratch_env(tmp_path))
    try:
        beat = daemon.wait_for(lambda: heartbeat(tmp_path), "the first heartbeat")
        assert set(beat["parts"]) == {"pool", "schedules"}  # no Discord, no replies: not configured, not missing
        health = mimicbot(tmp_path, "health", "--json")
        assert health.returncode == 0, health.stdout + health.stderr
        assert {c["name"] for c in json.loads(health.stdout)["checks"]} == {"database", "daemon", "pool", "schedules"}
        code, took = daemon.stop()
    finally:
        daemon.kill()
    out = daemon.output()
    assert code == 0, out
    assert plan_line(out, "training pool").split()[2] == "on"
    assert plan_line(out, "schedules").split()[1] == "on"
    assert plan_line(out, "Discord bot").split()[2:] == ["off", "DISCORD_TOKEN", "is", "not", "set"]
    assert plan_line(out, "X replies").split()[2:] == ["off", "MIMICBOT_REPLY_MODEL", "is", "not", "set"]
    assert "stopped" in out and "Traceback" not in out
    assert heartbeat(tmp_path) is None  # removed at the stop: health now fails at once
    assert mimicbot(tmp_path, "health").returncode == 1


@pytest.mark.slow
def test_run_with_only_x_credentials_trains_queued_jobs_posts_schedules_and_replies(tmp_path, x_server):
    env = scratch_env(tmp_path, TWITTER_API_BASE=x_server.url, MIMICBOT_REPLY_POLL_SECONDS="0.5",
                      **{k.upper(): v for k, v in TEST_CREDENTIALS.items() if k != "twitter_bearer_token"})
    fetched = mimicbot(tmp_path, "fetch", str(sample_path("ada_bytes")), env=env)
    assert fetched.returncode == 0, fetched.stderr
    daemon = Daemon(tmp_path, {**env, "MIMICBOT_REPLY_MODEL": "ada_bytes"})
    try:
        daemon.wait_for(lambda: heartbeat(tmp_path), "the first heartbeat")

        # a job queued by the CLI in another process is trained by the daemon
        queued = mimicbot(tmp_path, "train", "ada_bytes", "--base-model", "tiny", "--max-steps", "2", "--queue",
                          "--json", env=env)
        assert queued.returncode == 0, queued.stderr
        job_id = json.loads(queued.stdout)["job"]["id"]

        def finished():
            row = json.loads(mimicbot(tmp_path, "jobs", "show", str(job_id), "--json", env=env).stdout)
            return row if row["state"] in ("succeeded", "failed", "cancelled") else None

        job = daemon.wait_for(finished, f"job {job_id} to end", timeout=300)
        assert job["state"] == "succeeded", job["error"]
        assert job["owner_pid"] == daemon.proc.pid  # the daemon ran it, not the CLI

        # a schedule to X fires once (asked to run now) and posts exactly once
        added = mimicbot(tmp_path, "schedule", "add", "ada_bytes", "--to", "x", "--every", "6h", "--json", env=env)
        assert added.returncode == 0, added.stderr
        schedule_id = json.loads(added.stdout)["id"]
        assert mimicbot(tmp_path, "schedule", "run-now", str(schedule_id), env=env).returncode == 0
        ours = lambda: [t for t in x_server.tweets if t.author_id == x_server.me.id]  # noqa: E731
        daemon.wait_for(ours, "the scheduled post")
        time.sleep(2)  # several more schedule polls: nothing more is sent
        (post,) = ours()
        assert post.text.endswith(" 🤖") and post.in_reply_to_user_id is None

        # a mention is answered in the model's voice
        fan = x_server.add_user("fan")
        mention = x_server.add_tweet(fan, "@mimicbot what are you up to today?", created_at=datetime.now(UTC))
        reply = daemon.wait_for(lambda: [t for t in ours() if t.referenced_tweets and
                                         t.referenced_tweets[0]["id"] == str(mention.id)], "the reply")
        assert len(reply) == 1 and reply[0].in_reply_to_user_id == fan.id

        beat = heartbeat(tmp_path)
        assert set(beat["parts"]) == {"pool", "schedules", "x-replies"} and all(
            p["ok"] for p in beat["parts"].values())
        health = mimicbot(tmp_path, "health", env={**env, "MIMICBOT_REPLY_MODEL": "ada_bytes"})
        assert health.returncode == 0, health.stdout + health.stderr
        code, took = daemon.stop()
    finally:
        daemon.kill()
    out = daemon.output()
    assert code == 0 and took < STOP_WITHIN_S, out
    assert plan_line(out, "posting to").split()[2:] == ["on", "x"]
    assert plan_line(out, "X replies").split()[2:4] == ["on", "model"]
    assert "off" in plan_line(out, "Discord bot")
    for secret in TEST_CREDENTIALS.values():
        assert secret not in out
    assert len([t for t in x_server.tweets if t.author_id == x_server.me.id]) == 2  # one post, one reply


def test_forget_through_the_console_script(tmp_path):
    """An admin imports an account, asks what forget would delete, then forgets it; an unknown handle is one
    line and exit 2."""
    env = scratch_env(tmp_path)
    assert mimicbot(tmp_path, "fetch", str(sample_path("ada_bytes")), env=env).returncode == 0
    unknown = mimicbot(tmp_path, "forget", "nobody_here", "--yes", env=env)
    assert unknown.returncode == 2 and unknown.stderr.strip() == "error: nothing is stored for @nobody_here"
    plan = mimicbot(tmp_path, "forget", "@Ada_Bytes", "--dry-run", "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["posts"] == 400 and json.loads(plan.stdout)["accounts"] == 1
    listed = mimicbot(tmp_path, "accounts", "list", "--json", env=env)
    assert [a["handle"] for a in json.loads(listed.stdout)] == ["ada_bytes"]  # a dry run deletes nothing
    done = mimicbot(tmp_path, "forget", "ada_bytes", "--yes", env=env)
    assert done.returncode == 0 and done.stdout.startswith("deleted @ada_bytes: 400 posts from 1 account(s)")
    listed = mimicbot(tmp_path, "accounts", "list", "--json", env=env)
    assert json.loads(listed.stdout) == []


def _job(tmp_path: Path, env: dict, job_id: int) -> dict:
    """The job's row, read straight from SQLite: polling through the CLI would start a Python process every
    0.2 s and starve the training it waits for."""
    con = sqlite3.connect(f"file:{tmp_path / 'data' / 'mimicbot.db'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("select * from jobs where id = ?", [job_id]).fetchone())
    finally:
        con.close()


@pytest.mark.slow
def test_a_killed_daemon_trains_the_job_again_and_never_posts_twice(tmp_path, x_server):
    """SIGKILL of the daemon while it trains: after a restart the job runs again and succeeds. SIGKILL while a
    post's request is in flight: after a restart the post is not sent again, and the ledger keeps the entry
    for a person to settle (never `sent` twice, never retried)."""
    env = scratch_env(tmp_path, TWITTER_API_BASE=x_server.url,
                      **{k.upper(): v for k, v in TEST_CREDENTIALS.items() if k != "twitter_bearer_token"})
    assert mimicbot(tmp_path, "fetch", str(sample_path("ada_bytes")), env=env).returncode == 0
    daemon = Daemon(tmp_path, env)
    try:
        daemon.wait_for(lambda: heartbeat(tmp_path), "the first heartbeat")
        queued = mimicbot(tmp_path, "train", "ada_bytes", "--base-model", "tiny", "--max-steps", "40", "--queue",
                          "--json", env=env)
        job_id = json.loads(queued.stdout)["job"]["id"]
        row = daemon.wait_for(lambda: (r := _job(tmp_path, env, job_id))["step"] and r, "the first training step",
                              timeout=600)
        daemon.kill()  # SIGKILL, mid-training
        child = row["worker_pid"]
        deadline = time.monotonic() + 30
        while child and time.monotonic() < deadline and os.path.exists(f"/proc/{child}") and \
                open(f"/proc/{child}/stat").read().split()[2] != "Z":
            time.sleep(0.2)  # the orphaned training child notices and stops by itself
        assert _job(tmp_path, env, job_id)["state"] == "running"  # as the killed daemon left it

        daemon = Daemon(tmp_path, env)
        final = daemon.wait_for(lambda: (r := _job(tmp_path, env, job_id))["state"] in ("succeeded", "failed") and r,
                                "the job to run again and end", timeout=600)
        assert final["state"] == "succeeded" and final["owner_pid"] == daemon.proc.pid, final["error"]

        added = mimicbot(tmp_path, "schedule", "add", "ada_bytes", "--to", "x", "--every", "6h", "--json", env=env)
        schedule_id = json.loads(added.stdout)["id"]
        x_server.stall(1, seconds=20)  # the post's request hangs
        assert mimicbot(tmp_path, "schedule", "run-now", str(schedule_id), env=env).returncode == 0
        posts = lambda: [r for r in x_server.requests_to("/2/tweets") if r.method == "POST"]  # noqa: E731
        daemon.wait_for(posts, "the post's request")
        daemon.kill()  # SIGKILL, while the request is in flight

        daemon = Daemon(tmp_path, env)
        daemon.wait_for(lambda: heartbeat(tmp_path), "the heartbeat after the restart")
        time.sleep(4)  # several schedule polls
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert len(posts()) == 1  # sent at most once
    (entry,) = json.loads(mimicbot(tmp_path, "outgoing", "list", "--json", env=env).stdout)
    assert entry["status"] in ("sending", "unknown") and entry["remote_id"] is None  # for a person to settle
    schedules = json.loads(mimicbot(tmp_path, "schedule", "list", "--json", env=env).stdout)
    assert [s["id"] for s in schedules] == [schedule_id]
