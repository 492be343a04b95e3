"""The bot's frame: help, the one error path, DMs, other bots, and the pure helpers under every reply."""

from __future__ import annotations

import logging

import discord
import pytest
from discord.ext import commands

from bot.discord.bot import EXTENSIONS, DiscordBot, DiscordBotBase, SingleDiscordBot
from bot.discord.converters import parse_handle, parse_handles
from bot.discord.errors import DM_ONLY, explain
from bot.discord.formatting import ZWSP, duration, neutralise, post_embed, progress_bar
from bot.discord.options import DiscordOptions
from bot.discord.progress import EditThrottle
from bot.errors import NotEnoughData, ValidationError

from .conftest import text_of


def test_the_daemon_bot_is_sharded_and_the_test_bot_is_the_same_bot():
    assert issubclass(DiscordBot, commands.AutoShardedBot) and issubclass(DiscordBot, DiscordBotBase)
    assert issubclass(SingleDiscordBot, DiscordBotBase) and not issubclass(SingleDiscordBot, discord.AutoShardedClient)
    # everything the bot does is in the shared base: the two classes add nothing
    for cls in (DiscordBot, SingleDiscordBot):
        assert [name for name in vars(cls) if not name.startswith("__")] == []


async def test_bot_loads_one_cog_a_feature_and_never_pings(world):
    assert set(EXTENSIONS) <= set(world.bot.extensions)  # plus optional ones (the scheduler) when present
    assert world.bot.allowed_mentions.to_dict() == {"parse": []}
    ours = {"help", "config", "models", "model", "forget", "generate", "train", "jobs", "status", "cancel"}
    hybrid = {c.name for c in world.bot.commands if isinstance(c, (commands.HybridCommand, commands.HybridGroup))}
    assert ours <= hybrid
    assert hybrid <= {c.name for c in world.bot.tree.get_commands()}  # every one also a slash command


async def test_help_lists_every_command_with_its_usage(world, slash):
    (reply,) = await world.say("!help")
    text = text_of(reply)
    for command in world.bot.commands:
        assert f"`!{command.name}" in text
    assert "`!train <handles> [epochs] [base_model] [lora] [qlora]`" in text
    run = await slash.invoke("help", command="train")
    assert "!train ada_bytes,grace_gardens 2" in run.text  # the command's example


async def test_unknown_prefix_command_is_ignored_and_bad_arguments_explained(world):
    assert await world.say("!nonsense") == []
    (reply,) = await world.say("!help nonsense")
    assert reply.content == "no command 'nonsense'; `help` lists them"
    (reply,) = await world.say("!status")
    assert reply.content == "Missing `job`. See `help` for how to use this command."
    (reply,) = await world.say("!status twelve")
    assert reply.content == "`job` must be a whole number. See `help` for how to use this command."


async def test_dms_allow_generate_and_help_only(world):
    dm = await world.member.create_dm()
    (reply,) = await world.say("!help", channel=dm)
    assert reply.embeds[0].title == "mimicbot"
    for command in ("!train ada_bytes", "!jobs", "!models", "!config", "!forget ada_bytes", "!cancel 1"):
        (reply,) = await world.say(command, channel=dm)
        assert reply.content == DM_ONLY, command
    assert world.bot.get_command("generate").app_command.guild_only is False
    assert world.bot.get_command("train").app_command.guild_only is True


async def test_other_bots_are_ignored(world):
    robot = world.add_member("robot", bot=True)
    assert await world.say("!help", member=robot) == []
    assert await world.say(f"<@{world.bot.user.id}> hello there", member=robot) == []


async def test_an_unexpected_error_gets_a_reference_and_the_log_gets_the_traceback(world, caplog):
    world.mimic.store.close()  # the database goes away under the bot: a fault no command expects
    with caplog.at_level(logging.ERROR, logger="bot.discord"):
        (reply,) = await world.say("!jobs")
    assert reply.content.startswith("Something went wrong on my side (reference `")
    ref = reply.content.split("`")[1]
    (record,) = [r for r in caplog.records if ref in r.getMessage()]
    assert "command=jobs (prefix)" in record.getMessage() and f"user={world.member.id}" in record.getMessage()
    assert record.exc_info is not None  # the traceback is in the log, never in the reply
    assert "Traceback" not in reply.content and "sqlite" not in reply.content.lower()


# -- the pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("hi @everyone", f"hi @{ZWSP}everyone"),
    ("@here now", f"@{ZWSP}here now"),
    ("<@123456789012345678> <@!123456789012345678>", f"<@{ZWSP}123456789012345678> <@{ZWSP}!123456789012345678>"),
    ("<@&123456789012345678>", f"<@{ZWSP}&123456789012345678>"),
    ("mail me @ada_bytes", f"mail me @{ZWSP}ada_bytes"),
    ("no mentions", "no mentions"),
])
def test_neutralise_makes_every_mention_inert(text, expected):
    assert neutralise(text) == expected
    assert neutralise(expected) == expected  # idempotent


def test_a_generated_post_is_drawn_like_a_post_and_cannot_mention():
    info = {"model_id": "ada_bytes", "display_name": "Ada Bytes",
            "accounts": [{"handle": "ada_bytes", "avatar_url": "https://pbs.example/ada.png"}]}
    embed = post_embed("My dream is @everyone <@1234567890123456789>", info, footer="prompt")
    assert embed.author.name == f"Ada Bytes 🤖 (@{ZWSP}ada_bytes)"
    assert embed.author.icon_url == "https://pbs.example/ada.png"
    assert embed.description == f"My dream is @{ZWSP}everyone <@{ZWSP}1234567890123456789>"
    cyborg = post_embed("x", {"model_id": "a-b", "display_name": "A & B",
                              "accounts": [{"handle": "a"}, {"handle": "b"}]})
    assert cyborg.author.name == f"A & B 🤖 (@{ZWSP}a-b)" and cyborg.author.icon_url is None


def test_progress_bar_and_duration():
    assert progress_bar(5, 10, width=10) == "▰▰▰▰▰▱▱▱▱▱ 50 %"
    assert progress_bar(None, None, width=4) == "▱▱▱▱"
    assert [duration(s) for s in (5, 65, 3725, None)] == ["5 s", "1 min 05 s", "1 h 02 min", "?"]


def test_edit_throttle_allows_one_edit_per_interval():
    now = [100.0]
    throttle = EditThrottle(15, clock=lambda: now[0])  # the status message was just sent
    allowed = []
    for t in range(100, 161):  # an event every second for a minute
        now[0] = float(t)
        if throttle.ready():
            allowed.append(t)
    assert allowed == [115, 130, 145, 160]


def test_handles_are_handles_never_paths_or_urls():
    assert parse_handles("ada_bytes, @Grace_Gardens") == ["@ada_bytes", "@grace_gardens"]
    assert parse_handles("bsky:ada.bsky.social") == ["bsky:ada.bsky.social"]
    assert parse_handles("mastodon:@Ada@Example.Social, ada_bytes") == ["mastodon:@ada@example.social", "@ada_bytes"]
    assert parse_handle("mastodon:@ada@example.social") == "ada@example.social"
    assert parse_handle("bsky:@Ada.bsky.social") == "ada.bsky.social"
    for bad in ("../data/mimicbot.db", "/etc/passwd", "https://x.com/ada", "archive.zip"):
        with pytest.raises(ValidationError, match="is not an account handle"):
            parse_handles(bad)
    for bad, network in (("mastodon:ada", "Mastodon"), ("bsky:../etc", "Bluesky")):
        with pytest.raises(ValidationError, match=f"is not a {network}"):
            parse_handles(bad)
    with pytest.raises(ValidationError, match="at most 3 accounts"):
        parse_handles("a b c d")


def test_every_failure_kind_has_a_friendly_line():
    cooldown = commands.CommandOnCooldown(commands.Cooldown(1, 60), 42.0, commands.BucketType.user)
    assert explain(cooldown).reply == "Slow down a little: try again in 42 s."
    missing = commands.MissingPermissions(["manage_guild"])
    assert explain(missing).reply == "You need the **Manage Server** permission to do that."
    wrapped = commands.CommandInvokeError(NotEnoughData("not enough tweets: 4,210 characters kept, 6,000 needed"))
    assert explain(wrapped).reply == "not enough tweets: 4,210 characters kept, 6,000 needed"
    assert explain(wrapped).level == logging.INFO
    unexpected = explain(commands.CommandInvokeError(KeyError("token")))
    assert unexpected.level == logging.ERROR and unexpected.reference in unexpected.reply
    assert "token" not in unexpected.reply


def test_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MIMICBOT_DISCORD_PROGRESS_INTERVAL", "2.5")
    monkeypatch.setenv("MIMICBOT_DISCORD_BASE_MODELS", "gpt2, distilgpt2")
    options = DiscordOptions(_env_file=None)
    assert options.progress_interval == 2.5 and options.base_model_list == ["gpt2", "distilgpt2"]
    assert DiscordOptions(_env_file=None, progress_interval=0).progress_interval == 0  # tests edit at every event
