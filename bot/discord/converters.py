"""Arguments people type, read strictly: handles (never paths or URLs: a Discord user must not make the bot
read local files or arbitrary servers) and model ids with autocomplete."""

from __future__ import annotations

import asyncio
import re

import discord
from discord import app_commands

from ..errors import ValidationError
from ..naming import parse_spec
from ..service import MAX_ACCOUNTS

_SPLIT = re.compile(r"[\s,]+")
_MENTION = re.compile(r"^<@!?(\d{15,21})>$")


def parse_handles(text: str, guild_id: int | None = None) -> list[str]:
    """`ada_bytes, @grace_gardens` → the service's source specs `["@ada_bytes", "@grace_gardens"]`.

    With `guild_id` (the server the command runs in), a member's mention `<@id>` names that member's messages in
    this server (`discord:GUILD/MEMBER`: learned with their consent, see cogs/learning.py).

    One to three accounts, separated by commas or spaces, in bot/naming.py's grammar without paths: handles
    (also those of imported archives), `bsky:name.domain` or `mastodon:@user@instance`. Paths, URLs and
    Discord users are refused: files are imported by an admin with `mimicbot fetch`, then trained by handle."""
    parts = [p for p in _SPLIT.split(text.strip()) if p]
    if not parts:
        raise ValidationError("name one to three accounts, e.g. `ada_bytes` or `ada_bytes,grace_gardens`")
    specs = []
    for part in parts:
        member = _MENTION.match(part)
        if member and guild_id is not None:
            specs.append(f"discord:{guild_id}/{member.group(1)}")
            continue
        try:
            parsed = parse_spec(part, allow_paths=False)
        except ValidationError:
            if part.lower().startswith(("bsky:", "mastodon:", "discord:")):
                raise  # the network's own grammar says what it expected
            raise ValidationError(f"{discord.utils.escape_markdown(part[:60])!r} is not an account handle; use "
                                  "handles like `ada_bytes` (archives are imported with `mimicbot fetch`)") from None
        if parsed.network == "discord" and parsed.guild_id and guild_id is not None and int(parsed.guild_id) == guild_id:
            specs.append(parsed.spec)  # discord:GUILD/MEMBER of this server
            continue
        if parsed.network == "discord":
            raise ValidationError(f"{parsed.spec} is a Discord user, not an account with posts; name their "
                                  "X, Bluesky or Mastodon handle, or mention a member of this server who opted in")
        specs.append(parsed.spec)
    specs = list(dict.fromkeys(specs))
    if len(specs) > MAX_ACCOUNTS:
        raise ValidationError(f"a model learns from at most {MAX_ACCOUNTS} accounts; {len(specs)} were given")
    return specs


def mentioned_member(text: str) -> int | None:
    """The user id of a member's mention `<@id>` (the whole text), else None."""
    match = _MENTION.match(text.strip())
    return int(match.group(1)) if match else None


def parse_handle(text: str) -> str:
    """One handle as the store keeps it: no network prefix, no leading @, lower case."""
    specs = parse_handles(text)
    if len(specs) != 1:
        raise ValidationError("name exactly one account")
    return parse_spec(specs[0], allow_paths=False).handle  # type: ignore[return-value]


async def model_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Model ids containing what was typed so far (25 at most, Discord's limit)."""
    ids = await asyncio.to_thread(interaction.client.mimic.model_ids)
    current = current.lower().strip()
    matches = [i for i in ids if current in i.lower()]
    matches.sort(key=lambda i: (not i.lower().startswith(current), i))
    return [app_commands.Choice(name=i, value=i) for i in matches[:25]]
