"""Per-server settings (stored in SQLite) and the answers to @mentions they enable."""

from __future__ import annotations

from bot.discord import guild_config

from .conftest import TRAINED_MODEL, text_of


async def test_settings_are_for_admins(world, slash):
    (reply,) = await world.say("!config")
    assert reply.content == "Only members with the **Manage Server** permission can change my settings."
    run = await slash.invoke("config show", by=world.member)
    assert run.messages[-1]["content"] == "Only members with the **Manage Server** permission can change my settings."
    assert run.messages[-1]["flags"] == 64  # only the person sees it
    (reply,) = await world.say("!config", member=world.admin)
    text = text_of(reply)
    assert "Roles that may train: none (members with **Manage Server**)" in text
    assert "Answers @mentions in: no channel" in text


async def test_settings_are_stored_per_server_in_sqlite(world, slash):
    role = world.guild.roles[-1]
    await slash.invoke("config trainer-role", by=world.admin, role=role)
    await slash.invoke("config default-model", by=world.admin, model=TRAINED_MODEL)
    await slash.invoke("config replies", by=world.admin, channel=world.channel, enabled=True)
    await slash.invoke("config link", by=world.admin, member=world.member, handle="@Ada_Bytes")
    run = await slash.invoke("config max-queue", by=world.admin, jobs=2)
    rows = world.mimic.store.query("select key, value from guild_settings where guild_id = ?", [world.guild.id])
    assert {r["key"] for r in rows} == {"train_role_ids", "default_model", "reply_channels", "linked_handles",
                                       "max_queued"}
    config = guild_config.load(world.mimic, world.guild.id)
    assert config.train_role_ids == [role.id] and config.default_model == TRAINED_MODEL
    assert config.reply_model(world.channel.id) == TRAINED_MODEL
    assert config.linked_handles == {"ada_bytes": world.member.id} and config.max_queued == 2
    assert "Training queue limit: 2" in run.text
    assert guild_config.load(world.mimic, world.guild.id + 1) == guild_config.GuildConfig()  # other servers: defaults
    await slash.invoke("config trainer-role", by=world.admin, role=role, allow=False)
    assert guild_config.load(world.mimic, world.guild.id).train_role_ids == []


async def test_a_default_model_must_exist(world):
    (reply,) = await world.say("!config default-model ada_byte", member=world.admin)
    assert reply.content == "no model 'ada_byte'; did you mean ada_bytes?"
    assert guild_config.load(world.mimic, world.guild.id).default_model is None


async def test_sync_is_for_the_owner(world):
    (reply,) = await world.say("!sync", member=world.admin)
    assert reply.content == "Only the bot's owner can do that."


async def test_mentions_are_answered_only_in_enabled_channels(world, no_pings):
    mention = f"<@{world.bot.user.id}> what is your dream?"
    assert await world.say(mention) == []  # no channel enabled
    await world.say(f"!config replies <#{world.channel.id}> true {TRAINED_MODEL}", member=world.admin)
    (reply,) = await world.say(mention)
    assert reply.content
    body = no_pings.payloads[-1]  # dpytest drops the reference; the body discord.py built has it
    assert body["content"] == reply.content and body["message_reference"]["message_id"] == world.said.id
    assert await world.say(f"<@{world.bot.user.id}> again?") == []  # one answer per channel per minute
    await world.say(f"!config replies <#{world.channel.id}> false", member=world.admin)
    assert guild_config.load(world.mimic, world.guild.id).reply_channels == {}


async def test_mentions_use_the_server_default_model(world):
    await world.say(f"!config replies <#{world.channel.id}>", member=world.admin)
    assert await world.say(f"<@{world.bot.user.id}> hello") == []  # enabled, but no model anywhere yet
    await world.say(f"!config default-model {TRAINED_MODEL}", member=world.admin)
    (reply,) = await world.say(f"<@{world.bot.user.id}> hello")
    assert reply.content
