"""`mimicbot train` and `mimicbot jobs`: through typer's CliRunner, and as a real process for Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.samples.generate import sample_path
from bot.store import Store
from bot.training import jobs
from bot.training.jobs import pid_alive
from bot.training.supervisor import work_dir_for
from tests.helpers import account_js, many_posts, write_archive_zip, ytd

runner = CliRunner()
WAIT_S = 180  # a safety net against a hang, never a measure of speed


def _cli(*args):
    _register()
    return runner.invoke(app, list(args))


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    return settings


def _tables(settings) -> dict:
    """Every row of the tables training touches, read with plain sqlite3 (another process may be writing)."""
    con = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        names = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
        return {t: [dict(r) for r in con.execute(f"select * from {t} order by rowid")]
                for t in ("accounts", "posts", "fetch_runs", "jobs") if t in names}
    finally:
        con.close()


def test_train_json_then_list_show_and_cancel(env):
    res = _cli("train", str(sample_path("ada_bytes")), "--base-model", "tiny", "--max-steps", "3", "--seed", "5",
               "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    job, model = data["job"], data["model"]
    assert job["state"] == "succeeded" and job["requested_by"] == "cli" and job["error"] is None
    assert (job["step"], job["total"]) == (3, 3) and job["loss"] > 0 and "result" not in job
    assert job["request"]["base_model"] == "tiny" and job["request"]["max_steps"] == 3 and job["request"]["seed"] == 5
    assert model["id"] == "ada_bytes" and model["path"] == str(env.models_dir.resolve() / "ada_bytes")
    assert model["training"]["steps"] == 3 and model["training"]["hyperparameters"]["seed"] == 5
    assert os.path.isdir(model["path"]) and not work_dir_for(env.models_dir, job["id"]).exists()
    tables = _tables(env)
    assert [a["handle"] for a in tables["accounts"]] == ["ada_bytes"]  # fetched first
    assert len(tables["posts"]) == 400

    res = _cli("jobs", "list", "--json")
    assert [(j["id"], j["state"], j["model_id"]) for j in json.loads(res.stdout)] == [(job["id"], "succeeded", "ada_bytes")]
    res = _cli("jobs", "list")
    assert res.exit_code == 0 and "succeeded" in res.stdout and "3/3" in res.stdout
    res = _cli("jobs", "show", str(job["id"]))
    assert res.exit_code == 0 and "@ada_bytes (x)" in res.stdout and f"job-{job['id']}.log" in res.stdout
    assert json.loads(_cli("jobs", "show", str(job["id"]), "--json").stdout)["result"]["steps"] == 3

    res = _cli("jobs", "show", "99")
    assert res.exit_code == 2 and "no training job with id 99" in res.stderr
    res = _cli("jobs", "cancel", str(job["id"]))
    assert res.exit_code == 2 and "has already succeeded; there is nothing to cancel" in res.stderr


def test_not_enough_data_exits_2_and_changes_nothing(env, tmp_path):
    _cli("fetch", str(sample_path("grace_gardens")))
    before = _tables(env)
    small = write_archive_zip(tmp_path / "few.zip", {
        "data/account.js": account_js("few_words", "Few Words"),
        "data/tweets.js": ytd("tweets", many_posts(30)),
    })
    res = _cli("train", "grace_gardens", str(small), "--base-model", "tiny")
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: @few_words: not enough tweets: 1,627 characters kept, 6,000 needed"
    assert _tables(env) == before
    res = _cli("train", "a", "b", "c", "d")
    assert res.exit_code == 2 and "at most 3 accounts; 4 were given" in res.stderr
    res = _cli("train", "grace_gardens", "--lr", "0")
    assert res.exit_code == 2 and "lr must be above 0 (got 0.0)" in res.stderr
    assert _tables(env) == before


def test_ctrl_c_cancels_the_job(env):
    """A real `mimicbot train` in its own session gets Ctrl-C (SIGINT to the whole process group, as a
    terminal sends it) while its child trains: the job ends cancelled, the child and its work are gone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "train", str(sample_path("ada_bytes")), "--base-model", "tiny",
         "--epochs", "1000"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        job = _wait_for_job(env, lambda j: j["phase"] not in (None, "starting"), proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert f"job {job['id']} cancelled" in stderr
    assert "Traceback" not in stderr and "leaked" not in stderr  # the child ignored Ctrl-C and exited cleanly
    row = _tables(env)["jobs"][0]
    assert row["state"] == "cancelled" and row["error"] is None
    assert not pid_alive(job["worker_pid"])
    assert not work_dir_for(env.models_dir, job["id"]).exists()
    assert not (env.models_dir / "ada_bytes").exists()


def test_a_killed_cli_leaves_a_job_that_the_next_start_queues_again(env):
    """`mimicbot train` is SIGKILLed: its orphaned child stops by itself, and start-up recovery (what
    `TrainingPool.start` runs) puts the job, left `running` by a dead owner, back in the queue."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "train", str(sample_path("ada_bytes")), "--base-model", "tiny",
         "--epochs", "1000"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    job = _wait_for_job(env, lambda j: j["worker_pid"], proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT_S)
    _wait_until(lambda: not pid_alive(job["worker_pid"]))
    assert _tables(env)["jobs"][0]["state"] == "running"

    store = Store(env.db_path)
    try:
        assert jobs.recover(store) == [job["id"]]
        row = jobs.get(store, job["id"])
    finally:
        store.close()
    assert row["state"] == "queued" and row["owner_pid"] is None and row["worker_pid"] is None


def _wait_until(condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _wait_for_job(settings, ready, proc: subprocess.Popen) -> dict:
    """The first job's row once `ready` accepts it (polled: it is written by `proc`, which must live on)."""
    found = []

    def first_ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mimicbot exited early ({proc.returncode}): {proc.communicate()[1]}")
        rows = _tables(settings).get("jobs") if settings.db_path.exists() else None
        found[:] = [r for r in rows or [] if ready(r)][:1]
        return bool(found)

    _wait_until(first_ready)
    return found[0]
