"""Hostile input through discord.py's own dispatch (issue 17, ask 7).

Every case goes in as a person would send it — a message that dpytest turns into a gateway event for the `!`
commands, a raw INTERACTION_CREATE payload for the slash commands (values Discord's client would refuse to send
included: the bot must not rely on the client) — and every answer is held to the same promises:

- a refusal is one friendly line: not empty, no line break, no traceback, not the "something went wrong" of an
  unexpected error, within Discord's 2,000 characters; a slash command's refusal is ephemeral;
- nobody can be pinged: every payload carries allowed_mentions that parse nothing (the autouse `no_pings` of
  conftest.py) and the text shown is neutralised (no `@` that could still read as a mention);
- every payload the bot builds fits Discord's limits (a payload over them would be a 400 from Discord: an error
  the person never sees explained);
- nothing is stored: the SQLite tables (jobs, accounts, posts, outgoing, fetch_runs, schedules, guild_settings)
  and the models folder are the same after the case as before it.

A case where a safe result is the right answer (a prompt with mentions: the posts repeat it) asserts the result
instead: the posts are shown, inert.
"""

from __future__ import annotations

import re
import sqlite3

import discord
import pytest

from bot.discord.cogs.generation import MAX_PROMPT, generation_embeds
from bot.discord.cogs.models import forget_summary, model_pages
from bot.discord.cogs.scheduler import decided_text, draft_text, schedule_line
from bot.discord.formatting import job_line, model_embed, neutralise, post_embed, status_embed
from bot.discord.options import DiscordOptions
from bot.errors import ValidationError
from bot.service import check_prompt

from .conftest import TRAINED_MODEL, message_text

TABLES = ("accounts", "posts", "fetch_runs", "jobs", "schedules", "outgoing", "guild_settings")
EPHEMERAL = 1 << 6
LIVE_AT = re.compile(r"@(?!\u200b)")  # an `@` neutralise did not make inert
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

MENTIONS = ("everyone", "here", "member", "member by nickname", "role")


def mention(world, kind: str) -> str:
    """A mention as Discord's client writes it, of someone (or a role) who really is in the server."""
    role = next(r for r in world.guild.roles if r.name == "Admins")
    return {"everyone": "@everyone", "here": "@here", "member": f"<@{world.other.id}>",
            "member by nickname": f"<@!{world.other.id}>", "role": f"<@&{role.id}>"}[kind]


@pytest.fixture
def options() -> DiscordOptions:
    """conftest's options with cooldowns wide enough that no case here is refused for speed, not content."""
    return DiscordOptions(_env_file=None, progress_interval=0, train_max_steps=2, base_models="gpt2",
                          generate_rate=1000, generate_per=60, train_rate=1000, train_per=60, completion_samples=2,
                          mention_per=60)


# -- the promises, as helpers ---------------------------------------------------------------------------


def stored(mimic) -> dict:
    """Everything a case could have stored: the rows of every table people's data lives in, and the models."""
    db = sqlite3.connect(f"file:{mimic.settings.db_path}?mode=ro", uri=True)
    try:
        rows = {t: db.execute(f"select * from {t} order by rowid").fetchall() for t in TABLES}
    finally:
        db.close()
    models = mimic.settings.models_dir
    rows["models"] = sorted(p.name for p in models.iterdir()) if models.is_dir() else []
    return rows


def assert_refusal(text: str, *expected: str) -> None:
    """One friendly line, inert, containing each `expected` piece."""
    assert text and text.strip(), "no reply"
    assert "\n" not in text and "\r" not in text, f"not one line: {text!r}"
    assert len(text) <= 2000, len(text)
    assert "Traceback" not in text and "Something went wrong" not in text, text
    assert not LIVE_AT.search(text), f"a live mention: {text!r}"
    assert not UNSAFE.search(text), f"a control character: {text!r}"
    for piece in expected:
        assert piece in text, f"{piece!r} not in {text!r}"


async def refused_prefix(world, command: str, *expected: str, by=None) -> str:
    """`command` said in the channel: one reply, a refusal; nothing stored."""
    before = stored(world.mimic)
    replies = await world.say(command, member=by)
    assert len(replies) == 1, f"{command!r}: {[text_of(m) for m in replies]}"
    (reply,) = replies
    assert not reply.embeds, f"{command!r} was answered, not refused: {text_of(reply)}"
    assert_refusal(reply.content, *expected)
    assert stored(world.mimic) == before, command
    return reply.content


async def refused_slash(world, slash, name: str, *expected: str, by=None, **options) -> str:
    """`/name options…` as a raw interaction: its last message a refusal, ephemeral; nothing stored."""
    before = stored(world.mimic)
    run = await slash.invoke(name, by=by, **options)
    assert run.messages, f"/{name} {options}: no answer"
    last = run.messages[-1]
    assert not last.get("embeds"), f"/{name} was answered, not refused: {message_text(last)}"
    assert_refusal(last.get("content") or "", *expected)
    assert last.get("flags", 0) & EPHEMERAL, f"/{name}: the refusal is not ephemeral"
    assert stored(world.mimic) == before, f"/{name} {options}"
    return last["content"]


def text_of(message: discord.Message) -> str:
    return message_text({"content": message.content, "embeds": [e.to_dict() for e in message.embeds]})


EMBED_LIMITS = {"title": 256, "description": 4096}


def assert_within_discord_limits(body: dict) -> None:
    """What Discord accepts in one message (https://discord.com/developers/docs/resources/message)."""
    message = body["data"] if isinstance(body.get("data"), dict) and "type" in body else body
    assert len(message.get("content") or "") <= 2000, "content over 2,000 characters"
    embeds = message.get("embeds") or []
    assert len(embeds) <= 10
    total = 0
    for embed in embeds:
        for key, limit in EMBED_LIMITS.items():
            assert len(embed.get(key) or "") <= limit, key
        assert len((embed.get("footer") or {}).get("text", "")) <= 2048
        assert len((embed.get("author") or {}).get("name", "")) <= 256
        assert len(embed.get("fields") or []) <= 25
        for f in embed.get("fields") or []:
            assert len(f["name"]) <= 256 and len(f["value"]) <= 1024
        total += len(message_text({"embeds": [embed]}).replace("\n", ""))
    assert total <= 6000, "embeds over 6,000 characters in all"


@pytest.fixture(autouse=True)
def within_limits(no_pings):
    yield
    for body in no_pings.payloads:
        assert_within_discord_limits(body)


def shown_posts(embeds: list[dict]) -> list[str]:
    return [e["description"] for e in embeds]


# -- prompts: length, invisible and control characters ----------------------------------------------------

LONG_PROMPTS = {
    "one over the limit": "a" * (MAX_PROMPT + 1),
    "4,000 characters": "word " * 800,
    "over Discord's 2,000 (a message) and 4,000 (Nitro)": "x" * 4001,
    "over Discord's 6,000 (a slash option)": "y" * 6001,
    "100,000 characters": "z" * 100_000,
}


@pytest.mark.parametrize("prompt", LONG_PROMPTS.values(), ids=LONG_PROMPTS.keys())
async def test_a_long_prompt_is_refused(world, slash, prompt):
    expected = f"the prompt must be 1 to {MAX_PROMPT} characters"
    await refused_prefix(world, f'!generate {TRAINED_MODEL} "{prompt}"', expected)
    await refused_slash(world, slash, "generate", expected, model=TRAINED_MODEL, prompt=prompt)


async def test_an_empty_prompt_is_refused(world, slash):
    for prompt in ("   ", "\r\n\t", "\u200b", "\u200b \u200d\ufeff"):
        expected = "the prompt must be 1 to"
        await refused_prefix(world, f'!generate {TRAINED_MODEL} "{prompt}"', expected)
        await refused_slash(world, slash, "generate", expected, model=TRAINED_MODEL, prompt=prompt)


CONTROL_PROMPTS = {
    "NUL": ("My dream \x00is", "U+0000"),
    "escape": ("My dream \x1b[31mis", "U+001B"),
    "delete": ("My dream\x7f is", "U+007F"),
    "RTL override": ("My dream \u202eis", "U+202E"),
    "LTR isolate": ("My \u2066dream is", "U+2066"),
    "C1 control": ("My dream \x9b31mis", "U+009B"),  # (NEL, U+0085, is a line break: folded, a safe result)
}


@pytest.mark.parametrize("prompt, code", CONTROL_PROMPTS.values(), ids=CONTROL_PROMPTS.keys())
async def test_a_prompt_with_a_control_character_is_refused(world, slash, prompt, code):
    expected = f"the prompt contains an invisible control character ({code})"
    await refused_prefix(world, f'!generate {TRAINED_MODEL} "{prompt}"', expected)
    await refused_slash(world, slash, "generate", expected, model=TRAINED_MODEL, prompt=prompt)


async def test_a_lone_surrogate_is_refused(world, slash):
    """JSON may carry `\\ud800` alone; no tokenizer reads it (it is not UTF-8)."""
    await refused_slash(world, slash, "generate", "the prompt contains an invisible control character (U+D800)",
                        model=TRAINED_MODEL, prompt="My dream \ud800is")


async def test_line_breaks_and_zero_width_characters_are_a_safe_result(world, slash):
    """`\\r`, `\\n` and NEL fold to spaces (a post is one line); a zero-width space or joiner is text (emoji
    sequences need the joiner). The posts are shown, inert, and nothing is stored."""
    before = stored(world.mimic)
    (reply,) = await world.say(f'!generate {TRAINED_MODEL} "My\rdream\x85 is\u200b" 1')
    (post,) = [e.description for e in reply.embeds]
    assert post.startswith("My dream is\u200b") and "\r" not in post and "\x85" not in post
    run = await slash.invoke("generate", model=TRAINED_MODEL, prompt="My\r\ndream \u200dis", n=1)
    (post,) = shown_posts(run.messages[-1]["embeds"])
    assert post.startswith("My dream \u200dis")
    assert "\r" not in run.messages[-1]["embeds"][0]["footer"]["text"]
    assert stored(world.mimic) == before


# -- mentions in prompts, and so in the generated text ------------------------------------------------------


@pytest.mark.parametrize("kind", MENTIONS)
async def test_mentions_in_a_prompt_come_back_inert(world, slash, kind):
    """The tiny model's posts start with the prompt, so the generated text carries the mention: shown, inert."""
    ping = mention(world, kind)
    prompt = f"{ping} wake up"
    before = stored(world.mimic)
    (reply,) = await world.say(f'!generate {TRAINED_MODEL} "{prompt}" 2')
    run = await slash.invoke("generate", model=TRAINED_MODEL, prompt=prompt, n=2)
    for embeds in ([e.to_dict() for e in reply.embeds], run.messages[-1]["embeds"]):
        assert len(embeds) == 2
        for post in shown_posts(embeds):
            assert post.startswith(neutralise(prompt)), post
        text = message_text({"embeds": embeds})
        assert ping not in text and not LIVE_AT.search(text), text
    assert stored(world.mimic) == before


async def test_a_mention_in_a_refused_argument_is_inert(world, slash):
    """Refusals that quote what was typed (a model name, a handle) quote it inert."""
    for kind in MENTIONS:
        ping = mention(world, kind)
        await refused_prefix(world, f"!generate {ping}", "no model")
        await refused_slash(world, slash, "model", "no model", model=ping)
        await refused_prefix(world, f"!forget {ping}", by=world.admin)
        await refused_slash(world, slash, "train", by=world.admin, handles=f"ada_bytes {ping}")


async def test_an_answer_to_a_mention_is_inert(world):
    """The replies cog: someone mentions the bot with pings in the text; the answer repeats them, inert."""
    await world.say(f"!config replies <#{world.channel.id}> true {TRAINED_MODEL}", member=world.admin)
    before = stored(world.mimic)
    pings = " ".join(mention(world, kind) for kind in MENTIONS)
    replies = await world.say(f"<@{world.bot.user.id}> {pings} listen")
    (answer,) = replies
    assert answer.content and not LIVE_AT.search(answer.content), answer.content
    assert stored(world.mimic) == before


def test_every_formatter_of_untrusted_text_makes_it_inert():
    """Generated text reaches people through these; each is fed mentions and direction overrides where the
    model, an imported archive or a person's name could put them."""
    evil = "@everyone <@1> <@!1> <@&2> @here \u202egnp.exe\u2066 \x00"
    info = {"model_id": evil, "display_name": evil, "accounts": [{"handle": evil, "display_name": evil,
                                                                   "stats": {}}]}
    job = {"id": 1, "model_id": evil, "state": "failed", "error": evil, "step": 1, "total": 2}

    class Result:
        texts = [evil] * 3
        settings = {"temperature": 1.0}

    class Outcome:
        status, text, error, remote_id = "failed", evil, evil, "1"

    class Person:
        display_name = evil

    def shown(*embeds: discord.Embed) -> str:
        return message_text({"embeds": [e.to_dict() for e in embeds]})

    texts = [shown(post_embed(evil, info, footer=evil)), shown(status_embed(job)), job_line(job),
             shown(model_embed({"id": evil, "display_name": evil, "training": info})[0]),
             shown(*generation_embeds({"id": evil, "training": info}, Result(), evil)),
             shown(*model_pages([{"id": evil, "display_name": evil, "accounts": [evil]}])),
             forget_summary({"handle": evil, "posts": 1, "accounts": 1, "models": [evil]}),
             draft_text({"target": "x", "model_id": evil, "text": evil, "schedule_id": None}),
             decided_text(Outcome(), Person()),
             schedule_line({"id": 1, "model_id": evil, "target": evil, "when": evil, "paused": 0,
                            "require_approval": 0, "last_status": evil})]
    for text in texts:
        assert not LIVE_AT.search(text), text
        assert not UNSAFE.search(text), text
        assert "everyone" in text  # shown, not dropped


# -- numbers: n and temperature -------------------------------------------------------------------------------

BAD_N = {10_000: "between 1 and", 0: "between 1 and", -1: "between 1 and"}
BAD_TEMPERATURE = {"-1": "between 0.1 and 2", "nan": "between 0.1 and 2", "inf": "between 0.1 and 2",
                   "-inf": "between 0.1 and 2", "0": "between 0.1 and 2"}


@pytest.mark.parametrize("n", BAD_N)
async def test_a_bad_number_of_posts_is_refused(world, slash, n):
    await refused_prefix(world, f"!generate {TRAINED_MODEL} hi {n}", BAD_N[n])
    await refused_slash(world, slash, "generate", "posts", model=TRAINED_MODEL, n=n)


@pytest.mark.parametrize("temperature", BAD_TEMPERATURE)
async def test_a_bad_temperature_is_refused(world, slash, temperature):
    await refused_prefix(world, f"!generate {TRAINED_MODEL} hi 1 {temperature}", BAD_TEMPERATURE[temperature])
    await refused_slash(world, slash, "generate", BAD_TEMPERATURE[temperature], model=TRAINED_MODEL,
                        temperature=float(temperature))


async def test_numbers_that_are_not_numbers_are_refused(world, slash):
    await refused_prefix(world, f"!generate {TRAINED_MODEL} hi many", "`n` must be a whole number")
    await refused_prefix(world, f"!generate {TRAINED_MODEL} hi 1 hot", "`temperature` must be a number")
    await refused_prefix(world, f"!generate {TRAINED_MODEL} hi 1e400", "`n` must be a whole number")
    await refused_prefix(world, f"!generate {TRAINED_MODEL} hi 99999999999999999999999", "between 1 and")
    # a raw payload carries whatever JSON can: Discord's client would never send these
    await refused_slash(world, slash, "generate", "posts", model=TRAINED_MODEL, n="many")
    # (a number option that is not a number never reaches the bot: Discord checks option types, and discord.py
    # would fail parsing it before any of our code runs)
    await refused_slash(world, slash, "generate", "posts", model=TRAINED_MODEL, n=2**70)


# -- model names --------------------------------------------------------------------------------------------

BAD_MODELS = {
    "parent": "../ada_bytes",
    "deeper": "../../data/mimicbot.db",
    "inside then out": "ada_bytes/../ada_bytes",
    "absolute": "/etc/passwd",
    "home": "~/models/ada_bytes",
    "windows": "C:\\Windows\\system32",
    "encoded": "..%2Fada_bytes",
    "dot": ".",
    "dots": "..",
    "trailing newline": "ada_bytes\n",
    "NUL": "ada_bytes\x00",
    "RTL": "ada\u202ebytes",
    "2,000 characters": "m" * 2000,
    "6,000 characters": "n" * 6000,
}


@pytest.mark.parametrize("name", BAD_MODELS.values(), ids=BAD_MODELS.keys())
async def test_a_bad_model_name_is_refused(world, slash, name):
    quoted = f'"{name}"' if name.strip() == name and " " not in name else None
    for command, by in (("generate", None), ("model", None), ("config default-model", world.admin),
                        ("schedule add", world.admin)):
        extra = {"when": "2h"} if command == "schedule add" else {}
        reply = await refused_slash(world, slash, command, "no model", by=by, model=name, **extra)
        assert len(reply) < 300, reply  # a long name is quoted shortened
        if quoted:
            args = " 2h" if command == "schedule add" else ""
            reply = await refused_prefix(world, f"!{command} {quoted}{args}", "no model", by=by)
            assert len(reply) < 300, reply


async def test_model_autocomplete_with_hostile_text_offers_nothing_odd(world, slash):
    for typed in ("../", "/etc", "\x00", "z" * 6000, "@everyone"):
        choices = await slash.autocomplete("generate", "model", typed)
        assert all(c["value"] in world.mimic.model_ids() for c in choices)


# -- handles for /train and /forget ---------------------------------------------------------------------------

BAD_HANDLES = {
    "parent": "../ada_bytes",
    "deeper": "../../data/mimicbot.db",
    "absolute": "/etc/passwd",
    "inside then out": "ada_bytes/../grace_gardens",
    "bluesky parent": "bsky:../ada.bsky.social",
    "mastodon parent": "mastodon:@../x@mastodon.social",
    "url": "https://example.com/ada_bytes",
    "NUL": "ada_bytes\x00",
    "RTL": "ada\u202ebytes",
    "5,000 characters": "h" * 5000,
}


@pytest.mark.parametrize("handle", BAD_HANDLES.values(), ids=BAD_HANDLES.keys())
async def test_a_bad_handle_is_refused(world, slash, handle):
    locks = world.mimic.settings.data_dir / "locks"
    before_locks = sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []
    await refused_slash(world, slash, "train", "not a", by=world.admin, handles=handle)
    await refused_slash(world, slash, "forget", by=world.admin, handle=handle)
    await refused_slash(world, slash, "forget", by=world.member, handle=handle)
    if " " not in handle and "\x00" not in handle:
        await refused_prefix(world, f"!train {handle}", "not a", by=world.admin)
        await refused_prefix(world, f"!forget {handle}", by=world.admin)
    after_locks = sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []
    assert after_locks == before_locks
    assert not any(p.suffix == ".lock" for p in world.mimic.settings.data_dir.parent.rglob("*.lock")
                   if locks not in p.parents)


# -- job ids for /status and /cancel --------------------------------------------------------------------------

BAD_JOB_IDS = {"abc": "must be a whole number", "1.5": "must be a whole number", "0x10": "must be a whole number",
               "-1": "no training job", "0": "no training job", "99999999999999999999": "no training job",
               "１": "no training job"}  # a full-width digit: int() reads it


@pytest.mark.parametrize("job", BAD_JOB_IDS)
async def test_a_bad_job_id_is_refused(world, slash, job):
    for command, by in (("status", None), ("cancel", world.admin)):
        await refused_prefix(world, f"!{command} {job}", BAD_JOB_IDS[job], by=by)
        raw = int(job) if job.lstrip("-").isdigit() and job.isascii() else job
        await refused_slash(world, slash, command, by=by, job=raw)


async def test_a_slash_job_id_out_of_range_is_refused(world, slash):
    for raw in (2**63, -(2**63) - 1, 2**70):
        await refused_slash(world, slash, "status", "no training job", job=raw)
        await refused_slash(world, slash, "cancel", "no training job", by=world.admin, job=raw)


# -- the service shares the prompt rule with the CLI --------------------------------------------------------


def test_the_service_prompt_rule():
    assert check_prompt("  My\r\n dream\tis ") == "My dream is"
    for bad, code in (("a\x00b", "U+0000"), ("a\u202eb", "U+202E"), ("a\ud800b", "U+D800")):
        with pytest.raises(ValidationError, match=re.escape(code)):
            check_prompt(bad)
    with pytest.raises(ValidationError):
        check_prompt("\u200b \ufeff")


# -- the other commands that take a number or free text ------------------------------------------------------


async def test_pages_and_limits_out_of_range_are_refused(world, slash):
    for page in ("0", "-1", "99999999999999999999"):
        await refused_prefix(world, f"!models {page}", "between 1 and")
    before = stored(world.mimic)
    for page in (0, -1, 10**20):  # past the client's min and max: the nearest page, a safe result
        run = await slash.invoke("models", page=page)
        assert run.messages[-1]["embeds"][0]["footer"]["text"].startswith("Page 1/1")
    assert stored(world.mimic) == before
    for jobs in ("0", "51", "99999999999999999999"):
        await refused_prefix(world, f"!config max-queue {jobs}", "between 1 and", by=world.admin)
    for jobs in (0, 51, -5, 10**20):
        await refused_slash(world, slash, "config max-queue", "between 1 and", by=world.admin, jobs=jobs)


async def test_help_for_a_hostile_command_name_is_one_short_line(world, slash):
    for name in ("x" * 6000, "@everyone", "\u202egnp", "../help"):
        reply = await refused_slash(world, slash, "help", "no command", command=name)
        assert len(reply) < 300, reply


HOSTILE_WHEN = ("0s", "-1h", "nan", "1e400m", "99999999999999h", "* * * * * *", "61 25 32 13 8", "9" * 5000, "²",
                "\u0663h", "2h\x00")
HOSTILE_TO = ("../../x", "discord:abc", "discord:-1", "discord:99999999999999999999999", "z" * 5000, "@everyone")


async def test_a_hostile_schedule_is_refused(world, slash):
    for when in HOSTILE_WHEN:
        await refused_slash(world, slash, "schedule add", by=world.admin, model=TRAINED_MODEL, when=when)
    for to in HOSTILE_TO:
        await refused_slash(world, slash, "schedule add", by=world.admin, model=TRAINED_MODEL, when="2h", to=to)
    await refused_slash(world, slash, "schedule add", by=world.admin, model=TRAINED_MODEL, when="0 9 * * *",
                        timezone="../../etc/localtime")
    for schedule_id in ("abc", "99999999999999999999", "-1"):
        await refused_prefix(world, f"!schedule remove {schedule_id}", by=world.admin)


def test_forget_through_the_service_keeps_its_lock_in_its_folder(mimic):
    """The CLI's `mimicbot forget` takes any text: whatever it is, the lock file stays in <data dir>/locks."""
    from bot.errors import UnknownAccount

    data = mimic.settings.data_dir
    for handle in ("../../escaped", "/tmp/absolute", "..", "a/b"):
        with pytest.raises(UnknownAccount):
            mimic.forget(handle)
    outside = [p for p in data.parent.rglob("*.lock") if p.parent != data / "locks"]
    assert outside == [] and len(list((data / "locks").iterdir())) == 4
