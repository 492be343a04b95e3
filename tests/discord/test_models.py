"""`models` (paginated), `model` (the card's summary) and `forget` (with its confirmation)."""

from __future__ import annotations

import asyncio
import shutil

from .conftest import TRAINED_MODEL, message_text


async def test_model_card_shows_data_perplexity_and_the_predictions_picture(world, slash, no_pings):
    (reply,) = await world.say(f"!model {TRAINED_MODEL}")
    (picture,) = reply.attachments
    assert picture.filename == "predictions.png"
    # dpytest keeps a message's files but drops its embeds when files go along (they travel in the
    # multipart's payload_json), so the embed is read from the body discord.py built
    (embed,) = no_pings.payloads[-1]["embeds"]
    text = message_text({"embeds": [embed]})
    training = world.mimic.model(TRAINED_MODEL)["training"]
    assert embed["title"] == "Ada Bytes 🤖 AI Bot" and embed["image"]["url"] == "attachment://predictions.png"
    assert "Tweets downloaded: **400**" in text and "Tweets kept: **319**" in text
    before, after = training["eval"]["perplexity_before"], training["eval"]["perplexity_after"]
    assert f"{before:,.1f} → {after:,.1f}" in text
    assert "base model **tiny**" in text and f"{training['steps']} steps" in text
    run = await slash.invoke("model", model=TRAINED_MODEL)
    (response,) = run.calls
    assert response.body["data"]["embeds"][0]["image"]["url"] == "attachment://predictions.png"
    png = response.files["predictions.png"]
    on_disk = world.mimic.settings.models_dir / TRAINED_MODEL / "predictions.png"
    assert png.startswith(b"\x89PNG") and png == on_disk.read_bytes()


async def test_models_are_listed_ten_a_page_with_buttons_for_the_asker_only(world, slash):
    models_dir = world.mimic.settings.models_dir
    for i in range(11):
        shutil.copytree(models_dir / TRAINED_MODEL, models_dir / f"copy_{i:02d}")
    run = await slash.invoke("models", by=world.member)
    (response,) = run.calls
    page = response.body["data"]
    assert page["embeds"][0]["title"] == "Models (12)"
    assert page["embeds"][0]["footer"]["text"].startswith("Page 1/2")
    assert page["embeds"][0]["description"].count("\n") == 9  # ten lines
    buttons = page["components"][0]["components"]
    assert [(b["custom_id"], b.get("disabled", False)) for b in buttons] == [("pages:previous", True),
                                                                             ("pages:next", False)]
    message = run.original
    other = await slash.click(message, "pages:next", by=world.other)
    assert other.calls[0].body["data"]["content"] == "Only the person who ran the command can use these buttons."
    assert other.calls[0].body["data"]["flags"] == 64  # ephemeral
    turned = await slash.click(message, "pages:next", by=world.member)
    (update,) = turned.calls
    assert update.body["type"] == 7  # UPDATE_MESSAGE
    assert update.body["data"]["embeds"][0]["footer"]["text"].startswith("Page 2/2")
    assert "copy_10" in update.body["data"]["embeds"][0]["description"]
    (reply,) = await world.say("!models 2")
    assert reply.embeds[0].footer.text.startswith("Page 2/2")


async def test_forget_needs_an_admin_or_the_linked_person(world):
    (reply,) = await world.say("!forget ada_bytes")
    assert reply.content == ("Only an admin, or the member linked to @\u200bada_bytes (`/config link`), "
                             "can make me forget it.")
    assert world.mimic.store.find_accounts("ada_bytes")


async def test_forget_asks_then_deletes_posts_and_models(world, slash):
    await world.say(f"!config link <@{world.member.id}> ada_bytes", member=world.admin)
    task = slash.start("forget", handle="@Ada_Bytes", by=world.member)
    question = await slash.wait_for_message(lambda m: "cannot be undone" in m["content"])
    assert question["content"] == ("Delete @\u200bada_bytes: 400 stored posts from 1 account(s), models `ada_bytes`? "
                                   "This cannot be undone.")
    assert world.mimic.store.find_accounts("ada_bytes")  # nothing gone before the answer
    await slash.click(question, "confirm:yes", by=world.member)
    run = await asyncio.wait_for(task, 30)
    assert run.messages[-1]["content"] == ("🗑️ Deleted @\u200bada_bytes: 400 stored posts from 1 account(s), "
                                           "models `ada_bytes`.")
    assert world.mimic.store.find_accounts("ada_bytes") == []
    assert TRAINED_MODEL not in world.mimic.model_store.ids()
    assert [a["handle"] for a in world.mimic.accounts()] == ["grace_gardens"]  # the others stay


async def test_forget_said_no_deletes_nothing(world, slash):
    task = slash.start("forget", handle="grace_gardens", by=world.admin)
    question = await slash.wait_for_message(lambda m: "cannot be undone" in m["content"])
    await slash.click(question, "confirm:no", by=world.admin)
    run = await asyncio.wait_for(task, 30)
    assert run.messages[-1]["content"] == "Nothing was deleted."
    assert world.mimic.store.find_accounts("grace_gardens")


async def test_forget_unknown_handle(world):
    (reply,) = await world.say("!forget nobody_here", member=world.admin)
    assert reply.content == "nothing is stored for @\u200bnobody_here"
