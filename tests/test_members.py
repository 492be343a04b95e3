"""The core of learning Discord members' voices, without Discord: consent rows gate every write, edits and deletions
touch only members' messages, opt-out and forget remove everything, Discord markup is cleaned as the recipe cleans
links and handles, and a member is named by a handle that is never their user id (tests/discord/test_learning.py
drives the same through the bot)."""

from __future__ import annotations

import re

import pytest

from bot.cleaning import clean_post, discord_text
from bot.errors import NotEnoughData, UnknownAccount, ValidationError
from bot.naming import discord_member_handle, parse_spec
from bot.service import MemberMessage, Mimicbot
from bot.sources.base import AccountInfo, FetchResult, RawPost

GUILD, ADA, GRACE = 111111111111111111, 222222222222222222, 333333333333333333
CONSENT = "I agree that my messages in this server's learning channels may be used to train a model of my voice."


@pytest.fixture
def mimic(settings):
    service = Mimicbot(settings)
    yield service
    service.close()


def msgs(start: int, n: int, text: str = "a sentence of my own words number {i}") -> list[MemberMessage]:
    return [MemberMessage(start + i, 5, text.format(i=i), "2026-01-01T00:00:00+00:00") for i in range(n)]


def test_discord_markup_is_cleaned_as_the_recipe_cleans_links_and_handles():
    raw = ("hey <@123456789012345678> and <@!123456789012345678>, ask <@&123456789012345678> in "
           "<#123456789012345678> <:blob:123456789012345678><a:wave:123456789012345678> "
           "<https://example.com/a?b=c> https://t.co/x </train:123456789012345678> <t:1700000000:R>")
    text = discord_text(raw)
    assert not re.search(r"\d{15}", text)  # nobody's id is stored
    assert clean_post(text).text == "hey @user and @user, ask @role in #channel :blob::wave: /train sometime"
    assert clean_post(discord_text("<@123456789012345678> <#123456789012345678> ok")).short  # one plain word


def test_a_member_is_named_by_guild_and_member_and_stored_under_a_handle_without_their_id():
    spec = parse_spec(f"discord:{GUILD}/<@{ADA}>")
    assert (spec.network, spec.guild_id, spec.account_id) == ("discord", str(GUILD), str(ADA))
    assert parse_spec(spec.spec) == spec and spec.spec == f"discord:{GUILD}/{ADA}"
    with pytest.raises(ValidationError, match="discord:GUILD_ID/USER_ID"):
        parse_spec(f"discord:{GUILD}/ada")
    handle = discord_member_handle("Ada Lovelace ✨", GUILD, ADA)
    assert re.fullmatch(r"ada_lovelace_[0-9a-f]{6}", handle) and str(ADA) not in handle
    assert handle == discord_member_handle("Ada Lovelace ✨", GUILD, ADA)  # stable
    assert handle != discord_member_handle("Ada Lovelace ✨", GUILD + 1, ADA)  # per server
    assert re.fullmatch(r"member_[0-9a-f]{6}", discord_member_handle("✨✨", GUILD, ADA))


def test_nothing_is_stored_without_consent_and_nothing_after_it_is_withdrawn(mimic):
    assert mimic.learn_messages(GUILD, ADA, msgs(1000, 3)) == 0
    assert mimic.learn_message(GUILD, ADA, 1, 5, "words that should never be kept anywhere") == 0
    assert mimic.store.query("select count(*) as n from posts")[0]["n"] == 0

    row = mimic.opt_in(GUILD, ADA, "Ada", CONSENT)
    assert row["consented_at"] and row["consent_text"] == CONSENT
    assert mimic.learn_messages(GUILD, ADA, msgs(1000, 3), cursor=(5, "1000", False, 100)) == 3
    assert mimic.learn_messages(GUILD, ADA, msgs(1000, 3)) == 0  # already stored
    assert mimic.backfill_cursor(GUILD, ADA, 5)["scanned"] == 100
    assert mimic.learn_message(GUILD, GRACE, 2000, 5, "grace never agreed to any of this") == 0

    report = mimic.opt_out(GUILD, ADA)
    assert report["posts"] == 3 and mimic.member(GUILD, ADA) is None
    assert mimic.learn_messages(GUILD, ADA, msgs(3000, 3)) == 0  # a page read before the opt-out lands nowhere
    assert mimic.store.query("select count(*) as n from posts")[0]["n"] == 0
    assert mimic.backfill_cursor(GUILD, ADA, 5) is None
    with pytest.raises(UnknownAccount):
        mimic.opt_out(GUILD, ADA)


def test_edits_and_deletions_touch_only_members_messages(mimic):
    # an X post whose id happens to equal a Discord message id
    mimic.ingest("x", FetchResult(AccountInfo("x", "ada_bytes", "Ada"), [RawPost("1000", "an x post of mine, kept")]))
    mimic.opt_in(GUILD, ADA, "Ada", CONSENT)
    mimic.learn_messages(GUILD, ADA, msgs(1000, 2))
    assert mimic.edit_message(1000, "the edited text <@123456789012345678> of my message")
    assert not mimic.edit_message(99, "not stored")
    texts = {r["post_id"]: (r["raw_text"], r["clean_text"]) for r in mimic.store.query(
        "select p.post_id, p.raw_text, p.clean_text, a.network from posts p join accounts a on a.id = p.account_id "
        "where a.network = 'discord'")}
    assert texts["1000"] == ("the edited text @user of my message", "the edited text @user of my message")
    assert mimic.store.query("select raw_text from posts where account_id = "
                             "(select id from accounts where network = 'x')")[0]["raw_text"] == "an x post of mine, kept"
    assert mimic.forget_messages([1000, 1001, 424242]) == 2
    assert mimic.store.query("select count(*) as n from posts")[0]["n"] == 1  # the X post stays


def test_forgetting_a_members_account_withdraws_their_consent(mimic):
    handle = mimic.opt_in(GUILD, ADA, "Ada", CONSENT)["handle"]
    mimic.learn_messages(GUILD, ADA, msgs(1000, 5))
    assert mimic.forget(handle)["posts"] == 5
    assert mimic.member(GUILD, ADA) is None
    assert mimic.learn_messages(GUILD, ADA, msgs(2000, 5)) == 0


async def test_training_a_member_needs_consent_and_says_what_is_missing(mimic):
    with pytest.raises(UnknownAccount, match="has not opted in"):
        await mimic.build_request([f"discord:{GUILD}/{ADA}"])
    mimic.opt_in(GUILD, ADA, "Ada", CONSENT)
    mimic.learn_messages(GUILD, ADA, msgs(1000, 10))
    chars = mimic.member_progress(GUILD, ADA)["stats"]["chars"]
    with pytest.raises(NotEnoughData) as e:
        await mimic.build_request([f"discord:{GUILD}/{ADA}"])
    assert str(e.value) == (f"Ada: not enough messages yet: {chars:,} characters kept, 6,000 needed — "
                            f"{6000 - chars:,} more characters to go")
    assert str(ADA) not in str(e.value)
    assert mimic.member_progress(GUILD, ADA)["chars_needed"] == 6000 - chars
    mimic.learn_messages(GUILD, ADA, msgs(2000, 300, "another longer sentence in my own voice, number {i}"))
    request = await mimic.build_request([f"discord:{GUILD}/{ADA}"], base_model="tiny")
    handle = mimic.member_model_id(GUILD, ADA)
    assert request.model_id == handle and request.accounts[0].display_name == "Ada"
    assert request.accounts[0].network == "discord" and request.accounts[0].avatar_url is None
