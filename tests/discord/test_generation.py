"""`generate`: posts drawn like posts, from the real trained model, by prefix and by slash."""

from __future__ import annotations

from .conftest import TRAINED_MODEL, text_of


async def test_generate_by_prefix_answers_with_post_embeds(world):
    (reply,) = await world.say(f'!generate {TRAINED_MODEL} "I think" 2 0.8')
    assert len(reply.embeds) == 2
    for embed in reply.embeds:
        assert embed.author.name == "Ada Bytes 🤖 (@\u200bada_bytes)"
        assert embed.description.startswith("I think")
        assert embed.footer.text == f"🤖 {TRAINED_MODEL} · prompt “I think” · temperature 0.8"


async def test_generate_by_slash_defers_then_follows_up(world, slash):
    run = await slash.invoke("generate", model=TRAINED_MODEL, n=1)
    defer, followup = run.calls
    assert defer.path.endswith("/callback") and defer.body == {"type": 5}  # "thinking…", within the 3 s
    assert followup.method == "POST" and followup.path.startswith(f"/webhooks/{world.bot.user.id}/")
    (embed,) = followup.body["embeds"]
    assert embed["description"].startswith("My dream is")  # the recipe's default prompt
    assert embed["author"]["name"].startswith("Ada Bytes 🤖")


async def test_generate_works_in_direct_messages(world, slash):
    dm = await world.member.create_dm()
    (reply,) = await world.say(f"!generate {TRAINED_MODEL} Hello 1", channel=dm)
    assert reply.embeds[0].description.startswith("Hello")
    run = await slash.invoke("generate", where=dm, model=TRAINED_MODEL, prompt="Hello", n=1)
    assert run.messages[-1]["embeds"][0]["description"].startswith("Hello")


async def test_unknown_model_is_a_friendly_reply(world, slash):
    (reply,) = await world.say("!generate ada_byte")
    assert reply.content == "no model 'ada_byte'; did you mean ada_bytes?"
    run = await slash.invoke("generate", model="nope")
    assert run.messages[-1]["content"] == "no model 'nope'; models: ada_bytes"
    assert "no model" in run.text and "Traceback" not in run.text


async def test_out_of_range_options_are_refused_before_any_work(world):
    (reply,) = await world.say(f"!generate {TRAINED_MODEL} hi 6")
    assert reply.content == "at most 5 posts at a time"
    (reply,) = await world.say(f"!generate {TRAINED_MODEL} hi 1 9")
    assert reply.content == "That value must be between 0.1 and 2.0."


async def test_generate_has_a_per_user_cooldown(world):
    for _ in range(3):  # refused requests do not count
        (reply,) = await world.say("!generate no_such_model")
        assert reply.content.startswith("no model 'no_such_model'")
    for _ in range(2):  # the test options allow two a minute
        (reply,) = await world.say(f"!generate {TRAINED_MODEL} Hi 1")
        assert reply.embeds
    (reply,) = await world.say(f"!generate {TRAINED_MODEL} Hi 1")
    assert reply.content.startswith("Slow down a little: try again in ")
    (reply,) = await world.say(f"!generate {TRAINED_MODEL} Hi 1", member=world.other)  # someone else may
    assert reply.embeds


async def test_model_names_autocomplete(world, slash):
    assert await slash.autocomplete("generate", "model", "ada") == [{"name": "ada_bytes", "value": "ada_bytes"}]
    assert await slash.autocomplete("generate", "model", "zzz") == []


async def test_generated_text_cannot_ping(world, slash):
    """Whatever the model writes, the reply is inert: the prompt (which the post repeats) carries mentions."""
    (reply,) = await world.say(f'!generate {TRAINED_MODEL} "@everyone <@{world.admin.id}> hi" 1')
    text = text_of(reply)
    assert "@\u200beveryone" in text and f"<@\u200b{world.admin.id}>" in text
    assert "@everyone" not in text and f"<@{world.admin.id}>" not in text
