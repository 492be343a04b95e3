"""The training pool: real child processes running the real trainer on the tiny model, real SQLite.

Each spawned child imports torch (seconds), so the tests share children where one run can show several
things. The kill and the in-process cancel strike once the child trains; the other stops strike as soon as
the child exists. Tests that never start a child use base model "tiny" without building it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import NotEnoughData, UnknownJob, ValidationError
from bot.samples.generate import sample_path
from bot.service import Mimicbot
from bot.store import Store
from bot.training import jobs
from bot.training.jobs import Owner
from bot.training.follow import follow
from bot.training.pool import TrainingPool
from bot.training.supervisor import Stop, work_dir_for
from tests.helpers import account_js, many_posts, write_archive_zip, ytd

LONG = {"epochs": 1000, "max_steps": None}  # more steps than any test waits for: it runs until it is stopped
WAIT_S = 180  # a safety net against a hang, never a measure of speed
NO_RUN = "tiny"  # the base model of a job no child will train: nothing is built


@pytest.fixture
def bot(settings):
    b = Mimicbot(settings)
    b.fetch_blocking([str(sample_path("ada_bytes")), str(sample_path("grace_gardens"))])
    yield b
    b.close()


@pytest.fixture
async def pool(bot):
    p = TrainingPool(bot.store, bot.settings, workers=1)
    bot.pool = p
    yield p
    await p.close()


async def request(bot, base: str, handles=("ada_bytes",), **hyper):
    return await bot.build_request(list(handles), **({"base_model": base, "seed": 1, "max_steps": 3} | hyper))


async def events_until(pool, job_id, stop_when) -> list[dict]:
    """The job's events up to the first one `stop_when` accepts (or its end)."""
    seen = []
    async with asyncio.timeout(WAIT_S), aclosing(follow(pool.store, job_id)) as events:
        async for event in events:
            seen.append(event)
            if stop_when(event):
                break
    return seen


async def worker_of(bot, job_id: int) -> int:
    """The pid of the job's training child, once it has one."""
    async with asyncio.timeout(WAIT_S):
        while not (pid := bot.job(job_id)["worker_pid"]):
            await asyncio.sleep(0.05)
    return pid


def first_step(event: dict) -> bool:
    return event["type"] == "progress" and (event.get("step") or 0) >= 1


def is_end(event: dict) -> bool:
    return event["type"] == "state" and event["state"] in jobs.TERMINAL


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def gone(pid: int) -> bool:
    return not jobs.pid_alive(pid)


# -- the life of a job ------------------------------------------------------------------------------


async def test_recovered_job_waits_its_turn_survives_a_killed_worker_and_succeeds(bot, pool, tiny_base):
    """One worker. Job 1 runs long and its child is SIGKILLed: it fails with a plain reason. Job 2 was left
    `running` by a process that died: start-up queues it again, it waits for the worker, then succeeds
    with its progress stored."""
    doomed = await pool.submit(await request(bot, tiny_base, **LONG), requested_by="test")
    recovered = bot.submit(await request(bot, tiny_base), requested_by="discord:42", guild_id=7)
    assert jobs.claim(bot.store, Owner(Owner.me().host, dead_pid()), recovered["id"])["state"] == "running"

    assert await pool.start() == [recovered["id"]]
    await events_until(pool, doomed["id"], first_step)
    assert bot.job(recovered["id"])["state"] == "queued"  # one worker: it waits
    child = bot.job(doomed["id"])["worker_pid"]
    os.kill(child, signal.SIGKILL)

    doomed_end = (await events_until(pool, doomed["id"], is_end))[-1]
    assert doomed_end["state"] == "failed"
    assert doomed_end["error"] == "training process was killed by signal 9 (SIGKILL) — out of memory?"
    assert not work_dir_for(bot.settings.models_dir, doomed["id"]).exists()

    events = await events_until(pool, recovered["id"], is_end)
    assert [e["state"] for e in events if e["type"] == "state"][-2:] == ["running", "succeeded"]
    steps = [e["step"] for e in events if e["type"] == "progress" and e.get("step")]
    assert steps and steps[-1] == 3
    job = bot.job(recovered["id"])
    assert job["state"] == "succeeded" and job["error"] is None
    assert (job["step"], job["total"]) == (3, 3) and job["loss"] > 0 and job["progress_at"]
    assert job["owner_pid"] == os.getpid() and job["worker_pid"] is None
    assert job["requested_by"] == "discord:42" and job["guild_id"] == 7
    assert job["result"] == events[-1]["result"] and job["result"]
    assert job["started_at"] <= job["finished_at"]
    assert (bot.settings.models_dir / "ada_bytes" / "training.json").exists()
    assert not work_dir_for(bot.settings.models_dir, recovered["id"]).exists()


async def test_cancel_queued_and_running_jobs_then_a_trainer_error(bot, pool, tiny_base):
    await pool.start()
    running = await pool.submit(await request(bot, tiny_base, **LONG), requested_by="test")
    queued = await pool.submit(await request(bot, tiny_base, ("grace_gardens",)), requested_by="test")
    await events_until(pool, running["id"], first_step)
    work = work_dir_for(bot.settings.models_dir, running["id"])
    child = bot.job(running["id"])["worker_pid"]
    assert work.exists() and not gone(child) and pool.running() == [running["id"]]

    cancelled = await pool.cancel(queued["id"])
    assert cancelled["state"] == "cancelled" and cancelled["started_at"] is None

    cancelled = await pool.cancel(running["id"])
    assert cancelled["state"] == "cancelled" and cancelled["error"] is None
    assert gone(child) and not work.exists()
    assert not (bot.settings.models_dir / "ada_bytes").exists()
    assert (await pool.cancel(running["id"]))["state"] == "cancelled"  # again: nothing to do, no error

    # a trainer exception fails the job with its message, and the pool keeps serving
    # (a folder with a readable config.json but no weights: it passes the checks made before queueing)
    weightless = bot.settings.data_dir / "weightless"
    weightless.mkdir()
    shutil.copy(Path(tiny_base) / "config.json", weightless / "config.json")
    broken = await pool.submit(await request(bot, tiny_base, base_model=str(weightless)), requested_by="test")
    end = (await events_until(pool, broken["id"], is_end))[-1]
    assert end["state"] == "failed"
    assert end["error"].startswith(f"cannot load base model {str(weightless)!r}: ")  # a MimicbotError, as is
    with pytest.raises(ValidationError, match="already failed"):
        await pool.cancel(broken["id"])
    assert bot.job(queued["id"])["state"] == "cancelled"  # never run


async def test_cancel_from_another_process(bot, pool, tiny_base):
    """`mimicbot jobs cancel` in another process sets the flag; the owning pool stops the child."""
    await pool.start()
    job = await pool.submit(await request(bot, tiny_base, **LONG), requested_by="test")
    child = await worker_of(bot, job["id"])
    assert work_dir_for(bot.settings.models_dir, job["id"]).exists()
    env = {**os.environ, "MIMICBOT_DATA_DIR": str(bot.settings.data_dir)}
    cli = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "jobs", "cancel", str(job["id"]),
                                               env=env, stdout=asyncio.subprocess.PIPE)
    end = (await events_until(pool, job["id"], is_end))[-1]
    stdout, _ = await cli.communicate()
    assert cli.returncode == 0 and stdout.decode().strip() == f"job {job['id']} cancelled"
    assert end["state"] == "cancelled" and gone(child)
    assert bot.job(job["id"])["cancel_requested"] is True
    assert not work_dir_for(bot.settings.models_dir, job["id"]).exists()


async def test_close_queues_running_jobs_again(bot, tiny_base):
    pool = TrainingPool(bot.store, bot.settings, workers=1)
    await pool.start()
    job = await pool.submit(await request(bot, tiny_base, **LONG), requested_by="test")
    child = await worker_of(bot, job["id"])
    await pool.close()
    row = bot.job(job["id"])
    assert row["state"] == "queued" and row["owner_pid"] is None and row["started_at"] is None
    assert gone(child) and not work_dir_for(bot.settings.models_dir, job["id"]).exists()


# -- the queue, without children -----------------------------------------------------------------------


async def test_submit_stores_the_request_without_texts(bot):
    req = await request(bot, NO_RUN, ("grace_gardens", "@ADA_BYTES"), epochs=2, lr=1e-3)
    assert req.model_id == "ada_bytes-grace_gardens"
    assert [a.handle for a in req.accounts] == ["grace_gardens", "ada_bytes"]
    assert req.accounts[1].stats["downloaded"] == 400 and len(req.accounts[1].texts) == 319
    job = bot.submit(req, requested_by="cli", status_channel_id=99)
    stored = job["request"]
    assert job["state"] == "queued" and job["status_channel_id"] == 99
    assert (stored["epochs"], stored["lr"], stored["max_steps"]) == (2, 1e-3, 3)
    assert all("texts" not in a for a in stored["accounts"])
    rebuilt = jobs.request_for(bot.store, job)
    assert rebuilt == req  # texts and statistics read back from the store
    jobs.set_status_message(bot.store, job["id"], 99, 1234)
    assert bot.job(job["id"])["status_message_id"] == 1234
    assert [j["id"] for j in bot.jobs()] == [job["id"]]
    assert bot.jobs(("running",)) == []


async def test_claim_is_atomic_across_processes(bot):
    """Two processes race to claim one queued job: exactly one wins."""
    job = bot.submit(await request(bot, NO_RUN), requested_by="test")
    code = ("import sys; from bot.store import Store; from bot.training import jobs;"
            "s = Store(sys.argv[1]); j = jobs.claim(s, jobs.Owner.me(), int(sys.argv[2]));"
            "print('won' if j else 'lost')")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(bot.settings.db_path), str(job["id"])],
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    results = sorted(p.communicate(timeout=WAIT_S)[0].strip() for p in procs)
    assert results == ["lost", "lost", "won"]
    assert bot.job(job["id"])["owner_pid"] in [p.pid for p in procs]


async def test_blocking_run_follows_a_job_another_process_claimed(bot):
    """`mimicbot train` finds its job taken by the daemon: it follows the row, and its Ctrl-C becomes a
    cancel request that the owner carries out. (This test plays the owner through the jobs API.)"""
    job = bot.submit(await request(bot, NO_RUN), requested_by="cli")
    daemon = Owner(Owner.me().host, os.getppid())  # any live process other than this one
    jobs.claim(bot.store, daemon, job["id"])
    seen, stop = [], Stop()
    follower = asyncio.create_task(asyncio.to_thread(bot.run_job, job["id"], seen.append, stop))

    jobs.record_progress(bot.store, job["id"], {"type": "progress", "step": 1, "total": 3, "loss": 2.5,
                                               "tokens_per_s": 10.0, "eta_s": 2.0, "phase": "train"})
    async with asyncio.timeout(WAIT_S):
        while not any(e["type"] == "progress" for e in seen):
            await asyncio.sleep(0.05)
        stop.set("cancel")
        while not bot.job(job["id"])["cancel_requested"]:
            await asyncio.sleep(0.05)
    assert bot.job(job["id"])["state"] == "running"  # only the owner stops it
    jobs.finish(bot.store, job["id"], "cancelled")
    final = await asyncio.wait_for(follower, WAIT_S)

    assert final["state"] == "cancelled" and final["owner_pid"] == daemon.pid
    progress = [e for e in seen if e["type"] == "progress"]
    assert progress[0]["step"] == 1 and progress[0]["loss"] == 2.5
    assert [e["state"] for e in seen if e["type"] == "state"] == ["running", "cancelled"]


async def test_recovery_leaves_live_owners_alone_and_honours_a_pending_cancel(bot):
    alive, orphan, cancelled = [bot.submit(await request(bot, NO_RUN), requested_by="test") for _ in range(3)]
    host = Owner.me().host
    jobs.claim(bot.store, Owner.me(), alive["id"])
    jobs.claim(bot.store, Owner(host, dead_pid()), orphan["id"])
    jobs.claim(bot.store, Owner(host, 999_999_999), cancelled["id"])
    bot.store.db.execute("update jobs set cancel_requested = 1 where id = ?", [cancelled["id"]])
    jobs.record_progress(bot.store, orphan["id"], {"step": 2, "total": 3, "loss": 1.0, "phase": "training"})

    assert jobs.recover(bot.store) == [orphan["id"], cancelled["id"]]
    assert bot.job(alive["id"])["state"] == "running"
    row = bot.job(orphan["id"])
    assert row["state"] == "queued" and row["step"] is None and row["owner_pid"] is None
    assert bot.job(cancelled["id"])["state"] == "cancelled"


async def test_account_removed_after_queueing_fails_the_job(bot, pool):
    job = bot.submit(await request(bot, NO_RUN, ("grace_gardens",)), requested_by="test")
    bot.store.delete_account(bot.store.get_account("x", "grace_gardens")["id"])
    await pool.start()
    end = (await events_until(pool, job["id"], is_end))[-1]
    assert end["state"] == "failed"
    assert end["error"] == f"@grace_gardens (x) was removed from the store after job {job['id']} was queued; fetch it again"


async def test_build_request_errors_leave_the_database_unchanged(bot, tmp_path):
    bot.settings.mimicbot_base_model = "tiny"  # the default, gpt2, is refused first here: the hub is unreachable
    small = write_archive_zip(tmp_path / "tiny_voice.zip", {
        "data/account.js": account_js("tiny_voice", "Tiny Voice"),
        "data/tweets.js": ytd("tweets", many_posts(40)),
    })
    before = snapshot(bot)
    with pytest.raises(NotEnoughData, match=r"^@tiny_voice: not enough tweets: 2,\d{3} characters kept, 6,000 needed$"):
        await bot.build_request(["ada_bytes", str(small)])
    with pytest.raises(ValidationError, match=r"^epochs must be 1 or more \(got 0\)$"):
        await bot.build_request([str(small)], epochs=0)  # refused before the source is read
    with pytest.raises(ValidationError, match="at most 3 accounts; 4 were given"):
        await bot.build_request(["a", "b", "c", "d"])
    with pytest.raises(UnknownJob, match="no training job with id 404"):
        bot.job(404)
    assert snapshot(bot) == before
    assert bot.store.get_account("x", "tiny_voice") is None


def snapshot(bot) -> dict:
    return {t: bot.store.db[t].count for t in ("accounts", "posts", "fetch_runs", "jobs")}


def test_settings_decide_the_worker_count(tmp_path):
    s = Settings(mimicbot_data_dir=tmp_path, mimicbot_models_dir=tmp_path, mimicbot_train_workers=3, _env_file=None)
    store = Store(s.db_path)
    try:
        assert TrainingPool(store, s).workers == 3
    finally:
        store.close()


async def test_the_jobs_of_one_server_are_chosen_in_sql_newest_first(bot, tiny_base):
    """`jobs(states, limit, guild_id)`: a server's queue cap and `/jobs` see that server's jobs only, even when
    other servers' jobs are newer and more numerous than the limit."""
    req = await request(bot, tiny_base)
    mine = [bot.submit(req, requested_by="discord:1", guild_id=7)["id"] for _ in range(2)]
    others = [bot.submit(req, requested_by="discord:2", guild_id=8)["id"] for _ in range(5)]
    assert [j["id"] for j in bot.jobs(None, 3, guild_id=7)] == mine[::-1]
    assert [j["id"] for j in bot.jobs(jobs.ACTIVE, 3, guild_id=8)] == others[::-1][:3]
    bot.cancel(mine[0])
    assert [j["id"] for j in bot.jobs(jobs.ACTIVE, 10, guild_id=7)] == [mine[1]]


async def test_forget_during_a_jobs_save_phase_waits_for_it_and_leaves_nothing(bot, pool, tiny_base):
    """The child is held (SIGSTOP) in its save phase when `forget` runs: forget cancels the job, waits for it
    to have stopped, and only then deletes — no model is published after forget returned."""
    await pool.start()
    job = await pool.submit(await request(bot, tiny_base), requested_by="test")
    async with asyncio.timeout(WAIT_S):
        while (row := bot.job(job["id"]))["phase"] != "save":
            assert row["state"] in jobs.ACTIVE, row
            await asyncio.sleep(0.02)
    os.kill(row["worker_pid"], signal.SIGSTOP)  # mid-save, for as long as forget takes

    report = await asyncio.to_thread(bot.forget, "ada_bytes")
    assert report["cancelled_jobs"] == [job["id"]] and report["jobs"] == [job["id"]]
    assert gone(row["worker_pid"])  # stopped before forget returned
    await asyncio.sleep(1.0)  # and nothing appears afterwards
    models = bot.settings.models_dir
    assert not (models / "ada_bytes").exists() and not work_dir_for(models, job["id"]).exists()
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == []
    assert bot.jobs() == [] and bot.store.find_accounts("ada_bytes") == []
    orphans = "select count(*) as n from posts where account_id not in (select id from accounts)"
    assert bot.store.query(orphans)[0]["n"] == 0


async def test_a_child_killed_mid_save_fails_the_job_and_keeps_the_old_model(bot, pool, tiny_base):
    """SIGKILL in the save phase of a retraining: the job fails with the signal, the model published before is
    untouched and loadable, the work folder is gone, and the next training of the account succeeds."""
    await pool.start()
    first = await pool.submit(await request(bot, tiny_base), requested_by="test")
    assert (await events_until(pool, first["id"], is_end))[-1]["state"] == "succeeded"
    model_dir = bot.settings.models_dir / "ada_bytes"
    before = {p.relative_to(model_dir): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}

    again = await pool.submit(await request(bot, tiny_base, seed=2), requested_by="test")
    async with asyncio.timeout(WAIT_S):
        while (row := bot.job(again["id"]))["phase"] != "save":
            assert row["state"] in jobs.ACTIVE, row
            await asyncio.sleep(0.02)
    os.kill(row["worker_pid"], signal.SIGKILL)
    end = (await events_until(pool, again["id"], is_end))[-1]
    assert end["state"] == "failed" and "signal 9 (SIGKILL)" in end["error"]
    after = {p.relative_to(model_dir): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert after == before
    assert not work_dir_for(bot.settings.models_dir, again["id"]).exists()
    assert bot.generate("ada_bytes", n=1, seed=1).texts  # still loads and samples

    third = await pool.submit(await request(bot, tiny_base, seed=3), requested_by="test")
    assert (await events_until(pool, third["id"], is_end))[-1]["state"] == "succeeded"
