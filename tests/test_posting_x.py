"""Posting to X through tweepy over real HTTP against the fake X API, and the outgoing ledger around it:
intent before sending, remote id after, "unknown" (never retried) when the answer is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from bot.cli import _register, app
from bot.errors import UnknownModel
from bot.posting.base import DeliveryUnknown, TargetError
from bot.posting.ledger import Ledger
from bot.posting.x import XCaller, XTarget
from bot.networks.x import x_client
from tests.fakes.x_server import TEST_CREDENTIALS, settings_for
from tests.kit.posting import RecordingSleep, posting_settings


async def test_x_target_creates_a_tweet_with_oauth_user_context(x_server, tmp_path):
    target = XTarget(settings_for(x_server, tmp_path))
    remote_id = await target.send("hello from the bot 🤖")
    tweet = x_server.tweets[-1]
    assert remote_id == str(tweet.id) and tweet.text == "hello from the bot 🤖"
    assert tweet.author_id == x_server.me.id
    post = x_server.requests_to("/2/tweets")[-1]
    assert post.method == "POST" and post.auth == "oauth" and post.body == {"text": "hello from the bot 🤖"}

    reply_id = await target.send("and a reply", reply_to=remote_id)
    assert x_server.requests_to("/2/tweets")[-1].body["reply"] == {"in_reply_to_tweet_id": remote_id}
    assert x_server.tweets[-1].referenced_tweets == [{"type": "replied_to", "id": remote_id}]
    assert reply_id == str(x_server.tweets[-1].id)


async def test_a_429_waits_for_the_reset_then_posts(x_server, tmp_path):
    sleep = RecordingSleep()
    target = XTarget(settings_for(x_server, tmp_path), caller=XCaller(settings_for(x_server, tmp_path), sleep=sleep))
    x_server.rate_limit(2, reset_in=40)
    remote_id = await target.send("after the window")
    assert len(sleep.waits) == 2 and all(39 <= w <= 42 for w in sleep.waits)  # reset - now + 1 s margin
    assert x_server.tweets[-1].text == "after the window" and remote_id == str(x_server.tweets[-1].id)
    assert len(x_server.requests_to("/2/tweets")) == 3


async def test_x_errors_say_what_happened(x_server, tmp_path):
    settings = settings_for(x_server, tmp_path)
    target = XTarget(settings)
    await target.send("once")
    with pytest.raises(TargetError, match="duplicate content"):
        await target.send("once")  # X refuses duplicates: certainly not posted
    sleep = RecordingSleep()
    x_server.rate_limit(10, reset_in=5)
    with pytest.raises(TargetError, match="kept rate-limiting"):
        await XTarget(settings, caller=XCaller(settings, sleep=sleep, max_waits=2)).send("never")
    assert len(sleep.waits) == 2
    x_server.rate_limit(0)
    bad = settings.model_copy(update={"twitter_access_token": None})
    with pytest.raises(TargetError, match="TWITTER_ACCESS_TOKEN") as missing:
        await XTarget(bad).send("no tokens")
    assert not isinstance(missing.value, DeliveryUnknown)  # certainly not posted: the ledger says "failed"
    wrong = settings.model_copy(update={"twitter_access_secret": SecretStr("wrong")})
    with pytest.raises(TargetError, match="refused the OAuth") as refused:
        await XTarget(wrong).send("wrong tokens")
    assert not isinstance(refused.value, DeliveryUnknown)


async def test_a_timeout_is_unknown_not_failed(x_server, tmp_path):
    settings = settings_for(x_server, tmp_path)
    client = x_client(settings, user_auth=True, asynchronous=False, timeout=0.3)
    target = XTarget(settings, caller=XCaller(settings, client=client))
    x_server.stall(1, seconds=1.0)
    with pytest.raises(DeliveryUnknown, match="may or may not"):
        await target.send("slow answer")


async def test_post_goes_through_the_ledger(posting_service, x_server, trained_models):
    _, model_id = trained_models
    outcome = await posting_service.post(model_id, "x")
    assert outcome.status == "sent", outcome
    entry = Ledger(posting_service.store).get(outcome.entry_id)
    assert entry["status"] == "sent" and entry["remote_id"] == outcome.remote_id
    assert entry["text"] == outcome.text == x_server.tweets[-1].text
    assert outcome.text.endswith(" 🤖") and entry["sent_at"]

    dry = await posting_service.post(model_id, "x", dry_run=True)
    assert dry.status == "dry-run" and dry.text and dry.entry_id is None
    assert len(x_server.requests_to("/2/tweets")) == 1  # the dry run sent nothing
    assert len(posting_service.outgoing()) == 1

    with pytest.raises(UnknownModel):
        await posting_service.post("nobody", "x")


async def test_a_crash_between_intent_and_result_is_never_posted_twice(posting_service, x_server, trained_models):
    _, model_id = trained_models
    ledger = Ledger(posting_service.store)
    # the process wrote its intent for a schedule fire, then died before it learned the outcome
    key = "schedule:1:2031-03-03T09:00:00+00:00"
    crashed = ledger.open(model_id=model_id, target="x", text="was this sent? 🤖", fire_key=key)
    assert ledger.get(crashed)["status"] == "sending"

    # the same fire, once more (a restart): nothing is generated or sent
    again = await posting_service.poster.post(model_id, XTarget(posting_service.settings), fire_key=key)
    assert again.status == "skipped" and x_server.requests_to("/2/tweets") == []

    # at the daemon's start, the intent becomes "unknown" and is surfaced, not retried
    later = datetime.now(UTC) + timedelta(minutes=5)
    surfaced = ledger.mark_interrupted(now=later)
    assert [e["id"] for e in surfaced] == [crashed] and surfaced[0]["status"] == "unknown"
    assert posting_service.outgoing("unknown")[0]["id"] == crashed
    assert x_server.requests_to("/2/tweets") == []

    # a person looks it up and settles it
    resolved = posting_service.resolve_outgoing(crashed, None)
    assert resolved["status"] == "failed" and "by hand" in resolved["error"]


async def test_failed_and_unknown_sends_are_recorded(posting_service, x_server, trained_models):
    _, model_id = trained_models
    x_server.rate_limit(10, reset_in=1)
    sleep = RecordingSleep()
    target = XTarget(posting_service.settings, caller=XCaller(posting_service.settings, sleep=sleep, max_waits=1))
    outcome = await posting_service.poster.post(model_id, target)
    assert outcome.status == "failed" and "rate-limiting" in outcome.error
    assert Ledger(posting_service.store).get(outcome.entry_id)["status"] == "failed"
    x_server.rate_limit(0)

    client = x_client(posting_service.settings, user_auth=True, asynchronous=False, timeout=0.3)
    x_server.stall(1, seconds=1.0)
    slow = await posting_service.poster.post(model_id, XTarget(posting_service.settings, caller=XCaller(posting_service.settings, client=client)))
    assert slow.status == "unknown"
    assert Ledger(posting_service.store).get(slow.entry_id)["status"] == "unknown"


def cli_in(tmp_path, settings, monkeypatch) -> CliRunner:
    """A CliRunner for `mimicbot` with these settings and the fake X server's credentials in the environment."""
    monkeypatch.chdir(tmp_path)
    for name, value in {**settings.model_dump(mode="json"), **TEST_CREDENTIALS}.items():
        if value is not None and name.startswith(("mimicbot_", "twitter_")):
            monkeypatch.setenv(name.upper(), str(value))
    _register()
    return CliRunner()


def test_cli_post_to_x_and_dry_run(tmp_path, trained_models, x_server, monkeypatch):
    models_dir, model_id = trained_models
    settings = posting_settings(tmp_path, models_dir, x_server.url)
    runner = cli_in(tmp_path, settings, monkeypatch)
    dry = runner.invoke(app, ["post", model_id, "--to", "x", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert '"status": "dry-run"' in dry.output and x_server.requests_to("/2/tweets") == []

    sent = runner.invoke(app, ["post", model_id, "--to", "x"])
    assert sent.exit_code == 0, sent.output
    assert len(x_server.requests_to("/2/tweets")) == 1 and x_server.tweets[-1].id and "sent" in sent.output

    listed = runner.invoke(app, ["outgoing", "list", "--json"])
    assert listed.exit_code == 0 and f'"remote_id": "{x_server.tweets[-1].id}"' in listed.output

    bad = runner.invoke(app, ["post", model_id, "--to", "myspace"])
    assert bad.exit_code == 2 and "bad target 'myspace'" in bad.output


def test_autonomous_posts_open_however_the_model_writes_unless_given_an_opener(tmp_path, trained_models, x_server,
                                                                              monkeypatch):
    """Six dry runs of `post` start from the start-of-post token alone: they do not all open with the demo's
    "My dream is"; `--prompt` sets the opener."""
    import json

    models_dir, model_id = trained_models
    settings = posting_settings(tmp_path, models_dir, x_server.url)
    runner = cli_in(tmp_path, settings, monkeypatch)
    texts = []
    for _ in range(6):
        dry = runner.invoke(app, ["post", model_id, "--to", "x", "--dry-run", "--json"])
        assert dry.exit_code == 0, dry.output
        texts.append(json.loads(dry.stdout)["text"])
    assert all(texts) and not all(t.startswith("My dream is") for t in texts), texts
    opened = runner.invoke(app, ["post", model_id, "--to", "x", "--dry-run", "--json", "--prompt", "Hot  take:"])
    assert opened.exit_code == 0, opened.output
    assert json.loads(opened.stdout)["text"].startswith("Hot take:")
    assert x_server.requests_to("/2/tweets") == []
