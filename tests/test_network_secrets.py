"""No secret leaves the process in text (issue 17, ask 5).

Every network gets fake credentials whose middle is a random alphanumeric core with URL- and JSON-special
characters around it: percent-encoding (once or twice) and JSON escaping leave letters and digits as they are,
so "the core appears nowhere" covers every encoded form a leak could take. Failures are provoked on each path —
a refused token (401), a server error, an upstream that echoes the whole request (headers, query, body) in its
error body, a timeout — against the protocol-level fakes over real HTTP, and the core is looked for in
exception text (the whole formatted traceback), log records, the CLI's stdout and stderr (the installed
`mimicbot` run as a subprocess), data/logs/*, the job logs and a dump of every text column of the database.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import MimicbotError
from bot.redaction import MASK, Redactor, redact, register
from tests.fakes.bsky_server import FakeBluesky
from tests.fakes.mastodon_server import FakeMastodon
from tests.fakes.x_server import FakeXServer

MIMICBOT = Path(sys.executable).parent / "mimicbot"
SECRET_FIELDS = ("twitter_bearer_token", "twitter_api_key", "twitter_api_secret", "twitter_access_token",
                 "twitter_access_secret", "bluesky_app_password", "mastodon_access_token", "discord_token",
                 "wandb_api_key", "hf_token")


def make_secrets() -> dict[str, str]:
    """field → a secret with a unique core (`secret_cores` returns it) wrapped in characters that encode."""
    return {name: f'{name[:4]}/{secrets.token_hex(12)}+="&' for name in SECRET_FIELDS}


def core(secret: str) -> str:
    return secret.split("/", 1)[1].split("+", 1)[0]


def leaks(text: str, values: dict[str, str]) -> list[str]:
    """The settings whose secret's core appears in `text`."""
    return [name for name, value in values.items() if core(value) in text]


def error_text(e: BaseException) -> str:
    """Everything a person or a log could be shown of an exception: the formatted traceback, repr included."""
    return "".join(traceback.format_exception(e)) + repr(e)


@pytest.fixture
def values() -> dict[str, str]:
    return make_secrets()


def _settings(tmp_path: Path, values: dict[str, str], **urls) -> Settings:
    return Settings(_env_file=None, mimicbot_data_dir=tmp_path / "data", mimicbot_models_dir=tmp_path / "models",
                    bluesky_handle="mimicbot.test", **values, **urls)


# -- the redactor ----------------------------------------------------------------------------------------


def test_redactor_replaces_longest_first_and_ignores_short_values():
    redact_ = Redactor(["abcd", "abcdef123", "", "xy"])
    assert redact_("abcdef123 and abcd and xy") == "*** and *** and xy"


def test_every_encoded_form_of_a_secret_is_redacted():
    from json import dumps
    from urllib.parse import quote, quote_plus

    secret = 'tok/en+with="quotes"&more\\slash and space'
    redactor = Redactor([secret])
    json_once = dumps(secret)[1:-1]
    url_once = quote(secret, safe="")
    samples = [secret, url_once, quote(url_once, safe=""), quote(secret), quote_plus(secret), json_once,
               dumps(json_once)[1:-1], quote(json_once, safe=""),
               quote(quote(dumps(json_once)[1:-1], safe=""), safe=""),  # four layers
               dumps(secret, ensure_ascii=True)[1:-1].replace('\\"', "\\u0022"), url_once.lower()]
    for sample in samples:
        assert redactor(f"before {sample} after") == f"before {MASK} after", sample
    assert redactor("tok/en and more") == "tok/en and more"  # parts of it are not it


def test_credential_shapes_are_redacted_whatever_their_value():
    text = ('Authorization: Bearer abcdefghijklmnop, "authorization": "OAuth oauth_consumer_key=\\"k1234\\"", '
            'session eyJhbGciOiJI.eyJzdWIiOiJkaWQ.c2lnbmF0dXJl, oauth_signature=abc%3D')
    out = Redactor()(text)
    for leaked in ("abcdefghijklmnop", "eyJzdWIiOiJkaWQ", "abc%3D"):
        assert leaked not in out
    assert "Authorization: " in out


def test_a_secret_spelled_with_unicode_case_twins_is_redacted():
    """The patterns ignore case by Unicode's rules (a long "ſ" is an "s"), so the cheap pre-check must not skip a
    text that is not ASCII."""
    assert Redactor(["supersecret"])("token=ſuperſecret, kept") == "token=***, kept"


@pytest.mark.parametrize("text, leaked", [
    ("AUTHORIZATION=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("sent with bearer abcdefghijklmnop", "abcdefghijklmnop"),
    ("cookie eyJhbGciOiJI.eyJzdWIiOiJkaWQ.c2lnbmF0dXJl here", "eyJzdWIiOiJkaWQ"),
    ("OAUTH_TOKEN=12345-abcdef&x=1", "12345-abcdef"),
    ("Authorızation: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),  # a dotless ı, which the shape's (?i) takes for an i
])
def test_each_credential_shape_is_redacted_alone_in_any_case(text, leaked):
    """Each shape on its own (the redactor looks for a shape only where one of its words appears)."""
    out = Redactor()(text)
    assert leaked not in out and MASK in out


def test_settings_secrets_are_registered_for_the_whole_process(tmp_path, values):
    token = values["mastodon_access_token"]
    assert core(token) in redact(f"x {token} y")
    Redactor.for_settings(_settings(tmp_path, values))
    assert core(token) not in redact(f"x {token} y") and MASK in redact(f"x {token} y")


# -- each network's errors, in process ---------------------------------------------------------------------


async def _x_read(server: FakeXServer, settings: Settings, failure: str) -> BaseException:
    from bot.sources.x_api import XApiSource

    server.add_user("jack")
    timeout = 0.1 if failure == "timeout" else 30.0
    return await _raised(XApiSource("jack", settings, timeout=timeout).fetch())


async def _x_post(server: FakeXServer, settings: Settings, failure: str) -> BaseException:
    from bot.networks.x import x_client
    from bot.posting.x import XCaller, XTarget

    client = x_client(settings, user_auth=True, asynchronous=False, timeout=0.1 if failure == "timeout" else 30)
    return await _raised(XTarget(settings, caller=XCaller(settings, client=client)).send("hello"))


async def _raised(awaitable) -> BaseException:
    try:
        await awaitable
    except MimicbotError as e:
        return e
    raise AssertionError("no error")


def _provoke(server, failure: str) -> None:
    if failure == "echo-500":
        server.fail(1, status=500, echo=True)
    elif failure == "echo-400":
        server.fail(1, status=400, echo=True)
    elif failure == "echo-403":
        server.fail(1, status=403, echo=True)
    elif failure == "timeout":
        server.stall(1, seconds=1.0)
    # "401": the fake refuses our (unknown to it) credentials by itself


@pytest.mark.parametrize("failure", ["401", "echo-500", "echo-400", "echo-403", "timeout"])
@pytest.mark.parametrize("path", ["read", "post"])
async def test_x_errors_hold_no_secret(tmp_path, values, caplog, failure, path):
    with FakeXServer() as server:
        settings = _settings(tmp_path, values, twitter_api_base=server.url)
        _provoke(server, failure)
        with caplog.at_level("DEBUG"):
            error = await (_x_read if path == "read" else _x_post)(server, settings, failure)
        assert server.requests or failure.startswith("echo"), "the request went out"  # echoes are not logged
    assert leaks(error_text(error), values) == [] and leaks(caplog.text, values) == []
    if failure.startswith("echo"):
        assert "upstream echo" in str(error) and MASK in str(error)  # the echo is shown, the secrets are not


@pytest.mark.parametrize("failure", ["401", "echo-500", "echo-400", "timeout"])
@pytest.mark.parametrize("path", ["read", "post"])
async def test_mastodon_errors_hold_no_secret(tmp_path, values, caplog, failure, path):
    from bot.posting.mastodon import MastodonTarget
    from bot.sources.mastodon import MastodonSource

    with FakeMastodon() as server:
        server.add_account("alice")
        settings = _settings(tmp_path, values, mastodon_api_base=server.url)
        if failure.startswith("echo"):
            server.fail(1, status=int(failure[-3:]), echo=True)
        elif failure == "timeout":
            server.hold()
        timeout = 0.1 if failure == "timeout" else 30.0
        with caplog.at_level("DEBUG"):
            if path == "read":
                error = await _raised(MastodonSource("@alice@example.social", settings,
                                                     timeout=timeout).fetch())
            else:
                error = await _raised(MastodonTarget(settings, timeout=timeout).send("hello"))
        server.release()
    assert leaks(error_text(error), values) == [] and leaks(caplog.text, values) == []
    if failure.startswith("echo"):
        assert "upstream echo" in str(error)


@pytest.mark.parametrize("failure", ["401", "echo-500", "echo-400", "timeout"])
async def test_bluesky_post_errors_hold_no_secret(tmp_path, values, caplog, failure):
    from bot.posting.bluesky import BlueskyTarget, forget_sessions

    forget_sessions()
    with FakeBluesky() as server:
        server.add_actor("mimicbot.test")  # its app password is not ours: a 401 unless a failure comes first
        settings = _settings(tmp_path, values, bluesky_base_url=server.url, bluesky_appview_url=server.url)
        if failure.startswith("echo"):
            server.fail(1, status=int(failure[-3:]), echo=True)  # the login: the app password is in its body
        elif failure == "timeout":
            server.hold()
        with caplog.at_level("DEBUG"):
            error = await _raised(BlueskyTarget(settings, timeout=0.1 if failure == "timeout" else 30).send("hi"))
        server.release()
        assert server.calls("com.atproto.server.createSession") or "upstream echo" in str(error)
    assert leaks(error_text(error), values) == [] and leaks(caplog.text, values) == []


async def test_bluesky_read_echo_holds_no_secret(tmp_path, values):
    from bot.sources.bluesky import BlueskySource

    with FakeBluesky() as server:
        server.add_actor("alice.test")
        server.fail(1, status=400, echo=True)
        settings = _settings(tmp_path, values, bluesky_appview_url=server.url)
        error = await _raised(BlueskySource("alice.test", settings).fetch())
    assert "upstream echo" in str(error) and leaks(error_text(error), values) == []


def test_stored_errors_are_redacted(tmp_path, values):
    """The ledger, schedules and jobs redact what they store, whatever a caller hands them."""
    from bot.posting.ledger import Ledger
    from bot.store import Store
    from bot.training import jobs

    register(values.values())
    store = Store(tmp_path / "db.sqlite")
    try:
        ledger = Ledger(store)
        entry = ledger.open(model_id="m", target="x", text="t")
        ledger.failed(entry, f"upstream said {values['twitter_bearer_token']}")
        assert core(values["twitter_bearer_token"]) not in ledger.get(entry)["error"]
        with store.transaction() as db:
            db["jobs"].insert({"id": 7, "model_id": "m", "state": "running", "request": "{}", "created_at": "now"})
        finished = jobs.finish(store, 7, jobs.FAILED, f"hub said {values['hf_token']}")
        assert finished["state"] == jobs.FAILED and core(values["hf_token"]) not in finished["error"]
    finally:
        store.close()


# -- the whole product: the CLI as a subprocess, its logs, its database --------------------------------------


def _run(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(MIMICBOT), "--log-level", "DEBUG", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def _dump(db_path: Path) -> str:
    """Every text value of every table (and the schema), as one text."""
    with sqlite3.connect(db_path) as db:
        return "\n".join(db.iterdump())


@pytest.mark.slow
def test_no_secret_reaches_cli_output_logs_or_database(tmp_path, values, trained_models):
    from tests.fakes.hub_server import FakeHub

    models_dir, model_id = trained_models
    with FakeXServer() as x, FakeBluesky() as bsky, FakeMastodon() as masto, FakeHub("hf_the_real_one") as hub:
        x.add_user("jack")
        bsky.add_actor("alice.test")
        bsky.add_actor("mimicbot.test")
        masto.add_account("alice")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "MIMICBOT_", "HF_"))},
               **{name.upper(): value for name, value in values.items()},
               "MIMICBOT_DATA_DIR": str(tmp_path / "data"), "MIMICBOT_MODELS_DIR": str(models_dir),
               "TWITTER_API_BASE": x.url, "BLUESKY_APPVIEW_URL": bsky.url, "BLUESKY_BASE_URL": bsky.url,
               "BLUESKY_HANDLE": "mimicbot.test", "MASTODON_API_BASE": masto.url, "HF_ENDPOINT": hub.url,
               "HF_HUB_DISABLE_XET": "1", "MIMICBOT_POST_CANDIDATES": "2"}
        runs = []
        for server, args in [
            (x, ["fetch", "jack"]),                                   # X reading: echo
            (None, ["fetch", "jack"]),                                # X reading: 401 (the fake knows other keys)
            (bsky, ["fetch", "bsky:alice.test"]),                     # Bluesky reading: echo
            (masto, ["fetch", "mastodon:@alice@example.social"]),     # Mastodon reading with the token: echo
            (None, ["fetch", "mastodon:@alice@example.social"]),      # Mastodon: 401
            (x, ["post", model_id, "--to", "x"]),                     # X posting: echo (5xx: unknown)
            (None, ["post", model_id, "--to", "x"]),                  # X posting: 401
            (bsky, ["post", model_id, "--to", "bsky"]),               # Bluesky login: echo of the password
            (None, ["post", model_id, "--to", "bsky"]),               # Bluesky: 401
            (masto, ["post", model_id, "--to", "mastodon"]),          # Mastodon posting: echo
            (hub, ["models", "push", model_id, "alice/bot"]),         # the hub: echo
            (None, ["models", "push", model_id, "alice/bot"]),        # the hub: 401
        ]:
            if server is not None:
                server.fail(1, status=500, echo=True)
            runs.append((args, _run(env, tmp_path, *args)))
        runs.append((["--help"], _run(env, tmp_path, "--help")))
        runs.append((["post", "--help"], _run(env, tmp_path, "post", "--help")))

    for args, run in runs:
        assert leaks(run.stdout + run.stderr, values) == [], (args, run.stdout, run.stderr)
        if "--help" not in args:
            assert run.returncode != 0, (args, run.stdout, run.stderr)  # each one failed, as provoked
    shown = "".join(run.stderr for _, run in runs)
    assert "upstream echo" in shown  # the upstream's words did reach the person, without the secrets
    assert MASK in shown
    logs = list((tmp_path / "data" / "logs").glob("*"))
    assert logs
    for log in logs:
        assert leaks(log.read_text(errors="replace"), values) == [], log
    dump = _dump(tmp_path / "data" / "mimicbot.db")
    assert "upstream echo" in dump  # the ledger keeps the echoed error text...
    assert leaks(dump, values) == []  # ...redacted


@pytest.mark.slow
def test_a_failed_training_job_keeps_no_secret(tmp_path, values):
    """A training job that fails with a secret in its error (here a base model whose config names the HF token
    as its model type, which transformers quotes back): the CLI's output, the job's recorded error and the log
    file all hold it redacted."""
    from bot.samples.generate import sample_path
    from bot.training.tiny import ensure_tiny_base

    token = values["hf_token"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "MIMICBOT_", "HF_"))},
           **{name.upper(): value for name, value in values.items()},
           "MIMICBOT_DATA_DIR": str(tmp_path / "data"), "MIMICBOT_MODELS_DIR": str(tmp_path / "models")}
    fetched = _run(env, tmp_path, "fetch", str(sample_path("ada_bytes")))
    assert fetched.returncode == 0, fetched.stderr
    broken = tmp_path / "broken-model"
    shutil.copytree(ensure_tiny_base(tmp_path / "base"), broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "model_type": token}))
    run = _run(env, tmp_path, "train", "ada_bytes", "--base-model", str(broken), "--max-steps", "1")
    assert run.returncode != 0 and "failed" in run.stdout + run.stderr
    assert leaks(run.stdout + run.stderr, values) == [] and MASK in run.stderr
    for log in (tmp_path / "data" / "logs").glob("*"):
        assert leaks(log.read_text(errors="replace"), values) == [], log
    (job,) = sqlite3.connect(tmp_path / "data" / "mimicbot.db").execute("select error from jobs").fetchall()
    assert "cannot load base model" in job[0] and MASK in job[0]  # what went wrong is kept, the token is not
    assert leaks(_dump(tmp_path / "data" / "mimicbot.db"), values) == []


@pytest.mark.slow
def test_a_training_childs_output_is_redacted(tmp_path, values):
    """What a process writes after `redact_output()` — as the training child does once its output goes to the
    job log — is redacted, an uncaught exception's traceback included."""
    token = values["hf_token"]
    code = ("import logging; from bot.redaction import redact_output; redact_output(); "
            f"print('token', {token!r}); logging.basicConfig(); logging.warning('key %s', {token!r}); "
            f"raise RuntimeError({token!r})")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_TOKEN": token}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" in run.stderr and "RuntimeError: ***" in run.stderr
    assert "token ***" in run.stdout and "key ***" in run.stderr
    assert leaks(run.stdout + run.stderr, values) == []


@pytest.mark.slow
def test_wandb_files_hold_no_secret(tmp_path, values):
    """`mimicbot train` with an offline W&B run and every secret (WANDB_API_KEY included) set: none in the run's
    files, nor in what the CLI printed."""
    pytest.importorskip("wandb", reason="tracking is the optional `wandb` extra")
    from bot.samples.generate import sample_path

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "MIMICBOT_", "HF_", "WANDB_"))},
           **{name.upper(): value for name, value in values.items()},
           **{name: str(tmp_path / name.lower()) for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")},
           "MIMICBOT_WANDB": "offline", "MIMICBOT_DATA_DIR": str(tmp_path / "data"),
           "MIMICBOT_MODELS_DIR": str(tmp_path / "models")}
    assert _run(env, tmp_path, "fetch", str(sample_path("ada_bytes"))).returncode == 0
    run = _run(env, tmp_path, "train", "ada_bytes", "--base-model", "tiny", "--max-steps", "2")
    assert run.returncode == 0, run.stderr
    assert leaks(run.stdout + run.stderr, values) == []
    files = [p for p in (tmp_path / "data" / "wandb").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)  # a run was written
    for path in files:
        assert leaks(path.read_bytes().decode("latin-1"), values) == [], path
