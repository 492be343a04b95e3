"""Schedules: validation, the CLI, and the daemon's runner (apscheduler on a controllable clock) posting to the
fake X API — fires on time, picks up edits without a restart, never double-posts across a restart, never
posts a backlog beyond the grace window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.errors import UnknownModel, ValidationError
from bot.posting.base import UnknownSchedule
from bot.posting.daemon import PostingDaemon
from bot.posting.ledger import Ledger
from bot.service import Mimicbot
from tests.kit.posting import START, posting_settings

TWEETS = "/2/tweets"


@pytest.fixture
def model_id(trained_models) -> str:
    return trained_models[1]


# -- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cron, message", [
    ("* * *", "expected 5 fields"),
    ("61 * * * *", "bad cron expression '61 \\* \\* \\* \\*'"),
    ("0 9 * * funday", "bad cron expression"),
    ("*/0 * * * *", "bad cron expression"),
])
def test_bad_cron_is_a_clear_validation_error(posting_service, model_id, cron, message):
    with pytest.raises(ValidationError, match=message):
        posting_service.add_schedule(model_id, "x", cron=cron)
    assert posting_service.list_schedules() == []  # nothing stored


@pytest.mark.parametrize("kwargs, message", [
    ({"every": "30s"}, "under a minute"),
    ({"every": "soon"}, "bad interval 'soon'"),
    ({"every": "1h", "cron": "0 9 * * *"}, "exactly one"),
    ({}, "exactly one"),
    ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"every": "1h", "require_approval": True}, "needs a Discord channel"),
])
def test_other_bad_schedules(posting_service, model_id, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        posting_service.add_schedule(model_id, "x", **kwargs)


def test_bad_target_and_model(posting_service, model_id):
    with pytest.raises(ValidationError, match="bad target 'discord:general'"):
        posting_service.add_schedule(model_id, "discord:general", every="1h")
    with pytest.raises(UnknownModel):
        posting_service.add_schedule("nobody", "x", every="1h")
    with pytest.raises(UnknownSchedule):
        posting_service.pause_schedule(42)


def test_schedule_crud_and_next_fire(posting_service, model_id, clock):
    cron = posting_service.add_schedule(model_id, "x", cron="0 9  * * mon-fri", timezone="Europe/Paris")
    every = posting_service.add_schedule(model_id, "discord:123456789012345678", every="every 1h30m")
    rows = {r["id"]: r for r in posting_service.list_schedules()}
    assert rows[cron["id"]]["spec"] == "0 9 * * mon-fri" and rows[cron["id"]]["when"] == "cron 0 9 * * mon-fri (Europe/Paris)"
    # 08:59:30 UTC on Monday is 09:59:30 in Paris: the next 09:00 Paris is Tuesday 08:00 UTC
    assert rows[cron["id"]]["next_fire"] == "2031-03-04T09:00:00+01:00"
    assert rows[every["id"]]["when"] == "every 1h30m" and rows[every["id"]]["spec"] == "5400"
    assert datetime.fromisoformat(rows[every["id"]]["next_fire"]) == START + timedelta(minutes=90)

    version = posting_service.schedules.version()
    paused = posting_service.pause_schedule(every["id"])
    assert paused["paused"] == 1 and paused["rev"] == 2 and posting_service.schedules.version() == version + 1
    assert {r["id"]: r for r in posting_service.list_schedules()}[every["id"]]["next_fire"] is None
    posting_service.remove_schedule(cron["id"])
    assert [r["id"] for r in posting_service.list_schedules()] == [every["id"]]


def test_cli_schedule_commands(tmp_path, trained_models, monkeypatch, clock):
    models_dir, model_id = trained_models
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(models_dir))
    _register()
    runner = CliRunner()
    added = runner.invoke(app, ["schedule", "add", model_id, "--to", "x", "--cron", "30 9 * * *", "--json"])
    assert added.exit_code == 0, added.output
    assert '"kind": "cron"' in added.output
    listed = runner.invoke(app, ["schedule", "list", "--json"])
    assert '"next_fire": "2031-03-03T09:30:00+00:00"' in listed.output
    bad = runner.invoke(app, ["schedule", "add", model_id, "--to", "x", "--cron", "99 * * * *"])
    assert bad.exit_code == 2 and "bad cron expression '99 * * * *'" in bad.output
    for verb in ("pause", "resume", "run-now"):
        result = runner.invoke(app, ["schedule", verb, "1"])
        assert result.exit_code == 0, result.output
    bot = Mimicbot(posting_settings(tmp_path, models_dir))
    row = bot.schedules.get(1)
    assert row["paused"] == 0 and row["run_requested_at"] and row["rev"] == 4
    bot.close()
    assert runner.invoke(app, ["schedule", "rm", "1"]).exit_code == 0
    missing = runner.invoke(app, ["schedule", "rm", "1"])
    assert missing.exit_code == 2 and "no schedule with id 1" in missing.output


# -- the runner -----------------------------------------------------------------------------------------------


async def fire_at(daemon: PostingDaemon, clock, when: datetime) -> None:
    """Move the clock to `when`, let the scheduler look, wait for the fires it started."""
    clock.move_to(when)
    daemon.runner.wakeup()
    await daemon.runner.settle()


async def test_a_schedule_fires_on_time_and_only_then(posting_service, model_id, x_server, clock):
    schedule = posting_service.add_schedule(model_id, "x", cron="0 9 * * *")
    daemon = PostingDaemon(posting_service)
    await daemon.start()
    try:
        await fire_at(daemon, clock, START + timedelta(seconds=20))  # 08:59:50
        assert x_server.requests_to(TWEETS) == []
        await fire_at(daemon, clock, datetime(2031, 3, 3, 9, 0, 1, tzinfo=UTC))
        assert len(x_server.requests_to(TWEETS)) == 1
        entry = Ledger(posting_service.store).list()[0]
        assert entry["status"] == "sent" and entry["schedule_id"] == schedule["id"]
        assert entry["fire_key"] == f"schedule:{schedule['id']}:2031-03-03T09:00:00+00:00"
        assert entry["remote_id"] == str(x_server.tweets[-1].id)
        row = posting_service.schedules.get(schedule["id"])
        assert row["last_status"] == "sent" and row["last_fire_at"] == "2031-03-03T09:00:00+00:00"
        assert daemon.runner.next_run_time(schedule["id"]) == datetime(2031, 3, 4, 9, tzinfo=UTC)
        await fire_at(daemon, clock, datetime(2031, 3, 3, 9, 0, 50, tzinfo=UTC))
        assert len(x_server.requests_to(TWEETS)) == 1
    finally:
        await daemon.stop()


async def test_a_restart_in_between_never_double_posts(posting_service, model_id, x_server, clock):
    posting_service.add_schedule(model_id, "x", cron="0 9 * * *")
    first = PostingDaemon(posting_service)
    await first.start()
    await fire_at(first, clock, datetime(2031, 3, 3, 9, 0, 2, tzinfo=UTC))
    await first.stop()
    assert len(x_server.requests_to(TWEETS)) == 1

    # a restart inside the grace window of the fire that just happened
    second = PostingDaemon(posting_service)
    clock.move_to(datetime(2031, 3, 3, 9, 0, 30, tzinfo=UTC))
    await second.start()
    try:
        await fire_at(second, clock, datetime(2031, 3, 3, 9, 1, 0, tzinfo=UTC))
        assert len(x_server.requests_to(TWEETS)) == 1
        assert second.runner.next_run_time(1) == datetime(2031, 3, 4, 9, tzinfo=UTC)
        await fire_at(second, clock, datetime(2031, 3, 4, 9, 0, 5, tzinfo=UTC))  # the next day: one more
        assert len(x_server.requests_to(TWEETS)) == 2
    finally:
        await second.stop()


async def test_a_fire_missed_while_down_runs_once_within_grace_and_never_beyond(posting_service, model_id, x_server, clock):
    posting_service.add_schedule(model_id, "x", every="1h")  # created at 08:59:30: fires 09:59:30, 10:59:30, ...
    # down from before 09:59:30; back at 10:00:30, 60 s late (grace 120 s): that fire runs once, late
    clock.move_to(datetime(2031, 3, 3, 10, 0, 30, tzinfo=UTC))
    daemon = PostingDaemon(posting_service)
    await daemon.start()
    await daemon.runner.settle()
    await fire_at(daemon, clock, datetime(2031, 3, 3, 10, 0, 31, tzinfo=UTC))
    await daemon.stop()
    assert len(x_server.requests_to(TWEETS)) == 1
    assert Ledger(posting_service.store).list()[0]["fire_key"].endswith("09:59:30+00:00")

    # down again for hours: 10:59:30 … 13:59:30 are all missed; back at 14:05 (beyond the grace): nothing
    clock.move_to(datetime(2031, 3, 3, 14, 5, tzinfo=UTC))
    daemon = PostingDaemon(posting_service)
    await daemon.start()
    try:
        await daemon.runner.settle()
        await fire_at(daemon, clock, datetime(2031, 3, 3, 14, 5, 1, tzinfo=UTC))
        assert len(x_server.requests_to(TWEETS)) == 1
        assert daemon.runner.next_run_time(1) == datetime(2031, 3, 3, 14, 59, 30, tzinfo=UTC)
    finally:
        await daemon.stop()


async def test_many_due_times_coalesce_into_one_post(posting_service, model_id, x_server, clock):
    posting_service.add_schedule(model_id, "x", every="1m")
    daemon = PostingDaemon(posting_service)
    await daemon.start()
    try:
        await daemon.runner.settle()
        # the event loop was busy for 90 s: two fire times passed, one post is made
        await fire_at(daemon, clock, START + timedelta(seconds=121))
        assert len(x_server.requests_to(TWEETS)) == 1
        assert Ledger(posting_service.store).list()[0]["fire_key"].endswith("09:01:30+00:00")
    finally:
        await daemon.stop()


async def test_edits_are_picked_up_without_a_restart(posting_service, model_id, x_server, clock):
    daemon = PostingDaemon(posting_service)
    await daemon.start()
    try:
        # another process (the CLI) adds a schedule: the daemon sees it at its next poll
        other = Mimicbot(posting_service.settings)
        schedule = other.add_schedule(model_id, "x", cron="0 9 * * *")
        assert daemon.runner.next_run_time(schedule["id"]) is None
        assert await daemon.runner.sync() is True
        assert daemon.runner.next_run_time(schedule["id"]) == datetime(2031, 3, 3, 9, tzinfo=UTC)
        assert await daemon.runner.sync() is False  # nothing changed since

        other.pause_schedule(schedule["id"])
        await daemon.runner.sync()
        assert daemon.runner.next_run_time(schedule["id"]) is None
        await fire_at(daemon, clock, datetime(2031, 3, 3, 9, 0, 5, tzinfo=UTC))
        assert x_server.requests_to(TWEETS) == []  # paused: no post

        other.resume_schedule(schedule["id"])
        await daemon.runner.sync()
        assert daemon.runner.next_run_time(schedule["id"]) == datetime(2031, 3, 4, 9, tzinfo=UTC)

        other.run_schedule_now(schedule["id"])
        await daemon.runner.sync()
        await daemon.runner.settle()
        assert len(x_server.requests_to(TWEETS)) == 1
        assert ":manual:" in Ledger(posting_service.store).list()[0]["fire_key"]
        await daemon.runner.sync()
        await daemon.runner.settle()
        assert len(x_server.requests_to(TWEETS)) == 1  # the request is consumed once

        other.remove_schedule(schedule["id"])
        await daemon.runner.sync()
        assert daemon.runner.scheduler.get_jobs() == []
        other.close()
    finally:
        await daemon.stop()


async def test_the_poll_loop_notices_edits_by_itself(tmp_path, trained_models, x_server, clock):
    models_dir, model_id = trained_models
    bot = Mimicbot(posting_settings(tmp_path, models_dir, x_server.url, mimicbot_schedule_poll_seconds=0.01))
    daemon = PostingDaemon(bot)
    await daemon.start()
    try:
        schedule = bot.add_schedule(model_id, "x", every="5m")
        for _ in range(200):  # real time, but only until the poller (every 10 ms) has seen the edit
            if daemon.runner.next_run_time(schedule["id"]) is not None:
                break
            await __import__("asyncio").sleep(0.01)
        assert daemon.runner.next_run_time(schedule["id"]) == START + timedelta(minutes=5)
    finally:
        await daemon.stop()
        bot.close()


async def test_a_schedule_with_a_prompt_fires_with_that_opener(posting_service, model_id, x_server, clock):
    plain = posting_service.add_schedule(model_id, "x", cron="0 9 * * *")
    opened = posting_service.add_schedule(model_id, "x", cron="0 9 * * *", prompt="  Hot take: ")
    assert plain["prompt"] is None and opened["prompt"] == "Hot take:"
    assert [r["prompt"] for r in posting_service.list_schedules()] == [None, "Hot take:"]
    with pytest.raises(ValidationError, match="at most 200"):
        posting_service.add_schedule(model_id, "x", cron="0 9 * * *", prompt="x" * 201)
    with pytest.raises(ValidationError, match="U\\+202E"):  # the same rule as a person's prompt: no hidden reordering
        posting_service.add_schedule(model_id, "x", cron="0 9 * * *", prompt="Hot \u202etake")
    assert len(posting_service.list_schedules()) == 2
    daemon = PostingDaemon(posting_service)
    await daemon.start()
    try:
        await fire_at(daemon, clock, datetime(2031, 3, 3, 9, 0, 1, tzinfo=UTC))
    finally:
        await daemon.stop()
    sent = {e["schedule_id"]: e["text"] for e in Ledger(posting_service.store).list() if e["status"] == "sent"}
    assert set(sent) == {plain["id"], opened["id"]}
    assert sent[opened["id"]].startswith("Hot take:")
    assert len(x_server.requests_to(TWEETS)) == 2
