"""What a newcomer hit (issue 11, section 3), each reproduced as a person types it: through typer's CliRunner, and
as the installed console script in a subprocess where the terminal or the process matters (`--version`, the
width of a table, a hub that cannot be reached).

A model folder here is often only what listing and validation read (config.json, training.json): those commands
must answer without loading a model, and a test that needs a real model uses the session's trained one.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.errors import ValidationError
from bot.posting.ledger import Ledger
from bot.posting.poster import Poster
from bot.posting.targets import NETWORKS
from bot.samples.generate import sample_path
from bot.store import Store
from bot.training.basemodel import base_model_context

ROOT = Path(__file__).resolve().parents[1]
MIMICBOT = Path(sys.executable).with_name("mimicbot")  # the console script pip installed
SECRETS = ("DISCORD_TOKEN", "TWITTER_BEARER_TOKEN", "TWITTER_API_KEY", "TWITTER_API_SECRET", "TWITTER_ACCESS_TOKEN",
           "TWITTER_ACCESS_SECRET", "BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD", "MASTODON_API_BASE",
           "MASTODON_ACCESS_TOKEN", "HF_TOKEN", "MIMICBOT_REPLY_MODEL", "MIMICBOT_BASE_MODEL", "HF_HUB_OFFLINE")
CHANNEL = "123456789012345678"
runner = CliRunner()


@pytest.fixture
def cli(settings, monkeypatch):
    """`mimicbot ...` in this process, with the test's data and models folders and no credentials at all."""
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    _register()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def script_env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("MIMICBOT_")}
    env.update(MIMICBOT_DATA_DIR=str(settings.data_dir), MIMICBOT_MODELS_DIR=str(settings.models_dir), **extra)
    return env


def run_script(settings, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(MIMICBOT), *args], env=script_env(settings, **env), cwd=settings.data_dir.parent,
                          capture_output=True, text=True, timeout=timeout)


def model_folder(models_dir: Path, name: str, handles: list[str] | None = None) -> Path:
    """A folder as `models list` reads it (config.json marks a model; training.json describes it); no weights."""
    path = Path(models_dir) / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 256}))
    handles = handles or [name]
    (path / "training.json").write_text(json.dumps({
        "model_id": name, "display_name": " & ".join(h.title() for h in handles),
        "accounts": [{"handle": h, "display_name": h.title()} for h in handles],
        "finished_at": "2026-12-01T09:00:00+00:00", "eval": {"perplexity_after": 12.5}}))
    return path


def rows(settings, table: str) -> list[dict]:
    if not settings.db_path.exists():
        return []
    con = sqlite3.connect(settings.db_path)
    con.row_factory = sqlite3.Row
    try:
        if not con.execute("select 1 from sqlite_master where name = ?", [table]).fetchone():
            return []
        return [dict(r) for r in con.execute(f"select * from {table}")]
    finally:
        con.close()


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


# -- 1. a folder that is not a model id ----------------------------------------------------------------------


def test_models_list_skips_folders_whose_name_is_not_a_model_id(cli, settings):
    model_folder(settings.models_dir, "ada_bytes")
    model_folder(settings.models_dir, "ada_bytes copy")
    model_folder(settings.models_dir, "🤖bot")
    (settings.models_dir / "notes").mkdir()  # not a model at all: never mentioned

    listed = cli("models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [m["id"] for m in json.loads(listed.stdout)] == ["ada_bytes"]
    warning = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("warning:"), listed.stderr
    assert "'ada_bytes copy'" in warning[0] and "'🤖bot'" in warning[0] and "notes" not in warning[0]

    table = cli("models", "list")
    assert table.exit_code == 0 and "ada_bytes" in table.stdout and "copy" not in table.stdout
    assert table.stderr.count("warning:") == 1
    shown = cli("models", "show", "ada_bytes copy")
    assert shown.exit_code == 2 and "no model 'ada_bytes copy'" in shown.stderr


# -- 3. db backup into a folder that does not exist yet --------------------------------------------------------


def test_db_backup_to_a_path_ending_in_a_slash_makes_the_folder(cli, settings):
    Store(settings.db_path).close()
    target = settings.data_dir / "backups"
    result = cli("db", "backup", f"{target}/")
    assert result.exit_code == 0, result.output
    assert target.is_dir()
    (written,) = target.iterdir()
    assert re.fullmatch(r"mimicbot-\d{8}-\d{6}\.db", written.name)
    assert sqlite3.connect(written).execute("pragma integrity_check").fetchone()[0] == "ok"

    into_existing = cli("db", "backup", str(target))  # an existing folder, no slash: still a folder
    assert into_existing.exit_code == 0 and target.is_dir()
    file = cli("db", "backup", str(settings.data_dir / "copy.db"))  # no slash, nothing there: a file
    assert file.exit_code == 0 and (settings.data_dir / "copy.db").is_file()


# -- 4. posting without credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("to, needs", [("x", "TWITTER_API_KEY"), (f"discord:{CHANNEL}", "DISCORD_TOKEN"),
                                       ("bsky", "BLUESKY_APP_PASSWORD"), ("mastodon", "MASTODON_ACCESS_TOKEN")])
def test_post_without_credentials_is_one_line_and_no_ledger_row(cli, settings, to, needs):
    model_folder(settings.models_dir, "ada_bytes")
    started = time.perf_counter()
    result = cli("post", "ada_bytes", "--to", to)
    assert result.exit_code == 2, result.output
    assert needs in one_error_line(result)
    assert time.perf_counter() - started < 10  # refused before any model is loaded or anything generated
    assert rows(settings, "outgoing") == []


async def test_a_send_stopped_by_missing_credentials_is_failed_not_unknown(settings):
    """Should a target reach its send without its token (a Discord REST target, as the CLI builds it), nothing
    went out: the ledger says failed, never unknown (which would be left for a person to check by hand)."""
    from bot.discord.target import DiscordRestTarget

    store = Store(settings.db_path)
    try:
        poster = Poster(store, settings, generate=None)
        entry = Ledger(store).open(model_id="ada_bytes", target=f"discord:{CHANNEL}", text="hello")
        outcome = await poster.deliver(entry, DiscordRestTarget(None, int(CHANNEL)), "hello")
        assert outcome.status == "failed" and "DISCORD_TOKEN" in outcome.error
        assert Ledger(store).get(entry)["status"] == "failed"
    finally:
        store.close()


# -- 5. a dry run needs no credentials -----------------------------------------------------------------------


@pytest.mark.parametrize("to", ["x", "bsky", "mastodon", f"discord:{CHANNEL}"])
def test_post_dry_run_needs_no_credentials(cli, settings, trained_models, monkeypatch, to):
    models_dir, model_id = trained_models
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("MIMICBOT_POST_CANDIDATES", "2")
    result = cli("post", model_id, "--to", to, "--dry-run", "--json")
    assert result.exit_code in (0, 1), result.output  # 1: every candidate refused by a guard, still no credentials
    outcome = json.loads(result.stdout)
    assert outcome["status"] in ("dry-run", "rejected") and outcome["target"] == to
    if outcome["status"] == "dry-run":
        assert outcome["text"].endswith("🤖")  # fitted and disclosed as the real target would
    assert rows(settings, "outgoing") == []


# -- 6. no network: fail fast when the base model is not cached ----------------------------------------------


@pytest.mark.slow  # starts a process
def test_train_without_the_hub_fails_within_seconds_with_the_offline_hint(cli, settings, tmp_path):
    """The installed script, as a person runs it: gpt2 (the default) is not cached (an empty HF_HOME) and the hub
    does not answer (a closed port): one line naming the way out, within seconds, nothing queued."""
    assert cli("fetch", sample_path("ada_bytes")).exit_code == 0
    started = time.monotonic()
    result = run_script(settings, "train", "ada_bytes", timeout=150, HF_HOME=str(tmp_path / "hf"),
                        HF_ENDPOINT="http://127.0.0.1:9")
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_error_line(result)
    assert "'gpt2'" in line and "--base-model tiny" in line and "local model folder" in line
    assert elapsed < 20, elapsed  # startup included; it took 52 s of hub retries
    assert rows(settings, "jobs") == []


def test_a_name_that_cannot_be_a_hub_id_is_never_tried(settings, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1")  # TEST-NET: a probe would hang until its timeout
    for name in ("a b/c", "gpt2//x", "-bad-", "x" * 200):
        started = time.monotonic()
        with pytest.raises(ValidationError, match="neither a hub model id"):
            base_model_context(name, settings.models_dir)
        assert time.monotonic() - started < 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValidationError, match="HF_HUB_OFFLINE"):
        base_model_context("openai-community/not-cached-here", settings.models_dir)


# -- 7. tables never cut ids or handles ----------------------------------------------------------------------


@pytest.mark.slow  # starts a process
def test_tables_keep_ids_and_handles_whole_at_80_columns(settings):
    """The console script at COLUMNS=80: every id and handle a person must type appears whole on one line; the
    other columns give way. A table that cannot fit even so is printed wider rather than cut."""
    pair, trio = ["ada_bytes", "grace_gardens"], ["ada_bytes", "grace_gardens", "linus_lambda"]
    model_folder(settings.models_dir, "-".join(pair), pair)
    result = run_script(settings, "models", "list", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for word in ["ada_bytes-grace_gardens", "@ada_bytes", "@grace_gardens", "perplexity", "12.50"]:
        assert any(word in line for line in lines), (word, result.stdout)

    model_folder(settings.models_dir, "-".join(trio), trio)
    result = run_script(settings, "models", "list", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    for word in ["ada_bytes-grace_gardens-linus_lambda", "ada_bytes-grace_gardens ", "@linus_lambda"]:
        assert any(word in line for line in result.stdout.splitlines()), (word, result.stdout)
    assert "…" not in result.stdout


# -- 8. generate: bad settings refused before the model loads ------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["-n", "-3"], "n must be between 1 and 64 (got -3)"),
    (["-n", "100000"], "n must be between 1 and 64 (got 100000)"),
    (["-n", "0"], "n must be between 1 and 64 (got 0)"),
    (["--temperature", "0"], "temperature must be above 0 and finite (got 0.0)"),
    (["--top-p", "1.5"], "top_p must be in (0, 1] (got 1.5)"),
    (["--max-new-tokens", "0"], "max_new_tokens must be between 1 and 1024 (got 0)"),
])
def test_generate_refuses_bad_settings_before_loading_the_model(cli, settings, args, message):
    model_folder(settings.models_dir, "ada_bytes")  # no weights: loading it would fail differently
    started = time.perf_counter()
    result = cli("generate", "ada_bytes", *args)
    assert result.exit_code == 2, result.output
    assert one_error_line(result) == f"error: {message}"
    assert time.perf_counter() - started < 3


# -- 9. a typo in a stored handle ----------------------------------------------------------------------------


def test_train_with_a_typo_in_a_stored_handle_suggests_it(cli, settings):
    assert cli("fetch", sample_path("ada_bytes")).exit_code == 0
    result = cli("train", "ada_byte", "--base-model", "tiny")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "no account 'ada_byte'; did you mean ada_bytes?" in line
    assert rows(settings, "jobs") == []


# -- 10. everything checkable is checked before anything is queued or stored ----------------------------------


def test_train_refuses_what_cannot_work_before_queueing_or_fetching(cli, settings):
    assert cli("fetch", sample_path("ada_bytes")).exit_code == 0
    too_long = cli("train", "ada_bytes", "--base-model", "tiny", "--block-size", "5000")
    assert too_long.exit_code == 2, too_long.output
    assert "block_size 5000 is longer than the base model's context (256" in one_error_line(too_long)
    assert rows(settings, "jobs") == []

    accounts_before = rows(settings, "accounts")
    missing = cli("train", sample_path("grace_gardens"), "--base-model", "./nope")
    assert missing.exit_code == 2, missing.output
    assert "'./nope'" in one_error_line(missing) and "no such model folder" in missing.stderr
    assert rows(settings, "jobs") == [] and rows(settings, "accounts") == accounts_before  # nothing fetched

    not_a_model = settings.data_dir / "empty-folder"
    not_a_model.mkdir()
    refused = cli("train", "ada_bytes", "--base-model", not_a_model)
    assert refused.exit_code == 2 and "config.json" in one_error_line(refused)
    assert rows(settings, "jobs") == []


@pytest.mark.parametrize("args, message", [(["--epochs", "0"], "epochs must be 1 or more"),
                                           (["--lr", "0"], "lr must be above 0"),
                                           (["--max-steps", "0"], "max_steps must be 1 or more")])
def test_demo_refuses_bad_options_before_fetching_the_sample(cli, settings, args, message):
    result = cli("demo", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert rows(settings, "accounts") == [] and rows(settings, "posts") == []


# -- 11. help and messages -----------------------------------------------------------------------------------


@pytest.mark.slow  # starts a process
def test_version_from_the_console_script(settings):
    result = run_script(settings, "--version", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mimicbot {version('mimicbot')}"


@pytest.mark.parametrize("command", [["post"], ["schedule", "add"]])
def test_post_and_schedule_help_list_every_target(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for network in NETWORKS:
        assert (f"{network}:CHANNEL_ID" if network == "discord" else network) in text, (network, text)


def test_help_placeholders_are_one_style(cli):
    """Every value placeholder is an UPPERCASE word, and the flags show none (no `{model}`, no `<bool>`)."""
    commands = [["fetch"], ["train"], ["generate"], ["post"], ["schedule", "add"], ["jobs", "list"], ["forget"],
                ["models", "push"], ["db", "backup"], ["demo"], ["outgoing", "list"]]
    for command in commands:
        text = cli(*command, "--help").stdout
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert not re.search(r"\{[a-z_]+\}", usage), usage
        for line in text.splitlines():
            if re.search(r"--(json|dry-run|queue|yes|approval|private)\b", line):
                assert "<bool>" not in line, (command, line)


def test_env_example_points_only_at_files_that_exist():
    text = (ROOT / ".env.example").read_text()
    referenced = set(re.findall(r"\b[\w./-]+\.md\b", text))
    assert referenced, "the example names no document at all"
    assert [name for name in referenced if not (ROOT / name).exists()] == []


@pytest.mark.slow  # starts a process
def test_no_voice_warnings_from_a_discord_client():
    """The bot has no voice features: building a client through the Discord face prints no PyNaCl/davey warning."""
    code = ("import logging; logging.basicConfig(level=logging.WARNING)\n"
            "import bot.discord.bot, discord\n"
            "discord.Client(intents=discord.Intents.default())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "voice will NOT be supported" not in result.stderr


def test_package_metadata_uses_a_license_expression():
    """setuptools warns on every build about a license table or license classifiers: the SPDX form has neither."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project["license"], str)
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]


def test_schedule_run_now_says_the_number_of_seconds(cli, settings, monkeypatch):
    monkeypatch.setenv("MIMICBOT_SCHEDULE_POLL_SECONDS", "7")
    model_folder(settings.models_dir, "ada_bytes")
    assert cli("schedule", "add", "ada_bytes", "--to", "x", "--every", "2h").exit_code == 0
    result = cli("schedule", "run-now", "1")
    assert result.exit_code == 0, result.output
    assert "within 7 seconds" in result.stderr


def test_jobs_list_with_an_unknown_state_is_an_error_like_outgoing(cli):
    jobs = cli("jobs", "list", "--state", "bogus")
    outgoing = cli("outgoing", "list", "--status", "bogus")
    assert (jobs.exit_code, outgoing.exit_code) == (2, 2)
    assert "unknown state 'bogus'" in one_error_line(jobs) and "succeeded" in jobs.stderr
    assert cli("jobs", "list", "--state", "failed", "--state", "queued", "--json").exit_code == 0


# -- 12. schedules that cannot work --------------------------------------------------------------------------


def test_models_rm_removes_the_models_schedules(cli, settings):
    model_folder(settings.models_dir, "ada_bytes")
    model_folder(settings.models_dir, "grace_gardens")
    for model, every in (("ada_bytes", "2h"), ("ada_bytes", "3h"), ("grace_gardens", "2h")):
        assert cli("schedule", "add", model, "--to", "x", "--every", every).exit_code == 0
    removed = cli("models", "rm", "ada_bytes", "--yes")
    assert removed.exit_code == 0, removed.output
    assert "removed its 2 schedule(s): 1, 2" in removed.stdout
    left = json.loads(cli("schedule", "list", "--json").stdout)
    assert [(s["id"], s["model_id"]) for s in left] == [(3, "grace_gardens")]


@pytest.mark.parametrize("args, message", [
    (["--cron", "0 9 31 2 *"], "never fires"),
    (["--cron", "0 9 30 2 *"], "never fires"),
    (["--every", "2h", "--approval-channel", CHANNEL], "--approval"),
    (["--cron", "0 9 * * *", "--approval-channel", CHANNEL], "--approval"),
    (["--every", "2h", "--tz", "Europe/Paris"], "time zone only applies to a cron schedule"),
])
def test_schedule_add_refuses_what_cannot_work(cli, settings, args, message):
    model_folder(settings.models_dir, "ada_bytes")
    result = cli("schedule", "add", "ada_bytes", "--to", "x", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert rows(settings, "schedules") == []
    ok = cli("schedule", "add", "ada_bytes", "--to", "x", "--cron", "0 9 29 2 *")  # leap days do come
    assert ok.exit_code == 0, ok.output


def test_a_schedule_to_a_network_without_keys_says_it_will_post_nothing(cli, settings, monkeypatch):
    """Accepted (the keys may come later), but said at once rather than found at the first firing."""
    model_folder(settings.models_dir, "ada_bytes")
    added = cli("schedule", "add", "ada_bytes", "--to", "bsky", "--every", "2h")
    assert added.exit_code == 0, added.output
    said = " ".join(added.output.split())  # as read, whatever the terminal's width
    assert "nothing will be posted to bsky until BLUESKY_HANDLE, BLUESKY_APP_PASSWORD are set" in said
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert listed[0]["missing_credentials"] == ["BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD"]
    assert "needs keys" in cli("schedule", "list").stdout

    monkeypatch.setenv("BLUESKY_HANDLE", "ada.example.com")
    monkeypatch.setenv("BLUESKY_APP_PASSWORD", "abcd-efgh-ijkl-mnop")
    again = cli("schedule", "add", "ada_bytes", "--to", "bsky", "--every", "3h")
    assert again.exit_code == 0 and "warning" not in again.output
    assert [r["missing_credentials"] for r in json.loads(cli("schedule", "list", "--json").stdout)] == [[], []]
