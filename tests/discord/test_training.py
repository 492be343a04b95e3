"""`train` → a status message edited with progress → the completion embed; and jobs, status, cancel.

Trainings here are real: the pool runs the trainer in a child process on the tiny base model, capped at two
steps by the test options (MIMICBOT_DISCORD_TRAIN_MAX_STEPS).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import discord.ext.test as dpytest
import pytest
import torch

from bot.discord.formatting import neutralise, status_embed
from bot.discord.progress import StatusMessage
from bot.training import jobs as job_rows
from bot.training.spec import LORA_RANK

from .conftest import message_text, sent_messages

WAIT = 180  # a safety net for a stuck test, never a measurement


async def wait_until(predicate, timeout: float = WAIT) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def started(mimic, job_id: int) -> dict:
    """The event that says the pool took the job (its training child is starting)."""
    async for event in mimic.follow(job_id):
        if event["type"] == "state" and event["state"] == job_rows.RUNNING:
            return event


async def test_training_needs_manage_server_or_a_trainer_role(world):
    (reply,) = await world.say("!train grace_gardens")
    assert reply.content == "Training a model needs the **Manage Server** permission."
    role = world.guild.roles[-1]  # not the admins' role
    await world.say(f"!config trainer-role <@&{role.id}>", member=world.admin)
    (reply,) = await world.say("!train grace_gardens")
    assert reply.content == (f"Training a model needs one of these roles: **{role.name}**, or the **Manage Server** "
                             "permission.")
    assert world.mimic.jobs() == []


async def test_refusals_are_plain_words_and_cost_no_cooldown(world, tmp_path):
    posts = tmp_path / "few.txt"
    posts.write_text("\n".join(f"this is my short post number {i}" for i in range(40)), encoding="utf-8")
    await world.mimic.fetch([str(posts)], handle="few_posts")
    chars = world.mimic.store.account_stats(world.mimic.store.find_accounts("few_posts")[0]["id"]).chars
    cases = {
        "!train few_posts": f"@\u200bfew_posts: not enough tweets: {chars:,} characters kept, 6,000 needed",
        "!train ../data/mimicbot.db": "'../data/mimicbot.db' is not an account handle; use handles like `ada_bytes` "
                                      "(archives are imported with `mimicbot fetch`)",
        "!train a,b,c,d": "a model learns from at most 3 accounts; 4 were given",
        "!train grace_gardens 2 gpt-j": "base model 'gpt-j' is not offered here; choose one of tiny, gpt2",
        "!train grace_gardens 99": "That value must be between 1 and 20.",
    }
    for command, expected in cases.items():
        (reply,) = await world.say(command, member=world.admin)
        assert reply.content == expected, command
    assert world.mimic.jobs() == []  # nothing was queued, and the cooldown was not spent:
    (reply,) = await world.say("!cancel 1", member=world.admin)
    assert reply.content == "no training job with id 1"


async def test_train_shows_progress_survives_a_restart_and_announces_the_model(world, no_pings):
    (status,) = await world.say("!train grace_gardens", member=world.admin)
    (job,) = world.mimic.jobs()
    assert (job["status_channel_id"], job["status_message_id"]) == (world.channel.id, status.id)
    assert job["requested_by"] == f"discord:{world.admin.id}" and job["guild_id"] == world.guild.id
    assert status.embeds[0].title == f"Training grace_gardens — job #{job['id']}"

    # the daemon stops while the job runs (its child is still starting: seconds of imports), and starts again
    assert await started(world.mimic, job["id"])
    await world.app.stop()
    assert world.mimic.job(job["id"])["state"] == job_rows.QUEUED  # recorded, to run again
    edits_before = len(world.edits_of(status.id))
    assert "Step" not in "".join(message_text(body) for body in world.edits_of(status.id))
    await dpytest.empty_queue()
    await world.app.start()  # what the next start does: watchers resumed, then the pool

    cog = world.bot.get_cog("Training")
    await wait_until(lambda: job["id"] in cog.watchers)
    await asyncio.wait_for(cog.watchers[job["id"]], WAIT)
    assert world.mimic.job(job["id"])["state"] == job_rows.SUCCEEDED

    # the same message kept being edited, by id, after the restart: progress, then done
    edits = [message_text(body) for body in world.edits_of(status.id)]
    assert len(edits) > edits_before
    steps = [e for e in edits if "Step: " in e]
    assert steps and "Step: 2 / 2" in steps[-1] and "Loss: " in steps[-1] and "ETA: " in steps[-1]
    assert edits[-1].startswith(f"Training grace_gardens — job #{job['id']}\n✅ Done.")

    # the announcement: data table, held-out perplexity, predictions picture, sample posts
    (announcement,) = [m for m in sent_messages() if m.attachments]
    assert announcement.attachments[0].filename == "predictions.png"
    (embed,) = [body for body in no_pings.payloads if body.get("attachments")][-1]["embeds"]
    text = message_text({"embeds": [embed]})
    assert embed["title"] == "✅ Grace Gardens 🤖 AI Bot" and embed["image"]["url"] == "attachment://predictions.png"
    assert "Tweets downloaded: **300**" in text and "Tweets kept: **241**" in text
    training = world.mimic.model("grace_gardens")["training"]
    assert f"{training['eval']['perplexity_before']:,.1f} → {training['eval']['perplexity_after']:,.1f}" in text
    samples = next(f["value"] for f in embed["fields"] if f["name"] == "Sample posts")
    # the samples the training drew (training.json), not new ones: the daemon did not load the model for them
    drawn = [t for t in training["generation"]["samples"] if t][:2]
    assert samples.splitlines() == [f"> {neutralise(t)}" for t in drawn] and all(t.startswith("My dream is") for t in drawn)
    assert "grace_gardens" not in world.mimic.cache.ids()


async def test_slash_train_acknowledges_at_once_and_cancel_stops_it(world, slash):
    run = await slash.invoke("train", by=world.admin, handles="grace_gardens, ada_bytes", epochs=1)
    defer, followup = run.calls[:2]
    assert defer.path.endswith("/callback") and defer.body == {"type": 5}  # acknowledged before any work
    (job,) = world.mimic.jobs()
    assert job["model_id"] == "ada_bytes-grace_gardens" and job["request"]["epochs"] == 1
    message = slash.adapter.messages[job["status_message_id"]]  # the followup is the status message
    assert followup.method == "POST"
    assert message["embeds"][0]["title"] == f"Training ada_bytes-grace_gardens — job #{job['id']}"

    again = await slash.invoke("train", by=world.admin, handles="ada_bytes")
    assert again.messages[-1]["content"].startswith("Slow down a little: try again in ")

    stranger = await slash.invoke("cancel", by=world.member, job=job["id"])
    assert stranger.messages[-1]["content"] == "Only the person who started that training, or an admin, can cancel it."
    cancelled = await slash.invoke("cancel", by=world.admin, job=job["id"])
    assert cancelled.messages[-1]["content"] == f"🚫 Cancelled job #{job['id']} (ada_bytes-grace_gardens)."
    assert world.mimic.job(job["id"])["state"] == job_rows.CANCELLED
    cog = world.bot.get_cog("Training")
    await wait_until(lambda: job["id"] not in cog.watchers)
    # the status message, edited through the interaction (its token still valid), says so
    assert message["embeds"][0]["description"] == "🚫 Cancelled."
    assert any(c.method == "PATCH" for c in run.calls[2:])


async def test_slash_train_can_ask_for_a_lora_adapter(world, slash):
    """/train lora:True queues a LoRA job (the service's request says so); without it, a full fine-tune."""
    await slash.invoke("train", by=world.admin, handles="ada_bytes", lora=True)
    (job,) = world.mimic.jobs()
    assert job["request"]["lora"] is True and job["request"]["lora_rank"] == LORA_RANK
    await slash.invoke("cancel", by=world.admin, job=job["id"])
    assert world.mimic.job(job["id"])["state"] == job_rows.CANCELLED
    await wait_until(lambda: job["id"] not in world.bot.get_cog("Training").watchers)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal on a machine without a CUDA GPU")
async def test_slash_train_qlora_is_refused_without_a_gpu(world, slash):
    """/train qlora:True on a bot whose machine has no CUDA GPU: refused with the reason, nothing queued."""
    run = await slash.invoke("train", by=world.admin, handles="ada_bytes", qlora=True)
    assert "CUDA GPU only" in run.text
    assert world.mimic.jobs() == []


async def test_jobs_status_and_the_per_server_queue_cap(world, slash):
    await world.say("!config max-queue 1", member=world.admin)
    (status,) = await world.say("!train ada_bytes", member=world.admin)
    (job,) = world.mimic.jobs()
    run = await slash.invoke("train", by=world.other, handles="grace_gardens")  # not allowed anyway
    assert run.messages[-1]["content"] == "Training a model needs the **Manage Server** permission."
    role = world.guild.roles[-1]
    await world.say(f"!config trainer-role <@&{role.id}>", member=world.admin)
    await dpytest.add_role(world.other, role)
    run = await slash.invoke("train", by=world.other, handles="grace_gardens")
    assert run.messages[-1]["content"] == ("this server already has 1 training job(s) queued or running (the limit "
                                           "is 1); wait for one to finish or cancel one")
    (reply,) = await world.say("!jobs")
    assert f"`#{job['id']}`" in reply.embeds[0].description and "**ada_bytes**" in reply.embeds[0].description
    (reply,) = await world.say(f"!status {job['id']}")
    assert reply.embeds[0].title == f"Training ada_bytes — job #{job['id']}"
    (reply,) = await world.say("!status 999")
    assert reply.content == "no training job with id 999"
    (reply,) = await world.say(f"!cancel {job['id']}", member=world.admin)
    assert reply.content == f"🚫 Cancelled job #{job['id']} (ada_bytes)."
    await wait_until(lambda: job["id"] not in world.bot.get_cog("Training").watchers)
    assert world.edits_of(status.id)[-1]["embeds"][0]["description"] == "🚫 Cancelled."


async def test_a_deleted_status_message_is_replaced(world):
    """After a restart the message is found by id; if someone deleted it, progress goes to a new one."""
    await world.say("hello")  # the channel has messages, but not that one
    status = StatusMessage(world.bot, world.channel.id, 424242)
    await status.edit(content="progress")
    (replacement,) = sent_messages()
    assert replacement.content == "progress" and status.message_id == replacement.id
    await status.edit(content="more progress")
    assert world.edits_of(replacement.id)[-1]["content"] == "more progress"


async def test_past_the_interaction_limit_edits_go_through_the_bot(world, slash):
    """Within 15 minutes a status message is edited through its interaction; after that (or after a restart)
    by id, with the bot's token."""
    fresh = slash.interaction()
    live = await fresh.followup.send("queued", wait=True)
    await StatusMessage(world.bot, world.channel.id, live.id, live=live, interaction=fresh).edit(content="step 1")
    assert [c.body["content"] for c in slash.adapter.calls if c.method == "PATCH"] == ["step 1"]

    status = await world.channel.send("queued")  # the status message as the channel shows it
    old = slash.interaction(age=timedelta(minutes=16))
    assert old.is_expired()
    live = await old.followup.send("queued", wait=True)
    await StatusMessage(world.bot, world.channel.id, status.id, live=live, interaction=old).edit(content="step 9")
    assert world.edits_of(status.id)[-1]["content"] == "step 9"
    assert [c.body["content"] for c in slash.adapter.calls if c.method == "PATCH"] == ["step 1"]  # no new one


async def test_a_failure_is_announced_in_plain_words_after_a_restart(world):
    """A job queued while the daemon was down fails when it runs: its status message says why, and so does
    an announcement."""
    await world.app.stop()
    request = await world.mimic.build_request(["@grace_gardens"])
    job = world.mimic.submit(request, requested_by=f"discord:{world.admin.id}", guild_id=world.guild.id)
    status = await world.channel.send(embed=status_embed(job))
    job_rows.set_status_message(world.mimic.store, job["id"], world.channel.id, status.id)
    world.mimic.store.delete_account(world.mimic.store.find_accounts("grace_gardens")[0]["id"])
    await dpytest.empty_queue()
    await world.app.start()
    cog = world.bot.get_cog("Training")
    await wait_until(lambda: job["id"] in cog.watchers)
    await asyncio.wait_for(cog.watchers[job["id"]], WAIT)
    reason = (f"@\u200bgrace_gardens (x) was removed from the store after job {job['id']} was queued; "
              "fetch it again")
    assert world.edits_of(status.id)[-1]["embeds"][0]["description"] == f"❌ Failed: {reason}"
    (announcement,) = sent_messages()
    assert announcement.embeds[0].title == "Training grace_gardens failed"
    assert announcement.embeds[0].description == reason
